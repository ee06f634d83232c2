#!/usr/bin/env python3
"""lsq-sync keyed sync benchmark (issue 24): runs nights of `lsq-sync import --key CallId`
against the simulator in separate processes, checks the account after each, and prints one
table (scenario, the night's counts, bulk calls, reads, exit, time, CPU, memory, PASS/FAIL).

Usage:  python3 scripts/bench_sync.py [--only NAME,NAME] [--keep DIR] [--json FILE]
        python3 scripts/bench_sync.py --median RUN1.json RUN2.json RUN3.json

Every scenario starts its own `lsq-sync simulate` (a free port, `--port 0`) and runs each night
as its own `lsq-sync import` process with its own ledger, in a fresh folder. The data is
`gen_activities --rows N --numbered` (the simulator's 50 demo leads, codes 201..205, valid
fields, a unique note per row) with a `CallId` key column (`C-000001`...) added here. Night 2
of bars 1, 2 and 4 is night 1's source with five disjoint groups of rows changed: 60 notes
edited (" (edited)" appended), 40 custom field values edited (the row's first filled
mx_Custom_N gets "-v2"), 100 rows added (copies of existing rows with a new key `N-000001`...,
a unique note and a date in 2025), 30 rows removed, 5 rows moved to another demo lead.

After each night the account is read back (`/_sim/activities`, `/_sim/requests`): updated rows
kept night 1's ProspectActivityId and the account holds their new note and fields (one Bulk
Update applied to each, none to the others); every key the sync knows has exactly one live
activity created by the tool (live tool-created activities = the ids in the reports, nothing
more); bulk calls are counted by path among the night's own requests. Wall time is from spawn
to exit, CPU is the process's user+sys and peak memory its max RSS (wait4). Bar 5's ideal =
the fewest calls the changed rows need (ceil(changed / 25)) / the rate (25/5s) + one round trip
(bench.py's definition); ratio = ideal / actual, in the same run.

Scenarios (`--only` takes names or prefixes: `sync-6` runs every sync-6-*):
  sync-1          bar 1: the changed night, keys from the ledger
  sync-2          bar 2: the same with --delete-missing --yes beside 40 foreign activities; then
                  a source missing 40% of its keys (exit 2, no call)
  sync-3          bar 3: 3,000 rows, nothing changed (and sync-3-100k: 100,000 rows, informative,
                  run inside sync-5)
  sync-4          bar 4: --key-field mx_Custom_50 from night 1, the ledger deleted before night 2
  sync-5          bar 5: 100,000 keyed rows, 1% of the notes edited, at --rate 25/5s
  sync-6-call     bar 6: ~100 updates, simulator --update-answer call
  sync-6-row      bar 6: ~100 updates, simulator --update-answer row
  sync-6-kill-N   bar 6: every note of 3,000 edited + 100 new rows, at 25/1s (simulator 25/1s,
                  30 ms latency), SIGKILL once the simulator has logged N Bulk Update requests of
                  the night (N = 15, 25, 40), then the same command again to completion;
                  sync-6-kill-add-2 the same, killed once 2 bulk creates are logged (the new
                  rows come last in the input, so after every update)

`--json FILE` writes the results; `--median` reads three such files and prints the table of
medians (each figure the median of the runs; a check failed in any run is listed). Python
standard library only; the helpers are bench.py's.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing bench.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BIN, GEN, KEYS, build, sim_stats, start_simulator  # noqa: E402

BULK_ADD = "/v2/ProspectActivity.svc/Bulk/CustomActivity/Add/ByLeadId"
BULK_UPDATE = "/v2/ProspectActivity.svc/Bulk/CustomActivity/Update"
BY_EVENT = "/v2/ProspectActivity.svc/CustomActivity/RetrieveByActivityEvent"
RETRIEVE = "/v2/ProspectActivity.svc/Retrieve"
DELETE = "/v2/ProspectActivity.svc/DeleteActivities"
BULK_PATHS = (BULK_ADD, BULK_UPDATE)
FIELDS = [f"mx_Custom_{i}" for i in range(1, 7)]
KEY_FIELD = "mx_Custom_50"
BASE_ROWS = 3000
BIG_ROWS = 100_000
# (scenario suffix, the request path counted, how many of them are logged when it is killed)
KILL_POINTS = (("15", "update", 15), ("25", "update", 25), ("40", "update", 40),
               ("add-2", "add", 2))

SCENARIOS = [
    ("sync-1", "bar 1: 100 created, 100 updated in place, 5 conflicts, 2,865 unchanged, "
               "no duplicate, <= 10 bulk calls"),
    ("sync-2", "bar 2: the 30 deleted, foreign activities untouched; 40% missing: exit 2, "
               "nothing deleted or sent"),
    ("sync-3", "bar 3: no bulk call, exit 0, 3,000 rows in well under 1 s of CPU (< 0.5 s)"),
    ("sync-3-100k", "informative (bar 3 at 100,000 rows): no bulk call, exit 0"),
    ("sync-4", "bar 4: as bar 1 without the ledger, reads < the input's lead/code pairs"),
    ("sync-5", "bar 5: calls = ceil(1,000 / 25) = 40, ratio ideal/actual >= 1/1.1"),
    ("sync-6-call", "bar 6: Bulk Update answered per call: every update applied once"),
    ("sync-6-row", "bar 6: Bulk Update answered per row: every update applied once"),
] + [
    (f"sync-6-kill-{suffix}", f"bar 6: SIGKILL after {n} {what} calls, resume: every update "
                              "applied once, no create doubled")
    for suffix, what, n in KILL_POINTS
]


class BenchError(Exception):
    """A scenario could not be run (not a bar missed: that is a FAIL in the table)."""


# ---------------------------------------------------------------------------------------------
# Data


def generate(path, rows, seed=42):
    if not os.path.exists(path):
        subprocess.run([GEN, "--rows", str(rows), "--numbered", "--seed", str(seed),
                        "--out", path], check=True)


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def keyed_source(data_dir, rows):
    """`rows` generated rows with a CallId key column first: (header, rows)."""
    raw = os.path.join(data_dir, f"numbered-{rows}.csv")
    generate(raw, rows)
    header, body = read_csv(raw)
    for i, row in enumerate(body, 1):
        row["CallId"] = f"C-{i:06d}"
    return ["CallId"] + header, body


def copy_rows(rows):
    return [dict(r) for r in rows]


def first_field(row):
    return next((f for f in FIELDS if row.get(f)), None)


def changed_night(rows, seed=24):
    """Bar 1's second night: (rows, groups) with groups = keys by change."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    notes, rest = order[:60], order[60:]
    fields = [i for i in rest if first_field(rows[i])][:40]
    taken = set(fields)
    rest = [i for i in rest if i not in taken]
    removed, moved = rest[:30], rest[30:35]
    leads = sorted({r["RelatedProspectId"] for r in rows})
    out = copy_rows(rows)
    for i in notes:
        out[i]["ActivityNote"] += " (edited)"
    for i in fields:
        out[i][first_field(out[i])] += "-v2"
    for i in moved:
        lead = out[i]["RelatedProspectId"]
        out[i]["RelatedProspectId"] = leads[(leads.index(lead) + 1) % len(leads)]
    gone = {rows[i]["CallId"] for i in removed}
    out = [r for r in out if r["CallId"] not in gone]
    start = datetime.datetime(2025, 1, 1)
    for n, i in enumerate(rng.sample(range(len(rows)), 100), 1):
        new = dict(rows[i])
        new["CallId"] = f"N-{n:06d}"
        new["ActivityNote"] = f"{rows[i]['ActivityNote']} (new {n})"
        new["ActivityDateTime"] = (start + datetime.timedelta(minutes=n)).strftime(
            "%Y-%m-%d %H:%M:%S")
        out.append(new)
    key = lambda idx: {rows[i]["CallId"] for i in idx}  # noqa: E731
    groups = {"notes": key(notes), "fields": key(fields), "removed": gone, "moved": key(moved),
              "added": {f"N-{n:06d}" for n in range(1, 101)}}
    return out, groups


# ---------------------------------------------------------------------------------------------
# Processes and the simulator


def get_json(url, route, timeout=300):
    try:
        with urllib.request.urlopen(url + route, timeout=timeout) as response:
            return json.load(response)
    except OSError as e:
        raise BenchError(f"simulator {url}{route}: {e}") from e


def seconds(value):
    """A serde Duration ({secs, nanos}) or a number, in seconds."""
    if isinstance(value, dict):
        return value.get("secs", 0) + value.get("nanos", 0) / 1e9
    return float(value or 0)


class Sim:
    """One `lsq-sync simulate` process; stopped by `close`."""

    def __init__(self, flags):
        self.flags = flags
        self.proc, self.url = start_simulator(flags)
        self.started = time.monotonic()  # about the simulator's clock's zero (`at` counts from)

    def requests(self, since=0):
        return [r for r in get_json(self.url, "/_sim/requests") if r["seq"] >= since]

    def count(self):
        return sim_stats(self.url)["requests"]

    def activities(self):
        return get_json(self.url, "/_sim/activities")

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Folder:
    """A sync's folder: its ledger, reports and inputs across nights."""

    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        self.nights = 0

    def path(self, name):
        return os.path.join(self.dir, name)

    def remove_ledger(self, name="sync.ledger"):
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(self.path(name + suffix)):
                os.remove(self.path(name + suffix))


def lsq_env(url):
    env = dict(os.environ, **KEYS, LSQ_HOST=url, RUST_LOG="lsq_sync=warn")
    for name in ("LSQ_CONFIG", "LSQ_MAX_INVALID", "LSQ_NOTIFY_URL", "LSQ_METRICS_FILE"):
        env.pop(name, None)
    return env


def import_args(folder, source, report, flags, ledger="sync.ledger", key=True):
    args = [BIN, "import", source, "--out", report, "--ledger", folder.path(ledger),
            "--summary-json", report + ".summary.json"]
    if key:
        args += ["--key", "CallId"]
    return args + flags


# Peak memory goes through GNU time: a child's max RSS on Linux includes what its parent held
# when it forked (exec keeps the old address space's high-water mark), and this script holds
# hundreds of MB once it has read 100,000 activities back, so wait4() on a direct child would
# report Python's memory, not lsq-sync's. GNU time is small; its child's figure is lsq-sync's.
TIME = "/usr/bin/time"
RUN_TIMEOUT_S = 600


def spawn(args, url, cwd, measured=True):
    """Starts lsq-sync; `measured` runs it under GNU time (not when it is to be SIGKILLed: the
    signal would reach time, not lsq-sync)."""
    usage = None
    if measured and os.access(TIME, os.X_OK):
        fd, usage = tempfile.mkstemp(prefix="lsq-bench-usage-")
        os.close(fd)
        args = [TIME, "-q", "-o", usage, "-f", "%M %U %S", *args]
    proc = subprocess.Popen(args, env=lsq_env(url), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    proc.usage_file = usage
    # A run that hangs is killed (its own process group: time and lsq-sync) and fails loudly.
    proc.watchdog = threading.Timer(RUN_TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
    proc.watchdog.daemon = True
    proc.watchdog.start()
    return proc


def finish(proc, start):
    """Waits for `proc`: exit code, wall s, CPU s (user+sys), peak MB, stderr."""
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if wall >= RUN_TIMEOUT_S:
        raise BenchError(f"lsq-sync did not finish in {RUN_TIMEOUT_S} s, killed:\n{stderr}")
    run = {"exit": proc.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
           "peak_mb": None, "stderr": stderr}
    if proc.usage_file:
        with open(proc.usage_file) as f:
            lines = f.read().split("\n")
        os.remove(proc.usage_file)
        # GNU time adds "Command exited with non-zero status N" before the figures.
        figures = [line for line in lines if line and line[0].isdigit()]
        if figures:
            kb, user, system = figures[-1].split()
            run.update(peak_mb=int(kb) / 1024.0, cpu_s=float(user) + float(system))
    elif not os.access(TIME, os.X_OK):
        # No GNU time: wait4's figure, which counts this script's RSS at the fork too.
        run["peak_mb"] = usage.ru_maxrss / 1024.0
    return run


def night(sim, folder, header, rows, flags, ledger="sync.ledger", key=True, label=None):
    """One import over `rows`: the run's figures, its report rows, summary and requests."""
    folder.nights += 1
    label = label or f"night{folder.nights}"
    source, report = folder.path(f"{label}.csv"), folder.path(f"{label}.report.csv")
    write_csv(source, header, rows)
    before = sim.count()
    if os.path.exists(report):
        os.remove(report)
    os.sync()
    start = time.monotonic()
    proc = spawn(import_args(folder, source, report, flags, ledger, key), sim.url, folder.dir)
    run = finish(proc, start)
    run["spawned_at"] = start - sim.started  # on the simulator's clock, give or take a ms
    run["before"] = before
    run["requests"] = sim.requests(before)
    run["report"] = read_csv(report)[1] if os.path.exists(report) else []
    summary = report + ".summary.json"
    run["summary"] = json.load(open(summary)) if os.path.exists(summary) else {}
    if run["exit"] not in (0, 1, 2):
        raise BenchError(f"{label}: lsq-sync exited {run['exit']}:\n{run['stderr']}")
    return run


def by_path(requests):
    counts = {}
    for r in requests:
        counts[r["path"]] = counts.get(r["path"], 0) + 1
    return counts


def statuses(report):
    counts = {}
    for r in report:
        counts[r["Status"]] = counts.get(r["Status"], 0) + 1
    return counts


def status_text(counts):
    order = ("created", "updated", "unchanged", "conflict", "deleted", "failed", "invalid")
    short = {"created": "c", "updated": "u", "unchanged": "=", "conflict": "x", "deleted": "d",
             "failed": "f", "invalid": "i"}
    text = " ".join(f"{short[s]}{counts[s]}" for s in order if counts.get(s))
    others = {s: n for s, n in counts.items() if s not in order}
    return text + ("".join(f" {s}:{n}" for s, n in others.items()) if others else "")


def setup_night(sim, folder, header, rows, flags):
    run = night(sim, folder, header, rows, flags)
    done = statuses(run["report"])
    if run["exit"] != 0 or done != {"created": len(rows)}:
        raise BenchError(f"night 1 did not create every row: exit {run['exit']}, {done}\n"
                         f"{run['stderr'][-2000:]}")
    return run


def wait_deleted(sim, ids, timeout=30):
    """Polls until every id is deleted on the simulator (the queued deletes applied)."""
    deadline = time.monotonic() + timeout
    while True:
        acts = {a["id"]: a for a in sim.activities()}
        pending = [i for i in ids if not acts.get(i, {}).get("deleted")]
        if not pending or time.monotonic() > deadline:
            return acts, pending
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Checks on the account


def matches(activity, row):
    """Problems of `activity` against the row that should have made it (lead, code, note,
    filled fields)."""
    problems = []
    if activity["lead_id"] != row["RelatedProspectId"].lower():
        problems.append("lead")
    if str(activity["event_code"]) != row["ActivityEvent"]:
        problems.append("code")
    if (activity.get("note") or "") != row["ActivityNote"]:
        problems.append("note")
    for f in FIELDS:
        if row.get(f) and activity["fields"].get(f) != row[f]:
            problems.append(f)
    return problems


def check_changed_night(first, second, groups, activities, foreign=(), deleted=False,
                        key_field=False):
    """Bar 1's checks on night 2 (and bar 2's with `deleted`): problems found, as text."""
    problems = []
    acts = {a["id"]: a for a in activities}
    ids1 = {r["CallId"]: r["ProspectActivityId"] for r in first}
    rows1 = {r["CallId"]: r for r in first}
    lines = [r for r in second if r["RowNumber"]]
    deleted_lines = [r for r in second if r["Status"] == "deleted"]
    expect = {"created": 100, "updated": 100, "conflict": 5, "unchanged": BASE_ROWS - 135}
    if deleted:
        expect["deleted"] = 30
    if statuses(second) != expect:
        problems.append(f"statuses {statuses(second)} != {expect}")
    want = {"updated": groups["notes"] | groups["fields"], "conflict": groups["moved"],
            "created": groups["added"], "deleted": groups["removed"] if deleted else set()}
    for status, keys in want.items():
        got = {r["CallId"] for r in second if r["Status"] == status}
        if got != keys:
            problems.append(f"{status}: {len(got ^ keys)} keys differ from the edits")
    bad = {}
    for r in lines:
        key, status, pid = r["CallId"], r["Status"], r["ProspectActivityId"]
        a = acts.get(pid)
        if a is None or a["deleted"]:
            bad.setdefault("report id not live", []).append(key)
            continue
        if status in ("updated", "unchanged", "conflict") and pid != ids1.get(key):
            bad.setdefault(f"{status}: id changed", []).append(key)
        if status == "created" and pid in ids1.values():
            bad.setdefault("created: an old id", []).append(key)
        want_updates = 1 if status == "updated" else 0
        if a["updates"] != want_updates:
            bad.setdefault(f"{status}: {a['updates']} updates applied", []).append(key)
        if status == "conflict":
            if matches(a, rows1[key]):
                bad.setdefault("conflict: the activity changed", []).append(key)
        elif matches(a, r):
            bad.setdefault(f"{status}: account differs ({','.join(matches(a, r))})",
                           []).append(key)
        if key_field and a["fields"].get(KEY_FIELD) != key:
            bad.setdefault(f"{KEY_FIELD} != key", []).append(key)
    for what, keys in bad.items():
        problems.append(f"{what}: {len(keys)} (e.g. {keys[0]})")
    # Exactly one live activity per key: the live activities the tool created (foreign ones
    # aside) are the reports' ids, no more.
    known = {r["ProspectActivityId"] for r in lines}
    removed_ids = {ids1[k] for k in groups["removed"]}
    if not deleted:
        known |= removed_ids
    live = {a["id"] for a in activities
            if not a["deleted"] and a["created_by_request"] is not None} - set(foreign)
    if live != known:
        problems.append(f"live tool-created {len(live)} != keys' ids {len(known)}: "
                        f"{len(live - known)} extra (duplicates), {len(known - live)} missing")
    if deleted:
        if {r["ProspectActivityId"] for r in deleted_lines} != removed_ids:
            problems.append("deleted lines do not name the removed keys' activities")
        still = [i for i in removed_ids if not acts.get(i, {}).get("deleted")]
        if still:
            problems.append(f"{len(still)} removed keys' activities not deleted")
    gone = [i for i in foreign if acts.get(i, {}).get("deleted", True)]
    if gone:
        problems.append(f"{len(gone)} foreign activities gone")
    return problems


def result(name, run=None, **fig):
    r = {"scenario": name, "goal": dict(SCENARIOS)[name], "problems": [], "fig": fig}
    if run is not None:
        paths = by_path(run["requests"])
        fig.setdefault("rows", run["summary"].get("rows_total"))
        fig.setdefault("exit", run["exit"])
        fig.setdefault("wall_s", run["wall_s"])
        fig.setdefault("cpu_s", run["cpu_s"])
        fig.setdefault("peak_mb", run["peak_mb"])
        fig.setdefault("adds", paths.get(BULK_ADD, 0))
        fig.setdefault("updates", paths.get(BULK_UPDATE, 0))
        fig.setdefault("reads", paths.get(BY_EVENT, 0))
        fig.setdefault("requests", len(run["requests"]))
        fig.setdefault("429s", sum(1 for q in run["requests"] if q["status"] == 429))
        r["counts"] = status_text(statuses(run["report"]))
    return r


# ---------------------------------------------------------------------------------------------
# Scenarios

FAST_SIM = ["--rate", "none"]
FAST = ["--rate", "1000/1s"]
QUOTA_1S = ["--rate", "25/1s"]


def bar1(root, data, name="sync-1", key_field=False):
    """Bar 1 (and bar 4 with `key_field`: the ledger deleted before night 2)."""
    header, rows = keyed_source(data, BASE_ROWS)
    sim = Sim(["--rate", "25/1s"])
    try:
        folder = Folder(root, name)
        extra = ["--key-field", KEY_FIELD] if key_field else []
        first = setup_night(sim, folder, header, rows, QUOTA_1S + extra)
        nxt, groups = changed_night(rows)
        if key_field:
            folder.remove_ledger()
        second = night(sim, folder, header, nxt, QUOTA_1S + extra)
        r = result(name, second)
        r["problems"] = check_changed_night(first["report"], second["report"], groups,
                                            sim.activities(), key_field=key_field)
        pairs = {(x["RelatedProspectId"].lower(), x["ActivityEvent"]) for x in nxt}
        r["fig"]["pairs"] = len(pairs)
        r["fig"]["key_reads"] = second["summary"].get("key_reads")
        return r
    finally:
        sim.close()


def bar2(root, data):
    header, rows = keyed_source(data, BASE_ROWS)
    nxt, groups = changed_night(rows)
    sim = Sim(["--rate", "25/1s"])
    try:
        folder = Folder(root, "sync-2")
        # Someone else's activities on the same leads and codes, one second after 40 synced
        # ones (20 of them rows night 2 removes): a plain import with its own ledger.
        rng = random.Random(7)
        removed = [r for r in rows if r["CallId"] in groups["removed"]]
        kept = [r for r in rows if r["CallId"] not in groups["removed"]]
        taken = {(r["RelatedProspectId"], r["ActivityEvent"], r["ActivityDateTime"])
                 for r in rows + nxt}
        foreign_rows = []
        for n, r in enumerate(rng.sample(removed, 20) + rng.sample(kept, 20), 1):
            f = dict(r, ActivityNote=f"theirs {n}")
            when = datetime.datetime.strptime(r["ActivityDateTime"], "%Y-%m-%d %H:%M:%S")
            while True:
                when += datetime.timedelta(seconds=1)
                f["ActivityDateTime"] = when.strftime("%Y-%m-%d %H:%M:%S")
                if (f["RelatedProspectId"], f["ActivityEvent"], f["ActivityDateTime"]) \
                        not in taken:
                    break
            foreign_rows.append(f)
        theirs = night(sim, folder, header[1:], foreign_rows, QUOTA_1S,
                       ledger="theirs.ledger", key=False, label="theirs")
        foreign = [x["ProspectActivityId"] for x in theirs["report"]
                   if x["Status"] == "created"]
        if theirs["exit"] != 0 or len(foreign) != 40:
            raise BenchError(f"the foreign import failed: {theirs['stderr'][-2000:]}")
        first = setup_night(sim, folder, header, rows, QUOTA_1S)
        second = night(sim, folder, header, nxt, QUOTA_1S + ["--delete-missing", "--yes"])
        removed_ids = [x["ProspectActivityId"] for x in first["report"]
                       if x["CallId"] in groups["removed"]]
        started = time.monotonic()
        acts, pending = wait_deleted(sim, removed_ids)
        r = result("sync-2", second)
        r["fig"]["deletes_applied_s"] = time.monotonic() - started
        r["fig"]["delete_calls"] = by_path(second["requests"]).get(DELETE, 0)
        r["fig"]["lead_reads"] = by_path(second["requests"]).get(RETRIEVE, 0)
        r["problems"] = check_changed_night(first["report"], second["report"], groups,
                                            list(acts.values()), foreign=foreign, deleted=True)
        if pending:
            r["problems"].append(f"{len(pending)} deletes not applied after 30 s")
        r["fig"]["foreign_live"] = sum(1 for i in foreign if not acts[i]["deleted"])
        # A source missing 40% of the keys the sync knows: exit 2, nothing deleted or sent.
        known = list(nxt)
        rng.shuffle(known)
        gutted = known[: int(len(known) * 0.6)]
        live_before = sim_stats(sim.url)["activities_live"]
        third = night(sim, folder, header, gutted, QUOTA_1S + ["--delete-missing", "--yes"])
        time.sleep(0.5)
        live_after = sim_stats(sim.url)["activities_live"]
        r["fig"].update(gutted_exit=third["exit"], gutted_requests=len(third["requests"]),
                        gutted_deleted=live_before - live_after,
                        gutted_rows=len(gutted))
        r["gutted_line"] = third["stderr"].strip().splitlines()[-1:] or [""]
        return r
    finally:
        sim.close()


def bar3(root, data):
    header, rows = keyed_source(data, BASE_ROWS)
    sim = Sim(["--rate", "25/1s"])
    try:
        folder = Folder(root, "sync-3")
        setup_night(sim, folder, header, rows, QUOTA_1S)
        again = night(sim, folder, header, rows, QUOTA_1S)
        r = result("sync-3", again)
        if statuses(again["report"]) != {"unchanged": BASE_ROWS}:
            r["problems"].append(f"statuses {statuses(again['report'])}")
        return r
    finally:
        sim.close()


def max_in_window(requests, window):
    times = sorted(seconds(q["at"]) for q in requests)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def bar5(root, data):
    """Bar 5, and bar 3 at 100,000 rows (sync-3-100k)."""
    header, rows = keyed_source(data, BIG_ROWS)
    sim = Sim(FAST_SIM)
    out = []
    try:
        folder = Folder(root, "sync-5")
        first = setup_night(sim, folder, header, rows, FAST)
        same = night(sim, folder, header, rows, FAST)
        r3 = result("sync-3-100k", same)
        if statuses(same["report"]) != {"unchanged": BIG_ROWS}:
            r3["problems"].append(f"statuses {statuses(same['report'])}")
        out.append(r3)
        changed = copy_rows(rows)
        picked = random.Random(5).sample(range(BIG_ROWS), BIG_ROWS // 100)
        for i in picked:
            changed[i]["ActivityNote"] += " (edited)"
        # The measured night starts with the quota's window clear of the setup's calls, as a
        # night after the last one would.
        time.sleep(5.5)
        run = night(sim, folder, header, changed, ["--rate", "25/5s"])
        r = result("sync-5", run)
        calls = -(-len(picked) // 25)
        ideal = calls / (25 / 5.0) + 0.0  # + one round trip: the simulator's latency is 0
        r["fig"].update(changed=len(picked), ideal_calls=calls, ideal_s=ideal,
                        ratio=ideal / run["wall_s"],
                        max_in_5s=max_in_window(run["requests"], 5.0),
                        first_call_s=seconds(run["requests"][0]["at"]) - run["spawned_at"],
                        paced_s=seconds(run["requests"][-1]["at"])
                        - seconds(run["requests"][0]["at"]),
                        after_last_s=run["wall_s"] + run["spawned_at"]
                        - seconds(run["requests"][-1]["answered"]),
                        calls=run["summary"].get("calls"))
        acts = {a["id"]: a for a in sim.activities()}
        ids = {x["CallId"]: x["ProspectActivityId"] for x in first["report"]}
        edited = {rows[i]["CallId"] for i in picked}
        expect = {"updated": len(picked), "unchanged": BIG_ROWS - len(picked)}
        if statuses(run["report"]) != expect:
            r["problems"].append(f"statuses {statuses(run['report'])} != {expect}")
        wrong = [x["CallId"] for x in run["report"]
                 if x["ProspectActivityId"] != ids[x["CallId"]]
                 or acts[x["ProspectActivityId"]]["updates"] != (x["CallId"] in edited)
                 or (acts[x["ProspectActivityId"]].get("note") or "") != x["ActivityNote"]]
        if wrong:
            r["problems"].append(f"{len(wrong)} rows wrong on the account (e.g. {wrong[0]})")
        live = sum(1 for a in acts.values()
                   if not a["deleted"] and a["created_by_request"] is not None)
        if live != BIG_ROWS:
            r["problems"].append(f"{live} live activities for {BIG_ROWS} keys")
        out.append(r)
        return out
    finally:
        sim.close()


def bar6_answer(root, data, answer):
    name = f"sync-6-{answer}"
    header, rows = keyed_source(data, BASE_ROWS)
    rows = rows[:1000]
    sim = Sim(FAST_SIM + ["--update-answer", answer])
    try:
        folder = Folder(root, name)
        first = setup_night(sim, folder, header, rows, FAST)
        changed = copy_rows(rows)
        rng = random.Random(6)
        picked = rng.sample(range(len(rows)), 100)
        for n, i in enumerate(picked):
            if n % 2 and first_field(changed[i]):
                changed[i][first_field(changed[i])] += "-v2"
            else:
                changed[i]["ActivityNote"] += " (edited)"
        run = night(sim, folder, header, changed, FAST)
        r = result(name, run)
        acts = {a["id"]: a for a in sim.activities()}
        ids = {x["CallId"]: x["ProspectActivityId"] for x in first["report"]}
        edited = {rows[i]["CallId"] for i in picked}
        expect = {"updated": 100, "unchanged": len(rows) - 100}
        if statuses(run["report"]) != expect:
            r["problems"].append(f"statuses {statuses(run['report'])} != {expect}")
        wrong = [x["CallId"] for x in run["report"]
                 if x["ProspectActivityId"] != ids[x["CallId"]]
                 or acts[x["ProspectActivityId"]]["updates"] != (x["CallId"] in edited)
                 or matches(acts[x["ProspectActivityId"]], x)]
        if wrong:
            r["problems"].append(f"{len(wrong)} rows wrong on the account (e.g. {wrong[0]})")
        return r
    finally:
        sim.close()


def bar6_kill(root, data, suffix, what, kill_after):
    name = f"sync-6-kill-{suffix}"
    path = {"update": BULK_UPDATE, "add": BULK_ADD}[what]
    header, rows = keyed_source(data, BASE_ROWS)
    sim = Sim(["--rate", "25/1s", "--latency-ms", "30"])
    try:
        folder = Folder(root, name)
        first = setup_night(sim, folder, header, rows, QUOTA_1S)
        changed = copy_rows(rows)
        for row in changed:
            row["ActivityNote"] += " (edited)"
        added, _ = changed_night(rows)
        changed += [x for x in added if x["CallId"].startswith("N-")]
        source, report = folder.path("night2.csv"), folder.path("night2.report.csv")
        write_csv(source, header, changed)
        args = import_args(folder, source, report, QUOTA_1S)
        before = sim.count()
        start = time.monotonic()
        proc = spawn(args, sim.url, folder.dir, measured=False)
        seen = 0
        while proc.poll() is None and time.monotonic() - start < 120:
            seen = sum(1 for q in sim.requests(before) if q["path"] == path)
            if seen >= kill_after:
                proc.kill()  # SIGKILL
                break
            time.sleep(0.02)
        killed = finish(proc, start)
        if killed["exit"] != -signal.SIGKILL:
            raise BenchError(f"{name}: the run was not killed (exit {killed['exit']}, "
                             f"{seen} {what} calls seen)")
        time.sleep(0.3)  # let the simulator answer what was in flight
        at_kill = sim.requests(before)
        applied = sum(a["updates"] for a in sim.activities())
        before_resume = sim.count()
        start = time.monotonic()
        run = finish(spawn(args, sim.url, folder.dir), start)
        run["requests"] = sim.requests(before_resume)
        run["report"] = read_csv(report)[1] if os.path.exists(report) else []
        run["summary"] = json.load(open(report + ".summary.json"))
        r = result(name, run)
        kill_paths, resume_paths = by_path(at_kill), by_path(run["requests"])
        r["fig"].update(
            killed_s=killed["wall_s"], updates_sent_before_kill=kill_paths.get(BULK_UPDATE, 0),
            adds_before_kill=kill_paths.get(BULK_ADD, 0), applied_at_kill=applied,
            resume_updates=resume_paths.get(BULK_UPDATE, 0),
            resume_adds=resume_paths.get(BULK_ADD, 0),
            resume_lookups=run["summary"].get("lookup_calls"),
            resume_reads=resume_paths.get(BY_EVENT, 0) + resume_paths.get(RETRIEVE, 0),
            total_updates=kill_paths.get(BULK_UPDATE, 0) + resume_paths.get(BULK_UPDATE, 0),
            resumed=run["summary"].get("resumed"))
        acts = sim.activities()
        ids1 = {x["CallId"]: x["ProspectActivityId"] for x in first["report"]}
        problems = r["problems"]
        expect = {"created": 100, "updated": BASE_ROWS}
        if statuses(run["report"]) != expect:
            problems.append(f"statuses {statuses(run['report'])} != {expect}")
        if run["exit"] != 0:
            problems.append(f"resume exited {run['exit']}")
        mine = [a for a in acts if not a["deleted"] and a["created_by_request"] is not None]
        old = set(ids1.values())
        updates = [a["updates"] for a in mine if a["id"] in old]
        r["fig"].update(updated_once=updates.count(1), updated_never=updates.count(0),
                        updated_twice=sum(1 for u in updates if u > 1))
        if updates.count(1) != BASE_ROWS:
            problems.append(f"updates applied: {updates.count(0)} never, "
                            f"{sum(1 for u in updates if u > 1)} twice or more")
        notes = {}
        for a in mine:
            notes[a.get("note")] = notes.get(a.get("note"), 0) + 1
        doubled = [n for n, c in notes.items() if c > 1]
        new_notes = [x["ActivityNote"] for x in changed if x["CallId"].startswith("N-")]
        new_once = sum(1 for n in new_notes if notes.get(n) == 1)
        r["fig"]["new_created_once"] = new_once
        if doubled or len(mine) != BASE_ROWS + 100 or new_once != 100:
            problems.append(f"{len(mine)} live tool-created activities for {BASE_ROWS + 100} "
                            f"keys, {len(doubled)} notes twice, {new_once} of 100 new once")
        by_id = {a["id"]: a for a in mine}
        wrong = [x["CallId"] for x in run["report"]
                 if x["ProspectActivityId"] not in by_id
                 or matches(by_id[x["ProspectActivityId"]], x)]
        if wrong:
            problems.append(f"{len(wrong)} report lines not on the account (e.g. {wrong[0]})")
        return r
    finally:
        sim.close()


# ---------------------------------------------------------------------------------------------
# Verdicts and the table


def verdict(r):
    """PASS or FAIL against the bar: a check failed, or a figure off the bar."""
    f, name = r["fig"], r["scenario"]
    misses = list(r["problems"])

    def need(ok, text):
        if not ok:
            misses.append(text)

    if name in ("sync-1", "sync-4"):
        need(f["adds"] + f["updates"] <= 10, f"{f['adds'] + f['updates']} bulk calls > 10")
    if name == "sync-4":
        need(f["reads"] < f["pairs"], f"{f['reads']} reads >= {f['pairs']} lead/code pairs")
    if name == "sync-2":
        need(f["adds"] + f["updates"] <= 10, f"{f['adds'] + f['updates']} bulk calls > 10")
        need(f["foreign_live"] == 40, f"{f['foreign_live']} of 40 foreign activities live")
        need(f["gutted_exit"] == 2, f"40% missing: exit {f['gutted_exit']}")
        need(f["gutted_requests"] == 0, f"40% missing: {f['gutted_requests']} requests")
        need(f["gutted_deleted"] == 0, f"40% missing: {f['gutted_deleted']} deleted")
    if name.startswith("sync-3"):
        need(f["exit"] == 0, f"exit {f['exit']}")
        need(f["adds"] + f["updates"] == 0, "bulk calls made")
        if name == "sync-3":
            need(f["cpu_s"] < 0.5, f"{f['cpu_s']:.2f} s of CPU")
    if name == "sync-5":
        need(f["adds"] + f["updates"] == f["ideal_calls"],
             f"{f['adds'] + f['updates']} bulk calls != {f['ideal_calls']}")
        need(f["ratio"] >= 1 / 1.1, f"ratio {f['ratio']:.3f} < 0.909")
    if name.startswith("sync-6-kill"):
        need(f["exit"] == 0, f"exit {f['exit']}")
    if name in ("sync-6-call", "sync-6-row"):
        need(f["updates"] == 4, f"{f['updates']} update calls for 100 rows")
    return ("PASS" if not misses else "FAIL"), misses


def figures_text(r):
    f, name = r["fig"], r["scenario"]
    parts = []
    if name in ("sync-1", "sync-4", "sync-2"):
        parts.append(f"{f['pairs']} lead/code pairs" if "pairs" in f else "")
    if name == "sync-4":
        parts.append(f"key_reads {f['key_reads']}")
    if name == "sync-2":
        parts += [f"{f['delete_calls']} delete calls, {f['lead_reads']} lead reads",
                  f"deletes applied {f['deletes_applied_s']:.1f} s after exit",
                  f"{f['foreign_live']}/40 foreign live",
                  f"40% missing ({f['gutted_rows']:,} rows): exit {f['gutted_exit']}, "
                  f"{f['gutted_requests']} requests, {f['gutted_deleted']} deleted"]
    if name == "sync-5":
        parts += [f"{f['changed']:,} changed", f"ideal {f['ideal_s']:.2f} s",
                  f"ratio {f['ratio']:.3f}", f"max {f['max_in_5s']}/5s",
                  f"first call {f['first_call_s']:.2f} s after spawn, last "
                  f"{f['paced_s']:.2f} s after the first, exit "
                  f"{f['after_last_s']:.2f} s after the last answer",
                  f"calls in summary {f['calls']}"]
    if name.startswith("sync-6-kill"):
        parts += [f"killed at {f['killed_s']:.1f} s after {f['updates_sent_before_kill']} "
                  f"updates + {f['adds_before_kill']} adds ({f['applied_at_kill']} rows applied)",
                  f"resume: {f['resume_updates']} updates, {f['resume_adds']} adds, "
                  f"{f['resume_reads']} reads, lookups {f['resume_lookups']}",
                  f"updates applied once {f['updated_once']}, never {f['updated_never']}, "
                  f"twice {f['updated_twice']}; new created once {f['new_created_once']}/100"]
    return "; ".join(p for p in parts if p) or "-"


HEADER = ("scenario", "rows", "night's lines", "bulk adds+updates", "reads", "requests", "exit",
          "wall s", "CPU s", "peak MB", "figures", "verdict", "bar")


def fmt(value, spec):
    if value is None:
        return "-"
    return format(value, spec)


def print_table(results, title):
    print(title)
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" for _ in HEADER) + "|")
    for r in results:
        f = r["fig"]
        v, misses = verdict(r)
        cells = [r["scenario"], fmt(f.get("rows"), ","), r.get("counts", "-"),
                 f"{fmt(f.get('adds'), '.0f')}+{fmt(f.get('updates'), '.0f')}",
                 fmt(f.get("reads"), ".0f"), fmt(f.get("requests"), ".0f"),
                 fmt(f.get("exit"), ".0f"), fmt(f.get("wall_s"), ".2f"),
                 fmt(f.get("cpu_s"), ".2f"), fmt(f.get("peak_mb"), ".1f"), figures_text(r),
                 v + (": " + "; ".join(misses) if misses else ""), r["goal"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")


def median_of(files):
    runs = [json.load(open(path)) for path in files]
    out = []
    names = [r["scenario"] for r in runs[0]["results"]]
    for name in names:
        same = [r for run in runs for r in run["results"] if r["scenario"] == name]
        m = dict(same[0])
        m["fig"] = {}
        for k in same[0]["fig"]:
            values = [r["fig"].get(k) for r in same]
            nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            m["fig"][k] = statistics.median(nums) if len(nums) == len(values) else values[0]
        m["problems"] = [f"run {i + 1}: {p}" for i, r in enumerate(same) for p in r["problems"]]
        counts = {r.get("counts") for r in same}
        m["counts"] = " / ".join(sorted(counts, key=str)) if len(counts) > 1 else same[0].get(
            "counts")
        m["each"] = {k: [r["fig"].get(k) for r in same]
                     for k in ("wall_s", "cpu_s", "peak_mb", "ratio") if k in same[0]["fig"]}
        m["verdicts"] = [verdict(r)[0] for r in same]
        out.append(m)
    print_table(out, f"Medians of {len(runs)} runs ({', '.join(files)}); verdicts of each run: "
                     + "; ".join(f"{r['scenario']} {' '.join(r['verdicts'])}" for r in out))
    print()
    for r in out:
        each = "; ".join(f"{k} " + " ".join(fmt(v, ".3f" if k == "ratio" else ".2f")
                                            for v in vals) for k, vals in r["each"].items())
        print(f"{r['scenario']}: {each}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated scenario names or prefixes")
    parser.add_argument("--keep", help="folder for generated data (reused between runs)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--median", nargs="+", metavar="RUN.json",
                        help="print the medians of earlier runs' --json files, run nothing")
    args = parser.parse_args()
    if args.median:
        median_of(args.median)
        return
    wanted = [w.strip() for w in args.only.split(",")] if args.only else None

    def want_one(name, w):
        return name == w or name.startswith(w + "-")

    def want(name):
        return wanted is None or any(want_one(name, w) for w in wanted)

    names = [name for name, _ in SCENARIOS]
    unknown = [w for w in wanted or [] if not any(want_one(n, w) for n in names)]
    if unknown:
        parser.error(f"no scenario named {', '.join(unknown)} (scenarios: {', '.join(names)})")

    started = time.monotonic()
    build()
    data = args.keep or tempfile.mkdtemp(prefix="lsq-bench-sync-data-")
    os.makedirs(data, exist_ok=True)
    root = tempfile.mkdtemp(prefix="lsq-bench-sync-")
    results = []
    jobs = [
        ("sync-1", lambda: [bar1(root, data)]),
        ("sync-2", lambda: [bar2(root, data)]),
        ("sync-3", lambda: [bar3(root, data)]),
        ("sync-4", lambda: [bar1(root, data, "sync-4", key_field=True)]),
        ("sync-5", lambda: bar5(root, data)),
        ("sync-6-call", lambda: [bar6_answer(root, data, "call")]),
        ("sync-6-row", lambda: [bar6_answer(root, data, "row")]),
    ] + [(f"sync-6-kill-{suffix}", lambda k=(suffix, what, n): [bar6_kill(root, data, *k)])
         for suffix, what, n in KILL_POINTS]
    failed = False
    try:
        for name, job in jobs:
            if not (want(name) or (name == "sync-5" and want("sync-3-100k"))):
                continue
            t = time.monotonic()
            try:
                got = job()
            except BenchError as e:
                print(f"{name}: could not be run: {e}", file=sys.stderr)
                failed = True
                continue
            results += got
            print(f"{name}: {time.monotonic() - t:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    order = [name for name, _ in SCENARIOS]
    results.sort(key=lambda r: order.index(r["scenario"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"host": platform.node(), "results": results}, f, indent=1)
    print_table(results, f"\nlsq-sync keyed sync benchmark on {platform.node()}: "
                         f"{os.cpu_count()} cores, {platform.machine()}, Python "
                         f"{platform.python_version()}; {time.monotonic() - started:.0f} s in all")
    if failed or any(verdict(r)[0] == "FAIL" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
