// Reads a `moqring sub` output of `moqring bench` frames on stdin: fixed-size frames, each
// starting with the bench's 16-byte stamp (send time in ns since the UNIX epoch, then the
// frame index; little-endian u64s). Writes one line per frame to OUT, `SENT_NS LATENCY_US
// INDEX`, the latency being this reader's clock at the frame's arrival minus its stamp,
// and at EOF prints `frames=N bytes=B` on stdout.
// perf/cluster.sh builds it with plain rustc (no dependencies); sub and reader share the
// bench's clock (same machine).
// Usage: stamp_latency FRAME_SIZE OUT < frames
use std::io::{BufWriter, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [size, out] = &args[..] else {
        eprintln!("usage: stamp_latency FRAME_SIZE OUT < frames");
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("FRAME_SIZE: a number");
    assert!(size >= 16, "FRAME_SIZE below the 16-byte stamp");
    let mut out = BufWriter::new(std::fs::File::create(out).expect("creating OUT"));
    let mut input = std::io::stdin().lock();
    let mut frame = vec![0u8; size];
    let mut frames = 0u64;
    // A partial last frame (the sub was stopped mid-write) is not counted.
    while input.read_exact(&mut frame).is_ok() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let sent = u64::from_le_bytes(frame[..8].try_into().unwrap());
        let index = u64::from_le_bytes(frame[8..16].try_into().unwrap());
        writeln!(out, "{sent} {} {index}", now.saturating_sub(sent) / 1000).expect("writing OUT");
        frames += 1;
    }
    out.flush().expect("flushing OUT");
    println!("frames={frames} bytes={}", frames * size as u64);
}
