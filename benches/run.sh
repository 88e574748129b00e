#!/usr/bin/env bash
# ferry benchmark on loopback: a local nginx origin, and in one interleaved run ferry (direct
# mode) against going straight to the origin. Prints a markdown table; writes raw output to
# benches/results/. Everything talks to 127.0.0.1 only; every load is bounded in time.
#
# Needs: wrk, nginx (apt-get install wrk nginx-light), python3, a release build of ferry.
# Usage: benches/run.sh [rounds=3] [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
FERRY=${FERRY:-target/release/ferry}
OUT=benches/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
WORK=$(mktemp -d)
chmod 755 "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# --- origin: nginx serving a 100-byte and a 100 MiB file, keep-alive, no logging ---
ORIGIN_PORT=18080
mkdir -p "$WORK/www"
head -c 100 /dev/zero | tr '\0' 'x' > "$WORK/www/small"
head -c $((100 << 20)) /dev/urandom > "$WORK/www/big"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; }
}
NGINX
taskset -c 0 nginx -c "$WORK/nginx.conf" & pids+=($!)

# --- ferry, direct mode, one worker pinned to core 1 ---
cat > "$WORK/ferry.yaml" <<YAML
listen: "127.0.0.1:0"
on_all_down: direct
workers: 1
log_level: info
YAML
taskset -c 1 "$FERRY" --config "$WORK/ferry.yaml" 2> "$WORK/ferry.err" & pids+=($!)
FERRY_PID=$!
PROXY=
for _ in $(seq 100); do
  PROXY=$(grep -o 'listening on [^ ]*' "$WORK/ferry.err" 2>/dev/null | awk '{print $3}') || true
  [ -n "$PROXY" ] && break
  sleep 0.1
done
[ -n "$PROXY" ] || { echo "ferry did not start:"; cat "$WORK/ferry.err"; exit 1; }
echo "origin 127.0.0.1:$ORIGIN_PORT, ferry $PROXY" | tee "$OUT/setup.txt"

wrk_point() { # label conns extra-args...
  local label=$1 conns=$2; shift 2
  taskset -c 0 wrk -t1 -c"$conns" -d"${SECS}s" --latency "$@" > "$OUT/$label-c$conns-$r.txt"
  if grep -q "Non-2xx" "$OUT/$label-c$conns-$r.txt"; then
    echo "$label: non-2xx responses, see $OUT/$label-c$conns-$r.txt" >&2; exit 1
  fi
  awk '/Requests\/sec/ {print $2}' "$OUT/$label-c$conns-$r.txt"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

for conns in 64 256; do
  : > "$WORK/direct"; : > "$WORK/ferry"
  for r in $(seq "$ROUNDS"); do
    wrk_point direct "$conns" "http://127.0.0.1:$ORIGIN_PORT/small" >> "$WORK/direct"
    ORIGIN=127.0.0.1:$ORIGIN_PORT PATH_=/small wrk_point ferry "$conns" -s benches/abs_get.lua "http://$PROXY" >> "$WORK/ferry"
  done
  d=$(median < "$WORK/direct"); f=$(median < "$WORK/ferry")
  echo "| small GET req/s, $conns conns | $d | $f | $(awk -v f="$f" -v d="$d" 'BEGIN{printf "%.0f %%", 100*f/d}') |" >> "$OUT/table.md"
done

: > "$WORK/direct"; : > "$WORK/tunnel"; : > "$WORK/plain"
for r in $(seq "$ROUNDS"); do
  taskset -c 0 python3 benches/tunnel_get.py "127.0.0.1:$ORIGIN_PORT" /big >> "$WORK/direct"
  taskset -c 0 python3 benches/tunnel_get.py "127.0.0.1:$ORIGIN_PORT" /big "$PROXY" 10 "$FERRY_PID" >> "$WORK/tunnel"
  taskset -c 0 python3 benches/tunnel_get.py "127.0.0.1:$ORIGIN_PORT" /big "plain:$PROXY" 10 "$FERRY_PID" >> "$WORK/plain"
done
cp "$WORK/direct" "$OUT/bulk-direct.txt"; cp "$WORK/tunnel" "$OUT/bulk-tunnel.txt"; cp "$WORK/plain" "$OUT/bulk-plain.txt"
# Each ferry line is "MiB/s CPU%" (ferry's CPU, % of one core, over that download).
d=$(median < "$WORK/direct")
for kind in tunnel plain; do
  f=$(awk '{print $1}' "$WORK/$kind" | median); cpu=$(awk '{print $2}' "$WORK/$kind" | median)
  label="CONNECT 100 MiB download MiB/s"
  [ "$kind" = plain ] && label="plain GET 100 MiB through ferry MiB/s"
  echo "| $label (ferry CPU $cpu %) | $d | $f | $(awk -v f="$f" -v d="$d" 'BEGIN{printf "%.0f %%", 100*f/d}') |" >> "$OUT/table.md"
done

{
  echo "| what (median of $ROUNDS, ${SECS}s each) | direct | ferry | ferry / direct |"
  echo "|---|---|---|---|"
  cat "$OUT/table.md"
} | tee "$OUT/summary.md"
