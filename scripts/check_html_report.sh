#!/bin/sh
# Renders an lsq-sync HTML report in headless Chromium and checks what the browser built.
#
# Usage: scripts/check_html_report.sh [OUT_DIR]
#
# Imports samples/activities.csv into the embedded simulator with --html-report and
# --summary-json, renders the page with Chromium (--dump-dom and --screenshot), and checks that
# the DOM the browser built holds the summary's counts and the SVG chart with its bars, and that
# no <script> element came from the data. Leaves report.html, dom.html and report.png in OUT_DIR
# (default: a new temp dir) to look at. Installs nothing: it needs /usr/bin/chromium (Debian:
# apt-get install chromium) or CHROMIUM=/path/to/chrome; without one it says so and exits 77.
# Exit 0 when every check passes, 1 otherwise.
set -eu

cd "$(dirname "$0")/.."
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    echo "check_html_report: no Chromium at $chromium (apt-get install chromium, or set CHROMIUM)" >&2
    exit 77
fi
out=${1:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/lsq-sync

# The sample holds invalid and refused rows on purpose: exit 1 is the expected outcome.
status=0
"$bin" import samples/activities.csv --out "$out/report.csv" --simulate --fresh --rate 5/1s \
    --ledger "$out/report.csv.ledger" --html-report "$out/report.html" \
    --summary-json "$out/summary.json" 2>"$out/import.log" || status=$?
if [ "$status" -ne 1 ]; then
    echo "check_html_report: the import exited $status, expected 1; see $out/import.log" >&2
    exit 1
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
browse() {
    "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" "$@" "file://$out/report.html" 2>>"$out/chromium.log"
}
browse --dump-dom >"$out/dom.html"
browse --screenshot="$out/report.png" --window-size=1000,1500 >/dev/null

failures=0
check() { # description, then a command that must succeed
    what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "OK   $what"
    else
        echo "FAIL $what"
        failures=$((failures + 1))
    fi
}
count() { # a count from the pretty-printed summary JSON
    sed -n "s/^ *\"$1\": \([0-9]*\),*$/\1/p" "$out/summary.json" | head -n 1
}
for status_name in created failed invalid; do
    n=$(count "$status_name")
    check "DOM shows $n $status_name (as the summary JSON)" \
        grep -q "id=\"count-$status_name\"><b>$n</b>" "$out/dom.html"
done
check "DOM has the throughput chart" grep -q '<svg id="throughput"' "$out/dom.html"
check "the chart has bars" grep -q '<rect class="bar" data-rows="[1-9]' "$out/dom.html"
check "the chart has its time axis" grep -q 'UTC, [0-9.]* s per bar</text></svg>' "$out/report.html"
check "DOM has the error groups" grep -q 'class="error-group"' "$out/dom.html"
check "no <script> element in the DOM" sh -c "! grep -qi '<script' '$out/dom.html'"
check "screenshot written" test -s "$out/report.png"

echo "files in $out: report.html dom.html report.png summary.json"
[ "$failures" -eq 0 ]
