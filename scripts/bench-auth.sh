#!/usr/bin/env bash
# Benchmark of the foundation (issue 2): idle memory of `pinglayer serve`, and authenticated
# `GET /api/v1/auth/me` throughput with a JWT and with an API key (wrk, 2 threads, 32 conns).
#
#   scripts/bench-auth.sh                  # SQLite in a temporary data directory
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/bench-auth.sh
#                                          # PostgreSQL (a fresh database pl_bench_* is created)
# Needs wrk (Debian: apt-get install wrk). Results go to stdout; record them in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
PORT="${PORT:-18090}"
cargo build --release -q -p pinglayer
BIN=target/release/pinglayer
DATA=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"; [ -n "${PGDB:-}" ] && psql "$BENCH_DATABASE_URL" -qc "drop database if exists $PGDB" >/dev/null 2>&1 || true' EXIT

if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  PGDB="pl_bench_$$"
  psql "$BENCH_DATABASE_URL" -qc "create database $PGDB"
  export DATABASE_URL="${BENCH_DATABASE_URL%/*}/$PGDB"
  DBNAME="PostgreSQL"
else
  unset DATABASE_URL
  DBNAME="SQLite"
fi

# The per-credential rate limit would (correctly) stop a single-token benchmark; turn it off.
PINGLAYER_RATE_LIMIT_PER_SECOND=0 PINGLAYER_LOG=warn $BIN serve --data-dir "$DATA" --bind "127.0.0.1:$PORT" &
PID=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
sleep 2
echo "database: $DBNAME"
echo "idle RSS: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$PID/status)"

BODY='{"business_name":"Bench","name":"B","email":"bench@example.com","password":"correct horse battery"}'
TOKEN=$(curl -sf "http://127.0.0.1:$PORT/api/v1/auth/register" -H 'content-type: application/json' -d "$BODY" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
KEY=$(curl -sf "http://127.0.0.1:$PORT/api/v1/api-keys" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"name":"bench","role":"viewer"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

echo "--- GET /api/v1/auth/me with a JWT"
wrk -t2 -c32 -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/auth/me" \
  | grep -E 'Requests/sec|Latency|99%|Non-2xx'
echo "--- GET /api/v1/auth/me with an API key"
wrk -t2 -c32 -d"$DURATION" --latency -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/api/v1/auth/me" \
  | grep -E 'Requests/sec|Latency|99%|Non-2xx'
echo "RSS after load: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$PID/status)"
