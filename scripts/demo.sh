#!/usr/bin/env bash
# The main job on a fresh machine: builds the local images and binaries, starts
# dubernetes-server in the background, applies examples/whoami.yaml and shows
# it answering through the nginx ingress.
#
#   DEMO_INGRESS_PORT   host port of the ingress       (default 8000)
#   DEMO_API_PORT       port of the HTTP API           (default 8080)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
INGRESS_PORT="${DEMO_INGRESS_PORT:-8000}"
API_PORT="${DEMO_API_PORT:-8080}"
DATA_DIR="$ROOT/.demo-data"
log() { echo "demo.sh: $*" >&2; }

docker info >/dev/null 2>&1 || { log "the Docker engine does not answer: start it (e.g. 'service docker start')"; exit 1; }
scripts/build-images.sh >/dev/null
log "cargo build --release"
cargo build --release --locked --bins
BIN="$ROOT/target/release"
export DUBERNETES_SERVER="http://127.0.0.1:$API_PORT"

if [[ -f "$DATA_DIR/server.pid" ]] && kill -0 "$(cat "$DATA_DIR/server.pid")" 2>/dev/null; then
	log "stopping the previous demo server (pid $(cat "$DATA_DIR/server.pid"))"
	kill "$(cat "$DATA_DIR/server.pid")"
	while kill -0 "$(cat "$DATA_DIR/server.pid")" 2>/dev/null; do sleep 0.1; done
fi
mkdir -p -m 700 "$DATA_DIR"   # the server keeps secrets here (it creates its files 0600)
log "starting dubernetes-server (API 127.0.0.1:$API_PORT, ingress 127.0.0.1:$INGRESS_PORT, log $DATA_DIR/server.log)"
nohup "$BIN/dubernetes-server" --instance demo --data-dir "$DATA_DIR" \
	--listen "127.0.0.1:$API_PORT" --ingress-listen "127.0.0.1:$INGRESS_PORT" \
	--ingress-tls-listen "127.0.0.1:${INGRESS_TLS_PORT:-0}" \
	--ingress-image dubernetes/nginx:local-4 >"$DATA_DIR/server.log" 2>&1 &
echo $! >"$DATA_DIR/server.pid"
for _ in $(seq 1 100); do
	curl -fsS "$DUBERNETES_SERVER/healthz" >/dev/null 2>&1 && break
	kill -0 "$(cat "$DATA_DIR/server.pid")" 2>/dev/null || { cat "$DATA_DIR/server.log" >&2; exit 1; }
	sleep 0.1
done
# The server generated its API token into the data dir (mode 0600) on first start.
DUBERNETES_TOKEN="$(cat "$DATA_DIR/token")"
export DUBERNETES_TOKEN

set -x
"$BIN/dubectl" apply -f examples/whoami.yaml --wait --timeout 60s
"$BIN/dubectl" get pods
curl -sS -H 'Host: whoami.local' "http://127.0.0.1:$INGRESS_PORT/"
curl -sS -H 'Host: whoami.local' "http://127.0.0.1:$INGRESS_PORT/" | head -1
curl -sS -H 'Host: whoami.local' "http://127.0.0.1:$INGRESS_PORT/" | head -1
{ set +x; } 2>/dev/null
cat >&2 <<EOT

demo.sh: the orchestrator runs in the background (pid $(cat "$DATA_DIR/server.pid")). Try:
  export DUBERNETES_SERVER=$DUBERNETES_SERVER PATH=$BIN:\$PATH
  export DUBERNETES_TOKEN=\$(cat $DATA_DIR/token)     # the API needs it: Authorization: Bearer <token>
  dubectl get pods -o wide
  curl -H 'Host: whoami.local' http://127.0.0.1:$INGRESS_PORT/
  dubectl scale pod whoami --replicas 5
  dubectl delete pod whoami
Stop it with: kill $(cat "$DATA_DIR/server.pid")   (containers keep running and are adopted on the next start)
EOT
