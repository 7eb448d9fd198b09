#!/usr/bin/env python
"""Slow-loris on loopback: plain uvicorn vs routekit's guarded server settings.

    python bench/slowloris.py [--sockets 400] [--fd-limit 256] [--max-connections 100]

Starts the routing server (router ``random``, no upstream) in a child process whose file
descriptor limit is ``--fd-limit``, once with ``uvicorn.Config(app)`` defaults and once with
``routekit.server.app.uvicorn_config`` (read_timeout 2 s, ``--max-connections``), opens ``--sockets``
connections that each send half a request line and stall, then sends 10 normal ``/v1/route``
requests.  Prints, per setting: normal requests answered, stalled sockets the server closed
within 5 s, and whether the child logged "Too many open files".
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time

SERVER = r"""
import resource, sys, uvicorn
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), int(sys.argv[2])))
from routekit.server.app import ServerConfig, create_app, uvicorn_config
cfg = ServerConfig(routers={"random": "random"}, preload=False, read_timeout=2.0, max_connections=int(sys.argv[4]))
app = create_app(cfg)
if sys.argv[1] == "guarded":
    ucfg = uvicorn_config(app, cfg, port=int(sys.argv[3]), log_level="warning")
else:
    ucfg = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
uvicorn.Server(ucfg).run()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int) -> bool:
    body = b'{"prompt": "hello"}'
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def closed_by_server(socks: list[socket.socket], wait: float) -> int:
    """How many of ``socks`` the server closes within ``wait`` seconds (read to EOF, or reset)."""
    deadline = time.time() + wait
    closed: set[int] = set()
    while time.time() < deadline and len(closed) < len(socks):
        for i, s in enumerate(socks):
            if i in closed:
                continue
            s.settimeout(0.01)
            try:
                if s.recv(65536) == b"":  # (bytes of an earlier response are drained too)
                    closed.add(i)
            except socket.timeout:
                pass
            except OSError:
                closed.add(i)
        time.sleep(0.05)
    return len(closed)


def run(mode: str, n: int, fd_limit: int, cap: int) -> dict:
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # not a pipe: a full pipe would stall the server's logging
    child = subprocess.Popen([sys.executable, "-c", SERVER, mode, str(fd_limit), str(port), str(cap)], stderr=log,
                             text=True)
    try:
        deadline = time.time() + 60
        while not request(port):
            if time.time() > deadline or child.poll() is not None:
                raise RuntimeError(f"{mode} server did not start")
            time.sleep(0.2)
        socks = []
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"POST /v1/route HTTP/1.1\r\nHo")
                socks.append(s)
            except OSError:
                break
        time.sleep(0.5)
        ok = sum(request(port) for _ in range(10))
        closed = closed_by_server(socks, 5.0)
        for s in socks:
            s.close()
        return {"mode": mode, "stalled_sockets": len(socks), "normal_ok_of_10": ok,
                "stalled_closed_by_server_5s": closed}
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.seek(0)
        n = log.read().count("Too many open files")
        if n:
            print(f"  ({mode}: the server logged 'Too many open files' {n} times)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sockets", type=int, default=400)
    ap.add_argument("--fd-limit", type=int, default=256)
    ap.add_argument("--max-connections", type=int, default=100)
    args = ap.parse_args(argv)
    for mode in ("plain", "guarded"):
        print(run(mode, args.sockets, args.fd_limit, args.max_connections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
