//! UDP GSO batching: a connection's consecutive full-size packets leave in one send.
//!
//! With `UDP_SEGMENT` set on the socket, the kernel cuts one large send into datagrams of
//! the segment size; only the last may be shorter. So packets are appended to a batch while
//! each is exactly one segment long; a shorter packet (or a full buffer, or another
//! destination) ends the batch. Without GSO every packet is its own batch.

use std::net::SocketAddr;

/// Largest GSO send: the whole batch must fit one IP datagram (64 KiB with headers).
pub const MAX_BATCH: usize = 60_000;

/// Moves every packet `produce` yields into `send`, batched by `segment` size (`None`: no
/// GSO, one packet per send). `produce` writes one packet into the slice and returns its
/// length and destination, or `None` when it has nothing more; `buf` holds the batch and
/// must be at least one segment long.
pub fn drain<E>(
    buf: &mut [u8],
    segment: Option<usize>,
    mut produce: impl FnMut(&mut [u8]) -> Result<Option<(usize, SocketAddr)>, E>,
    mut send: impl FnMut(&[u8], SocketAddr),
) -> Result<usize, E> {
    let limit = match segment {
        Some(seg) => buf.len().min(MAX_BATCH) / seg * seg,
        None => buf.len(),
    };
    let packet_room = segment.unwrap_or(limit);
    let mut batches = 0;
    let mut len = 0;
    let mut dest: Option<SocketAddr> = None;
    loop {
        if len > 0 && len + packet_room > limit {
            send(&buf[..len], dest.expect("set with len"));
            batches += 1;
            len = 0;
        }
        let Some((n, to)) = produce(&mut buf[len..len + packet_room])? else {
            break;
        };
        if len > 0 && dest != Some(to) {
            // Another destination: the batch so far leaves first.
            send(&buf[..len], dest.expect("set with len"));
            batches += 1;
            buf.copy_within(len..len + n, 0);
            len = 0;
        }
        dest = Some(to);
        len += n;
        if segment.is_none_or(|seg| n < seg) {
            send(&buf[..len], to);
            batches += 1;
            len = 0;
        }
    }
    if len > 0 {
        send(&buf[..len], dest.expect("set with len"));
        batches += 1;
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `drain` over packets of the given sizes and returns the sizes of the sends.
    fn sends(sizes: &[usize], segment: Option<usize>, buf_len: usize) -> Vec<usize> {
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut buf = vec![0u8; buf_len];
        let mut next = sizes.iter();
        let mut out = Vec::new();
        let produced: usize = sizes.iter().sum();
        drain::<()>(
            &mut buf,
            segment,
            |slot| {
                Ok(next.next().map(|&n| {
                    slot[..n].fill(n as u8);
                    (n, to)
                }))
            },
            |bytes, _| out.push(bytes.len()),
        )
        .unwrap();
        assert_eq!(out.iter().sum::<usize>(), produced, "every byte sent once");
        out
    }

    #[test]
    fn full_packets_share_a_send_and_a_short_one_ends_it() {
        assert_eq!(
            sends(&[100, 100, 100, 40, 100], Some(100), 1000),
            vec![340, 100]
        );
    }

    #[test]
    fn a_full_buffer_ends_the_batch() {
        assert_eq!(sends(&[100; 7], Some(100), 300), vec![300, 300, 100]);
    }

    #[test]
    fn without_gso_every_packet_is_a_send() {
        assert_eq!(sends(&[100, 100, 40], None, 1000), vec![100, 100, 40]);
    }

    #[test]
    fn batches_never_exceed_one_ip_datagram() {
        let out = sends(&[1350; 100], Some(1350), 200_000);
        assert!(
            out.iter().all(|&n| n <= MAX_BATCH && n % 1350 == 0),
            "{out:?}"
        );
    }

    #[test]
    fn a_new_destination_starts_a_new_batch() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut packets = vec![(10usize, a), (10, a), (10, b), (4, b)].into_iter();
        let mut buf = vec![0u8; 100];
        let mut out = Vec::new();
        drain::<()>(
            &mut buf,
            Some(10),
            |slot| {
                Ok(packets.next().map(|(n, to)| {
                    slot[..n].fill(to.port() as u8);
                    (n, to)
                }))
            },
            |bytes, to| out.push((bytes.to_vec(), to)),
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], (vec![1u8; 20], a));
        assert_eq!(out[1].1, b);
        assert_eq!(out[1].0, [vec![2u8; 10], vec![2u8; 4]].concat());
    }
}
