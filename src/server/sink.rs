//! Where the answer to a forwarded query goes: the client sink.
//!
//! A forward ends on whichever thread has the upstream's answer: most
//! often an upstream socket's reader task, which reads the answers that
//! came in one pass (`recvmmsg`) and answers each query's client. The
//! answers of one pass to UDP clients are gathered here (per thread) and
//! leave with one `sendmmsg` per client socket at its end
//! ([`READ_PASS`], which the upstream module calls around each pass), so
//! every side does a batch per wake-up, as the UDP worker does for the
//! answers it gives itself.
//!
//! Nothing here waits: a UDP socket whose send buffer is full drops the
//! answer and counts it (`embargo_udp_answers_dropped_total`); the client
//! asks again. Waiting would stall the reader task, and with it every
//! other answer on that socket and every task on that runtime thread.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use socket2::SockAddr;
use tokio::sync::oneshot;

use super::batch::{self, Local};
use crate::observe::metrics;
use crate::upstream::ReadPass;

/// Where one forwarded query's answer goes.
pub(super) enum Sink {
    /// A UDP client: sent on the socket its query came in on, from the
    /// address it was sent to.
    Udp {
        sock: Arc<UdpSocket>,
        peer: SocketAddr,
        local: Local,
    },
    /// The task that awaits it (`Handler::forward`: TCP clients).
    Task(Option<oneshot::Sender<Vec<u8>>>),
}

impl Sink {
    /// Hands `answer` over: sent (or queued for the end of the read pass),
    /// or passed to the awaiting task. Called once.
    pub(super) fn deliver(&mut self, answer: Vec<u8>) {
        match self {
            Self::Udp { sock, peer, local } => send(sock, *peer, *local, &answer),
            Self::Task(tx) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(answer);
                }
            }
        }
    }
}

/// What the upstream module's reader tasks call around each pass.
pub(super) const READ_PASS: ReadPass = ReadPass {
    begin: begin_pass,
    end: end_pass,
};

/// Answers queued on this thread during a pass.
struct Pass {
    active: bool,
    /// Each answer: its socket, its client, and its place in `bytes`.
    queued: Vec<(Arc<UdpSocket>, SockAddr, usize, usize)>,
    bytes: Vec<u8>,
}

thread_local! {
    static PASS: RefCell<Pass> = const {
        RefCell::new(Pass { active: false, queued: Vec::new(), bytes: Vec::new() })
    };
}

/// From now on, answers sent on this thread queue until [`end_pass`].
fn begin_pass() {
    PASS.with_borrow_mut(|p| p.active = true);
}

/// Sends `bytes` to `peer` on `sock` from `local`, or queues it during a
/// pass. An answer from a wildcard socket names its source address in a
/// control message, which the batch does not carry: it goes at once.
fn send(sock: &Arc<UdpSocket>, peer: SocketAddr, local: Local, bytes: &[u8]) {
    // (`try_with`: a reply dropped while the thread ends sends at once.)
    let queued = local == Local::Bound
        && PASS
            .try_with(|p| {
                let mut p = p.borrow_mut();
                if !p.active {
                    return false;
                }
                let start = p.bytes.len();
                p.bytes.extend_from_slice(bytes);
                p.queued
                    .push((sock.clone(), SockAddr::from(peer), start, bytes.len()));
                true
            })
            .unwrap_or(false);
    if !queued {
        send_one(sock, peer, local, bytes);
    }
}

/// One answer, without waiting. A failure may be a pending ICMP error
/// meant for an earlier datagram: one retry tells the two apart. A full
/// send buffer is not retried.
fn send_one(sock: &UdpSocket, peer: SocketAddr, local: Local, bytes: &[u8]) {
    for retry in [false, true] {
        match batch::send_from(sock, bytes, peer, local) {
            Ok(_) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) if !retry => {}
            Err(e) => tracing::debug!(%peer, error = %e, "udp send failed"),
        }
    }
    metrics::count_udp_answer_dropped();
}

/// Sends what this thread queued during the pass: one `sendmmsg` per run
/// of answers on one socket; what the batch did not take goes one by one.
fn end_pass() {
    let (queued, bytes) = PASS.with_borrow_mut(|p| {
        p.active = false;
        (std::mem::take(&mut p.queued), std::mem::take(&mut p.bytes))
    });
    let mut rest: &[(Arc<UdpSocket>, SockAddr, usize, usize)] = &queued;
    while let Some((sock, _, _, _)) = rest.first() {
        let run = rest
            .iter()
            .take_while(|q| Arc::ptr_eq(&q.0, sock))
            .count()
            .min(batch::BATCH);
        let msgs: Vec<(&[u8], &SockAddr)> = rest[..run]
            .iter()
            .map(|(_, peer, s, l)| (bytes.get(*s..s + l).unwrap_or_default(), peer))
            .collect();
        let sent = batch::send_many(sock, &msgs).unwrap_or(0);
        for (b, peer) in &msgs[sent..] {
            if let Some(peer) = peer.as_socket() {
                send_one(sock, peer, Local::Bound, b);
            }
        }
        rest = &rest[run..];
    }
    // Keep the buffers' capacity for the next pass.
    PASS.with_borrow_mut(|p| {
        if p.bytes.capacity() == 0 {
            let (mut q, mut b) = (queued, bytes);
            q.clear();
            b.clear();
            p.queued = q;
            p.bytes = b;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(sock: &Arc<UdpSocket>, peer: SocketAddr) -> Sink {
        Sink::Udp {
            sock: sock.clone(),
            peer,
            local: Local::Bound,
        }
    }

    #[test]
    fn answers_queue_during_a_pass_and_go_out_at_its_end() {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .expect("timeout");
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let peer = client.local_addr().expect("addr");
        begin_pass();
        for i in 0..50u8 {
            udp(&server, peer).deliver(vec![i, i]);
        }
        // Queued: nothing has left yet.
        client.set_nonblocking(true).expect("nonblocking");
        assert!(client.recv(&mut [0u8; 8]).is_err());
        client.set_nonblocking(false).expect("blocking");
        end_pass();
        let mut buf = [0u8; 8];
        for i in 0..50u8 {
            assert_eq!(client.recv(&mut buf).expect("answer"), 2);
            assert_eq!(buf[..2], [i, i]);
        }
    }

    /// Issue 16 (finding 7): an answer the kernel will not take is dropped
    /// and counted, in a pass and out of one, and the others still go.
    #[test]
    fn an_answer_the_kernel_refuses_is_dropped_and_counted() {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .expect("timeout");
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let peer = client.local_addr().expect("addr");
        // Port 0 is no destination: the kernel refuses it (EINVAL).
        let nowhere: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let before = metrics::udp_answers_dropped();
        udp(&server, nowhere).deliver(vec![9]);
        begin_pass();
        udp(&server, peer).deliver(vec![1]);
        udp(&server, nowhere).deliver(vec![9]);
        udp(&server, peer).deliver(vec![2]);
        end_pass();
        // Counted once each (other tests may drop answers meanwhile).
        assert!(metrics::udp_answers_dropped() >= before + 2);
        let mut buf = [0u8; 8];
        for i in 1..=2u8 {
            assert_eq!(client.recv(&mut buf).expect("answer"), 1);
            assert_eq!(buf[0], i);
        }
    }

    #[tokio::test]
    async fn a_task_gets_its_answer() {
        let (tx, rx) = oneshot::channel();
        let mut sink = Sink::Task(Some(tx));
        sink.deliver(vec![7, 7]);
        sink.deliver(vec![8]);
        assert_eq!(rx.await.expect("answer"), [7, 7]);
    }
}
