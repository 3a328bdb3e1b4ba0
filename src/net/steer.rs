//! Connection-ID steering: one UDP socket per shard on the same port (SO_REUSEPORT), and a
//! classic BPF program on the group that hands each datagram to the shard its destination
//! connection ID names.
//!
//! Every shard issues connection IDs whose first byte is its index, so the first byte of a
//! packet's destination connection ID, modulo the shard count, is its shard. A client's
//! first Initial carries an ID the client chose at random; that picks a shard at random,
//! which accepts the connection and from then on is named by every packet of it. Where the
//! program cannot be attached the kernel spreads datagrams by address hash instead, and
//! shards pass misrouted ones on by the same rule ([`home_shard`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// The shard a QUIC datagram belongs to: the first byte of its destination connection ID
/// modulo `shards` (a long header's ID starts at byte 6, a short header's at byte 1).
/// Datagrams too short to say go to shard 0. The BPF program computes the same.
pub fn home_shard(datagram: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    let long = datagram.first().is_some_and(|b| b & 0x80 != 0);
    let at = if long { 6 } else { 1 };
    datagram.get(at).map_or(0, |&b| usize::from(b) % shards)
}

/// The sockets of a reuseport group, in group order (socket `i` serves shard `i`).
pub struct Group {
    pub sockets: Vec<UdpSocket>,
    /// Whether the steering program is attached (else misrouted datagrams are forwarded).
    pub steered: bool,
}

/// Binds `shards` UDP sockets to `addr` with SO_REUSEPORT (port 0: the first socket's port)
/// and, when `steer` is set and there are several, attaches the steering program.
pub fn bind_group(addr: SocketAddr, shards: usize, steer: bool) -> io::Result<Group> {
    let mut sockets = Vec::with_capacity(shards);
    let mut addr = addr;
    for _ in 0..shards {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket: UdpSocket = socket.into();
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    let steered = match (shards > 1 && steer).then(|| attach(&sockets[0], shards)) {
        Some(Ok(())) => true,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot attach the connection-ID steering program: misrouted datagrams are forwarded between shards");
            false
        }
        None => false,
    };
    Ok(Group { sockets, steered })
}

/// The steering program for `shards` sockets, as classic BPF over the UDP payload.
fn program(shards: usize) -> [libc::sock_filter; 7] {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    use libc::{BPF_A, BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JMP, BPF_JSET, BPF_K, BPF_LD};
    use libc::{BPF_MOD, BPF_RET};
    [
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),      // A = first byte
        op(BPF_JMP | BPF_JSET | BPF_K, 0, 2, 0x80), // long header?
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 6),      // long: A = first byte of the DCID
        op(BPF_JMP | BPF_JA, 0, 0, 1),
        op(BPF_LD | BPF_B | BPF_ABS, 0, 0, 1), // short: A = first byte of the DCID
        op(BPF_ALU | BPF_MOD | BPF_K, 0, 0, shards as u32),
        op(BPF_RET | BPF_A, 0, 0, 0), // the socket at this index in the group
    ]
}

/// Attaches the steering program to the reuseport group of `socket`.
fn attach(socket: &UdpSocket, shards: usize) -> io::Result<()> {
    let mut filter = program(shards);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: the fd is a live socket owned by `socket`; `prog` points to `filter`, which
    // lives until the call returns (the kernel copies the program), and we pass the exact
    // size of `sock_fprog` as setsockopt(2) requires.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &prog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn long_header(dcid0: u8) -> Vec<u8> {
        vec![0xc0, 0, 0, 0, 1, 8, dcid0, 1, 2, 3, 4, 5, 6, 7, 0]
    }

    fn short_header(dcid0: u8) -> Vec<u8> {
        vec![0x40, dcid0, 9, 9, 9, 9, 9]
    }

    #[test]
    fn the_home_shard_is_the_first_dcid_byte_modulo_the_shards() {
        assert_eq!(home_shard(&long_header(5), 4), 1);
        assert_eq!(home_shard(&short_header(5), 4), 1);
        assert_eq!(home_shard(&short_header(2), 3), 2);
        assert_eq!(home_shard(&short_header(7), 1), 0);
        assert_eq!(home_shard(&[0xc0, 0, 0], 4), 0, "too short to say");
        assert_eq!(home_shard(&[], 4), 0);
    }

    /// Which socket of the group each datagram reaches.
    fn receivers(group: &Group, datagrams: &[Vec<u8>]) -> Vec<usize> {
        let target = group.sockets[0].local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for d in datagrams {
            client.send_to(d, target).unwrap();
            // Loopback delivery is synchronous with the send; poll each socket once more
            // for good measure.
            let mut found = None;
            for _ in 0..100 {
                for (i, s) in group.sockets.iter().enumerate() {
                    if let Ok((n, _)) = s.recv_from(&mut buf) {
                        assert_eq!(&buf[..n], &d[..]);
                        found = Some(i);
                    }
                }
                if found.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            got.push(found.expect("datagram received by some socket"));
        }
        got
    }

    #[test]
    fn the_kernel_steers_datagrams_to_their_home_socket() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 3, true).unwrap();
        assert!(
            group.steered,
            "attaching SO_ATTACH_REUSEPORT_CBPF works here"
        );
        let port = group.sockets[0].local_addr().unwrap().port();
        assert!(group
            .sockets
            .iter()
            .all(|s| s.local_addr().unwrap().port() == port));
        let datagrams: Vec<Vec<u8>> = (0u8..12)
            .map(|i| {
                if i % 2 == 0 {
                    long_header(i * 7)
                } else {
                    short_header(i * 7)
                }
            })
            .collect();
        let want: Vec<usize> = datagrams.iter().map(|d| home_shard(d, 3)).collect();
        assert_eq!(receivers(&group, &datagrams), want);
    }
}
