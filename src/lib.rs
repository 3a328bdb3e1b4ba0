//! moqring: a thread-per-core Media-over-QUIC (moq-lite) relay on quiche and monoio.
//!
//! `wire`, `session` and `relay` are sans-IO: bytes, events and calls in, bytes and calls
//! out. `net` and `shard` own sockets, runtimes and threads; `client` holds the `pub` and
//! `sub` commands, `bench` the load generator. See DESIGN.md in the shared folder for the
//! architecture.

pub mod auth;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod config;
pub mod http;
pub mod log_limit;
pub mod metrics;
pub mod net;
pub mod relay;
pub mod session;
pub mod shard;
pub mod signals;
pub mod tls;
pub mod webtransport;
pub mod wire;
