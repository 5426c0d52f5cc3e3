//! The UDP worker: one OS thread per socket, batches of datagrams in and
//! out (`recvmmsg`/`sendmmsg`), answers written into reused buffers.
//!
//! With `[server] workers = N`, each listen address has N sockets bound to
//! the same port (SO_REUSEPORT): the kernel spreads clients over them by
//! address and port, and each socket has its own worker thread, so the
//! blocked and cached paths scale with the cores.
//!
//! The socket blocks, for the worker's sake; the answers that runtime tasks
//! send on it (forwards that take [`Handler::forward`]) must not: a task
//! waiting for room in a full send buffer holds a runtime worker, and with
//! one worker per core every forward would wait behind it. Those sends
//! never wait; an answer that finds the buffer full is dropped and counted
//! ([`send_answer`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::batch::{Batch, Local};
use super::handler::{Handler, Outcome, Proto};
use crate::observe::WorkerStats;
use crate::upstream::Upstream;

/// A bound UDP socket and how it must answer.
pub(super) struct Socket {
    pub(super) sock: UdpSocket,
    /// Bound to a wildcard address: answers say which address they are from.
    pub(super) pktinfo: bool,
}

/// Starts worker `index` on `socket`; it counts into `stats[index]` and
/// returns once `stop` is set.
pub(super) fn spawn(
    socket: Socket,
    index: usize,
    stats: Arc<[Arc<WorkerStats>]>,
    handler: Arc<Handler>,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let Socket { sock, pktinfo } = socket;
    // Wake up now and then to notice `stop`.
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let sock = Arc::new(sock);
    std::thread::Builder::new()
        .name(format!("embargo-udp-{index}"))
        .spawn(move || {
            let Some(mine) = stats.get(index).cloned() else {
                return;
            };
            // Forwards start from this thread (`Handler::forward_udp`), which
            // makes sockets and spawns their reader tasks and the tasks of
            // TCP, DoT and DoH exchanges: in the runtime; those of one batch
            // leave together after it.
            let _runtime = rt.enter();
            Upstream::queue_on_this_thread();
            let mut batch = Batch::new(pktinfo);
            // This worker's own ring to the observer, and its own counters;
            // its clients send to the socket's address (dnstap's
            // response_address), or, bound to a wildcard, to the address
            // each query's IP_PKTINFO says, set per query with dnstap on.
            let bound = sock.local_addr().ok();
            let mut rec = handler.observer().recorder(mine.clone()).with_local(bound);
            let per_query = pktinfo && rec.taps();
            while !stop.load(Ordering::Relaxed) {
                let n = match batch.recv(&sock) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        // ICMP errors from earlier sends surface here (ECONNREFUSED); keep serving.
                        tracing::debug!(error = %e, "udp receive error");
                        continue;
                    }
                };
                rec.begin();
                let mut forwarded = 0;
                for i in 0..n {
                    let Some(slot) = batch.slot(i) else {
                        continue;
                    };
                    let (peer, local) = (slot.peer, slot.local);
                    if per_query && let Some(bound) = bound {
                        let ip = match local {
                            Local::V4(a) => a.into(),
                            Local::V6(a, _) => a.into(),
                            Local::Bound => bound.ip(),
                        };
                        rec.set_local(SocketAddr::new(ip, bound.port()));
                    }
                    match handler.handle(slot.query, peer, Proto::Udp, slot.out, &mut rec) {
                        Outcome::Reply => batch.commit_out(),
                        Outcome::Drop => {}
                        Outcome::Forward(job) => {
                            forwarded += 1;
                            // Sent from here (with the rest of the batch's,
                            // at the flush below); whoever has the upstream's
                            // answer sends the client's.
                            handler.forward_udp(job, &sock, peer, local);
                        }
                    }
                }
                Upstream::flush_queued();
                let answered = batch.flush(&sock);
                rec.flush();
                if answered > 0 {
                    mine.add_answered(answered as u64);
                }
                if forwarded > 0 {
                    mine.add_forwarded(forwarded);
                }
            }
        })
}
