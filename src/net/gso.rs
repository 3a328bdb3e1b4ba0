//! Outgoing packets gathered for batched sends: the packets of many connections leave in
//! one `sendmmsg`, each connection's consecutive full-size packets as one UDP GSO message.
//!
//! With `UDP_SEGMENT` set on the socket, the kernel cuts one large message into datagrams
//! of the segment size; only the last may be shorter. So a connection's packets are
//! appended to one message (a run) while each is exactly one segment long; a shorter
//! packet, another destination or a full run ends it. Without GSO every packet is its own
//! run. Packets are written by quiche straight into the batch's buffer, where they stay
//! until the batch is sent: no copy. This module only lays the bytes out; the syscall is
//! in `batch.rs`.

use std::net::SocketAddr;

/// Largest run: one GSO message must fit one IP datagram (64 KiB with headers).
pub const MAX_RUN: usize = 60_000;

/// Runs one batch holds at most (one `sendmmsg` call).
pub const MAX_RUNS: usize = 64;

/// One message: `len` bytes at `start` of the batch buffer, for `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: usize,
    pub len: usize,
    pub to: SocketAddr,
}

pub struct SendBatch {
    buf: Box<[u8]>,
    used: usize,
    runs: Vec<Run>,
    /// GSO segment size (`None`: one packet per run).
    segment: Option<usize>,
    /// Whether the last run may take more packets (all of its packets were full segments).
    open: bool,
}

impl SendBatch {
    /// A batch of `capacity` bytes (at least one packet: `segment`, or 1500 without GSO).
    pub fn new(capacity: usize, segment: Option<usize>) -> Self {
        let capacity = capacity.max(segment.unwrap_or(1500));
        Self {
            buf: vec![0u8; capacity].into_boxed_slice(),
            used: 0,
            runs: Vec::with_capacity(MAX_RUNS),
            segment,
            open: false,
        }
    }

    /// Room quiche gets for each packet.
    fn packet_room(&self) -> usize {
        self.segment.unwrap_or(1500)
    }

    /// Moves every packet `produce` yields into the batch, handing the batch to `send`
    /// whenever it is full (and clearing it after). `produce`
    /// writes one packet into the slice and returns its length and destination, or `None`
    /// when it has nothing more. Returns how many packets were produced.
    pub fn fill<E>(
        &mut self,
        mut produce: impl FnMut(&mut [u8]) -> Result<Option<(usize, SocketAddr)>, E>,
        send: &mut impl FnMut(&SendBatch),
    ) -> Result<usize, E> {
        let room = self.packet_room();
        let mut packets = 0;
        loop {
            if self.buf.len() - self.used < room || self.runs.len() == MAX_RUNS && !self.open {
                send(self);
                self.clear();
            }
            let start = self.used;
            let Some((n, to)) = produce(&mut self.buf[start..start + room])? else {
                break;
            };
            packets += 1;
            self.used += n;
            match self.runs.last_mut() {
                Some(run) if self.open && run.to == to && run.len + n <= MAX_RUN => {
                    run.len += n;
                }
                _ => {
                    if self.runs.len() == MAX_RUNS {
                        // The open run could not take this packet and no other fits:
                        // send what is there and start the next batch with it.
                        let moved = Run { start, len: n, to };
                        self.used = start;
                        send(self);
                        self.clear();
                        self.buf.copy_within(moved.start..moved.start + n, 0);
                        self.used = n;
                        self.runs.push(Run { start: 0, ..moved });
                    } else {
                        self.runs.push(Run { start, len: n, to });
                    }
                }
            }
            self.open = self.segment.is_some_and(|seg| n == seg);
        }
        // The next connection's packets never join this one's run.
        self.open = false;
        Ok(packets)
    }

    /// The messages waiting, with their bytes.
    pub fn runs(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.runs
            .iter()
            .map(|r| (&self.buf[r.start..r.start + r.len], r.to))
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Forgets the messages (after they were sent).
    pub fn clear(&mut self) {
        self.runs.clear();
        self.used = 0;
        self.open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Fills a batch of `capacity` bytes with one connection per entry of `conns` (packet
    /// sizes, all for that connection's own port), and returns every message sent, in
    /// order, as (bytes, destination), plus how many sends it took.
    fn sends(
        conns: &[&[usize]],
        segment: Option<usize>,
        capacity: usize,
    ) -> (Vec<(Vec<u8>, SocketAddr)>, usize) {
        let mut batch = SendBatch::new(capacity, segment);
        let mut out = Vec::new();
        let mut calls = 0;
        let mut send = |b: &SendBatch| {
            calls += 1;
            out.extend(b.runs().map(|(bytes, to)| (bytes.to_vec(), to)));
        };
        for (c, sizes) in conns.iter().enumerate() {
            let mut next = sizes.iter().enumerate();
            let to = addr(c as u16 + 1);
            batch
                .fill::<()>(
                    |slot| {
                        Ok(next.next().map(|(i, &n)| {
                            slot[..n].fill(i as u8);
                            (n, to)
                        }))
                    },
                    &mut send,
                )
                .unwrap();
        }
        if !batch.is_empty() {
            send(&batch);
            batch.clear();
        }
        (out, calls)
    }

    fn lens(sent: &[(Vec<u8>, SocketAddr)]) -> Vec<usize> {
        sent.iter().map(|(b, _)| b.len()).collect()
    }

    #[test]
    fn full_packets_share_a_message_and_a_short_one_ends_it() {
        let (sent, calls) = sends(&[&[100, 100, 100, 40, 100]], Some(100), 1000);
        assert_eq!(lens(&sent), vec![340, 100]);
        assert_eq!(calls, 1);
        // Bytes arrive in order, untouched: packet i is filled with i.
        let expected: Vec<u8> = [0u8, 1, 2]
            .iter()
            .flat_map(|&i| [i; 100])
            .chain([3u8; 40])
            .collect();
        assert_eq!(sent[0].0, expected);
        assert_eq!(sent[1].0, vec![4u8; 100]);
    }

    #[test]
    fn connections_share_one_send_but_never_a_message() {
        let (sent, calls) = sends(&[&[100, 100], &[100, 30], &[100]], Some(100), 10_000);
        assert_eq!(calls, 1, "one sendmmsg for all three connections");
        assert_eq!(lens(&sent), vec![200, 130, 100]);
        let dests: Vec<u16> = sent.iter().map(|(_, a)| a.port()).collect();
        assert_eq!(dests, vec![1, 2, 3]);
    }

    #[test]
    fn a_full_buffer_sends_and_starts_again() {
        let (sent, calls) = sends(&[&[100; 7]], Some(100), 300);
        assert_eq!(lens(&sent), vec![300, 300, 100]);
        assert_eq!(calls, 3);
    }

    #[test]
    fn without_gso_every_packet_is_a_message() {
        let (sent, calls) = sends(&[&[100, 100, 40]], None, 10_000);
        assert_eq!(lens(&sent), vec![100, 100, 40]);
        assert_eq!(calls, 1);
    }

    #[test]
    fn runs_never_exceed_one_ip_datagram() {
        let (sent, _) = sends(&[&[1350; 100]], Some(1350), 1 << 20);
        assert!(
            sent.iter()
                .all(|(b, _)| b.len() <= MAX_RUN && b.len() % 1350 == 0),
            "{:?}",
            lens(&sent)
        );
        assert_eq!(lens(&sent).iter().sum::<usize>(), 135_000);
    }

    #[test]
    fn more_connections_than_one_send_holds_take_several() {
        let conns: Vec<&[usize]> = vec![&[50]; MAX_RUNS * 2 + 1];
        let (sent, calls) = sends(&conns, Some(100), 1 << 20);
        assert_eq!(sent.len(), MAX_RUNS * 2 + 1);
        assert_eq!(calls, 3);
        let ports: Vec<u16> = sent.iter().map(|(_, a)| a.port()).collect();
        assert_eq!(ports, (1..=MAX_RUNS as u16 * 2 + 1).collect::<Vec<_>>());
    }

    #[test]
    fn a_packet_that_needs_a_new_run_in_a_full_batch_moves_to_the_next() {
        // MAX_RUNS - 1 single-packet connections, then one whose full packets overflow
        // its run: the overflow is the 65th run and must go in the next send, intact.
        let mut conns: Vec<Vec<usize>> = vec![vec![10]; MAX_RUNS - 1];
        conns.push(vec![100; MAX_RUN / 100 + 2]);
        let refs: Vec<&[usize]> = conns.iter().map(|c| c.as_slice()).collect();
        let (sent, calls) = sends(&refs, Some(100), 1 << 20);
        assert_eq!(calls, 2);
        let last = &sent[MAX_RUNS - 1..];
        assert_eq!(lens(last), vec![MAX_RUN, 200]);
        let n = MAX_RUN / 100;
        assert_eq!(
            last[1].0,
            [vec![n as u8; 100], vec![n as u8 + 1; 100]].concat()
        );
    }
}
