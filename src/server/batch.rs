//! `recvmmsg`/`sendmmsg`: up to [`BATCH`] datagrams per system call.
//!
//! On a saturated core the UDP worker spends most of its time entering and
//! leaving the kernel; one call per batch instead of two per query is the
//! largest single gain on the blocked and cached paths (see the README's
//! bench table). This and `upstream::mmsg` are the crate's `unsafe` modules: the calls take raw
//! pointers into buffers owned by [`Batch`], which outlive every call.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per system call (the lab's floor uses the same).
pub(super) const BATCH: usize = 32;
/// Largest query read; a longer datagram is flagged truncated and dropped.
const RECV_SIZE: usize = 4096;

/// Receive and send buffers for one worker, reused for every batch.
pub(super) struct Batch {
    recv_bufs: Vec<u8>,
    recv_addrs: Vec<libc::sockaddr_storage>,
    recv_iov: Vec<libc::iovec>,
    recv_hdrs: Vec<libc::mmsghdr>,
    /// Answers to send, with the peer each goes to.
    out: Vec<Vec<u8>>,
    out_addrs: Vec<libc::sockaddr_storage>,
    out_addr_lens: Vec<libc::socklen_t>,
    out_len: usize,
}

// SAFETY: the raw pointers inside iovec/mmsghdr only ever point into this
// struct's own Vecs, which move with it; nothing is shared between threads.
unsafe impl Send for Batch {}

impl Batch {
    pub(super) fn new() -> Self {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for
        // which all-zero bytes are a valid value.
        let (addr, iov, hdr) = unsafe {
            (
                zeroed::<libc::sockaddr_storage>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
            )
        };
        Self {
            recv_bufs: vec![0u8; BATCH * RECV_SIZE],
            recv_addrs: vec![addr; BATCH],
            recv_iov: vec![iov; BATCH],
            recv_hdrs: vec![hdr; BATCH],
            out: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
            out_addrs: vec![addr; BATCH],
            out_addr_lens: vec![0; BATCH],
            out_len: 0,
        }
    }

    /// Blocks until at least one datagram arrives (or the socket's read
    /// timeout passes), then takes every datagram already queued, up to
    /// [`BATCH`]. Returns how many were received.
    pub(super) fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let base = self.recv_bufs.as_mut_ptr();
        for i in 0..BATCH {
            self.recv_iov[i] = libc::iovec {
                // SAFETY: i * RECV_SIZE < recv_bufs.len(), so the offset stays inside the buffer.
                iov_base: unsafe { base.add(i * RECV_SIZE) }.cast(),
                iov_len: RECV_SIZE,
            };
            let hdr = &mut self.recv_hdrs[i].msg_hdr;
            hdr.msg_name = (&mut self.recv_addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.recv_iov[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.recv_hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by self, sized as
        // declared; the kernel writes at most BATCH headers.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.recv_hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Datagram `i` of the last receive: its bytes, its sender, and the
    /// buffer for the answer that goes back to that sender. `None` if it was
    /// cut (longer than a query can sensibly be) or from an odd family.
    pub(super) fn slot(&mut self, i: usize) -> Option<(&[u8], SocketAddr, &mut Vec<u8>)> {
        let hdr = self.recv_hdrs.get(i)?;
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (hdr.msg_len as usize).min(RECV_SIZE);
        let namelen = hdr.msg_hdr.msg_namelen;
        let peer = to_socket_addr(&self.recv_addrs[i], namelen)?;
        let k = self.out_len;
        self.out_addrs[k] = self.recv_addrs[i];
        self.out_addr_lens[k] = namelen;
        let bytes = self.recv_bufs.get(i * RECV_SIZE..i * RECV_SIZE + len)?;
        Some((bytes, peer, &mut self.out[k]))
    }

    /// Keeps the answer last written into a `slot` for the next `flush`.
    pub(super) fn commit_out(&mut self) {
        self.out_len += 1;
    }

    /// Sends every committed answer, in as few calls as the kernel allows.
    pub(super) fn flush(&mut self, sock: &UdpSocket) {
        let n = self.out_len;
        self.out_len = 0;
        if n == 0 {
            return;
        }
        // SAFETY: zeroed iovec/mmsghdr are valid; filled below.
        let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for k in 0..n {
            iov[k] = libc::iovec {
                iov_base: self.out[k].as_mut_ptr().cast(),
                iov_len: self.out[k].len(),
            };
            hdrs[k].msg_hdr.msg_name =
                (&mut self.out_addrs[k] as *mut libc::sockaddr_storage).cast();
            hdrs[k].msg_hdr.msg_namelen = self.out_addr_lens[k];
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0usize;
        let mut failed_at = usize::MAX;
        while sent < n {
            // SAFETY: headers sent..n point at live buffers owned by self or
            // this frame; the kernel only reads them.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    hdrs[sent..].as_mut_ptr(),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // A pending ICMP error from an earlier send (a client that went
                // away) is reported on this call, whatever datagram is first:
                // retry that datagram once before giving it up.
                if failed_at != sent {
                    failed_at = sent;
                    continue;
                }
                tracing::debug!(error = %e, "udp sendmmsg failed");
                sent += 1;
            } else {
                sent += r as usize;
            }
        }
    }
}

fn to_socket_addr(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(ss.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says sockaddr_in, and sockaddr_storage is
            // larger than and aligned for every sockaddr type.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_a_batch_and_answers_each_sender() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .expect("timeout");
        let addr = server.local_addr().expect("addr");
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[i as u8; 20], addr).expect("send");
        }
        let mut batch = Batch::new();
        let mut got = 0;
        while got < 3 {
            let n = batch.recv(&server).expect("recv");
            for i in 0..n {
                let (bytes, peer, out) = batch.slot(i).expect("datagram");
                assert_eq!(bytes.len(), 20);
                assert!(peer.ip().is_loopback());
                let reply = bytes.to_vec();
                out.clear();
                out.extend_from_slice(&reply);
                batch.commit_out();
            }
            batch.flush(&server);
            got += n;
        }
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 64];
            c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
            let (n, _) = c.recv_from(&mut buf).expect("reply");
            assert_eq!(&buf[..n], &[i as u8; 20]);
        }
    }
}
