//! soak: the load generator of `benches/soak.sh`. One thread sends a mix
//! of DNS traffic at a fixed rate for as long as asked, and reports every
//! interval (a minute by default) what happened to the queries sent in it.
//!
//! The mix, in proportions set by `--mix`:
//! - `blocked`: names from a list of listed names and their subdomains
//!   (the lab's `q-blocked.txt`), over UDP;
//! - `cached`: a small hot set (the distinct names of `q-hot.txt`), over UDP;
//! - `forwarded`: distinct names that are not listed (`q-allowed.txt`),
//!   so mostly cache misses that go to the upstream, over UDP;
//! - `tcp`: the same three kinds of names in the same proportions, over a
//!   few persistent TCP connections that pipeline, plus a new short
//!   connection every `--tcp-new-ms` (two queries, then closed);
//! - `malformed`: packets no server should answer normally (a header cut
//!   short, random bytes, a question cut short, an OPT whose length runs
//!   past the end, two OPTs, EDNS version 1, no question, a compression
//!   loop). No answer is owed, so one that does not come is counted as
//!   "unanswered", never as lost; what does come is counted by rcode.
//!
//! Half the UDP queries carry EDNS (1232), as the lab's clients mix.
//!
//! Open loop: with `-r RATE` the queries leave on a fixed schedule
//! (`sendmmsg` batches of what is due), whether or not earlier ones were
//! answered, so a server that slows down meets the same load and not a
//! politely waiting client. Between batches the thread sleeps (at most
//! 200 µs), leaving its core to the upstream that shares it, and then reads
//! every answer that came: UDP latency is measured to the kernel's receive
//! timestamp (`SO_TIMESTAMPNS`), so reading late does not add to it (TCP
//! latency is to the read, so it may carry up to that sleep). When the
//! generator itself was not scheduled (a busy machine), it catches up at no
//! more than 1.25 times the rate, and a backlog over 100 ms is skipped and
//! counted, so its own pauses never reach the server as bursts. Without `-r`
//! it is closed loop and never sleeps (at most `-q` UDP queries in flight,
//! like the lab's `blast`): the saturating run that measures the peak.
//!
//! Every query is charged to the interval, and to the second, in which it
//! was sent: lost (no answer within `-t`, default 3 s, longer than the
//! server's upstream timeout, so a stalled upstream shows as SERVFAIL and
//! not as loss), answered by rcode, and its latency in a log-linear
//! histogram (3 % buckets) per class. Where a loss happened shows in the
//! kernel's drop counters of each side's UDP sockets (`/proc/net/udp`),
//! sampled with the rest.
//!
//! Two events, once per interval, at fixed offsets:
//! - `--proxy LISTEN,UPSTREAM`: a UDP proxy in front of the upstream, which
//!   the server forwards to; from `--stall-at` for `--stall-for` seconds of
//!   each interval it drops every query and answer (an upstream that stops
//!   answering);
//! - `--reload-cmd CMD` runs `sh -c CMD` at `--reload-at` (the soak script's
//!   command rewrites the list and waits until the server serves it); its
//!   last line of output is reported.
//!
//! With `--pid`, each interval ends with the server's VmRSS and CPU, the
//! CPU of this process and of `--watch` processes (the upstream), what
//! the rest of the machine used, and the load average.
//!
//! ```text
//! cargo bench --bench soak -- -s 127.0.0.1:15375 --blocked q-blocked.txt \
//!   --cached q-hot.txt --forwarded q-allowed.txt -r 100000 -l 600 -w 40
//! ```
//!
//! Prints a markdown table (one row per interval and a total) and, with
//! `--json FILE`, writes the same rows with every counter. IPv4, loopback.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far behind its schedule the paced generator may fall before it
/// drops the oldest due queries (counted as skipped), in seconds.
const MAX_BEHIND: f64 = 0.1;
/// The paced generator's fastest rate, as a multiple of `-r`, while it
/// catches up.
const CATCH_UP: f64 = 1.25;

/// Query classes, in `--mix` order.
const CLASSES: [&str; 5] = ["blocked", "cached", "forwarded", "tcp", "malformed"];
const BLOCKED: usize = 0;
const CACHED: usize = 1;
const FORWARDED: usize = 2;
const TCP: usize = 3;
const MALFORMED: usize = 4;

/// Kinds of malformed packet, sent in turn.
const KINDS: [&str; 8] = [
    "short-header",
    "garbage",
    "cut-question",
    "opt-overrun",
    "two-opt",
    "edns-version-1",
    "no-question",
    "pointer-loop",
];

const RCODES: [&str; 17] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "R11", "R12", "R13", "R14", "R15", "BADVERS",
];

struct Opts {
    server: SocketAddrV4,
    files: [String; 3],
    secs: f64,
    warmup: f64,
    interval: f64,
    rate: f64,
    outstanding: usize,
    socks: usize,
    batch: usize,
    timeout: f64,
    mix: [u32; 5],
    edns_percent: u32,
    tcp_conns: usize,
    tcp_new_ms: u64,
    proxy: Option<(SocketAddrV4, SocketAddrV4)>,
    stall_at: f64,
    stall_for: f64,
    reload_cmd: Option<String>,
    reload_at: f64,
    pid: Option<u32>,
    watch: Vec<u32>,
    json: Option<String>,
    seed: u64,
}

fn opts() -> Result<Opts, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        server: "127.0.0.1:53".parse().map_err(|_| "default address")?,
        files: [String::new(), String::new(), String::new()],
        secs: 60.0,
        warmup: 0.0,
        interval: 60.0,
        rate: 0.0,
        outstanding: 256,
        socks: 16,
        batch: 32,
        timeout: 3.0,
        mix: [70, 20, 5, 3, 2],
        edns_percent: 50,
        tcp_conns: 4,
        tcp_new_ms: 1000,
        proxy: None,
        stall_at: 30.0,
        stall_for: 3.0,
        reload_cmd: None,
        reload_at: 10.0,
        pid: None,
        watch: Vec::new(),
        json: None,
        seed: 1,
    };
    let mut i = 0;
    while i < a.len() {
        let flag = a[i].as_str();
        // `cargo bench` passes --bench to a harness = false target.
        if flag == "--bench" {
            i += 1;
            continue;
        }
        let v = a.get(i + 1).ok_or(format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {v}: expected {what}");
        let num = |what: &str| v.parse::<f64>().map_err(|_| bad(what));
        match flag {
            "-s" => o.server = v.parse().map_err(|_| bad("IPv4:PORT"))?,
            "--blocked" => o.files[BLOCKED] = v.clone(),
            "--cached" => o.files[CACHED] = v.clone(),
            "--forwarded" => o.files[FORWARDED] = v.clone(),
            "-l" => o.secs = num("seconds")?,
            "-w" => o.warmup = num("seconds")?,
            "-i" => o.interval = num("seconds")?,
            "-r" => o.rate = num("queries a second")?,
            "-q" => o.outstanding = v.parse().map_err(|_| bad("a count"))?,
            "-c" => o.socks = v.parse().map_err(|_| bad("a count"))?,
            "-b" => o.batch = v.parse().map_err(|_| bad("a count"))?,
            "-t" => o.timeout = num("seconds")?,
            "--mix" => o.mix = parse_mix(v).map_err(|e| format!("--mix {v}: {e}"))?,
            "--edns" => o.edns_percent = v.parse().map_err(|_| bad("a percentage"))?,
            "--tcp-conns" => o.tcp_conns = v.parse().map_err(|_| bad("a count"))?,
            "--tcp-new-ms" => o.tcp_new_ms = v.parse().map_err(|_| bad("milliseconds"))?,
            "--proxy" => {
                let (l, u) = v.split_once(',').ok_or_else(|| bad("LISTEN,UPSTREAM"))?;
                let l = l.parse().map_err(|_| bad("LISTEN,UPSTREAM as IPv4:PORT"))?;
                let u = u.parse().map_err(|_| bad("LISTEN,UPSTREAM as IPv4:PORT"))?;
                o.proxy = Some((l, u));
            }
            "--stall-at" => o.stall_at = num("seconds")?,
            "--stall-for" => o.stall_for = num("seconds")?,
            "--reload-cmd" => o.reload_cmd = Some(v.clone()),
            "--reload-at" => o.reload_at = num("seconds")?,
            "--pid" => o.pid = Some(v.parse().map_err(|_| bad("a pid"))?),
            "--watch" => o.watch.push(v.parse().map_err(|_| bad("a pid"))?),
            "--json" => o.json = Some(v.clone()),
            "--seed" => o.seed = v.parse().map_err(|_| bad("a number"))?,
            _ => return Err(format!("unknown option {flag}")),
        }
        i += 2;
    }
    for (c, f) in o.files.iter().enumerate() {
        // TCP sends only the kinds of names whose weight is above 0.
        if f.is_empty() && o.mix[c] > 0 {
            return Err(format!(
                "--{} FILE is required (or --mix {}=0)",
                CLASSES[c], CLASSES[c]
            ));
        }
    }
    if o.mix[..3].iter().all(|w| *w == 0) && o.mix[TCP] > 0 {
        return Err("--mix: tcp sends blocked, cached and forwarded names: one must be > 0".into());
    }
    if o.secs <= 0.0 || o.interval <= 0.0 || o.warmup < 0.0 || o.timeout <= 0.0 {
        return Err("-l, -i and -t must be > 0, -w >= 0".into());
    }
    o.batch = o.batch.clamp(1, 1024);
    o.socks = o.socks.max(1);
    o.tcp_conns = o.tcp_conns.max(1);
    Ok(o)
}

/// `blocked=70,cached=20,...`: weights of the classes; a class not named is 0.
fn parse_mix(s: &str) -> Result<[u32; 5], String> {
    let mut mix = [0u32; 5];
    for part in s.split(',') {
        let (k, v) = part.split_once('=').ok_or("expected class=weight,...")?;
        let c = CLASSES
            .iter()
            .position(|n| *n == k.trim())
            .ok_or_else(|| format!("unknown class {k} (one of {})", CLASSES.join(", ")))?;
        mix[c] = v
            .trim()
            .parse()
            .map_err(|_| format!("{k}: expected a whole number"))?;
    }
    if mix.iter().all(|w| *w == 0) {
        return Err("every weight is 0".into());
    }
    Ok(mix)
}

/// Classes in a smooth repeating order with the given weights (the smooth
/// weighted round robin of nginx), so every class is spread over the second
/// and not sent in bursts.
fn pattern(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut cur = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in cur.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let (best, _) = cur
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, usize::MAX - i))
            .expect("at least one class");
        cur[best] -= total;
        out.push(best);
    }
    out
}

fn qtype(t: &str) -> u16 {
    match t.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "HTTPS" => 65,
        "ANY" => 255,
        _ => t.trim_start_matches("TYPE").parse().unwrap_or(1),
    }
}

/// Wire-format queries (ID 0, RD set, no EDNS) packed in one buffer.
struct Pool {
    bytes: Vec<u8>,
    ends: Vec<u32>,
    next: usize,
}

impl Pool {
    /// From a dnsperf query file ("name TYPE" a line); `dedup` keeps each
    /// (name, type) once (the lab's hot file repeats its names).
    fn load(path: &str, dedup: bool, start: u64) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut seen = std::collections::HashSet::new();
        let mut p = Self {
            bytes: Vec::new(),
            ends: Vec::new(),
            next: 0,
        };
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let Some(name) = it.next() else { continue };
            if name.starts_with('#') {
                continue;
            }
            let t = it.next().unwrap_or("A");
            if dedup && !seen.insert((name.to_ascii_lowercase(), t.to_ascii_uppercase())) {
                continue;
            }
            let begin = p.bytes.len();
            p.bytes
                .extend_from_slice(&[0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            for label in name
                .trim_end_matches('.')
                .split('.')
                .filter(|l| !l.is_empty())
            {
                let l = &label.as_bytes()[..label.len().min(63)];
                p.bytes.push(l.len() as u8);
                p.bytes.extend_from_slice(l);
            }
            p.bytes.push(0);
            p.bytes.extend_from_slice(&qtype(t).to_be_bytes());
            p.bytes.extend_from_slice(&[0, 1]);
            if p.bytes.len() - begin > 400 {
                p.bytes.truncate(begin);
                continue;
            }
            p.ends.push(p.bytes.len() as u32);
        }
        if p.ends.is_empty() {
            return Err(format!("no queries in {path}"));
        }
        p.next = (start % p.ends.len() as u64) as usize;
        Ok(p)
    }

    fn empty() -> Self {
        Self {
            bytes: Vec::new(),
            ends: Vec::new(),
            next: 0,
        }
    }

    /// The next query, cycling.
    fn take(&mut self) -> &[u8] {
        let i = self.next;
        self.next = if i + 1 == self.ends.len() { 0 } else { i + 1 };
        let begin = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[begin..self.ends[i] as usize]
    }
}

/// Writes `q` into `out` with `id`, and with an OPT record (1232) if `edns`.
fn compose(q: &[u8], id: u16, edns: bool, out: &mut [u8]) -> usize {
    out[..q.len()].copy_from_slice(q);
    out[..2].copy_from_slice(&id.to_be_bytes());
    if !edns {
        return q.len();
    }
    out[11] = 1;
    let opt = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];
    out[q.len()..q.len() + opt.len()].copy_from_slice(&opt);
    q.len() + opt.len()
}

/// A malformed packet of `kind` (see [`KINDS`]) with `id`, into `out`.
fn malformed(kind: usize, id: u16, rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
    const NAME: &[u8] = b"\x0eseized-example\x03com\x00";
    let header = |out: &mut Vec<u8>, qd: u16, ar: u16| {
        out.extend_from_slice(&[0, 0, 0x01, 0]);
        out.extend_from_slice(&qd.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&ar.to_be_bytes());
    };
    let opt = |out: &mut Vec<u8>, version: u8, rdlen: u16| {
        out.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, version, 0, 0]);
        out.extend_from_slice(&rdlen.to_be_bytes());
    };
    out.clear();
    match kind {
        0 => out.extend((0..rng.usize(2..12)).map(|_| rng.u8(..))),
        1 => out.extend((0..rng.usize(12..80)).map(|_| rng.u8(..))),
        2 => {
            header(out, 1, 0);
            out.extend_from_slice(&NAME[..rng.usize(1..NAME.len() - 1)]);
        }
        3 => {
            header(out, 1, 1);
            out.extend_from_slice(NAME);
            out.extend_from_slice(&[0, 1, 0, 1]);
            opt(out, 0, 40);
        }
        4 => {
            header(out, 1, 2);
            out.extend_from_slice(NAME);
            out.extend_from_slice(&[0, 1, 0, 1]);
            opt(out, 0, 0);
            opt(out, 0, 0);
        }
        5 => {
            header(out, 1, 1);
            out.extend_from_slice(NAME);
            out.extend_from_slice(&[0, 1, 0, 1]);
            opt(out, 1, 0);
        }
        6 => header(out, 0, 0),
        _ => {
            header(out, 1, 0);
            out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        }
    }
    out[..2].copy_from_slice(&id.to_be_bytes());
}

/// The rcode of an answer including the extended bits of its OPT record
/// (BADVERS is 16: 1 in the OPT, 0 in the header).
fn full_rcode(p: &[u8]) -> usize {
    let low = usize::from(p[3] & 0x0f);
    let count = |at: usize| usize::from(u16::from_be_bytes([p[at], p[at + 1]]));
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let l = *p.get(at)?;
            if l & 0xc0 == 0xc0 {
                return Some(at + 2);
            }
            if l == 0 {
                return Some(at + 1);
            }
            at += 1 + usize::from(l);
        }
    };
    let walk = || -> Option<usize> {
        let mut at = 12;
        for _ in 0..count(4) {
            at = skip_name(at)? + 4;
        }
        for i in 0..count(6) + count(8) + count(10) {
            let name = skip_name(at)?;
            let rr = p.get(name..name + 10)?;
            if i >= count(6) + count(8) && rr[0..2] == [0, 41] {
                return Some(usize::from(rr[4]) << 4 | low);
            }
            at = name + 10 + usize::from(u16::from_be_bytes([rr[8], rr[9]]));
        }
        None
    };
    walk().unwrap_or(low).min(RCODES.len() - 1)
}

/// A log-linear latency histogram in microseconds: exact below 256 µs,
/// then 32 buckets per power of two (3 %).
#[derive(Clone)]
struct Hist(Vec<u64>);

impl Hist {
    const SIZE: usize = 256 + 32 * 32;

    fn new() -> Self {
        Self(vec![0; Self::SIZE])
    }

    fn bucket(us: u64) -> usize {
        if us < 256 {
            return us as usize;
        }
        let e = 63 - us.leading_zeros() as usize; // >= 8
        (256 + (e - 8) * 32 + ((us >> (e - 5)) & 31) as usize).min(Self::SIZE - 1)
    }

    /// The upper bound of a bucket, in µs.
    fn bound(b: usize) -> u64 {
        if b < 256 {
            return b as u64;
        }
        let e = (b - 256) / 32 + 8;
        let m = ((b - 256) % 32) as u64;
        ((32 + m + 1) << (e - 5)) - 1
    }

    fn add(&mut self, us: u64) {
        self.0[Self::bucket(us)] += 1;
    }

    fn merge(&mut self, o: &Self) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a += b;
        }
    }

    /// The `p` quantile in ms, or None when empty.
    fn quantile(&self, p: f64) -> Option<f64> {
        let n: u64 = self.0.iter().sum();
        if n == 0 {
            return None;
        }
        let goal = ((p * n as f64).ceil() as u64).max(1);
        let mut acc = 0;
        for (b, c) in self.0.iter().enumerate() {
            acc += c;
            if acc >= goal {
                return Some(Self::bound(b) as f64 / 1000.0);
            }
        }
        None
    }
}

#[derive(Clone)]
struct ClassStats {
    sent: u64,
    answered: u64,
    /// No answer within the timeout to a query that is owed one.
    lost: u64,
    /// Malformed packets with no answer (none is owed).
    unanswered: u64,
    truncated: u64,
    rcodes: [u64; RCODES.len()],
    hist: Hist,
}

impl ClassStats {
    fn new() -> Self {
        Self {
            sent: 0,
            answered: 0,
            lost: 0,
            unanswered: 0,
            truncated: 0,
            rcodes: [0; RCODES.len()],
            hist: Hist::new(),
        }
    }

    fn merge(&mut self, o: &Self) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.lost += o.lost;
        self.unanswered += o.unanswered;
        self.truncated += o.truncated;
        for (a, b) in self.rcodes.iter_mut().zip(&o.rcodes) {
            *a += b;
        }
        self.hist.merge(&o.hist);
    }
}

/// What the machine looked like at one moment (`/proc`).
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kb: u64,
    hwm_kb: u64,
    server_ticks: u64,
    self_ticks: u64,
    watch_ticks: u64,
    busy_ticks: u64,
    load1: f64,
    /// Datagrams the kernel dropped because a receive buffer was full
    /// (`/proc/net/udp`): the server's sockets (its listening ones and those
    /// it forwards from), this generator's, the proxy's.
    drops: Drops,
}

#[derive(Clone, Copy, Default)]
struct Drops {
    server: u64,
    generator: u64,
    proxy: u64,
}

/// The local ports whose drops count as whose.
#[derive(Default)]
struct Ports {
    server: u16,
    /// The proxy's listening port: the server's upstream sockets are
    /// connected to it.
    proxy_listen: u16,
    proxy: Vec<u16>,
    generator: Vec<u16>,
}

/// Sums the `drops` column of `/proc/net/udp` by owner.
fn udp_drops(ports: &Ports) -> Drops {
    let mut d = Drops::default();
    let Ok(text) = std::fs::read_to_string("/proc/net/udp") else {
        return d;
    };
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            .unwrap_or(0)
    };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        let (local, remote) = (port(f[1]), port(f[2]));
        let drops: u64 = f[f.len() - 1].parse().unwrap_or(0);
        if local == ports.server || (ports.proxy_listen != 0 && remote == ports.proxy_listen) {
            d.server += drops;
        } else if ports.generator.contains(&local) {
            d.generator += drops;
        } else if ports.proxy.contains(&local) {
            d.proxy += drops;
        }
    }
    d
}

fn proc_ticks(pid: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the ")" that ends the command name: utime and stime are
    // the 14th and 15th of the line, the 12th and 13th after it.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn sample(o: &Opts, ports: &Ports) -> Sample {
    let mut s = Sample {
        drops: udp_drops(ports),
        ..Sample::default()
    };
    if let Some(pid) = o.pid {
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let kb = |key: &str| {
                st.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            s.rss_kb = kb("VmRSS:");
            s.hwm_kb = kb("VmHWM:");
        }
        s.server_ticks = proc_ticks(&pid.to_string());
    }
    s.self_ticks = proc_ticks("self");
    s.watch_ticks = o.watch.iter().map(|p| proc_ticks(&p.to_string())).sum();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat")
        && let Some(cpu) = stat.lines().next()
    {
        let v: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: all but idle, iowait.
        s.busy_ticks = v
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
            .map(|(_, x)| x)
            .sum();
    }
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        s.load1 = l
            .split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0.0);
    }
    s
}

/// One interval: its queries' fates, the events in it, the machine at its end.
struct Row {
    label: String,
    start: f64,
    len: f64,
    classes: Vec<ClassStats>,
    /// Per malformed kind: sent, answered, and the answers by rcode.
    kinds: Vec<(u64, u64, [u64; RCODES.len()])>,
    /// Queries due that could not be sent (no free ID, send buffer full,
    /// TCP backlog): the generator, not the server, fell behind.
    skipped: u64,
    /// How far behind its schedule the generator was at worst, in µs.
    lag_max_us: u64,
    tcp_connects: u64,
    tcp_connect_failures: u64,
    /// Connections closed by the server with queries in flight.
    tcp_closed: u64,
    proxy_forwarded: u64,
    proxy_dropped: u64,
    stall: Option<(f64, f64)>,
    reload: Option<Reload>,
    end: Sample,
}

#[derive(Clone)]
struct Reload {
    at: f64,
    took_ms: f64,
    ok: bool,
    said: String,
}

/// The IDs in flight on one socket or connection.
struct Table {
    /// IDs to use, oldest freed first: an ID comes back only after every
    /// other one, so a very late answer is unlikely to meet a new query.
    free: VecDeque<u16>,
    slots: Vec<Slot>,
    order: VecDeque<(u16, u32)>,
    inflight: usize,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    sent_ns: u64,
    seq: u32,
    row: u16,
    class: u8,
    kind: u8,
    live: bool,
}

impl Table {
    fn new(size: usize) -> Self {
        Self {
            free: (0..size.min(65536) as u32).map(|i| i as u16).collect(),
            slots: vec![Slot::default(); size.min(65536)],
            order: VecDeque::new(),
            inflight: 0,
        }
    }

    fn take(&mut self, now: u64, row: usize, class: usize, kind: usize) -> Option<u16> {
        let id = self.free.pop_front()?;
        let s = &mut self.slots[usize::from(id)];
        s.sent_ns = now;
        s.seq = s.seq.wrapping_add(1);
        s.row = row as u16;
        s.class = class as u8;
        s.kind = kind as u8;
        s.live = true;
        self.order.push_back((id, s.seq));
        self.inflight += 1;
        Some(id)
    }

    /// Gives back an ID whose query was not sent after all.
    fn untake(&mut self, id: u16) {
        if let Some(s) = self.slots.get_mut(usize::from(id))
            && s.live
        {
            s.live = false;
            self.free.push_back(id);
            self.inflight -= 1;
        }
    }

    /// The query an answer with `id` belongs to, if it is still waited for.
    fn finish(&mut self, id: u16) -> Option<Slot> {
        let s = self.slots.get_mut(usize::from(id))?;
        if !s.live {
            return None;
        }
        s.live = false;
        self.free.push_back(id);
        self.inflight -= 1;
        Some(*s)
    }

    /// Every query sent before `cutoff` and still waited for.
    fn expire(&mut self, cutoff: u64, mut f: impl FnMut(Slot)) {
        while let Some(&(id, seq)) = self.order.front() {
            let s = self.slots[usize::from(id)];
            if s.live && s.seq == seq {
                if s.sent_ns >= cutoff {
                    break;
                }
                self.slots[usize::from(id)].live = false;
                self.free.push_back(id);
                self.inflight -= 1;
                f(s);
            }
            self.order.pop_front();
        }
    }
}

/// A TCP connection to the server: queries written with their length,
/// answers read as they come, in any order.
struct Conn {
    s: TcpStream,
    w: Vec<u8>,
    wpos: usize,
    r: Vec<u8>,
    table: Table,
    /// Short connections close once this many answers arrived.
    close_after: Option<u32>,
    answers: u32,
    dead: bool,
}

impl Conn {
    fn open(server: SocketAddrV4, table: usize, close_after: Option<u32>) -> Option<Self> {
        let s = TcpStream::connect_timeout(&SocketAddr::V4(server), Duration::from_secs(1)).ok()?;
        s.set_nonblocking(true).ok()?;
        s.set_nodelay(true).ok()?;
        Some(Self {
            s,
            w: Vec::new(),
            wpos: 0,
            r: Vec::with_capacity(65536),
            table: Table::new(table),
            close_after,
            answers: 0,
            dead: false,
        })
    }

    fn backlog(&self) -> usize {
        self.w.len() - self.wpos
    }

    fn flush(&mut self) {
        while self.wpos < self.w.len() {
            match self.s.write(&self.w[self.wpos..]) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        if self.wpos == self.w.len() {
            self.w.clear();
            self.wpos = 0;
        } else if self.wpos > 1 << 20 {
            self.w.drain(..self.wpos);
            self.wpos = 0;
        }
    }

    /// Reads what has arrived; calls `f` with each whole message.
    fn read(&mut self, mut f: impl FnMut(&mut Table, &[u8])) {
        let mut buf = [0u8; 16384];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.r.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        let mut at = 0;
        while self.r.len() - at >= 2 {
            let len = usize::from(u16::from_be_bytes([self.r[at], self.r[at + 1]]));
            if self.r.len() - at - 2 < len {
                break;
            }
            f(&mut self.table, &self.r[at + 2..at + 2 + len]);
            self.answers += 1;
            at += 2 + len;
        }
        self.r.drain(..at);
    }
}

/// The stalling proxy's counters.
#[derive(Default)]
struct ProxyStats {
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// The running proxy: its counters, its sockets' ports, its two threads.
struct Proxy {
    stats: Arc<ProxyStats>,
    ports: Vec<u16>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A UDP proxy between the server and its upstream that drops everything
/// inside `stalls` (ns since `t0`). IDs are rewritten to its own, so
/// answers find their way back to the server's many source ports.
fn start_proxy(
    listen: SocketAddrV4,
    upstream: SocketAddrV4,
    stalls: Vec<(u64, u64)>,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Result<Proxy, String> {
    let l = UdpSocket::bind(listen).map_err(|e| format!("proxy: bind {listen}: {e}"))?;
    let u = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("proxy: bind: {e}"))?;
    u.connect(upstream)
        .map_err(|e| format!("proxy: connect {upstream}: {e}"))?;
    for s in [&l, &u] {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| format!("proxy: {e}"))?;
        set_rcvbuf(s.as_raw_fd());
    }
    let mut ports = Vec::new();
    for s in [&l, &u] {
        ports.push(s.local_addr().map_err(|e| format!("proxy: {e}"))?.port());
    }
    let stats = Arc::new(ProxyStats::default());
    // Per proxy ID: the server's address (IPv4 << 32 | port << 16) and its ID.
    let table: Arc<Vec<AtomicU64>> = Arc::new((0..65536).map(|_| AtomicU64::new(0)).collect());
    let stalls = Arc::new(stalls);
    let stalled = move |stalls: &[(u64, u64)]| {
        let now = t0.elapsed().as_nanos() as u64;
        stalls.iter().any(|(a, b)| (*a..*b).contains(&now))
    };
    let (l2, u2) = (
        l.try_clone().map_err(|e| format!("proxy: {e}"))?,
        u.try_clone().map_err(|e| format!("proxy: {e}"))?,
    );
    let (st, tb, sl, stop1) = (stats.clone(), table.clone(), stalls.clone(), stop.clone());
    let to_upstream = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut next = 0u16;
        while !stop1.load(Ordering::Relaxed) {
            let Ok((n, SocketAddr::V4(from))) = l.recv_from(&mut buf) else {
                continue;
            };
            if n < 12 {
                continue;
            }
            if stalled(&sl) {
                st.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let who = u64::from(u32::from(*from.ip())) << 32
                | u64::from(from.port()) << 16
                | u64::from(id);
            tb[usize::from(next)].store(who, Ordering::Relaxed);
            buf[..2].copy_from_slice(&next.to_be_bytes());
            next = next.wrapping_add(1);
            if u.send(&buf[..n]).is_ok() {
                st.forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let (st, stop2) = (stats.clone(), stop);
    let to_server = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while !stop2.load(Ordering::Relaxed) {
            let Ok(n) = u2.recv(&mut buf) else { continue };
            if n < 12 {
                continue;
            }
            let who =
                table[usize::from(u16::from_be_bytes([buf[0], buf[1]]))].swap(0, Ordering::Relaxed);
            if who == 0 {
                continue;
            }
            if stalled(&stalls) {
                st.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            buf[..2].copy_from_slice(&(who as u16).to_be_bytes());
            let to = SocketAddrV4::new(((who >> 32) as u32).into(), (who >> 16) as u16);
            let _ = l2.send_to(&buf[..n], to);
        }
    });
    Ok(Proxy {
        stats,
        ports,
        threads: vec![to_upstream, to_server],
    })
}

fn set_rcvbuf(fd: i32) {
    let sz: libc::c_int = 4 << 20;
    // SAFETY: a valid fd and a c_int option value of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&sz as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn fail(e: String) -> ! {
    eprintln!("soak: {e}");
    std::process::exit(2);
}

/// Room for one received datagram's control messages (its timestamp).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

/// Batches for `sendmmsg`/`recvmmsg`: headers pointing at their buffers,
/// and room for the kernel's receive timestamp of each datagram.
struct Batch {
    bufs: Vec<[u8; 512]>,
    rbufs: Vec<[u8; 4096]>,
    controls: Vec<Control>,
    siov: Vec<libc::iovec>,
    riov: Vec<libc::iovec>,
    smsgs: Vec<libc::mmsghdr>,
    rmsgs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new(b: usize) -> Self {
        let mut x = Self {
            bufs: vec![[0u8; 512]; b],
            rbufs: vec![[0u8; 4096]; b],
            controls: vec![Control([0; 64]); b],
            // SAFETY (for the zeroed values): plain C structs for which all
            // zero bytes are valid.
            siov: (0..b).map(|_| unsafe { zeroed() }).collect(),
            riov: (0..b).map(|_| unsafe { zeroed() }).collect(),
            smsgs: (0..b).map(|_| unsafe { zeroed() }).collect(),
            rmsgs: (0..b).map(|_| unsafe { zeroed() }).collect(),
        };
        for i in 0..b {
            x.siov[i].iov_base = x.bufs[i].as_mut_ptr().cast();
            x.riov[i] = libc::iovec {
                iov_base: x.rbufs[i].as_mut_ptr().cast(),
                iov_len: 4096,
            };
            x.smsgs[i].msg_hdr.msg_iov = &mut x.siov[i];
            x.smsgs[i].msg_hdr.msg_iovlen = 1;
            x.rmsgs[i].msg_hdr.msg_iov = &mut x.riov[i];
            x.rmsgs[i].msg_hdr.msg_iovlen = 1;
            x.rmsgs[i].msg_hdr.msg_control = x.controls[i].0.as_mut_ptr().cast();
        }
        x
    }

    /// The kernel's receive time of datagram `i` (ns, CLOCK_REALTIME).
    fn rx_time(&self, i: usize) -> Option<u64> {
        let h = &self.rmsgs[i].msg_hdr;
        // SAFETY: the header's control buffer is ours, msg_controllen was
        // set by the kernel to what it wrote; CMSG_* walk within it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = libc::CMSG_DATA(c).cast::<libc::timespec>().read_unaligned();
                    return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }
}

fn realtime_ns() -> u64 {
    // SAFETY: zero is a valid timespec; clock_gettime writes into it.
    let mut ts: libc::timespec = unsafe { zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One second of the run, for the timeline in the JSON file.
#[derive(Clone, Copy, Default)]
struct Second {
    sent: u64,
    answered: u64,
    lost: u64,
    servfail: u64,
    lag_max_us: u64,
    /// The machine at the end of the second.
    end: Sample,
}

/// Where every query's fate is counted: by interval and by second.
struct Stats {
    rows: Vec<Row>,
    secs: Vec<Second>,
}

impl Stats {
    fn sec(&mut self, sent_ns: u64) -> &mut Second {
        let i = ((sent_ns / 1_000_000_000) as usize).min(self.secs.len() - 1);
        &mut self.secs[i]
    }

    fn sent(&mut self, row: usize, class: usize, now: u64) {
        self.rows[row].classes[class].sent += 1;
        if class != MALFORMED {
            self.sec(now).sent += 1;
        }
    }

    fn answer(&mut self, slot: Slot, flags: [u8; 2], rcode: usize, latency_ns: u64) {
        let class = usize::from(slot.class);
        let row = &mut self.rows[usize::from(slot.row)];
        let c = &mut row.classes[class];
        c.answered += 1;
        c.truncated += u64::from(flags[0] & 0x02 != 0);
        c.rcodes[rcode] += 1;
        c.hist.add(latency_ns / 1000);
        if class == MALFORMED {
            let k = &mut row.kinds[usize::from(slot.kind)];
            k.1 += 1;
            k.2[rcode] += 1;
        } else {
            let s = self.sec(slot.sent_ns);
            s.answered += 1;
            s.servfail += u64::from(rcode == 2);
        }
    }

    fn expired(&mut self, slot: Slot) {
        let c = &mut self.rows[usize::from(slot.row)].classes[usize::from(slot.class)];
        if usize::from(slot.class) == MALFORMED {
            c.unanswered += 1;
        } else {
            c.lost += 1;
            self.sec(slot.sent_ns).lost += 1;
        }
    }
}

/// Everything the sending loop keeps.
struct Run {
    o: Opts,
    /// CLOCK_REALTIME at the start: times are ns since then, on the clock
    /// of the kernel's receive timestamps.
    t0: u64,
    pools: [Pool; 3],
    order: Vec<usize>,
    tcp_order: Vec<usize>,
    socks: Vec<(UdpSocket, Table)>,
    bad: (UdpSocket, Table),
    conns: Vec<Conn>,
    short: Vec<Conn>,
    stats: Stats,
    /// (start, end) of each row, ns since t0.
    bounds: Vec<(u64, u64)>,
    rng: fastrand::Rng,
    issued: u64,
    pi: usize,
    tpi: usize,
    ki: usize,
    edns_acc: u32,
    rr: usize,
    trr: usize,
    bad_buf: Vec<u8>,
}

impl Run {
    fn now(&self) -> u64 {
        realtime_ns().saturating_sub(self.t0)
    }

    /// Sends one batch of what is due (at most `room` entries of the class
    /// order); returns how many entries it used.
    fn send_batch(&mut self, batch: &mut Batch, row: usize, room: usize) -> usize {
        let now = self.now();
        let b = self.o.batch.min(room);
        // A socket with IDs to spare for a whole batch.
        let n_socks = self.socks.len();
        let sk = (0..n_socks)
            .map(|k| (self.rr + k) % n_socks)
            .find(|i| self.socks[*i].1.free.len() >= b);
        self.rr = (self.rr + 1) % n_socks;
        let mut ids = [0u16; 1024];
        let mut k = 0;
        for _ in 0..b {
            let class = self.order[self.pi];
            self.pi = (self.pi + 1) % self.order.len();
            match class {
                MALFORMED => self.send_malformed(now, row),
                TCP => self.send_tcp(now, row),
                _ => {
                    let Some(id) = sk.and_then(|si| self.socks[si].1.take(now, row, class, 0))
                    else {
                        self.stats.rows[row].skipped += 1;
                        continue;
                    };
                    self.edns_acc += self.o.edns_percent;
                    let edns = self.edns_acc >= 100;
                    if edns {
                        self.edns_acc -= 100;
                    }
                    let q = self.pools[class].take();
                    batch.siov[k].iov_len = compose(q, id, edns, &mut batch.bufs[k]);
                    ids[k] = id;
                    k += 1;
                    self.stats.sent(row, class, now);
                }
            }
        }
        if let Some(si) = sk
            && k > 0
        {
            let fd = self.socks[si].0.as_raw_fd();
            // SAFETY: k <= batch headers, each pointing at a live buffer.
            let r = unsafe { libc::sendmmsg(fd, batch.smsgs.as_mut_ptr(), k as u32, 0) };
            let sent = if r < 0 { 0 } else { r as usize };
            for &id in &ids[sent..k] {
                let class = usize::from(self.socks[si].1.slots[usize::from(id)].class);
                self.socks[si].1.untake(id);
                self.stats.rows[row].classes[class].sent -= 1;
                self.stats.sec(now).sent -= 1;
                self.stats.rows[row].skipped += 1;
            }
        }
        b
    }

    fn send_malformed(&mut self, now: u64, row: usize) {
        let kind = self.ki;
        self.ki = (self.ki + 1) % KINDS.len();
        let Some(id) = self.bad.1.take(now, row, MALFORMED, kind) else {
            self.stats.rows[row].skipped += 1;
            return;
        };
        let mut buf = std::mem::take(&mut self.bad_buf);
        malformed(kind, id, &mut self.rng, &mut buf);
        if self.bad.0.send(&buf).is_ok() {
            self.stats.rows[row].kinds[kind].0 += 1;
            self.stats.sent(row, MALFORMED, now);
        } else {
            self.bad.1.untake(id);
            self.stats.rows[row].skipped += 1;
        }
        self.bad_buf = buf;
    }

    fn send_tcp(&mut self, now: u64, row: usize) {
        let n = self.conns.len();
        let ci = (0..n).map(|k| (self.trr + k) % n).find(|i| {
            let c = &self.conns[*i];
            !c.dead && !c.table.free.is_empty() && c.backlog() < 256 * 1024
        });
        self.trr = (self.trr + 1) % n.max(1);
        let Some(ci) = ci else {
            self.stats.rows[row].skipped += 1;
            return;
        };
        let class = self.tcp_order[self.tpi];
        self.tpi = (self.tpi + 1) % self.tcp_order.len();
        let q = self.pools[class].take();
        push_tcp(&mut self.conns[ci], q, now, row);
        self.stats.sent(row, TCP, now);
    }

    /// A new short connection with two queries, closed once answered.
    fn open_short(&mut self, row: usize) {
        self.stats.rows[row].tcp_connects += 1;
        let Some(mut c) = Conn::open(self.o.server, 16, Some(2)) else {
            self.stats.rows[row].tcp_connect_failures += 1;
            return;
        };
        let now = self.now();
        for _ in 0..2 {
            let class = self.tcp_order[self.tpi];
            self.tpi = (self.tpi + 1) % self.tcp_order.len();
            push_tcp(&mut c, self.pools[class].take(), now, row);
            self.stats.sent(row, TCP, now);
        }
        c.flush();
        self.short.push(c);
    }

    /// Reads every answer waiting, writes what the TCP connections still
    /// have to send, and replaces connections the server closed. Returns
    /// the answers read.
    fn receive(&mut self, batch: &mut Batch, row: usize) -> usize {
        let mut got = 0;
        let b = self.o.batch;
        for si in 0..self.socks.len() {
            loop {
                for m in batch.rmsgs.iter_mut() {
                    m.msg_hdr.msg_controllen = size_of::<Control>() as _;
                }
                let fd = self.socks[si].0.as_raw_fd();
                // SAFETY: b headers pointing at b receive buffers of 4096
                // bytes and b control buffers of 64.
                let r = unsafe {
                    libc::recvmmsg(
                        fd,
                        batch.rmsgs.as_mut_ptr(),
                        b as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if r <= 0 {
                    break;
                }
                let late = self.now();
                for i in 0..r as usize {
                    let len = (batch.rmsgs[i].msg_len as usize).min(4096);
                    let p = &batch.rbufs[i][..len];
                    if p.len() < 12 {
                        continue;
                    }
                    let id = u16::from_be_bytes([p[0], p[1]]);
                    if let Some(slot) = self.socks[si].1.finish(id) {
                        let at = batch.rx_time(i).map_or(late, |t| t.saturating_sub(self.t0));
                        let lat = at.saturating_sub(slot.sent_ns);
                        self.stats
                            .answer(slot, [p[2], p[3]], usize::from(p[3] & 0x0f), lat);
                        got += 1;
                    }
                }
                if (r as usize) < b {
                    break;
                }
            }
        }
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.bad.0.recv(&mut buf) {
            if n >= 12 {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                if let Some(slot) = self.bad.1.finish(id) {
                    let lat = self.now().saturating_sub(slot.sent_ns);
                    let rc = full_rcode(&buf[..n]);
                    self.stats.answer(slot, [buf[2], buf[3]], rc, lat);
                    got += 1;
                }
            }
        }
        let stats = &mut self.stats;
        let now = realtime_ns().saturating_sub(self.t0);
        for c in self.conns.iter_mut().chain(self.short.iter_mut()) {
            if c.backlog() > 0 {
                c.flush();
            }
            c.read(|table, p| {
                if p.len() >= 12
                    && let Some(slot) = table.finish(u16::from_be_bytes([p[0], p[1]]))
                {
                    let lat = now.saturating_sub(slot.sent_ns);
                    stats.answer(slot, [p[2], p[3]], usize::from(p[3] & 0x0f), lat);
                    got += 1;
                }
            });
            // A connection the server closed: what it still owed is lost.
            if c.dead && c.table.inflight > 0 {
                stats.rows[row].tcp_closed += 1;
                c.table.expire(u64::MAX, |s| stats.expired(s));
            }
        }
        self.short
            .retain(|c| !c.dead && c.close_after.is_none_or(|n| c.answers < n));
        for c in self.conns.iter_mut() {
            if c.dead {
                self.stats.rows[row].tcp_connects += 1;
                match Conn::open(self.o.server, 65536, None) {
                    Some(n) => *c = n,
                    None => self.stats.rows[row].tcp_connect_failures += 1,
                }
            }
        }
        got
    }

    fn expire(&mut self, cutoff: u64) {
        let stats = &mut self.stats;
        for (_, t) in self.socks.iter_mut() {
            t.expire(cutoff, |s| stats.expired(s));
        }
        self.bad.1.expire(cutoff, |s| stats.expired(s));
        for c in self.conns.iter_mut().chain(self.short.iter_mut()) {
            c.table.expire(cutoff, |s| stats.expired(s));
        }
    }

    fn inflight(&self) -> usize {
        self.socks.iter().map(|s| s.1.inflight).sum::<usize>()
            + self.bad.1.inflight
            + self
                .conns
                .iter()
                .chain(&self.short)
                .map(|c| c.table.inflight)
                .sum::<usize>()
    }

    fn udp_inflight(&self) -> usize {
        self.socks.iter().map(|s| s.1.inflight).sum()
    }
}

fn push_tcp(conn: &mut Conn, q: &[u8], now: u64, row: usize) {
    let Some(id) = conn.table.take(now, row, TCP, 0) else {
        return;
    };
    let at = conn.w.len();
    conn.w.extend_from_slice(&(q.len() as u16).to_be_bytes());
    conn.w.extend_from_slice(q);
    conn.w[at + 2..at + 4].copy_from_slice(&id.to_be_bytes());
}

fn udp_socket(server: SocketAddrV4) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail(format!("bind: {e}")));
    s.connect(server)
        .unwrap_or_else(|e| fail(format!("connect {server}: {e}")));
    s.set_nonblocking(true)
        .unwrap_or_else(|e| fail(e.to_string()));
    set_rcvbuf(s.as_raw_fd());
    s
}

fn main() {
    let o = opts().unwrap_or_else(|e| fail(e));
    let mut pools = [Pool::empty(), Pool::empty(), Pool::empty()];
    for (c, pool) in pools.iter_mut().enumerate() {
        if o.mix[c] > 0 {
            let start = o.seed.wrapping_mul(7919 + c as u64);
            *pool = Pool::load(&o.files[c], c == CACHED, start).unwrap_or_else(|e| fail(e));
        }
    }

    // The rows: a warm-up (if any), then one per interval.
    let ns = |s: f64| (s * 1e9) as u64;
    let mut bounds = Vec::new();
    let mut labels = Vec::new();
    if o.warmup > 0.0 {
        bounds.push((0, ns(o.warmup)));
        labels.push("warm-up".to_string());
    }
    let end = o.warmup + o.secs;
    let mut t = o.warmup;
    while t < end - 1e-9 {
        let e = (t + o.interval).min(end);
        bounds.push((ns(t), ns(e)));
        labels.push(
            bounds
                .len()
                .saturating_sub(usize::from(o.warmup > 0.0))
                .to_string(),
        );
        t = e;
    }
    // The events: a stall and a reload at fixed offsets in each row that
    // has room for them.
    let stalls: Vec<(u64, u64)> = bounds
        .iter()
        .filter(|(s, e)| o.stall_for > 0.0 && s + ns(o.stall_at + o.stall_for) <= *e)
        .map(|(s, _)| (s + ns(o.stall_at), s + ns(o.stall_at + o.stall_for)))
        .collect();
    let reloads: Vec<(usize, u64)> = bounds
        .iter()
        .enumerate()
        .filter(|(_, (s, e))| o.reload_cmd.is_some() && s + ns(o.reload_at) < *e)
        .map(|(i, (s, _))| (i, s + ns(o.reload_at)))
        .collect();

    let socks: Vec<(UdpSocket, Table)> = (0..o.socks)
        .map(|_| {
            let s = udp_socket(o.server);
            let on: libc::c_int = 1;
            // SAFETY: a valid fd and a c_int option value of the size given.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&on as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            (s, Table::new(65536))
        })
        .collect();
    let bad = udp_socket(o.server);
    let conns: Vec<Conn> = if o.mix[TCP] > 0 {
        (0..o.tcp_conns)
            .map(|_| {
                Conn::open(o.server, 65536, None)
                    .unwrap_or_else(|| fail(format!("cannot connect over TCP to {}", o.server)))
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut ports = Ports {
        server: o.server.port(),
        generator: socks
            .iter()
            .map(|s| &s.0)
            .chain(std::iter::once(&bad))
            .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
            .collect(),
        ..Ports::default()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let t0 = realtime_ns();
    let mut threads = Vec::new();
    let proxy = o.proxy.map(|(l, u)| {
        let p =
            start_proxy(l, u, stalls.clone(), started, stop.clone()).unwrap_or_else(|e| fail(e));
        threads.extend(p.threads);
        ports.proxy_listen = l.port();
        ports.proxy = p.ports;
        p.stats
    });
    let reload_log: Arc<Mutex<Vec<(usize, Reload)>>> = Arc::new(Mutex::new(Vec::new()));

    let rows = labels
        .iter()
        .zip(&bounds)
        .map(|(label, (s, e))| Row {
            label: label.clone(),
            start: *s as f64 / 1e9,
            len: (e - s) as f64 / 1e9,
            classes: vec![ClassStats::new(); CLASSES.len()],
            kinds: vec![(0, 0, [0; RCODES.len()]); KINDS.len()],
            skipped: 0,
            lag_max_us: 0,
            tcp_connects: 0,
            tcp_connect_failures: 0,
            tcp_closed: 0,
            proxy_forwarded: 0,
            proxy_dropped: 0,
            stall: stalls
                .iter()
                .find(|(a, _)| (*s..*e).contains(a))
                .map(|(a, b)| (*a as f64 / 1e9, *b as f64 / 1e9)),
            reload: None,
            end: Sample::default(),
        })
        .collect();
    let first = sample(&o, &ports);
    let timeout_ns = ns(o.timeout);
    let rate = o.rate;
    let tcp_new = o.tcp_new_ms * 1_000_000;
    let mut run = Run {
        pools,
        order: pattern(&o.mix),
        tcp_order: pattern(&o.mix[..3]),
        socks,
        bad: (bad, Table::new(65536)),
        conns,
        short: Vec::new(),
        stats: Stats {
            rows,
            secs: vec![Second::default(); end.ceil() as usize + 1],
        },
        bounds,
        rng: fastrand::Rng::with_seed(o.seed),
        issued: 0,
        pi: 0,
        tpi: 0,
        ki: 0,
        edns_acc: 0,
        rr: 0,
        trr: 0,
        bad_buf: Vec::with_capacity(128),
        t0,
        o,
    };
    let mut batch = Batch::new(run.o.batch);
    let mut row = 0;
    let mut sec = 0;
    let mut next_reload = 0;
    let mut last_tick = 0u64;
    let mut next_short = tcp_new;
    let mut proxy_seen = (0u64, 0u64);
    let end_ns = ns(end);
    let mut reload_threads = Vec::new();
    let mut last = first;
    let (mut tokens, mut last_send) = (0.0f64, 0u64);
    loop {
        let now = run.now();
        // The machine at the end of each second and each row.
        while sec < run.stats.secs.len() && now >= (sec as u64 + 1) * 1_000_000_000 {
            run.stats.secs[sec].end = sample(&run.o, &ports);
            sec += 1;
        }
        while row < run.stats.rows.len() && now >= run.bounds[row].1 {
            let s = sample(&run.o, &ports);
            let r = &mut run.stats.rows[row];
            if let Some(p) = &proxy {
                let f = p.forwarded.load(Ordering::Relaxed);
                let d = p.dropped.load(Ordering::Relaxed);
                r.proxy_forwarded = f - proxy_seen.0;
                r.proxy_dropped = d - proxy_seen.1;
                proxy_seen = (f, d);
            }
            r.end = s;
            progress(r, &last);
            last = s;
            row += 1;
        }
        let sending = row < run.stats.rows.len();
        if !sending && (run.inflight() == 0 || now > end_ns + timeout_ns + 1_000_000_000) {
            break;
        }
        // Events.
        if next_reload < reloads.len() && now >= reloads[next_reload].1 {
            let (r, at) = reloads[next_reload];
            let cmd = run.o.reload_cmd.clone().unwrap_or_default();
            let log = reload_log.clone();
            reload_threads.push(std::thread::spawn(move || {
                let rel = reload(&cmd, r, at);
                if let Ok(mut l) = log.lock() {
                    l.push((r, rel));
                }
            }));
            next_reload += 1;
        }
        if sending && tcp_new > 0 && run.o.mix[TCP] > 0 && now >= next_short {
            next_short += tcp_new;
            run.open_short(row);
        }
        // Send what is due.
        let mut did = 0;
        if sending {
            let due = if rate > 0.0 {
                let target = (rate * now as f64 / 1e9) as u64;
                let behind = target.saturating_sub(run.issued);
                if behind > 0 {
                    let due_at = (run.issued as f64 / rate * 1e9) as u64;
                    let lag = now.saturating_sub(due_at) / 1000;
                    let r = &mut run.stats.rows[row];
                    r.lag_max_us = r.lag_max_us.max(lag);
                    let s = run.stats.sec(now);
                    s.lag_max_us = s.lag_max_us.max(lag);
                }
                // Behind (this thread was not scheduled): keep at most
                // MAX_BEHIND of it, count the rest as skipped, and catch up
                // at no more than CATCH_UP times the rate, so that a pause
                // of the generator never reaches the server as a burst
                // (at 80 % of the peak, 1.25 x is the peak).
                let keep = (rate * MAX_BEHIND) as u64;
                if behind > keep {
                    run.stats.rows[row].skipped += behind - keep;
                    run.issued += behind - keep;
                }
                let dt = now.saturating_sub(last_send) as f64 / 1e9;
                last_send = now;
                let depth = (rate * CATCH_UP * 0.002).max(run.o.batch as f64);
                tokens = (tokens + rate * CATCH_UP * dt).min(depth);
                let due = target.saturating_sub(run.issued).min(tokens as u64);
                tokens -= due as f64;
                due
            } else {
                run.o.outstanding.saturating_sub(run.udp_inflight()) as u64
            };
            let mut left = due.min(16 * run.o.batch as u64) as usize;
            while left > 0 {
                let used = run.send_batch(&mut batch, row, left);
                run.issued += used as u64;
                left -= used;
                did += used;
            }
        }
        for c in run.conns.iter_mut().chain(run.short.iter_mut()) {
            if c.backlog() > 0 {
                c.flush();
            }
        }
        did += run.receive(&mut batch, row.min(run.stats.rows.len() - 1));
        let now = run.now();
        if now - last_tick > 10_000_000 {
            last_tick = now;
            run.expire(now.saturating_sub(timeout_ns));
        }
        // Paced: sleep until the next batch is due (at most 200 µs: the
        // answers wait in the socket buffers with their timestamps).
        // Closed loop: give the core away only when there was nothing to do.
        if rate > 0.0 && sending {
            let next = ((run.issued + run.o.batch as u64) as f64 / rate * 1e9) as u64;
            let wait = next.saturating_sub(now).min(200_000);
            if wait > 0 {
                std::thread::sleep(Duration::from_nanos(wait));
            }
        } else if !sending {
            std::thread::sleep(Duration::from_millis(1));
        } else if did == 0 {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in reload_threads {
        let _ = t.join();
    }
    if let Ok(l) = reload_log.lock() {
        for (r, rel) in l.iter() {
            run.stats.rows[*r].reload = Some(rel.clone());
        }
    }
    for t in threads {
        let _ = t.join();
    }
    report(&run, &first);
}

/// Runs the reload command for row `r`; its last line of output is kept.
fn reload(cmd: &str, r: usize, at: u64) -> Reload {
    let started = Instant::now();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("SOAK_INTERVAL", r.to_string())
        .output();
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (ok, said) = match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            let last = text.lines().rev().find(|l| !l.trim().is_empty());
            (o.status.success(), last.unwrap_or("").trim().to_string())
        }
        Err(e) => (false, e.to_string()),
    };
    Reload {
        at: at as f64 / 1e9,
        took_ms,
        ok,
        said,
    }
}

fn cpu_pct(ticks: u64, secs: f64) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    100.0 * ticks as f64 / hz / secs.max(1e-9)
}

fn progress(r: &Row, prev: &Sample) {
    let sent: u64 = r.classes.iter().map(|c| c.sent).sum();
    let answered: u64 = r.classes.iter().map(|c| c.answered).sum();
    let sf: u64 = r.classes.iter().map(|c| c.rcodes[2]).sum();
    eprintln!(
        "soak: interval {} done: {} sent ({:.0}/s), {} answered so far, {} SERVFAIL, server UDP drops {}, RSS {:.1} MiB, server CPU {:.0} %, load {:.2}",
        r.label,
        sent,
        sent as f64 / r.len,
        answered,
        sf,
        r.end.drops.server - prev.drops.server,
        r.end.rss_kb as f64 / 1024.0,
        cpu_pct(r.end.server_ticks - prev.server_ticks, r.len),
        r.end.load1
    );
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

fn rcode_map(rc: &[u64]) -> serde_json::Value {
    serde_json::Value::Object(
        rc.iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (RCODES[i].to_string(), (*n).into()))
            .collect(),
    )
}

/// CPU use over a stretch, in % of one core.
struct Cpu {
    server: f64,
    generator: f64,
    watched: f64,
    other: f64,
}

fn cpu_between(a: &Sample, b: &Sample, secs: f64) -> Cpu {
    let d = |f: fn(&Sample) -> u64| f(b).saturating_sub(f(a));
    let server = cpu_pct(d(|s| s.server_ticks), secs);
    let generator = cpu_pct(d(|s| s.self_ticks), secs);
    let watched = cpu_pct(d(|s| s.watch_ticks), secs);
    let busy = cpu_pct(d(|s| s.busy_ticks), secs);
    Cpu {
        server,
        generator,
        watched,
        other: (busy - server - generator - watched).max(0.0),
    }
}

/// The markdown table and the JSON file.
fn report(run: &Run, first: &Sample) {
    let o = &run.o;
    let rows = &run.stats.rows;
    let owed_classes = [BLOCKED, CACHED, FORWARDED, TCP];
    println!(
        "| interval | sent/s | sent | answered | lost | SERVFAIL | malformed: answered / unanswered (FORMERR) | p50 ms | p99 ms | p99 blocked / cached / fwd / tcp ms | reload ms | stall: dropped upstream | UDP drops server / generator | RSS MiB | server CPU % | other CPU % | generator lag ms | load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    let mut total = vec![ClassStats::new(); CLASSES.len()];
    let (mut skipped, mut conn_failures, mut closed, mut secs) = (0u64, 0u64, 0u64, 0.0f64);
    let mut drops = Drops::default();
    let mut prev = *first;
    for r in rows {
        let sent: u64 = r.classes.iter().map(|c| c.sent).sum();
        let mut owed = ClassStats::new();
        for c in owed_classes {
            owed.merge(&r.classes[c]);
        }
        let bad = &r.classes[MALFORMED];
        let cpu = cpu_between(&prev, &r.end, r.len);
        let d = Drops {
            server: r.end.drops.server.saturating_sub(prev.drops.server),
            generator: r.end.drops.generator.saturating_sub(prev.drops.generator),
            proxy: r.end.drops.proxy.saturating_sub(prev.drops.proxy),
        };
        let reload = r.reload.as_ref().map_or("-".to_string(), |x| {
            if x.ok {
                x.said.clone()
            } else {
                format!("FAILED: {}", x.said)
            }
        });
        let stall = r.stall.map_or("-".to_string(), |(a, b)| {
            format!("{:.0} s: {}", b - a, r.proxy_dropped)
        });
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} / {} ({}) | {} | {} | {} / {} / {} / {} | {} | {} | {} / {} | {:.1} | {:.0} | {:.0} | {:.1} | {:.2} |",
            r.label,
            sent as f64 / r.len,
            sent,
            owed.answered,
            owed.lost,
            owed.rcodes[2],
            bad.answered,
            bad.unanswered,
            bad.rcodes[1],
            ms(owed.hist.quantile(0.5)),
            ms(owed.hist.quantile(0.99)),
            ms(r.classes[BLOCKED].hist.quantile(0.99)),
            ms(r.classes[CACHED].hist.quantile(0.99)),
            ms(r.classes[FORWARDED].hist.quantile(0.99)),
            ms(r.classes[TCP].hist.quantile(0.99)),
            reload,
            stall,
            d.server,
            d.generator,
            r.end.rss_kb as f64 / 1024.0,
            cpu.server,
            cpu.other,
            r.lag_max_us as f64 / 1000.0,
            r.end.load1,
        );
        if r.label != "warm-up" {
            for (t, c) in total.iter_mut().zip(&r.classes) {
                t.merge(c);
            }
            skipped += r.skipped;
            conn_failures += r.tcp_connect_failures;
            closed += r.tcp_closed;
            secs += r.len;
            drops.server += d.server;
            drops.generator += d.generator;
            drops.proxy += d.proxy;
        }
        let classes: serde_json::Map<String, serde_json::Value> = CLASSES
            .iter()
            .zip(&r.classes)
            .map(|(name, c)| {
                (
                    name.to_string(),
                    serde_json::json!({
                        "sent": c.sent, "answered": c.answered, "lost": c.lost,
                        "unanswered": c.unanswered, "truncated": c.truncated,
                        "rcodes": rcode_map(&c.rcodes),
                        "p50_ms": c.hist.quantile(0.5), "p99_ms": c.hist.quantile(0.99),
                        "p999_ms": c.hist.quantile(0.999),
                    }),
                )
            })
            .collect();
        let kinds: serde_json::Map<String, serde_json::Value> = KINDS
            .iter()
            .zip(&r.kinds)
            .map(|(name, k)| {
                (
                    name.to_string(),
                    serde_json::json!({"sent": k.0, "answered": k.1, "rcodes": rcode_map(&k.2)}),
                )
            })
            .collect();
        json_rows.push(serde_json::json!({
            "interval": r.label, "start_s": r.start, "seconds": r.len,
            "sent": sent, "sent_qps": sent as f64 / r.len,
            "answered": owed.answered, "lost": owed.lost, "servfail": owed.rcodes[2],
            "p50_ms": owed.hist.quantile(0.5), "p99_ms": owed.hist.quantile(0.99),
            "p999_ms": owed.hist.quantile(0.999),
            "classes": classes, "malformed_kinds": kinds,
            "skipped": r.skipped, "generator_lag_max_ms": r.lag_max_us as f64 / 1000.0,
            "tcp_connects": r.tcp_connects, "tcp_connect_failures": r.tcp_connect_failures,
            "tcp_closed_with_queries_in_flight": r.tcp_closed,
            "upstream_stall_s": r.stall.map(|(a, b)| serde_json::json!([a, b])),
            "proxy_forwarded": r.proxy_forwarded, "proxy_dropped": r.proxy_dropped,
            "udp_drops": {"server": d.server, "generator": d.generator, "proxy": d.proxy},
            "reload": r.reload.as_ref().map(|x| serde_json::json!({
                "at_s": x.at, "took_ms": x.took_ms, "ok": x.ok, "said": x.said})),
            "rss_kib": r.end.rss_kb, "hwm_kib": r.end.hwm_kb,
            "server_cpu_pct": cpu.server, "generator_cpu_pct": cpu.generator,
            "upstream_cpu_pct": cpu.watched, "other_cpu_pct": cpu.other, "load1": r.end.load1,
        }));
        prev = r.end;
    }
    let mut owed = ClassStats::new();
    for c in owed_classes {
        owed.merge(&total[c]);
    }
    let sent: u64 = total.iter().map(|c| c.sent).sum();
    let bad = &total[MALFORMED];
    println!(
        "| **total** | {:.0} | {} | {} | **{}** | {} | {} / {} ({}) | {} | **{}** | {} / {} / {} / {} | | | {} / {} | | | | | |",
        sent as f64 / secs.max(1e-9),
        sent,
        owed.answered,
        owed.lost,
        owed.rcodes[2],
        bad.answered,
        bad.unanswered,
        bad.rcodes[1],
        ms(owed.hist.quantile(0.5)),
        ms(owed.hist.quantile(0.99)),
        ms(total[BLOCKED].hist.quantile(0.99)),
        ms(total[CACHED].hist.quantile(0.99)),
        ms(total[FORWARDED].hist.quantile(0.99)),
        ms(total[TCP].hist.quantile(0.99)),
        drops.server,
        drops.generator,
    );
    println!();
    for (name, c) in CLASSES.iter().zip(&total) {
        let rc: Vec<String> = c
            .rcodes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| format!("{}={n}", RCODES[i]))
            .collect();
        let unanswered = if name == &CLASSES[MALFORMED] {
            format!(", unanswered {} (none is owed)", c.unanswered)
        } else {
            String::new()
        };
        println!(
            "- {name}: sent {}, answered {}, lost {}{unanswered}; rcodes {}; p50 {} ms, p99 {} ms, p99.9 {} ms",
            c.sent,
            c.answered,
            c.lost,
            rc.join(" "),
            ms(c.hist.quantile(0.5)),
            ms(c.hist.quantile(0.99)),
            ms(c.hist.quantile(0.999)),
        );
    }
    let warm = rows
        .iter()
        .find(|r| r.label == "warm-up")
        .map_or(*first, |r| r.end);
    let last = rows.last().map_or(*first, |r| r.end);
    let change = if warm.rss_kb > 0 {
        100.0 * (last.rss_kb as f64 - warm.rss_kb as f64) / warm.rss_kb as f64
    } else {
        f64::NAN
    };
    let flat = change.abs() <= 10.0;
    if o.pid.is_some() {
        println!(
            "- RSS: {:.1} MiB when the load began, {:.1} MiB at the start (after the warm-up), {:.1} MiB at the end: {:+.1} % ({}); peak (VmHWM) {:.1} MiB",
            first.rss_kb as f64 / 1024.0,
            warm.rss_kb as f64 / 1024.0,
            last.rss_kb as f64 / 1024.0,
            change,
            if flat {
                "flat within 10 %"
            } else {
                "NOT flat within 10 %"
            },
            last.hwm_kb as f64 / 1024.0
        );
    }
    let lag = rows
        .iter()
        .filter(|r| r.label != "warm-up")
        .map(|r| r.lag_max_us)
        .max()
        .unwrap_or(0);
    println!(
        "- UDP datagrams dropped by the kernel for full receive buffers: server {}, generator {}, proxy {}",
        drops.server, drops.generator, drops.proxy
    );
    println!(
        "- generator: {} queries due but not sent, worst lag behind schedule {:.1} ms; TCP: {} connect failures, {} connections closed with queries in flight",
        skipped,
        lag as f64 / 1000.0,
        conn_failures,
        closed
    );
    println!("Sent QPS: {:.0}", sent as f64 / secs.max(1e-9));
    let Some(path) = &o.json else { return };
    // The timeline: each second's queries (by the second they were sent)
    // and the machine over that second.
    let mut prev = *first;
    let timeline: Vec<serde_json::Value> = run
        .stats
        .secs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.end.busy_ticks > 0)
        .map(|(i, s)| {
            let cpu = cpu_between(&prev, &s.end, 1.0);
            let v = serde_json::json!({
                "t": i, "sent": s.sent, "answered": s.answered, "lost": s.lost,
                "servfail": s.servfail, "lag_max_ms": s.lag_max_us as f64 / 1000.0,
                "server_cpu_pct": cpu.server, "generator_cpu_pct": cpu.generator,
                "other_cpu_pct": cpu.other, "rss_kib": s.end.rss_kb,
                "udp_drops_server": s.end.drops.server.saturating_sub(prev.drops.server),
                "udp_drops_generator": s.end.drops.generator.saturating_sub(prev.drops.generator),
            });
            prev = s.end;
            v
        })
        .collect();
    let doc = serde_json::json!({
        "server": o.server.to_string(),
        "rate": o.rate, "seconds": o.secs, "warmup_s": o.warmup, "interval_s": o.interval,
        "mix": CLASSES.iter().zip(o.mix).map(|(c, w)| (c.to_string(), w.into())).collect::<serde_json::Map<_, _>>(),
        "timeout_s": o.timeout,
        "stall": {"at_s": o.stall_at, "for_s": o.stall_for},
        "reload_at_s": o.reload_at,
        "sent_qps": sent as f64 / secs.max(1e-9),
        "lost": owed.lost, "servfail": owed.rcodes[2],
        "p99_ms": owed.hist.quantile(0.99),
        "udp_drops": {"server": drops.server, "generator": drops.generator, "proxy": drops.proxy},
        "rss_kib": {"load_began": first.rss_kb, "start": warm.rss_kb, "end": last.rss_kb,
                    "change_pct": change, "flat_within_10pct": flat, "hwm": last.hwm_kb},
        "rows": json_rows,
        "timeline": timeline,
    });
    if let Err(e) = std::fs::write(path, format!("{doc:#}\n")) {
        eprintln!("soak: writing {path}: {e}");
    }
}
