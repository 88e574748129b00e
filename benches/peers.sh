#!/usr/bin/env bash
# ferry against its peers, on loopback, in one interleaved run: going direct, ferry,
# tinyproxy, squid and privoxy (each configured to allow loopback clients, CONNECT to any port (the
# origin's among them), and no caching). nginx is the origin (core 0, with the load generator); each
# proxy runs pinned to core 1. Measures small-GET req/s and p50/p99 at 64 and 256 connections
# (wrk, absolute-form), CONNECT bulk MiB/s (1000 MiB), proxy CPU per request, and RSS idle /
# with 1000 idle keep-alive connections / with 1000 idle tunnels (summed over each proxy's
# process tree). Medians of ROUNDS. Writes benches/results/<time>/{table.md,req.png}.
#
# Needs (apt): wrk nginx-light tinyproxy squid privoxy gnuplot-nox; python3; a release ferry.
# Usage: benches/peers.sh [rounds=3] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
FERRY=${FERRY:-target/release/ferry}
OUT=benches/results/peers-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
WORK=$(mktemp -d); chmod 777 "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true

ORIGIN_PORT=18080
mkdir -p "$WORK/www"; chmod 755 "$WORK/www"
head -c 100 /dev/zero | tr '\0' 'x' > "$WORK/www/small"
head -c $((100 << 20)) /dev/urandom > "$WORK/www/big"
chmod 644 "$WORK/www/"*
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 8192; }
http { access_log off; sendfile on; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; } }
NGINX
taskset -c 0 nginx -c "$WORK/nginx.conf" & pids+=($!)

# --- the proxies ---
declare -A ADDR PID
start() { # name addr command...
  local name=$1 addr=$2; shift 2
  taskset -c 1 "$@" > "$WORK/$name.out" 2>&1 & pids+=($!); PID[$name]=$!; ADDR[$name]=$addr
}
start_all() {
printf 'listen: "127.0.0.1:18089"\non_all_down: direct\nworkers: 1\nlog_level: warn\nlimits:\n  idle_timeout_secs: 600\n' > "$WORK/ferry.yaml"
start ferry 127.0.0.1:18089 "$FERRY" --config "$WORK/ferry.yaml"
cat > "$WORK/tinyproxy.conf" <<CONF
Port 18090
Listen 127.0.0.1
Timeout 600
MaxClients 4096
Allow 127.0.0.1
LogLevel Critical
DisableViaHeader Yes
CONF
start tinyproxy 127.0.0.1:18090 tinyproxy -d -c "$WORK/tinyproxy.conf"
cat > "$WORK/squid.conf" <<CONF
http_port 127.0.0.1:18091
acl local src 127.0.0.1/32
http_access allow local
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_log $WORK/squid-cache.log
pid_filename $WORK/squid.pid
coredump_dir $WORK
max_filedescriptors 65536
shutdown_lifetime 1 seconds
client_persistent_connections on
server_persistent_connections on
CONF
start squid 127.0.0.1:18091 squid -N -f "$WORK/squid.conf"
cat > "$WORK/privoxy.conf" <<CONF
listen-address 127.0.0.1:18092
confdir /etc/privoxy
logdir $WORK
toggle 0
enable-remote-toggle 0
enable-edit-actions 0
keep-alive-timeout 600
max-client-connections 4096
CONF
start privoxy 127.0.0.1:18092 privoxy --no-daemon "$WORK/privoxy.conf"
for p in "${PROXIES[@]}"; do
  for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 2 -x "http://${ADDR[$p]}" "http://127.0.0.1:$ORIGIN_PORT/small" && break
    sleep 0.1
  done
  curl -sf -o /dev/null --max-time 2 -x "http://${ADDR[$p]}" "http://127.0.0.1:$ORIGIN_PORT/small" \
    || { echo "$p does not answer; its output:"; cat "$WORK/$p.out"; exit 1; }
done
}
stop_all() {
  for p in "${PROXIES[@]}"; do kill "${PID[$p]}" 2>/dev/null || true; done
  for p in "${PROXIES[@]}"; do
    for _ in $(seq 100); do kill -0 "${PID[$p]}" 2>/dev/null || break; sleep 0.1; done
  done
  sleep 1 # let squid's helpers and the ports go
}
PROXIES=(ferry tinyproxy squid privoxy)
declare -A MEM
# Memory first, on fresh processes, one kind of connection per start (a heap grown by load,
# or by the other kind, would hide the per-connection cost).
for kind in keepalive tunnel; do
  start_all
  for p in "${PROXIES[@]}"; do
    MEM[$p-$kind]=$(python3 benches/memory.py --attach "${PID[$p]}" "${ADDR[$p]}" --label "$p" --kind "$kind" --n 1000 2>/dev/null || echo "failed")
  done
  stop_all
done
start_all

cpu_ticks() { # summed utime+stime of a process tree
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1]); kids = {}; stat = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            kids.setdefault(int(f[1]), []).append(int(d)); stat[int(d)] = int(f[11]) + int(f[12])
        except Exception:
            pass
t, todo = 0, [root]
while todo:
    p = todo.pop(); t += stat.get(p, 0); todo += kids.get(p, [])
print(t)
PY
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A R
point() { # key proxy conns
  local key=$1 p=$2 c=$3 f="$OUT/$1-$r.txt"
  if [ "$p" = direct ]; then
    taskset -c 0 wrk -t1 -c"$c" -d"${SECS}s" --latency "http://127.0.0.1:$ORIGIN_PORT/small" > "$f"
  else
    local t0; t0=$(cpu_ticks "${PID[$p]}")
    ORIGIN=127.0.0.1:$ORIGIN_PORT PATH_=/small taskset -c 0 wrk -t1 -c"$c" -d"${SECS}s" --latency -s benches/abs_get.lua "http://${ADDR[$p]}" > "$f"
    local t1; t1=$(cpu_ticks "${PID[$p]}")
    local n; n=$(awk '/requests in/ {print $1}' "$f")
    echo "$(( (t1 - t0) * 10000 / (n > 0 ? n : 1) ))" >> "$WORK/$key.cpu"
  fi
  if grep -q "Non-2xx" "$f"; then echo "$key: non-2xx answers ($f)" >&2; fi
  awk '/Requests\/sec/ {print $2}' "$f" >> "$WORK/$key.rps"
  awk '$1=="50%" {print $2} ' "$f" >> "$WORK/$key.p50"
  awk '$1=="99%" {print $2} ' "$f" >> "$WORK/$key.p99"
}
for r in $(seq "$ROUNDS"); do
  for c in 64 256; do
    for p in direct "${PROXIES[@]}"; do point "$p-c$c" "$p" "$c"; done
  done
  for p in direct "${PROXIES[@]}"; do
    if [ "$p" = direct ]; then taskset -c 0 python3 benches/tunnel_get.py "127.0.0.1:$ORIGIN_PORT" /big - 10 >> "$WORK/$p.bulk"
    else taskset -c 0 python3 benches/tunnel_get.py "127.0.0.1:$ORIGIN_PORT" /big "${ADDR[$p]}" 10 >> "$WORK/$p.bulk" || echo 0 >> "$WORK/$p.bulk"; fi
  done
done

{
  echo "| proxy | req/s c64 | p50 / p99 c64 | req/s c256 | p50 / p99 c256 | CPU µs/req (c64) | CONNECT MiB/s | RSS idle | RSS +1000 keep-alive | RSS +1000 tunnels |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for p in direct "${PROXIES[@]}"; do
    rps64=$(median < "$WORK/$p-c64.rps"); rps256=$(median < "$WORK/$p-c256.rps")
    lat64="$(sort "$WORK/$p-c64.p50" | head -n $(( (ROUNDS+1)/2 )) | tail -1) / $(sort "$WORK/$p-c64.p99" | head -n $(( (ROUNDS+1)/2 )) | tail -1)"
    lat256="$(sort "$WORK/$p-c256.p50" | head -n $(( (ROUNDS+1)/2 )) | tail -1) / $(sort "$WORK/$p-c256.p99" | head -n $(( (ROUNDS+1)/2 )) | tail -1)"
    bulk=$(median < "$WORK/$p.bulk")
    if [ "$p" = direct ]; then
      echo "| direct | $rps64 | $lat64 | $rps256 | $lat256 | – | $bulk | – | – | – |"
    else
      cpu=$(median < "$WORK/$p-c64.cpu")
      mem="${MEM[$p-keepalive]} ${MEM[$p-tunnel]}"
      idle=$(echo "$mem" | tr ' ' '\n' | awk -F= '/^idle_kib/ {print $2; exit}')
      ka=$(echo "${MEM[$p-keepalive]}" | tr ' ' '\n' | awk -F= '/^loaded_kib/ {print $2}')
      tidle=$(echo "${MEM[$p-tunnel]}" | tr ' ' '\n' | awk -F= '/^idle_kib/ {print $2}')
      tun=$(echo "${MEM[$p-tunnel]}" | tr ' ' '\n' | awk -F= '/^loaded_kib/ {print $2}')
      echo "| $p | $rps64 | $lat64 | $rps256 | $lat256 | $cpu | $bulk | ${idle} KiB | +$(( ka - idle )) KiB | +$(( tun - tidle )) KiB |"
      echo "$p $rps64 $rps256" >> "$WORK/plot.dat"
    fi
  done
} | tee "$OUT/table.md"
echo "direct $(median < "$WORK/direct-c64.rps") $(median < "$WORK/direct-c256.rps")" | cat - "$WORK/plot.dat" > "$WORK/plot2.dat"
gnuplot <<GP
set terminal png size 800,450
set output "$OUT/req.png"
set title "small GET through each proxy (req/s, loopback, 2 cores)"
set style data histograms
set style fill solid 0.8
set boxwidth 0.9
set yrange [0:*]
plot "$WORK/plot2.dat" using 2:xtic(1) title "64 connections", "" using 3 title "256 connections"
GP
echo "chart: $OUT/req.png"
