#!/usr/bin/env python3
"""The verdict of a perf/soak.sh run: reads its output folder, prints a summary, writes
rss.svg (the relay's RSS and connections over time), and exits 1 when a check fails.

  soak_report.py OUT_DIR SECONDS SLOPE_MAX_KB_PER_MIN

Checks: the RSS slope (least squares over the second half of the run) is at most the
bound; every honest transfer was byte-exact; the live publishers ended as they were
made to; no client crashed or failed in a way the load does not explain; the relay
logged no ERROR and no WARN outside EXPECTED_WARNINGS; it answered /health with 200 at
the end and exited 0 on SIGTERM.
"""

import collections
import glob
import json
import os
import re
import statistics
import sys

# Warnings the load causes by design (README "Relay behaviour", "Loss and delay").
EXPECTED_WARNINGS = {
    # The slow subscriber: the relay resets its oldest groups (Lagged) or those past
    # their latency budget (Old).
    "subscriber cannot keep up",
}

# Why a subscriber of the live track may end on its own (exit 1), given the load: its
# publisher was killed or replaced (the track ends with an error), groups reset by the
# relay (the slow subscriber), or its output closed by the churn (a clean leave).
EXPECTED_SUB_ENDS = [
    r"track ended by the relay with error code",
    r"track ended but \d+ groups? (was|were) lost",
    r"writing output: Broken pipe",
]

# Exit statuses: 143 = ended by the SIGTERM the churn sends.
STOPPED = 143
KILLED = 137


def read_lines(path):
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        return []


def moqring_line(path):
    """The `moqring: ...` line a client prints when it fails, if any."""
    return next((l for l in read_lines(path) if l.startswith("moqring:")), "")


def slope_kb_per_min(points):
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mr = sum(r for _, r in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    cov = sum((t - mt) * (r - mr) for t, r in points)
    return 60.0 * cov / var if var else 0.0


def rss_section(out, secs, slope_max, fails, summary):
    rows = []
    for line in read_lines(os.path.join(out, "rss.csv"))[1:]:
        parts = line.split(",")
        try:
            rows.append((int(parts[0]), int(parts[1]), parts[2:]))
        except (ValueError, IndexError):
            continue
    if len(rows) < 4:
        fails.append(f"only {len(rows)} RSS samples")
        return rows
    points = [(t, r) for t, r, _ in rows]
    half = [(t, r) for t, r in points if t >= secs / 2]
    slope = slope_kb_per_min(half)
    rss = [r for _, r in points]
    summary.append(
        f"relay RSS: start {rss[0] / 1024:.1f} MiB, plateau (median of the second half) "
        f"{statistics.median(r for _, r in half) / 1024:.1f} MiB, peak "
        f"{max(rss) / 1024:.1f} MiB, end {rss[-1] / 1024:.1f} MiB; slope over the second "
        f"half {slope:+.1f} kB/min (bound {slope_max:g}), {len(rows)} samples"
    )
    if slope > slope_max:
        fails.append(f"RSS slope {slope:+.1f} kB/min over the second half exceeds {slope_max:g}")
    return rows


def clients_section(out, fails, summary):
    # Live publishers.
    ends = collections.Counter()
    for line in read_lines(os.path.join(out, "pubs.log")):
        n, how, rc = line.split()
        ends[how] += 1
        want = 0 if how == "clean" else KILLED
        if int(rc) != want:
            why = moqring_line(os.path.join(out, f"live-pub-{n}.log"))
            fails.append(f"live publisher {n} ({how}) exited {rc}: {why}")
    summary.append(
        f"live publishers: {ends['clean']} ended their track cleanly, {ends['killed']} killed"
    )
    # Churning subscribers.
    kinds = collections.Counter()
    got_bytes = 0
    churn = read_lines(os.path.join(out, "churn.log"))
    for line in churn:
        n, rc, size = line.split()
        rc = int(rc)
        got_bytes += int(size) > 0
        why = moqring_line(os.path.join(out, "churn", f"{n}.log"))
        if rc == STOPPED:
            kinds["left (SIGTERM)"] += 1
        elif rc == 0:
            kinds["track ended cleanly"] += 1
        elif rc == 1 and any(re.search(p, why) for p in EXPECTED_SUB_ENDS):
            kinds[re.sub(r"\d+", "N", why.split(";")[0])[:90]] += 1
        else:
            kinds[f"UNEXPECTED exit {rc}"] += 1
            fails.append(f"churn subscriber {n} exited {rc}: {why}")
    summary.append(
        f"churning subscribers: {len(churn)} ({got_bytes} received data): "
        + ", ".join(f"{v} {k}" for k, v in kinds.most_common())
    )
    # The slow subscriber.
    slow = read_lines(os.path.join(out, "slow.log"))
    lost = 0
    for line in slow:
        n, rc = line.split()
        why = moqring_line(os.path.join(out, f"slow-{n}.log"))
        m = re.search(r"track ended but (\d+) group", why)
        lost += int(m.group(1)) if m else 0
        if not (int(rc) == 0 or (int(rc) == 1 and any(re.search(p, why) for p in EXPECTED_SUB_ENDS))):
            fails.append(f"slow subscriber {n} exited {rc}: {why}")
    summary.append(f"slow subscriber: {len(slow)} runs ended, {lost} groups lost by them")
    # Honest transfers.
    honest = read_lines(os.path.join(out, "honest.log"))
    bad = [l for l in honest if " ok" not in l]
    summary.append(
        f"honest transfers: {len(honest) - len(bad)} of {len(honest)} byte-exact to both "
        f"subscribers"
    )
    if not honest:
        fails.append("no honest transfer finished")
    fails.extend(f"honest transfer {l}" for l in bad)


def flood_section(out, summary):
    sent = bursts = 0
    for line in read_lines(os.path.join(out, "flood.log")):
        m = re.search(r"sent=(\d+)", line)
        if m:
            sent += int(m.group(1))
            bursts += 1
    captured = " ".join(read_lines(os.path.join(out, "capture.log")))
    summary.append(f"floods: {bursts} bursts, {sent} Initials sent ({captured})")


def relay_section(out, fails, summary):
    levels = collections.Counter()
    messages = collections.Counter()
    for line in read_lines(os.path.join(out, "relay.log")):
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip():
                fails.append(f"relay: a line that is not JSON: {line[:200]}")
            continue
        level = entry.get("level", "?")
        levels[level] += 1
        if level in ("WARN", "ERROR"):
            message = entry.get("fields", {}).get("message", "")
            messages[(level, re.sub(r"\d+", "N", message)[:120])] += 1
    for (level, message), count in messages.most_common():
        expected = level == "WARN" and any(message.startswith(w) for w in EXPECTED_WARNINGS)
        tag = "expected" if expected else "UNEXPECTED"
        summary.append(f"relay {level} x{count} ({tag}): {message}")
        if not expected:
            fails.append(f"relay logged {level} x{count}: {message}")
    metrics = {}
    for line in read_lines(os.path.join(out, "metrics.end")):
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            metrics[parts[0]] = parts[1]
    keys = [
        "moqring_connections_accepted_total",
        "moqring_retries_sent_total",
        "moqring_handshakes_timed_out_total",
        'moqring_connections_refused_total{reason="handshakes"}',
        'moqring_connections_refused_total{reason="address"}',
        'moqring_groups_reset_total{reason="lagged"}',
        'moqring_groups_reset_total{reason="old"}',
        "moqring_connections_open",
    ]
    shown = [f"{k.replace('moqring_', '')}={metrics[k]}" for k in keys if k in metrics]
    summary.append("relay metrics at the end: " + " ".join(shown))
    hwm = " ".join(read_lines(os.path.join(out, "hwm.end"))).split()
    if len(hwm) >= 2:
        summary.append(f"relay VmHWM {int(hwm[1]) / 1024:.1f} MiB")
    health = " ".join(read_lines(os.path.join(out, "health.end"))).strip()
    if health != "200":
        fails.append(f"/health at the end answered {health or 'nothing'}")
    exit_line = " ".join(read_lines(os.path.join(out, "relay.exit"))).strip()
    summary.append(f"relay exit after SIGTERM: {exit_line or '?'}")
    if exit_line != "0":
        fails.append(f"relay exit: {exit_line or 'unknown'}")


def svg(out, rows, secs):
    """rss.svg: RSS (MiB, left axis) and open connections (right axis) per second."""
    if not rows:
        return
    w, h, left, right, top, bottom = 720, 300, 60, 60, 20, 40
    pw, ph = w - left - right, h - top - bottom
    t_max = max(secs, rows[-1][0], 1)
    rss = [(t, r / 1024) for t, r, _ in rows]
    conns = []
    for t, _, rest in rows:
        try:
            conns.append((t, float(rest[0])))
        except (ValueError, IndexError):
            pass
    r_max = max(r for _, r in rss) * 1.15 or 1
    c_max = max((c for _, c in conns), default=1) * 1.15 or 1

    def x(t):
        return left + pw * t / t_max

    def path(points, vmax):
        return " ".join(
            f"{'M' if i == 0 else 'L'}{x(t):.1f},{top + ph * (1 - v / vmax):.1f}"
            for i, (t, v) in enumerate(points)
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
        f'<rect x="{x(secs / 2):.1f}" y="{top}" width="{x(t_max) - x(secs / 2):.1f}" '
        f'height="{ph}" fill="#f3f3f3"/>',
        f'<path d="{path(conns, c_max)}" fill="none" stroke="#e08030" stroke-width="1"/>',
        f'<path d="{path(rss, r_max)}" fill="none" stroke="#2060c0" stroke-width="1.5"/>',
    ]
    for i in range(6):
        y = top + ph * (1 - i / 5)
        parts.append(
            f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{r_max * i / 5:.0f}</text>'
        )
        parts.append(
            f'<text x="{w - right + 5}" y="{y + 4:.1f}">{c_max * i / 5:.0f}</text>'
        )
        t = t_max * i / 5
        parts.append(
            f'<text x="{x(t):.1f}" y="{h - bottom + 15}" text-anchor="middle">{t:.0f}</text>'
        )
    parts += [
        f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">seconds '
        f"(shaded: the second half, where the slope is fitted)</text>",
        f'<text x="{left}" y="{top - 6}" fill="#2060c0">relay RSS, MiB</text>',
        f'<text x="{w - right}" y="{top - 6}" text-anchor="end" fill="#e08030">'
        f"connections open</text>",
        "</svg>",
    ]
    with open(os.path.join(out, "rss.svg"), "w") as f:
        f.write("\n".join(parts) + "\n")


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    out, secs, slope_max = argv[1], float(argv[2]), float(argv[3])
    fails, summary = [], []
    rows = rss_section(out, secs, slope_max, fails, summary)
    clients_section(out, fails, summary)
    flood_section(out, summary)
    relay_section(out, fails, summary)
    svg(out, rows, secs)
    leftovers = glob.glob(os.path.join(out, "honest", "*"))
    if leftovers:
        summary.append(f"kept for inspection: {len(leftovers)} failed transfer folders")
    print("\n".join(summary))
    if fails:
        print("SOAK FAILED:\n  " + "\n  ".join(fails))
        return 1
    print("SOAK PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
