//! Batched datagrams to and from the upstreams: `sendmmsg` and `recvmmsg`
//! on their connected sockets, so that one system call carries many.
//!
//! Why: a forwarded query is four datagrams (client in, upstream out,
//! upstream in, client out). Sent one by one, each wakes its receiver: the
//! upstream and the load on the other core wake per query, and so do we.
//! Gathered, the queries of one receive batch leave in one `sendmmsg` and
//! the answers waiting on a socket come in with one `recvmmsg`, so every
//! side does a batch per wake-up (the measurements are in the manual). The
//! client side of the same idea (the answers of one read pass, one
//! `sendmmsg`) is the server's: `server::sink`.
//!
//! - `udp::flush_queued` sends what the server's UDP worker queued over one
//!   receive batch, each socket's queue with one [`send_connected`].
//! - [`RecvBatch`] is each reader task's receive side.
//!
//! Like `server::batch`, this module holds `unsafe`: the calls take raw
//! pointers into buffers that live on the stack of the calling function
//! for the whole call.
#![allow(unsafe_code)]

use std::io;
use std::mem::zeroed;
use std::os::fd::RawFd;

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

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

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
}
