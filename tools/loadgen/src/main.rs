//! loadgen: the lab's `blast` (closed loop, sendmmsg/recvmmsg, one thread),
//! but each query leaves from a different source address, so that a server
//! sees many clients: what the rate limiter's table costs at full speed.
//!
//! Every address of 127.0.0.0/8 is local on Linux's `lo`, so one socket
//! bound to 0.0.0.0 can send each datagram from its own 127.a.b.c with an
//! `IP_PKTINFO` control message (`ipi_spec_dst`), and gets the answers to
//! all of them. Queries cycle through `-a` addresses from `-f` upwards.
//!
//! ```text
//! cargo bench --bench loadgen -- -s 127.0.0.1:15331 -d q-blocked.txt -l 10 -a 65536
//! ```
//!
//! usage: loadgen -s HOST:PORT -d FILE -l SECONDS [-a ADDRESSES=65536]
//!        [-f FIRST=127.1.0.0] [-c SOCKETS=8] [-q OUTSTANDING=256] [-b BATCH=32]
//!        [-t TIMEOUT_S=2] [-e (EDNS0, 1232)]
//!
//! Prints blast's summary lines (so the lab's parsers read it) plus the
//! number of distinct source addresses used. IPv4 only.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

struct Opts {
    server: SocketAddrV4,
    file: String,
    secs: f64,
    addresses: u32,
    first: Ipv4Addr,
    socks: usize,
    outstanding: usize,
    batch: usize,
    timeout: f64,
    edns: bool,
}

fn opts() -> Result<Opts, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        server: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53),
        file: String::new(),
        secs: 10.0,
        addresses: 65_536,
        first: Ipv4Addr::new(127, 1, 0, 0),
        socks: 8,
        outstanding: 256,
        batch: 32,
        timeout: 2.0,
        edns: false,
    };
    let mut i = 0;
    while i < a.len() {
        let flag = a[i].as_str();
        // `cargo bench` passes --bench to a harness = false target.
        if matches!(flag, "--bench" | "-e") {
            o.edns |= flag == "-e";
            i += 1;
            continue;
        }
        let v = a.get(i + 1).ok_or(format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {v}: expected {what}");
        match flag {
            "-s" => o.server = v.parse().map_err(|_| bad("IPv4:PORT"))?,
            "-d" => o.file = v.clone(),
            "-l" => o.secs = v.parse().map_err(|_| bad("seconds"))?,
            "-a" => o.addresses = v.parse().map_err(|_| bad("a count"))?,
            "-f" => o.first = v.parse().map_err(|_| bad("an IPv4 address"))?,
            "-c" => o.socks = v.parse().map_err(|_| bad("a count"))?,
            "-q" => o.outstanding = v.parse().map_err(|_| bad("a count"))?,
            "-b" => o.batch = v.parse().map_err(|_| bad("a count"))?,
            "-t" => o.timeout = v.parse().map_err(|_| bad("seconds"))?,
            _ => return Err(format!("unknown option {flag}")),
        }
        i += 2;
    }
    if o.file.is_empty() {
        return Err("-d FILE is required".into());
    }
    let last = u32::from(o.first).checked_add(o.addresses.saturating_sub(1));
    if o.addresses == 0 || last.is_none_or(|l| Ipv4Addr::from(l).octets()[0] != 127) {
        return Err("-f/-a: the addresses must all lie in 127.0.0.0/8".into());
    }
    o.batch = o.batch.clamp(1, 1024);
    Ok(o)
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

/// Wire-format queries (ID 0, RD set) from a dnsperf query file.
fn load_queries(path: &str, edns: bool) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(name) = it.next() else { continue };
        if name.starts_with('#') {
            continue;
        }
        let t = qtype(it.next().unwrap_or("A"));
        let mut p = vec![0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for label in name
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
        {
            let l = &label.as_bytes()[..label.len().min(63)];
            p.push(l.len() as u8);
            p.extend_from_slice(l);
        }
        p.push(0);
        p.extend_from_slice(&t.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        if edns {
            p.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        if p.len() <= 512 {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(format!("no queries in {path}"));
    }
    Ok(out)
}

/// One socket's queries in flight, by ID.
struct Sock {
    s: UdpSocket,
    free: Vec<u16>,
    sent_at: Vec<u64>,
    seq: Vec<u32>,
    live: Vec<bool>,
    order: VecDeque<(u16, u32)>,
    inflight: usize,
}

/// Room for one `cmsghdr` carrying an `in_pktinfo`, aligned for it.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

fn main() {
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let queries = match load_queries(&o.file, o.edns) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let per_sock = (o.outstanding / o.socks.max(1)).clamp(1, 65535);
    let mut socks: Vec<Sock> = (0..o.socks.max(1))
        .map(|_| {
            // Unconnected and on the wildcard address: answers to every
            // 127.a.b.c source come back to this one socket.
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.set_nonblocking(true).expect("nonblocking");
            let sz: libc::c_int = 4 << 20;
            // SAFETY: a valid fd and a c_int option value of the size given.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&sz as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            Sock {
                s,
                free: (0..=65535u16).rev().collect(),
                sent_at: vec![0; 65536],
                seq: vec![0; 65536],
                live: vec![false; 65536],
                order: VecDeque::new(),
                inflight: 0,
            }
        })
        .collect();

    let b = o.batch;
    let mut sbufs = vec![[0u8; 512]; b];
    let mut rbufs = vec![[0u8; 4096]; b];
    // SAFETY (for the zeroed values below): plain C structs for which all
    // zero bytes are valid.
    let mut siov: Vec<libc::iovec> = (0..b).map(|_| unsafe { zeroed() }).collect();
    let mut riov: Vec<libc::iovec> = (0..b).map(|_| unsafe { zeroed() }).collect();
    let mut smsgs: Vec<libc::mmsghdr> = (0..b).map(|_| unsafe { zeroed() }).collect();
    let mut rmsgs: Vec<libc::mmsghdr> = (0..b).map(|_| unsafe { zeroed() }).collect();
    let mut controls = vec![Control([0; 64]); b];
    let server: libc::sockaddr_in = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: o.server.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*o.server.ip()).to_be(),
        },
        // SAFETY: zero padding.
        sin_zero: unsafe { zeroed() },
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let cmsg_space = unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as usize;
    assert!(cmsg_space <= 64);
    for i in 0..b {
        siov[i].iov_base = sbufs[i].as_mut_ptr().cast();
        riov[i] = libc::iovec {
            iov_base: rbufs[i].as_mut_ptr().cast(),
            iov_len: 4096,
        };
        let h = &mut smsgs[i].msg_hdr;
        h.msg_name = (&server as *const libc::sockaddr_in).cast_mut().cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_iov = &mut siov[i];
        h.msg_iovlen = 1;
        h.msg_control = controls[i].0.as_mut_ptr().cast();
        h.msg_controllen = cmsg_space as _;
        // SAFETY: msg_control points at 64 writable bytes, at least
        // CMSG_SPACE(in_pktinfo), so the first header and its data fit.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = libc::IPPROTO_IP;
            (*c).cmsg_type = libc::IP_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
        }
        rmsgs[i].msg_hdr.msg_iov = &mut riov[i];
        rmsgs[i].msg_hdr.msg_iovlen = 1;
    }
    let first = u32::from(o.first);
    let mut source = 0u32;
    let mut used = vec![false; o.addresses as usize];

    let mut hist = vec![0u64; 2_000_001];
    let mut rcodes = [0u64; 16];
    let (mut sent, mut done, mut lost, mut unexpected, mut truncated) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut lat_sum, mut lat_max) = (0u64, 0u64);
    let mut next = 0usize;
    let start = Instant::now();
    let stop_sending = Duration::from_secs_f64(o.secs);
    let timeout_ns = (o.timeout * 1e9) as u64;
    let mut last_tick = 0u64;
    loop {
        let now_ns = start.elapsed().as_nanos() as u64;
        let sending = start.elapsed() < stop_sending;
        if !sending && socks.iter().all(|s| s.inflight == 0) {
            break;
        }
        for sk in socks.iter_mut() {
            if sending && sk.inflight < per_sock {
                let k = (per_sock - sk.inflight).min(b);
                let mut ids = [0u16; 1024];
                for i in 0..k {
                    let id = sk.free.pop().expect("a free ID");
                    ids[i] = id;
                    let q = &queries[next];
                    next = if next + 1 == queries.len() {
                        0
                    } else {
                        next + 1
                    };
                    sbufs[i][..q.len()].copy_from_slice(q);
                    sbufs[i][..2].copy_from_slice(&id.to_be_bytes());
                    siov[i].iov_len = q.len();
                    used[source as usize] = true;
                    let from = (first + source).to_be();
                    source = if source + 1 == o.addresses {
                        0
                    } else {
                        source + 1
                    };
                    // SAFETY: the control buffer was laid out above; the
                    // data of its one header is an in_pktinfo.
                    unsafe {
                        let c = libc::CMSG_FIRSTHDR(&smsgs[i].msg_hdr);
                        let info = libc::CMSG_DATA(c).cast::<libc::in_pktinfo>();
                        info.write_unaligned(libc::in_pktinfo {
                            ipi_ifindex: 0,
                            ipi_spec_dst: libc::in_addr { s_addr: from },
                            ipi_addr: libc::in_addr { s_addr: 0 },
                        });
                    }
                }
                // SAFETY: k <= b headers, each pointing at live buffers.
                let r = unsafe {
                    libc::sendmmsg(
                        sk.s.as_raw_fd(),
                        smsgs.as_mut_ptr(),
                        k as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                let n = if r < 0 { 0 } else { r as usize };
                for (i, &id) in ids[..k].iter().enumerate() {
                    if i < n {
                        let u = id as usize;
                        sk.sent_at[u] = now_ns;
                        sk.seq[u] = sk.seq[u].wrapping_add(1);
                        sk.live[u] = true;
                        sk.order.push_back((id, sk.seq[u]));
                        sk.inflight += 1;
                        sent += 1;
                    } else {
                        sk.free.push(id);
                    }
                }
            }
            loop {
                // SAFETY: b headers pointing at b receive buffers of 4096 bytes.
                let r = unsafe {
                    libc::recvmmsg(
                        sk.s.as_raw_fd(),
                        rmsgs.as_mut_ptr(),
                        b as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if r <= 0 {
                    break;
                }
                let t = start.elapsed().as_nanos() as u64;
                for (m, buf) in rmsgs[..r as usize].iter().zip(rbufs.iter()) {
                    let p = &buf[..(m.msg_len as usize).min(4096)];
                    if p.len() < 12 {
                        unexpected += 1;
                        continue;
                    }
                    let id = u16::from_be_bytes([p[0], p[1]]) as usize;
                    if !sk.live[id] {
                        unexpected += 1;
                        continue;
                    }
                    sk.live[id] = false;
                    sk.free.push(id as u16);
                    sk.inflight -= 1;
                    done += 1;
                    truncated += u64::from(p[2] & 0x02 != 0);
                    rcodes[(p[3] & 0x0f) as usize] += 1;
                    let us = (t - sk.sent_at[id]) / 1000;
                    lat_sum += us;
                    lat_max = lat_max.max(us);
                    hist[us.min(2_000_000) as usize] += 1;
                }
                if (r as usize) < b {
                    break;
                }
            }
        }
        if now_ns - last_tick > 10_000_000 {
            last_tick = now_ns;
            for sk in socks.iter_mut() {
                while let Some(&(id, seq)) = sk.order.front() {
                    let u = id as usize;
                    if sk.live[u] && sk.seq[u] == seq {
                        if now_ns - sk.sent_at[u] < timeout_ns {
                            break;
                        }
                        sk.live[u] = false;
                        sk.free.push(id);
                        sk.inflight -= 1;
                        lost += 1;
                    }
                    sk.order.pop_front();
                }
            }
        }
    }
    let pct = |p: f64| -> f64 {
        let goal = ((p * done as f64).ceil() as u64).max(1);
        let mut acc = 0u64;
        for (us, &c) in hist.iter().enumerate() {
            acc += c;
            if acc >= goal {
                return us as f64 / 1000.0;
            }
        }
        f64::NAN
    };
    const NAMES: [&str; 16] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE", "R11", "R12", "R13", "R14", "R15",
    ];
    let rc: Vec<String> = rcodes
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| format!("{}={}", NAMES[i], c))
        .collect();
    let pct_of = |n: u64| 100.0 * n as f64 / sent.max(1) as f64;
    println!("  Queries sent:         {sent}");
    println!("  Queries completed:    {done} ({:.2}%)", pct_of(done));
    println!("  Queries lost:         {lost} ({:.2}%)", pct_of(lost));
    println!("  Unexpected answers:   {unexpected}");
    println!("  Truncated answers:    {truncated}");
    println!(
        "  Source addresses:     {} (from {})",
        used.iter().filter(|u| **u).count(),
        o.first
    );
    println!("  Run time (s):         {:.6}", o.secs);
    println!("  Queries per second:   {:.6}", done as f64 / o.secs);
    println!(
        "  Average Latency (s):  {:.6} (min 0.000000, max {:.6})",
        lat_sum as f64 / done.max(1) as f64 / 1e6,
        lat_max as f64 / 1e6
    );
    println!(
        "Latency percentiles (ms): p50 {:.3} p99 {:.3} p999 {:.3}",
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    println!("Rcodes: {}", rc.join(" "));
}
