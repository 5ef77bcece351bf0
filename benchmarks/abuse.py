"""Abuse scenarios against a real server on loopback: prints figures, asserts nothing.

    python3 benchmarks/abuse.py                  # both scenarios, limits on and off
    python3 benchmarks/abuse.py --only flood     # or: churn

flood  A flooder sends as fast as it can; each time it is kicked it reconnects
       at once under a new name.  A watcher counts the flooder's messages that
       reach it in --seconds (issue 8 measured 2,946 in 10 s before the
       per-address limits).
churn  --cycles connect-hello-close cycles from one address as fast as one
       thread can, while a user in the same room pings itself with messages
       every 20 ms: its message latency (p50/p99/max) during the churn, and
       how many cycles were let in (issue 8: 2,000 cycles stalled everyone for
       1-2 s).

Each scenario runs twice: with the per-address limits (``--limit-loopback``,
as a remote address would get them) and without (loopback exempt: the old
behaviour).  Loopback only; bounded counts and durations.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, *flags: str):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="parley-abuse-")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "python_server.py"), "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", self.dir, "--log-level", "error", *flags],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                # (that probe counts as one connection of the address's burst)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Line:
    """A blocking line client."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, obj: dict) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def frame(self) -> dict | None:
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def watcher(port: int, name: str, stop: threading.Event, got: list) -> threading.Thread:
    w = Line(port, timeout=0.5)
    w.send({"type": "hello", "version": 1, "name": name})
    while w.frame()["type"] != "welcome":
        pass

    def run() -> None:
        while not stop.is_set():
            try:
                f = w.frame()
            except socket.timeout:
                continue
            except OSError:
                break
            if f is None:
                break
            got.append((time.monotonic(), f))
        w.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def flood(limited: bool, seconds: float) -> dict:
    srv = Server(*(["--limit-loopback"] if limited else []))
    try:
        stop, got = threading.Event(), []
        t = watcher(srv.port, "watcher", stop, got)
        sent = connects = refused = kicks = 0
        end = time.monotonic() + seconds
        line = json.dumps({"type": "say", "text": "spam"}).encode() + b"\n"
        while time.monotonic() < end:
            try:
                c = Line(srv.port, timeout=1.0)
            except OSError:
                continue
            connects += 1
            c.send({"type": "hello", "version": 1, "name": f"flood{connects}"})
            try:
                first = c.frame()
            except OSError:
                first = None
            if not first or first["type"] != "welcome":
                refused += 1
                wait = (first or {}).get("retry_after") or 0.05
                c.close()
                time.sleep(min(wait, max(0.0, end - time.monotonic())))
                continue
            c.sock.setblocking(False)
            try:                      # as fast as the socket takes it, until kicked
                while time.monotonic() < end:
                    try:
                        c.sock.sendall(line * 50)
                        sent += 50
                    except BlockingIOError:
                        pass
                    try:
                        data = c.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data or b'"bye"' in data:     # kicked: come back at once
                        kicks += 1
                        break
            except OSError:
                kicks += 1
            c.close()
        time.sleep(0.5)
        stop.set()
        t.join(2)
        reached = sum(1 for _, f in got if f.get("type") == "message"
                      and str(f.get("from", "")).startswith("flood"))
        return {"reached": reached, "sent": sent, "connects": connects, "refused": refused,
                "kicks": kicks}
    finally:
        srv.stop()


def churn(limited: bool, cycles: int) -> dict:
    srv = Server("--rate", "500", "--burst", "500", *(["--limit-loopback"] if limited else []))
    try:
        me = Line(srv.port, timeout=5.0)
        me.send({"type": "hello", "version": 1, "name": "steady"})
        while me.frame()["type"] != "welcome":
            pass
        lat, stop = [], threading.Event()

        def ping_self() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                t0 = time.monotonic()
                me.send({"type": "say", "text": f"p{n}", "label": f"p{n}"})
                while True:
                    f = me.frame()
                    if f is None:
                        return
                    if f.get("type") == "message" and f.get("text") == f"p{n}":
                        lat.append((time.monotonic() - t0) * 1000)
                        break
                time.sleep(0.02)
        t = threading.Thread(target=ping_self, daemon=True)
        t.start()
        time.sleep(0.3)
        admitted = refused = 0
        t0 = time.monotonic()
        for i in range(cycles):
            try:
                c = Line(srv.port, timeout=2.0)
                c.send({"type": "hello", "version": 1, "name": f"churn{i}"})
                f = c.frame()
            except OSError:
                f = None
            if f and f["type"] == "welcome":
                admitted += 1
            else:
                refused += 1
            c.close()
        took = time.monotonic() - t0
        time.sleep(1.0)
        stop.set()
        t.join(5)
        lat.sort()
        return {"cycles": cycles, "took_s": took, "admitted": admitted, "refused": refused,
                "pings": len(lat), "p50": statistics.median(lat) if lat else None,
                "p99": lat[int(len(lat) * 0.99) - 1] if len(lat) >= 100 else (lat[-1] if lat else None),
                "max": lat[-1] if lat else None}
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["flood", "churn"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cycles", type=int, default=2000)
    a = ap.parse_args()
    for limited in (True, False):
        label = "limits on (--limit-loopback)" if limited else "loopback exempt (no per-address limits)"
        if a.only in (None, "flood"):
            r = flood(limited, a.seconds)
            print(f"flood, {label}: {r['reached']:,} flood messages reached the watcher in "
                  f"{a.seconds:g} s ({r['sent']:,} sent; {r['connects']} connects, "
                  f"{r['refused']} refused, {r['kicks']} kicks)", flush=True)
        if a.only in (None, "churn"):
            r = churn(limited, a.cycles)
            print(f"churn, {label}: {r['cycles']:,} connect-hello-close cycles in "
                  f"{r['took_s']:.2f} s, {r['admitted']:,} let in, {r['refused']:,} refused; "
                  f"another user's message round trip meanwhile: p50 {r['p50']:.1f} ms, "
                  f"p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms ({r['pings']} samples)",
                  flush=True)


if __name__ == "__main__":
    main()
