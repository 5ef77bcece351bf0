#!/usr/bin/env python3
"""Chat latency during a login storm.

Starts a server (a child process, on loopback) with N accounts, then:
  1. baseline: a chatting client sends a message every 20 ms and times each
     round trip (say -> ack) for a few seconds;
  2. storm: the same, while N clients log in with a password at the same time
     (scrypt on the server's login workers), and again with N wrong passwords.
Prints p50/p99/max of the chat round trip in each phase and how long the
storm took.  The target (issue 8): logins never run on an I/O thread, so the
chat p99 stays near its baseline.

    python benchmarks/logins.py [--logins 100] [--seconds 4]
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from parley.server import accounts as acc  # noqa: E402
from parley.server.store import Store  # noqa: E402

PW = "storm password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Line:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def send(self, d: dict) -> None:
        self.sock.sendall(json.dumps(d).encode() + b"\n")

    def read(self) -> dict:
        line = self.file.readline()
        if not line:
            raise EOFError
        return json.loads(line)

    def until(self, *types: str) -> dict:
        while True:
            f = self.read()
            if f["type"] in types:
                return f

    def close(self) -> None:
        self.sock.close()


def chat(port: int, seconds: float) -> list[float]:
    """Round trips (ms) of say -> ack, one every 20 ms, for ``seconds``."""
    c = Line(port)
    c.send({"type": "hello", "version": 1, "name": "probe" + secrets.token_hex(3),
            "caps": ["rooms"]})
    c.until("welcome")
    out = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        t = time.perf_counter()
        c.send({"type": "say", "text": f"tick {n}", "label": f"t{n}"})
        while True:
            f = c.read()
            if f.get("label") == f"t{n}" and f["type"] in ("ack", "error"):
                break
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.02)
    c.close()
    return out


def storm(port: int, n: int, password: str) -> tuple[float, dict]:
    """N logins at once; (seconds until every one was answered, answers by type)."""
    lines = [Line(port) for _ in range(n)]
    start = time.perf_counter()
    for i, c in enumerate(lines):
        c.send({"type": "hello", "version": 1, "name": f"user{i}", "caps": ["rooms"],
                "password": password})
    answers: dict = {}
    for c in lines:
        f = c.until("welcome", "error")
        key = f["type"] if f["type"] == "welcome" else f["code"]
        answers[key] = answers.get(key, 0) + 1
    took = time.perf_counter() - start
    for c in lines:
        c.close()
    return took, answers


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (f"{len(ms):4d} round trips  p50 {statistics.median(ms):6.2f} ms  "
            f"p99 {p99:6.2f} ms  max {ms[-1]:6.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logins", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="parley-logins-")
    db = os.path.join(tmp, "parley.db")
    t = time.perf_counter()
    one_hash = acc.hash_password(PW)
    print(f"one scrypt hash here: {(time.perf_counter() - t) * 1000:.0f} ms "
          f"(n=2^{acc.SCRYPT_N.bit_length() - 1}, r={acc.SCRYPT_R}, p={acc.SCRYPT_P})")
    with Store(db) as st:      # the same hash for every account: its cost is what counts
        for i in range(args.logins):
            st.create_account(f"user{i}", secrets.token_hex(8), one_hash)
    port = free_port()
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "python_server.py"),
                               "--host", "127.0.0.1", "--port", str(port), "--db", db,
                               "--no-web", "--log-level", "warning", "--rate", "1000",
                               "--burst", "1000", "--connect-rate", "1000",
                               "--connect-burst", "1000", "--max-per-address", "1000"],
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        print(f"baseline            {summary(chat(port, args.seconds))}")
        for label, password in (("right passwords", PW), ("wrong passwords", "not it at all")):
            result: dict = {}
            th = threading.Thread(target=lambda: result.update(rtt=chat(port, args.seconds)))
            th.start()
            time.sleep(0.3)
            took, answers = storm(port, args.logins, password)
            th.join()
            print(f"{args.logins} logins, {label}: all answered in {took:.2f} s "
                  f"({', '.join(f'{v} {k}' for k, v in sorted(answers.items()))})")
            print(f"  chat meanwhile    {summary(result['rtt'])}")
            time.sleep(1.5)
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
