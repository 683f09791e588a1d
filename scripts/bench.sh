#!/usr/bin/env bash
# Benchmarks Charcha's message hot path against a bare relay (charcha-bench,
# src/bin/charcha-bench.rs). `./dev bench …` runs this.
#
#   scripts/bench.sh                 relay, then Charcha embedded (release builds)
#   scripts/bench.sh --scaled        … then Charcha on Redis + Kafka + FerretDB, one and three instances
#   scripts/bench.sh --quick         short checked runs (debug builds): relay and Charcha embedded,
#                                    counts only (no loss, duplicates, reordering, errors), and small
#                                    connect and sign-up runs (no failures, nothing dropped); for the tests
#   scripts/bench.sh --quick --scaled  the same for the scaled services instead: the history worker alone
#                                    and the store's ceiling, small (every message stored); for the tests
#   scripts/bench.sh --conns         connections instead of messages (Charcha embedded, release):
#                                    5,000 and CONNS_MAX (default 19,500) users connecting at once and
#                                    idling, then 1,000 sign-ups + 1,000 log-ins at concurrency 50
#   scripts/bench.sh --repeat N      every load N times, interleaved (a b c d, a b c d, …; then (e) N times):
#                                    the table shows each figure's median and lists every run. Single runs
#                                    of one load vary by ±15 % here (BENCHMARKS.md), so targets are judged
#                                    on medians
#   scripts/bench.sh … OPTIONS       any other option goes to every `charcha-bench run` (e.g. --duration 20)
#
# Loads (closed loop: W sends in flight per user; users in 1:1 pairs, both ways):
#   (a) 200 users W=1   (b) 200 users W=8   (c) 1000 users W=1   (d) one idle pair W=1 (latency)
#   (e) open loop at half of Charcha embedded's (b) throughput, 200 users (p99 latency at that rate)
# Prints the comparison table (relay, the original Node app's figures, Charcha);
# the raw JSON lines are in ${CARGO_TARGET_DIR:-target}/bench/last-run.jsonl.
# Exit status: non-zero when a run failed or any run reported a count failure
# (the table is printed first). Every process started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# say, die, have
# shellcheck source=scripts/common.sh
. "$ROOT/scripts/common.sh"

QUICK=0
SCALED=0
CONNS=0
REPEAT=1
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --scaled) SCALED=1 ;;
    --conns) CONNS=1 ;;
    --repeat)
      [ $# -ge 2 ] || die "--repeat needs a count"
      REPEAT="$2"; shift
      [[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || die "--repeat needs a count of 1 or more, not \`$REPEAT'" ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) EXTRA+=("$1") ;;
  esac
  shift
done

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
OUT="$TARGET_DIR/bench"
mkdir -p "$OUT"
# A bench-only secret (48 characters): tokens in the cache stay valid across runs.
BENCH_JWT_SECRET="charcha-bench-only-secret-0123456789abcdefghijkl"
# /metrics is not public: the servers get this token, charcha-bench conns
# reads their counters with it (CHARCHA_METRICS_TOKEN in its environment).
BENCH_METRICS_TOKEN="charcha-bench-metrics-0123456789"
export CHARCHA_METRICS_TOKEN="$BENCH_METRICS_TOKEN"

if [ "$QUICK" -eq 1 ]; then PROFILE=debug; PROFILE_FLAG=(); else PROFILE=release; PROFILE_FLAG=(--release); fi
CHARCHA="$TARGET_DIR/$PROFILE/charcha"
BENCH="$TARGET_DIR/$PROFILE/charcha-bench"

# cargo with cargo-leptos' settings, so the build shares its artifacts.
cargo_like() { RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cfg erase_components" LEPTOS_OUTPUT_NAME=charcha cargo "$@"; }

build() {
  say "building charcha and charcha-bench ($PROFILE)"
  cargo_like build "${PROFILE_FLAG[@]}" --features ssr --bin charcha
  cargo_like build "${PROFILE_FLAG[@]}" --features bench --bin charcha-bench
  [ -x "$CHARCHA" ] || die "server binary not found at $CHARCHA after the build"
  [ -x "$BENCH" ] || die "charcha-bench not found at $BENCH after the build"
}

# ---------------------------------------------------------------- processes

PIDS=()
STARTED_SERVICES=()
cleanup() {
  local p i
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  PIDS=()
  # Services this script started (not the ones that were already running).
  if [ ${#STARTED_SERVICES[@]} -gt 0 ]; then
    "$ROOT/scripts/services.sh" stop "${STARTED_SERVICES[@]}" || true
    STARTED_SERVICES=()
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start LOG CMD... — runs CMD in the background; its pid is in $STARTED.
start() {
  local log=$1; shift
  "$@" > "$log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

# stop PID... — SIGTERM, then SIGKILL after 10 s.
stop() {
  local p i keep=() q
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  for q in "${PIDS[@]}"; do
    for p in "$@"; do [ "$q" = "$p" ] && continue 2; done
    keep+=("$q")
  done
  PIDS=("${keep[@]}")
}

# Below Linux's ephemeral range (32768-60999 by default): after thousands of
# client sockets, a port in that range may still be held by one (TIME_WAIT)
# and a server binding it fails, though nothing answers a probe on it.
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((10000 + RANDOM % 22000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

# health_ok HOST:PORT — GET /api/health answers 200.
health_ok() (
  exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
  printf 'GET /api/health HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
  read -r -t 5 line <&3 || exit 1
  [[ $line == *" 200"* ]]
) 2>/dev/null

# wait_ready HOST:PORT PID LOG NAME — until /api/health is 200 (60 s).
wait_ready() {
  local i
  for ((i = 0; i < 600; i++)); do
    if health_ok "$1"; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then
      tail -n 30 "$3" >&2 || true
      die "$4 exited during start-up (log: $3)"
    fi
    sleep 0.1
  done
  tail -n 30 "$3" >&2 || true
  die "$4 did not answer http://$1/api/health within 60 s (log: $3)"
}

# ---------------------------------------------------------------- servers

start_relay() {
  local port; port="$(free_port)"
  start "$OUT/relay.log" "$BENCH" relay --addr "127.0.0.1:$port"
  wait_ready "127.0.0.1:$port" "$STARTED" "$OUT/relay.log" relay
  URL="http://127.0.0.1:$port"; SERVER_PIDS="$STARTED"
  say "relay on $URL (pid $STARTED)"
}

# charcha_env ADDR DATA_DIR — the environment every Charcha process gets.
charcha_env() {
  CHARCHA_ENV_VARS=(
    "CHARCHA_DATA_DIR=$2"
    # As the Dockerfile ships it (see there, and BENCHMARKS.md "Connections").
    "MIMALLOC_PURGE_DELAY=0"
    "JWT_SECRET=$BENCH_JWT_SECRET"
    "CHARCHA_METRICS_TOKEN=$BENCH_METRICS_TOKEN"
    "CHARCHA_AUTH_RATE_PER_MINUTE=1000000"
    "CHARCHA_SEND_RATE_PER_MINUTE=100000000"
    "LEPTOS_SITE_ADDR=$1"
    "LEPTOS_SITE_ROOT=target/site"
    "LEPTOS_OUTPUT_NAME=charcha"
    "RUST_LOG=warn"
  )
}

# start_charcha NAME DATA_DIR [VAR=VALUE...] — one instance on a free port;
# sets $STARTED, $ADDR and $URL.
start_charcha() {
  local name=$1 data=$2 port; shift 2
  port="$(free_port)"
  ADDR="127.0.0.1:$port"
  mkdir -p "$data"
  charcha_env "$ADDR" "$data"
  start "$OUT/$name.log" env "${CHARCHA_ENV_VARS[@]}" "$@" "$CHARCHA"
  wait_ready "$ADDR" "$STARTED" "$OUT/$name.log" "$name"
  URL="http://$ADDR"
  say "$name on $URL (pid $STARTED, log $OUT/$name.log)"
}

# ---------------------------------------------------------------- loads

JSONL="$OUT/last-run.jsonl"
FAILED=()    # runs that did not complete (setup or network failures)
NOT_OK=()    # runs that completed with a count failure (lost, duplicated, reordered, errors…)

json_field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" <<<"$2" | head -n 1; }

# run_load LABEL TARGET [charcha-bench run options...] — one load, one JSON line.
run_load() {
  local label=$1 target=$2 line rc=0; shift 2
  if [ -n "${BEFORE_EACH:-}" ]; then "$BEFORE_EACH"; fi
  say "$label: $* (target $target at $URL)"
  line="$("$BENCH" run --json --label "$label" --target "$target" --url "$URL" --server-pid "$SERVER_PIDS" \
    "$@" "${EXTRA[@]}")" || rc=$?
  if [ -z "$line" ]; then line="{\"label\":\"$label\",\"error\":\"charcha-bench exited with $rc and no report\",\"ok\":false}"; fi
  printf '%s\n' "$line" >> "$JSONL"
  if [ "$rc" -ne 0 ]; then
    FAILED+=("$label")
    say "$label: FAILED (exit $rc)"
  else
    grep -q '"ok":true' <<<"$line" || NOT_OK+=("$label")
    say "$label: $(json_field delivered_per_s "$line") msg/s delivered, send→recv p50 $(sed -n 's/.*"delivery_latency":{[^}]*"p50_ms":\([0-9.]*\).*/\1/p' <<<"$line") ms, p99 $(sed -n 's/.*"delivery_latency":{[^}]*"p99_ms":\([0-9.]*\).*/\1/p' <<<"$line") ms"
  fi
}

LOAD_A=(--users 200 --in-flight 1)
LOAD_B=(--users 200 --in-flight 8)
LOAD_C=(--users 1000 --in-flight 1)
LOAD_D=(--users 2 --in-flight 1)

# loads_abcd COLUMN TARGET [options...] — loads (a) to (d) against $URL,
# $REPEAT rounds of them.
loads_abcd() {
  local col=$1 target=$2 round; shift 2
  for ((round = 1; round <= REPEAT; round++)); do
    [ "$REPEAT" -gt 1 ] && say "$col: round $round of $REPEAT"
    run_load "$col/a" "$target" "${LOAD_A[@]}" "$@"
    run_load "$col/b" "$target" "${LOAD_B[@]}" "$@"
    run_load "$col/c" "$target" "${LOAD_C[@]}" "$@"
    run_load "$col/d" "$target" "${LOAD_D[@]}" "$@"
  done
}

load_e() {
  local col=$1 target=$2 round; shift 2
  if [ -z "${RATE:-}" ]; then say "$col/e: skipped (no rate: Charcha embedded's (b) did not run)"; return; fi
  for ((round = 1; round <= REPEAT; round++)); do
    run_load "$col/e" "$target" --users 200 --rate "$RATE" "$@"
  done
}

# fresh_embedded — (re)starts Charcha embedded on a copy of the seed store
# ($OUT/embedded/seed: the accounts, no messages); sets $EMBEDDED_PID,
# $SERVER_PIDS and $URL. It stops only the instance it started itself (a
# stale pid in $SERVER_PIDS may belong to another process by now).
EMBEDDED_PID=""
fresh_embedded() {
  local emb="$OUT/embedded"
  [ -n "$EMBEDDED_PID" ] && stop "$EMBEDDED_PID"
  rm -rf "$emb/data"
  cp -a "$emb/seed" "$emb/data"
  start_charcha embedded "$emb/data"
  EMBEDDED_PID="$STARTED"
  SERVER_PIDS="$STARTED"
}

# ---------------------------------------------------------------- runs

quick() {
  build
  : > "$JSONL"
  local rc=0
  start_relay
  say "quick check: relay"
  "$BENCH" run --quick --target relay --url "$URL" --label quick-relay "${EXTRA[@]}" || rc=1
  stop "$SERVER_PIDS"
  start_charcha quick-embedded "$OUT/quick/data"
  SERVER_PIDS="$STARTED"
  say "quick check: Charcha embedded"
  "$BENCH" run --quick --url "$URL" --tokens "$OUT/quick/tokens.json" --tokens-key quick-embedded \
    --server-pid "$SERVER_PIDS" --label quick-embedded "${EXTRA[@]}" || rc=1
  say "quick check: 50 users connecting at once, each watching 4 (all connect, none dropped)"
  "$BENCH" conns --users 50 --watch 4 --hold 1 --url "$URL" --tokens "$OUT/quick/tokens.json" \
    --tokens-key quick-embedded --server-pid "$SERVER_PIDS" --label quick-conns || rc=1
  say "quick check: 20 sign-ups and log-ins (only 201/200, or 429/503 with Retry-After)"
  "$BENCH" signup --users 20 --concurrency 5 --idle 0 --url "$URL" --server-pid "$SERVER_PIDS" \
    --label quick-signup || rc=1
  stop "$SERVER_PIDS"
  [ "$rc" -eq 0 ] || die "bench --quick: a count check failed (reports above)"
  say "bench --quick: ok"
}

# quick_scaled — `--quick --scaled`: the history worker alone on the scaled
# services (Kafka and the MongoDB stand-in), then the store's own ceiling,
# at sizes that take seconds. Counts only: every appended message is stored
# and every ceiling batch saved in full, or charcha-bench exits non-zero.
# (`--quick` alone checks the relay and the embedded mode.)
quick_scaled() {
  build
  scaled_services
  scaled_vars quick-worker
  say "quick check: the history worker alone, then the store's ceiling (every message stored)"
  env "${SCALED_VARS[@]}" "$BENCH" worker --label quick-worker \
    --messages 3000 --conversations 50 --rate 500 --seconds 2 --ceiling 3000 \
    || die "bench --quick --scaled: the worker benchmark failed (report above)"
  say "bench --quick --scaled: ok"
}

scaled_services() {
  local status s
  status="$("$ROOT/scripts/services.sh" status)"
  for s in redis kafka mongo; do
    grep -q "^$s: running" <<<"$status" || STARTED_SERVICES+=("$s")
  done
  "$ROOT/scripts/services.sh" start
  local line
  while IFS= read -r line; do
    case "$line" in
      REDIS_URL=*) S_REDIS_URL="${line#*=}" ;;
      KAFKA_BROKERS=*) S_KAFKA_BROKERS="${line#*=}" ;;
      MONGODB_URI=*) S_MONGODB_URI="${line#*=}" ;;
    esac
  done < <("$ROOT/scripts/services.sh" env)
  [ -n "${S_REDIS_URL:-}" ] && [ -n "${S_KAFKA_BROKERS:-}" ] && [ -n "${S_MONGODB_URI:-}" ] \
    || die "scripts/services.sh env did not print REDIS_URL, KAFKA_BROKERS and MONGODB_URI"
}

# warm_services — drives the services with load (a) for 30 s, unrecorded,
# on a throwaway topic and database. Kafka's JVM compiles its hot paths and
# PostgreSQL fills its caches over the first minute of load: on services
# just started, four loads (a) in a row gave 7,944, 8,409, 9,494 and 10,438
# msg/s, and a warm stack 8,807-11,736 (BENCHMARKS.md, "Scaled mode"). The
# scaled figures are meant to be a running deployment's, as the relay's and
# the embedded mode's are, so they are taken on a warm stack whoever
# started it.
warm_services() {
  scaled_vars warmup
  start_charcha scaled-warmup "$OUT/scaled/warmup-data" "${SCALED_VARS[@]}"
  say "warming the services up: load (a) for 30 s, not recorded"
  "$BENCH" run "${LOAD_A[@]}" --duration 30 --url "$URL" --server-pid "$STARTED" \
    --tokens "$OUT/scaled/warmup-tokens.json" --label scaled-warmup > "$OUT/scaled-warmup.txt" 2>&1 \
    || say "the warm-up load failed (log: $OUT/scaled-warmup.txt); measuring anyway"
  stop "$STARTED"
  rm -rf "$OUT/scaled/warmup-data" "$OUT/scaled/warmup-tokens.json"
}

# scaled_vars NAME — fresh topic, Redis prefix and database for this run.
scaled_vars() {
  local id="$1_$(date +%Y%m%d%H%M%S)_$$"
  SCALED_VARS=(
    "REDIS_URL=$S_REDIS_URL"
    "KAFKA_BROKERS=$S_KAFKA_BROKERS"
    "MONGODB_URI=${S_MONGODB_URI%/*}/bench_$id"
    "KAFKA_TOPIC=bench-$id"
    "CHARCHA_REDIS_PREFIX=bench-$id"
  )
}

scaled_run() {
  local n=$1 col="scaled$1" i urls=() pids=() data
  scaled_vars "$col"
  data="$OUT/scaled/$col-data"
  rm -rf "$data"
  if [ "$n" -eq 1 ]; then
    start_charcha "$col" "$data" "${SCALED_VARS[@]}"
    urls=("http://$ADDR"); pids=("$STARTED")
  else
    # As in docker-compose.yml: instances without a worker, one history worker.
    for ((i = 1; i <= n; i++)); do
      start_charcha "$col-$i" "$data" "${SCALED_VARS[@]}" CHARCHA_WORKER=off
      urls+=("http://$ADDR"); pids+=("$STARTED")
    done
    charcha_env "127.0.0.1:0" "$data"
    start "$OUT/$col-worker.log" env "${CHARCHA_ENV_VARS[@]}" "${SCALED_VARS[@]}" \
      CHARCHA_WORKER=on WORKER_INDEX=0 WORKER_COUNT=1 "$CHARCHA" worker
    pids+=("$STARTED")
  fi
  URL="$(IFS=,; echo "${urls[*]}")"
  SERVER_PIDS="$(IFS=,; echo "${pids[*]}")"
  local tokens=(--tokens "$OUT/scaled/$col-tokens.json")
  rm -f "$OUT/scaled/$col-tokens.json"
  loads_abcd "$col" charcha "${tokens[@]}"
  load_e "$col" charcha "${tokens[@]}"
  stop "${pids[@]}"
}

full() {
  build
  : > "$JSONL"
  : > "$OUT/group.jsonl"
  local emb="$OUT/embedded"
  # A fresh store every run: history accumulated over earlier runs changes
  # the figures (see BENCHMARKS.md), and each run must be comparable.
  rm -rf "$emb"
  mkdir -p "$emb"

  start_relay
  loads_abcd relay relay
  stop "$SERVER_PIDS"

  # Every embedded run starts from the same store: the bench accounts and
  # no messages. On one store kept across the runs, each round began with
  # the history of all before it (over 2 M messages by the last with
  # --repeat 3), so a repeat did not measure what the first run did. What
  # a large history costs is measured on its own (BENCHMARKS.md, "History
  # size matters").
  local tokens=(--tokens "$emb/tokens.json" --tokens-key embedded)
  start_charcha embedded-seed "$emb/seed"
  "$BENCH" run --accounts-only --users "${LOAD_C[1]}" --url "$URL" --label embedded-seed "${tokens[@]}" \
    || die "could not sign up the bench accounts (log: $OUT/embedded-seed.log)"
  stop "$STARTED"
  BEFORE_EACH=fresh_embedded
  loads_abcd embedded charcha "${tokens[@]}"
  # (b)'s median, as the table shows it.
  RATE="$("$BENCH" table --figure embedded/b /delivered_per_s "$JSONL" || true)"
  if [ -n "$RATE" ]; then RATE="$(awk -v r="$RATE" 'BEGIN { printf "%d", r / 2 }')"; fi
  [ "${RATE:-0}" -gt 0 ] 2>/dev/null || RATE=""
  [ -n "$RATE" ] && say "(e) rate: half of Charcha embedded's (b) (median of $REPEAT) = $RATE msg/s"
  load_e embedded charcha "${tokens[@]}"
  fresh_embedded
  group_fanout embedded "${tokens[@]}"
  BEFORE_EACH=""
  stop "$EMBEDDED_PID"
  EMBEDDED_PID=""

  start_relay
  load_e relay relay
  stop "$SERVER_PIDS"

  if [ "$SCALED" -eq 1 ]; then
    scaled_services
    warm_services
    scaled_run 1
    scaled_run 3
    worker_bench
  fi

  echo
  "$BENCH" table "$JSONL"
  echo
  local extra=""
  [ "$SCALED" -eq 1 ] && extra="; history worker: $OUT/worker.jsonl"
  say "raw figures: $JSONL (group fan-out: $OUT/group.jsonl$extra)"
  if [ ${#NOT_OK[@]} -gt 0 ]; then
    printf '\n!!! count failures (lost, duplicated, reordered, unacked or errors; see the table): %s\n' "${NOT_OK[*]}" >&2
  fi
  if [ ${#FAILED[@]} -gt 0 ]; then die "failed runs: ${FAILED[*]}"; fi
  [ ${#NOT_OK[@]} -eq 0 ] || exit 1
}

# worker_bench — the history worker alone (charcha-bench worker, issue 7's
# worker row) on a fresh topic and database: the rate it stores 60,000
# messages over 1,000 conversations, the history lag at 5,000 msg/s, and
# the store's own ceiling (60,000 messages saved without log or worker,
# one conversation per task: what no worker over this store can beat).
# JSON lines in $OUT/worker.jsonl, kept apart from the 1:1 table.
worker_bench() {
  local line
  scaled_vars worker
  say "history worker alone: 60,000 messages over 1,000 conversations, then 5,000 msg/s for 10 s, then the store's ceiling"
  line="$(env "${SCALED_VARS[@]}" "$BENCH" worker --json --label scaled/worker \
    --messages 60000 --conversations 1000 --rate 5000 --seconds 10 --ceiling 60000)" || FAILED+=("scaled/worker")
  printf '%s\n' "$line" | tee -a "$OUT/worker.jsonl"
}

# group_fanout COLUMN [options] — one message at a time, then 8 in flight,
# to a 100-member group on the running server (issue 9's fan-out row);
# JSON lines in $OUT/group.jsonl, kept apart from the 1:1 table.
group_fanout() {
  local col=$1 window line; shift
  for window in 1 8; do
    line="$("$BENCH" group --json --url "$URL" --members 100 --messages 300 --window "$window" \
      --label "$col/group-w$window" "$@")" || FAILED+=("$col/group-w$window")
    printf '%s\n' "$line" | tee -a "$OUT/group.jsonl"
  done
}

# The connection benchmarks. The data dir and token cache are kept between
# runs: signing up 20,000 users (argon2) takes minutes and is not what is
# measured here.
conns_runs() {
  build
  local dir="$OUT/conns" max="${CONNS_MAX:-19500}" line
  mkdir -p "$dir"
  : > "$dir/last-run.jsonl"
  start_charcha conns-embedded "$dir/data"
  SERVER_PIDS="$STARTED"
  for n in 5000 "$max"; do
    line="$("$BENCH" conns --json --users "$n" --watch 8 --hold 20 --url "$URL" --tokens "$dir/tokens.json" \
      --tokens-key conns-embedded --signup-concurrency 32 --server-pid "$SERVER_PIDS" --label "conns-$n" "${EXTRA[@]}")" \
      || FAILED+=("conns-$n")
    printf '%s\n' "$line" | tee -a "$dir/last-run.jsonl"
  done
  stop "$SERVER_PIDS"
  # Sign-ups on a fresh server: its memory before and after is the point.
  rm -rf "$dir/signup-data"
  start_charcha signup-embedded "$dir/signup-data"
  SERVER_PIDS="$STARTED"
  line="$("$BENCH" signup --json --users 1000 --concurrency 50 --idle 60 --url "$URL" --server-pid "$SERVER_PIDS" \
    --label signup-1000)" || FAILED+=("signup-1000")
  printf '%s\n' "$line" | tee -a "$dir/last-run.jsonl"
  stop "$SERVER_PIDS"
  say "raw figures: $dir/last-run.jsonl"
  if [ ${#FAILED[@]} -gt 0 ]; then die "failed runs: ${FAILED[*]}"; fi
}

if [ "$QUICK" -eq 1 ] && [ "$SCALED" -eq 1 ]; then quick_scaled; elif [ "$QUICK" -eq 1 ]; then quick; elif [ "$CONNS" -eq 1 ]; then conns_runs; else full; fi
