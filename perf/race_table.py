#!/usr/bin/env python3
"""Turns one perf/race.sh run directory (bench JSON reports and meta.env) into the
markdown section appended to perf/RESULTS.md: a table per scenario with every relay and
the ratio of moqring to the better moq-relay build, column by column.

Usage: perf/race_table.py perf/out/race-YYYYmmdd-HHMMSS
"""

import json
import pathlib
import re
import sys

RELAYS = ["moqring", "moq-relay", "moq-relay-io-uring"]


def load(run_dir):
    meta = {}
    for line in (run_dir / "meta.env").read_text().splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    reports = {}
    for path in sorted(run_dir.glob("*.json")):
        scenario, _, relay = path.stem.partition("__")
        try:
            reports[(scenario, relay)] = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
    return meta, reports


def relay_label(relay, meta):
    if relay == "moqring":
        args = meta.get("moqring_args", "").strip()
        return f"moqring{' `' + args + '`' if args else ''}"
    if relay == "moq-relay":
        return f"moq-relay {meta['moq_relay_version']}"
    return f"moq-relay {meta['moq_relay_version']} io-uring"


def gbits(r):
    return r["bytes_delivered"] * 8 / 1e9


def cpu_s(r):
    return (r.get("relay") or {}).get("cpu_s")


def cpu_per_gbit(r):
    c = cpu_s(r)
    return c / gbits(r) if c is not None and gbits(r) > 0 else None


def rss_mib(r):
    kib = (r.get("relay") or {}).get("peak_rss_kib")
    return kib / 1024 if kib is not None else None


def rss_per_sub(r):
    m = rss_mib(r)
    return m / r["subscribers"] if m is not None and r["subscribers"] else None


def cpu_percent(r):
    return (r.get("relay") or {}).get("cpu_percent")


def offered(r):
    return r["fps"] * r["duration_s"] * r["subscribers"]


def delivered_pct(r):
    o = offered(r)
    return 100 * r["frames_delivered"] / o if o else 0


def holds(r):
    return (
        r["frames_lost"] == 0
        and r["connections_failed"] == 0
        and r["subscribers_receiving"] == r["subscribers"]
        and r["frames_delivered"] >= 0.97 * offered(r)
    )


def fmt(v, spec, unit=""):
    return "n/a" if v is None else f"{v:{spec}}{unit}"


def ratio(ours, theirs):
    if ours is None or theirs is None or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def best(values, pick=min):
    values = [v for v in values if v is not None]
    return pick(values) if values else None


def latency(r):
    return f"{r['latency_ms']['p50']:.1f} / {r['latency_ms']['p99']:.1f} ms"


def load_rows(title, reports, scenarios, meta, out):
    """Fan-out style table: CPU per Gbit, RSS per subscriber, delivery, latency."""
    if not any(reports.get((scenario, relay)) for scenario, _ in scenarios for relay in RELAYS):
        return {}
    out.append(f"### {title}\n")
    out.append(
        "| load | relay | relay CPU | CPU s per Gbit | peak RSS | RSS per sub | "
        "delivered | lost | p50 / p99 |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    checks = {}
    for scenario, label in scenarios:
        rows = {relay: reports.get((scenario, relay)) for relay in RELAYS}
        if not any(rows.values()):
            continue
        for relay, r in rows.items():
            if r is None:
                continue
            out.append(
                f"| {label} | {relay_label(relay, meta)} | {fmt(cpu_percent(r), '.1f', ' %')} | "
                f"{fmt(cpu_per_gbit(r), '.2f')} | {fmt(rss_mib(r), '.1f', ' MiB')} | "
                f"{fmt(rss_per_sub(r), '.3f', ' MiB')} | {gbits(r) / r['duration_s']:.3f} Gbit/s "
                f"({delivered_pct(r):.1f} %) | {r['frames_lost']} | {latency(r)} |"
            )
        ours = rows["moqring"]
        theirs = [rows[x] for x in RELAYS[1:] if rows[x]]
        if ours and theirs:
            b_cpu = best(cpu_per_gbit(t) for t in theirs)
            b_rss = best(rss_per_sub(t) for t in theirs)
            b_p99 = best(t["latency_ms"]["p99"] for t in theirs)
            out.append(
                f"| {label} | **moqring / better moq-relay** | | "
                f"**{ratio(cpu_per_gbit(ours), b_cpu)}** | | **{ratio(rss_per_sub(ours), b_rss)}** | "
                f"| | p99 **{ratio(ours['latency_ms']['p99'], b_p99)}** |"
            )
            checks[scenario] = (ours, b_cpu, b_rss, b_p99)
    out.append("")
    return checks


def targets(checks, out):
    c = checks.get("fanout-300")
    if not c:
        return
    ours, b_cpu, b_rss, b_p99 = c
    cpu, rss = cpu_per_gbit(ours), rss_per_sub(ours)

    def verdict(ok):
        return "met" if ok else "**not met**"

    out.append("Targets at N=300 (issue 5):")
    if cpu is not None and b_cpu:
        out.append(
            f"relay CPU per delivered Gbit at most 1/3 of the better moq-relay build: "
            f"{ratio(cpu, b_cpu)}, {verdict(cpu <= b_cpu / 3)};"
        )
    if rss is not None and b_rss:
        out.append(
            f"RSS per subscriber at most 1/2: {ratio(rss, b_rss)}, {verdict(rss <= b_rss / 2)};"
        )
    if b_p99 is not None:
        p99 = ours["latency_ms"]["p99"]
        out.append(f"p99 no worse: {p99:.1f} vs {b_p99:.1f} ms, {verdict(p99 <= b_p99)};")
    out.append(f"zero frames lost: {ours['frames_lost']}, {verdict(ours['frames_lost'] == 0)}.")
    out.append("")


def throughput(reports, meta, out):
    by = {}
    for (scenario, relay), r in reports.items():
        m = re.fullmatch(r"throughput-(\d+)-([\d.]+)", scenario)
        if m:
            by.setdefault((int(m.group(1)), relay), []).append((float(m.group(2)), r))
    if not by:
        return
    out.append("### (b) throughput: 1 publisher, 16 KiB frames, 32 a group, highest rate held\n")
    out.append(
        "A rate is held when every subscriber receives, nothing is lost and at least 97 % "
        "of the offered frames arrive; offered rates double from the lowest until one is "
        "not held.\n"
    )
    out.append(
        "| subscribers | relay | held (offered per sub) | delivered | relay CPU | "
        "CPU s per Gbit | peak RSS | p50 / p99 | next rate |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for subs in sorted({s for s, _ in by}):
        held_rows = {}
        for relay in RELAYS:
            runs = sorted(by.get((subs, relay), []), key=lambda x: x[0])
            if not runs:
                continue
            held = [(rate, r) for rate, r in runs if holds(r)]
            failed = [(rate, r) for rate, r in runs if not holds(r)]
            nxt = (
                f"{failed[0][0]:g} Mbit/s: {delivered_pct(failed[0][1]):.0f} % delivered, "
                f"{failed[0][1]['frames_lost']} lost"
                if failed
                else "not tried"
            )
            if held:
                rate, r = held[-1]
                held_rows[relay] = r
                out.append(
                    f"| {subs} | {relay_label(relay, meta)} | {rate:g} Mbit/s | "
                    f"{gbits(r) / r['duration_s']:.2f} Gbit/s | {fmt(cpu_percent(r), '.1f', ' %')} | "
                    f"{fmt(cpu_per_gbit(r), '.2f')} | {fmt(rss_mib(r), '.1f', ' MiB')} | "
                    f"{latency(r)} | {nxt} |"
                )
            else:
                out.append(
                    f"| {subs} | {relay_label(relay, meta)} | none of the rates tried | | | | | | {nxt} |"
                )
        ours = held_rows.get("moqring")
        theirs = [held_rows[x] for x in RELAYS[1:] if x in held_rows]
        if ours and theirs:
            b_rate = best((gbits(t) / t["duration_s"] for t in theirs), max)
            b_cpu = best(cpu_per_gbit(t) for t in theirs)
            out.append(
                f"| {subs} | **moqring / better moq-relay** | | "
                f"**{ratio(gbits(ours) / ours['duration_s'], b_rate)}** | | "
                f"**{ratio(cpu_per_gbit(ours), b_cpu)}** | | | |"
            )
    out.append("")


def chat(reports, meta, out):
    rows = {relay: reports.get(("chat-300", relay)) for relay in RELAYS}
    if not any(rows.values()):
        return
    out.append("### (d) chat: 1 publisher, 100 messages/s of 100 B (a group each), 300 subscribers\n")
    out.append("| relay | relay CPU | CPU per delivered message | delivered | lost | p50 / p99 |")
    out.append("|---|---|---|---|---|---|")

    def per_msg(r):
        c = cpu_s(r)
        return 1e6 * c / r["frames_delivered"] if c is not None and r["frames_delivered"] else None

    for relay, r in rows.items():
        if r is None:
            continue
        out.append(
            f"| {relay_label(relay, meta)} | {fmt(cpu_percent(r), '.1f', ' %')} | "
            f"{fmt(per_msg(r), '.2f', ' us')} | {r['frames_delivered'] / r['duration_s']:.0f} msg/s "
            f"({delivered_pct(r):.1f} %) | {r['frames_lost']} | {latency(r)} |"
        )
    ours = rows["moqring"]
    theirs = [rows[x] for x in RELAYS[1:] if rows[x]]
    if ours and theirs:
        b = best(per_msg(t) for t in theirs)
        b_p99 = best(t["latency_ms"]["p99"] for t in theirs)
        out.append(
            f"| **moqring / better moq-relay** | | **{ratio(per_msg(ours), b)}** | | | "
            f"p99 **{ratio(ours['latency_ms']['p99'], b_p99)}** |"
        )
    out.append("")


def webtransport(reports, meta, out):
    """(e) the fan-out over WebTransport, and what it costs moqring over raw QUIC."""
    sizes = sorted(
        {int(s.split("-")[2]) for s, _ in reports if s.startswith("fanout-wt-")}
    )
    if not sizes:
        return
    load_rows(
        "(e) fan-out over WebTransport (https://): 1 publisher, 30 fps x 5000 B, "
        "60 frames a group",
        reports,
        [(f"fanout-wt-{n}", f"{n} subs") for n in sizes],
        meta,
        out,
    )
    lines = []
    for n in sizes:
        wt = reports.get((f"fanout-wt-{n}", "moqring"))
        raw = reports.get((f"fanout-{n}", "moqring"))
        a, b = (cpu_per_gbit(wt) if wt else None), (cpu_per_gbit(raw) if raw else None)
        if a and b:
            lines.append(
                f"- {n} subscribers: moqring CPU s per Gbit over WebTransport / over raw "
                f"QUIC = {a:.2f} / {b:.2f} = {a / b:.3f}"
            )
    if lines:
        out.append("WebTransport against raw QUIC, moqring, same run:\n")
        out.extend(lines)
        out.append("")


def main():
    run_dir = pathlib.Path(sys.argv[1])
    meta, reports = load(run_dir)
    mode = "quick" if meta.get("quick") == "1" else "full"
    out = [
        f"## Race: moqring vs moq-relay {meta['moq_relay_version']}, {meta['date']} ({mode})\n",
        f"Commit {meta['commit']}; {meta['machine']}.",
        f"Command: `{meta['command'].strip()}`.",
        f"Every run starts a fresh relay; `moqring bench` (moq-lite-05, "
        f"{meta['bench_threads']} thread(s)) loads it for {meta['duration']} s after "
        f"{meta['warmup']} s of warmup; relay CPUs {meta['relay_cpus']}, bench CPUs "
        f"{meta['bench_cpus']}. moq-relay io-uring runs with `{meta['moq_relay_fast_args']}`. "
        "Relay CPU is utime+stime over the window (100 % = one core); CPU s per Gbit is "
        "relay CPU seconds per Gbit of payload delivered; RSS per sub is peak RSS over "
        "subscribers. Ratios compare moqring with the better moq-relay build in each "
        "column (below 1 is better for moqring, except delivered rate).\n",
    ]
    fan = [(f"fanout-{n}", f"{n} subs") for n in (100, 300, 600, 1000)]
    checks = load_rows(
        "(a) fan-out: 1 publisher, 30 fps x 5000 B (1.2 Mbit/s), 60 frames a group",
        reports,
        fan,
        meta,
        out,
    )
    targets(checks, out)
    throughput(reports, meta, out)
    tracks = sorted(
        {s for s, _ in reports if s.startswith("tracks-")},
        key=lambda s: int(s.split("-")[1]),
    )
    load_rows(
        "(c) many tracks: publishers x 10 subscribers each, 30 fps x 5000 B",
        reports,
        [(s, f"{s.split('-')[1]} x 10") for s in tracks],
        meta,
        out,
    )
    chat(reports, meta, out)
    webtransport(reports, meta, out)
    print("\n".join(out).rstrip())


if __name__ == "__main__":
    main()
