#!/usr/bin/env bash
# Throwaway Redis and PostgreSQL on loopback, for the cluster tests (and for trying a cluster).
#
#   eval "$(bash tests/cluster-services.sh start DIR)"   # starts both, prints `export` lines:
#                                                       # WEFT_TEST_REDIS_URL, WEFT_TEST_POSTGRES_URL
#   bash tests/cluster-services.sh stop DIR              # stops both (DIR can then be removed)
#
# Needs the Debian packages redis-server and postgresql (tests/run.sh installs them when run as
# root). Fails loudly when either is missing. Everything lives in DIR; nothing is cached.
set -euo pipefail

command="${1:?usage: cluster-services.sh start|stop DIR}"
dir="${2:?usage: cluster-services.sh start|stop DIR}"

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "cluster-services: PostgreSQL is not installed (apt-get install postgresql)" >&2
    exit 1
  fi
  echo "$bin"
}

# Runs a PostgreSQL tool as a non-root user: initdb and postgres refuse to run as root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$(( 20000 + RANDOM % 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "cluster-services: no free port found" >&2
  exit 1
}

start() {
  command -v redis-server >/dev/null || {
    echo "cluster-services: redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
  }
  local bin redis_port pg_port
  bin=$(pg_bin)
  mkdir -p "$dir/redis" "$dir/pg"
  dir=$(cd "$dir" && pwd)

  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --dir "$dir/redis" --pidfile "$dir/redis/redis.pid" \
    --logfile "$dir/redis/redis.log" >&2
  for _ in $(seq 1 50); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$redis_port" ping >/dev/null || { cat "$dir/redis/redis.log" >&2; exit 1; }
  echo "$redis_port" >"$dir/redis/port"

  pg_port=$(free_port)
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir/pg"; fi
  as_pg "$bin/initdb" -D "$dir/pg/data" -U weft --auth=trust -E UTF8 >"$dir/pg/initdb.log" 2>&1 \
    || { cat "$dir/pg/initdb.log" >&2; exit 1; }
  as_pg "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/postgres.log" -w -t 60 \
    -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1 -c max_connections=300" start >&2 \
    || { cat "$dir/pg/postgres.log" >&2; exit 1; }

  echo "export WEFT_TEST_REDIS_URL=redis://127.0.0.1:$redis_port"
  echo "export WEFT_TEST_POSTGRES_URL=postgres://weft@127.0.0.1:$pg_port/postgres"
}

stop() {
  [ -d "$dir" ] || return 0
  if [ -f "$dir/redis/port" ]; then
    redis-cli -p "$(cat "$dir/redis/port")" shutdown nosave >/dev/null 2>&1 || true
  fi
  if [ -d "$dir/pg/data" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}

case "$command" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: cluster-services.sh start|stop DIR" >&2; exit 2 ;;
esac
