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
OUT=benches/results/reverse-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
WORK=$(mktemp -d)
chmod 755 "$WORK"
# Every request below goes to 127.0.0.1; a proxy from the environment must not take it elsewhere.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  # The proxies' own output (warnings, errors), then the raw results without empty files.
  for f in "$WORK"/*.out "$WORK"/*.err; do if [ -s "$f" ]; then cp "$f" "$OUT/"; fi; done
  find "$OUT" -type f -empty -delete
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CLK_TCK=$(getconf CLK_TCK)
warn() { echo "WARNING: $*" | tee -a "$OUT/warnings.txt" >&2; }

ORIGIN_PORT=$BASE_PORT
declare -A ADDR PID
ADDR[direct]=127.0.0.1:$ORIGIN_PORT
ADDR[ferry]=127.0.0.1:$((BASE_PORT + 1))
ADDR[haproxy]=127.0.0.1:$((BASE_PORT + 2))
ADDR[nginx]=127.0.0.1:$((BASE_PORT + 3))
FORWARD=127.0.0.1:$((BASE_PORT + 4))
for port in $(seq "$BASE_PORT" $((BASE_PORT + 4))); do
  if [ -n "$(ss -Hltn "sport = :$port")" ]; then
    echo "port $port is taken (another bench running?); set BASE_PORT" >&2
    exit 1
  fi
done

# --- origin: nginx serving a 100-byte and a 100 MiB file, keep-alive, no logging, core 0 ---
mkdir -p "$WORK/www" "$WORK/nginx-proxy-tmp"
head -c 100 /dev/zero | tr '\0' 'x' > "$WORK/www/small"
head -c $((100 << 20)) /dev/urandom > "$WORK/www/big"
chmod 755 "$WORK/www"
chmod 644 "$WORK/www/"*
cat > "$WORK/origin.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/origin.pid;
error_log $WORK/origin.err;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  server { listen ${ADDR[direct]}; root $WORK/www; }
}
NGINX
taskset -c 0 nginx -c "$WORK/origin.conf" & pids+=($!)

# --- the proxies, each pinned to core 1 ---
start() { # name command...
  local name=$1; shift
  taskset -c 1 "$@" > "$WORK/$name.out" 2>&1 & pids+=($!)
  PID[$name]=$!
}
answers() { # url [curl args...]: 200 with the small file's 100 bytes
  local url=$1; shift
  [ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code} %{size_download}' "$@" "$url")" = "200 100" ]
}
wait_answers() { # url [curl args...]
  for _ in $(seq 100); do answers "$@" && return 0; sleep 0.1; done
  return 1
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

cpu_ticks() { # utime+stime summed over a process tree (the process's own covers its threads)
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
now_ns() { date +%s%N; }
# Every figure goes to rounds.txt as "name round value": medians are taken per name, and a
# ratio between two targets per round first (neighbours in time share the machine's load,
# which other work on these 2 cores makes drift), then its median.
rec() { echo "$1 $r $2" >> "$OUT/rounds.txt"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
med() { awk -v k="$1" '$1 == k {print $3}' "$OUT/rounds.txt" | median; }
ratio() { # a b: median over the rounds of a / b
  awk -v a="$1" -v b="$2" '$1 == a {x[$2] = $3} $1 == b {y[$2] = $3}
    END {for (r in x) if (r in y && y[r] > 0) print x[r] / y[r]}' "$OUT/rounds.txt" | median
}
lat_ms() { # percentile wrk-output: wrk's latency (us, ms, s, m) in ms
  awk -v q="$1" '$1 == q {
    v = $2
    if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v) }
    else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
    else if (v ~ /m$/) { sub(/m$/, "", v); v *= 60000 }
    printf "%.2f\n", v }' "$2"
}

point() { # proxy conns: one wrk run of small GETs
  local p=$1 c=$2 f="$OUT/$1-c$2-$r.txt" t0=0 t1 s0 s1 rps cpu
  if [ "$p" != direct ]; then t0=$(cpu_ticks "${PID[$p]}"); fi
  s0=$(now_ns)
  taskset -c 0 wrk -t1 -c"$c" -d"${SECS}s" --latency "http://${ADDR[$p]}/small" > "$f"
  s1=$(now_ns)
  if grep -q "Non-2xx" "$f"; then warn "$p, $c conns, round $r: non-2xx answers ($f)"; fi
  if grep -q "Socket errors" "$f"; then warn "$p, $c conns, round $r: socket errors ($f)"; fi
  rps=$(awk '/Requests\/sec/ {print $2}' "$f")
  rec "$p-c$c.rps" "$rps"
  rec "$p-c$c.p50" "$(lat_ms 50% "$f")"
  rec "$p-c$c.p99" "$(lat_ms 99% "$f")"
  if [ "$p" != direct ]; then
    t1=$(cpu_ticks "${PID[$p]}")
    cpu=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v ns="$((s1 - s0))" \
      'BEGIN { printf "%.1f", 100 * t / hz / (ns / 1e9) }')
    rec "$p-c$c.cpu" "$cpu"
    # Per round, so that each run's req/s goes with its own CPU time.
    rec "$p-c$c.percore" "$(awk -v cpu="$cpu" -v rps="$rps" 'BEGIN { printf "%.0f", (cpu > 0) ? rps / (cpu / 100) : 0 }')"
  fi
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
    rec "$key.bulkpercore" "$(awk -v cpu="$cpu" -v rate="$rate" 'BEGIN { printf "%.0f", (cpu > 0) ? rate / (cpu / 100) : 0 }')"
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
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "-" || v == "") print "–"; else printf "%.*f\n", d, v }'; }
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
