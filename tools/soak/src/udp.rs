//! UDP sockets and batching: `sendmmsg` sends what is due in one call,
//! `recvmmsg` reads a batch of answers with the kernel's receive timestamp
//! of each (`SO_TIMESTAMPNS`), so that reading late adds nothing to the
//! latency measured. The headers point into buffers that [`Batch`] owns
//! and never resizes, so they stay valid as it moves.
//!
//! std has neither call nor control messages, hence libc and this module's
//! unsafe code (the only unsafe code of the tool besides one `sysconf`).
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{SystemTime, UNIX_EPOCH};

/// The largest query sent; the largest answer read.
pub(crate) const QUERY_MAX: usize = 512;
const ANSWER_MAX: usize = 4096;

/// Room for one received datagram's control messages (its timestamp).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

/// Batches for `sendmmsg`/`recvmmsg`: headers pointing at their buffers,
/// and room for the kernel's receive timestamp of each datagram.
pub(crate) struct Batch {
    pub(crate) bufs: Vec<[u8; QUERY_MAX]>,
    rbufs: Vec<[u8; ANSWER_MAX]>,
    controls: Vec<Control>,
    siov: Vec<libc::iovec>,
    riov: Vec<libc::iovec>,
    smsgs: Vec<libc::mmsghdr>,
    rmsgs: Vec<libc::mmsghdr>,
}

impl Batch {
    /// Room for `b` datagrams each way.
    pub(crate) fn new(b: usize) -> Self {
        let mut x = Self {
            bufs: vec![[0u8; QUERY_MAX]; b],
            rbufs: vec![[0u8; ANSWER_MAX]; b],
            controls: vec![Control([0; 64]); b],
            // SAFETY (for the zeroed values): plain C structs for which all
            // zero bytes are valid.
            siov: (0..b).map(|_| unsafe { zeroed() }).collect(),
            riov: (0..b).map(|_| unsafe { zeroed() }).collect(),
            smsgs: (0..b).map(|_| unsafe { zeroed() }).collect(),
            rmsgs: (0..b).map(|_| unsafe { zeroed() }).collect(),
        };
        for i in 0..b {
            x.siov[i].iov_base = x.bufs[i].as_mut_ptr().cast();
            x.riov[i] = libc::iovec {
                iov_base: x.rbufs[i].as_mut_ptr().cast(),
                iov_len: ANSWER_MAX,
            };
            x.smsgs[i].msg_hdr.msg_iov = &mut x.siov[i];
            x.smsgs[i].msg_hdr.msg_iovlen = 1;
            x.rmsgs[i].msg_hdr.msg_iov = &mut x.riov[i];
            x.rmsgs[i].msg_hdr.msg_iovlen = 1;
            x.rmsgs[i].msg_hdr.msg_control = x.controls[i].0.as_mut_ptr().cast();
        }
        x
    }

    pub(crate) fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Marks slot `i`'s query as `len` bytes long (written into `bufs[i]`).
    pub(crate) fn set_len(&mut self, i: usize, len: usize) {
        self.siov[i].iov_len = len;
    }

    /// Sends the first `k` slots on `sock` (connected), waiting for room
    /// if need be; returns how many left.
    pub(crate) fn send(&mut self, sock: &UdpSocket, k: usize) -> usize {
        let k = k.min(self.len());
        // SAFETY: k headers, each pointing at a live buffer owned by self.
        let r = unsafe { libc::sendmmsg(sock.as_raw_fd(), self.smsgs.as_mut_ptr(), k as u32, 0) };
        usize::try_from(r).unwrap_or(0)
    }

    /// Reads the datagrams waiting on `sock`, at most a batch, without
    /// waiting; returns how many ([`Self::answer`] and [`Self::rx_time`]
    /// have each).
    pub(crate) fn recv(&mut self, sock: &UdpSocket) -> usize {
        for m in self.rmsgs.iter_mut() {
            m.msg_hdr.msg_controllen = size_of::<Control>() as _;
        }
        // SAFETY: len headers pointing at len receive buffers of ANSWER_MAX
        // bytes and len control buffers of 64.
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

    /// The kernel's receive time of datagram `i` (ns, CLOCK_REALTIME).
    pub(crate) fn rx_time(&self, i: usize) -> Option<u64> {
        let h = &self.rmsgs[i].msg_hdr;
        // SAFETY: the header's control buffer is ours, msg_controllen was
        // set by the kernel to what it wrote; CMSG_* walk within it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts = libc::CMSG_DATA(c).cast::<libc::timespec>().read_unaligned();
                    return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }
}

/// Now on the clock of the kernel's receive timestamps (CLOCK_REALTIME),
/// in ns.
pub(crate) fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A nonblocking socket on 127.0.0.1 connected to `server`, with a 4 MiB
/// receive buffer.
pub(crate) fn socket(server: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.connect(server)?;
    s.set_nonblocking(true)?;
    set_rcvbuf(&s);
    Ok(s)
}

/// [`socket`], with the kernel's receive timestamp on every datagram.
pub(crate) fn timestamped_socket(server: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = socket(server)?;
    setsockopt(&s, libc::SO_TIMESTAMPNS, 1)?;
    Ok(s)
}

/// A 4 MiB receive buffer (the kernel may cap it at `rmem_max`), so that a
/// burst of answers is not dropped while the loop is sending; best effort.
pub(crate) fn set_rcvbuf(s: &UdpSocket) {
    let _ = setsockopt(s, libc::SO_RCVBUF, 4 << 20);
}

fn setsockopt(s: &UdpSocket, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid fd and a c_int option value of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_out_and_comes_back_with_receive_times() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(at) = echo.local_addr().unwrap() else {
            unreachable!()
        };
        let s = timestamped_socket(at).unwrap();
        let mut b = Batch::new(4);
        for i in 0..3 {
            b.bufs[i][..3].copy_from_slice(&[i as u8; 3]);
            b.set_len(i, 3);
        }
        let before = realtime_ns();
        assert_eq!(b.send(&s, 3), 3);
        let mut buf = [0u8; 16];
        for _ in 0..3 {
            let (n, from) = echo.recv_from(&mut buf).unwrap();
            echo.send_to(&buf[..n], from).unwrap();
        }
        let mut got = 0;
        while got < 3 {
            for i in 0..b.recv(&s) {
                assert_eq!(b.answer(i), [got as u8; 3]);
                let t = b.rx_time(i).unwrap();
                assert!(
                    t >= before && t <= realtime_ns(),
                    "{t} not in [{before}, now]"
                );
                got += 1;
            }
        }
    }
}
