#!/usr/bin/env bash
# What issue 12 asks to be shown, measured: the cost of ferry's reverse-role resilience keys
# (retries, circuit breaker, queue) on the happy path, and what clients see when one of three
# servers dies under load. On loopback, pinned as in reverse.sh: the three nginx servers and
# wrk on core 0, ferry (one worker) on core 1.
#
# 1. Happy path: small GET (100 B, wrk -t1 -c64 --latency) through ferry to three servers,
#    config A (no retries/circuit_breaker/queue keys: the defaults) against config B (the
#    keys set), in one interleaved run (A then B in odd rounds, B then A in even ones):
#    req/s, p50/p99, ferry's CPU % (utime+stime from /proc over wall time), req/s per ferry
#    core, and the per-round ratio B/A (target: within 3 %).
# 2. One server killed: wrk for KILL_SECS at c64; KILL_AT seconds in, one of the three nginx
#    servers (each a single process, `master_process off`, so its PID is the whole server) gets
#    SIGKILL. Config R (`retries: {attempts: 2, on: [connect_failure, reset]}`) against config N
#    (`retries: {attempts: 0}`), both with `circuit_breaker: {failures: 5, open_secs: 1,
#    half_open_requests: 1}` so that the restarted server is back in one second. Reported per
#    round: requests, non-2xx answers and socket errors (wrk's summary), req/s, p99, the
#    maximum latency, and the retries ferry made (its admin /status). Target: no non-2xx with R. Between rounds the
#    server is restarted on its port, requests go through ferry until its /status shows every
#    circuit closed, then a 2 s unmeasured wrk run warms ferry's idle connections up again
#    (its errors, if any, are reported as a warning: they would be ferry failing to recover).
# All four ferry configs run as four processes (the idle ones cost nothing), each with
# `keepalive: {max_idle: 256}` (the default 32 per server closes connections under 64 clients).
#
# Needs (apt): wrk nginx curl; python3; a release build of ferry.
# Usage: benches/resilience.sh [rounds=3] [seconds=10]
# Env: FERRY (default target/release/ferry), BASE_PORT (default 18290: the servers, then
# ferry A, B, R, N's reverse listeners, then their admin servers: 11 ports), KILL_SECS (10),
# KILL_AT (3), KILL_SIGNAL (KILL; TERM is nginx's fast shutdown), LOG_LEVEL (ferry's, warn;
# debug for a diagnostic run: the logs land in the results directory), ACCESS_LOG (false;
# true writes ferry's access log, with each request's attempts and ms, to the same logs).
# Writes benches/results/resilience-<time>/: wrk outputs, /status snapshots, configs, logs,
# rounds.txt, kills.txt, table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
FERRY=${FERRY:-target/release/ferry}
BASE_PORT=${BASE_PORT:-18290}
KILL_SECS=${KILL_SECS:-10}
KILL_AT=${KILL_AT:-3}
KILL_SIGNAL=${KILL_SIGNAL:-KILL}
LOG_LEVEL=${LOG_LEVEL:-warn}
CONNS=64
# Checked on its own too: plain `shellcheck` (no -x) skips the sourced file.
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC1091
. benches/lib.sh
bench_init resilience
ports_free "$BASE_PORT" $((BASE_PORT + 10))

CONFIGS=(A B R N)
declare -A ADDR ADMIN PID SPID
for i in 0 1 2; do ADDR[s$i]=127.0.0.1:$((BASE_PORT + i)); done
for i in 0 1 2 3; do
  ADDR[${CONFIGS[$i]}]=127.0.0.1:$((BASE_PORT + 3 + i))
  ADMIN[${CONFIGS[$i]}]=127.0.0.1:$((BASE_PORT + 7 + i))
done

# --- three servers: nginx, one process each (its PID is the server), core 0 ---
small_file "$WORK/www"
for i in 0 1 2; do origin_conf "s$i" "${ADDR[s$i]}" "$WORK/www" "master_process off;"; done
start_server() { # index: (re)starts server i on its port, pinned to core 0
  taskset -c 0 nginx -c "$WORK/s$1.conf" >> "$WORK/s$1.out" 2>&1 & pids+=($!)
  SPID[$1]=$!
  wait_answers "http://${ADDR[s$1]}/small" || { echo "server $1 does not answer:"; cat "$WORK/s$1.err"; exit 1; }
}
stop_server() { # index signal: kills server i, reaps it and forgets its PID (it may be reused)
  local p=${SPID[$1]} q keep=()
  kill -s "$2" "$p"
  wait "$p" 2>/dev/null || true
  for q in "${pids[@]}"; do if [ "$q" != "$p" ]; then keep+=("$q"); fi; done
  pids=("${keep[@]}")
}
for i in 0 1 2; do start_server "$i"; done

# --- ferry, four configs, one worker each, core 1 ---
ferry_conf() { # name backend-keys...: reverse listener, admin server, the three servers
  local name=$1 key; shift
  cat > "$WORK/ferry-$name.yaml" <<YAML
workers: 1
log_level: $LOG_LEVEL
access_log: ${ACCESS_LOG:-false}
admin_listen: "${ADMIN[$name]}"
limits:
  idle_timeout_secs: 600
reverse:
  listen: ["${ADDR[$name]}"]
  sites:
    - hosts: ["*"]
      routes: [{path: "/", backend: b}]
  backends:
    b:
      servers:
        - url: "http://${ADDR[s0]}"
        - url: "http://${ADDR[s1]}"
        - url: "http://${ADDR[s2]}"
      keepalive: {max_idle: 256}
YAML
  for key in "$@"; do echo "      $key" >> "$WORK/ferry-$name.yaml"; done
}
ferry_conf A
ferry_conf B 'retries: {attempts: 2, on: [connect_failure, reset, "502", "503"], backoff_ms: 25, budget_percent: 20}' \
  'circuit_breaker: {failures: 5, open_secs: 10, half_open_requests: 1}' \
  'queue: {max_active: 1000, max_queued: 1000, timeout_secs: 10}'
ferry_conf R 'retries: {attempts: 2, on: [connect_failure, reset]}' \
  'circuit_breaker: {failures: 5, open_secs: 1, half_open_requests: 1}'
ferry_conf N 'retries: {attempts: 0}' \
  'circuit_breaker: {failures: 5, open_secs: 1, half_open_requests: 1}'
cp "$WORK"/*.yaml "$WORK"/s0.conf "$OUT/"
[ -x "$FERRY" ] || { echo "no ferry binary at $FERRY (cargo build --release)" >&2; exit 1; }
for c in "${CONFIGS[@]}"; do
  if ! "$FERRY" --config "$WORK/ferry-$c.yaml" --check > "$WORK/check-$c.out" 2>&1; then
    echo "ferry refuses config $c:" >&2; cat "$WORK/check-$c.out" >&2; exit 1
  fi
  taskset -c 1 "$FERRY" --config "$WORK/ferry-$c.yaml" > "$WORK/ferry-$c.out" 2>&1 & pids+=($!)
  PID[$c]=$!
done
for c in "${CONFIGS[@]}"; do
  wait_answers "http://${ADDR[$c]}/small" || { echo "ferry $c does not relay; its output:"; cat "$WORK/ferry-$c.out"; exit 1; }
done

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "date: $(date -Is)"
  echo "rounds: $ROUNDS; happy path ${SECS}s per point; kill test ${KILL_SECS}s, SIG$KILL_SIGNAL at ${KILL_AT}s; $CONNS conns"
  echo "load average at the start: $LOAD0"
  echo "servers (nginx, one process each, core 0, with wrk): ${ADDR[s0]} ${ADDR[s1]} ${ADDR[s2]}"
  for c in "${CONFIGS[@]}"; do echo "ferry $c ${ADDR[$c]} admin ${ADMIN[$c]} pid ${PID[$c]} (core 1)"; done
  echo "ferry: $FERRY $("$FERRY" --version 2>/dev/null || true); worktree at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nginx -v 2>&1
  # sed, not head: a writer cut short by head dies of SIGPIPE, fatal under pipefail.
  wrk -v 2>&1 | sed -n 1p || true
} > "$OUT/setup.txt"
cat "$OUT/setup.txt"

# --- ferry's view of its servers, from its admin /status ---
status() { curl -s --max-time 2 "http://${ADMIN[$1]}/status"; }
status_field() { # field < status JSON: backend b's field (retries, ...)
  python3 -c 'import json, sys
s = json.load(sys.stdin)
print(next(b for b in s["backends"] if b["name"] == "b")[sys.argv[1]])' "$1"
}
all_closed() { # config: every server online with its circuit closed
  status "$1" | python3 -c 'import json, sys
s = json.load(sys.stdin)
b = next(b for b in s["backends"] if b["name"] == "b")
sys.exit(0 if all(m["online"] and m["circuit"] == "closed" for m in b["servers"]) else 1)'
}
wait_closed() { # config: requests through ferry (a half-open circuit closes on a trial's
  # success) until /status shows every circuit closed; 10 s at most
  for _ in $(seq 100); do
    if all_closed "$1"; then return 0; fi
    answers "http://${ADDR[$1]}/small" || true
    sleep 0.1
  done
  return 1
}
wrk_field() { # what file: a figure from wrk's summary (0 when wrk printed no such line)
  case $1 in
    requests) awk '/requests in/ {print $1}' "$2" ;;
    non2xx) awk -F': *' '/Non-2xx or 3xx responses/ {n = $2} END {print n + 0}' "$2" ;;
    sockerr) awk '/Socket errors/ {gsub(",", ""); n = $4 + $6 + $8 + $10} END {print n + 0}' "$2" ;;
    sockdetail) awk -F': *' '/Socket errors/ {d = $2} END {print (d == "") ? "none" : d}' "$2" ;;
  esac
}

kill_point() { # config victim: one kill run; figures to rounds.txt, a row to kills.txt
  local c=$1 v=$2 f="$OUT/kill-$1-$r.txt" w="$OUT/warmup-$1-$r.txt" ret0 ret1 wpid rps
  wait_closed "$c" || warn "kill $c round $r: ferry's /status still shows a server down or a circuit open"
  timeout -k 5 30 taskset -c 0 wrk -t1 -c"$CONNS" -d2s "http://${ADDR[$c]}/small" > "$w"
  if [ "$(wrk_field non2xx "$w")" != 0 ] || [ "$(wrk_field sockerr "$w")" != 0 ]; then
    warn "kill $c round $r: the warm-up before the kill had errors ($w)"
  fi
  ret0=$(status "$c" | status_field retries)
  timeout -k 5 $((KILL_SECS + 30)) taskset -c 0 wrk -t1 -c"$CONNS" -d"${KILL_SECS}s" --latency \
    "http://${ADDR[$c]}/small" > "$f" &
  wpid=$!
  sleep "$KILL_AT"
  stop_server "$v" "$KILL_SIGNAL"
  wait "$wpid"
  status "$c" > "$OUT/status-$c-$r.json"
  ret1=$(status_field retries < "$OUT/status-$c-$r.json")
  start_server "$v"
  rps=$(awk '/Requests\/sec/ {print $2}' "$f")
  rec "kill-$c.rps" "$rps"
  rec "kill-$c.p99" "$(lat_ms 99% "$f")"
  rec "kill-$c.max" "$(lat_ms Latency "$f" 4)"
  rec "kill-$c.non2xx" "$(wrk_field non2xx "$f")"
  rec "kill-$c.sockerr" "$(wrk_field sockerr "$f")"
  rec "kill-$c.retries" "$((ret1 - ret0))"
  echo "| $r | $c | ${ADDR[s$v]} | $(wrk_field requests "$f") | $(wrk_field non2xx "$f") | $(wrk_field sockdetail "$f") | $(fmt "$rps") | $(fmt "$(lat_ms 99% "$f")" 2) | $(fmt "$(lat_ms Latency "$f" 4)" 2) | $((ret1 - ret0)) |" >> "$OUT/kills.txt"
  wait_closed "$c" || warn "kill $c round $r: the restarted server is not back in ferry's /status"
}

for r in $(seq "$ROUNDS"); do
  echo "round $r of $ROUNDS: happy path" >&2
  if [ $((r % 2)) = 1 ]; then order=(A B); else order=(B A); fi
  for c in "${order[@]}"; do wrk_point "$c" "http://${ADDR[$c]}/small" "${PID[$c]}" "$CONNS" "$SECS"; done
done
for r in $(seq "$ROUNDS"); do
  echo "round $r of $ROUNDS: one server killed" >&2
  if [ $((r % 2)) = 1 ]; then order=(R N); else order=(N R); fi
  for c in "${order[@]}"; do kill_point "$c" $(((r - 1) % 3)); done
done

# --- tables ---
per_round() { # a b key: "x, y, z" the per-round ratios a/b of key, in round order
  awk -v a="$1.$3" -v b="$2.$3" '$1 == a {x[$2] = $3} $1 == b {y[$2] = $3}
    END {for (r = 1; r in x; r++) printf "%s%.3f", (r > 1) ? ", " : "", (r in y && y[r] > 0) ? x[r] / y[r] : 0}' "$OUT/rounds.txt"
}
{
  echo "1. Happy path: small GET (100 B) through ferry (one worker) to three nginx servers, wrk -t1 -c$CONNS --latency,"
  echo "medians of $ROUNDS rounds of ${SECS}s; latency in ms; CPU % is ferry's (100 % = one core)"
  echo
  echo "| config | req/s | p50 / p99 | ferry CPU % | req/s per ferry core |"
  echo "|---|---|---|---|---|"
  for c in A B; do
    echo "| $c | $(fmt "$(med "$c.rps")") | $(fmt "$(med "$c.p50")" 2) / $(fmt "$(med "$c.p99")" 2) | $(fmt "$(med "$c.cpu")" 1) | $(fmt "$(med "$c.percore")") |"
  done
  echo
  echo "| B / A | per round | median | within 3 % (≥ 0.97) |"
  echo "|---|---|---|---|"
  for k in rps percore; do
    q=$(ratio "B.$k" "A.$k")
    label=req/s
    if [ "$k" = percore ]; then label="req/s per ferry core"; fi
    echo "| $label | $(per_round B A "$k") | $(fmt "$q" 3) | $(awk -v q="$q" 'BEGIN { print (q == "-") ? "–" : (q >= 0.97) ? "yes" : "NO" }') |"
  done
  echo "| p99 | $(per_round B A p99) | $(fmt "$(ratio B.p99 A.p99)" 3) | – |"
  echo
  echo "2. One of three servers killed (SIG$KILL_SIGNAL) ${KILL_AT}s into ${KILL_SECS}s of wrk -t1 -c$CONNS --latency;"
  echo "R: retries {attempts: 2, on: [connect_failure, reset]}, N: retries {attempts: 0}; both circuit_breaker open_secs 1"
  echo
  echo "| round | config | server killed | requests | non-2xx | socket errors | req/s | p99 ms | max ms | ferry retries |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  cat "$OUT/kills.txt"
  echo
  echo "| config | non-2xx, total of $ROUNDS rounds | socket errors, total | req/s, median | p99 ms, median | max ms, median | no non-2xx |"
  echo "|---|---|---|---|---|---|---|"
  for c in R N; do
    n=$(awk -v k="kill-$c.non2xx" '$1 == k {n += $3} END {print n + 0}' "$OUT/rounds.txt")
    e=$(awk -v k="kill-$c.sockerr" '$1 == k {n += $3} END {print n + 0}' "$OUT/rounds.txt")
    echo "| $c | $n | $e | $(fmt "$(med "kill-$c.rps")") | $(fmt "$(med "kill-$c.p99")" 2) | $(fmt "$(med "kill-$c.max")" 2) | $( [ "$n" = 0 ] && echo yes || echo NO) |"
  done
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
