#!/usr/bin/env bash
# ferry as a reverse proxy against HAProxy and nginx, on loopback, in one interleaved run
# (issue 11). An nginx origin serves a 100-byte and a 100 MiB file; the same load goes through
# ferry's reverse listener (one worker), HAProxy (nbthread 1, `http-reuse always`), a second
# nginx (one worker, upstream keepalive 64) and straight to the origin (the baseline). The
# origin and the load generator share core 0, each proxy runs pinned to core 1, as in run.sh.
#
# Measured, medians of ROUNDS:
# - small GET at 64 and 256 connections (wrk -t1 --latency): req/s, p50 and p99, the proxy's
#   CPU % over the run (utime+stime of its process tree from /proc, over wall time) and req/s
#   per proxy core (req/s / (CPU % / 100));
# - 100 MiB GET relayed (benches/tunnel_get.py, 10 downloads over one connection): MiB/s and
#   proxy CPU %; for ferry also the CONNECT tunnel rate of the same downloads through its
#   forward listener (the same process runs both roles), the issue's yardstick;
# - RSS per idle keep-alive client connection (1000 clients, each made one request, then
#   idle; benches/memory.py --kind reverse, RSS summed over the process tree), measured first,
#   on fresh processes, before any load.
# If ferry refuses the reverse config (`--check`), or does not answer through it, ferry is
# skipped, said so loudly, and the peers are still measured.
#
# Needs (apt): wrk nginx haproxy curl; python3; a release build of ferry.
# Usage: benches/reverse.sh [rounds=3] [seconds=10]
# Env: FERRY (binary, default target/release/ferry), BASE_PORT (default 18280: the origin;
# the next four ports are ferry's reverse listener, HAProxy, nginx, ferry's forward listener),
# FERRY_MAX_IDLE (ferry's backend `keepalive.max_idle`; unset: ferry's default).
# Writes benches/results/reverse-<time>/: raw wrk/client outputs, configs, table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
FERRY=${FERRY:-target/release/ferry}
BASE_PORT=${BASE_PORT:-18280}
REPEAT=10 # 100 MiB downloads per bulk point
# Checked on its own too: plain `shellcheck` (no -x) skips the sourced file.
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC1091
. benches/lib.sh
bench_init reverse

ORIGIN_PORT=$BASE_PORT
declare -A ADDR PID
ADDR[direct]=127.0.0.1:$ORIGIN_PORT
ADDR[ferry]=127.0.0.1:$((BASE_PORT + 1))
ADDR[haproxy]=127.0.0.1:$((BASE_PORT + 2))
ADDR[nginx]=127.0.0.1:$((BASE_PORT + 3))
FORWARD=127.0.0.1:$((BASE_PORT + 4))
ports_free "$BASE_PORT" $((BASE_PORT + 4))

# --- origin: nginx serving a 100-byte and a 100 MiB file, keep-alive, no logging, core 0 ---
mkdir -p "$WORK/nginx-proxy-tmp"
small_file "$WORK/www"
head -c $((100 << 20)) /dev/urandom > "$WORK/www/big"
chmod 644 "$WORK/www/big"
origin_conf origin "${ADDR[direct]}" "$WORK/www"
taskset -c 0 nginx -c "$WORK/origin.conf" & pids+=($!)

# --- the proxies, each pinned to core 1 ---
start() { # name command...
  local name=$1; shift
  taskset -c 1 "$@" > "$WORK/$name.out" 2>&1 & pids+=($!)
  PID[$name]=$!
}

# ferry: both roles in one process (one worker), the reverse listener and the forward one.
cat > "$WORK/ferry.yaml" <<YAML
listen: "$FORWARD"
on_all_down: direct
workers: 1
log_level: warn
limits:
  idle_timeout_secs: 600
reverse:
  listen: ["${ADDR[ferry]}"]
  sites:
    - hosts: ["*"]
      routes: [{path: "/", backend: b}]
  backends:
    b:
      servers: [{url: "http://${ADDR[direct]}"}]
YAML
if [ -n "${FERRY_MAX_IDLE:-}" ]; then
  echo "      keepalive: {max_idle: $FERRY_MAX_IDLE}" >> "$WORK/ferry.yaml"
fi

cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-keep-alive 600s
frontend fe
  bind ${ADDR[haproxy]}
  default_backend be
backend be
  server origin ${ADDR[direct]}
CFG

cat > "$WORK/nginx-proxy.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy.err;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  client_body_temp_path $WORK/nginx-proxy-tmp/body;
  proxy_temp_path $WORK/nginx-proxy-tmp/proxy;
  upstream origin {
    server ${ADDR[direct]};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen ${ADDR[nginx]};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      # Relay the 100 MiB file through memory buffers, never through a temp file on disk.
      proxy_max_temp_file_size 0;
    }
  }
}
NGINX
cp "$WORK/ferry.yaml" "$WORK/haproxy.cfg" "$WORK/nginx-proxy.conf" "$WORK/origin.conf" "$OUT/"

wait_answers "http://${ADDR[direct]}/small" || { echo "the origin does not answer:"; cat "$WORK/origin.err"; exit 1; }

PROXIES=()
FERRY_SKIPPED=
if [ ! -x "$FERRY" ]; then
  FERRY_SKIPPED="no ferry binary at $FERRY (cargo build --release)"
elif ! "$FERRY" --config "$WORK/ferry.yaml" --check > "$WORK/ferry-check.out" 2>&1; then
  FERRY_SKIPPED="ferry refuses the reverse config (--check): $(tr -s '\n ' ' ' < "$WORK/ferry-check.out" | cut -c1-200)"
else
  start ferry "$FERRY" --config "$WORK/ferry.yaml"
  if ! wait_answers "http://${ADDR[ferry]}/small"; then
    FERRY_SKIPPED="ferry accepts the config but its reverse listener does not relay /small (see $OUT/ferry.out)"
  elif ! wait_answers "http://${ADDR[direct]}/small" -x "http://$FORWARD"; then
    FERRY_SKIPPED="ferry's forward listener does not relay /small (see $OUT/ferry.out)"
  else
    PROXIES+=(ferry)
  fi
fi
if [ -n "$FERRY_SKIPPED" ]; then
  warn "FERRY SKIPPED: $FERRY_SKIPPED"
  if [ -n "${PID[ferry]:-}" ]; then kill "${PID[ferry]}" 2>/dev/null || true; fi
fi
start haproxy haproxy -db -f "$WORK/haproxy.cfg"
start nginx nginx -c "$WORK/nginx-proxy.conf"
for p in haproxy nginx; do
  wait_answers "http://${ADDR[$p]}/small" || { echo "$p does not answer; its output:"; cat "$WORK/$p.out"; exit 1; }
  PROXIES+=("$p")
done
TARGETS=(direct "${PROXIES[@]}")

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "date: $(date -Is)"
  echo "rounds: $ROUNDS x ${SECS}s; load average: $LOAD0"
  echo "origin ${ADDR[direct]} (core 0, with wrk and the bulk client); proxies on core 1"
  for p in "${PROXIES[@]}"; do echo "$p ${ADDR[$p]} pid ${PID[$p]}"; done
  if [ -z "$FERRY_SKIPPED" ]; then
    echo "ferry forward listener $FORWARD; backend keepalive.max_idle: ${FERRY_MAX_IDLE:-default}"
  fi
  echo "ferry: $FERRY $("$FERRY" --version 2>/dev/null || true)"
  # sed, not head: a writer cut short by head dies of SIGPIPE, fatal under pipefail.
  haproxy -v | sed -n 1p
  nginx -v 2>&1
  wrk -v 2>&1 | sed -n 1p || true
} > "$OUT/setup.txt"
cat "$OUT/setup.txt"

# --- memory first, on fresh processes: 1000 idle keep-alive client connections ---
declare -A MEM
for p in "${PROXIES[@]}"; do
  MEM[$p]=$(taskset -c 0 python3 benches/memory.py --attach "${PID[$p]}" "${ADDR[$p]}" \
    --label "$p" --kind reverse --path /small --n 1000 2> "$OUT/$p-memory.err" || echo failed)
  echo "${MEM[$p]}" | tee -a "$OUT/memory.txt"
done
memval() { tr ' ' '\n' <<< "${MEM[$1]}" | awk -F= -v k="$2" '$1 == k {print $2}'; }

point() { # proxy conns: one wrk run of small GETs
  local pid=-
  if [ "$1" != direct ]; then pid=${PID[$1]}; fi
  wrk_point "$1-c$2" "http://${ADDR[$1]}/small" "$pid" "$2" "$SECS"
}
bulk() { # key proxy-pid client-args...: 10 x 100 MiB over one connection, MiB/s and proxy CPU %
  local key=$1 pid=$2 t0=0 t1 rate cpu; shift 2
  if [ "$pid" != - ]; then t0=$(cpu_ticks "$pid"); fi
  if ! rate=$(taskset -c 0 python3 benches/tunnel_get.py "$@" "$REPEAT" 2>> "$OUT/$key-bulk.err"); then
    warn "$key, round $r: the 100 MiB download failed ($OUT/$key-bulk.err)"
    return
  fi
  rec "$key.bulk" "$rate"
  if [ "$pid" != - ]; then
    t1=$(cpu_ticks "$pid")
    # Over the transfer itself (REPEAT x 100 MiB at the measured rate), not the client's start.
    cpu=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v rate="$rate" -v n="$REPEAT" \
      'BEGIN { printf "%.1f", 100 * t / hz / (n * 100 / rate) }')
    rec "$key.bulkcpu" "$cpu"
    rec "$key.bulkpercore" "$(per_core "$rate" "$cpu")"
  fi
}

for r in $(seq "$ROUNDS"); do
  echo "round $r of $ROUNDS" >&2
  for c in 64 256; do
    for p in "${TARGETS[@]}"; do point "$p" "$c"; done
  done
  for p in "${TARGETS[@]}"; do
    if [ "$p" = direct ]; then bulk direct - "${ADDR[direct]}" /big -
    else bulk "$p" "${PID[$p]}" "${ADDR[$p]}" /big -; fi
  done
  if [ -z "$FERRY_SKIPPED" ]; then bulk ferry-tunnel "${PID[ferry]}" "${ADDR[direct]}" /big "$FORWARD"; fi
done

# --- tables ---
{
  echo "Small GET (100 B), medians of $ROUNDS rounds of ${SECS}s; latency in ms; CPU % is the proxy's (100 % = one core)"
  echo
  echo "| target | req/s, 64 conns | p50 / p99 | proxy CPU % | req/s per proxy core | req/s, 256 conns | p50 / p99 | proxy CPU % | req/s per proxy core |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for p in "${TARGETS[@]}"; do
    row="| $p"
    for c in 64 256; do
      row+=" | $(fmt "$(med "$p-c$c.rps")") | $(fmt "$(med "$p-c$c.p50")" 2) / $(fmt "$(med "$p-c$c.p99")" 2)"
      if [ "$p" = direct ]; then row+=" | – | –"
      else row+=" | $(fmt "$(med "$p-c$c.cpu")" 1) | $(fmt "$(med "$p-c$c.percore")")"; fi
    done
    echo "$row |"
  done
  echo
  echo "100 MiB GET ($REPEAT downloads over one connection), medians of $ROUNDS; memory: 1000 idle keep-alive clients, once, on fresh processes"
  echo
  echo "| target | 100 MiB GET MiB/s | proxy CPU % | MiB/s per proxy core | RSS idle | RSS with 1000 idle clients | RSS per idle client connection |"
  echo "|---|---|---|---|---|---|---|"
  for p in "${TARGETS[@]}"; do
    if [ "$p" = direct ]; then
      echo "| direct | $(fmt "$(med direct.bulk)") | – | – | – | – | – |"
      continue
    fi
    if [ "${MEM[$p]}" = failed ] || [ -z "${MEM[$p]}" ]; then mem="failed ($OUT/$p-memory.err) | – | –"
    else
      open=$(memval "$p" open)
      mem="$(memval "$p" idle_kib) KiB | $(memval "$p" loaded_kib) KiB | $(memval "$p" per_conn_b) B"
      if [ "$open" != 1000 ]; then mem+=" (only $open of 1000 still open)"; fi
    fi
    echo "| $p (reverse) | $(fmt "$(med "$p.bulk")") | $(fmt "$(med "$p.bulkcpu")" 1) | $(fmt "$(med "$p.bulkpercore")") | $mem |"
    if [ "$p" = ferry ]; then
      echo "| ferry CONNECT tunnel (forward listener, same process) | $(fmt "$(med ferry-tunnel.bulk)") | $(fmt "$(med ferry-tunnel.bulkcpu)" 1) | $(fmt "$(med ferry-tunnel.bulkpercore)") | – | – | – |"
    fi
  done
  echo
  echo "Targets (issue 11): ratios are medians of per-round ratios, the proxies measured side by side"
  echo
  echo "| target | measured (medians) | ratio | met |"
  echo "|---|---|---|---|"
  if [ -n "$FERRY_SKIPPED" ]; then
    echo "| all ferry targets | not measured: ferry skipped (see warnings) | – | – |"
  else
    check() { # label measured ratio-key-a ratio-key-b scale unit min|max bound
      local q; q=$(ratio "$3" "$4")
      awk -v l="$1" -v m="$2" -v q="$q" -v s="$5" -v u="$6" -v w="$7" -v b="$8" 'BEGIN {
        if (q == "-") { printf "| %s | %s | – | – |\n", l, m; exit }
        ok = (w == "min") ? (q >= b) : (q <= b)
        printf "| %s | %s | %.*f%s | %s |\n", l, m, (u == "×") ? 2 : 0, q * s, u, ok ? "yes" : "NO" }'
    }
    for c in 64 256; do
      check "req/s per proxy core ≥ 1.2× HAProxy's ($c conns)" \
        "ferry $(fmt "$(med "ferry-c$c.percore")"), HAProxy $(fmt "$(med "haproxy-c$c.percore")")" \
        "ferry-c$c.percore" "haproxy-c$c.percore" 1 × min 1.2
    done
    for c in 64 256; do
      check "p99 ≤ HAProxy's ($c conns)" \
        "ferry $(fmt "$(med "ferry-c$c.p99")" 2) ms, HAProxy $(fmt "$(med "haproxy-c$c.p99")" 2) ms" \
        "ferry-c$c.p99" "haproxy-c$c.p99" 1 × max 1
    done
    b=$(memval ferry per_conn_b)
    echo "| ≤ 1 KiB RSS per idle keep-alive client connection | ${b:-failed} B | – | $(awk -v b="${b:-999999}" 'BEGIN { print (b <= 1024) ? "yes" : "NO" }') |"
    check "100 MiB relay ≥ 1.3× HAProxy's MiB/s" \
      "ferry $(fmt "$(med ferry.bulk)"), HAProxy $(fmt "$(med haproxy.bulk)")" ferry.bulk haproxy.bulk 1 × min 1.3
    check "100 MiB relay ≥ 90 % of ferry's CONNECT tunnel" \
      "ferry $(fmt "$(med ferry.bulk)"), tunnel $(fmt "$(med ferry-tunnel.bulk)")" ferry.bulk ferry-tunnel.bulk 100 " %" min 0.9
  fi
  if [ -s "$OUT/warnings.txt" ]; then
    echo
    echo "Warnings:"
    echo
    sed 's/^/- /' "$OUT/warnings.txt"
  fi
  echo
  echo "load average at the start: $LOAD0; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/table.md"
echo "raw outputs: $OUT"
