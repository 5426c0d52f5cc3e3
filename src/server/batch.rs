//! `recvmmsg`/`sendmmsg`: up to [`BATCH`] datagrams per system call.
//!
//! On a saturated core the UDP worker spends most of its time entering and
//! leaving the kernel; one call per batch instead of two per query is the
//! largest single gain on the blocked and cached paths (see the manual's
//! bench table). This and `upstream::mmsg` are the crate's `unsafe` modules: the calls take raw
//! pointers into buffers owned by [`Batch`] or by the calling function, which outlive every
//! call. Addresses are converted by socket2 and the socket option set by nix, so what is
//! left unsafe here is the system calls themselves and the control messages.
//!
//! [`send_many`] is the same `sendmmsg` for the client sink (`sink`), which gathers the
//! answers to forwarded queries.
//!
//! A socket bound to a wildcard address (`0.0.0.0`, `[::]`) must answer
//! from the address each query was sent to, or a client that asked one of
//! the host's addresses hears from another and drops the answer. For those
//! sockets (only) the kernel reports each datagram's destination
//! (`IP_PKTINFO`, `IPV6_RECVPKTINFO`) in a control message, and the answer
//! carries it back as its source ([`Local`]). Sockets bound to one address
//! skip all of it.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{SockAddr, SockAddrStorage};

/// Datagrams per system call (the lab's floor uses the same).
pub(super) const BATCH: usize = 32;
/// Largest query read; a longer datagram is flagged truncated and dropped.
pub(super) const RECV_SIZE: usize = 4096;
/// Room for one control message with an `in6_pktinfo` (the larger of the
/// two: `CMSG_SPACE(20)` is 40 bytes on 64-bit Linux).
const CTRL_LEN: usize = 64;

/// A control-message buffer, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Ctrl([u8; CTRL_LEN]);

/// The local address a datagram arrived on, which its answer must leave from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Local {
    /// The socket's own address: it is bound to one (or the kernel did not say).
    Bound,
    V4(Ipv4Addr),
    /// With the interface it arrived on, which a link-local address needs.
    V6(Ipv6Addr, u32),
}

/// One received datagram and the buffer for its answer.
pub(super) struct Slot<'a> {
    pub(super) query: &'a [u8],
    pub(super) peer: SocketAddr,
    pub(super) local: Local,
    pub(super) out: &'a mut Vec<u8>,
}

/// Receive and send buffers for one worker, reused for every batch. It
/// holds raw pointers into itself, so it is not `Send`: each worker makes
/// its own on its own thread.
pub(super) struct Batch {
    recv_bufs: Vec<u8>,
    /// Where the kernel writes each datagram's sender.
    recv_addrs: Vec<SockAddrStorage>,
    recv_iov: Vec<libc::iovec>,
    recv_hdrs: Vec<libc::mmsghdr>,
    /// Each datagram's destination address; empty unless `pktinfo`.
    recv_ctrl: Vec<Ctrl>,
    /// Answers to send, with the peer each goes to.
    out: Vec<Vec<u8>>,
    out_addrs: Vec<SockAddr>,
    /// The address each answer leaves from, and room to say so; used only with `pktinfo`.
    out_local: Vec<Local>,
    send_ctrl: Vec<Ctrl>,
    out_len: usize,
    /// The socket is bound to a wildcard address and reports destinations.
    pktinfo: bool,
}

/// True when `addr` is a wildcard (`0.0.0.0`, `[::]`): answers must then
/// say which of the host's addresses they come from.
pub(super) fn is_wildcard(addr: SocketAddr) -> bool {
    addr.ip().is_unspecified()
}

/// Asks the kernel to report the destination address of every datagram
/// `sock` receives (`IP_PKTINFO` or `IPV6_RECVPKTINFO`, by its family).
pub(super) fn enable_pktinfo(sock: &UdpSocket) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    if sock.local_addr()?.is_ipv4() {
        setsockopt(sock, sockopt::Ipv4PacketInfo, &true)?;
    } else {
        setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true)?;
    }
    Ok(())
}

/// Sends one datagram to `peer` from `local` without waiting: a full send
/// buffer is an error (`WouldBlock`), never a stall of the caller.
pub(super) fn send_from(
    sock: &UdpSocket,
    buf: &[u8],
    peer: SocketAddr,
    local: Local,
) -> io::Result<usize> {
    let addr = SockAddr::from(peer);
    if local == Local::Bound {
        return socket2::SockRef::from(sock).send_to_with_flags(buf, &addr, libc::MSG_DONTWAIT);
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    let mut ctrl = Ctrl([0; CTRL_LEN]);
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are valid.
    let mut hdr: libc::msghdr = unsafe { zeroed() };
    hdr.msg_name = addr.as_ptr().cast_mut().cast();
    hdr.msg_namelen = addr.len();
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    put_local(&mut hdr, &mut ctrl, local);
    // SAFETY: every pointer in hdr points at a live local of this frame
    // (address, iovec over `buf`, control buffer); the kernel only reads them.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sends each `(bytes, peer)` on `sock` without waiting, at most [`BATCH`]
/// per call; returns how many went out (an error only when none did).
pub(super) fn send_many(sock: &UdpSocket, msgs: &[(&[u8], &SockAddr)]) -> io::Result<usize> {
    let n = msgs.len().min(BATCH);
    // SAFETY: all-zero iovec and mmsghdr are valid values.
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    for (i, (bytes, peer)) in msgs.iter().take(n).enumerate() {
        iov[i] = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        hdrs[i].msg_hdr.msg_name = peer.as_ptr().cast_mut().cast();
        hdrs[i].msg_hdr.msg_namelen = peer.len();
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every pointer in `hdrs[..n]` points into `iov`, `msgs` or the
    // addresses they borrow, all alive for the call and only read by the kernel.
    let r = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

impl Batch {
    /// Buffers for a socket; `pktinfo` when it is bound to a wildcard
    /// address and [`enable_pktinfo`] was called on it.
    pub(super) fn new(pktinfo: bool) -> Self {
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid value.
        let (iov, hdr) = unsafe { (zeroed::<libc::iovec>(), zeroed::<libc::mmsghdr>()) };
        let ctrl_slots = if pktinfo { BATCH } else { 0 };
        let nobody = SockAddr::from(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        Self {
            recv_bufs: vec![0u8; BATCH * RECV_SIZE],
            recv_addrs: (0..BATCH).map(|_| SockAddrStorage::zeroed()).collect(),
            recv_iov: vec![iov; BATCH],
            recv_hdrs: vec![hdr; BATCH],
            recv_ctrl: vec![Ctrl([0; CTRL_LEN]); ctrl_slots],
            out: (0..BATCH).map(|_| Vec::with_capacity(1500)).collect(),
            out_addrs: vec![nobody; BATCH],
            out_local: vec![Local::Bound; BATCH],
            send_ctrl: vec![Ctrl([0; CTRL_LEN]); ctrl_slots],
            out_len: 0,
            pktinfo,
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
            hdr.msg_name = (&raw mut self.recv_addrs[i]).cast();
            hdr.msg_namelen = self.recv_addrs[i].size_of();
            hdr.msg_iov = &mut self.recv_iov[i];
            hdr.msg_iovlen = 1;
            match self.recv_ctrl.get_mut(i) {
                Some(ctrl) => {
                    hdr.msg_control = ctrl.0.as_mut_ptr().cast();
                    hdr.msg_controllen = CTRL_LEN as _;
                }
                None => {
                    hdr.msg_control = std::ptr::null_mut();
                    hdr.msg_controllen = 0;
                }
            }
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

    /// Datagram `i` of the last receive: its bytes, its sender, the address
    /// it was sent to, and the buffer for the answer that goes back. `None`
    /// if it was cut (longer than a query can sensibly be) or from an odd
    /// family.
    pub(super) fn slot(&mut self, i: usize) -> Option<Slot<'_>> {
        let hdr = self.recv_hdrs.get(i)?;
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (hdr.msg_len as usize).min(RECV_SIZE);
        let local = if self.pktinfo {
            read_local(&hdr.msg_hdr)
        } else {
            Local::Bound
        };
        let storage = std::mem::replace(&mut self.recv_addrs[i], SockAddrStorage::zeroed());
        // SAFETY: the kernel wrote the sender's address into `storage`, of
        // the family its first field says and `msg_namelen` bytes long.
        let addr = unsafe { SockAddr::new(storage, hdr.msg_hdr.msg_namelen) };
        let peer = addr.as_socket()?;
        let k = self.out_len;
        self.out_addrs[k] = addr;
        self.out_local[k] = local;
        let query = self.recv_bufs.get(i * RECV_SIZE..i * RECV_SIZE + len)?;
        Some(Slot {
            query,
            peer,
            local,
            out: &mut self.out[k],
        })
    }

    /// Keeps the answer last written into a `slot` for the next `flush`.
    pub(super) fn commit_out(&mut self) {
        self.out_len += 1;
    }

    /// Sends every committed answer, in as few calls as the kernel allows.
    /// Returns how many there were.
    pub(super) fn flush(&mut self, sock: &UdpSocket) -> usize {
        let n = self.out_len;
        self.out_len = 0;
        if n == 0 {
            return 0;
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
            hdrs[k].msg_hdr.msg_name = self.out_addrs[k].as_ptr().cast_mut().cast();
            hdrs[k].msg_hdr.msg_namelen = self.out_addrs[k].len();
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
            if let Some(ctrl) = self.send_ctrl.get_mut(k) {
                put_local(&mut hdrs[k].msg_hdr, ctrl, self.out_local[k]);
            }
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
        n
    }
}

/// The destination address in a received header's control messages.
// `msg_controllen` is a usize with glibc but a socklen_t with musl.
#[allow(clippy::unnecessary_cast)]
fn read_local(hdr: &libc::msghdr) -> Local {
    if hdr.msg_control.is_null() || (hdr.msg_controllen as usize) < size_of::<libc::cmsghdr>() {
        return Local::Bound;
    }
    // SAFETY: msg_control points at this slot's CTRL_LEN-byte, 8-aligned
    // buffer and msg_controllen is what the kernel wrote there (at most
    // CTRL_LEN); CMSG_FIRSTHDR/CMSG_NXTHDR stay within it, and each payload
    // is read unaligned only after its cmsg_len says it holds the struct.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let (level, ty, len) = ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len as usize);
            let data = libc::CMSG_DATA(c);
            if level == libc::IPPROTO_IP
                && ty == libc::IP_PKTINFO
                && len >= libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize
            {
                let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                // The local address the kernel routed it to (for a unicast
                // datagram, its destination; never a broadcast address).
                return Local::V4(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)));
            }
            if level == libc::IPPROTO_IPV6
                && ty == libc::IPV6_PKTINFO
                && len >= libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize
            {
                let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
                return Local::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr), info.ipi6_ifindex);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    Local::Bound
}

/// Points `hdr` at `ctrl`, filled with the control message that sends from
/// `local`; for [`Local::Bound`], at no control message.
fn put_local(hdr: &mut libc::msghdr, ctrl: &mut Ctrl, local: Local) {
    let (level, ty, len) = match local {
        Local::Bound => {
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            return;
        }
        Local::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        Local::V6(..) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    ctrl.0 = [0; CTRL_LEN];
    hdr.msg_control = ctrl.0.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size (40 bytes at most here, < CTRL_LEN).
    hdr.msg_controllen = unsafe { libc::CMSG_SPACE(len as u32) } as _;
    // SAFETY: msg_control points at CTRL_LEN writable, 8-aligned bytes, at
    // least CMSG_SPACE(len) of them, so CMSG_FIRSTHDR is non-null and the
    // header and its payload fit; the payload is written unaligned.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = level;
        (*c).cmsg_type = ty;
        (*c).cmsg_len = libc::CMSG_LEN(len as u32) as _;
        let data = libc::CMSG_DATA(c);
        match local {
            Local::Bound => {}
            Local::V4(addr) => std::ptr::write_unaligned(
                data.cast::<libc::in_pktinfo>(),
                libc::in_pktinfo {
                    // Let routing pick the interface; the source is what matters.
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(addr).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                },
            ),
            Local::V6(addr, ifindex) => std::ptr::write_unaligned(
                data.cast::<libc::in6_pktinfo>(),
                libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: addr.octets(),
                    },
                    ipi6_ifindex: ifindex,
                },
            ),
        }
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
        let mut batch = Batch::new(false);
        let mut got = 0;
        while got < 3 {
            let n = batch.recv(&server).expect("recv");
            for i in 0..n {
                let slot = batch.slot(i).expect("datagram");
                assert_eq!(slot.query.len(), 20);
                assert!(slot.peer.ip().is_loopback());
                assert_eq!(slot.local, Local::Bound);
                let reply = slot.query.to_vec();
                slot.out.clear();
                slot.out.extend_from_slice(&reply);
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

    /// 127.0.0.0/8 is all local, so a wildcard socket sees queries to
    /// 127.0.0.2 from 127.0.0.1 without a network namespace. A connected
    /// client takes only datagrams from the address it asked.
    #[test]
    fn a_wildcard_socket_answers_from_the_address_asked() {
        let server = UdpSocket::bind("0.0.0.0:0").expect("bind");
        server
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .expect("timeout");
        let port = server.local_addr().expect("addr").port();
        let asked: SocketAddr = (Ipv4Addr::new(127, 0, 0, 2), port).into();
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client.connect(asked).expect("connect");
        client
            .set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .expect("timeout");
        let mut buf = [0u8; 64];

        // Without the destination, the kernel picks 127.0.0.1 as the source
        // and the connected client never sees the answer.
        client.send(b"plain").expect("send");
        let mut plain = Batch::new(false);
        assert_eq!(plain.recv(&server).expect("recv"), 1);
        let slot = plain.slot(0).expect("datagram");
        assert_eq!(slot.local, Local::Bound);
        slot.out.clear();
        slot.out.extend_from_slice(b"answer");
        plain.commit_out();
        plain.flush(&server);
        assert!(client.recv(&mut buf).is_err(), "answered from 127.0.0.1");

        enable_pktinfo(&server).expect("pktinfo");
        let mut batch = Batch::new(true);
        client.send(b"batched").expect("send");
        assert_eq!(batch.recv(&server).expect("recv"), 1);
        let slot = batch.slot(0).expect("datagram");
        assert_eq!(slot.local, Local::V4(Ipv4Addr::new(127, 0, 0, 2)));
        let (peer, local) = (slot.peer, slot.local);
        slot.out.clear();
        slot.out.extend_from_slice(b"from batch");
        batch.commit_out();
        assert_eq!(batch.flush(&server), 1);
        let n = client.recv(&mut buf).expect("answer from 127.0.0.2");
        assert_eq!(&buf[..n], b"from batch");

        // The forwarded path sends one datagram outside the batch.
        send_from(&server, b"forwarded", peer, local).expect("send_from");
        let n = client.recv(&mut buf).expect("answer from 127.0.0.2");
        assert_eq!(&buf[..n], b"forwarded");
    }
}
