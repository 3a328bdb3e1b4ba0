//! Codec cost per frame: encoding and decoding a frame header and a group header, and
//! re-encoding a received frame for each protocol version (shared handles, no copy).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

use moqring::session::Frame;
use moqring::wire::{FrameHeader, GroupHeader, Message, Version};

fn frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    g.throughput(Throughput::Elements(1));
    let header = FrameHeader {
        timestamp: 123_456,
        size: 5000,
    };
    for v in Version::ALL {
        let mut buf = Vec::with_capacity(16);
        header.encode(&mut buf, v, 123_400);
        g.bench_function(format!("encode/{v}"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&header).encode(&mut buf, v, 123_400);
            })
        });
        g.bench_function(format!("decode/{v}"), |b| {
            b.iter(|| FrameHeader::decode(&mut black_box(&buf[..]), v, 123_400).unwrap())
        });
    }
    g.finish();
}

fn group_header(c: &mut Criterion) {
    let head = GroupHeader {
        subscribe: 3,
        sequence: 100_000,
    };
    let mut buf = Vec::with_capacity(16);
    head.encode(&mut buf, Version::Lite05);
    c.bench_function("group_header/decode", |b| {
        b.iter(|| GroupHeader::decode(&mut black_box(&buf[..]), Version::Lite05).unwrap())
    });
}

fn frame_for_version(c: &mut Criterion) {
    let frame = Frame::new(Bytes::from(vec![7u8; 5000]), 40, 0);
    let mut parts: Vec<Bytes> = Vec::with_capacity(3);
    for v in [Version::Lite05, Version::Lite03] {
        c.bench_function(&format!("frame_parts/{v}"), |b| {
            b.iter(|| {
                parts.clear();
                black_box(&frame).write_to(v, &mut parts);
            })
        });
    }
}

criterion_group!(benches, frame_header, group_header, frame_for_version);
criterion_main!(benches);
