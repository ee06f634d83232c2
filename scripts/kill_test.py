#!/usr/bin/env python3
"""Kill test: an import of 5,000 rows into the simulator is SIGKILLed at random moments and
resumed each time, until a run finishes; then the simulator's state is checked: exactly one
activity per valid row, no duplicates, every report id a live activity with the row's note.

Usage:  python3 scripts/kill_test.py [--rounds 20] [--rows 5000] [--seed 1]

Each round uses a fresh simulator (a separate process, with latency, jitter and a quota so that
calls are in flight when the kill lands) and a fresh ledger. Prints one line per round and a
total; exits 1 if any round lost or doubled a row. Python standard library only.
"""

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "lsq-sync")
GEN = os.path.join(ROOT, "target", "release", "examples", "gen_activities")
KEYS = {"LSQ_ACCESS_KEY": "kill-access", "LSQ_SECRET_KEY": "kill-secret"}


def get(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def one_round(work, data, rows, rng):
    env = dict(os.environ, **KEYS, RUST_LOG="error")
    env.pop("LSQ_CONFIG", None)
    sim = subprocess.Popen([BIN, "simulate", "--port", "0", "--rate", "100/1s", "--latency-ms", "40",
                            "--jitter-ms", "30", "--seed", str(rng.randrange(1 << 30))],
                           stdout=subprocess.PIPE, env=env, text=True)
    url = sim.stdout.readline().strip()
    report = os.path.join(work, "report.csv")
    for leftover in (report, report + ".ledger", report + ".ledger-wal", report + ".ledger-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    kills = 0
    try:
        while True:
            proc = subprocess.Popen([BIN, "import", data, "--out", report, "--host", url,
                                     "--rate", "100/1s"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + rng.uniform(0.05, 2.5)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is None and kills < 8:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"import exited {proc.returncode}:\n{err}")
            break
        activities = [a for a in get(url + "/_sim/activities") if a["created_by_request"] is not None]
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)

    per_note = {}
    for a in activities:
        per_note[a["note"]] = per_note.get(a["note"], 0) + 1
    by_id = {a["id"]: a["note"] for a in activities}
    with open(report, newline="") as f:
        report_rows = list(csv.DictReader(f))
    duplicates = sum(n - 1 for n in per_note.values() if n > 1)
    created = [r for r in report_rows if r["Status"] == "created"]
    mismatched = sum(1 for r in created if by_id.get(r["ProspectActivityId"]) != r["ActivityNote"])
    lost = rows - len(per_note)
    ok = (len(report_rows) == rows and len(created) == rows and duplicates == 0 and lost == 0
          and mismatched == 0)
    return ok, kills, len(activities), duplicates, lost, mismatched


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "lsq-sync",
                    "--example", "gen_activities"], cwd=ROOT, check=True)
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="lsq-kill-")
    data = os.path.join(work, "input.csv")
    subprocess.run([GEN, "--rows", str(args.rows), "--out", data, "--seed", str(args.seed),
                    "--numbered"], check=True)
    failures = 0
    total_kills = 0
    for n in range(1, args.rounds + 1):
        ok, kills, activities, duplicates, lost, mismatched = one_round(work, data, args.rows, rng)
        total_kills += kills
        failures += not ok
        print(f"round {n:2}: {'ok  ' if ok else 'FAIL'} kills {kills}, activities {activities}, "
              f"duplicates {duplicates}, lost {lost}, report ids not matching {mismatched}", flush=True)
    print(f"{args.rounds - failures} passed, {failures} failed ({total_kills} SIGKILLs in all)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
