//! UDP sockets and QUIC transport settings; the only place that talks to the kernel's network.

pub mod batch;
pub mod gso;
pub mod quic;
pub mod steer;
pub mod udp;
