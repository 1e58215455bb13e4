#!/usr/bin/env bash
# Runs every test of Weft, the same way locally and in CI:
#   1. Rust unit tests and end-to-end tests (real WebSockets, real sled dirs), release build;
#   2. the Node suites (real npm yjs + y-websocket clients, and the browser tests) against the
#      release `weft` binary built in step 1.
# Needs cargo and node/npm; the browser tests need Debian's chromium (installed here if missing
# and we are root with apt).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

echo "== cargo test (release)"
cargo build --release --bins
cargo test --release

echo "== node end-to-end suites"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
export WEFT_BIN="$PWD/target/release/weft"
(cd tests/js && npm test --silent)
