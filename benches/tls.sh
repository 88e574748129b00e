#!/usr/bin/env bash
# TLS termination: ferry against HAProxy (OpenSSL) and nginx (OpenSSL), on loopback, in one
# interleaved run (issue 13, "Performance"). An nginx origin serves a 100-byte and a 100 MiB
# file over plain HTTP; each proxy terminates TLS with the same certificate (generated here by
# openssl: ECDSA P-256 by default, RSA-2048 with KEY=rsa) and relays to that origin. The origin
# and the load generators share core 0, each proxy runs pinned to core 1, as in reverse.sh.
#
# Measured, medians of ROUNDS (the proxy's CPU is utime+stime of its process tree from /proc
# over the point's wall time; "per proxy core" = rate / (CPU % / 100); "run-queue wait" is the
# share of that time its threads were runnable but waiting for core 1, i.e. behind other work):
# - full and resumed handshakes per second, TLS 1.3 and TLS 1.2: examples/tls_load.rs, THREADS
#   loops of connect + handshake + GET /small + close_notify + close; resumed = the loops share a
#   session store (1.3: tickets; 1.2: session IDs or tickets, as the server offers). The client
#   reports what the server actually did (full/resumed), and a point where a server resumed
#   fewer than 90 % is flagged; the client's own CPU % shows when it, not the proxy, set the pace;
# - small GET over TLS keep-alive at 64 connections (wrk -t1 --latency https://...): req/s,
#   p50, p99, per proxy core;
# - 100 MiB GET over TLS (tls_load get, 10 downloads over one connection): MiB/s, per core;
# - RSS per idle TLS keep-alive connection, first, on fresh processes: tls_load hold opens
#   1000 TLS connections, each makes one GET and stays idle; RSS of the proxy's process tree
#   after minus before, / 1000, and how many of the 1000 are still open after an idle second.
# If ferry refuses the config (`--check`; a build without `--features tls` does), or does not
# answer over TLS, ferry is skipped, said so loudly, and the peers are still measured.
#
# Needs: wrk nginx haproxy curl openssl (installed with apt-get when missing), python3, cargo.
# Builds the client (cargo build --release --features tls --example tls_load) when it is
# missing or older than its source; ferry must be built by hand with --release --features tls.
# Usage: benches/tls.sh [rounds=3] [seconds=10]
# Env: FERRY (default target/release/ferry), CLIENT (default target/release/examples/tls_load),
# KEY (ec | rsa, default ec), THREADS (handshake loops, default 8), TLS12 (1: also the TLS 1.2
# handshake points, default 1), BASE_PORT (default 18380: the origin; the next three are ferry,
# HAProxy and nginx), FERRY_MAX_IDLE (ferry's backend keepalive.max_idle, default 256).
# Writes benches/results/tls-<time>/: raw outputs, configs, rounds.txt, table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
FERRY=${FERRY:-target/release/ferry}
CLIENT=${CLIENT:-target/release/examples/tls_load}
KEY=${KEY:-ec}
THREADS=${THREADS:-8}
TLS12=${TLS12:-1}
BASE_PORT=${BASE_PORT:-18380}
FERRY_MAX_IDLE=${FERRY_MAX_IDLE:-256}
REPEAT=10 # 100 MiB downloads per bulk point
# Checked on its own too: plain `shellcheck` (no -x) skips the sourced file.
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC1091
. benches/lib.sh

need() { # command package: apt-get install the package when the command is missing
  command -v "$1" > /dev/null && return 0
  echo "installing $2 (for $1)" >&2
  apt-get install -y -q "$2" > /dev/null
}
need wrk wrk
need nginx nginx-light
need haproxy haproxy
need curl curl
need openssl openssl
need ss iproute2
if [ ! -x "$CLIENT" ] || [ examples/tls_load.rs -nt "$CLIENT" ]; then
  cargo build -j1 --release --features tls --example tls_load
fi

bench_init tls
ORIGIN=127.0.0.1:$BASE_PORT
declare -A ADDR PID
ADDR[ferry]=127.0.0.1:$((BASE_PORT + 1))
ADDR[haproxy]=127.0.0.1:$((BASE_PORT + 2))
ADDR[nginx]=127.0.0.1:$((BASE_PORT + 3))
ports_free "$BASE_PORT" $((BASE_PORT + 3))

# --- the certificate, one for all three: self-signed for localhost (the client's SNI) ---
case "$KEY" in
  ec) KEYARGS=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
  rsa) KEYARGS=(-newkey rsa:2048) ;;
  *) echo "KEY must be ec or rsa" >&2; exit 2 ;;
esac
# openssl 3 writes the key as PKCS#8, which is what ferry reads.
openssl req -x509 "${KEYARGS[@]}" -nodes -days 30 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$WORK/cert.key" -out "$WORK/cert.crt" 2> "$WORK/openssl.log" || { cat "$WORK/openssl.log"; exit 1; }
cat "$WORK/cert.crt" "$WORK/cert.key" > "$WORK/cert.pem" # HAProxy's `crt` wants both in one
chmod 644 "$WORK/cert.key" "$WORK/cert.pem"

# --- origin: nginx serving a 100-byte and a 100 MiB file over plain HTTP, core 0 ---
mkdir -p "$WORK/nginx-proxy-tmp"
small_file "$WORK/www"
head -c $((100 << 20)) /dev/urandom > "$WORK/www/big"
chmod 644 "$WORK/www/big"
origin_conf origin "$ORIGIN" "$WORK/www"
taskset -c 0 nginx -c "$WORK/origin.conf" & pids+=($!)

# --- the proxies, each pinned to core 1, each terminating TLS in front of the origin ---
start() { # name command...
  local name=$1; shift
  taskset -c 1 "$@" > "$WORK/$name.out" 2>&1 & pids+=($!)
  PID[$name]=$!
}

# ferry: the reverse role only, one worker, TLS listener only. Backend keep-alive as in
# resilience.sh: the default 32 idle per server would close backend connections under 64
# clients (see BENCHMARKS.md, "Reverse proxy").
cat > "$WORK/ferry.yaml" <<YAML
workers: 1
log_level: warn
limits:
  idle_timeout_secs: 600
tls:
  certificates:
    - {cert: "$WORK/cert.crt", key: "$WORK/cert.key"}
reverse:
  tls_listen: ["${ADDR[ferry]}"]
  sites:
    - hosts: ["*"]
      routes: [{path: "/", backend: b}]
  backends:
    b:
      servers: [{url: "http://$ORIGIN"}]
      keepalive: {max_idle: $FERRY_MAX_IDLE}
YAML

# HAProxy: OpenSSL's defaults otherwise (TLS 1.3 tickets, a 20,000-entry session cache for 1.2).
cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.2
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
  bind ${ADDR[haproxy]} ssl crt $WORK/cert.pem alpn http/1.1
  default_backend be
backend be
  server origin $ORIGIN
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
    server $ORIGIN;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen ${ADDR[nginx]} ssl;
    ssl_certificate $WORK/cert.crt;
    ssl_certificate_key $WORK/cert.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    # Resumption on both ways: tickets (the default) and a session cache for 1.2 session IDs.
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_max_temp_file_size 0;
    }
  }
}
NGINX
cp "$WORK/ferry.yaml" "$WORK/haproxy.cfg" "$WORK/nginx-proxy.conf" "$WORK/origin.conf" "$WORK/cert.crt" "$OUT/"

wait_answers "http://$ORIGIN/small" || { echo "the origin does not answer:"; cat "$WORK/origin.err"; exit 1; }

PROXIES=()
FERRY_SKIPPED=
if [ ! -x "$FERRY" ]; then
  FERRY_SKIPPED="no ferry binary at $FERRY (cargo build --release --features tls)"
elif ! "$FERRY" --config "$WORK/ferry.yaml" --check > "$WORK/ferry-check.out" 2>&1; then
  FERRY_SKIPPED="ferry refuses the TLS config (--check): $(tr -s '\n ' ' ' < "$WORK/ferry-check.out" | cut -c1-200)"
else
  start ferry "$FERRY" --config "$WORK/ferry.yaml"
  if ! wait_answers "https://${ADDR[ferry]}/small" -k; then
    FERRY_SKIPPED="ferry accepts the config but does not answer /small over TLS (see $OUT/ferry.out)"
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
  wait_answers "https://${ADDR[$p]}/small" -k || { echo "$p does not answer over TLS; its output:"; cat "$WORK/$p.out"; exit 1; }
  PROXIES+=("$p")
done

VERSIONS=(1.3)
if [ "$TLS12" = 1 ]; then VERSIONS+=(1.2); fi
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "date: $(date -Is)"
  echo "rounds: $ROUNDS x ${SECS}s; load average: $LOAD0"
  echo "certificate: $KEY ($(openssl x509 -in "$WORK/cert.crt" -noout -text | grep -m1 'Public Key Algorithm' | sed 's/^ *//'))"
  echo "origin $ORIGIN (core 0, with wrk and tls_load); proxies on core 1"
  for p in "${PROXIES[@]}"; do echo "$p ${ADDR[$p]} pid ${PID[$p]}"; done
  echo "handshake loops: $THREADS; TLS versions: ${VERSIONS[*]}; ferry keepalive.max_idle: $FERRY_MAX_IDLE"
  echo "ferry: $FERRY $("$FERRY" --version 2>/dev/null || true)"
  # sed, not head: a writer cut short by head dies of SIGPIPE, fatal under pipefail.
  haproxy -vv | sed -n -e 1p -e '/Running on OpenSSL/p'
  nginx -V 2>&1 | sed -n -e 1p -e '/OpenSSL/p'
  wrk -v 2>&1 | sed -n 1p || true
} > "$OUT/setup.txt"
cat "$OUT/setup.txt"

# --- memory first, on fresh processes: 1000 idle TLS keep-alive connections ---
declare -A MEM
for p in "${PROXIES[@]}"; do
  MEM[$p]=$(taskset -c 0 "$CLIENT" hold "${ADDR[$p]}" /small --conns 1000 --pid "${PID[$p]}" \
    2> "$OUT/$p-memory.err" || echo failed)
  echo "$p ${MEM[$p]}" | tee -a "$OUT/memory.txt"
done
# How long the threads of a process tree have waited, runnable, for a CPU (schedstat's second
# field, ns): the share of a point's wall time the proxy spent waiting behind other work on its
# core. A high figure means its rate says more about the machine's load than about the proxy.
runq_ns() { # pid
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1]); kids = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            kids.setdefault(int(f[1]), []).append(int(d))
        except Exception:
            pass
t, todo = 0, [root]
while todo:
    p = todo.pop(); todo += kids.get(p, [])
    try:
        for task in os.listdir(f"/proc/{p}/task"):
            t += int(open(f"/proc/{p}/task/{task}/schedstat").read().split()[1])
    except Exception:
        pass
print(t)
PY
}
wait_pct() { # ns-waited ns-wall
  awk -v w="$1" -v n="$2" 'BEGIN { printf "%.1f", 100 * w / n }'
}
memval() { tr ' ' '\n' <<< "${MEM[$1]}" | awk -F= -v k="$2" '$1 == k {print $2}'; }
kv() { tr ' ' '\n' < "$2" | awk -F= -v k="$1" '$1 == k {print $2}'; } # key file

handshake_point() { # proxy version full|resumed: one tls_load run, recorded under its key
  local p=$1 v=$2 kind=$3 key="$1-hs$2-$3" f w0 t0 t1 s0 s1 rate cpu n resumed args=()
  f="$OUT/$key-$r.txt"
  if [ "$v" = 1.2 ]; then args+=(--tls12); fi
  if [ "$kind" = resumed ]; then args+=(--resume); fi
  w0=$(runq_ns "${PID[$p]}")
  t0=$(cpu_ticks "${PID[$p]}")
  s0=$(now_ns)
  if ! timeout -k 5 $((SECS + 30)) taskset -c 0 "$CLIENT" handshakes "${ADDR[$p]}" /small \
    --threads "$THREADS" --secs "$SECS" "${args[@]}" > "$f" 2> "$OUT/$key-$r.err"; then
    warn "$key, round $r: tls_load failed ($OUT/$key-$r.err)"
    return
  fi
  s1=$(now_ns)
  t1=$(cpu_ticks "${PID[$p]}")
  rec "$key.wait" "$(wait_pct "$(($(runq_ns "${PID[$p]}") - w0))" "$((s1 - s0))")"
  rate=$(kv rate "$f")
  n=$(kv handshakes "$f")
  resumed=$(kv resumed "$f")
  if [ "$(kv errors "$f")" != 0 ]; then warn "$key, round $r: $(kv errors "$f") errors ($OUT/$key-$r.err)"; fi
  if [ "$kind" = resumed ] && [ $((resumed * 10)) -lt $((n * 9)) ]; then
    warn "$key, round $r: only $resumed of $n handshakes were resumed"
  fi
  if [ "$kind" = full ] && [ "$resumed" != 0 ]; then warn "$key, round $r: $resumed resumed without --resume"; fi
  cpu=$(cpu_pct "$((t1 - t0))" "$((s1 - s0))")
  rec "$key.rate" "$rate"
  rec "$key.cpu" "$cpu"
  rec "$key.percore" "$(per_core "$rate" "$cpu")"
  rec "$key.clientcpu" "$(cpu_pct "$(kv client_ticks "$f")" "$((s1 - s0))")"
}
bulk() { # proxy: 10 x 100 MiB over one TLS connection, MiB/s and proxy CPU %
  local p=$1 f="$OUT/$1-bulk-$r.txt" w0 t0 t1 rate cpu
  w0=$(runq_ns "${PID[$p]}")
  t0=$(cpu_ticks "${PID[$p]}")
  if ! timeout -k 5 120 taskset -c 0 "$CLIENT" get "${ADDR[$p]}" /big --repeat "$REPEAT" > "$f" 2> "$OUT/$p-bulk-$r.err"; then
    warn "$p, round $r: the 100 MiB download failed ($OUT/$p-bulk-$r.err)"
    return
  fi
  t1=$(cpu_ticks "${PID[$p]}")
  rate=$(kv mib_s "$f")
  rec "$p.bulk" "$rate"
  rec "$p.bulkwait" "$(wait_pct "$(($(runq_ns "${PID[$p]}") - w0))" "$(kv secs "$f" | awk '{ printf "%.0f", $1 * 1e9 }')")"
  # Over the transfer itself (its measured seconds), not the client's start and handshake.
  cpu=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v s="$(kv secs "$f")" 'BEGIN { printf "%.1f", 100 * t / hz / s }')
  rec "$p.bulkcpu" "$cpu"
  rec "$p.bulkpercore" "$(per_core "$rate" "$cpu")"
}

for r in $(seq "$ROUNDS"); do
  echo "round $r of $ROUNDS (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  for v in "${VERSIONS[@]}"; do
    for kind in full resumed; do
      for p in "${PROXIES[@]}"; do handshake_point "$p" "$v" "$kind"; done
    done
  done
  for p in "${PROXIES[@]}"; do
    w0=$(runq_ns "${PID[$p]}")
    s0=$(now_ns)
    wrk_point "$p-c64" "https://${ADDR[$p]}/small" "${PID[$p]}" 64 "$SECS"
    rec "$p-c64.wait" "$(wait_pct "$(($(runq_ns "${PID[$p]}") - w0))" "$(($(now_ns) - s0))")"
  done
  for p in "${PROXIES[@]}"; do bulk "$p"; done
done

# --- tables ---
{
  echo "TLS, $KEY certificate; medians of $ROUNDS rounds of ${SECS}s; CPU % is the proxy's (100 % = one core)"
  echo
  echo "| proxy | handshake | TLS | handshakes/s | proxy CPU % | handshakes/s per proxy core | client CPU % | proxy run-queue wait % |"
  echo "|---|---|---|---|---|---|---|---|"
  for v in "${VERSIONS[@]}"; do
    for kind in full resumed; do
      for p in "${PROXIES[@]}"; do
        k="$p-hs$v-$kind"
        echo "| $p | $kind | $v | $(fmt "$(med "$k.rate")") | $(fmt "$(med "$k.cpu")" 1) | $(fmt "$(med "$k.percore")") | $(fmt "$(med "$k.clientcpu")" 1) | $(fmt "$(med "$k.wait")" 1) |"
      done
    done
  done
  echo
  echo "Agreed in round 1 (as the client saw it):"
  echo
  for p in "${PROXIES[@]}"; do
    for v in "${VERSIONS[@]}"; do
      for kind in full resumed; do
        echo "- $p, TLS $v $kind: $(grep -o 'suite=.*' "$OUT/$p-hs$v-$kind-1.txt" 2>/dev/null || echo -)"
      done
    done
    echo "- $p, 100 MiB GET: $(grep -o 'suite=.*' "$OUT/$p-bulk-1.txt" 2>/dev/null || echo -)"
  done
  echo
  echo "| proxy | small GET req/s, 64 TLS keep-alive conns | p50 / p99 ms | proxy CPU % | req/s per proxy core | run-queue wait % | 100 MiB GET MiB/s | proxy CPU % | MiB/s per proxy core | run-queue wait % | RSS idle | RSS with 1000 idle TLS conns | per idle TLS conn |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for p in "${PROXIES[@]}"; do
    if [ "${MEM[$p]}" = failed ] || [ -z "${MEM[$p]}" ]; then mem="failed ($OUT/$p-memory.err) | – | –"
    else
      open=$(memval "$p" open)
      mem="$(memval "$p" idle_kib) KiB | $(memval "$p" loaded_kib) KiB | $(memval "$p" per_conn_b) B"
      if [ "$open" != 1000 ]; then mem+=" (only $open of 1000 still open)"; fi
    fi
    echo "| $p | $(fmt "$(med "$p-c64.rps")") | $(fmt "$(med "$p-c64.p50")" 2) / $(fmt "$(med "$p-c64.p99")" 2) | $(fmt "$(med "$p-c64.cpu")" 1) | $(fmt "$(med "$p-c64.percore")") | $(fmt "$(med "$p-c64.wait")" 1) | $(fmt "$(med "$p.bulk")") | $(fmt "$(med "$p.bulkcpu")" 1) | $(fmt "$(med "$p.bulkpercore")") | $(fmt "$(med "$p.bulkwait")" 1) | $mem |"
  done
  echo
  echo "Targets (issue 13): ratios are medians of per-round ratios, the proxies measured side by side"
  echo
  echo "| target | measured (medians) | ratio | met |"
  echo "|---|---|---|---|"
  if [ -n "$FERRY_SKIPPED" ]; then
    echo "| all ferry targets | not measured: ferry skipped (see warnings) | – | – |"
  else
    check() { # label measured ratio-key-a ratio-key-b: met when the median ratio is >= 1
      local q; q=$(ratio "$3" "$4")
      awk -v l="$1" -v m="$2" -v q="$q" 'BEGIN {
        if (q == "-") { printf "| %s | %s | – | – |\n", l, m; exit }
        printf "| %s | %s | %.2f× | %s |\n", l, m, q, (q >= 1) ? "yes" : "NO" }'
    }
    for v in "${VERSIONS[@]}"; do
      for kind in full resumed; do
        k="hs$v-$kind.percore"
        check "$kind handshakes (TLS $v) per proxy core ≥ HAProxy's" \
          "ferry $(fmt "$(med "ferry-$k")"), HAProxy $(fmt "$(med "haproxy-$k")")" "ferry-$k" "haproxy-$k"
      done
    done
    check "TLS small GET req/s per proxy core ≥ HAProxy's (64 conns)" \
      "ferry $(fmt "$(med ferry-c64.percore)"), HAProxy $(fmt "$(med haproxy-c64.percore)")" \
      ferry-c64.percore haproxy-c64.percore
    b=$(memval ferry per_conn_b)
    echo "| ≤ 8 KiB RSS per idle TLS connection | ferry ${b:-failed} B, HAProxy $(memval haproxy per_conn_b) B, nginx $(memval nginx per_conn_b) B | – | $(awk -v b="${b:-999999999}" 'BEGIN { print (b <= 8192) ? "yes" : "NO" }') |"
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
