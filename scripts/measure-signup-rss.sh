#!/usr/bin/env bash
# Server memory under a sign-up/log-in burst (issue 8, password hashing):
# 1,000 sign-ups then 1,000 log-ins at concurrency 50 against a fresh
# embedded server, then one idle minute. Prints the HTTP statuses and the
# server's VmRSS / VmHWM (peak) after each phase. Needs a built server
# (`./dev test` or `cargo leptos build`) and curl.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${CHARCHA_BIN:-$TARGET_DIR/debug/charcha}"
PORT="${PORT:-3900}"
DATA="$(mktemp -d)"
CHARCHA_DATA_DIR="$DATA" LEPTOS_SITE_ADDR="127.0.0.1:$PORT" CHARCHA_AUTH_RATE_PER_MINUTE=1000000 \
  JWT_SECRET=measure-only-secret-0123456789abcdefghijklmnopqr LEPTOS_SITE_ROOT="${CHARCHA_SITE_ROOT:-$ROOT/target/site}" \
  "$BIN" >"$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/api/health" && break; sleep 0.2; done
rss() { grep -E "VmRSS|VmHWM" "/proc/$PID/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }
burst() { # burst PATH JSON-TEMPLATE ({} is the user number)
  seq 1000 | xargs -P 50 -I{} curl -s -o /dev/null -w "%{http_code}\n" -H 'content-type: application/json' \
    -d "$2" "http://127.0.0.1:$PORT$1" | sort | uniq -c
}
echo "start: $(rss)"
burst /api/auth/signup '{"email":"m{}@example.com","password":"correct-horse-1","full_name":"M {}"}'
echo "after 1,000 sign-ups: $(rss)"
burst /api/auth/login '{"email":"m{}@example.com","password":"correct-horse-1"}'
echo "after 1,000 log-ins: $(rss)"
sleep 60
echo "one minute later: $(rss)"
