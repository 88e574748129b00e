#!/usr/bin/env bash
# Reload under load: wrk drives small GETs through ferry (direct, nginx origin) for SECONDS
# while the config is rewritten and ferry sent SIGHUP every second. Prints wrk's summary; a
# good run has no "Socket errors" and no "Non-2xx" line. Loopback only; bounded in time.
# Needs: wrk, nginx (apt-get install wrk nginx-light), a release build of ferry.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
FERRY=${FERRY:-target/release/ferry}
WORK=$(mktemp -d); chmod 755 "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/www"; head -c 100 /dev/zero | tr '\0' 'x' > "$WORK/www/small"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:18081; root $WORK/www; } }
NGINX
nginx -c "$WORK/nginx.conf" & pids+=($!)
write_config() { # idle timeout alternates, so each reload really changes something
  printf 'listen: "127.0.0.1:0"\non_all_down: direct\nworkers: 2\nlog_level: info\nlimits:\n  idle_timeout_secs: %s\n' "$1" > "$WORK/ferry.yaml"
}
write_config 60
"$FERRY" --config "$WORK/ferry.yaml" 2> "$WORK/ferry.err" & pids+=($!)
FERRY_PID=$!
PROXY=
for _ in $(seq 100); do
  PROXY=$(grep -o 'listening on [^ ]*' "$WORK/ferry.err" | awk '{print $3}' | head -1) || true
  [ -n "$PROXY" ] && break; sleep 0.1
done
[ -n "$PROXY" ] || { cat "$WORK/ferry.err"; exit 1; }
ORIGIN=127.0.0.1:18081 PATH_=/small wrk -t1 -c32 -d"${SECS}s" -s benches/abs_get.lua "http://$PROXY" > "$WORK/wrk.txt" &
WRK=$!
for i in $(seq "$SECS"); do
  sleep 1
  write_config $((60 + i % 2))
  kill -HUP "$FERRY_PID"
done
wait "$WRK"
cat "$WORK/wrk.txt"
echo "reloads applied: $(grep -c 'config reloaded' "$WORK/ferry.err")"
