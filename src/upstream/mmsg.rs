//! Batched datagrams for the UDP fast path: `sendmmsg` and `recvmmsg`,
//! and two per-thread outboxes that gather datagrams so that one system
//! call carries many.
//!
//! Why: a forwarded query is four datagrams (client in, upstream out,
//! upstream in, client out). Sent one by one, each wakes its receiver: the
//! upstream and the load on the other core wake per query, and so do we.
//! Gathered, the queries of one receive batch leave in one `sendmmsg` and
//! the answers read in one pass go back in one, so every side does a batch
//! per wake-up (the measurements are in the README).
//!
//! - `udp::flush_queued` sends what the server's UDP worker queued over one
//!   receive batch, each socket's queue with one [`send_connected`].
//! - [`answering`] does the same for answers to clients while a reader task
//!   drains an upstream socket ([`send_answer`] queues or sends).
//!
//! Like `server::batch`, this module holds `unsafe`: the calls take raw
//! pointers into buffers that live on the stack of the calling function
//! for the whole call.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::mem::zeroed;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// Datagrams per system call.
pub(super) const BATCH: usize = 32;

/// Sends `msgs` on the connected socket `fd`, at most [`BATCH`] per call.
/// Returns how many went out (fewer on a full buffer or an error after the
/// first); an error only when none did.
pub(super) fn send_connected(fd: RawFd, msgs: &[&[u8]]) -> io::Result<usize> {
    let n = msgs.len().min(BATCH);
    // SAFETY: all-zero iovec and mmsghdr are valid values (null pointers, zero lengths).
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for i in 0..n {
        iov[i] = libc::iovec {
            iov_base: msgs[i].as_ptr() as *mut libc::c_void,
            iov_len: msgs[i].len(),
        };
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `hdrs[..n]` point into `iov[..n]`, which point into `msgs`;
    // all outlive the call, and the kernel only reads them. `n <= BATCH`.
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sends each `(bytes, peer)` on the unconnected socket `fd`, at most
/// [`BATCH`] per call; returns how many went out.
fn send_to_many(fd: RawFd, msgs: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
    let n = msgs.len().min(BATCH);
    let addrs: Vec<socket2::SockAddr> = msgs[..n]
        .iter()
        .map(|(_, a)| socket2::SockAddr::from(*a))
        .collect();
    // SAFETY: all-zero iovec and mmsghdr are valid values.
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for i in 0..n {
        iov[i] = libc::iovec {
            iov_base: msgs[i].0.as_ptr() as *mut libc::c_void,
            iov_len: msgs[i].0.len(),
        };
        hdrs[i].msg_hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
        hdrs[i].msg_hdr.msg_namelen = addrs[i].len();
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every pointer in `hdrs[..n]` points into `iov`, `addrs` or
    // `msgs`, all alive for the call and only read by the kernel.
    let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Receive buffers for one reader task, reused for every batch.
pub(super) struct RecvBatch {
    bufs: Vec<u8>,
    lens: [usize; BATCH],
    truncated: [bool; BATCH],
}

/// Largest datagram kept; a longer one is flagged and dropped.
pub(super) const RECV_SIZE: usize = 4096;

impl RecvBatch {
    pub(super) fn new() -> Self {
        Self {
            bufs: vec![0u8; BATCH * RECV_SIZE],
            lens: [0; BATCH],
            truncated: [false; BATCH],
        }
    }

    /// Reads what is queued on `fd`, up to [`BATCH`] datagrams, without
    /// waiting. Returns how many (an error, WouldBlock included, when none).
    pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: all-zero iovec and mmsghdr are valid values.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for (i, chunk) in self.bufs.chunks_exact_mut(RECV_SIZE).enumerate() {
            iov[i] = libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: RECV_SIZE,
            };
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each header points at its iovec, each iovec at its own
        // RECV_SIZE chunk of `self.bufs`; all outlive the call. No address
        // or control buffers are asked for (the socket is connected).
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = r as usize;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            self.lens[i] = h.msg_len as usize;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        Ok(n)
    }

    /// Datagram `i` of the last batch, unless it was cut short.
    pub(super) fn get(&self, i: usize) -> Option<&[u8]> {
        if *self.truncated.get(i)? {
            return None;
        }
        let start = i * RECV_SIZE;
        self.bufs
            .get(start..start + (*self.lens.get(i)?).min(RECV_SIZE))
    }
}

/// Answers queued on this thread inside [`answering`].
struct Answers {
    active: bool,
    queued: Vec<(Arc<UdpSocket>, SocketAddr, usize, usize)>,
    bytes: Vec<u8>,
}

thread_local! {
    static ANSWERS: RefCell<Answers> = const {
        RefCell::new(Answers { active: false, queued: Vec::new(), bytes: Vec::new() })
    };
}

/// Runs `f` (a reader task's pass over its socket), during which
/// [`send_answer`] on this thread queues, then sends what was queued.
pub(super) fn answering<R>(f: impl FnOnce() -> R) -> R {
    ANSWERS.with_borrow_mut(|a| a.active = true);
    let r = f();
    flush_answers();
    r
}

/// Sends `bytes` to `peer` on `sock`, or queues it inside [`answering`].
pub fn send_answer(sock: &Arc<UdpSocket>, peer: SocketAddr, bytes: &[u8]) {
    let queued = ANSWERS.with_borrow_mut(|a| {
        if !a.active {
            return false;
        }
        let start = a.bytes.len();
        a.bytes.extend_from_slice(bytes);
        a.queued.push((sock.clone(), peer, start, bytes.len()));
        true
    });
    if !queued {
        send_one(sock, peer, bytes);
    }
}

/// One answer; a failure may be a pending ICMP error meant for an earlier
/// datagram: one retry tells the two apart.
fn send_one(sock: &UdpSocket, peer: SocketAddr, bytes: &[u8]) {
    if sock.send_to(bytes, peer).is_err()
        && let Err(e) = sock.send_to(bytes, peer)
    {
        tracing::debug!(%peer, error = %e, "udp send failed");
    }
}

fn flush_answers() {
    let (queued, bytes) = ANSWERS.with_borrow_mut(|a| {
        a.active = false;
        (std::mem::take(&mut a.queued), std::mem::take(&mut a.bytes))
    });
    let mut rest: &[(Arc<UdpSocket>, SocketAddr, usize, usize)] = &queued;
    while let Some((sock, _, _, _)) = rest.first() {
        let run = rest
            .iter()
            .take_while(|q| Arc::ptr_eq(&q.0, sock))
            .count()
            .min(BATCH);
        let msgs: Vec<(&[u8], SocketAddr)> = rest[..run]
            .iter()
            .map(|(_, peer, s, l)| (bytes.get(*s..s + l).unwrap_or_default(), *peer))
            .collect();
        let sent = send_to_many(sock.as_raw_fd(), &msgs).unwrap_or(0);
        // Whatever did not go in the batch goes one by one.
        for (b, peer) in &msgs[sent..] {
            send_one(sock, *peer, b);
        }
        rest = &rest[run..];
    }
    ANSWERS.with_borrow_mut(|a| {
        if a.bytes.capacity() == 0 {
            let (mut q, mut b) = (queued, bytes);
            q.clear();
            b.clear();
            a.queued = q;
            a.bytes = b;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_go_out_and_come_in_whole() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.connect(rx.local_addr().expect("addr")).expect("connect");
        rx.connect(tx.local_addr().expect("addr")).expect("connect");
        let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) + 1]).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        assert_eq!(send_connected(tx.as_raw_fd(), &refs).expect("send"), BATCH);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(rx.as_raw_fd()).expect("recv"), BATCH);
        for (i, r) in refs.iter().enumerate().take(BATCH) {
            assert_eq!(batch.get(i), Some(*r));
        }
        assert!(batch.recv(rx.as_raw_fd()).is_err(), "nothing left");
        // A datagram longer than a buffer is flagged, not passed on cut.
        tx.send(&vec![7u8; RECV_SIZE + 10]).expect("send big");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(batch.recv(rx.as_raw_fd()).expect("recv"), 1);
        assert_eq!(batch.get(0), None);
    }

    #[test]
    fn answers_queue_while_answering_and_go_out_after() {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .expect("timeout");
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
        let peer = client.local_addr().expect("addr");
        answering(|| {
            for i in 0..50u8 {
                send_answer(&server, peer, &[i, i]);
            }
            // Queued: nothing has left yet.
            client.set_nonblocking(true).expect("nonblocking");
            assert!(client.recv(&mut [0u8; 8]).is_err());
            client.set_nonblocking(false).expect("blocking");
        });
        let mut buf = [0u8; 8];
        for i in 0..50u8 {
            assert_eq!(client.recv(&mut buf).expect("answer"), 2);
            assert_eq!(buf[..2], [i, i]);
        }
    }
}
