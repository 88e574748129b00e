#!/usr/bin/env bash
# Instructions per request of one or more ferry binaries, counted by valgrind's callgrind: the
# measure of request-path speed that the machine's load does not move (wall-clock req/s on a
# shared 2-core VM moves by 10 % between runs). Loopback only.
#
#   benches/instructions.sh [--requests N] BIN...
#
# For each BIN and each role: ferry (1 worker, under callgrind, all threads counted) serves N
# (default 3000) small GETs one after another on one keep-alive connection from a local nginx
# (100-byte file), then is stopped with SIGTERM; the same again with no request. The difference
# over N is the user-space instructions per request (the kernel's share is not counted).
#   forward: absolute-form GET through the forward listener, direct mode (on_all_down: direct)
#   reverse: GET / to a reverse site whose backend is the nginx
# KEEP=DIR keeps the callgrind files (callgrind_annotate DIR/BIN.ROLE.N.cg), which name
# functions when BIN has symbols (build with CARGO_PROFILE_RELEASE_STRIP=false).
# Needs valgrind and nginx (apt-get install valgrind nginx-light), python3.
set -euo pipefail
shopt -s inherit_errexit # a failed run inside $(count ...) must stop the script
N=3000
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) N=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--requests N] BIN..." >&2; exit 2; }
WORK=$(mktemp -d)
chmod 755 "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

ORIGIN_PORT=18082
mkdir -p "$WORK/www"
head -c 100 /dev/zero | tr '\0' 'x' > "$WORK/www/small"
cp "$WORK/www/small" "$WORK/www/index.html"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN_PORT; root $WORK/www; }
}
NGINX
nginx -c "$WORK/nginx.conf" & pids+=($!)

cat > "$WORK/forward.yaml" <<YAML
listen: "127.0.0.1:0"
on_all_down: direct
workers: 1
log_level: info
YAML
cat > "$WORK/reverse.yaml" <<YAML
workers: 1
log_level: info
reverse:
  listen: ["127.0.0.1:18083"]
  sites:
    - hosts: ["*"]
      routes: [{path: "/", backend: web}]
  backends:
    web:
      servers: [{url: "http://127.0.0.1:$ORIGIN_PORT"}]
YAML

# N keep-alive GETs on one connection, each answer read whole (Content-Length) before the next.
cat > "$WORK/client.py" <<'PY'
import socket, sys
addr, target, host, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
h, p = addr.rsplit(":", 1)
s = socket.create_connection((h, int(p)), timeout=30)
req = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
buf = b""
for _ in range(n):
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(buf) < length:
        buf += s.recv(65536)
    buf = buf[length:]
s.close()
PY

# count BIN ROLE REQUESTS: prints the instructions of the whole run
count() {
  local bin=$1 role=$2 n=$3 addr target host
  : > "$WORK/ferry.err"
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$bin" --config "$WORK/$role.yaml" \
    2> "$WORK/ferry.err" & local vp=$!
  pids+=("$vp")
  addr=
  for _ in $(seq 600); do
    # the whole address, followed by the rest of the line (not a line still being written)
    addr=$(grep -oE 'listening on [0-9.]+:[0-9]+ ' "$WORK/ferry.err" 2>/dev/null | head -1 | awk '{print $3}') || true
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "ferry did not start:" >&2; cat "$WORK/ferry.err" >&2; exit 1; }
  if [ "$role" = forward ]; then
    target="http://127.0.0.1:$ORIGIN_PORT/small"; host="127.0.0.1:$ORIGIN_PORT"
  else
    target="/"; host="site.test"
  fi
  python3 "$WORK/client.py" "$addr" "$target" "$host" "$n"
  kill -TERM "$vp"
  wait "$vp" || true
  [ -z "${KEEP:-}" ] || cp "$WORK/cg.out" "$KEEP/$(basename "$bin").$role.$n.cg"
  awk '/^(summary|totals):/ {print $2; exit}' "$WORK/cg.out"
}

# nginx up?
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $ORIGIN_PORT), 1)" 2>/dev/null && break
  sleep 0.05
done

echo "| binary | bytes | forward instructions/request | reverse instructions/request |"
echo "|---|---|---|---|"
for b in "$@"; do
  row="| $b | $(stat -c %s "$b")"
  for role in forward reverse; do
    zero=$(count "$b" "$role" 0)
    full=$(count "$b" "$role" "$N")
    row+=" | $(awk -v z="$zero" -v f="$full" -v n="$N" 'BEGIN {printf "%.0f", (f - z) / n}')"
  done
  echo "$row |"
done
