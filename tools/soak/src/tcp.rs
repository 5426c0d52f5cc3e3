//! The TCP part of the mix: a connection to the server on which queries
//! are written with their length prefix and answers read as they come, in
//! any order. A few persistent ones pipeline; short ones carry two queries
//! and close once both are answered.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use crate::mix::TCP;
use crate::table::Table;

/// A TCP connection to the server.
pub(crate) struct Conn {
    s: TcpStream,
    w: Vec<u8>,
    wpos: usize,
    r: Vec<u8>,
    pub(crate) table: Table,
    /// Short connections close once this many answers arrived.
    pub(crate) close_after: Option<u32>,
    pub(crate) answers: u32,
    /// The server closed it, or writing or reading failed.
    pub(crate) dead: bool,
}

impl Conn {
    /// Connects (waiting at most a second) with `table` IDs to use.
    pub(crate) fn open(
        server: SocketAddrV4,
        table: usize,
        close_after: Option<u32>,
    ) -> Option<Self> {
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

    /// Bytes queued and not yet written.
    pub(crate) fn backlog(&self) -> usize {
        self.w.len() - self.wpos
    }

    /// Queues `q` under a new ID, sent at `now` and charged to `row`; a
    /// connection with every ID in flight drops it.
    pub(crate) fn push(&mut self, q: &[u8], now: u64, row: usize) {
        let Some(id) = self.table.take(now, row, TCP, 0) else {
            return;
        };
        let at = self.w.len();
        self.w.extend_from_slice(&(q.len() as u16).to_be_bytes());
        self.w.extend_from_slice(q);
        self.w[at + 2..at + 4].copy_from_slice(&id.to_be_bytes());
    }

    /// Writes what the socket takes now.
    pub(crate) fn flush(&mut self) {
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
    pub(crate) fn read(&mut self, mut f: impl FnMut(&mut Table, &[u8])) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn pipelined_answers_are_matched_by_id_in_any_order() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(at) = l.local_addr().unwrap() else {
            unreachable!()
        };
        let mut c = Conn::open(at, 8, Some(2)).unwrap();
        let q = [0u8, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
        c.push(&q, 5, 0);
        c.push(&q, 6, 0);
        c.flush();
        let (mut s, _) = l.accept().unwrap();
        let mut got = [0u8; 38];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got[..2], [0, 17]);
        let (first, second) = (&got[2..19], &got[21..38]);
        assert_ne!(first[..2], second[..2], "two IDs");
        // The answers, second first, one byte at a time.
        let mut out = Vec::new();
        for m in [second, first] {
            out.extend_from_slice(&[0, 17]);
            out.extend_from_slice(m);
        }
        for b in out {
            s.write_all(&[b]).unwrap();
        }
        let mut sent = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sent.len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "answers read: {sent:?}"
            );
            c.read(|t, p| sent.push(t.finish(u16::from_be_bytes([p[0], p[1]])).unwrap().sent_ns));
        }
        assert_eq!(sent, [6, 5]);
        assert_eq!((c.answers, c.table.inflight), (2, 0));
        drop(s);
        while !c.dead {
            assert!(
                std::time::Instant::now() < deadline,
                "the close is not seen"
            );
            c.read(|_, _| {});
        }
    }
}
