#!/usr/bin/env bash
# Runs the same load scenarios against Weft and its peers, side by side, in one run.
#
#   bash benches/compare.sh [scenario ...]     scenarios: floor fanout fanout10 cursors overload100
#                                                         overload500 overload1000 manydocs durable
#                                                         (default: fanout)
#
# Installs the peers into benches/peers/ (git-ignored) on first use:
#   - the Node reference server  @y/websocket-server@0.1.1 with yjs@13 (npm)
#   - Hocuspocus                 @hocuspocus/server@4.7.0 with yjs@13 (npm), run by the minimal
#                                in-memory server benches/peer-servers/hocuspocus.mjs
#   - y-sweet 0.9.1              cargo install y-sweet --version 0.9.1 --locked
# Servers (PEERS): weft, node-ref, hocuspocus, y-sweet, and weft-hp: Weft's Hocuspocus endpoint
# (/hocuspocus) driven with the Hocuspocus framing, to set against hocuspocus and against weft's
# own y-websocket endpoint (its ratios to both are printed when it runs).
# Each server is pinned to CPU 0 and the load generator (target/release/weft-load) to CPU 1.
# Prints one JSON line per run and a table with the Weft/peer ratio of every figure.
# Env: PEERS="weft node-ref hocuspocus y-sweet" DURATION=20 SKIP_INSTALL=1
#      ROUNDS=N  runs every scenario N times over all servers (the order rotated each round, so
#                no server always runs first) and reports each figure's median over the rounds,
#                plus every round's p99; this machine's run-to-run noise makes one round a guess
#      WEFT_BASE_BIN=path/to/an/older/weft  adds the peer "weft-base" (same flags as weft), to
#                                           measure a change against the build before it
#      WEFT_BASE_ARGS="--flag value"        extra flags for weft-base only (with WEFT_BASE_BIN
#                                           set to target/release/weft: a setting side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
peers_dir=$root/benches/peers
out=${OUT:-$root/target/compare-$(date +%Y%m%d-%H%M%S).jsonl}
duration=${DURATION:-20}
servers=${PEERS:-"weft node-ref hocuspocus y-sweet"}
rounds=${ROUNDS:-1}
scenarios=${*:-fanout}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --bins >/dev/null

install_peers() {
  mkdir -p "$peers_dir/node-ref"
  if [ ! -d "$peers_dir/node-ref/node_modules/@y/websocket-server" ]; then
    (cd "$peers_dir/node-ref" && echo '{"name":"node-ref","private":true}' > package.json &&
      npm install --no-audit --no-fund --loglevel=error @y/websocket-server@0.1.1 yjs@13.6.33)
  fi
  mkdir -p "$peers_dir/hocuspocus"
  if [ ! -d "$peers_dir/hocuspocus/node_modules/@hocuspocus/server" ]; then
    (cd "$peers_dir/hocuspocus" && echo '{"name":"hocuspocus-peer","private":true,"type":"module"}' > package.json &&
      npm install --no-audit --no-fund --loglevel=error @hocuspocus/server@4.7.0 yjs@13.6.33)
  fi
  cp "$root/benches/peer-servers/hocuspocus.mjs" "$peers_dir/hocuspocus/server.mjs"
  if [ ! -x "$peers_dir/y-sweet/bin/y-sweet" ]; then
    cargo install y-sweet --version 0.9.1 --locked --root "$peers_dir/y-sweet"
  fi
}
[ -n "${SKIP_INSTALL:-}" ] || install_peers

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"

# start_server NAME PORT DATA -> sets SERVER_PID, URL_TEMPLATE and LOAD_ARGS
start_server() {
  local name=$1 port=$2 data=$3
  LOAD_ARGS=""
  case $name in
    weft|weft-base|weft-hp)
      local bin=$root/target/release/weft
      local extra=""
      if [ "$name" = weft-base ]; then
        bin=${WEFT_BASE_BIN:?set WEFT_BASE_BIN to compare against weft-base}
        extra=${WEFT_BASE_ARGS:-}
      fi
      # shellcheck disable=SC2086 # $extra is a list of flags
      taskset -c 0 "$bin" --addr "127.0.0.1:$port" --data-dir "$data" \
        --workers 1 --max-connections 60000 --max-connections-per-doc 60000 \
        --max-messages-per-second 1000000 --max-connections-per-ip 60000 \
        --max-connections-per-user 60000 $extra >"$data.log" 2>&1 &
      URL_TEMPLATE="ws://127.0.0.1:$port/{doc}"
      if [ "$name" = weft-hp ]; then
        URL_TEMPLATE="ws://127.0.0.1:$port/hocuspocus"
        LOAD_ARGS="--protocol hocuspocus"
      fi ;;
    node-ref)
      HOST=127.0.0.1 PORT=$port taskset -c 0 node \
        "$peers_dir/node-ref/node_modules/@y/websocket-server/src/server.js" >"$data.log" 2>&1 &
      URL_TEMPLATE="ws://127.0.0.1:$port/{doc}" ;;
    hocuspocus)
      HOST=127.0.0.1 PORT=$port taskset -c 0 node "$peers_dir/hocuspocus/server.mjs" >"$data.log" 2>&1 &
      URL_TEMPLATE="ws://127.0.0.1:$port"
      LOAD_ARGS="--protocol hocuspocus" ;;
    y-sweet)
      taskset -c 0 "$peers_dir/y-sweet/bin/y-sweet" serve "$data" --host 127.0.0.1 --port "$port" \
        >"$data.log" 2>&1 &
      URL_TEMPLATE="ws://127.0.0.1:$port/d/{doc}/ws/{doc}" ;;
  esac
  SERVER_PID=$!
  wait_for_port "$port" && return 0
  echo "$name did not start; log:" >&2; cat "$data.log" >&2; return 1
}

scenario_args() {
  case $1 in
    # One writer, 5 updates/s, 1,000 readers: every update is a broadcast of its own to idle
    # clients (nothing to merge or pace), so its latencies are how long one pass over 1,000
    # sockets takes - the floor under every fan-out scenario's latency.
    floor) echo "-c 1001 -d 1 -w 1 -r 5 --drain 3" ;;
    fanout) echo "-c 1010 -d 1 -w 10 -r 20 --drain 3" ;;
    # Half the fan-out rate: a busy document that does not fill the server's core.
    fanout10) echo "-c 1010 -d 1 -w 10 -r 10 --drain 3" ;;
    # Fan-out as editors do it: every update followed by the writer's cursor (awareness).
    cursors) echo "-c 1010 -d 1 -w 10 -r 20 --awareness --drain 3" ;;
    overload100) echo "-c 1010 -d 1 -w 10 -r 100 --drain 3" ;;
    overload500) echo "-c 1010 -d 1 -w 10 -r 500 --drain 3" ;;
    overload1000) echo "-c 1010 -d 1 -w 10 -r 1000 --drain 3" ;;
    manydocs) echo "-c 10000 -d 1000 -w 1000 -r 1 --drain 3" ;;
    # One writer as fast as the server takes its updates, one reader: delivered_per_s is the
    # durable throughput (Weft sends nothing before it is fsynced). The writer runs ahead by
    # what the socket buffers hold, so allow a longer drain.
    durable) echo "-c 2 -d 1 -w 1 -r 0 --drain 10" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

: > "$out"
# rotate LIST N: LIST's words rotated left by N (round r starts with a different server).
rotate() {
  # shellcheck disable=SC2206 # splitting the list into words is the point
  local -a words=($1)
  local n=$(($2 % ${#words[@]}))
  echo "${words[@]:n}" "${words[@]:0:n}"
}
for scenario in $scenarios; do
  for round in $(seq "$rounds"); do
    for server in $(rotate "$servers" $((round - 1))); do
      if [ "$server" = y-sweet ] && [ ! -x "$peers_dir/y-sweet/bin/y-sweet" ]; then continue; fi
      data=$(mktemp -d)
      port=$(free_port)
      start_server "$server" "$port" "$data"
      # shellcheck disable=SC2046
      taskset -c 1 "$root/target/release/weft-load" --url "$URL_TEMPLATE" $(scenario_args "$scenario") $LOAD_ARGS \
        --duration "$duration" --warmup 3 --pid "$SERVER_PID" --json \
        --label "$scenario/$server" | tee -a "$out"
      kill "$SERVER_PID" 2>/dev/null || true
      wait "$SERVER_PID" 2>/dev/null || true
      rm -rf "$data" "$data.log"
    done
  done
done

python3 - "$out" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = ["latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_ms_max", "undelivered_pct",
        "sent_per_s", "delivered_per_s", "updates_per_frame", "server_cpu_cores", "server_cpu_us_per_delivery", "server_rss_mib_max",
        "loadgen_cpu_cores", "connect_ms_p99", "disconnects", "frames_received_per_s",
        "awareness_sent_per_s", "awareness_states_received_per_s", "awareness_states_per_frame",
        "awareness_latency_ms_p50", "awareness_latency_ms_p99"]
runs_have = lambda rs, k: any(k in r for r in rs)
by = {}
for r in runs:
    scen, server = r["label"].split("/")
    by.setdefault(scen, {}).setdefault(server, []).append(r)

def median(rs, k):
    vals = sorted(r[k] for r in rs if isinstance(r.get(k), (int, float)))
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2

SATURATED = 0.9
fmt = lambda v: "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
for scen, servers in by.items():
    names = list(servers)
    n_rounds = max(len(rs) for rs in servers.values())
    print(f"\n## {scen}" + (f" (median of {n_rounds} rounds)" if n_rounds > 1 else ""))
    print("| figure | " + " | ".join(names) + " | " + " | ".join(f"weft/{n}" for n in names if n != "weft") + " |")
    print("|---" * (1 + len(names) + len([n for n in names if n != "weft"])) + "|")
    for k in keys:
        if not runs_have([r for rs in servers.values() for r in rs], k):
            continue
        meds = {n: median(servers[n], k) for n in names}
        w = meds.get("weft")
        ratios = [f"{w / meds[n]:.2f}" if w is not None and meds[n] else "-" for n in names if n != "weft"]
        print(f"| {k} | " + " | ".join(fmt(meds[n]) for n in names) + " | " + " | ".join(ratios) + " |")
    print()
    # Weft's Hocuspocus endpoint against Hocuspocus itself and against Weft's y-websocket one.
    if "weft-hp" in names:
        others = [n for n in ("hocuspocus", "weft") if n in names]
        print("| figure | " + " | ".join(f"weft-hp/{n}" for n in others) + " |")
        print("|---" * (1 + len(others)) + "|")
        for k in keys:
            h = median(servers["weft-hp"], k)
            if h is None:
                continue
            cells = []
            for n in others:
                m = median(servers[n], k)
                cells.append(f"{h / m:.2f}" if m else "-")
            print(f"| {k} | " + " | ".join(cells) + " |")
        print()
    if n_rounds > 1:
        for n in names:
            print(f"{n} p99 per round: " + ", ".join(fmt(r.get("latency_ms_p99")) for r in servers[n]))
    # A generator at a full core reads late and drains the sockets in bursts: its latencies are
    # its own queueing, and the server's CPU per delivery is lower than it would be with idle
    # clients (see "what a frame costs depends on the client" in benches/RESULTS.md: the 2026-12-02
    # run of `ROUNDS=2 bash benches/compare.sh fanout fanout10 ...`). Say so next to the figures.
    capped = [n for n in names if (median(servers[n], "loadgen_cpu_cores") or 0) >= SATURATED]
    if capped:
        print(f"generator saturated (>= {SATURATED} cores) against: {', '.join(capped)}; "
              "their latency and CPU figures measure the generator as much as the server")
PY
echo "raw results: $out"
