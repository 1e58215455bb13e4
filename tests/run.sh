#!/usr/bin/env bash
# Runs every test of Weft, the same way locally and in CI:
#   1. Rust unit tests and end-to-end tests (real WebSockets, real sled dirs), release build;
#   2. the Node suites (real npm yjs + y-websocket clients, and the browser tests) against the
#      release `weft` binary built in step 1.
# Needs cargo and node/npm; the browser tests need Debian's chromium, the cluster tests Debian's
# redis-server and postgresql (each installed here if missing and we are root with apt). The
# cluster tests get a throwaway Redis and PostgreSQL (tests/cluster-services.sh), stopped and
# deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== starting throwaway Redis and PostgreSQL for the cluster tests"
services=$(mktemp -d)
chmod 755 "$services" # PostgreSQL runs as its own user when we are root
trap 'bash tests/cluster-services.sh stop "$services/svc"; rm -rf "$services"' EXIT
service_env=$(bash tests/cluster-services.sh start "$services/svc")
eval "$service_env"

echo "== cargo test (release)"
cargo build --release --bins
cargo test --release

echo "== node end-to-end suites"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
export WEFT_BIN="$PWD/target/release/weft"
(cd tests/js && npm test --silent)
