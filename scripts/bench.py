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
# latency seconds, what the issue asks of it.
SCENARIOS = [
    ("pace-300ms", 5000, ["--rate", "25/1s", "--latency-ms", "300"],
     ["--rate", "25/1s"], "demo", (25, 1.0), 0.300,
     "issue 2: <= 1.10 x 8 s, zero 429s"),
    ("pace-300ms-jitter", 5000, ["--rate", "25/1s", "--latency-ms", "300", "--jitter-ms", "100"],
     ["--rate", "25/1s"], "demo", (25, 1.0), 0.300,
     "issue 5.1: ratio >= 0.95, zero 429s"),
    ("million", 1_000_000, ["--rate", "none", "--accept-any-lead"],
     ["--rate", "1000000/1s"], "any", None, 0.0,
     "issue 2: peak RSS < 100 MB"),
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


def figure(stderr, label):
    for line in stderr.splitlines():
        if label in line:
            tail = line.split(label, 1)[1].strip()
            return int(tail.split()[0].rstrip(","))
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
        })
        if code not in (0, 1):
            print(stderr, file=sys.stderr)

    print(f"\nlsq-sync benchmark on {platform.node()}: {os.cpu_count()} cores, "
          f"{platform.machine()}, Python {platform.python_version()}")
    header = ("scenario", "rows", "created", "exit", "ideal s", "actual s", "ratio", "calls",
              "429s", "max/window", "rows/s", "peak MB", "goal")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows_out:
        cells = [r["scenario"], r["rows"], r["created"], r["exit"],
                 f"{r['ideal_s']:.2f}" if r["ideal_s"] else "-", f"{r['actual_s']:.2f}",
                 f"{r['ratio']:.3f}" if r["ratio"] else "-", r["calls"], r["429s"],
                 r["max_in_window"] if r["max_in_window"] is not None else "-",
                 f"{r['rows_per_s']:.0f}", f"{r['peak_mb']:.1f}", r["goal"]]
        print(" | ".join(str(c) for c in cells))


if __name__ == "__main__":
    main()
