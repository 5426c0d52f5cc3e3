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

use std::cell::RefCell;
use std::os::fd::AsRawFd;

use super::{Error, Fast, mmsg, question_end, same_question};
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

/// The sockets to one upstream.
pub(super) struct Pool {
    server: SocketAddr,
    /// The server as configured, for errors.
    label: Arc<str>,
    slots: Box<[Mutex<Option<Arc<Sock>>>]>,
}

/// One connected socket, its queries in flight, and the state its reader
/// task watches.
struct Sock {
    socket: tokio::net::UdpSocket,
    /// The server as configured, for errors.
    label: Arc<str>,
    /// Queries waiting, by ID.
    pending: Mutex<HashMap<u16, Pending, IdHash>>,
    uses: AtomicU32,
    born: Instant,
    /// Replaced: the reader stops once nothing is pending.
    retired: AtomicBool,
    wake: Notify,
}

/// A query waiting for its answer.
enum Pending {
    /// A task awaits it ([`Pool::exchange`]).
    Task {
        /// Header-less question as sent (name, type, class), to check answers.
        question: Box<[u8]>,
        tx: oneshot::Sender<Answer>,
    },
    /// The fast path ([`Pool::start`]): the reader task answers it.
    Fast(Box<Fast>),
}

impl Pending {
    /// True when `resp` carries the question this query asked.
    fn asked(&mut self, resp: &[u8]) -> bool {
        match self {
            Self::Task { question, .. } => answers_question(question, resp),
            Self::Fast(f) => same_question(f.reply.query(), resp),
        }
    }

    fn fail(self, kind: io::ErrorKind, label: &Arc<str>) {
        match self {
            Self::Task { tx, .. } => {
                let _ = tx.send(Err(kind));
            }
            Self::Fast(f) => f.failed(Error::io(label, kind.into())),
        }
    }
}

/// How often the reader task looks for fast-path queries past their
/// attempt deadline (tasks time out on their own).
const SWEEP: Duration = Duration::from_millis(25);

/// An answer's bytes, or why the socket gave up on every query it had.
type Answer = Result<Vec<u8>, io::ErrorKind>;

impl Pool {
    pub(super) fn new(server: SocketAddr, sockets: usize, label: Arc<str>) -> Self {
        Self {
            server,
            label,
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

    /// The fast path: registers `fast` on a socket and sends its query from
    /// this thread; the socket's reader task takes it from there.
    pub(super) fn start(&self, mut fast: Box<Fast>) {
        let label = self.label.clone();
        // Inside a batch, its queries to this upstream share one socket, so
        // that one sendmmsg carries them (each still has its random ID).
        let sock = match batch_socket(self).map_or_else(|| self.socket(), Ok) {
            Ok(s) => s,
            Err(e) => return fast.failed(Error::io(&label, e)),
        };
        // A copy to send from once the query is in the table: the lock is
        // not held across the system call (the reader would wait on it).
        let mut wire = [0u8; MAX_QUERY];
        let len = fast.reply.query().len();
        if question_end(fast.reply.query()).is_none() || len > MAX_QUERY {
            return fast.finish(Err(Error::Unparsable));
        }
        let mut pending = sock.pending();
        if pending.len() >= MAX_PENDING {
            drop(pending);
            return fast.retry();
        }
        let id = free_id(&pending);
        let query = fast.reply.query();
        wire::put_u16(query, 0, id);
        wire[..len].copy_from_slice(query);
        pending.insert(id, Pending::Fast(fast));
        drop(pending);
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
        if let Err(e) = sent {
            // Not sent: take it back, unless the sweeper already has.
            let Some(Pending::Fast(fast)) = sock.pending().remove(&id) else {
                return;
            };
            if e.kind() == io::ErrorKind::WouldBlock {
                fast.retry();
            } else {
                fast.failed(Error::io(&label, e));
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
        tokio::spawn(read(fresh.clone(), self.label.clone()));
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
            pending: Mutex::new(HashMap::default()),
            uses: AtomicU32::new(1),
            born: Instant::now(),
            retired: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Pending, IdHash>> {
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
        let id = free_id(&pending);
        pending.insert(
            id,
            Pending::Task {
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
        let Some(p) = pending.get_mut(&h.id) else {
            tracing::debug!(id = h.id, "upstream answer for no query waiting: ignored");
            return;
        };
        if !p.asked(resp) {
            tracing::debug!(id = h.id, "upstream answer to another question: ignored");
            return;
        }
        let Some(p) = pending.remove(&h.id) else {
            return;
        };
        drop(pending);
        match p {
            Pending::Task { tx, .. } => {
                let _ = tx.send(Ok(resp.to_vec()));
            }
            Pending::Fast(f) => f.answered(resp.to_vec()),
        }
    }

    /// Sends again the fast-path queries halfway through their attempt (a
    /// datagram lost on the way is a delay, not a SERVFAIL) and fails those
    /// whose attempt is over.
    fn sweep(&self, label: &Arc<str>) {
        let now = Instant::now();
        let mut pending = self.pending();
        for p in pending.values_mut() {
            if let Pending::Fast(f) = p
                && f.resend.is_some_and(|at| at <= now)
            {
                f.resend = None;
                let _ = socket2::SockRef::from(&self.socket).send(f.reply.query());
            }
        }
        let late: Vec<u16> = pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::Fast(f) if f.attempt <= now))
            .map(|(&id, _)| id)
            .collect();
        let late: Vec<Pending> = late.iter().filter_map(|id| pending.remove(id)).collect();
        drop(pending);
        for p in late {
            if let Pending::Fast(f) = p {
                f.failed(Error::Timeout {
                    server: label.clone(),
                });
            }
        }
    }

    /// The port is closed (ICMP port unreachable): every query waiting on
    /// this socket fails now rather than at its timeout.
    fn fail_all(&self, kind: io::ErrorKind, label: &Arc<str>) {
        let waiting: Vec<Pending> = self.pending().drain().map(|(_, p)| p).collect();
        for p in waiting {
            p.fail(kind, label);
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
        for &(_, id, _, _) in &rest[sent..run] {
            let Some(Pending::Fast(fast)) = sock.pending().remove(&id) else {
                continue;
            };
            match &error {
                Some(e) if e.kind() != io::ErrorKind::WouldBlock => {
                    fast.failed(Error::io(
                        &sock.label,
                        io::Error::new(e.kind(), e.to_string()),
                    ));
                }
                _ => fast.retry(),
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
fn free_id(pending: &HashMap<u16, Pending, IdHash>) -> u16 {
    loop {
        let id: u16 = rand::random();
        if !pending.contains_key(&id) {
            return id;
        }
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

/// The reader task of one socket: drains every datagram that is ready
/// (`recvmmsg`), answers their clients in one batch, then waits for more;
/// ends once the socket is retired and idle.
async fn read(sock: Arc<Sock>, label: Arc<str>) {
    let mut batch = mmsg::RecvBatch::new();
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let fd = sock.socket.as_raw_fd();
    loop {
        if sock.done() {
            return;
        }
        tokio::select! {
            ready = sock.socket.readable() => {
                if ready.is_err() {
                    sock.fail_all(io::ErrorKind::BrokenPipe, &label);
                    return;
                }
            }
            () = sock.wake.notified() => continue,
            _ = sweep.tick() => {
                sock.sweep(&label);
                continue;
            }
        }
        mmsg::answering(|| {
            loop {
                match sock
                    .socket
                    .try_io(tokio::io::Interest::READABLE, || batch.recv(fd))
                {
                    Ok(n) => {
                        for i in 0..n {
                            if let Some(d) = batch.get(i) {
                                sock.dispatch(d);
                            }
                        }
                        if n < mmsg::BATCH {
                            // Short batch: the queue is empty. Tell the
                            // reactor without another system call to hear
                            // it again (a datagram that came meanwhile is a
                            // new event, so nothing is missed).
                            let _ = sock.socket.try_io(tokio::io::Interest::READABLE, || {
                                Err::<(), _>(io::ErrorKind::WouldBlock.into())
                            });
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        sock.fail_all(e.kind(), &label);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "upstream socket receive error");
                        break;
                    }
                }
            }
        });
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
        let sock = Sock::bind("127.0.0.1:9".parse().expect("addr"), "test".into()).expect("bind");
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
        let sock = Sock::bind("127.0.0.1:9".parse().expect("addr"), "test".into()).expect("bind");
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
        let pool = Pool::new("127.0.0.1:9".parse().expect("addr"), 1, "test".into());
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
