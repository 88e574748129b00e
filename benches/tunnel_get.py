#!/usr/bin/env python3
"""Bulk download through a CONNECT tunnel, as plain GETs through the proxy, or straight to
the origin: prints MiB/s, and with a PID also the CPU that process used meanwhile (% of one
core, user + system).

Downloads PATH REPEAT times over one keep-alive connection so that a point lasts long enough
to measure (a single 100 MiB transfer on loopback takes ~50 ms). A proxy given as
`plain:HOST:PORT` gets absolute-form GETs (the proxy relays each response body itself);
otherwise the downloads go through a CONNECT tunnel.

Usage: tunnel_get.py ORIGIN_HOST:PORT PATH [[plain:]PROXY_HOST:PORT|-] [REPEAT=10] [PID]
"""
import os
import socket
import sys
import time

origin, path = sys.argv[1], sys.argv[2]
proxy = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 10
pid = sys.argv[5] if len(sys.argv) > 5 else None
host, port = origin.rsplit(":", 1)
plain = proxy is not None and proxy.startswith("plain:")
target = path


def cpu_seconds(pid):
    """User + system time of process PID so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if plain:
    ph, pp = proxy[len("plain:"):].rsplit(":", 1)
    s = socket.create_connection((ph, int(pp)))
    rest = b""
    target = f"http://{origin}{path}"
elif proxy:
    ph, pp = proxy.rsplit(":", 1)
    s = socket.create_connection((ph, int(pp)))
    s.sendall(f"CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert buf.startswith(b"HTTP/1.") and buf[9:12] == b"200", buf
    rest = buf.split(b"\r\n\r\n", 1)[1]
else:
    s = socket.create_connection((host, int(port)))
    rest = b""
bufsize = 1 << 20
b = bytearray(bufsize)
view = memoryview(b)
total = 0
cpu0 = cpu_seconds(pid) if pid else 0
t0 = time.monotonic()
for _ in range(repeat):
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: {origin}\r\n\r\n".encode())
    head = rest
    while b"\r\n\r\n" not in head:
        head += s.recv(65536)
    h, body = head.split(b"\r\n\r\n", 1)
    assert h.startswith(b"HTTP/1.1 200"), h[:200]
    length = int([l for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    got = len(body)
    while got < length:
        n = s.recv_into(view, min(bufsize, length - got))
        if n == 0:
            sys.exit(f"short download: {got} of {length} bytes")
        got += n
    rest = b""
    total += length
dt = time.monotonic() - t0
rate = f"{total / dt / (1 << 20):.0f}"
if pid:
    print(rate, f"{100 * (cpu_seconds(pid) - cpu0) / dt:.0f}")
else:
    print(rate)
