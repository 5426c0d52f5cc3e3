//! Plain DNS over UDP through a pool of sockets per upstream.
//!
//! A fresh socket per query costs a bind, a connect, two epoll changes and a
//! close: on a busy forwarder that syscall storm is most of the work. So each
//! upstream keeps `udp_sockets` connected sockets, and each socket one reader
//! task that hands every answer to the query waiting for its ID.
//!
//! What keeps this as hard to spoof as a socket per query (RFC 5452):
//! - each socket is bound to a random port (the kernel picks ephemeral
//!   ports at random) and replaced by a fresh one after [`MAX_USES`] queries
//!   or [`MAX_AGE`], so a port seen once is soon useless;
//! - every query gets an unpredictable ID (a CSPRNG, not `fastrand`) among
//!   those free on its socket, and the socket is picked at random;
//! - the socket is connected, so the kernel drops datagrams from any
//!   address but the upstream's;
//! - an answer is believed only if its ID is waited for and it carries the
//!   question asked (compared case-insensitively); anything else is
//!   dropped and the query keeps waiting for the real answer.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, timeout_at};

use super::{Error, question_end, same_question};
use crate::wire::{self, Header};

/// Queries sent on one socket before it is replaced.
const MAX_USES: u32 = 4096;
/// Age at which a socket is replaced, however few queries it carried.
const MAX_AGE: Duration = Duration::from_secs(30);
/// Queries waiting on one socket at most: IDs stay easy to find, and a
/// flood cannot fill the 16-bit space.
const MAX_PENDING: usize = 16_384;
/// Largest answer read: we ask with a 1232-byte EDNS size (or 512), so a
/// compliant answer fits with room to spare; a longer one is cut and fails
/// to parse.
const RECV_SIZE: usize = 4096;

/// The sockets to one upstream.
pub(super) struct Pool {
    server: SocketAddr,
    slots: Box<[Mutex<Option<Arc<Sock>>>]>,
}

/// One connected socket, its queries in flight, and the state its reader
/// task watches.
struct Sock {
    socket: tokio::net::UdpSocket,
    /// Queries waiting, by ID.
    pending: Mutex<HashMap<u16, Pending>>,
    uses: AtomicU32,
    born: Instant,
    /// Replaced: the reader stops once nothing is pending.
    retired: AtomicBool,
    wake: Notify,
}

/// A query waiting for its answer.
struct Pending {
    /// Header-less question as sent (name, type, class), to check answers.
    question: Box<[u8]>,
    tx: oneshot::Sender<Answer>,
}

/// An answer's bytes, or why the socket gave up on every query it had.
type Answer = Result<Vec<u8>, io::ErrorKind>;

impl Pool {
    pub(super) fn new(server: SocketAddr, sockets: usize) -> Self {
        Self {
            server,
            slots: (0..sockets.max(1)).map(|_| Mutex::new(None)).collect(),
        }
    }

    pub(super) fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends `query` (its ID is set here) and waits for the answer until
    /// `deadline`.
    pub(super) async fn exchange(
        &self,
        query: &mut [u8],
        deadline: Instant,
        label: &Arc<str>,
    ) -> Result<Vec<u8>, Error> {
        let sock = self.socket().map_err(|e| Error::io(label, e))?;
        let question = question_end(query)
            .and_then(|end| query.get(wire::HEADER_LEN..end))
            .ok_or(Error::Unparsable)?;
        let (id, rx) = sock.register(question).ok_or(Error::Busy)?;
        let waiting = Waiting { sock: &sock, id };
        wire::put_u16(query, 0, id);
        if let Err(e) = sock.send(query, deadline).await {
            return Err(match e.kind() {
                io::ErrorKind::TimedOut => Error::Timeout {
                    server: label.clone(),
                },
                _ => Error::io(label, e),
            });
        }
        let result = timeout_at(deadline, rx).await;
        drop(waiting);
        match result {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(kind))) => Err(Error::io(label, kind.into())),
            Ok(Err(_)) => Err(Error::io(label, io::ErrorKind::BrokenPipe.into())),
            Err(_) => Err(Error::Timeout {
                server: label.clone(),
            }),
        }
    }

    /// A random slot's socket, replaced first if it is worn or old.
    fn socket(&self) -> io::Result<Arc<Sock>> {
        let i = rand::random_range(0..self.slots.len());
        let slot = &self.slots[i];
        let mut current = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = current.as_ref()
            && s.uses.fetch_add(1, Ordering::Relaxed) < MAX_USES
            && s.born.elapsed() < MAX_AGE
        {
            return Ok(s.clone());
        }
        let fresh = Arc::new(Sock::bind(self.server)?);
        tokio::spawn(read(fresh.clone()));
        if let Some(old) = current.replace(fresh.clone()) {
            old.retire();
        }
        Ok(fresh)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(s) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                s.retire();
            }
        }
    }
}

impl Sock {
    /// A socket on a random local port, connected to `server`.
    fn bind(server: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let std = std::net::UdpSocket::bind(local)?;
        std.connect(server)?;
        std.set_nonblocking(true)?;
        Ok(Self {
            socket: tokio::net::UdpSocket::from_std(std)?,
            pending: Mutex::new(HashMap::new()),
            uses: AtomicU32::new(1),
            born: Instant::now(),
            retired: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Picks an unpredictable ID not waiting on this socket and registers
    /// `question` under it.
    fn register(&self, question: &[u8]) -> Option<(u16, oneshot::Receiver<Answer>)> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending();
        if pending.len() >= MAX_PENDING {
            return None;
        }
        let id = loop {
            let id: u16 = rand::random();
            if !pending.contains_key(&id) {
                break id;
            }
        };
        pending.insert(
            id,
            Pending {
                question: question.into(),
                tx,
            },
        );
        Some((id, rx))
    }

    /// Sends without waiting when the socket has room (nearly always).
    async fn send(&self, query: &[u8], deadline: Instant) -> io::Result<()> {
        for attempt in 0..2 {
            match self.socket.try_send(query) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return match timeout_at(deadline, self.socket.send(query)).await {
                        Ok(r) => r.map(|_| ()),
                        Err(_) => Err(io::ErrorKind::TimedOut.into()),
                    };
                }
                // A pending ICMP error meant for an earlier datagram: once more.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && attempt == 0 => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::ErrorKind::ConnectionRefused.into())
    }

    /// Hands `resp` to the query waiting for its ID, if it answers that
    /// query's question; anything else is ignored.
    fn dispatch(&self, resp: &[u8]) {
        let Some(h) = Header::parse(resp) else {
            return;
        };
        if !h.is_response() {
            return;
        }
        let mut pending = self.pending();
        let Some(p) = pending.get(&h.id) else {
            tracing::debug!(id = h.id, "upstream answer for no query waiting: ignored");
            return;
        };
        if !answers_question(&p.question, resp) {
            tracing::debug!(id = h.id, "upstream answer to another question: ignored");
            return;
        }
        if let Some(p) = pending.remove(&h.id) {
            drop(pending);
            let _ = p.tx.send(Ok(resp.to_vec()));
        }
    }

    /// The port is closed (ICMP port unreachable): every query waiting on
    /// this socket fails now rather than at its timeout.
    fn fail_all(&self, kind: io::ErrorKind) {
        let waiting: Vec<Pending> = self.pending().drain().map(|(_, p)| p).collect();
        for p in waiting {
            let _ = p.tx.send(Err(kind));
        }
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn done(&self) -> bool {
        self.retired.load(Ordering::Relaxed) && self.pending().is_empty()
    }
}

/// Compares an answer's question with the one asked (which has no header).
fn answers_question(question: &[u8], resp: &[u8]) -> bool {
    let mut asked = [0u8; wire::HEADER_LEN + 260];
    let Some(dst) = asked.get_mut(wire::HEADER_LEN..wire::HEADER_LEN + question.len()) else {
        return false;
    };
    dst.copy_from_slice(question);
    let end = wire::HEADER_LEN + question.len();
    same_question(&asked[..end], resp)
}

/// A registered query: dropped (answered, timed out or cancelled), it
/// leaves the socket's table.
struct Waiting<'a> {
    sock: &'a Sock,
    id: u16,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut pending = self.sock.pending();
        pending.remove(&self.id);
        let empty = pending.is_empty();
        drop(pending);
        if empty && self.sock.retired.load(Ordering::Relaxed) {
            self.sock.wake.notify_one();
        }
    }
}

/// The reader task of one socket: drains every datagram that is ready,
/// then waits for more; ends once the socket is retired and idle.
async fn read(sock: Arc<Sock>) {
    let mut buf = vec![0u8; RECV_SIZE];
    loop {
        if sock.done() {
            return;
        }
        tokio::select! {
            ready = sock.socket.readable() => {
                if ready.is_err() {
                    sock.fail_all(io::ErrorKind::BrokenPipe);
                    return;
                }
            }
            () = sock.wake.notified() => continue,
        }
        loop {
            match sock.socket.try_recv(&mut buf) {
                Ok(n) => sock.dispatch(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    sock.fail_all(e.kind());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "upstream socket receive error");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question() -> Vec<u8> {
        b"\x03www\x07example\x00\x00\x01\x00\x01".to_vec()
    }

    fn answer(id: u16, q: &[u8]) -> Vec<u8> {
        let mut a = id.to_be_bytes().to_vec();
        a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
        a.extend_from_slice(q);
        a
    }

    #[tokio::test]
    async fn answers_reach_their_query_and_nothing_else_does() {
        let sock = Sock::bind("127.0.0.1:9".parse().expect("addr")).expect("bind");
        let q = question();
        let (id, mut rx) = sock.register(&q).expect("registered");
        // Unknown ID, a query instead of an answer, another question: ignored.
        sock.dispatch(&answer(id.wrapping_add(1), &q));
        let mut not_answer = answer(id, &q);
        not_answer[2] = 0x01;
        sock.dispatch(&not_answer);
        let mut other = q.clone();
        other[1] = b'x';
        sock.dispatch(&answer(id, &other));
        assert!(rx.try_recv().is_err(), "nothing believed yet");
        // The real one, in another case.
        let mut upper = q.clone();
        upper[1] = b'W';
        sock.dispatch(&answer(id, &upper));
        let got = rx.try_recv().expect("answered").expect("ok");
        assert_eq!(got, answer(id, &upper));
        assert!(sock.pending().is_empty());
    }

    #[tokio::test]
    async fn ids_are_spread_and_never_shared_on_a_socket() {
        let sock = Sock::bind("127.0.0.1:9".parse().expect("addr")).expect("bind");
        let mut ids = std::collections::HashSet::new();
        let mut keep = Vec::new();
        for _ in 0..2000 {
            let (id, rx) = sock.register(&question()).expect("registered");
            assert!(ids.insert(id), "ID {id} given twice");
            keep.push(rx);
        }
        let high = ids.iter().filter(|&&id| id >= 0x8000).count();
        assert!(
            (800..1200).contains(&high),
            "IDs not uniform: {high} of 2000 high"
        );
    }

    #[tokio::test]
    async fn sockets_get_random_ports_and_are_replaced_when_worn() {
        let pool = Pool::new("127.0.0.1:9".parse().expect("addr"), 1);
        let first = pool.socket().expect("socket");
        let port = first.socket.local_addr().expect("addr").port();
        first.uses.store(MAX_USES, Ordering::Relaxed);
        let second = pool.socket().expect("socket");
        assert!(!Arc::ptr_eq(&first, &second), "worn socket replaced");
        assert!(first.retired.load(Ordering::Relaxed));
        assert_ne!(second.socket.local_addr().expect("addr").port(), port);
        assert!(
            Arc::ptr_eq(&second, &pool.socket().expect("socket")),
            "fresh one kept"
        );
    }
}
