//! The stalling upstream: a UDP proxy between the server and its upstream
//! (the lab's knotd), which the server forwards to. Inside each stall it
//! drops every query and answer, as an upstream that stops answering would;
//! outside, it relays. Two threads, one per direction, so that it never
//! waits on the generator's loop.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::udp::set_rcvbuf;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("proxy: bind {addr}: {source}")]
    Bind {
        addr: SocketAddrV4,
        source: std::io::Error,
    },
    #[error("proxy: connect {addr}: {source}")]
    Connect {
        addr: SocketAddrV4,
        source: std::io::Error,
    },
    #[error("proxy: {0}")]
    Socket(#[from] std::io::Error),
}

/// The stalling proxy's counters.
#[derive(Default)]
pub(crate) struct ProxyStats {
    pub(crate) forwarded: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// The running proxy: its counters, its sockets' ports, its two threads.
pub(crate) struct Proxy {
    pub(crate) stats: Arc<ProxyStats>,
    pub(crate) ports: Vec<u16>,
    pub(crate) threads: Vec<JoinHandle<()>>,
}

/// Starts a proxy on `listen` to `upstream` that drops everything inside
/// `stalls` (ns since `t0`), until `stop`. IDs are rewritten to its own, so
/// answers find their way back to the server's many source ports.
pub(crate) fn start(
    listen: SocketAddrV4,
    upstream: SocketAddrV4,
    stalls: Vec<(u64, u64)>,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Result<Proxy, Error> {
    let l = UdpSocket::bind(listen).map_err(|source| Error::Bind {
        addr: listen,
        source,
    })?;
    let any = SocketAddrV4::new([127, 0, 0, 1].into(), 0);
    let u = UdpSocket::bind(any).map_err(|source| Error::Bind { addr: any, source })?;
    u.connect(upstream).map_err(|source| Error::Connect {
        addr: upstream,
        source,
    })?;
    for s in [&l, &u] {
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        set_rcvbuf(s);
    }
    let ports = vec![l.local_addr()?.port(), u.local_addr()?.port()];
    let stats = Arc::new(ProxyStats::default());
    // Per proxy ID: the server's address (IPv4 << 32 | port << 16) and its ID.
    let table: Arc<Vec<AtomicU64>> = Arc::new((0..65536).map(|_| AtomicU64::new(0)).collect());
    let stalls = Arc::new(stalls);
    let stalled = move |stalls: &[(u64, u64)]| {
        let now = t0.elapsed().as_nanos() as u64;
        stalls.iter().any(|(a, b)| (*a..*b).contains(&now))
    };
    let (l2, u2) = (l.try_clone()?, u.try_clone()?);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v4(s: &UdpSocket) -> SocketAddrV4 {
        match s.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        }
    }

    #[test]
    fn relays_with_its_own_ids_and_drops_inside_a_stall() {
        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
        upstream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let listen = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            v4(&s)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        // Stalled from 10 s on: everything before is relayed.
        let p = start(
            listen,
            v4(&upstream),
            vec![(10_000_000_000, u64::MAX)],
            t0,
            stop.clone(),
        )
        .unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let query = [0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        server.send_to(&query, listen).unwrap();
        let mut buf = [0u8; 64];
        let (n, proxy) = upstream.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[2..n], &query[2..]);
        assert_ne!(buf[..2], query[..2], "the proxy's own ID");
        buf[2] |= 0x80;
        upstream.send_to(&buf[..n], proxy).unwrap();
        let (m, _) = server.recv_from(&mut buf).unwrap();
        assert_eq!(
            (m, &buf[..2]),
            (n, &query[..2]),
            "back to the server with its ID"
        );
        assert_eq!(p.stats.forwarded.load(Ordering::Relaxed), 1);
        stop.store(true, Ordering::Relaxed);
        for t in p.threads {
            t.join().unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let p = start(listen, v4(&upstream), vec![(0, u64::MAX)], t0, stop.clone()).unwrap();
        server.send_to(&query, listen).unwrap();
        upstream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(
            upstream.recv_from(&mut buf).is_err(),
            "nothing passes a stall"
        );
        assert_eq!(p.stats.dropped.load(Ordering::Relaxed), 1);
        stop.store(true, Ordering::Relaxed);
        for t in p.threads {
            t.join().unwrap();
        }
    }
}
