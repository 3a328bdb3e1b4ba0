//! A non-blocking UDP socket driven by a monoio (io_uring or epoll) runtime.
//!
//! Syscalls are plain non-blocking `recv_from`/`send_to` on a std socket, batched by the
//! caller until `WouldBlock`; monoio only tells us when the socket is readable again and
//! runs our timers. The monoio handle is a duplicate of the same socket.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::batch::{self, RecvBatch, SendScratch, Sent};
use super::gso::SendBatch;
use super::quic::MAX_DATAGRAM_SIZE;

/// Socket buffer size we ask for (the kernel caps it at net.core.{r,w}mem_max).
const SOCKET_BUFFER: usize = 4 << 20;

pub struct UdpIo {
    socket: UdpSocket,
    ready: monoio::net::udp::UdpSocket,
    local: SocketAddr,
    /// GSO segment size when the kernel accepted `UDP_SEGMENT`.
    segment: Option<usize>,
    /// Message headers reused by every [`Self::send_batch`].
    scratch: RefCell<SendScratch>,
}

impl UdpIo {
    /// Binds `addr`; must run inside a monoio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::from_std(UdpSocket::bind(addr)?)
    }

    /// Drives a bound socket (e.g. one of a reuseport group); must run inside a monoio
    /// runtime.
    pub fn from_std(socket: UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        set_buffer(&socket, libc::SO_RCVBUF);
        set_buffer(&socket, libc::SO_SNDBUF);
        let ready = monoio::net::udp::UdpSocket::from_std(socket.try_clone()?)?;
        let local = socket.local_addr()?;
        let segment = set_segment(&socket, MAX_DATAGRAM_SIZE).then_some(MAX_DATAGRAM_SIZE);
        if segment.is_none() {
            tracing::warn!("UDP GSO unavailable: one datagram per send");
        }

        Ok(Self {
            socket,
            ready,
            local,
            segment,
            scratch: RefCell::new(SendScratch::default()),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The GSO segment size, when sends are batched with UDP GSO.
    pub fn segment(&self) -> Option<usize> {
        self.segment
    }

    /// A send batch of `capacity` bytes laid out for this socket's GSO segment size.
    pub fn send_batch_of(&self, capacity: usize) -> SendBatch {
        SendBatch::new(capacity, self.segment)
    }

    /// Sends every packet `conn` has ready through `batch` (made by
    /// [`Self::send_batch_of`]), full-size runs as GSO messages.
    pub fn send_from<F: quiche::BufFactory>(
        &self,
        conn: &mut quiche::Connection<F>,
        batch: &mut SendBatch,
    ) -> Result<(), quiche::Error> {
        let mut send = |b: &SendBatch| {
            self.send_batch(b);
        };
        batch.fill(
            |slot| match conn.send(slot) {
                Ok((n, info)) => Ok(Some((n, info.to))),
                Err(quiche::Error::Done) => Ok(None),
                Err(e) => Err(e),
            },
            &mut send,
        )?;
        if !batch.is_empty() {
            send(batch);
            batch.clear();
        }
        Ok(())
    }

    /// Sends every message of `batch` (`sendmmsg`; what the kernel refuses is dropped,
    /// which QUIC recovers as loss). The caller clears the batch.
    pub fn send_batch(&self, batch: &SendBatch) -> Sent {
        batch::send_batch(
            self.socket.as_raw_fd(),
            batch,
            &mut self.scratch.borrow_mut(),
        )
    }

    /// Lets the kernel coalesce same-size datagrams of one sender (UDP GRO); only for
    /// sockets read with [`Self::recv_batch`], which cuts them apart again. Whether the
    /// kernel agreed.
    pub fn enable_gro(&self) -> bool {
        let on = super::batch::enable_gro(self.socket.as_raw_fd());
        if !on {
            tracing::debug!("UDP GRO unavailable: one datagram per receive buffer");
        }
        on
    }

    /// Reads a batch of waiting buffers into `batch`; returns how many (0: none waiting).
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.recv(self.socket.as_raw_fd())
    }

    /// One datagram, or `None` when nothing is waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        match self.socket.recv_from(buf) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one datagram; a full socket buffer drops it (QUIC recovers the loss).
    pub fn send(&self, buf: &[u8], to: SocketAddr) {
        match self.socket.send_to(buf, to) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tracing::trace!("socket send buffer full, datagram dropped");
            }
            Err(e) => tracing::debug!(error = %e, %to, "send failed"),
        }
    }

    /// Waits until the socket is readable.
    pub async fn readable(&self) {
        let _ = self.ready.readable(false).await;
    }

    /// Waits until the socket is readable, `wake` is readable, or `timeout` passes.
    pub async fn wait(&self, timeout: Option<Duration>, wake: Option<&monoio::net::UnixStream>) {
        let sleep = async {
            match timeout {
                Some(d) => monoio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let woken = async {
            match wake {
                Some(w) => {
                    let _ = w.readable(false).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        monoio::select! {
            _ = self.ready.readable(false) => {}
            _ = sleep => {}
            _ = woken => {}
        }
    }
}

/// Sets `UDP_SEGMENT` so each send is cut into `segment`-byte datagrams; whether the
/// kernel agreed.
pub fn set_segment(socket: &UdpSocket, segment: usize) -> bool {
    let size = segment as libc::c_int;
    // SAFETY: as in `set_buffer`: a live socket fd and a pointer to a local c_int of the
    // stated size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

fn set_buffer(socket: &UdpSocket, option: libc::c_int) {
    let sock = socket2::SockRef::from(socket);
    let (set, name, sysctl) = match option {
        libc::SO_RCVBUF => (
            sock.set_recv_buffer_size(SOCKET_BUFFER),
            "SO_RCVBUF",
            "net.core.rmem_max",
        ),
        _ => (
            sock.set_send_buffer_size(SOCKET_BUFFER),
            "SO_SNDBUF",
            "net.core.wmem_max",
        ),
    };
    let got = match option {
        libc::SO_RCVBUF => sock.recv_buffer_size(),
        _ => sock.send_buffer_size(),
    };
    // Linux reports twice what it granted (the doubling covers its bookkeeping).
    let granted = got.map(|g| g / 2).unwrap_or(0);
    if set.is_err() || granted < SOCKET_BUFFER {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                asked = SOCKET_BUFFER,
                granted,
                "the kernel granted a smaller UDP {name} than asked: bursts may be dropped; raise {sysctl} (README: Deployment)"
            );
        }
    }
}
