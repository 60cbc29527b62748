#!/usr/bin/env bash
# An MLflow tracking server on 127.0.0.1 with a PostgreSQL backend store and served artifacts
# (clients read and write artifacts over HTTP, through the server). Used by tests/cluster/ and to try
# the cluster path on one machine. Idempotent: `start` on a server that answers only prints its URI.
#
#   scripts/cluster/mlflow_server.sh start     # prints the tracking URI (http://127.0.0.1:PORT)
#   scripts/cluster/mlflow_server.sh status    # exit 0 when the server answers
#   scripts/cluster/mlflow_server.sh stop
#
# Settings (environment):
#   EMOEXP_MLFLOW_PORT      port (default 5000)
#   EMOEXP_MLFLOW_BACKEND   backend store, a PostgreSQL URL; its database is created when missing
#                           (default postgresql+psycopg2://postgres@127.0.0.1:5432/emoexp_mlflow)
#   EMOEXP_MLFLOW_DIR       served artifacts (artifacts/), server.log and server.pid
#                           (default /var/tmp/emoexp-mlflow)
#   PYTHON                  the interpreter with mlflow and psycopg2 (default python)
set -euo pipefail

PORT="${EMOEXP_MLFLOW_PORT:-5000}"
BACKEND="${EMOEXP_MLFLOW_BACKEND:-postgresql+psycopg2://postgres@127.0.0.1:5432/emoexp_mlflow}"
DIR="${EMOEXP_MLFLOW_DIR:-/var/tmp/emoexp-mlflow}"
PY="${PYTHON:-python}"
WAIT_S="${EMOEXP_MLFLOW_WAIT_S:-180}"
URI="http://127.0.0.1:${PORT}"

say() { echo "mlflow_server: $*" >&2; }
die() { echo "mlflow_server: error: $*" >&2; exit 1; }

answers() { "$PY" - "$URI/health" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError:
    sys.exit(1)
EOF
}

create_database() {  # the backend's database, created when missing (PostgreSQL only)
  "$PY" - "$BACKEND" <<'EOF'
import sys
import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import make_url

url = make_url(sys.argv[1])
if not url.drivername.startswith("postgresql"):
    sys.exit(0)
server = psycopg2.connect(
    host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
    password=url.password, dbname="postgres", connect_timeout=10,
)
server.autocommit = True
with server.cursor() as cursor:
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
    if cursor.fetchone() is None:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
        print(f"mlflow_server: created database {url.database}", file=sys.stderr)
server.close()
EOF
}

start() {
  if answers; then
    echo "$URI"
    return 0
  fi
  mkdir -p "$DIR/artifacts"
  create_database || die "cannot create the backend database of ${BACKEND##*@} (is PostgreSQL running?)"
  say "starting on $URI (backend ${BACKEND##*@}, artifacts $DIR/artifacts, log $DIR/server.log)"
  setsid "$PY" -m mlflow server --host 127.0.0.1 --port "$PORT" --workers 1 \
    --backend-store-uri "$BACKEND" --serve-artifacts --artifacts-destination "$DIR/artifacts" \
    >>"$DIR/server.log" 2>&1 </dev/null &
  echo $! >"$DIR/server.pid"
  local deadline=$((SECONDS + WAIT_S))
  while ((SECONDS < deadline)); do
    if answers; then
      echo "$URI"
      return 0
    fi
    kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null || { tail -n 30 "$DIR/server.log" >&2; die "the server exited"; }
    sleep 1
  done
  tail -n 30 "$DIR/server.log" >&2
  die "no answer on $URI/health after ${WAIT_S} s"
}

stop() {
  [[ -s "$DIR/server.pid" ]] || return 0
  local pid waited=0
  pid="$(cat "$DIR/server.pid")"
  # setsid made the server a process group leader: stop it and its workers together
  if kill -TERM -- "-$pid" 2>/dev/null; then
    while kill -0 "$pid" 2>/dev/null && ((waited++ < 30)); do sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    say "stopped $URI"
  fi
  rm -f "$DIR/server.pid"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) die "usage: $0 start|stop|status" ;;
esac
