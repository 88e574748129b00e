# shellcheck shell=bash
# Shell functions shared by the reverse-proxy benches (reverse.sh, resilience.sh), sourced
# after `cd` to the repository's root. Everything here talks to 127.0.0.1 only.
#
# bench_init NAME sets OUT (benches/results/NAME-<time>/, kept), WORK (a temporary directory,
# removed at exit), the array `pids` (every process started; each is stopped at exit, by its
# PID), CLK_TCK, and the EXIT trap that stops them and copies the non-empty *.out and *.err
# files of WORK into OUT. The figure helpers (rec, med, ratio) read and write OUT/rounds.txt
# and take the round from the caller's variable `r`.

bench_init() { # name
  OUT=benches/results/$1-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$OUT"
  WORK=$(mktemp -d)
  chmod 755 "$WORK"
  # Every request goes to 127.0.0.1; a proxy from the environment must not take it elsewhere.
  unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
  pids=()
  trap bench_cleanup EXIT
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  CLK_TCK=$(getconf CLK_TCK)
}
bench_cleanup() {
  local p f
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  # The processes' own output (warnings, errors), then the raw results without empty files.
  for f in "$WORK"/*.out "$WORK"/*.err; do if [ -s "$f" ]; then cp "$f" "$OUT/"; fi; done
  find "$OUT" -type f -empty -delete
  rm -rf "$WORK"
}
warn() { echo "WARNING: $*" | tee -a "$OUT/warnings.txt" >&2; }
ports_free() { # first last: exits when one of these TCP ports is listened on
  local port
  for port in $(seq "$1" "$2"); do
    if [ -n "$(ss -Hltn "sport = :$port")" ]; then
      echo "port $port is taken (another bench running?); set BASE_PORT" >&2
      exit 1
    fi
  done
}
small_file() { # dir: the 100-byte file every small GET asks for, readable by nginx's workers
  mkdir -p "$1"
  head -c 100 /dev/zero | tr '\0' 'x' > "$1/small"
  chmod 755 "$1"
  chmod 644 "$1/small"
}
origin_conf() { # name listen-address root [main-context directives]: WORK/name.conf, a static
  # nginx with one worker, keep-alive, no access log; its error log is WORK/name.err
  cat > "$WORK/$1.conf" <<NGINX
worker_processes 1;
daemon off;
${4:-}
pid $WORK/$1.pid;
error_log $WORK/$1.err;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  server { listen $2; root $3; }
}
NGINX
}
answers() { # url [curl args...]: 200 with the small file's 100 bytes
  local url=$1; shift
  [ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code} %{size_download}' "$@" "$url")" = "200 100" ]
}
wait_answers() { # url [curl args...]
  for _ in $(seq 100); do answers "$@" && return 0; sleep 0.1; done
  return 1
}

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
# shellcheck disable=SC2154 # r: the caller's round
rec() { echo "$1 $r $2" >> "$OUT/rounds.txt"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
med() { awk -v k="$1" '$1 == k {print $3}' "$OUT/rounds.txt" | median; }
ratio() { # a b: median over the rounds of a / b
  awk -v a="$1" -v b="$2" '$1 == a {x[$2] = $3} $1 == b {y[$2] = $3}
    END {for (r in x) if (r in y && y[r] > 0) print x[r] / y[r]}' "$OUT/rounds.txt" | median
}
lat_ms() { # percentile wrk-output [column]: wrk's latency (us, ms, s, m) in ms; `lat_ms
  # Latency FILE 4` reads the maximum from the thread stats
  awk -v q="$1" -v col="${3:-2}" '$1 == q && $col != "" {
    v = $col
    if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v) }
    else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
    else if (v ~ /m$/) { sub(/m$/, "", v); v *= 60000 }
    printf "%.2f\n", v }' "$2"
}
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "-" || v == "") print "–"; else printf "%.*f\n", d, v }'; }
cpu_pct() { # ticks nanoseconds: CPU % over that wall time (100 % = one core)
  awk -v t="$1" -v hz="$CLK_TCK" -v ns="$2" 'BEGIN { printf "%.1f", 100 * t / hz / (ns / 1e9) }'
}
per_core() { # rate cpu%: the rate per core of that CPU
  awk -v cpu="$2" -v x="$1" 'BEGIN { printf "%.0f", (cpu > 0) ? x / (cpu / 100) : 0 }'
}

wrk_point() { # key url proxy-pid|- conns seconds: one wrk run of small GETs, recorded under key
  local key=$1 url=$2 pid=$3 c=$4 secs=$5 f="$OUT/$1-$r.txt" t0=0 t1 s0 s1 rps cpu
  if [ "$pid" != - ]; then t0=$(cpu_ticks "$pid"); fi
  s0=$(now_ns)
  timeout -k 5 $((secs + 30)) taskset -c 0 wrk -t1 -c"$c" -d"${secs}s" --latency "$url" > "$f"
  s1=$(now_ns)
  if grep -q "Non-2xx" "$f"; then warn "$key, round $r: non-2xx answers ($f)"; fi
  if grep -q "Socket errors" "$f"; then warn "$key, round $r: socket errors ($f)"; fi
  rps=$(awk '/Requests\/sec/ {print $2}' "$f")
  rec "$key.rps" "$rps"
  rec "$key.p50" "$(lat_ms 50% "$f")"
  rec "$key.p99" "$(lat_ms 99% "$f")"
  if [ "$pid" != - ]; then
    t1=$(cpu_ticks "$pid")
    cpu=$(cpu_pct "$((t1 - t0))" "$((s1 - s0))")
    rec "$key.cpu" "$cpu"
    # Per round, so that each run's req/s goes with its own CPU time.
    rec "$key.percore" "$(per_core "$rps" "$cpu")"
  fi
}
