#!/usr/bin/env bash
# ferry's CPU time per request (user + kernel) of one or more ferry binaries, interleaved
# round by round so that the load other work puts on the machine falls on all of them alike.
# On two cores, benches/run.sh's req/s is bounded by the core that wrk and nginx share, so
# a slower ferry hardly shows there; its CPU time per request does. Loopback only.
#
#   benches/cpu.sh ROUNDS SECONDS BIN...        (e.g. benches/cpu.sh 5 8 old/ferry new/ferry)
#
# Each round and binary: a fresh ferry (direct mode, one worker, pinned to core 1), then
# `wrk -t1 -c64` (pinned to core 0, absolute-form small GETs, benches/abs_get.lua) through it
# to a local nginx (pinned to core 0) for SECONDS; utime + stime of ferry's process from
# /proc/PID/stat over the wrk run, divided by the requests wrk completed. Prints the median
# and range per binary in µs per request, and the medians of req/s.
# Needs: wrk, nginx (apt-get install wrk nginx-light), python3.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: $0 ROUNDS SECONDS BIN..." >&2; exit 2; }
ROUNDS=$1
SECS=$2
shift 2
WORK=$(mktemp -d)
chmod 755 "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

ORIGIN_PORT=18084
mkdir -p "$WORK/www"
head -c 100 /dev/zero | tr '\0' 'x' > "$WORK/www/small"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; }
}
NGINX
taskset -c 0 nginx -c "$WORK/nginx.conf" & pids+=($!)
cat > "$WORK/ferry.yaml" <<YAML
listen: "127.0.0.1:0"
on_all_down: direct
workers: 1
log_level: info
YAML

ticks() { # utime + stime of PID, in clock ticks
  awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

declare -A cpu rps
for _ in $(seq "$ROUNDS"); do
  for b in "$@"; do
    : > "$WORK/ferry.err"
    taskset -c 1 "$b" --config "$WORK/ferry.yaml" 2> "$WORK/ferry.err" & fp=$!
    pids+=("$fp")
    proxy=
    for _ in $(seq 100); do
      proxy=$(grep -oE 'listening on [0-9.]+:[0-9]+ ' "$WORK/ferry.err" | awk '{print $3}') || true
      [ -n "$proxy" ] && break
      sleep 0.1
    done
    [ -n "$proxy" ] || { echo "ferry did not start:" >&2; cat "$WORK/ferry.err" >&2; exit 1; }
    t0=$(ticks "$fp")
    ORIGIN=127.0.0.1:$ORIGIN_PORT PATH_=/small taskset -c 0 wrk -t1 -c64 -d"${SECS}s" \
      -s benches/abs_get.lua "http://$proxy" > "$WORK/wrk.txt"
    t1=$(ticks "$fp")
    kill "$fp"; wait "$fp" 2>/dev/null || true
    if grep -q "Non-2xx" "$WORK/wrk.txt"; then echo "$b: non-2xx answers" >&2; exit 1; fi
    n=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
    cpu[$b]+="$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}') "
    rps[$b]+="$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt") "
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%s (%s-%s)", m, v[1], v[NR]}'; }
echo "| binary | bytes | ferry CPU µs/request, median (range) of $ROUNDS | req/s, median (range) |"
echo "|---|---|---|---|"
for b in "$@"; do
  echo "| $b | $(stat -c %s "$b") | $(median <<< "${cpu[$b]}") | $(median <<< "${rps[$b]}") |"
done
