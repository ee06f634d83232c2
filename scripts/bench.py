#!/usr/bin/env python3
"""lsq-sync benchmark: runs import scenarios against the simulator in separate processes and
prints one table (scenario, rows, ideal time, actual time, ratio, calls, 429s, peak memory).

Usage:  python3 scripts/bench.py [--only NAME,NAME] [--keep DIR]

Each scenario starts `lsq-sync simulate` as its own process, runs `lsq-sync import` against it
as another, and measures the import process: wall time from spawn to exit, and peak RSS from
wait4(). The simulator's own counters (requests, 429s, most requests in any quota window) are
read from its /_sim/stats admin route. Python standard library only.

Ideal time = (calls - 1) x spacing of the quota + one round trip: the pacer lets the first call
go at once and each next one a window/CALLS later, and the last answer takes one latency.
The ratio is ideal / actual (1.0 is perfect). Both are measured in the same run, so a noisy
machine affects them alike.
"""

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "lsq-sync")
GEN = os.path.join(ROOT, "target", "release", "examples", "gen_activities")
KEYS = {"LSQ_ACCESS_KEY": "bench-access", "LSQ_SECRET_KEY": "bench-secret"}

# name, rows, simulator flags, import flags, data kind, (calls, window seconds) of the quota,
# latency seconds, what the issue asks of it. Data kinds: "demo" (demo leads), "any" (random
# lead ids), "numbered" (unique notes, so duplicates and losses can be counted on the server),
# "refused50" (numbered, every 50th row refused by the server).
SCENARIOS = [
    ("pace-300ms", 5000, ["--rate", "25/1s", "--latency-ms", "300"],
     ["--rate", "25/1s"], "demo", (25, 1.0), 0.300,
     "issue 2: <= 1.10 x 8 s, zero 429s"),
    ("pace-300ms-jitter", 5000, ["--rate", "25/1s", "--latency-ms", "300", "--jitter-ms", "100"],
     ["--rate", "25/1s"], "demo", (25, 1.0), 0.300,
     "issue 5.1: ratio >= 0.95, zero 429s"),
    ("pace-2s", 5000, ["--rate", "25/1s", "--latency-ms", "2000"],
     ["--rate", "25/1s"], "demo", (25, 1.0), 2.0,
     "issue 5.2: ratio >= 0.95, zero 429s"),
    ("shared-quota", 10000, ["--rate", "25/1s", "--latency-ms", "300", "--jitter-ms", "100",
                             "--background-load", "10"],
     ["--rate", "25/1s"], "demo", None, 0.300,
     "issue 5.3: 429s < 5% of calls, >= 85% of the 15 calls/s left"),
    ("lower-real-limit", 10000, ["--rate", "10/1s", "--latency-ms", "300", "--jitter-ms", "100"],
     ["--rate", "25/1s"], "demo", (10, 1.0), 0.300,
     "issue 5.4: 429s < 3% of calls after the first, >= 90% of 10 calls/s"),
    ("million", 1_000_000, ["--rate", "none", "--accept-any-lead"],
     ["--rate", "1000000/1s"], "any", None, 0.0,
     "issue 2: peak RSS < 100 MB"),
    ("faults", 5000, ["--rate", "none", "--commit-then-500", "0.05", "--commit-then-drop", "0.05",
                      "--fail-500", "0.10", "--drop-connection", "0.05", "--seed", "3"],
     ["--rate", "1000/1s", "--max-attempts", "20"], "numbered", None, 0.0,
     "issue 3: 0 duplicates, 0 lost"),
    ("whole-batch-2pct", 5000, ["--rate", "none", "--reject-mode", "batch"],
     ["--rate", "1000/1s"], "refused50", None, 0.0,
     "issue 3: good rows created, bad rows failed, ~10 extra calls per bad row"),
]


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "lsq-sync",
                    "--example", "gen_activities"], cwd=ROOT, check=True)


def generate(path, rows, kind):
    if os.path.exists(path):
        return
    args = [GEN, "--rows", str(rows), "--out", path]
    if kind == "any":
        args.append("--any-lead")
    if kind in ("numbered", "refused50"):
        args.append("--numbered")
    if kind == "refused50":
        args += ["--refused-every", "50"]
    subprocess.run(args, check=True)


def start_simulator(flags):
    env = dict(os.environ, **KEYS, RUST_LOG="warn")
    proc = subprocess.Popen([BIN, "simulate", "--port", "0", *flags], stdout=subprocess.PIPE,
                            env=env, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"simulator did not start: {url!r}")
    return proc, url


def sim_stats(url):
    with urllib.request.urlopen(url + "/_sim/stats", timeout=30) as response:
        return json.load(response)


def run_import(url, data, report, flags):
    # Each scenario is a first run: a ledger left by an earlier bench would make it a no-op.
    for leftover in (report, report + ".ledger", report + ".ledger-wal", report + ".ledger-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    env = dict(os.environ, **KEYS, LSQ_HOST=url, RUST_LOG="lsq_sync=warn")
    env.pop("LSQ_CONFIG", None)
    start = time.monotonic()
    proc = subprocess.Popen([BIN, "import", data, "--out", report, *flags], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, elapsed, usage.ru_maxrss / 1024.0, stderr


def server_check(url, data):
    """Duplicates and lost rows, counted on the server by each row's unique note."""
    with urllib.request.urlopen(url + "/_sim/activities", timeout=120) as response:
        activities = [a for a in json.load(response) if a["created_by_request"] is not None]
    per_note = {}
    for a in activities:
        per_note[a["note"]] = per_note.get(a["note"], 0) + 1
    with open(data, newline="") as f:
        expected = {r["ActivityNote"] for r in csv.DictReader(f)
                    if r["ActivityOwnerEmail"] != "former.employee@example.com"}
    duplicates = sum(n - 1 for n in per_note.values() if n > 1)
    lost = len(expected - set(per_note))
    return duplicates, lost


def figure(stderr, label):
    """The number after `label` in the import's summary (the last lines of stderr)."""
    for line in reversed(stderr.splitlines()):
        if label in line:
            tail = line.split(label, 1)[1].strip()
            try:
                return int(tail.split()[0].rstrip(",:"))
            except (IndexError, ValueError):
                continue
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--keep", help="folder for generated data (reused between runs)")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None

    build()
    work = args.keep or tempfile.mkdtemp(prefix="lsq-bench-")
    os.makedirs(work, exist_ok=True)
    rows_out = []
    for name, rows, sim_flags, import_flags, kind, quota, latency, goal in SCENARIOS:
        if wanted and name not in wanted:
            continue
        data = os.path.join(work, f"{kind}-{rows}.csv")
        generate(data, rows, kind)
        sim, url = start_simulator(sim_flags)
        try:
            code, elapsed, peak_mb, stderr = run_import(url, data, os.path.join(work, f"{name}.report.csv"), import_flags)
            stats = sim_stats(url)
            checked = server_check(url, data) if kind in ("numbered", "refused50") else None
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(timeout=30)
        calls = figure(stderr, "calls made") or stats["requests"]
        created = figure(stderr, "created")
        if quota:
            spacing = quota[1] / quota[0]
            ideal = (calls - 1) * spacing + latency
        else:
            ideal = None
        rows_out.append({
            "scenario": name, "rows": rows, "created": created, "exit": code,
            "ideal_s": ideal, "actual_s": elapsed,
            "ratio": (ideal / elapsed) if ideal else None,
            "calls": calls, "429s": stats["rate_limited"],
            "max_in_window": stats.get("max_requests_in_window"),
            "rows_per_s": rows / elapsed, "peak_mb": peak_mb, "goal": goal,
            "dup_lost": f"{checked[0]}/{checked[1]}" if checked else "-",
            "failed": figure(stderr, "failed"),
            "isolation": figure(stderr, "extra calls to isolate bad rows in refused batches"),
            "unknown": figure(stderr, "calls with unknown outcome"),
        })
        if code not in (0, 1):
            print(stderr, file=sys.stderr)

    print(f"\nlsq-sync benchmark on {platform.node()}: {os.cpu_count()} cores, "
          f"{platform.machine()}, Python {platform.python_version()}")
    header = ("scenario", "rows", "created", "failed", "exit", "ideal s", "actual s", "ratio",
              "calls", "429s", "max/window", "unknown-outcome calls", "isolation calls",
              "dup/lost", "rows/s", "peak MB", "goal")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows_out:
        cells = [r["scenario"], r["rows"], r["created"], r["failed"], r["exit"],
                 f"{r['ideal_s']:.2f}" if r["ideal_s"] else "-", f"{r['actual_s']:.2f}",
                 f"{r['ratio']:.3f}" if r["ratio"] else "-", r["calls"], r["429s"],
                 r["max_in_window"] if r["max_in_window"] is not None else "-",
                 r["unknown"] if r["unknown"] is not None else 0,
                 r["isolation"] if r["isolation"] is not None else 0, r["dup_lost"],
                 f"{r['rows_per_s']:.0f}", f"{r['peak_mb']:.1f}", r["goal"]]
        print(" | ".join(str(c) for c in cells))


if __name__ == "__main__":
    main()
