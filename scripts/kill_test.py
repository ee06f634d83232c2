#!/usr/bin/env python3
"""Kill test: an import of 3,000 rows at 50/1s into the simulator is SIGKILLed at random moments
(5 times by default) and resumed each time, until a run finishes; then the simulator's state is
checked: exactly one activity per valid row, no duplicates, every report id a live activity with
the row's note.

Usage:  python3 scripts/kill_test.py [--rounds 20] [--rows 3000] [--kills 5] [--seed 1]

Each round uses a fresh simulator (a separate process, with latency, jitter and a quota so that
calls are in flight when the kill lands) and a fresh ledger. Per round it also reports what
certainty cost (issue 13): the Get Activities calls of all the resumes against 2 x the distinct
leads of the batches truly sent before each kill, summed over the kills (read from the
simulator: the leads of the activities created by requests that arrived before the kill), and the final resume's time against
3 x the ideal time of the rows it still had to send + 10 s. Prints one line per round and a
total; exits 1 if any round lost or doubled a row or missed either bar. Python standard library
only.
"""

import argparse
import csv
import json
import os
import random
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
KEYS = {"LSQ_ACCESS_KEY": "kill-access", "LSQ_SECRET_KEY": "kill-secret"}


def get(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


RATE = "50/1s"
CALLS_PER_SECOND = 50.0


def one_round(work, data, rows, kills_wanted, rng):
    env = dict(os.environ, **KEYS, RUST_LOG="error")
    env.pop("LSQ_CONFIG", None)
    sim = subprocess.Popen([BIN, "simulate", "--port", "0", "--rate", RATE, "--latency-ms", "40",
                            "--jitter-ms", "30", "--seed", str(rng.randrange(1 << 30))],
                           stdout=subprocess.PIPE, env=env, text=True)
    url = sim.stdout.readline().strip()
    report = os.path.join(work, "report.csv")
    for leftover in (report, report + ".ledger", report + ".ledger-wal", report + ".ledger-shm"):
        if os.path.exists(leftover):
            os.remove(leftover)
    kills = 0
    starts = []  # where each process's requests start in the simulator's log
    final_elapsed, final_to_send = 0.0, 0
    try:
        while True:
            starts.append(get(url + "/_sim/stats")["requests"])
            started = time.monotonic()
            proc = subprocess.Popen([BIN, "import", data, "--out", report, "--host", url,
                                     "--rate", RATE], env=dict(env, RUST_LOG="lsq_sync=info"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + rng.uniform(0.2, 1.5)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if proc.poll() is None and kills < kills_wanted:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
            _, err = proc.communicate()
            final_elapsed = time.monotonic() - started
            if proc.returncode != 0:
                raise SystemExit(f"import exited {proc.returncode}:\n{err}")
            plan = re.search(r"plan: (\d+) rows to send", err)
            final_to_send = int(plan.group(1)) if plan else rows
            break
        activities = [a for a in get(url + "/_sim/activities") if a["created_by_request"] is not None]
        requests = get(url + "/_sim/requests")
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)

    def in_process(seq, i):
        return seq >= starts[i] and (i + 1 >= len(starts) or seq < starts[i + 1])

    # Per kill, the distinct leads of the batches truly sent before it (by that process or an
    # earlier one: a resume killed while checking leaves the same rows in flight for the next).
    leads_sent = 0
    for killed in range(kills):
        leads_sent += len({a["lead_id"] for a in activities
                           if a["created_by_request"] < starts[killed + 1]})
    # Both kinds of check read: of a lead (Retrieve) and of a code account-wide.
    lookups = sum(1 for r in requests
                  if r["path"].endswith(("/Retrieve", "/RetrieveByActivityEvent"))
                  and r["seq"] >= starts[1]) if len(starts) > 1 else 0
    final_ideal = -(-final_to_send // 25) / CALLS_PER_SECOND
    final_bound = 3 * final_ideal + 10.0
    cost = (lookups, leads_sent, final_elapsed, final_to_send, final_bound)

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
          and mismatched == 0 and lookups <= 2 * leads_sent and final_elapsed <= final_bound)
    return ok, kills, len(activities), duplicates, lost, mismatched, cost


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=5)
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
        ok, kills, activities, duplicates, lost, mismatched, cost = one_round(
            work, data, args.rows, args.kills, rng)
        lookups, leads_sent, final_elapsed, final_to_send, final_bound = cost
        total_kills += kills
        failures += not ok
        print(f"round {n:2}: {'ok  ' if ok else 'FAIL'} kills {kills}, activities {activities}, "
              f"duplicates {duplicates}, lost {lost}, report ids not matching {mismatched}, "
              f"resume lookups {lookups} (bar <= 2 x {leads_sent} leads sent = {2 * leads_sent}), "
              f"final resume {final_elapsed:.1f}s for {final_to_send} rows (bar {final_bound:.1f}s)",
              flush=True)
    print(f"{args.rounds - failures} passed, {failures} failed ({total_kills} SIGKILLs in all)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
