//! Socket batching: one `sendmmsg` sends a batch of queries, each from the
//! source address its `IP_PKTINFO` control message names, and one
//! `recvmmsg` reads a batch of answers. The headers point into buffers that
//! this struct owns and never resizes, so they stay valid as it moves.
//!
//! std has neither call nor control messages, hence libc and the only
//! unsafe code of the tool, here.
#![allow(unsafe_code)]

use std::mem::{size_of, zeroed};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// The largest query sent; the largest answer read.
const QUERY_MAX: usize = 512;
const ANSWER_MAX: usize = 4096;

/// Room for one `cmsghdr` carrying an `in_pktinfo`, aligned for it.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

/// The headers and buffers of one batch each way.
pub(crate) struct Batch {
    sbufs: Vec<[u8; QUERY_MAX]>,
    rbufs: Vec<[u8; ANSWER_MAX]>,
    siov: Vec<libc::iovec>,
    riov: Vec<libc::iovec>,
    smsgs: Vec<libc::mmsghdr>,
    rmsgs: Vec<libc::mmsghdr>,
    controls: Vec<Control>,
    /// Every query's destination (boxed: the send headers point at it).
    server: Box<libc::sockaddr_in>,
}

impl Batch {
    /// Room for `size` datagrams each way, every query addressed to `server`.
    pub(crate) fn new(size: usize, server: SocketAddrV4) -> Self {
        let mut b = Self {
            sbufs: vec![[0u8; QUERY_MAX]; size],
            rbufs: vec![[0u8; ANSWER_MAX]; size],
            // SAFETY (for the zeroed values): plain C structs for which all
            // zero bytes are valid.
            siov: (0..size).map(|_| unsafe { zeroed() }).collect(),
            riov: (0..size).map(|_| unsafe { zeroed() }).collect(),
            smsgs: (0..size).map(|_| unsafe { zeroed() }).collect(),
            rmsgs: (0..size).map(|_| unsafe { zeroed() }).collect(),
            controls: vec![Control([0; 64]); size],
            server: Box::new(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: server.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*server.ip()).to_be(),
                },
                // SAFETY: zero padding.
                sin_zero: unsafe { zeroed() },
            }),
        };
        // SAFETY: CMSG_SPACE only computes a size.
        let cmsg_space = unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) } as usize;
        assert!(cmsg_space <= size_of::<Control>());
        let server: *const libc::sockaddr_in = &*b.server;
        for i in 0..size {
            b.siov[i].iov_base = b.sbufs[i].as_mut_ptr().cast();
            b.riov[i] = libc::iovec {
                iov_base: b.rbufs[i].as_mut_ptr().cast(),
                iov_len: ANSWER_MAX,
            };
            let h = &mut b.smsgs[i].msg_hdr;
            h.msg_name = server.cast_mut().cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut b.siov[i];
            h.msg_iovlen = 1;
            h.msg_control = b.controls[i].0.as_mut_ptr().cast();
            h.msg_controllen = cmsg_space as _;
            // SAFETY: msg_control points at 64 writable bytes, at least
            // CMSG_SPACE(in_pktinfo), so the first header and its data fit.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(h);
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
            }
            b.rmsgs[i].msg_hdr.msg_iov = &mut b.riov[i];
            b.rmsgs[i].msg_hdr.msg_iovlen = 1;
        }
        b
    }

    pub(crate) fn len(&self) -> usize {
        self.sbufs.len()
    }

    /// Puts `query` (at most 512 bytes) with `id` in slot `i`, to leave
    /// from `from` (an IPv4 address in host order).
    pub(crate) fn fill(&mut self, i: usize, query: &[u8], id: u16, from: u32) {
        let buf = &mut self.sbufs[i];
        buf[..query.len()].copy_from_slice(query);
        buf[..2].copy_from_slice(&id.to_be_bytes());
        self.siov[i].iov_len = query.len();
        // SAFETY: the control buffer was laid out in `new`; the data of its
        // one header is an in_pktinfo.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&self.smsgs[i].msg_hdr);
            let info = libc::CMSG_DATA(c).cast::<libc::in_pktinfo>();
            info.write_unaligned(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: from.to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            });
        }
    }

    /// Sends the first `k` slots without waiting; returns how many left
    /// (none when the send buffer is full).
    pub(crate) fn send(&mut self, sock: &UdpSocket, k: usize) -> usize {
        let k = k.min(self.len());
        // SAFETY: k headers, each pointing at live buffers owned by self.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                self.smsgs.as_mut_ptr(),
                k as u32,
                libc::MSG_DONTWAIT,
            )
        };
        usize::try_from(r).unwrap_or(0)
    }

    /// Reads the datagrams waiting, at most a batch, without waiting;
    /// returns how many ([`Self::answer`] has each).
    pub(crate) fn recv(&mut self, sock: &UdpSocket) -> usize {
        // SAFETY: len headers pointing at len receive buffers of ANSWER_MAX.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.rmsgs.as_mut_ptr(),
                self.len() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        usize::try_from(r).unwrap_or(0)
    }

    /// The `i`th datagram the last [`Self::recv`] read.
    pub(crate) fn answer(&self, i: usize) -> &[u8] {
        &self.rbufs[i][..(self.rmsgs[i].msg_len as usize).min(ANSWER_MAX)]
    }
}

/// A receive buffer of `bytes`, so that a burst of answers is not dropped
/// while the loop is sending (the kernel may cap it at `rmem_max`).
pub(crate) fn set_rcvbuf(sock: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: a valid fd and a c_int option value of the size given.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
