//! The UDP worker: one OS thread per socket, blocking receive, answers
//! written straight back from a reused buffer.

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::handler::{Handler, Outcome, Proto};

/// Largest datagram read; anything longer is cut and then fails to parse.
const MAX_DATAGRAM: usize = 65_535;

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
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let mut out = Vec::with_capacity(1500);
            while !stop.load(Ordering::Relaxed) {
                let (n, peer) = match sock.recv_from(&mut buf) {
                    Ok(r) => r,
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
                match handler.handle(&buf[..n], peer, Proto::Udp, &mut out) {
                    Outcome::Reply => {
                        if let Err(e) = sock.send_to(&out, peer) {
                            tracing::debug!(%peer, error = %e, "udp send failed");
                        }
                    }
                    Outcome::Drop => {}
                    Outcome::Forward(job) => {
                        let handler = handler.clone();
                        let sock = sock.clone();
                        rt.spawn(async move {
                            let mut out = Vec::new();
                            handler.forward(job, &mut out).await;
                            if let Err(e) = sock.send_to(&out, peer) {
                                tracing::debug!(%peer, error = %e, "udp send failed");
                            }
                        });
                    }
                }
            }
        })
}
