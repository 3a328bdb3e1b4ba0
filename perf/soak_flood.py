#!/usr/bin/env python3
"""Handshake-flood helper for perf/soak.sh: valid QUIC client Initials that never answer.

Python's standard library has no AES-GCM, so the Initials are not built here: `capture`
listens on a UDP port of its own and keeps the first datagram of each client address
(point `moqring bench --subscribers N` at it: every connection is a fresh client with
its own connection IDs); `send` replays those datagrams to a relay from many loopback
source addresses at a paced rate for a burst, reading nothing back. Each captured
Initial is a distinct connection to the relay (its own destination connection ID) the
first time it arrives in a burst; repeats from other addresses are replays.

  soak_flood.py capture OUT_FILE PORT_FILE SECONDS
  soak_flood.py send HOST:PORT IN_FILE RATE_PER_S SECONDS [ADDRESSES]

The capture file is a sequence of datagrams, each a 2-byte big-endian length then the bytes.
`send` prints one line: `flood sent=N took=S initials=K addresses=A`.
"""

import socket
import struct
import sys
import time

# QUIC v1 long header, packet type Initial: first byte 0b11 00 xxxx.
LONG_HEADER_INITIAL = 0xC0
TYPE_MASK = 0xF0
# Clients pad Initials to at least this (RFC 9000, 14.1); relays ignore smaller ones.
MIN_INITIAL = 1200


def capture(out_path, port_path, seconds):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    with open(port_path, "w") as f:
        f.write(f"{sock.getsockname()[1]}\n")
    sock.settimeout(0.2)
    seen = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, addr = sock.recvfrom(65536)
        except socket.timeout:
            continue
        looks_initial = data and (data[0] & TYPE_MASK) == LONG_HEADER_INITIAL
        if addr not in seen and looks_initial and len(data) >= MIN_INITIAL:
            seen[addr] = data
    with open(out_path, "wb") as f:
        for data in seen.values():
            f.write(struct.pack(">H", len(data)))
            f.write(data)
    print(f"captured {len(seen)} initials")


def load(path):
    with open(path, "rb") as f:
        blob = f.read()
    out, i = [], 0
    while i + 2 <= len(blob):
        (n,) = struct.unpack(">H", blob[i : i + 2])
        out.append(blob[i + 2 : i + 2 + n])
        i += 2 + n
    return out


def send(target, in_path, rate, seconds, addresses):
    host, port = target.rsplit(":", 1)
    dest = (host, int(port))
    initials = load(in_path)
    if not initials:
        sys.exit("soak_flood.py: no captured initials to send")
    socks = []
    for i in range(addresses):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.0.{2 + i}", 0))
        s.setblocking(False)
        socks.append(s)
    start = time.monotonic()
    sent = 0
    # Sends in slices of 10 ms so the rate holds without a sleep per datagram.
    per_slice = max(1, int(rate / 100))
    while time.monotonic() - start < seconds:
        for _ in range(per_slice):
            sock = socks[sent % len(socks)]
            try:
                sock.sendto(initials[sent % len(initials)], dest)
            except BlockingIOError:
                pass  # a full socket buffer drops it, as a congested network would
            sent += 1
        due = start + sent / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    took = time.monotonic() - start
    print(f"flood sent={sent} took={took:.1f} initials={len(initials)} addresses={addresses}")


def main(argv):
    if len(argv) >= 5 and argv[1] == "capture":
        capture(argv[2], argv[3], float(argv[4]))
    elif len(argv) in (6, 7) and argv[1] == "send":
        addresses = int(argv[6]) if len(argv) == 7 else 64
        if not 1 <= addresses <= 250:
            sys.exit("soak_flood.py: ADDRESSES must be 1 to 250")
        send(argv[2], argv[3], float(argv[4]), float(argv[5]), addresses)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
