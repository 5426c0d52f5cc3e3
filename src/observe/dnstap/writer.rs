//! The writer thread: connects to the collector (a unix socket or TCP),
//! does the Frame Streams handshake, turns what the rings hold into frames
//! and writes them, and on a failure reconnects with backoff, emptying the
//! rings meanwhile and counting what they held as dropped. On shutdown it
//! writes what is left and ends the stream (STOP, FINISH).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Shared;
use super::framing::{CONTENT_TYPE, Control, invalid, push_control, read_control};
use super::message::push_frames;
use super::record::read_record;
use crate::config::DnstapTarget;

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
pub(super) struct Writer {
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
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            rings: Vec::new(),
            bytes: Vec::new(),
            out: Vec::new(),
            scratch: Vec::new(),
            dropped_seen: 0,
            warned: None,
        }
    }

    /// Runs until [`super::Tap::stop`]: connect, serve, reconnect.
    pub(super) fn run(mut self) {
        crate::observe::lower_priority();
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
