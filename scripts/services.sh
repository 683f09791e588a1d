#!/usr/bin/env bash
# Real backing services for the scaled mode, as plain processes on 127.0.0.1
# (no Docker engine needed): Redis (Debian), Apache Kafka in KRaft mode (jars
# from Maven Central, on the machine's Java 17) and FerretDB (a MongoDB-
# compatible server, Go module, SQLite backend).
#
#   scripts/services.sh install               install what is missing (cached under ~/.cache/charcha)
#   scripts/services.sh start [SERVICE...]    start (default: all) and wait until ready
#   scripts/services.sh stop  [SERVICE...]    graceful stop (SIGTERM)
#   scripts/services.sh kill  [SERVICE...]    SIGKILL
#   scripts/services.sh status | env          what runs / the env vars Charcha needs
#
# SERVICE is redis, kafka or mongo. Data and logs live in $CHARCHA_SERVICES_DIR
# (default ~/.cache/charcha/services-run); `wipe` deletes them.
set -euo pipefail

CACHE="${CHARCHA_CACHE:-$HOME/.cache/charcha}"
RUN="${CHARCHA_SERVICES_DIR:-$CACHE/services-run}"
REDIS_PORT="${CHARCHA_REDIS_PORT:-16379}"
KAFKA_PORT="${CHARCHA_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${CHARCHA_KAFKA_CONTROLLER_PORT:-19093}"
MONGO_PORT="${CHARCHA_MONGO_PORT:-27018}"
KAFKA_VERSION=4.1.1
FERRETDB_VERSION=v1.24.2

# say, die, have, as_root, apt_install
# shellcheck source=scripts/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# wait_port PORT NAME SECONDS
wait_port() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$2 did not open 127.0.0.1:$1 within $3 s (log: $RUN/$2.log)"
}

pid_of() { [ -f "$RUN/$1.pid" ] && cat "$RUN/$1.pid" || true; }
running() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

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

start_mongo() {
  if running mongo; then say "ferretdb already running"; return; fi
  mkdir -p "$RUN/mongo"
  say "starting FerretDB (MongoDB wire protocol) on 127.0.0.1:$MONGO_PORT"
  "$CACHE/bin/ferretdb" --handler=sqlite --sqlite-url="file:$RUN/mongo/" --state-dir="$RUN/mongo" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --telemetry=disable --debug-addr=- --log-level=warn \
    > "$RUN/mongo.log" 2>&1 &
  echo $! > "$RUN/mongo.pid"
  wait_port "$MONGO_PORT" mongo 30
}

stop_one() { # stop_one NAME SIGNAL
  local p; p="$(pid_of "$1")"
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    say "stopping $1 ($2)"
    kill "-$2" "$p" 2>/dev/null || true
    local i
    for ((i = 0; i < 300; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$RUN/$1.pid"
}

services() { if [ $# -eq 0 ]; then echo redis kafka mongo; else echo "$@"; fi; }

cmd="${1:-status}"; shift || true
mkdir -p "$RUN" "$CACHE"
case "$cmd" in
  install) install_redis; install_kafka; install_ferretdb ;;
  start) for s in $(services "$@"); do "start_$s"; done ;;
  stop) for s in $(services "$@"); do stop_one "$s" TERM; done ;;
  kill) for s in $(services "$@"); do stop_one "$s" KILL; done ;;
  restart) for s in $(services "$@"); do stop_one "$s" TERM; "start_$s"; done ;;
  wipe) for s in redis kafka mongo; do stop_one "$s" KILL; done; rm -rf "$RUN" ;;
  status) for s in redis kafka mongo; do if running "$s"; then echo "$s: running (pid $(pid_of "$s"))"; else echo "$s: stopped"; fi; done ;;
  env)
    echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    echo "KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
    echo "MONGODB_URI=mongodb://127.0.0.1:$MONGO_PORT/charcha"
    ;;
  *) die "unknown command: $cmd (install|start|stop|kill|restart|wipe|status|env)" ;;
esac
