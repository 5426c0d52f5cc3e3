//! The UDP worker: one OS thread per socket, batches of datagrams in and
//! out (`recvmmsg`/`sendmmsg`), answers written into reused buffers.

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::batch::Batch;
use super::handler::{Handler, Outcome, Proto};
use crate::upstream::Upstream;

/// Starts the worker thread for `sock`; it returns once `stop` is set.
pub(super) fn spawn(
    sock: UdpSocket,
    handler: Arc<Handler>,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    // Wake up now and then to notice `stop`.
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let sock = Arc::new(sock);
    std::thread::Builder::new()
        .name("embargo-udp".into())
        .spawn(move || {
            // Forwards start from this thread (`Handler::forward_udp`), which
            // makes sockets and spawns their reader tasks: in the runtime;
            // those of one batch leave together after it.
            let _runtime = rt.enter();
            Upstream::queue_on_this_thread();
            let mut batch = Batch::new();
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
                for i in 0..n {
                    let Some((pkt, peer, out)) = batch.slot(i) else {
                        continue;
                    };
                    match handler.handle(pkt, peer, Proto::Udp, out) {
                        Outcome::Reply => batch.commit_out(),
                        Outcome::Drop => {}
                        Outcome::Forward(job) => {
                            // Plain UDP upstreams: sent from here, answered by
                            // the task that reads the upstream's answer.
                            let Some(job) = handler.forward_udp(job, &sock, peer) else {
                                continue;
                            };
                            let handler = handler.clone();
                            let sock = sock.clone();
                            rt.spawn(async move {
                                let mut out = Vec::new();
                                handler.forward(job, &mut out).await;
                                // A failure may be a pending ICMP error meant for an
                                // earlier datagram: one retry tells the two apart.
                                if sock.send_to(&out, peer).is_err()
                                    && let Err(e) = sock.send_to(&out, peer)
                                {
                                    tracing::debug!(%peer, error = %e, "udp send failed");
                                }
                            });
                        }
                    }
                }
                Upstream::flush_queued();
                batch.flush(&sock);
            }
        })
}
