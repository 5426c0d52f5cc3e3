//! dnstap output: every query and answer, as the CLIENT_QUERY and
//! CLIENT_RESPONSE messages of dnstap.proto, written as a Frame Streams
//! stream to a collector on a unix socket or over TCP — what Unbound,
//! BIND, Knot and CoreDNS send, so `fstrm_capture`, `dnstap`, vector or
//! dnscollector read it unchanged.
//!
//! ```text
//!  UDP worker ─► TapRecorder ─► pending bytes ─(flush, after sendmmsg)─► its own byte ring ─┐
//!  TCP task, forward answer ─► one shared byte ring (lock) ─────────────────────────────────┤ full: dropped
//!                                                                                           ▼ and counted
//!      writer thread: records ─► protobuf ─► Frame Streams data frames ─► unix socket / TCP
//!                     (READY/ACCEPT/START on connect, STOP/FINISH on shutdown, reconnects with backoff)
//! ```
//!
//! Unlike a [`QueryEvent`](super::QueryEvent), a dnstap message carries the
//! whole query and answer, whose sizes vary from 30 bytes to 64 KiB, so
//! the rings hold bytes, not fixed-size slots: each record is a 40-byte
//! header and the two messages, written whole (a reader never sees half a
//! record) and copied with one `memcpy` per batch. Nothing of this exists
//! unless `[dnstap]` is configured; when it is, the serving thread copies
//! the bytes it already has and reads the clock once per batch, and the
//! writer thread (at a lower priority, like the observer's) does the
//! encoding and the I/O. A full ring, a slow collector or one that is gone
//! drops messages and counts them (`dnstap_dropped`), never a query.
//!
//! The wire formats are small enough to write by hand (and are tested
//! against Debian's `fstrm_capture` and `dnstap-ldns` in `tests/it/dnstap.rs`):
//!
//! - Frame Streams (fstrm, bidirectional): a control frame is a zero
//!   length (the escape), its length, its type and fields (the content type
//!   `protobuf:dnstap.Dnstap`); a data frame is a big-endian length and the
//!   payload.
//! - dnstap.proto: `Dnstap { identity = 1, version = 2, message = 14,
//!   type = 15 (MESSAGE) }` and `Message { type = 1, socket_family = 2,
//!   socket_protocol = 3, query_address = 4, query_port = 6,
//!   query_time_sec = 8, query_time_nsec = 9 (fixed32), query_message = 10,
//!   response_time_sec = 12, response_time_nsec = 13 (fixed32),
//!   response_message = 14 }`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{DnstapConfig, DnstapTarget};

use super::Transport;

/// The Frame Streams content type of dnstap.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// Frame Streams control frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Control {
    Accept = 1,
    Start = 2,
    Stop = 3,
    Ready = 4,
    Finish = 5,
}

impl Control {
    fn from_u32(n: u32) -> Option<Self> {
        Some(match n {
            1 => Self::Accept,
            2 => Self::Start,
            3 => Self::Stop,
            4 => Self::Ready,
            5 => Self::Finish,
            _ => return None,
        })
    }
}

/// The control frame field that holds a content type.
const FIELD_CONTENT_TYPE: u32 = 1;
/// The longest control frame a reader may send (libfstrm's limit).
const MAX_CONTROL: usize = 512;

/// dnstap `Message.type` values embargo sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    ClientQuery = 5,
    ClientResponse = 6,
}

/// Appends a control frame: escape, length, type, and the content type
/// field when `content_type` (READY, ACCEPT and START carry it).
pub fn push_control(out: &mut Vec<u8>, kind: Control, content_type: bool) {
    let len = 4 + if content_type {
        8 + CONTENT_TYPE.len()
    } else {
        0
    };
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&(kind as u32).to_be_bytes());
    if content_type {
        out.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        out.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        out.extend_from_slice(CONTENT_TYPE);
    }
}

/// A control frame as read: its type and the content types it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFrame {
    pub kind: Control,
    pub content_types: Vec<Vec<u8>>,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads one control frame (the escape first): what a writer expects
/// from the reader (ACCEPT, FINISH), and what a test reader reads.
pub fn read_control(r: &mut impl Read) -> io::Result<ControlFrame> {
    let mut word = [0u8; 4];
    r.read_exact(&mut word)?;
    if word != [0; 4] {
        return Err(invalid(
            "Frame Streams: a data frame where a control frame was due",
        ));
    }
    r.read_exact(&mut word)?;
    let len = u32::from_be_bytes(word) as usize;
    if !(4..=MAX_CONTROL).contains(&len) {
        return Err(invalid(format!(
            "Frame Streams: a control frame of {len} bytes"
        )));
    }
    let mut frame = vec![0u8; len];
    r.read_exact(&mut frame)?;
    parse_control(&frame)
}

/// Parses a control frame's body (after the escape and the length).
pub fn parse_control(frame: &[u8]) -> io::Result<ControlFrame> {
    let word = |at: usize| {
        frame
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let kind = word(0)
        .and_then(Control::from_u32)
        .ok_or_else(|| invalid("Frame Streams: an unknown control frame type"))?;
    let mut content_types = Vec::new();
    let mut at = 4;
    while at < frame.len() {
        let (Some(field), Some(len)) = (word(at), word(at + 4)) else {
            return Err(invalid("Frame Streams: a truncated control field"));
        };
        let start = at + 8;
        let value = frame
            .get(start..start + len as usize)
            .ok_or_else(|| invalid("Frame Streams: a control field past the frame"))?;
        if field == FIELD_CONTENT_TYPE {
            content_types.push(value.to_vec());
        }
        at = start + len as usize;
    }
    Ok(ControlFrame {
        kind,
        content_types,
    })
}

// ---- the records in the rings -------------------------------------------

/// Bytes before a record's messages: lengths, family, transport, port,
/// address, the two times.
const HEADER: usize = 40;

/// One query and/or answer as the rings carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub client: SocketAddr,
    pub transport: Transport,
    /// When the query arrived, µs since the Unix epoch.
    pub query_us: u64,
    /// When the answer was sent (0 for a query whose answer comes later).
    pub response_us: u64,
    /// The query as the client sent it (empty: no CLIENT_QUERY message).
    pub query: &'a [u8],
    /// The answer as the client got it (empty: no CLIENT_RESPONSE message).
    pub response: &'a [u8],
}

impl Entry<'_> {
    /// dnstap messages this record becomes.
    fn messages(&self) -> u64 {
        u64::from(!self.query.is_empty()) + u64::from(!self.response.is_empty())
    }
}

/// The longest message a record keeps (a TCP message's limit).
const MAX_MESSAGE: usize = u16::MAX as usize;

/// Writes `e`'s header into `h`.
fn header(e: &Entry<'_>) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    let q = e.query.len().min(MAX_MESSAGE) as u16;
    let r = e.response.len().min(MAX_MESSAGE) as u16;
    h[0..2].copy_from_slice(&q.to_le_bytes());
    h[2..4].copy_from_slice(&r.to_le_bytes());
    match e.client.ip().to_canonical() {
        IpAddr::V4(a) => {
            h[4] = 4;
            h[8..12].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            h[4] = 6;
            h[8..24].copy_from_slice(&a.octets());
        }
    }
    h[5] = e.transport as u8;
    h[6..8].copy_from_slice(&e.client.port().to_le_bytes());
    h[24..32].copy_from_slice(&e.query_us.to_le_bytes());
    h[32..40].copy_from_slice(&e.response_us.to_le_bytes());
    h
}

/// Appends `e` as a record.
pub fn push_record(out: &mut Vec<u8>, e: &Entry<'_>) {
    out.extend_from_slice(&header(e));
    out.extend_from_slice(&e.query[..e.query.len().min(MAX_MESSAGE)]);
    out.extend_from_slice(&e.response[..e.response.len().min(MAX_MESSAGE)]);
}

/// The length of the record at the start of `buf`, if a whole one is there.
fn record_len(buf: &[u8]) -> Option<usize> {
    let q = u16::from_le_bytes(buf.get(0..2)?.try_into().ok()?);
    let r = u16::from_le_bytes(buf.get(2..4)?.try_into().ok()?);
    let len = HEADER + usize::from(q) + usize::from(r);
    (buf.len() >= len).then_some(len)
}

/// Reads the record at the start of `buf`; returns it and the rest.
pub fn read_record(buf: &[u8]) -> Option<(Entry<'_>, &[u8])> {
    let len = record_len(buf)?;
    let (rec, rest) = buf.split_at(len);
    let h = &rec[..HEADER];
    let q = usize::from(u16::from_le_bytes([h[0], h[1]]));
    let ip = match h[4] {
        4 => IpAddr::from(<[u8; 4]>::try_from(&h[8..12]).ok()?),
        _ => IpAddr::from(<[u8; 16]>::try_from(&h[8..24]).ok()?),
    };
    let port = u16::from_le_bytes([h[6], h[7]]);
    let time = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap_or_default());
    Some((
        Entry {
            client: SocketAddr::new(ip, port),
            transport: Transport::from_u8(h[5]),
            query_us: time(24),
            response_us: time(32),
            query: &rec[HEADER..HEADER + q],
            response: &rec[HEADER + q..],
        },
        rest,
    ))
}

/// Sets the answer time of every record in `buf` that carries an answer;
/// returns how many bytes of whole records fit in `room`, and the dnstap
/// messages of the records that do not.
fn stamp_and_fit(buf: &mut [u8], response_us: u64, room: usize) -> (usize, u64) {
    let (mut at, mut fit, mut dropped) = (0, 0, 0);
    while let Some(len) = buf.get(at..).and_then(record_len) {
        let rec = &mut buf[at..at + len];
        let (q, r) = (
            u16::from_le_bytes([rec[0], rec[1]]),
            u16::from_le_bytes([rec[2], rec[3]]),
        );
        if r != 0 {
            rec[32..40].copy_from_slice(&response_us.to_le_bytes());
        }
        if fit == at && at + len <= room {
            fit = at + len;
        } else {
            dropped += u64::from(q != 0) + u64::from(r != 0);
        }
        at += len;
    }
    (fit, dropped)
}

/// Pushes `parts` into `ring` as one chunk (a reader sees all or nothing);
/// false when they do not fit.
fn push_whole(ring: &mut rtrb::Producer<u8>, parts: &[&[u8]]) -> bool {
    let total = parts.iter().map(|p| p.len()).sum();
    if total == 0 {
        return true;
    }
    let Ok(mut chunk) = ring.write_chunk(total) else {
        return false;
    };
    let (a, b) = chunk.as_mut_slices();
    let mut dst = a.iter_mut().chain(b.iter_mut());
    for part in parts {
        // The part first: `zip` takes from its left side first, and a
        // destination slot taken after the part ran out would be skipped.
        for (s, d) in part.iter().zip(dst.by_ref()) {
            *d = *s;
        }
    }
    chunk.commit_all();
    true
}

// ---- protobuf -----------------------------------------------------------

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn push_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    push_varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn push_uint(out: &mut Vec<u8>, field: u32, n: u64) {
    push_key(out, field, 0);
    push_varint(out, n);
}

fn push_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    push_key(out, field, 2);
    push_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn push_fixed32(out: &mut Vec<u8>, field: u32, n: u32) {
    push_key(out, field, 5);
    out.extend_from_slice(&n.to_le_bytes());
}

/// Appends the time fields `sec_field` and `sec_field + 1` for `us`.
fn push_time(out: &mut Vec<u8>, sec_field: u32, us: u64) {
    push_uint(out, sec_field, us / 1_000_000);
    push_fixed32(out, sec_field + 1, (us % 1_000_000) as u32 * 1000);
}

/// Appends one dnstap message about `e` as a Frame Streams data frame;
/// `scratch` holds the inner `Message` while its length is unknown.
pub fn push_frame(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    identity: &[u8],
    version: &[u8],
    kind: MessageType,
    e: &Entry<'_>,
) {
    let m = scratch;
    m.clear();
    push_uint(m, 1, kind as u64);
    let ip = e.client.ip().to_canonical();
    push_uint(m, 2, if ip.is_ipv4() { 1 } else { 2 });
    push_uint(
        m,
        3,
        // dnstap.proto's SocketProtocol.
        match e.transport {
            Transport::Udp => 1,
            Transport::Tcp => 2,
            Transport::Dot => 3,
            Transport::Doh => 4,
            Transport::Doq => 7,
        },
    );
    match ip {
        IpAddr::V4(a) => push_bytes(m, 4, &a.octets()),
        IpAddr::V6(a) => push_bytes(m, 4, &a.octets()),
    }
    push_uint(m, 6, u64::from(e.client.port()));
    if e.query_us != 0 {
        push_time(m, 8, e.query_us);
    }
    match kind {
        MessageType::ClientQuery => push_bytes(m, 10, e.query),
        MessageType::ClientResponse => {
            if e.response_us != 0 {
                push_time(m, 12, e.response_us);
            }
            push_bytes(m, 14, e.response);
        }
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    if !identity.is_empty() {
        push_bytes(out, 1, identity);
    }
    if !version.is_empty() {
        push_bytes(out, 2, version);
    }
    push_bytes(out, 14, m);
    // Dnstap.type = MESSAGE
    push_uint(out, 15, 1);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends the frames `e` becomes (CLIENT_QUERY, CLIENT_RESPONSE or both);
/// returns how many.
fn push_frames(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    identity: &[u8],
    version: &[u8],
    e: &Entry<'_>,
) -> u64 {
    if !e.query.is_empty() {
        push_frame(out, scratch, identity, version, MessageType::ClientQuery, e);
    }
    if !e.response.is_empty() {
        push_frame(
            out,
            scratch,
            identity,
            version,
            MessageType::ClientResponse,
            e,
        );
    }
    e.messages()
}

// ---- the serving side ---------------------------------------------------

/// One recorder's drop count, written by that recorder only, on its own
/// cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Dropped(AtomicU64);

/// What the serving side and the writer thread share.
struct Shared {
    config: DnstapConfig,
    /// Bytes per ring.
    capacity: usize,
    /// Rings of recorders made since the writer last looked.
    new_rings: Mutex<Vec<rtrb::Consumer<u8>>>,
    counts: Mutex<Vec<Arc<Dropped>>>,
    /// The ring for tasks (TCP, forwarded answers): one producer behind a lock.
    tasks: Mutex<rtrb::Producer<u8>>,
    tasks_dropped: AtomicU64,
    /// Messages taken from the rings but not delivered (no collector, or it went away).
    lost: AtomicU64,
    sent: AtomicU64,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn dropped(&self) -> u64 {
        let rings: u64 = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum();
        rings + self.tasks_dropped.load(Ordering::Relaxed) + self.lost.load(Ordering::Relaxed)
    }

    /// Pushes the records in `buf` (answers stamped `now`) onto the tasks' ring.
    fn push_tasks(&self, buf: &mut [u8], now: u64) {
        let mut ring = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let (fit, dropped) = stamp_and_fit(buf, now, ring.slots());
        push_whole(&mut ring, &[&buf[..fit]]);
        drop(ring);
        if dropped != 0 {
            self.tasks_dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }
}

/// The dnstap output: hands out recorders, runs the writer thread. Cheap
/// to clone.
#[derive(Clone)]
pub struct Tap {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("target", &self.shared.config.target)
            .finish()
    }
}

impl Tap {
    /// Starts the writer thread, which connects to the collector (and
    /// keeps trying: a collector that is not up yet is not an error).
    pub fn start(config: &DnstapConfig) -> io::Result<Self> {
        let capacity = config.queue_bytes.max(HEADER + 2 * MAX_MESSAGE);
        let (tasks, tasks_bytes) = rtrb::RingBuffer::new(capacity);
        let shared = Arc::new(Shared {
            config: config.clone(),
            capacity,
            new_rings: Mutex::new(vec![tasks_bytes]),
            counts: Mutex::new(Vec::new()),
            tasks: Mutex::new(tasks),
            tasks_dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let writer = Writer {
            shared: shared.clone(),
            rings: Vec::new(),
            bytes: Vec::new(),
            out: Vec::new(),
            scratch: Vec::new(),
            dropped_seen: 0,
            warned: None,
        };
        let handle = std::thread::Builder::new()
            .name("embargo-dnstap".into())
            .spawn(move || writer.run())?;
        *shared.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(Self { shared })
    }

    /// A recorder with a ring of its own, for one UDP worker thread.
    pub fn recorder(&self) -> TapRecorder {
        let (ring, bytes) = rtrb::RingBuffer::new(self.shared.capacity);
        let dropped = Arc::new(Dropped::default());
        self.shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(dropped.clone());
        self.shared
            .new_rings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(bytes);
        TapRecorder {
            sink: TapSink::Own { ring, dropped },
            pending: Vec::new(),
        }
    }

    /// A recorder on the shared ring, for a task (a TCP connection).
    pub fn task_recorder(&self) -> TapRecorder {
        TapRecorder {
            sink: TapSink::Tasks(self.shared.clone()),
            pending: Vec::new(),
        }
    }

    /// Records an answer sent by a task (a forwarded query's), whose query
    /// was recorded when it arrived.
    pub fn answered(
        &self,
        client: SocketAddr,
        transport: Transport,
        query_us: u64,
        response: &[u8],
    ) {
        let now = super::now_us();
        let e = Entry {
            client,
            transport,
            query_us,
            response_us: now,
            query: &[],
            response,
        };
        let h = header(&e);
        let response = &response[..response.len().min(MAX_MESSAGE)];
        let pushed = push_whole(
            &mut self
                .shared
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            &[&h, response],
        );
        if !pushed {
            self.shared.tasks_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// dnstap messages dropped so far: rings full, or no collector to take them.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped()
    }

    /// dnstap messages written to the collector so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Sends what is recorded, ends the stream (STOP, then FINISH from the
    /// collector) and stops the thread. Call once every recorder is done.
    pub fn stop(&self) {
        let handle = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            self.shared.stop.store(true, Ordering::SeqCst);
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

/// Where a tap recorder's records go.
enum TapSink {
    Own {
        ring: rtrb::Producer<u8>,
        dropped: Arc<Dropped>,
    },
    Tasks(Arc<Shared>),
}

/// A serving thread's or task's way into the dnstap rings: records wait
/// in `pending` until [`flush`](Self::flush), once the answers are sent.
pub struct TapRecorder {
    sink: TapSink,
    pending: Vec<u8>,
}

impl TapRecorder {
    /// Keeps a query and its answer (either may be empty). The answer's
    /// time is set at [`flush`](Self::flush).
    #[inline]
    pub fn record(
        &mut self,
        client: SocketAddr,
        transport: Transport,
        query_us: u64,
        query: &[u8],
        response: &[u8],
    ) {
        push_record(
            &mut self.pending,
            &Entry {
                client,
                transport,
                query_us,
                response_us: 0,
                query,
                response,
            },
        );
    }

    /// The answers are sent: stamps them and hands the records on; what
    /// does not fit in the ring is dropped and counted.
    #[inline]
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let now = super::now_us();
        match &mut self.sink {
            TapSink::Own { ring, dropped } => {
                let (fit, lost) = stamp_and_fit(&mut self.pending, now, ring.slots());
                push_whole(ring, &[&self.pending[..fit]]);
                if lost != 0 {
                    super::Counts::add(&dropped.0, lost);
                }
            }
            TapSink::Tasks(shared) => shared.push_tasks(&mut self.pending, now),
        }
        self.pending.clear();
    }
}

// ---- the writer thread --------------------------------------------------

/// The first wait before reconnecting, doubled after each failure up to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long the collector has to answer READY (with ACCEPT) and STOP
/// (with FINISH), and to take a batch of frames.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const NAP: Duration = Duration::from_millis(5);
const NAP_MAX: Duration = Duration::from_millis(40);
/// Frames are written once this many bytes wait.
const WRITE_AT: usize = 256 * 1024;
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A connection to the collector.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn connect(target: &DnstapTarget) -> io::Result<Self> {
        let s = match target {
            DnstapTarget::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                Self::Unix(s)
            }
            DnstapTarget::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                Self::Tcp(s)
            }
        };
        Ok(s)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a connection ended.
enum Ended {
    Stopped,
    Gone(io::Error),
}

/// The writer thread's own state.
struct Writer {
    shared: Arc<Shared>,
    rings: Vec<rtrb::Consumer<u8>>,
    /// Records taken from a ring.
    bytes: Vec<u8>,
    /// Frames waiting to be written.
    out: Vec<u8>,
    scratch: Vec<u8>,
    dropped_seen: u64,
    warned: Option<Instant>,
}

impl Writer {
    fn run(mut self) {
        super::lower_priority();
        let target = self.shared.config.target.clone();
        let mut backoff = BACKOFF_MIN;
        let mut reported = false;
        while !self.stopping() {
            match self.open(&target) {
                Ok(stream) => {
                    tracing::info!(collector = %target, "dnstap: connected to the collector");
                    backoff = BACKOFF_MIN;
                    match self.serve(stream) {
                        Ended::Stopped => break,
                        Ended::Gone(e) => {
                            tracing::warn!(collector = %target, error = %e, "dnstap: the collector went away; reconnecting (messages are dropped meanwhile)");
                            // Said once for this outage.
                            reported = true;
                        }
                    }
                }
                Err(e) => {
                    if !reported {
                        tracing::warn!(collector = %target, error = %e, "dnstap: cannot reach the collector; retrying (messages are dropped meanwhile)");
                        reported = true;
                    }
                }
            }
            // Wait before the next try, keeping the rings empty: what is
            // recorded meanwhile has nowhere to go.
            let until = Instant::now() + backoff;
            while !self.stopping() && Instant::now() < until {
                self.discard();
                std::thread::park_timeout(
                    NAP_MAX.min(until.saturating_duration_since(Instant::now())),
                );
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.discard();
        tracing::info!(
            sent = self.shared.sent.load(Ordering::Relaxed),
            dnstap_dropped = self.shared.dropped(),
            "dnstap stopped"
        );
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// Connects and does the bidirectional handshake: READY, ACCEPT, START.
    fn open(&mut self, target: &DnstapTarget) -> io::Result<Stream> {
        let mut s = Stream::connect(target)?;
        let mut frame = Vec::new();
        push_control(&mut frame, Control::Ready, true);
        s.write_all(&frame)?;
        let accept = read_control(&mut s)?;
        if accept.kind != Control::Accept {
            return Err(invalid(format!(
                "Frame Streams: {:?} where ACCEPT was due",
                accept.kind
            )));
        }
        if !accept.content_types.is_empty()
            && !accept.content_types.iter().any(|t| t == CONTENT_TYPE)
        {
            return Err(invalid(
                "Frame Streams: the collector does not accept protobuf:dnstap.Dnstap",
            ));
        }
        frame.clear();
        push_control(&mut frame, Control::Start, true);
        s.write_all(&frame)?;
        Ok(s)
    }

    /// Writes what the rings hold until stopped or the collector goes away.
    fn serve(&mut self, mut s: Stream) -> Ended {
        let mut nap = NAP;
        loop {
            let stopping = self.stopping();
            let (records, messages) = self.drain(true);
            if !self.out.is_empty()
                && let Err(e) = self.write(&mut s, messages)
            {
                return Ended::Gone(e);
            }
            self.warn_drops();
            if stopping && records == 0 {
                let mut frame = Vec::new();
                push_control(&mut frame, Control::Stop, false);
                let finished = s.write_all(&frame).and_then(|()| read_control(&mut s));
                match finished {
                    Ok(f) if f.kind == Control::Finish => {}
                    Ok(f) => {
                        tracing::debug!(kind = ?f.kind, "dnstap: the collector answered STOP without FINISH")
                    }
                    Err(e) => tracing::debug!(error = %e, "dnstap: no FINISH from the collector"),
                }
                return Ended::Stopped;
            }
            if records == 0 {
                std::thread::park_timeout(nap);
                nap = (nap * 2).min(NAP_MAX);
            } else {
                nap = NAP;
            }
        }
    }

    /// Writes the waiting frames (`messages` of them); on failure they are lost.
    fn write(&mut self, s: &mut Stream, messages: u64) -> io::Result<()> {
        let written = s.write_all(&self.out);
        self.out.clear();
        match written {
            Ok(()) => {
                self.shared.sent.fetch_add(messages, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.shared.lost.fetch_add(messages, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Takes on the rings of recorders made since the last look.
    fn adopt(&mut self) {
        if let Ok(mut new) = self.shared.new_rings.try_lock() {
            self.rings.append(&mut new);
        }
    }

    /// Takes what every ring holds; with `encode`, turns it into frames in
    /// `out`, else counts it as lost. Returns the records and messages.
    fn drain(&mut self, encode: bool) -> (u64, u64) {
        self.adopt();
        let (mut records, mut messages) = (0, 0);
        let identity = self.shared.config.identity.as_bytes();
        let version = self.shared.config.version.as_bytes();
        for ring in &mut self.rings {
            let n = ring.slots();
            if n == 0 {
                continue;
            }
            let Ok(chunk) = ring.read_chunk(n) else {
                continue;
            };
            let (a, b) = chunk.as_slices();
            self.bytes.clear();
            self.bytes.extend_from_slice(a);
            self.bytes.extend_from_slice(b);
            chunk.commit_all();
            let mut rest = &self.bytes[..];
            while let Some((e, tail)) = read_record(rest) {
                records += 1;
                if encode {
                    messages +=
                        push_frames(&mut self.out, &mut self.scratch, identity, version, &e);
                } else {
                    messages += e.messages();
                }
                rest = tail;
            }
            if encode && self.out.len() >= WRITE_AT {
                // A burst: leave the rest of the rings for the next round.
                break;
            }
        }
        self.rings.retain(|r| !(r.is_abandoned() && r.is_empty()));
        if !encode {
            self.shared.lost.fetch_add(messages, Ordering::Relaxed);
        }
        (records, messages)
    }

    /// Empties the rings while there is no collector, counting what was in them.
    fn discard(&mut self) {
        self.drain(false);
        self.warn_drops();
    }

    /// At most one warning a minute about dropped messages.
    fn warn_drops(&mut self) {
        let dropped = self.shared.dropped();
        if dropped > self.dropped_seen && self.warned.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                dropped = dropped - self.dropped_seen,
                total = dropped,
                "dnstap messages dropped (queries are not affected)"
            );
            self.dropped_seen = dropped;
            self.warned = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A protobuf field as a test reads it.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Field {
        Varint(u64),
        Fixed32(u32),
        Bytes(Vec<u8>),
    }

    fn varint(b: &mut &[u8]) -> u64 {
        let (mut n, mut shift) = (0u64, 0);
        loop {
            let (&byte, rest) = b.split_first().expect("varint");
            *b = rest;
            n |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return n;
            }
            shift += 7;
        }
    }

    /// Decodes a message into (field number, value) in order.
    fn fields(mut b: &[u8]) -> Vec<(u32, Field)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let field = (key >> 3) as u32;
            let value = match key & 7 {
                0 => Field::Varint(varint(&mut b)),
                5 => {
                    let v = u32::from_le_bytes(b[..4].try_into().expect("fixed32"));
                    b = &b[4..];
                    Field::Fixed32(v)
                }
                2 => {
                    let n = varint(&mut b) as usize;
                    let v = b[..n].to_vec();
                    b = &b[n..];
                    Field::Bytes(v)
                }
                w => panic!("wire type {w}"),
            };
            out.push((field, value));
        }
        out
    }

    fn get(fields: &[(u32, Field)], n: u32) -> Option<&Field> {
        fields.iter().find(|(f, _)| *f == n).map(|(_, v)| v)
    }

    const QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x06seized\x07example\x00\x00\x01\x00\x01";

    fn entry<'a>(query: &'a [u8], response: &'a [u8]) -> Entry<'a> {
        Entry {
            client: "192.0.2.7:53124".parse().expect("addr"),
            transport: Transport::Udp,
            query_us: 1_700_000_000_123_456,
            response_us: 1_700_000_000_124_000,
            query,
            response,
        }
    }

    #[test]
    fn control_frames_have_the_frame_streams_layout() {
        let mut f = Vec::new();
        push_control(&mut f, Control::Ready, true);
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 34, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 22];
        want.extend_from_slice(b"protobuf:dnstap.Dnstap");
        assert_eq!(f, want);
        let back = read_control(&mut &f[..]).expect("reads");
        assert_eq!(back.kind, Control::Ready);
        assert_eq!(back.content_types, [CONTENT_TYPE.to_vec()]);

        f.clear();
        push_control(&mut f, Control::Stop, false);
        assert_eq!(f, [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3]);
        assert_eq!(
            read_control(&mut &f[..]).expect("reads").kind,
            Control::Stop
        );
    }

    #[test]
    fn bad_control_frames_are_errors_not_panics() {
        for bad in [
            &b"\0\0\0\x05abcd"[..],                              // a data frame
            b"\0\0\0\0\0\0\x10\0",                               // too long
            b"\0\0\0\0\0\0\0\x04\0\0\0\x09",                     // unknown type
            b"\0\0\0\0\0\0\0\x0c\0\0\0\x01\0\0\0\x01\0\0\x01\0", // field past the end
            b"\0\0\0\0\0\0\0\x04\0\0",                           // short
        ] {
            assert!(read_control(&mut &bad[..]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_client_query_frame_carries_every_field() {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let e = entry(QUERY, b"answer");
        push_frame(
            &mut out,
            &mut scratch,
            b"host-1",
            b"embargo 1.0",
            MessageType::ClientQuery,
            &e,
        );
        let len = u32::from_be_bytes(out[..4].try_into().expect("len")) as usize;
        assert_eq!(len, out.len() - 4, "one data frame, its length first");
        let top = fields(&out[4..]);
        assert_eq!(
            top.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [1, 2, 14, 15]
        );
        assert_eq!(get(&top, 1), Some(&Field::Bytes(b"host-1".to_vec())));
        assert_eq!(get(&top, 2), Some(&Field::Bytes(b"embargo 1.0".to_vec())));
        assert_eq!(get(&top, 15), Some(&Field::Varint(1)));
        let Some(Field::Bytes(m)) = get(&top, 14) else {
            panic!("no message in {top:?}");
        };
        let m = fields(m);
        assert_eq!(
            m,
            [
                (1, Field::Varint(5)),
                (2, Field::Varint(1)),
                (3, Field::Varint(1)),
                (4, Field::Bytes(vec![192, 0, 2, 7])),
                (6, Field::Varint(53124)),
                (8, Field::Varint(1_700_000_000)),
                (9, Field::Fixed32(123_456_000)),
                (10, Field::Bytes(QUERY.to_vec())),
            ]
        );
    }

    #[test]
    fn a_client_response_frame_over_tcp_from_ipv6() {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let mut e = entry(QUERY, b"the answer");
        e.client = "[2001:db8::5]:4000".parse().expect("addr");
        e.transport = Transport::Tcp;
        push_frame(
            &mut out,
            &mut scratch,
            b"",
            b"",
            MessageType::ClientResponse,
            &e,
        );
        let top = fields(&out[4..]);
        assert_eq!(
            top.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [14, 15],
            "empty identity and version are left out"
        );
        let Some(Field::Bytes(m)) = get(&top, 14) else {
            panic!("no message");
        };
        let m = fields(m);
        assert_eq!(get(&m, 1), Some(&Field::Varint(6)));
        assert_eq!(get(&m, 2), Some(&Field::Varint(2)));
        assert_eq!(get(&m, 3), Some(&Field::Varint(2)));
        assert_eq!(
            get(&m, 4),
            Some(&Field::Bytes(
                "2001:db8::5"
                    .parse::<std::net::Ipv6Addr>()
                    .expect("ip")
                    .octets()
                    .to_vec()
            ))
        );
        assert_eq!(get(&m, 6), Some(&Field::Varint(4000)));
        assert_eq!(get(&m, 12), Some(&Field::Varint(1_700_000_000)));
        assert_eq!(get(&m, 13), Some(&Field::Fixed32(124_000_000)));
        assert_eq!(get(&m, 14), Some(&Field::Bytes(b"the answer".to_vec())));
        assert_eq!(get(&m, 10), None, "the query is in its own CLIENT_QUERY");
    }

    #[test]
    fn mapped_ipv4_clients_are_sent_as_ipv4() {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        let mut e = entry(QUERY, b"");
        e.client = "[::ffff:198.51.100.1]:53".parse().expect("addr");
        push_frame(
            &mut out,
            &mut scratch,
            b"",
            b"",
            MessageType::ClientQuery,
            &e,
        );
        let top = fields(&out[4..]);
        let Some(Field::Bytes(m)) = get(&top, 14) else {
            panic!("no message");
        };
        let m = fields(m);
        assert_eq!(get(&m, 2), Some(&Field::Varint(1)));
        assert_eq!(get(&m, 4), Some(&Field::Bytes(vec![198, 51, 100, 1])));
    }

    /// Issue 19: the encrypted transports keep their name through the
    /// ring and reach dnstap.proto's SocketProtocol (DOT 3, DOH 4, DOQ 7).
    #[test]
    fn encrypted_transports_are_dnstap_socket_protocols() {
        for (transport, protocol) in [
            (Transport::Udp, 1),
            (Transport::Tcp, 2),
            (Transport::Dot, 3),
            (Transport::Doh, 4),
            (Transport::Doq, 7),
        ] {
            let mut e = entry(QUERY, b"answer");
            e.transport = transport;
            let mut buf = Vec::new();
            push_record(&mut buf, &e);
            let (back, _) = read_record(&buf).expect("record");
            assert_eq!(back.transport, transport);
            let (mut out, mut scratch) = (Vec::new(), Vec::new());
            push_frame(
                &mut out,
                &mut scratch,
                b"",
                b"",
                MessageType::ClientQuery,
                &back,
            );
            let top = fields(&out[4..]);
            let Some(Field::Bytes(m)) = get(&top, 14) else {
                panic!("no message");
            };
            assert_eq!(
                get(&fields(m), 3),
                Some(&Field::Varint(protocol)),
                "{transport:?}"
            );
        }
    }

    #[test]
    fn records_round_trip_and_become_one_frame_per_message() {
        let mut buf = Vec::new();
        push_record(&mut buf, &entry(QUERY, b"answer"));
        push_record(&mut buf, &entry(QUERY, b""));
        let mut e = entry(b"", b"late answer");
        e.client = "[2001:db8::1]:9".parse().expect("addr");
        e.transport = Transport::Tcp;
        push_record(&mut buf, &e);
        let (a, rest) = read_record(&buf).expect("first");
        assert_eq!(a, entry(QUERY, b"answer"));
        let (b, rest) = read_record(rest).expect("second");
        assert_eq!(b, entry(QUERY, b""));
        let (c, rest) = read_record(rest).expect("third");
        assert_eq!(c, e);
        assert!(rest.is_empty());
        assert!(
            read_record(&buf[..HEADER + 3]).is_none(),
            "half a record is not read"
        );

        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        assert_eq!(push_frames(&mut out, &mut scratch, b"", b"", &a), 2);
        assert_eq!(push_frames(&mut out, &mut scratch, b"", b"", &b), 1);
        assert_eq!(push_frames(&mut out, &mut scratch, b"", b"", &c), 1);
    }

    #[test]
    fn a_flush_stamps_answers_and_drops_what_does_not_fit() {
        let mut buf = Vec::new();
        let mut q_only = entry(QUERY, b"");
        q_only.response_us = 0;
        push_record(&mut buf, &q_only);
        push_record(&mut buf, &entry(QUERY, b"answer"));
        push_record(&mut buf, &entry(QUERY, b"answer"));
        let one = HEADER + QUERY.len();
        let two = one + HEADER + QUERY.len() + 6;
        let (fit, dropped) = stamp_and_fit(&mut buf, 42, two + 10);
        assert_eq!((fit, dropped), (two, 2));
        let (a, rest) = read_record(&buf).expect("a");
        assert_eq!(a.response_us, 0, "a query alone gets no answer time");
        let (b, _) = read_record(rest).expect("b");
        assert_eq!(b.response_us, 42);

        let (mut ring, mut reader) = rtrb::RingBuffer::new(two + 10);
        assert!(push_whole(&mut ring, &[&buf[..fit]]));
        assert!(
            !push_whole(&mut ring, &[&buf[fit..]]),
            "no room: nothing is pushed"
        );
        let chunk = reader.read_chunk(reader.slots()).expect("read");
        let (x, y) = chunk.as_slices();
        assert_eq!([x, y].concat(), &buf[..fit]);
    }

    #[test]
    fn parts_are_pushed_back_to_back_across_the_ring_s_end() {
        let (mut ring, mut reader) = rtrb::RingBuffer::new(10);
        assert!(push_whole(&mut ring, &[b"1234567"]));
        reader.read_chunk(7).expect("read").commit_all();
        // Wraps: 3 bytes at the end, 5 at the start.
        assert!(push_whole(&mut ring, &[b"abc", b"", b"de", b"fgh"]));
        let chunk = reader.read_chunk(reader.slots()).expect("read");
        let (x, y) = chunk.as_slices();
        assert_eq!((x.len(), y.len()), (3, 5));
        assert_eq!([x, y].concat(), b"abcdefgh");
    }

    #[test]
    fn a_tap_recorder_pushes_whole_records_and_counts_drops() {
        let (ring, mut reader) = rtrb::RingBuffer::new(2 * HEADER + 2 * QUERY.len() + 20);
        let dropped = Arc::new(Dropped::default());
        let mut rec = TapRecorder {
            sink: TapSink::Own {
                ring,
                dropped: dropped.clone(),
            },
            pending: Vec::new(),
        };
        let e = entry(QUERY, b"0123456789");
        for _ in 0..3 {
            rec.record(e.client, e.transport, e.query_us, e.query, e.response);
        }
        rec.flush();
        assert_eq!(
            dropped.0.load(Ordering::Relaxed),
            2,
            "the third record's two messages"
        );
        let chunk = reader.read_chunk(reader.slots()).expect("read");
        let (x, y) = chunk.as_slices();
        let bytes = [x, y].concat();
        let (a, rest) = read_record(&bytes).expect("a");
        let (b, rest) = read_record(rest).expect("b");
        assert!(rest.is_empty());
        assert_eq!((a.query, a.response), (QUERY, &b"0123456789"[..]));
        assert!(b.response_us >= a.query_us, "stamped at flush");
    }
}
