#!/usr/bin/env python3
"""Measures a proxy's memory on loopback: RSS idle, with N idle keep-alive client connections,
and with N idle CONNECT tunnels (RSS summed over the proxy's process tree). Prints a markdown
table.

Usage: benches/memory.py [--ferry target/release/ferry] [--n 1000] [--workers 2]
       benches/memory.py --attach PID HOST:PORT [--n 1000] [--label NAME]
                         [--kind keepalive|tunnel|reverse] [--path /small]
The first form starts ferry (twice: once per kind of connection); the second measures a proxy
that is already running (no restart between the kinds). `--kind reverse` is for a reverse
proxy in front of an origin of its own: each connection sends `GET PATH` in origin form and
reads the whole answer, then stays idle. Everything listens on 127.0.0.1; the script stops
what it started. With --attach it also prints how many of the N connections were still open
after the idle second (a proxy that closes them measures nothing).
"""
import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time


def tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kib(pid):
    """VmRSS summed over the process tree of pid."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def origin(reader, writer):
    """Keep-alive HTTP origin answering every request with 2 bytes; or an echo after CONNECT."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()


async def echo(reader, writer):
    try:
        while True:
            data = await reader.read(4096)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    writer.close()


def start_ferry(binary, workers):
    d = tempfile.mkdtemp(prefix="ferry-mem-")
    cfg = os.path.join(d, "ferry.yaml")
    with open(cfg, "w") as f:
        f.write(f'listen: "127.0.0.1:0"\non_all_down: direct\nworkers: {workers}\nlog_level: info\n'
                'limits:\n  idle_timeout_secs: 600\n')
    p = subprocess.Popen([binary, "--config", cfg], stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "listening on" in line:
            addr = line.split("listening on ")[1].split()[0]
            host, port = addr.rsplit(":", 1)
            return p, (host, int(port))
    raise RuntimeError("ferry did not start")


def content_length(head):
    """The Content-Length of a response head (bytes), 0 when it has none."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


async def measure(binary, n, workers, kind, attach=None, path="/"):
    # A reverse proxy brings its own origin; the other kinds get one here.
    srv = None
    if kind != "reverse":
        srv = await asyncio.start_server(origin if kind == "keepalive" else echo, "127.0.0.1", 0)
        oport = srv.sockets[0].getsockname()[1]
    if attach:
        p, addr = attach
    else:
        p, addr = start_ferry(binary, workers)
    try:
        await asyncio.sleep(0.5)
        idle = rss_kib(p.pid)
        conns = []
        for i in range(n):
            r, w = await asyncio.open_connection(*addr)
            if kind == "reverse":
                w.write(f"GET {path} HTTP/1.1\r\nHost: {addr[0]}:{addr[1]}\r\n\r\n".encode())
                await w.drain()
                head = await r.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
                await r.readexactly(content_length(head))
            elif kind == "keepalive":
                w.write(f"GET http://127.0.0.1:{oport}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await w.drain()
                await r.readuntil(b"\r\n\r\n")
                await r.readexactly(2)
            else:
                w.write(f"CONNECT 127.0.0.1:{oport} HTTP/1.1\r\n\r\n".encode())
                await w.drain()
                await r.readuntil(b"\r\n\r\n")
                w.write(b"ping")
                await w.drain()
                assert await r.readexactly(4) == b"ping"
            conns.append((r, w))
        await asyncio.sleep(1.0)
        loaded = rss_kib(p.pid)
        # A close by the proxy has reached the readers by now (the idle second above).
        still_open = sum(1 for r, _ in conns if not r.at_eof() and r.exception() is None)
        for _, w in conns:
            w.close()
        await asyncio.sleep(0.5)
        return idle, loaded, still_open
    finally:
        if not attach:
            p.terminate()
            p.wait()
        if srv:
            srv.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ferry", default="target/release/ferry")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--attach", nargs=2, metavar=("PID", "HOST:PORT"))
    ap.add_argument("--label", default="ferry")
    ap.add_argument("--kind", choices=["keepalive", "tunnel", "reverse"], help="measure only this kind")
    ap.add_argument("--path", default="/", help="what --kind reverse asks for")
    a = ap.parse_args()
    attach = None
    if a.attach:
        host, port = a.attach[1].rsplit(":", 1)

        class Running:
            pid = int(a.attach[0])

        attach = (Running(), (host, int(port)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not attach:
        print(f"| what ({a.workers} workers, {a.n} connections) | RSS idle KiB | RSS loaded KiB | per connection |")
        print("|---|---|---|---|")
    for kind in [a.kind] if a.kind else ["keepalive", "tunnel"]:
        idle, loaded, still_open = asyncio.run(measure(a.ferry, a.n, a.workers, kind, attach, a.path))
        per = (loaded - idle) * 1024 / a.n
        label = "idle keep-alive client connections" if kind == "keepalive" else "idle CONNECT tunnels"
        if attach:
            print(f"{a.label} {kind} idle_kib={idle} loaded_kib={loaded} per_conn_b={per:.0f} open={still_open}")
        else:
            print(f"| {label} | {idle} | {loaded} | {per:.0f} B |")


if __name__ == "__main__":
    main()
