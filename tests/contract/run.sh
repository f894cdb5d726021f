#!/usr/bin/env bash
# The OpenAPI contract, checked against a real server: schemathesis (every check on) runs
# against the built `cellule` on SQLite and on PostgreSQL, once with a coordinator's token and
# once with a referrer's, against the demo cellule (`cellule demo`). Any failure fails the run.
#
#   tests/contract/run.sh            (after `cargo build` or `cargo test`: uses the debug build)
#
# Environment:
#   CONTRACT_BIN                the binary (default: $CARGO_TARGET_DIR or target, /debug/cellule)
#   SCHEMATHESIS                the schemathesis command (default: `schemathesis` on PATH)
#   CELLULE_TEST_POSTGRES_URL   a PostgreSQL database whose user may create databases; a fresh
#                               database is created beside it and dropped at the end
#   CONTRACT_BACKENDS           default "sqlite postgres"
#   CONTRACT_MAX_EXAMPLES       test cases per operation and phase (default 25)
#   CONTRACT_SEED               hypothesis seed (default: fixed, so CI is reproducible)
#
# The server runs with the rate limits off (CELLULE_RATE_LIMIT__ENABLED=false): the generator
# sends hundreds of requests a second with one token and would otherwise test the limiter
# (tests/api/limits.rs does) instead of the handlers. Nothing else differs from the defaults.
# Exclusions: none. positive_data_acceptance accepts 422 on the operations listed, each with its
# reason, in tests/contract/schemathesis.toml (docs/api.md, "What the schema cannot say").
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

BIN=${CONTRACT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/cellule}
ST=${SCHEMATHESIS:-schemathesis}
BACKENDS=${CONTRACT_BACKENDS:-sqlite postgres}
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-25}
SEED=${CONTRACT_SEED:-20261207}
REPORTS=${CONTRACT_REPORTS:-${CARGO_TARGET_DIR:-$ROOT/target}/contract}

[ -x "$BIN" ] || { echo "contract: no binary at $BIN (run cargo build first)" >&2; exit 1; }
command -v "$ST" >/dev/null || { echo "contract: schemathesis not found ($ST)" >&2; exit 1; }

WORK=$(mktemp -d)
SERVER_PID=""
PG_DB=""
PG_ADMIN_URL=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$PG_DB" ]; then
    psql "$PG_ADMIN_URL" -q -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$REPORTS"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# One export line of the demo's output: `export NAME=value`.
demo_value() {
  sed -n "s/^export $1=//p" "$2" | head -n1
}

failures=0
for backend in $BACKENDS; do
  dir="$WORK/$backend"
  mkdir -p "$dir"
  chmod 700 "$dir"
  port=$(free_port)
  export CELLULE_DATA_DIR="$dir/data" CELLULE_BIND="127.0.0.1:$port"
  case "$backend" in
    sqlite) unset CELLULE_DATABASE ;;
    postgres)
      base=${CELLULE_TEST_POSTGRES_URL:?contract: CELLULE_TEST_POSTGRES_URL is required for the postgres backend}
      PG_ADMIN_URL=$base
      PG_DB="cellule_contract_$$_$(date +%s)"
      psql "$PG_ADMIN_URL" -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE \"$PG_DB\""
      export CELLULE_DATABASE="${base%/*}/$PG_DB"
      ;;
    *) echo "contract: unknown backend $backend" >&2; exit 1 ;;
  esac

  echo "contract[$backend]: cellule demo"
  "$BIN" demo >"$dir/demo.out" 2>"$dir/demo.err" </dev/null || { cat "$dir/demo.err" >&2; exit 1; }
  export CONTRACT_CELLULE=demo
  CONTRACT_CASE=$(demo_value CASE "$dir/demo.out")
  CONTRACT_SESSION=$(demo_value SESSION "$dir/demo.out")
  export CONTRACT_CASE CONTRACT_SESSION
  coordinator=$(demo_value COORDINATOR "$dir/demo.out")
  referrer=$(demo_value REFERRER_CCAS "$dir/demo.out")
  [ -n "$coordinator" ] && [ -n "$referrer" ] && [ -n "$CONTRACT_CASE" ] \
    || { echo "contract: the demo printed no tokens or identifiers" >&2; exit 1; }

  echo "contract[$backend]: cellule serve on $CELLULE_BIND"
  CELLULE_RATE_LIMIT__ENABLED=false "$BIN" serve >"$dir/server.log" 2>&1 </dev/null &
  SERVER_PID=$!
  base_url="http://$CELLULE_BIND"
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$base_url/readyz" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    sleep 0.2
  done

  for who in coordinator referrer; do
    token=$coordinator
    [ "$who" = referrer ] && token=$referrer
    echo "contract[$backend]: schemathesis as the $who (--checks all, --max-examples $MAX_EXAMPLES, seed $SEED)"
    # From the work directory: hypothesis keeps its example database there, not in the clone.
    # One worker: with two, CPython 3.11's parser raced in hypothesis ("AST constructor
    # recursion depth mismatch"), an error of the tool, not of the API.
    if (cd "$dir" && "$ST" --config-file "$ROOT/tests/contract/schemathesis.toml" run \
          "$base_url/openapi.json" --url "$base_url" \
          --checks all \
          --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1 \
          --request-timeout 10 \
          --header "Authorization: Bearer $token" \
          --report junit --report-junit-path "$REPORTS/$backend-$who.xml" \
          --no-color); then
      echo "contract[$backend]: $who passed"
    else
      echo "contract[$backend]: $who FAILED" >&2
      failures=$((failures + 1))
    fi
  done

  # A panic is a failure even when every answer conformed.
  if grep -q "panicked" "$dir/server.log"; then
    echo "contract[$backend]: the server panicked:" >&2
    grep -m5 "panicked" "$dir/server.log" >&2
    failures=$((failures + 1))
  fi
  kill "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
  if [ "$backend" = postgres ]; then
    psql "$PG_ADMIN_URL" -q -c "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null
    PG_DB=""
  fi
done

if [ "$failures" -ne 0 ]; then
  echo "contract: $failures run(s) failed; JUnit reports in $REPORTS" >&2
  exit 1
fi
echo "contract: schemathesis passed on: $BACKENDS"
