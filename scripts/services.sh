#!/usr/bin/env bash
# Real backing services for the scaled mode, as plain processes on 127.0.0.1
# (no Docker engine needed): Redis (Debian), Apache Kafka in KRaft mode (jars
# from Maven Central, on the machine's Java 17) and FerretDB (a MongoDB-
# compatible server, Go module) on Debian's PostgreSQL.
#
#   scripts/services.sh install               install what is missing (cached under ~/.cache/charcha)
#   scripts/services.sh start [SERVICE...]    start (default: all) and wait until ready
#   scripts/services.sh stop  [SERVICE...]    graceful stop (SIGTERM)
#   scripts/services.sh kill  [SERVICE...]    SIGKILL
#   scripts/services.sh status | env          what runs / the env vars Charcha needs
#
# SERVICE is redis, kafka or mongo. Data and logs live in $CHARCHA_SERVICES_DIR
# (default ~/.cache/charcha/services-run); `wipe` deletes them.
#
# mongo is FerretDB in front of its own PostgreSQL cluster (127.0.0.1:
# $CHARCHA_POSTGRES_PORT, default the MongoDB port - 11586 = 15432, so a second
# set of services on other ports gets its own). PostgreSQL plays the part of
# mongod's storage engine: `stop mongo` stops both, `kill mongo` SIGKILLs
# FerretDB and aborts PostgreSQL (immediate shutdown: no checkpoint, crash
# recovery on the next start), as when a mongod dies. PostgreSQL will not run
# as root, so as root it runs as the `postgres` user; if that user cannot
# reach $CHARCHA_SERVICES_DIR (e.g. under /root), its data directory is
# /var/lib/postgresql/charcha/<hash of the services dir>, linked from
# $CHARCHA_SERVICES_DIR/postgres. CHARCHA_FERRETDB_HANDLER=sqlite selects
# FerretDB's SQLite backend instead: same MongoDB semantics in our checks, but
# it pushes no filter but {_id: X} down, so a history page reads the whole
# collection (4-11 s at 100k-200k messages, against 75-175 ms on PostgreSQL),
# and it has one writer at a time.
set -euo pipefail

CACHE="${CHARCHA_CACHE:-$HOME/.cache/charcha}"
RUN="${CHARCHA_SERVICES_DIR:-$CACHE/services-run}"
REDIS_PORT="${CHARCHA_REDIS_PORT:-16379}"
KAFKA_PORT="${CHARCHA_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${CHARCHA_KAFKA_CONTROLLER_PORT:-19093}"
MONGO_PORT="${CHARCHA_MONGO_PORT:-27018}"
PG_PORT="${CHARCHA_POSTGRES_PORT:-$((MONGO_PORT - 11586))}"
FERRETDB_HANDLER="${CHARCHA_FERRETDB_HANDLER:-postgresql}"
case "$FERRETDB_HANDLER" in
  postgresql | sqlite) ;;
  pg | postgres) FERRETDB_HANDLER=postgresql ;;
  *) printf '!!! CHARCHA_FERRETDB_HANDLER must be postgresql or sqlite, not %s\n' "$FERRETDB_HANDLER" >&2; exit 1 ;;
esac
KAFKA_VERSION=4.1.1
FERRETDB_VERSION=v1.24.2

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# say, die, have, as_root, apt_install
# shellcheck source=scripts/common.sh
. "$SCRIPTS/common.sh"

# wait_port PORT NAME SECONDS
wait_port() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$2 did not open 127.0.0.1:$1 within $3 s (log: $RUN/$2.log)"
}

# ferretdb_ping PORT: true when a MongoDB server on 127.0.0.1:PORT answers
# {ping: 1} with ok: 1.0 (FerretDB's ping also checks its backend). One OP_MSG
# written and read with bash's /dev/tcp, head and od.
ferretdb_ping() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    # header: length 51, requestID 1, responseTo 0, opCode 2013 (OP_MSG); flags 0;
    # section kind 0; BSON {ping: int32 1, $db: "admin"} (30 bytes)
    printf "\x33\0\0\0\x01\0\0\0\0\0\0\0\xdd\x07\0\0\0\0\0\0\0\x1e\0\0\0\x10ping\0\x01\0\0\0\x02\$db\0\x06\0\0\0admin\0\0" >&3
    len=$(head -c 4 <&3 | od -An -tu4 | tr -d " \n")
    [ -n "$len" ] && [ "$len" -gt 4 ] && [ "$len" -lt 65536 ] || exit 1
    # the reply must hold the element ok: 1.0 (double)
    [[ "$(head -c $((len - 4)) <&3 | od -An -v -tx1 | tr -d " \n")" == *016f6b00000000000000f03f* ]]
  ' _ "$1" 2>/dev/null
}

pid_of() { [ -f "$RUN/$1.pid" ] && cat "$RUN/$1.pid" || true; }
# alive PID [WORD]: the process exists, is not a zombie (a killed service
# whose parent, this script, has exited waits for init to reap it, and kill -0
# still succeeds on it meanwhile) and, given WORD, has WORD in its command line
# (pids wrap around, at 32768 by default: a stale pid file must not make us
# report, or kill, someone else's process).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/stat" ] || return 0
  local _pid _comm state args=()
  read -r _pid _comm state _ < "/proc/$1/stat" 2>/dev/null || return 1
  [ "$state" != Z ] || return 1
  [ -n "${2:-}" ] || return 0
  mapfile -d '' args < "/proc/$1/cmdline" 2>/dev/null || return 1
  [[ " ${args[*]} " == *"$2"* ]]
}
# The word each service's command line contains.
cmd_word() { case "$1" in redis) echo redis-server ;; kafka) echo kafka.Kafka ;; mongo) echo ferretdb ;; esac; }
running() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && alive "$p" "$(cmd_word "$1")"; }

# ---------------------------------------------------------------- install

install_redis() {
  if have redis-server; then say "redis-server ok"; return; fi
  apt_install redis-server
}

install_kafka() {
  local dir="$CACHE/kafka-$KAFKA_VERSION"
  if [ -f "$dir/libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then say "kafka $KAFKA_VERSION ok"; return; fi
  have java || die "java not found (Kafka needs Java 17)"
  have mvn || die "mvn not found (used to fetch the Kafka jars from Maven Central)"
  say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central"
  mkdir -p "$dir"
  # The broker and its dependencies are the jars the Kafka distribution ships.
  cat > "$dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.charcha</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
  (cd "$dir" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=libs)
}

install_postgres() {
  if pg_bin >/dev/null 2>&1; then say "postgresql ok ($(pg_bin))"; return; fi
  apt_install postgresql
}

install_ferretdb() {
  local bin="$CACHE/bin/ferretdb"
  # Read all of --version before matching (under pipefail, `| grep -q` can
  # kill the writer with SIGPIPE and fail the check at random).
  if [ -x "$bin" ] && grep -q "$FERRETDB_VERSION" <<<"$("$bin" --version 2>/dev/null)"; then say "ferretdb $FERRETDB_VERSION ok"; return; fi
  have go || die "go not found (FerretDB is built from its Go module)"
  say "building FerretDB $FERRETDB_VERSION from the Go module proxy"
  local gopath src work
  gopath="$(go env GOPATH)"
  (cd /tmp && GOFLAGS=-mod=mod go mod download "github.com/FerretDB/FerretDB@$FERRETDB_VERSION")
  src="$gopath/pkg/mod/github.com/!ferret!d!b/!ferret!d!b@$FERRETDB_VERSION"
  [ -d "$src" ] || die "FerretDB module not found at $src"
  # The published module lacks build/version/version.txt (generated in its
  # repository by a task runner); without it the binary panics at start.
  work="$(mktemp -d)"
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  echo "$FERRETDB_VERSION" > "$work/build/version/version.txt"
  mkdir -p "$CACHE/bin"
  (cd "$work" && go build -o "$bin" ./cmd/ferretdb)
  rm -rf "$work"
}

# ---------------------------------------------------------------- start/stop

start_redis() {
  if running redis; then say "redis already running"; return; fi
  mkdir -p "$RUN/redis"
  say "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN/redis" --save "" --appendonly no \
    --daemonize no --protected-mode yes > "$RUN/redis.log" 2>&1 &
  echo $! > "$RUN/redis.pid"
  wait_port "$REDIS_PORT" redis 20
}

start_kafka() {
  if running kafka; then say "kafka already running"; return; fi
  local dir="$CACHE/kafka-$KAFKA_VERSION" data="$RUN/kafka"
  mkdir -p "$data"
  cat > "$RUN/kafka.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=6
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  local cp="$dir/libs/*"
  if [ ! -f "$data/meta.properties" ]; then
    say "formatting Kafka KRaft storage"
    local id
    id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    java -cp "$cp" kafka.tools.StorageTool format -t "$id" -c "$RUN/kafka.properties" > "$RUN/kafka-format.log" 2>&1 \
      || die "kafka storage format failed (log: $RUN/kafka-format.log)"
  fi
  say "starting kafka on 127.0.0.1:$KAFKA_PORT (KRaft)"
  java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true -cp "$cp" kafka.Kafka "$RUN/kafka.properties" \
    > "$RUN/kafka.log" 2>&1 &
  echo $! > "$RUN/kafka.pid"
  wait_port "$KAFKA_PORT" kafka 90
}

# ---------------------------------------------------------------- PostgreSQL (FerretDB's backend)

# The newest Debian PostgreSQL's bin directory (initdb, pg_ctl, psql).
pg_bin() {
  local d
  d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)"
  [ -n "$d" ] && [ -x "$d/pg_ctl" ] || return 1
  echo "$d"
}

# Runs a PostgreSQL program: as the postgres user when we are root (it refuses
# to run as root), else as ourselves.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The data directory: $RUN/postgres, unless we are root and the postgres user
# cannot reach $RUN (the default ~/.cache is under /root, mode 700); then a
# directory of its own under /var/lib/postgresql, linked from $RUN/postgres.
pg_data() {
  if [ "$(id -u)" -ne 0 ] || runuser -u postgres -- test -x "$RUN" 2>/dev/null; then
    echo "$RUN/postgres"
  else
    echo "/var/lib/postgresql/charcha/$(realpath -m "$RUN" | md5sum | cut -c1-12)"
  fi
}

pg_pid() { # the postmaster's pid, if its pid file names a live process
  local f p
  f="$(pg_data)/postmaster.pid"
  [ -f "$f" ] || return 0
  p="$(head -1 "$f")"
  if [ -n "$p" ] && alive "$p" postgres; then echo "$p"; fi
}

start_postgres() {
  local bin data p
  bin="$(pg_bin)" || die "PostgreSQL not found (run scripts/services.sh install)"
  data="$(pg_data)"
  p="$(pg_pid)"
  if [ -n "$p" ]; then say "postgresql already running (pid $p)"; return; fi
  if [ ! -f "$data/PG_VERSION" ]; then
    say "initialising a PostgreSQL cluster in $data"
    rm -rf "$data"
    mkdir -p "$data"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$data"; fi
    chmod 700 "$data"
    if [ "$data" != "$RUN/postgres" ]; then ln -sfn "$data" "$RUN/postgres"; fi
    # Only reachable over TCP on 127.0.0.1, like the other services: trust.
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 > "$RUN/postgres-initdb.log" 2>&1 \
      || die "initdb failed (log: $RUN/postgres-initdb.log)"
  fi
  say "starting postgresql on 127.0.0.1:$PG_PORT"
  # No Unix socket (nothing uses it; long $RUN paths would not fit one).
  # fsync and full_page_writes off: the data is throwaway and only processes
  # are ever killed, never the machine. synchronous_commit stays on, so a
  # commit is written to the kernel before it is acknowledged and a killed or
  # aborted server loses nothing it acknowledged. (Measured through FerretDB:
  # a fresh database with Charcha's indexes 90-160 ms -> 18 ms, an upsert
  # 1.3-4 ms -> 0.7-1 ms, insert_many 12-15k -> 16-18k docs/s.)
  as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c full_page_writes=off" \
    start > "$RUN/postgres-ctl.log" 2>&1 || die "postgresql did not start (log: $data/server.log)"
  if [ -z "$("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'")" ]; then
    "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE ferretdb" \
      || die "could not create the ferretdb database"
  fi
}

# Lets FerretDB's equality filters use indexes (see the file). Idempotent, and
# run on every start of mongo, so a cluster initialised before it existed
# gets it too; collections created before it have no twins.
install_pushdown() {
  local bin
  bin="$(pg_bin)" || die "PostgreSQL not found"
  "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d ferretdb \
    -f "$SCRIPTS/ferretdb-pushdown.sql" > "$RUN/postgres-pushdown.log" 2>&1 \
    || die "could not install scripts/ferretdb-pushdown.sql (log: $RUN/postgres-pushdown.log)"
}

stop_postgres() { # stop_postgres fast|immediate
  local bin data
  [ -n "$(pg_pid)" ] || return 0
  bin="$(pg_bin)" || die "PostgreSQL not found"
  data="$(pg_data)"
  say "stopping postgresql ($1)"
  as_pg "$bin/pg_ctl" -D "$data" -m "$1" -w -t 60 stop > "$RUN/postgres-ctl.log" 2>&1 \
    || die "postgresql did not stop (log: $data/server.log)"
}

# ---------------------------------------------------------------- mongo (FerretDB)

start_mongo() {
  if running mongo; then
    local h; h="$(cat "$RUN/mongo.handler" 2>/dev/null || echo sqlite)"
    if [ "$h" != "$FERRETDB_HANDLER" ]; then
      say "ferretdb already running with the $h handler (stop mongo to switch to $FERRETDB_HANDLER)"
    else
      say "ferretdb already running"
    fi
    # FerretDB reconnects by itself if its PostgreSQL was stopped behind its back.
    if [ "$h" = postgresql ]; then
      if [ -z "$(pg_pid)" ]; then start_postgres; fi
      install_pushdown
    fi
    return
  fi
  mkdir -p "$RUN/mongo"
  local backend
  if [ "$FERRETDB_HANDLER" = postgresql ]; then
    start_postgres
    install_pushdown
    backend=(--handler=postgresql "--postgresql-url=postgres://postgres@127.0.0.1:$PG_PORT/ferretdb")
  else
    backend=(--handler=sqlite "--sqlite-url=file:$RUN/mongo/")
  fi
  say "starting FerretDB (MongoDB wire protocol, $FERRETDB_HANDLER backend) on 127.0.0.1:$MONGO_PORT"
  "$CACHE/bin/ferretdb" "${backend[@]}" --state-dir="$RUN/mongo" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --telemetry=disable --debug-addr=- --log-level=warn \
    > "$RUN/mongo.log" 2>&1 &
  echo $! > "$RUN/mongo.pid"
  echo "$FERRETDB_HANDLER" > "$RUN/mongo.handler"
  wait_port "$MONGO_PORT" mongo 30
  local i
  for ((i = 0; i < 100; i++)); do
    if ferretdb_ping "$MONGO_PORT"; then return 0; fi
    running mongo || die "ferretdb exited (log: $RUN/mongo.log)"
    sleep 0.1
  done
  die "ferretdb on 127.0.0.1:$MONGO_PORT does not answer ping (log: $RUN/mongo.log)"
}

stop_one() { # stop_one NAME SIGNAL
  local p w; p="$(pid_of "$1")"; w="$(cmd_word "$1")"
  if [ -n "$p" ] && alive "$p" "$w"; then
    say "stopping $1 ($2)"
    kill "-$2" "$p" 2>/dev/null || true
    local i
    for ((i = 0; i < 300; i++)); do alive "$p" "$w" || break; sleep 0.1; done
    alive "$p" "$w" && kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$RUN/$1.pid"
}

# stop_service NAME TERM|KILL: mongo takes its PostgreSQL down with it (a
# graceful stop, or an abort as in a crash).
stop_service() {
  stop_one "$1" "$2"
  if [ "$1" = mongo ]; then
    if [ "$2" = KILL ]; then stop_postgres immediate; else stop_postgres fast; fi
    rm -f "$RUN/mongo.handler"
  fi
}

services() { if [ $# -eq 0 ]; then echo redis kafka mongo; else echo "$@"; fi; }

status_line() {
  if running "$1"; then echo "$1: running (pid $(pid_of "$1"))"; else echo "$1: stopped"; fi
}

cmd="${1:-status}"; shift || true
mkdir -p "$RUN" "$CACHE"
case "$cmd" in
  install) install_redis; install_kafka; install_postgres; install_ferretdb ;;
  start) for s in $(services "$@"); do "start_$s"; done ;;
  stop) for s in $(services "$@"); do stop_service "$s" TERM; done ;;
  kill) for s in $(services "$@"); do stop_service "$s" KILL; done ;;
  restart) for s in $(services "$@"); do stop_service "$s" TERM; "start_$s"; done ;;
  wipe)
    for s in redis kafka mongo; do stop_service "$s" KILL; done
    data="$(pg_data)"
    if [ "$data" != "$RUN/postgres" ]; then rm -rf "$data"; fi
    rm -rf "$RUN"
    ;;
  status)
    status_line redis
    status_line kafka
    if running mongo; then
      echo "mongo: running (pid $(pid_of mongo), FerretDB $(cat "$RUN/mongo.handler" 2>/dev/null || echo sqlite) handler)"
    else
      echo "mongo: stopped"
    fi
    p="$(pg_pid)"
    if [ -n "$p" ]; then echo "postgres: running (pid $p, 127.0.0.1:$PG_PORT, data $(pg_data))"; else echo "postgres: stopped"; fi
    ;;
  env)
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    echo "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
    echo "MONGODB_URI=mongodb://127.0.0.1:$MONGO_PORT/charcha"
    ;;
  *) die "unknown command: $cmd (install|start|stop|kill|restart|wipe|status|env)" ;;
esac
