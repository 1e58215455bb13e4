#!/usr/bin/env bash
# Cold and warm load of a large real document, Weft vs y-sweet, in one run.
#
#   bash benches/coldload.sh          Env: RESTARTS=5 PROBES=20
#                                          WEFT_BASE_BIN=path/to/an/older/weft adds it as the
#                                          server "weft-base", to measure a change in one run
#
# For each server: store the automerge-paper document (benches/data, replayed by weft-load and
# sent as one update), stop the server, then RESTARTS times: start it (pinned to CPU 0), and let
# `weft-load --probe-doc` (pinned to CPU 1) connect PROBES times one after another, measuring TCP
# connect -> SyncStep2 received with an empty state vector. The first probe after a start is the
# cold load (fresh process, files in the page cache), the others are warm (document loaded).
# The warm time is also split into TCP connect, WebSocket upgrade, and SyncStep1 -> SyncStep2.
# y-sweet is installed into benches/peers/ by benches/compare.sh (run it once first).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
restarts=${RESTARTS:-5}
probes=${PROBES:-20}
trace=$root/benches/data/automerge-paper.json.gz
ysweet=$root/benches/peers/y-sweet/bin/y-sweet
cargo build --release --bins >/dev/null
load=$root/target/release/weft-load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"

# start NAME PORT -> SERVER_PID, URL
start() {
  case $1 in
    weft|weft-base)
      local bin=$root/target/release/weft
      [ "$1" = weft-base ] && bin=$WEFT_BASE_BIN
      taskset -c 0 "$bin" --addr "127.0.0.1:$2" --data-dir "$work/$1" >>"$work/$1.log" 2>&1 &
      URL="ws://127.0.0.1:$2/{doc}" ;;
    y-sweet)
      taskset -c 0 "$ysweet" serve "$work/y-sweet" --host 127.0.0.1 --port "$2" >>"$work/y-sweet.log" 2>&1 &
      URL="ws://127.0.0.1:$2/d/{doc}/ws/{doc}" ;;
  esac
  SERVER_PID=$!
  wait_for_port "$2" && return 0
  echo "$1 did not start" >&2
  return 1
}

stop() { kill -INT "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

servers="weft"
[ -n "${WEFT_BASE_BIN:-}" ] && servers="weft-base $servers"
[ -x "$ysweet" ] && servers="$servers y-sweet"
for server in $servers; do
  port=$(free_port)
  start "$server" "$port"
  # y-sweet persists on a timer: stay connected long enough for it to write the document.
  wait_s=1
  [ "$server" = y-sweet ] && wait_s=12
  "$load" --url "$URL" --probe-doc paper --seed-trace "$trace" --seed-wait "$wait_s" >/dev/null
  stop
  for _ in $(seq "$restarts"); do
    cat "$work/$server"/* >/dev/null 2>&1 || true # page cache warm, as after a restart
    port=$(free_port)
    start "$server" "$port"
    taskset -c 1 "$load" --url "$URL" --probe-doc paper --probes "$probes" --label "$server"
    stop
  done
done | tee "$work/runs.jsonl"

python3 - "$work/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in runs:
    by.setdefault(r["label"], []).append(r)
print("| server | cold ms (median of %d starts) | warm ms (median) | warm: connect / upgrade / sync ms | SyncStep2 bytes |" % len(next(iter(by.values()))))
print("|---|---|---|---|---|")
rows = {}
med = lambda rs, k: statistics.median(r[k] for r in rs)
for name, rs in by.items():
    cold, warm = med(rs, "first_ms"), med(rs, "warm_ms_p50")
    phases = tuple(med(rs, f"warm_{p}_ms_p50") for p in ("connect", "upgrade", "sync"))
    rows[name] = (cold, warm) + phases
    print(f"| {name} | {cold:.2f} | {warm:.2f} | " + " / ".join(f"{v:.2f}" for v in phases) + f" | {rs[0]['step2_bytes']} |")
for peer in ("weft-base", "y-sweet"):
    if "weft" in rows and peer in rows:
        w, p = rows["weft"], rows[peer]
        r = [f"{a / b:.2f}" for a, b in zip(w, p)]
        print(f"| weft/{peer} | {r[0]} | {r[1]} | {' / '.join(r[2:])} | |")
PY
