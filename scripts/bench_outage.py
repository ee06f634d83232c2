#!/usr/bin/env python3
"""lsq-sync outage benchmark (issue 13): imports into a simulator that stages an API outage, and
prints one table (scenario, exit, time against the bar, duplicates, lost, lookups against the
leads in doubt, most requests in one quota window).

Usage:  python3 scripts/bench_outage.py [--only NAME,NAME] [--keep DIR]

Each scenario starts `lsq-sync simulate` as its own process with an outage timed from the first
API request (`--outage KIND --outage-after 2s --outage-for 60s`), runs `lsq-sync import` against
it as another, and reads the simulator's /_sim admin routes afterwards: activities (duplicates
and losses, counted by each row's unique note), requests (the checks' reads, of leads and
account-wide) and stats (the most requests in any window of the quota's length, which must stay
<= the quota).

Ideal time = calls / quota rate + one round trip, as in bench.py. The leads in doubt are the
distinct leads of the batches whose outcome was unknown, as the import logs them when it checks
them ("checked what the server created ... leads=N"). The patience scenario stops the import
with --outage-patience 10s inside a 60 s outage (exit 3, report complete), ends the outage
through /_sim/outage?end=1 and resumes. Python standard library only.
"""

import argparse
import csv
import json
import os
import re
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

ROWS = 3000
RATE = "25/1s"
LATENCY_MS = 50
OUTAGE_AFTER = "2s"
OUTAGE_FOR = 60.0

# name, outage kind, extra simulator flags, extra import flags, the bar
SCENARIOS = [
    ("outage-500", "500", [], [],
     "exit 0, 0 dup, 0 lost, time <= ideal + 60 s + 10 s, lookups <= leads in doubt"),
    ("outage-refused", "refused", [], [],
     "exit 0, 0 dup, 0 lost, time <= ideal + 60 s + 10 s, lookups <= leads in doubt"),
    ("outage-reset", "reset", [], [],
     "exit 0, 0 dup, 0 lost, time <= ideal + 60 s + 10 s, lookups <= leads in doubt"),
    ("outage-500-history", "500", ["--seed-activities", "2000"], [],
     "as outage-500 with 2,000 activities per lead (lookups page): exit 0, 0 dup, 0 lost"),
    ("patience", "500", [], ["--outage-patience", "10s"],
     "exit 3 and a complete report, then the resume: exit 0, 0 dup, 0 lost"),
]


def get(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def start_simulator(kind, flags):
    env = dict(os.environ, **KEYS, RUST_LOG="warn")
    proc = subprocess.Popen([BIN, "simulate", "--port", "0", "--rate", RATE,
                             "--latency-ms", str(LATENCY_MS), "--outage", kind,
                             "--outage-after", OUTAGE_AFTER, "--outage-for", f"{int(OUTAGE_FOR)}s",
                             *flags], stdout=subprocess.PIPE, env=env, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"simulator did not start: {url!r}")
    return proc, url


def run_import(url, data, report, flags):
    env = dict(os.environ, **KEYS, LSQ_HOST=url, RUST_LOG="lsq_sync=info")
    env.pop("LSQ_CONFIG", None)
    start = time.monotonic()
    proc = subprocess.run([BIN, "import", data, "--out", report, "--rate", RATE, *flags], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc.returncode, time.monotonic() - start, proc.stderr


def leads_in_doubt(stderr):
    return sum(int(m) for m in re.findall(r"checked what the server created .*?leads=(\d+)", stderr))


def server_counts(url, rows):
    activities = [a for a in get(url + "/_sim/activities") if a["created_by_request"] is not None]
    per_note = {}
    for a in activities:
        per_note[a["note"]] = per_note.get(a["note"], 0) + 1
    duplicates = sum(n - 1 for n in per_note.values() if n > 1)
    lost = rows - len(per_note)
    # Checks read leads (Retrieve) or a code's activities account-wide (RetrieveByActivityEvent).
    lookups = sum(1 for r in get(url + "/_sim/requests")
                  if r["path"].endswith(("/Retrieve", "/RetrieveByActivityEvent")))
    return duplicates, lost, lookups, get(url + "/_sim/stats")["max_requests_in_window"]


def one(name, kind, sim_flags, import_flags, data, work):
    report = os.path.join(work, f"{name}.report.csv")
    for leftover in (report, report + ".ledger", report + ".ledger-wal", report + ".ledger-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    sim, url = start_simulator(kind, sim_flags)
    try:
        code, elapsed, stderr = run_import(url, data, report, import_flags)
        notes = []
        if name == "patience":
            with open(report, newline="") as f:
                reported = sum(1 for _ in csv.DictReader(f))
            ok_first = code == 3 and reported == ROWS
            notes.append(f"first run exit {code} after {elapsed:.1f}s, report rows {reported}")
            get(url + "/_sim/outage?end=1")
            code, elapsed2, stderr2 = run_import(url, data, report, [])
            notes.append(f"resume exit {code} in {elapsed2:.1f}s")
            stderr += stderr2
            elapsed += elapsed2
        duplicates, lost, lookups, max_window = server_counts(url, ROWS)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)
    calls = -(-ROWS // 25)
    ideal = calls / 25.0 + LATENCY_MS / 1000.0
    bound = ideal + OUTAGE_FOR + 10.0
    doubt = leads_in_doubt(stderr)
    outage_line = re.search(r"the API answers again after ([\d.]+)s", stderr)
    if outage_line:
        notes.append(f"outage seen {outage_line.group(1)}s")
    if "cost" in stderr and "more than the" in stderr:
        notes.append("log says a lookup cost more than re-sending")
    quota_ok = max_window is not None and max_window <= 25
    if name == "patience":
        ok = ok_first and code == 0 and duplicates == 0 and lost == 0 and quota_ok
    elif name.endswith("history"):
        ok = code == 0 and duplicates == 0 and lost == 0 and quota_ok
    else:
        ok = (code == 0 and duplicates == 0 and lost == 0 and elapsed <= bound
              and lookups <= doubt and quota_ok)
    return {
        "name": name, "exit": code, "elapsed": elapsed, "ideal": ideal, "bound": bound,
        "duplicates": duplicates, "lost": lost, "lookups": lookups, "doubt": doubt,
        "max_window": max_window, "ok": ok, "notes": "; ".join(notes),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="")
    parser.add_argument("--keep", default="")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "lsq-sync",
                    "--example", "gen_activities"], cwd=ROOT, check=True)
    work = args.keep or tempfile.mkdtemp(prefix="lsq-outage-")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, f"numbered-{ROWS}.csv")
    if not os.path.exists(data):
        subprocess.run([GEN, "--rows", str(ROWS), "--out", data, "--numbered", "--seed", "13"],
                       check=True)
    only = set(filter(None, args.only.split(",")))
    print(f"{ROWS} rows at {RATE}, simulator latency {LATENCY_MS} ms, outage {OUTAGE_FOR:.0f} s "
          f"starting {OUTAGE_AFTER} after the first request")
    print(f"{'scenario':20} {'exit':>4} {'time':>7} {'bar':>7} {'dup':>4} {'lost':>4} "
          f"{'lookups':>7} {'in doubt':>8} {'max/win':>7}  result")
    failures = 0
    for name, kind, sim_flags, import_flags, bar in SCENARIOS:
        if only and name not in only:
            continue
        r = one(name, kind, sim_flags, import_flags, data, work)
        failures += not r["ok"]
        print(f"{r['name']:20} {r['exit']:>4} {r['elapsed']:>6.1f}s {r['bound']:>6.1f}s "
              f"{r['duplicates']:>4} {r['lost']:>4} {r['lookups']:>7} {r['doubt']:>8} "
              f"{r['max_window']!s:>7}  {'PASS' if r['ok'] else 'FAIL'}  ({bar}) {r['notes']}",
              flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
