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

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::forward::Query;
use super::{Error, ReadPass, mmsg, question_end, same_question};
use crate::wire::{self, Header};

/// Queries sent on one socket before it is replaced.
const MAX_USES: u32 = 4096;
/// Age at which a socket is replaced, however few queries it carried.
const MAX_AGE: Duration = Duration::from_secs(30);
/// Queries waiting on one socket at most: IDs stay easy to find, and a
/// flood cannot fill the 16-bit space.
const MAX_PENDING: usize = 16_384;
/// Longest query sent: header, a 255-byte name, type, class and our OPT.
const MAX_QUERY: usize = 512;
/// How often the reader task looks at the queries waiting on its socket
/// (to send again, to end an attempt, to call the client timer), while
/// some do; an idle socket's reader waits for a datagram alone.
const SWEEP: Duration = Duration::from_millis(25);

/// The sockets to one upstream.
pub(super) struct Pool {
    server: SocketAddr,
    /// The server as configured, for errors.
    label: Arc<str>,
    slots: Box<[Mutex<Option<Arc<Sock>>>]>,
    /// What each reader task calls around a pass over its socket.
    pass: ReadPass,
}

/// The queries waiting on one socket.
#[derive(Default)]
struct Table {
    queries: HashMap<u16, Box<Query>, IdHash>,
    /// The reader has ended (the socket was retired and idle): a query
    /// put here would never be answered nor ended, so none may be.
    closed: bool,
}

/// One connected socket, its queries in flight, and the state its reader
/// task watches.
struct Sock {
    socket: tokio::net::UdpSocket,
    /// The server as configured, for errors.
    label: Arc<str>,
    /// Queries waiting, by ID.
    pending: Mutex<Table>,
    uses: AtomicU32,
    born: Instant,
    /// Replaced: the reader stops once nothing is pending.
    retired: AtomicBool,
    /// Wakes the reader: a query came to wait on an idle socket, or the
    /// socket was retired.
    wake: Notify,
    /// Sweeps done, for the test that an idle reader does none.
    #[cfg(test)]
    sweeps: AtomicU32,
}

impl Pool {
    pub(super) fn new(server: SocketAddr, sockets: usize, label: Arc<str>, pass: ReadPass) -> Self {
        Self {
            server,
            label,
            slots: (0..sockets.max(1)).map(|_| Mutex::new(None)).collect(),
            pass,
        }
    }

    pub(super) fn set_read_pass(&mut self, pass: ReadPass) {
        self.pass = pass;
    }

    pub(super) fn server(&self) -> SocketAddr {
        self.server
    }

    /// Registers the attempt of `q` on a socket and sends its query from
    /// this thread; the socket's reader task takes it from there (the
    /// answer, a resend halfway through, the end of the attempt).
    pub(super) fn start(&self, mut q: Box<Query>) {
        let len = q.reply.query().len();
        if question_end(q.reply.query()).is_none() || len > MAX_QUERY {
            return q.settle(Err(Error::Unparsable));
        }
        // Inside a batch, its queries to this upstream share one socket, so
        // that one sendmmsg carries them (each still has its random ID).
        let mut sock = batch_socket(self).map_or_else(|| self.socket(), Ok);
        // A socket retired since it was picked may have lost its reader
        // meanwhile: then the slot's current one (never retired).
        if sock.as_ref().is_ok_and(|s| s.pending().closed) {
            sock = self.socket();
        }
        let sock = match sock {
            Ok(s) => s,
            Err(e) => return q.settle(Err(Error::io(&self.label, e))),
        };
        // A copy to send from once the query is in the table: the lock is
        // not held across the system call (the reader would wait on it).
        let mut wire = [0u8; MAX_QUERY];
        let mut pending = sock.pending();
        if pending.closed || pending.queries.len() >= MAX_PENDING {
            drop(pending);
            return q.settle(Err(Error::Busy));
        }
        let id = free_id(&pending.queries);
        let query = q.reply.query();
        wire::put_u16(query, 0, id);
        wire[..len].copy_from_slice(query);
        let idle = pending.queries.is_empty();
        pending.queries.insert(id, q);
        drop(pending);
        if idle {
            // The reader of an idle socket has no timer running: start it.
            sock.wake.notify_one();
        }
        let wire = &wire[..len];
        if queue(&sock, id, wire) {
            return;
        }
        // Straight to send(2): tokio's `try_send` first asks the reactor,
        // which has not seen a fresh socket writable yet.
        let raw = socket2::SockRef::from(&sock.socket);
        let sent = raw.send(wire).or_else(|e| {
            // A pending ICMP error meant for an earlier datagram: once more.
            if e.kind() == io::ErrorKind::ConnectionRefused {
                raw.send(wire)
            } else {
                Err(e)
            }
        });
        match sent {
            Ok(_) => {}
            // A full send buffer: the datagram is lost as on the way, and
            // the resend halfway through the attempt sends it again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // Not sent: take it back, unless the reader already has.
                let taken = sock.pending().queries.remove(&id);
                if let Some(q) = taken {
                    q.settle(Err(Error::io(&self.label, e)));
                }
            }
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
        let fresh = Arc::new(Sock::bind(self.server, self.label.clone())?);
        tokio::spawn(read(fresh.clone(), self.pass));
        if let Some(old) = current.replace(fresh.clone()) {
            old.retire();
        }
        Ok(fresh)
    }

    /// Sweeps done by the readers of the sockets in use (tests).
    #[cfg(test)]
    pub(super) fn sweeps(&self) -> u32 {
        self.slots
            .iter()
            .filter_map(|s| s.lock().ok().and_then(|s| s.clone()))
            .map(|s| s.sweeps.load(Ordering::Relaxed))
            .sum()
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
    fn bind(server: SocketAddr, label: Arc<str>) -> io::Result<Self> {
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
            label,
            pending: Mutex::new(Table::default()),
            uses: AtomicU32::new(1),
            born: Instant::now(),
            retired: AtomicBool::new(false),
            wake: Notify::new(),
            #[cfg(test)]
            sweeps: AtomicU32::new(0),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Table> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
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
        let Some(q) = pending.queries.get_mut(&h.id) else {
            tracing::debug!(id = h.id, "upstream answer for no query waiting: ignored");
            return;
        };
        if !same_question(q.reply.query(), resp) {
            tracing::debug!(id = h.id, "upstream answer to another question: ignored");
            return;
        }
        let Some(q) = pending.queries.remove(&h.id) else {
            return;
        };
        drop(pending);
        q.settle(Ok(resp.to_vec()));
    }

    /// Sends again the queries halfway through their attempt (a datagram
    /// lost on the way is a delay, not a SERVFAIL), calls the client timer
    /// of those overdue, and ends those whose attempt is over.
    fn sweep(&self, label: &Arc<str>) {
        #[cfg(test)]
        self.sweeps.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut late = Vec::new();
        let mut pending = self.pending();
        for (&id, q) in &mut pending.queries {
            if q.attempt.until <= now {
                late.push(id);
                continue;
            }
            if q.attempt.resend.is_some_and(|at| at <= now) {
                q.attempt.resend = None;
                let _ = socket2::SockRef::from(&self.socket).send(q.reply.query());
            }
            if q.overdue_at.is_some_and(|at| at <= now) {
                q.overdue();
            }
        }
        let late: Vec<Box<Query>> = late
            .iter()
            .filter_map(|id| pending.queries.remove(id))
            .collect();
        drop(pending);
        for q in late {
            q.settle(Err(Error::Timeout {
                server: label.clone(),
            }));
        }
    }

    /// The port is closed (ICMP port unreachable) or the socket broke:
    /// every query waiting on it fails now rather than at its timeout.
    fn fail_all(&self, kind: io::ErrorKind, label: &Arc<str>) {
        let waiting: Vec<Box<Query>> = self.pending().queries.drain().map(|(_, q)| q).collect();
        for q in waiting {
            q.settle(Err(Error::io(label, kind.into())));
        }
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }
}

/// Fast-path queries queued on this thread until [`flush_queued`].
struct Outgoing {
    active: bool,
    /// The socket the batch uses for each pool (by the pool's address).
    sockets: Vec<(usize, Arc<Sock>)>,
    /// Each query: its socket, ID, and place in `bytes`.
    queued: Vec<(Arc<Sock>, u16, usize, usize)>,
    bytes: Vec<u8>,
}

thread_local! {
    static OUTGOING: RefCell<Outgoing> = const {
        RefCell::new(Outgoing { active: false, sockets: Vec::new(), queued: Vec::new(), bytes: Vec::new() })
    };
}

/// From now on, fast-path queries started on this thread (the server's
/// UDP worker) queue until [`flush_queued`].
pub(super) fn queue_on_this_thread() {
    OUTGOING.with_borrow_mut(|o| o.active = true);
}

/// Sends what this thread queued, one `sendmmsg` per socket.
pub(super) fn flush_queued() {
    let (queued, bytes) = OUTGOING.with_borrow_mut(|o| {
        o.sockets.clear();
        (std::mem::take(&mut o.queued), std::mem::take(&mut o.bytes))
    });
    if queued.is_empty() {
        OUTGOING.with_borrow_mut(|o| o.bytes = bytes);
        return;
    }
    let mut rest: &[(Arc<Sock>, u16, usize, usize)] = &queued;
    while let Some((sock, _, _, _)) = rest.first() {
        let run = rest
            .iter()
            .take_while(|q| Arc::ptr_eq(&q.0, sock))
            .count()
            .min(mmsg::BATCH);
        let msgs: Vec<&[u8]> = rest[..run]
            .iter()
            .map(|&(_, _, s, l)| bytes.get(s..s + l).unwrap_or_default())
            .collect();
        let fd = sock.socket.as_raw_fd();
        let mut sent = 0;
        let mut error = None;
        let mut refused_once = false;
        while sent < run {
            match mmsg::send_connected(fd, &msgs[sent..]) {
                Ok(0) => break,
                Ok(k) => sent += k,
                // A pending ICMP error meant for an earlier datagram: once more.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && !refused_once => {
                    refused_once = true;
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        // Those not sent for want of buffer space (or left by a short
        // count) are lost as on the way: the resend halfway through their
        // attempt sends them again. Any other error ends their attempt.
        if let Some(e) = error.filter(|e| e.kind() != io::ErrorKind::WouldBlock) {
            for &(_, id, _, _) in &rest[sent..run] {
                let taken = sock.pending().queries.remove(&id);
                if let Some(q) = taken {
                    q.settle(Err(Error::io(
                        &sock.label,
                        io::Error::new(e.kind(), e.to_string()),
                    )));
                }
            }
        }
        rest = &rest[run..];
    }
    // Keep the buffers' capacity for the next batch.
    OUTGOING.with_borrow_mut(|o| {
        let (mut q, mut b) = (queued, bytes);
        q.clear();
        b.clear();
        o.queued = q;
        o.bytes = b;
    });
}

/// The socket this thread's batch already uses for `pool`, if any.
fn batch_socket(pool: &Pool) -> Option<Arc<Sock>> {
    let key = std::ptr::from_ref(pool) as usize;
    OUTGOING.with_borrow_mut(|o| {
        if !o.active {
            return None;
        }
        let found = o.sockets.iter().find(|(k, _)| *k == key).map(|(_, s)| {
            s.uses.fetch_add(1, Ordering::Relaxed);
            s.clone()
        });
        if found.is_none() {
            o.sockets.push((key, pool.socket().ok()?));
        }
        found.or_else(|| o.sockets.last().map(|(_, s)| s.clone()))
    })
}

/// Queues `wire` (query `id` on `sock`) on a queueing thread; false elsewhere.
fn queue(sock: &Arc<Sock>, id: u16, wire: &[u8]) -> bool {
    OUTGOING.with_borrow_mut(|o| {
        if !o.active {
            return false;
        }
        let start = o.bytes.len();
        o.bytes.extend_from_slice(wire);
        o.queued.push((sock.clone(), id, start, wire.len()));
        true
    })
}

/// Hashes the IDs of the pending table. They are random already (and the
/// table is per socket, its keys chosen by us), so one multiplication
/// spreads them; SipHash's resistance to chosen keys buys nothing here.
type IdHash = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// An unpredictable ID (a CSPRNG) that no query on this socket waits for.
fn free_id<V>(pending: &HashMap<u16, V, IdHash>) -> u16 {
    loop {
        let id: u16 = rand::random();
        if !pending.contains_key(&id) {
            return id;
        }
    }
}

/// The reader task of one socket: drains every datagram that is ready
/// (`recvmmsg`), answers their queries in one pass (inside `pass`, so the
/// client answers of a pass leave together), then waits for more; sweeps
/// the queries waiting every [`SWEEP`] while there are any, and only then;
/// ends once the socket is retired and idle.
async fn read(sock: Arc<Sock>, pass: ReadPass) {
    let mut batch = mmsg::RecvBatch::new();
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let fd = sock.socket.as_raw_fd();
    loop {
        let waiting = {
            let mut pending = sock.pending();
            if pending.queries.is_empty() && sock.retired.load(Ordering::Relaxed) {
                // Under the lock: no query can come to wait after this.
                pending.closed = true;
                return;
            }
            !pending.queries.is_empty()
        };
        tokio::select! {
            ready = sock.socket.readable() => {
                if ready.is_err() {
                    sock.fail_all(io::ErrorKind::BrokenPipe, &sock.label);
                    return;
                }
            }
            () = sock.wake.notified() => {
                if !waiting {
                    // A first query came to wait: its sweeps start now.
                    sweep.reset();
                }
                continue;
            }
            _ = sweep.tick(), if waiting => {
                sock.sweep(&sock.label);
                continue;
            }
        }
        (pass.begin)();
        loop {
            // A short batch means the queue is empty: the closure then
            // says WouldBlock itself, so tokio clears the readiness it
            // read *before* this receive. A datagram that came after that
            // moved the readiness on and is heard again; clearing it in a
            // second call instead could swallow the edge of a datagram
            // that came in between, leaving it unread until another came
            // (a forwarded answer lost behind a garbage reply).
            let mut got = 0;
            let read = sock.socket.try_io(tokio::io::Interest::READABLE, || {
                got = batch.recv(fd)?;
                if got < mmsg::BATCH {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
            for i in 0..got {
                if let Some(d) = batch.get(i) {
                    sock.dispatch(d);
                }
            }
            match read {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    sock.fail_all(e.kind(), &sock.label);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "upstream socket receive error");
                    break;
                }
            }
        }
        (pass.end)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Transport, UpstreamConfig, UpstreamServer};
    use crate::upstream::{Link, Upstream};

    fn upstream(server: SocketAddr, timeout_ms: u64) -> Arc<Upstream> {
        Arc::new(Upstream::new(&UpstreamConfig {
            servers: vec![UpstreamServer {
                addr: server,
                transport: Transport::Udp,
            }],
            timeout: Duration::from_millis(timeout_ms),
            udp_sockets: 1,
            ..UpstreamConfig::default()
        }))
    }

    fn question() -> Vec<u8> {
        b"\x03www\x07example\x00\x00\x01\x00\x01".to_vec()
    }

    fn query() -> Vec<u8> {
        let mut q = vec![0, 0, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&question());
        q
    }

    fn answer(id: u16, q: &[u8]) -> Vec<u8> {
        let mut a = id.to_be_bytes().to_vec();
        a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
        a.extend_from_slice(q);
        a
    }

    #[tokio::test]
    async fn answers_reach_their_query_and_nothing_else_does() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let u = upstream(server.local_addr().expect("addr"), 2000);
        let asking = tokio::spawn({
            let u = u.clone();
            async move { u.forward(&query()).await }
        });
        let mut buf = [0u8; 512];
        let (_, peer) = server.recv_from(&mut buf).await.expect("the query");
        let id = u16::from_be_bytes([buf[0], buf[1]]);
        let q = question();
        // Unknown ID, a query instead of an answer, another question: ignored.
        let mut not_answer = answer(id, &q);
        not_answer[2] = 0x01;
        let mut other = q.clone();
        other[1] = b'x';
        for bad in [
            answer(id.wrapping_add(1), &q),
            not_answer,
            answer(id, &other),
        ] {
            server.send_to(&bad, peer).await.expect("send");
        }
        // The real one, in another case.
        let mut upper = q.clone();
        upper[1] = b'W';
        server
            .send_to(&answer(id, &upper), peer)
            .await
            .expect("send");
        let (i, got) = asking.await.expect("task").expect("answered");
        assert_eq!((i, got), (0, answer(id, &upper)));
    }

    #[test]
    fn ids_are_spread_and_never_shared_on_a_socket() {
        let mut pending: HashMap<u16, (), IdHash> = HashMap::default();
        for _ in 0..2000 {
            let id = free_id(&pending);
            assert!(pending.insert(id, ()).is_none(), "ID {id} given twice");
        }
        let high = pending.keys().filter(|&&id| id >= 0x8000).count();
        assert!(
            (800..1200).contains(&high),
            "IDs not uniform: {high} of 2000 high"
        );
    }

    #[tokio::test]
    async fn sockets_get_random_ports_and_are_replaced_when_worn() {
        let addr = "127.0.0.1:9".parse().expect("addr");
        let pool = Pool::new(addr, 1, "test".into(), ReadPass::NONE);
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

    /// Issue 16: each upstream has 32 reader tasks; woken every 25 ms when
    /// idle, that was some 1,300 wake-ups a second per upstream for nothing.
    #[tokio::test]
    async fn a_reader_sweeps_only_while_queries_wait() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let u = upstream(silent.local_addr().expect("addr"), 300);
        let r = u.forward(&query()).await;
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
        let Link::Udp(pool) = &u.servers[0].link else {
            panic!("a UDP server");
        };
        let swept = pool.sweeps();
        assert!(swept >= 5, "swept {swept} times while the query waited");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.sweeps(), swept, "an idle reader sleeps");
    }

    /// A UDP worker's batch keeps the socket it picked for an upstream for
    /// the whole batch; if that socket is retired meanwhile and its reader,
    /// idle, ends, a query put on it would wait for ever (and with it every
    /// query that joins its flight).
    #[tokio::test]
    async fn a_query_never_waits_on_a_socket_whose_reader_ended() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let u = upstream(server.local_addr().expect("addr"), 1000);
        let Link::Udp(pool) = &u.servers[0].link else {
            panic!("a UDP server");
        };
        queue_on_this_thread();
        let worn = batch_socket(pool).expect("the batch's socket");
        worn.uses.store(MAX_USES, Ordering::Relaxed);
        let fresh = pool.socket().expect("a fresh socket");
        assert!(!Arc::ptr_eq(&worn, &fresh));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(worn.pending().closed, "the retired socket's reader ended");
        let asking = tokio::spawn({
            let u = u.clone();
            async move { u.forward(&query()).await }
        });
        tokio::task::yield_now().await;
        flush_queued();
        let mut buf = [0u8; 512];
        let (n, peer) = server.recv_from(&mut buf).await.expect("the query");
        buf[2] |= 0x80;
        server.send_to(&buf[..n], peer).await.expect("answer");
        let answered = tokio::time::timeout(Duration::from_secs(2), asking).await;
        assert!(
            matches!(answered, Ok(Ok(Ok(_)))),
            "answered on the fresh socket: {answered:?}"
        );
    }
}
