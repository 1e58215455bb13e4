#!/usr/bin/env bash
# The fan-out scenario (1 document, 1,000 readers, 10 writers x 20 updates/s) against:
#   single  - one node, sled (the default mode), for reference
#   1-node  - one node in cluster mode (PostgreSQL store + Redis fan-out)
#   3-nodes - three nodes in cluster mode; weft-load spreads readers and writers over them, so
#             most deliveries cross nodes through Redis
#
#   bash benches/cluster.sh            Env: DURATION=20 RATE=20 CONNECTIONS=1010
#
# Starts a throwaway Redis and PostgreSQL (tests/cluster-services.sh; needs the Debian packages
# redis-server and postgresql). Nothing is pinned: on a 2-core machine the nodes, Redis,
# PostgreSQL and the generator share both cores, so compare the rows with each other, not with
# benches/compare.sh. Server CPU is the weft processes'; "services" is Redis + PostgreSQL's.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-20}
rate=${RATE:-20}
connections=${CONNECTIONS:-1010}
out=${OUT:-$root/target/cluster-$(date +%Y%m%d-%H%M%S).jsonl}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --bins >/dev/null

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash tests/cluster-services.sh stop "$work/svc"
  rm -rf "$work"
}
trap cleanup EXIT
service_env=$(bash tests/cluster-services.sh start "$work/svc")
eval "$service_env"

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"

# CPU seconds (utime + stime) of Redis and every PostgreSQL process.
services_cpu() {
  python3 - "$(pgrep -d, -x redis-server || true),$(pgrep -d, -x postgres || true)" <<'PY'
import sys
total = 0.0
for pid in filter(None, sys.argv[1].split(",")):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / 100
    except OSError:
        pass
print(total)
PY
}

# run LABEL NODES [weft args...]
run() {
  local label=$1 count=$2
  shift 2
  local urls=() node_pids=()
  for i in $(seq "$count"); do
    local port
    port=$(free_port)
    "$root/target/release/weft" --addr "127.0.0.1:$port" --data-dir "$work/data-$label-$i" \
      --max-connections 60000 --max-connections-per-doc 60000 --max-messages-per-second 100000 \
      --max-connections-per-ip 60000 --max-connections-per-user 60000 \
      "$@" >"$work/$label-$i.log" 2>&1 &
    node_pids+=($!)
    pids+=($!)
    urls+=(--url "ws://127.0.0.1:$port/{doc}")
    wait_for_port "$port" || { echo "node $i did not start; log:" >&2; cat "$work/$label-$i.log" >&2; return 1; }
  done
  local pid_args=()
  for pid in "${node_pids[@]}"; do pid_args+=(--pid "$pid"); done
  local before after
  before=$(services_cpu)
  "$root/target/release/weft-load" "${urls[@]}" -c "$connections" -d 1 -w 10 -r "$rate" \
    --duration "$duration" --warmup 3 --drain 3 "${pid_args[@]}" --json --label "$label" \
    >"$work/run.json"
  after=$(services_cpu)
  python3 - "$work/run.json" "$before" "$after" "$duration" <<'PY' | tee -a "$out"
import json, sys
run = json.load(open(sys.argv[1]))
# Includes connect and warm-up time: an upper bound per second of the window.
run["services_cpu_cores"] = (float(sys.argv[3]) - float(sys.argv[2])) / (float(sys.argv[4]) + 6)
print(json.dumps(run))
PY
  for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}

: >"$out"
run single 1
run 1-node 1 --store "$WEFT_TEST_POSTGRES_URL" --redis "$WEFT_TEST_REDIS_URL" --redis-prefix "bench-1:"
run 3-nodes 3 --store "$WEFT_TEST_POSTGRES_URL" --redis "$WEFT_TEST_REDIS_URL" --redis-prefix "bench-3:"

python3 - "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = ["latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_ms_max", "undelivered_pct",
        "delivered_per_s", "server_cpu_cores", "server_cpu_us_per_delivery", "services_cpu_cores",
        "server_rss_mib_max", "loadgen_cpu_cores", "connect_ms_p99", "disconnects"]
names = [r["label"] for r in runs]
print("| figure | " + " | ".join(names) + " | 3-nodes/1-node |")
print("|---" * (len(names) + 2) + "|")
by = {r["label"]: r for r in runs}
for k in keys:
    fmt = lambda v: "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
    a, b = by.get("3-nodes", {}).get(k), by.get("1-node", {}).get(k)
    ratio = f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "-"
    print(f"| {k} | " + " | ".join(fmt(by[n].get(k)) for n in names) + f" | {ratio} |")
PY
echo "raw results: $out"
