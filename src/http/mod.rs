//! The TCP side door: `/certificate.sha256`, `/health`, `/metrics` and `/announced` over
//! HTTP/1.1, on a thread of its own that reads what the shards publish and never runs on,
//! or waits for, a shard's loop.
//!
//! One thread serves every connection with non-blocking sockets and `poll(2)`, so a slow
//! or silent client holds a slot, never the thread. It is bounded: at most
//! [`MAX_CONNECTIONS`] connections (a new one beyond takes the place of the oldest still
//! sending its request), a request head of at most [`request::MAX_HEAD`] bytes that must
//! arrive within [`REQUEST_TIMEOUT`], a response that must leave within
//! [`RESPONSE_TIMEOUT`], and one request per connection.

pub mod request;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub use request::Site;
use request::{Parsed, Response};

/// Connections held at once.
pub const MAX_CONNECTIONS: usize = 128;

/// Time a client has to send its request head once connected.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a client has to take the response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves `site` on a new thread `http`; returns the bound address.
pub fn start(addr: SocketAddr, site: Site) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || serve(listener, site))?;
    Ok(local)
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// The request head so far.
    head: Vec<u8>,
    /// The response, once there is one, and how much of it has left.
    response: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

impl Conn {
    /// Reads what the client sent; answers once the head is complete. `false`: done with it.
    fn on_readable(&mut self, site: &Site, now: Instant) -> bool {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
            if self.head.len() > request::MAX_HEAD {
                break;
            }
        }
        let response = match request::parse(&self.head) {
            Parsed::Incomplete => return true,
            Parsed::Complete(req) => request::respond(&req, site),
            Parsed::Refused(response) => response,
        };
        self.answer(response, now)
    }

    fn answer(&mut self, response: Response, now: Instant) -> bool {
        self.response = Some((response.to_bytes(), 0));
        self.deadline = now + RESPONSE_TIMEOUT;
        self.on_writable()
    }

    /// Writes what the socket takes. `false`: done with it (all sent, or failed).
    fn on_writable(&mut self) -> bool {
        let Some((bytes, sent)) = &mut self.response else {
            return true;
        };
        while *sent < bytes.len() {
            match self.stream.write(&bytes[*sent..]) {
                Ok(0) => return false,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        false
    }

    fn events(&self) -> libc::c_short {
        match self.response {
            Some(_) => libc::POLLOUT,
            None => libc::POLLIN,
        }
    }
}

/// The side door's loop; runs for the life of the process.
fn serve(listener: TcpListener, site: Site) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        let now = Instant::now();
        conns.retain(|c| c.deadline > now);
        fds.clear();
        fds.push(pollfd(listener.as_raw_fd(), libc::POLLIN));
        fds.extend(
            conns
                .iter()
                .map(|c| pollfd(c.stream.as_raw_fd(), c.events())),
        );
        let timeout = conns
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .map_or(-1, |d| d.as_millis().min(60_000) as libc::c_int + 1);
        // SAFETY: `fds` is a live, initialised slice of pollfd structs and the count passed is
        // its length; poll(2) only writes their `revents` fields.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(error = %e, "http: poll failed");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let now = Instant::now();
        // Connections first (their indices match `fds[1..]`), then new ones.
        let mut i = 0;
        conns.retain_mut(|c| {
            let revents = fds[1 + i].revents;
            i += 1;
            if revents == 0 {
                return true;
            }
            if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return false;
            }
            match c.response {
                Some(_) => c.on_writable(),
                None => c.on_readable(&site, now),
            }
        });
        if fds[0].revents != 0 {
            accept(&listener, &mut conns, &site, now);
        }
    }
}

/// Takes every waiting connection, evicting the oldest still sending its request when the
/// side door is full.
fn accept(listener: &TcpListener, conns: &mut Vec<Conn>, site: &Site, now: Instant) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // E.g. out of file descriptors: let the backlog wait for a while.
                tracing::debug!(error = %e, "http: accept failed");
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        if conns.len() >= MAX_CONNECTIONS {
            let oldest = (conns.iter().enumerate())
                .filter(|(_, c)| c.response.is_none())
                .min_by_key(|(_, c)| c.deadline)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => drop(conns.swap_remove(i)),
                None => continue, // every slot is sending a response: drop the newcomer
            }
        }
        let mut conn = Conn {
            stream,
            head: Vec::new(),
            response: None,
            deadline: now + REQUEST_TIMEOUT,
        };
        // The request may already be there.
        if conn.on_readable(site, now) {
            conns.push(conn);
        }
    }
}

fn pollfd(fd: std::os::fd::RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::Arc;

    fn start_site() -> (SocketAddr, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(1));
        let site = Site {
            fingerprint: "f00d".into(),
            metrics: metrics.clone(),
        };
        let addr = start("127.0.0.1:0".parse().unwrap(), site).unwrap();
        (addr, metrics)
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_a_request_and_closes() {
        let (addr, _m) = start_site();
        let r = get(addr, b"GET /certificate.sha256 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nf00d"), "{r}");
        let r = get(addr, b"DELETE /health HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
        let r = get(addr, b"nonsense\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    }

    #[test]
    fn silent_clients_hold_no_one_up() {
        let (addr, metrics) = start_site();
        let _up = metrics.shard(0).running();
        // More silent clients than the side door holds, and one that trickles.
        let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS + 8)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GE").unwrap();
        let started = Instant::now();
        let r = get(addr, b"GET /health HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            started.elapsed() < REQUEST_TIMEOUT,
            "/health waited for the silent clients"
        );
        drop(silent);
    }

    #[test]
    fn an_oversized_head_is_refused() {
        let (addr, _m) = start_site();
        let mut req = b"GET /health HTTP/1.1\r\nX: ".to_vec();
        req.resize(request::MAX_HEAD + 100, b'a');
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&req);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    }
}
