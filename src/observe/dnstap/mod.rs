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
//! the rings hold bytes, not fixed-size slots: each record is a 60-byte
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
//!   socket_protocol = 3, query_address = 4, response_address = 5,
//!   query_port = 6, response_port = 7, query_time_sec = 8,
//!   query_time_nsec = 9 (fixed32), query_message = 10,
//!   response_time_sec = 12, response_time_nsec = 13 (fixed32),
//!   response_message = 14 }`. For CLIENT_QUERY and CLIENT_RESPONSE, the
//!   query address is the client's and the response address the one it
//!   sent to: the listener's bound address, or for a wildcard bind
//!   (`0.0.0.0`, `[::]`) the address the query arrived on (UDP: the
//!   IP_PKTINFO the worker already reads to answer from it; TCP, DoT,
//!   DoH: the connection's, read once when it is accepted; DoQ: the
//!   endpoint's, as quinn reports it). Embargo sends no FORWARDER or
//!   RESOLVER messages.
//!
//! The rooms: `framing.rs` is Frame Streams (control frames, the content
//! type); `record.rs` is the byte records the rings carry between the
//! serving side and the writer; `message.rs` encodes a record as dnstap
//! protobuf messages in data frames; `writer.rs` is the writer thread,
//! which connects, shakes hands, writes and reconnects with backoff. This
//! file is the serving side: the [`Tap`] and its [`TapRecorder`]s.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::config::DnstapConfig;

use super::Transport;

mod framing;
mod message;
mod record;
#[cfg(test)]
mod tests;
mod writer;

pub use framing::{CONTENT_TYPE, Control, ControlFrame, parse_control, push_control, read_control};
pub use message::{MessageType, push_frame};
pub use record::{Entry, push_record, read_record};
use record::{HEADER, MAX_MESSAGE, header, push_whole, stamp_and_fit};
use writer::Writer;

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
        let writer = Writer::new(shared.clone());
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
        server: Option<SocketAddr>,
        transport: Transport,
        query_us: u64,
        response: &[u8],
    ) {
        let now = super::now_us();
        let e = Entry {
            client,
            server,
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
        server: Option<SocketAddr>,
        transport: Transport,
        query_us: u64,
        query: &[u8],
        response: &[u8],
    ) {
        push_record(
            &mut self.pending,
            &Entry {
                client,
                server,
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
