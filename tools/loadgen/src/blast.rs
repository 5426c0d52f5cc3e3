//! The closed loop: as many queries in flight as `-q` allows, spread over
//! `-c` sockets, each socket's IDs its own; send what there is room for,
//! read every answer waiting, and every 10 ms give up on queries older
//! than `-t` (lost). Sending stops after `-l` seconds; the loop ends when
//! nothing is in flight any more.

use std::collections::VecDeque;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::batch::{self, Batch};
use crate::cli::Opts;
use crate::report::Summary;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("a UDP socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// One socket and its queries in flight, by ID.
struct Sock {
    s: UdpSocket,
    free: Vec<u16>,
    sent_at: Vec<u64>,
    seq: Vec<u32>,
    live: Vec<bool>,
    /// (ID, seq) in the order sent, for the timeout sweep.
    order: VecDeque<(u16, u32)>,
    inflight: usize,
}

impl Sock {
    fn new() -> Result<Self, Error> {
        // Unconnected and on the wildcard address: answers to every
        // 127.a.b.c source come back to this one socket.
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_nonblocking(true)?;
        batch::set_rcvbuf(&s, 4 << 20);
        Ok(Self {
            s,
            free: (0..=65535u16).rev().collect(),
            sent_at: vec![0; 65536],
            seq: vec![0; 65536],
            live: vec![false; 65536],
            order: VecDeque::new(),
            inflight: 0,
        })
    }

    fn sent(&mut self, id: u16, now_ns: u64) {
        let u = usize::from(id);
        self.sent_at[u] = now_ns;
        self.seq[u] = self.seq[u].wrapping_add(1);
        self.live[u] = true;
        self.order.push_back((id, self.seq[u]));
        self.inflight += 1;
    }

    /// The send time of the query an answer with `id` belongs to, if it is
    /// still waited for.
    fn finish(&mut self, id: u16) -> Option<u64> {
        let u = usize::from(id);
        if !self.live[u] {
            return None;
        }
        self.live[u] = false;
        self.free.push(id);
        self.inflight -= 1;
        Some(self.sent_at[u])
    }

    /// Gives up on every query sent before `cutoff_ns`; returns how many.
    fn expire(&mut self, now_ns: u64, timeout_ns: u64) -> u64 {
        let mut lost = 0;
        while let Some(&(id, seq)) = self.order.front() {
            let u = usize::from(id);
            if self.live[u] && self.seq[u] == seq {
                if now_ns - self.sent_at[u] < timeout_ns {
                    break;
                }
                self.live[u] = false;
                self.free.push(id);
                self.inflight -= 1;
                lost += 1;
            }
            self.order.pop_front();
        }
        lost
    }
}

/// Runs the load; `queries` are sent in turn, cycling.
pub(crate) fn run(mut o: Opts, queries: &[Vec<u8>]) -> Result<Summary, Error> {
    let per_sock = (o.outstanding / o.socks).clamp(1, 65535);
    let mut socks: Vec<Sock> = (0..o.socks)
        .map(|_| Sock::new())
        .collect::<Result<_, _>>()?;
    let mut batch = Batch::new(o.batch, o.server);
    let b = batch.len();

    let mut s = Summary::new(o.secs, o.sources.first());
    let mut next = 0usize;
    let start = Instant::now();
    let stop_sending = Duration::from_secs_f64(o.secs);
    let timeout_ns = (o.timeout * 1e9) as u64;
    let mut last_tick = 0u64;
    let mut ids = [0u16; 1024];
    loop {
        let now_ns = start.elapsed().as_nanos() as u64;
        let sending = start.elapsed() < stop_sending;
        if !sending && socks.iter().all(|s| s.inflight == 0) {
            break;
        }
        for sk in socks.iter_mut() {
            if sending && sk.inflight < per_sock {
                let room = (per_sock - sk.inflight).min(b);
                let mut k = 0;
                // At most per_sock <= 65535 IDs in flight: one is free.
                while k < room
                    && let Some(id) = sk.free.pop()
                {
                    ids[k] = id;
                    batch.fill(k, &queries[next], id, o.sources.take());
                    next = if next + 1 == queries.len() {
                        0
                    } else {
                        next + 1
                    };
                    k += 1;
                }
                let n = batch.send(&sk.s, k);
                for (i, &id) in ids[..k].iter().enumerate() {
                    if i < n {
                        sk.sent(id, now_ns);
                        s.sent += 1;
                    } else {
                        sk.free.push(id);
                    }
                }
            }
            loop {
                let r = batch.recv(&sk.s);
                if r == 0 {
                    break;
                }
                let t = start.elapsed().as_nanos() as u64;
                for i in 0..r {
                    let p = batch.answer(i);
                    if p.len() < 12 {
                        s.unexpected += 1;
                        continue;
                    }
                    let Some(sent_at) = sk.finish(u16::from_be_bytes([p[0], p[1]])) else {
                        s.unexpected += 1;
                        continue;
                    };
                    s.done += 1;
                    s.truncated += u64::from(p[2] & 0x02 != 0);
                    s.rcodes[usize::from(p[3] & 0x0f)] += 1;
                    s.latency.add((t - sent_at) / 1000);
                }
                if r < b {
                    break;
                }
            }
        }
        if now_ns - last_tick > 10_000_000 {
            last_tick = now_ns;
            for sk in socks.iter_mut() {
                s.lost += sk.expire(now_ns, timeout_ns);
            }
        }
    }
    s.sources_used = o.sources.used();
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::source::Sources;

    /// A server on 127.0.0.1:0 that answers every query NXDOMAIN (TC set on
    /// every other one) and notes the address each came from.
    fn responder(
        stop: Arc<AtomicBool>,
    ) -> (SocketAddr, std::thread::JoinHandle<HashSet<SocketAddr>>) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = s.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut buf = [0u8; 512];
            let mut n_seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                seen.insert(from);
                buf[2] |= 0x80 | if n_seen.is_multiple_of(2) { 0x02 } else { 0 };
                buf[3] = 0x03;
                n_seen += 1;
                s.send_to(&buf[..n], from).unwrap();
            }
            seen
        });
        (addr, t)
    }

    #[test]
    fn every_query_leaves_from_its_own_address_and_every_answer_is_counted() {
        let stop = Arc::new(AtomicBool::new(false));
        let (server, t) = responder(stop.clone());
        let SocketAddr::V4(server) = server else {
            unreachable!()
        };
        let o = Opts {
            server,
            file: PathBuf::new(),
            secs: 0.3,
            sources: Sources::new(Ipv4Addr::new(127, 1, 0, 0), 16).unwrap(),
            socks: 2,
            outstanding: 8,
            batch: 4,
            timeout: 2.0,
            edns: false,
            mode: crate::cli::Mode::Udp,
        };
        let q = vec![b"\0\0\x01\0\0\x01\0\0\0\0\0\0\x07example\x03com\0\0\x01\0\x01".to_vec()];
        let s = run(o, &q).unwrap();
        stop.store(true, Ordering::Relaxed);
        let seen = t.join().unwrap();

        assert!(s.sent > 16, "sent {}", s.sent);
        assert_eq!((s.done, s.lost, s.unexpected), (s.sent, 0, 0));
        assert_eq!(s.rcodes[3], s.done, "every answer NXDOMAIN");
        assert!(s.truncated > 0 && s.truncated < s.done);
        assert_eq!(s.sources_used, 16);
        let ips: HashSet<_> = seen.iter().map(|a| a.ip()).collect();
        assert_eq!(ips.len(), 16, "the server saw {ips:?}");
        assert!(ips.iter().all(|ip| ip.to_string().starts_with("127.1.0.")));
    }
}
