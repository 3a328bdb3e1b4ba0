//! Batched receive: many datagrams per `recvmmsg(2)` call into a reused set of buffers,
//! and with UDP GRO many same-size datagrams of one sender per buffer.
//!
//! A relay with many subscribers mostly receives small ACK packets from many peers; one
//! syscall per datagram would dominate its receive path. A publisher's full-size packets
//! arrive coalesced when the socket has `UDP_GRO` on: the kernel hands one buffer and a
//! segment size (a control message), which we cut back into datagrams. Buffers, address
//! slots, control buffers and the kernel message headers are allocated once and reused.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Buffers read per syscall at most.
pub const BATCH: usize = 32;
/// Room per buffer: a whole GRO batch (the kernel coalesces at most 64 KiB).
pub const SLOT: usize = 1 << 16;
/// Room per control buffer: one `UDP_GRO` message (an int) with its header.
const CONTROL: usize = 64;

pub struct RecvBatch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    controls: Vec<u8>,
    /// Buffers of the last `recv`: (length, sender, GRO segment size).
    received: Vec<(usize, SocketAddr, Option<usize>)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            bufs: vec![0u8; BATCH * SLOT],
            // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all
            // zero bytes is a valid (empty) value.
            addrs: vec![unsafe { zeroed() }; BATCH],
            iovs: vec![unsafe { zeroed() }; BATCH],
            msgs: vec![unsafe { zeroed() }; BATCH],
            controls: vec![0u8; BATCH * CONTROL],
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Reads up to [`BATCH`] waiting buffers (each a datagram, or several of one sender
    /// under GRO) from non-blocking socket `fd`; returns how many (0 when none is waiting).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received.clear();
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.controls[i * CONTROL..].as_mut_ptr().cast();
            hdr.msg_controllen = CONTROL as _;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: `msgs` holds BATCH headers whose name, iovec, buffer and control pointers
        // point into `addrs`, `iovs`, `bufs` and `controls`, all owned by `self`, alive and
        // not moved for the duration of the call, with the lengths stated in each header.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        for i in 0..n as usize {
            let len = (self.msgs[i].msg_len as usize).min(SLOT);
            let segment = gro_segment(&self.msgs[i].msg_hdr);
            if let Some(from) = to_socket_addr(&self.addrs[i]) {
                self.received.push((len, from, segment));
            }
        }
        Ok(n as usize)
    }

    /// The datagrams of the last [`Self::recv`], as mutable slices with their senders
    /// (a GRO buffer cut into its segments; only the last may be shorter).
    pub fn datagrams(&mut self) -> impl Iterator<Item = (&mut [u8], SocketAddr)> + '_ {
        let received = &self.received;
        self.bufs
            .chunks_mut(SLOT)
            .zip(received.iter())
            .flat_map(|(buf, &(len, from, segment))| {
                let step = segment.filter(|&s| s > 0).unwrap_or(len.max(1));
                buf[..len].chunks_mut(step).map(move |d| (d, from))
            })
    }
}

/// The segment size of a GRO buffer, from its `UDP_GRO` control message.
fn gro_segment(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: `hdr` was filled by recvmmsg: its control pointer and length describe the
    // bytes the kernel wrote into our control buffer, which CMSG_FIRSTHDR/CMSG_NXTHDR walk
    // without leaving it; CMSG_DATA of a UDP_GRO message holds an int (read unaligned).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// Asks the kernel to coalesce same-size datagrams of one sender (`UDP_GRO`); whether it
/// agreed.
pub fn enable_gro(fd: RawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: a live socket fd and a pointer to a local c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            &on as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

fn to_socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which is smaller than
            // and alignment-compatible with sockaddr_storage.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
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
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn reads_a_burst_from_several_senders_in_one_call() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            a.send_to(&[i; 100], rx.local_addr().unwrap()).unwrap();
            b.send_to(&vec![i + 10; 1400], rx.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = RecvBatch::new();
        let n = batch.recv(rx.as_raw_fd()).unwrap();
        assert_eq!(n, 10);
        let got: Vec<(Vec<u8>, SocketAddr)> =
            batch.datagrams().map(|(d, f)| (d.to_vec(), f)).collect();
        let from_a: Vec<&Vec<u8>> = got
            .iter()
            .filter(|(_, f)| *f == a.local_addr().unwrap())
            .map(|(d, _)| d)
            .collect();
        let from_b: Vec<&Vec<u8>> = got
            .iter()
            .filter(|(_, f)| *f == b.local_addr().unwrap())
            .map(|(d, _)| d)
            .collect();
        assert_eq!(
            from_a,
            (0..5u8)
                .map(|i| vec![i; 100])
                .collect::<Vec<_>>()
                .iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(from_b.len(), 5);
        assert!(from_b.iter().all(|d| d.len() == 1400));
        // Nothing more waiting: zero, not an error.
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 0);
    }

    #[test]
    fn gro_buffers_are_cut_back_into_their_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        assert!(enable_gro(rx.as_raw_fd()), "UDP_GRO is available here");
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // One GSO send of three 1200-byte segments and a 500-byte tail.
        assert!(crate::net::udp::set_segment(&tx, 1200));
        let mut payload = Vec::new();
        for i in 0..4u8 {
            let len = if i == 3 { 500 } else { 1200 };
            payload.extend(std::iter::repeat_n(i, len));
        }
        tx.send_to(&payload, rx.local_addr().unwrap()).unwrap();
        let mut batch = RecvBatch::new();
        assert_eq!(
            batch.recv(rx.as_raw_fd()).unwrap(),
            1,
            "coalesced into one buffer"
        );
        let got: Vec<Vec<u8>> = batch.datagrams().map(|(d, _)| d.to_vec()).collect();
        let want: Vec<Vec<u8>> = payload.chunks(1200).map(<[u8]>::to_vec).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn ipv6_senders_are_decoded() {
        let Ok(rx) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this host
        };
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        tx.send_to(b"hi", rx.local_addr().unwrap()).unwrap();
        let mut batch = RecvBatch::new();
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 1);
        let (data, from) = batch.datagrams().next().unwrap();
        assert_eq!(&*data, b"hi");
        assert_eq!(from, tx.local_addr().unwrap());
    }
}
