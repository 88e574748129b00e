#!/usr/bin/env bash
# Idle RSS and config load time of one or more ferry binaries, interleaved so that the load
# other work puts on the machine falls on all of them alike. Loopback only.
#
#   benches/footprint.sh [--starts N] [--runs N] BIN...
#
# Idle RSS: each binary started N times (default 11) in turn with the embedded default config
#   (but on 127.0.0.1:18931) plus `workers: 2`; VmRSS read from /proc/PID/status 1.2 s after
#   the port listens; prints median (min-max) KiB.
# Load time: `BIN --check --config big.yaml`, a generated file with 1,000 upstreams (every
#   fourth with credentials), 10 one-upstream pools and 10 rules, by hyperfine (apt-get install
#   hyperfine), --runs N (default 20) after 3 warm-ups; prints hyperfine's median.
set -euo pipefail
STARTS=11
RUNS=20
while [ $# -gt 0 ]; do
  case "$1" in
    --starts) STARTS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--starts N] [--runs N] BIN..." >&2; exit 2; }
WORK=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

PORT=18931
printf 'listen: "127.0.0.1:%s"\nworkers: 2\n' "$PORT" > "$WORK/idle.yaml"
{
  printf 'listen: "127.0.0.1:%s"\nmode: priority\nhealth_check: {interval_secs: 30}\n' "$PORT"
  printf 'upstream:\n'
  for i in $(seq 0 999); do
    printf '  - url: http://proxy-%03d.example.net:%d\n    weight: %d\n    priority: %d\n' \
      "$i" $((3128 + i % 7)) $((1 + i % 5)) $((10 * (i % 4)))
    if [ $((i % 4)) -eq 0 ]; then
      printf '    username: user%d\n    password: "s3cr:et-%d"\n' "$i" "$i"
    fi
  done
  printf 'pools:\n'
  for p in $(seq 0 9); do printf "  p%d: {upstream: [{url: 'http://proxy-%03d.example.net:3128'}]}\n" "$p" "$p"; done
  printf 'rules:\n'
  for p in $(seq 0 9); do printf "  - {match: ['suffix:p%d.example', 'port:%d'], via: p%d}\n" "$p" $((8000 + p)) "$p"; done
} > "$WORK/big.yaml"

listening() { grep -q ":$(printf '%04X' "$PORT") 00000000:0000 0A" /proc/net/tcp; }

declare -A rss
for _ in $(seq "$STARTS"); do
  for b in "$@"; do
    while listening; do sleep 0.2; done
    "$b" --config "$WORK/idle.yaml" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do listening && break; sleep 0.05; done
    sleep 1.2
    rss[$b]+="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") "
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
for b in "$@"; do
  echo "$b: idle RSS KiB, median (min-max) of $STARTS: $(tr ' ' '\n' <<< "${rss[$b]}" | grep . | sort -n |
    awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "%s (%s-%s)", m, v[1], v[NR]}')"
done

cmds=()
for b in "$@"; do
  "$b" --check --config "$WORK/big.yaml" > /dev/null
  cmds+=("$b --check --config $WORK/big.yaml")
done
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/h.json" "${cmds[@]}" > /dev/null
python3 - "$WORK/h.json" <<'EOF'
import json, statistics, sys
for r in json.load(open(sys.argv[1]))["results"]:
    t = sorted(r["times"])
    print(f'{r["command"].split()[0]}: load {statistics.median(t)*1000:.2f} ms median '
          f'({t[0]*1000:.2f}-{t[-1]*1000:.2f}) of {len(t)}')
EOF
