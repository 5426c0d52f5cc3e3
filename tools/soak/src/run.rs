//! The sending loop: one thread sends the mix (paced or closed loop),
//! reads every answer that came, gives up on queries older than `-t`,
//! opens the short TCP connections, fires the reloads, and closes each
//! second and each row with a sample of the machine.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cli::Opts;
use crate::malformed::{KINDS, malformed};
use crate::mix::{CACHED, MALFORMED, TCP, pattern};
use crate::pacing::Pacer;
use crate::proxy;
use crate::queries::{self, Pool, compose};
use crate::rcode::full_rcode;
use crate::reload::{Reload, reload};
use crate::sample::{Ports, Sample, Watched, sample};
use crate::schedule::{Events, Schedule, ns};
use crate::stats::{Row, Second, Stats};
use crate::table::Table;
use crate::tcp::Conn;
use crate::udp::{self, Batch};

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Queries(#[from] queries::Error),
    #[error("a UDP socket to the server: {0}")]
    Socket(#[from] std::io::Error),
    #[error("cannot connect over TCP to {0}")]
    Tcp(std::net::SocketAddrV4),
    #[error(transparent)]
    Proxy(#[from] proxy::Error),
}

/// What a finished run hands to the report.
pub(crate) struct Finished {
    pub(crate) o: Opts,
    pub(crate) stats: Stats,
    /// The machine when the load began.
    pub(crate) first: Sample,
}

/// Everything the sending loop keeps.
struct Run {
    o: Opts,
    /// CLOCK_REALTIME at the start: times are ns since then, on the clock
    /// of the kernel's receive timestamps.
    t0: u64,
    pools: [Pool; 3],
    /// The mix's classes in their smooth order, and TCP's names.
    order: Vec<usize>,
    tcp_order: Vec<usize>,
    socks: Vec<(UdpSocket, Table)>,
    /// The socket the malformed packets go out on.
    bad: (UdpSocket, Table),
    conns: Vec<Conn>,
    short: Vec<Conn>,
    stats: Stats,
    /// (start, end) of each row, ns since t0.
    bounds: Vec<(u64, u64)>,
    rng: fastrand::Rng,
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
        udp::realtime_ns().saturating_sub(self.t0)
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
                    let len = compose(q, id, edns, &mut batch.bufs[k]);
                    batch.set_len(k, len);
                    ids[k] = id;
                    k += 1;
                    self.stats.sent(row, class, now);
                }
            }
        }
        if let Some(si) = sk
            && k > 0
        {
            let sent = batch.send(&self.socks[si].0, k);
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
        self.conns[ci].push(q, now, row);
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
            c.push(self.pools[class].take(), now, row);
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
        for si in 0..self.socks.len() {
            loop {
                let r = batch.recv(&self.socks[si].0);
                if r == 0 {
                    break;
                }
                let late = self.now();
                for i in 0..r {
                    let p = batch.answer(i);
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
                if r < batch.len() {
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
        let now = udp::realtime_ns().saturating_sub(self.t0);
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

    /// Gives up on every query sent before `cutoff`.
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

    fn watched(&self) -> Watched<'_> {
        Watched {
            server: self.o.pid,
            others: &self.o.watch,
        }
    }
}

/// Runs the whole soak as `o` says; `row_done` hears of each row as it
/// ends, with the machine at the end of the row before.
pub(crate) fn run(o: Opts, mut row_done: impl FnMut(&Row, &Sample)) -> Result<Finished, Error> {
    let mut pools = [Pool::empty(), Pool::empty(), Pool::empty()];
    for (c, pool) in pools.iter_mut().enumerate() {
        if o.mix[c] > 0
            && let Some(file) = &o.files[c]
        {
            let start = o.seed.wrapping_mul(7919 + c as u64);
            *pool = Pool::load(file, c == CACHED, start)?;
        }
    }
    let schedule = Schedule::new(
        o.warmup,
        o.secs,
        o.interval,
        &Events {
            stall_at: o.stall_at,
            stall_for: o.stall_for,
            reload_at: o.reload_cmd.as_ref().map(|_| o.reload_at),
        },
    );

    let socks: Vec<(UdpSocket, Table)> = (0..o.socks)
        .map(|_| Ok((udp::timestamped_socket(o.server)?, Table::new(65536))))
        .collect::<Result<_, std::io::Error>>()?;
    let bad = udp::socket(o.server)?;
    let conns: Vec<Conn> = if o.mix[TCP] > 0 {
        (0..o.tcp_conns)
            .map(|_| Conn::open(o.server, 65536, None).ok_or(Error::Tcp(o.server)))
            .collect::<Result<_, _>>()?
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
    let t0 = udp::realtime_ns();
    let mut threads = Vec::new();
    let proxy = match o.proxy {
        Some(addrs) => {
            let p = proxy::start(
                addrs.listen,
                addrs.upstream,
                schedule.stalls.clone(),
                started,
                stop.clone(),
            )?;
            threads.extend(p.threads);
            ports.proxy_listen = addrs.listen.port();
            ports.proxy = p.ports;
            Some(p.stats)
        }
        None => None,
    };
    let reload_log: Arc<Mutex<Vec<(usize, Reload)>>> = Arc::new(Mutex::new(Vec::new()));

    let rows = schedule
        .labels
        .iter()
        .zip(&schedule.bounds)
        .enumerate()
        .map(|(i, (label, (s, e)))| Row::new(label.clone(), *s, *e, schedule.stall_in(i)))
        .collect();
    let first = sample(
        &Watched {
            server: o.pid,
            others: &o.watch,
        },
        &ports,
    );
    let timeout_ns = ns(o.timeout);
    let mut pacer = (o.rate > 0.0).then(|| Pacer::new(o.rate));
    let tcp_new = o.tcp_new_ms * 1_000_000;
    let end_ns = schedule.end;
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
            secs: vec![Second::default(); (o.warmup + o.secs).ceil() as usize + 1],
        },
        bounds: schedule.bounds,
        rng: fastrand::Rng::with_seed(o.seed),
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
    let mut reload_threads = Vec::new();
    let mut last = first;
    loop {
        let now = run.now();
        // The machine at the end of each second and each row.
        while sec < run.stats.secs.len() && now >= (sec as u64 + 1) * 1_000_000_000 {
            run.stats.secs[sec].end = sample(&run.watched(), &ports);
            sec += 1;
        }
        while row < run.stats.rows.len() && now >= run.bounds[row].1 {
            let s = sample(&run.watched(), &ports);
            let r = &mut run.stats.rows[row];
            if let Some(p) = &proxy {
                let f = p.forwarded.load(Ordering::Relaxed);
                let d = p.dropped.load(Ordering::Relaxed);
                r.proxy_forwarded = f - proxy_seen.0;
                r.proxy_dropped = d - proxy_seen.1;
                proxy_seen = (f, d);
            }
            r.end = s;
            row_done(r, &last);
            last = s;
            row += 1;
        }
        let sending = row < run.stats.rows.len();
        if !sending && (run.inflight() == 0 || now > end_ns + timeout_ns + 1_000_000_000) {
            break;
        }
        // Events.
        if next_reload < schedule.reloads.len() && now >= schedule.reloads[next_reload].1 {
            let (r, at) = schedule.reloads[next_reload];
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
            let due = match &mut pacer {
                Some(p) => {
                    let d = p.due(now, run.o.batch);
                    if let Some(lag) = d.lag_us {
                        let r = &mut run.stats.rows[row];
                        r.lag_max_us = r.lag_max_us.max(lag);
                        let s = run.stats.sec(now);
                        s.lag_max_us = s.lag_max_us.max(lag);
                    }
                    run.stats.rows[row].skipped += d.skipped;
                    d.count
                }
                None => run.o.outstanding.saturating_sub(run.udp_inflight()) as u64,
            };
            let mut left = due.min(16 * run.o.batch as u64) as usize;
            while left > 0 {
                let used = run.send_batch(&mut batch, row, left);
                if let Some(p) = &mut pacer {
                    p.issued(used as u64);
                }
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
        match &pacer {
            Some(p) if sending => {
                let wait = p.wait(now, run.o.batch);
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
            }
            _ if !sending => std::thread::sleep(Duration::from_millis(1)),
            _ if did == 0 => std::thread::yield_now(),
            _ => {}
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
    Ok(Finished {
        o: run.o,
        stats: run.stats,
        first,
    })
}
