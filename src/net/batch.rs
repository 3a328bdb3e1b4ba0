//! Batched socket calls: many datagrams per `recvmmsg(2)` call into a reused set of
//! buffers, with UDP GRO many same-size datagrams of one sender per buffer; and a whole
//! [`SendBatch`] (many connections' GSO runs) per `sendmmsg(2)` call.
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

use super::gso::{SendBatch, MAX_RUNS};

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

/// Kernel message headers for [`send_batch`], allocated once and reused.
pub struct SendScratch {
    addrs: Vec<socket2::SockAddr>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Default for SendScratch {
    fn default() -> Self {
        Self {
            addrs: Vec::with_capacity(MAX_RUNS),
            iovs: Vec::with_capacity(MAX_RUNS),
            msgs: Vec::with_capacity(MAX_RUNS),
        }
    }
}

/// What became of a [`send_batch`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Messages the kernel took.
    pub messages: usize,
    /// Messages dropped: a full socket buffer or an error (QUIC sees them as lost).
    pub dropped: usize,
    /// Syscalls made.
    pub calls: usize,
}

/// Sends every run of `batch` on non-blocking socket `fd` with as few `sendmmsg` calls as
/// the kernel allows. A message the kernel refuses is dropped (logged) and the rest still
/// go; a full socket buffer drops what is left.
pub fn send_batch(fd: RawFd, batch: &SendBatch, scratch: &mut SendScratch) -> Sent {
    let SendScratch { addrs, iovs, msgs } = scratch;
    addrs.clear();
    iovs.clear();
    msgs.clear();
    for (bytes, to) in batch.runs() {
        addrs.push(socket2::SockAddr::from(to));
        iovs.push(libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        });
    }
    for (addr, iov) in addrs.iter().zip(iovs.iter_mut()) {
        // SAFETY: mmsghdr is a plain C struct; all zero bytes is a valid empty header.
        let mut msg: libc::mmsghdr = unsafe { zeroed() };
        msg.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        msg.msg_hdr.msg_namelen = addr.len();
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
        msgs.push(msg);
    }
    let mut sent = Sent::default();
    let total = msgs.len();
    while sent.messages + sent.dropped < total {
        let next = sent.messages + sent.dropped;
        sent.calls += 1;
        // SAFETY: `msgs[next..]` are headers whose name and iovec pointers point into
        // `addrs` and `iovs` (not moved since: both are only read below), whose iovecs
        // point into `batch`'s buffer, borrowed for this whole function; the kernel only
        // reads them (send side), and the count matches the slice.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                msgs[next..].as_mut_ptr(),
                (total - next) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            sent.messages += n as usize;
            continue;
        }
        if n == 0 {
            sent.dropped += total - next;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                tracing::trace!(dropped = total - next, "socket send buffer full");
                sent.dropped += total - next;
            }
            _ => {
                tracing::debug!(error = %err, to = %addrs[next].as_socket().map_or_else(String::new, |a| a.to_string()), "send failed");
                sent.dropped += 1;
            }
        }
    }
    sent
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

    /// Says that a test skipped `what` on this host, on stderr past libtest's capture (it
    /// only takes `print!`/`eprint!`), so passing runs show it too.
    fn skipped(what: &str, why: &str) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED in net::batch tests: {what}: {why}"
        );
    }

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
        let rx = match UdpSocket::bind("[::1]:0") {
            Ok(rx) => rx,
            Err(e) => {
                skipped(
                    "decoding an IPv6 sender",
                    &format!("no IPv6 loopback ({e})"),
                );
                return;
            }
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

    #[test]
    fn one_sendmmsg_carries_runs_for_several_peers_cut_by_gso() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let gso = crate::net::udp::set_segment(&tx, 100);
        if !gso {
            skipped(
                "runs cut by GSO (checking one datagram per message instead)",
                "the kernel refused UDP_SEGMENT",
            );
        }
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SendBatch::new(10_000, gso.then_some(100));
        let peers = [a.local_addr().unwrap(), b.local_addr().unwrap()];
        for (p, to) in peers.iter().enumerate() {
            // Three packets each: two full (tagged 1, 2) and a short one (tagged 3).
            let mut sizes = [100usize, 100, 40].into_iter().enumerate();
            batch
                .fill::<()>(
                    |slot| {
                        Ok(sizes.next().map(|(i, n)| {
                            slot[..n].fill((p * 10 + i + 1) as u8);
                            (n, *to)
                        }))
                    },
                    &mut |_| panic!("the batch has room"),
                )
                .unwrap();
        }
        let sent = send_batch(tx.as_raw_fd(), &batch, &mut SendScratch::default());
        let messages = if gso { 2 } else { 6 };
        assert_eq!(
            sent,
            Sent {
                messages,
                dropped: 0,
                calls: 1
            }
        );
        for (p, rx) in [a, b].iter().enumerate() {
            let mut got = Vec::new();
            let mut buf = [0u8; 2000];
            for _ in 0..3 {
                let (n, from) = rx.recv_from(&mut buf).unwrap();
                assert_eq!(from, tx.local_addr().unwrap());
                got.push(buf[..n].to_vec());
            }
            let tag = |i: usize| (p * 10 + i) as u8;
            assert_eq!(
                got,
                vec![vec![tag(1); 100], vec![tag(2); 100], vec![tag(3); 40]]
            );
        }
    }
}
