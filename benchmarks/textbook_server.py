"""The textbook Python chat server: the in-run baseline for the benchmarks.

One thread per client, a global lock, and a broadcast that calls ``sendall``
on every client socket while holding that lock.  This is the design most
tutorials show (and the one the brief's "multi-threaded server" suggests at
first sight).  It speaks the subset of the Parley protocol the load generator
uses, so ``benchmarks/loadgen.py`` drives it exactly like the real server:

    hello   -> welcome (users, last_id) + join broadcast to the others
    say     -> message broadcast to everyone, sender included (+ ack if labelled)
    (close) -> leave broadcast

Deliberately absent: rate limits, send queues, pings, history, slow-consumer
handling.  A client that stops reading blocks ``sendall`` and with it, since
the lock is held, every other client: that is the behaviour being measured.

    python benchmarks/textbook_server.py --host 127.0.0.1 --port 0

It prints ``listening on HOST:PORT`` on stderr once it accepts connections.
Standard library only; no import of parley (a textbook server has none).
"""
from __future__ import annotations

import argparse
import json
import resource
import socket
import sys
import threading
import time


def _ts() -> str:
    ms = time.time_ns() // 1_000_000
    secs, ms = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def _frame(d: dict) -> bytes:
    return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class TextbookServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: dict[str, socket.socket] = {}   # name -> socket
        self.last_id = 0

    # Everything below is the classic shape: lock, loop, sendall.
    def broadcast(self, data: bytes) -> None:
        """Caller holds self.lock."""
        for sock in list(self.clients.values()):
            try:
                sock.sendall(data)
            except OSError:
                pass                    # its own thread will notice and clean up

    def handle(self, sock: socket.socket) -> None:
        name = None
        try:
            for raw in sock.makefile("rb"):
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(obj, dict):
                    continue
                kind = obj.get("type")
                if name is None:
                    if kind != "hello" or not isinstance(obj.get("name"), str):
                        continue
                    with self.lock:
                        wanted = obj["name"]
                        if wanted in self.clients:
                            sock.sendall(_frame({"type": "error", "code": "name_taken",
                                                 "message": "name is taken"}))
                            continue
                        name = wanted
                        sock.sendall(_frame({
                            "type": "welcome", "version": 1, "server": "textbook",
                            "name": name, "users": sorted(self.clients) + [name],
                            "last_id": self.last_id, "token": "", "limits": {},
                            "history": []}))
                        self.last_id += 1
                        self.broadcast(_frame({"type": "join", "id": self.last_id,
                                               "ts": _ts(), "name": name}))
                        self.clients[name] = sock
                elif kind == "say" and isinstance(obj.get("text"), str):
                    with self.lock:
                        self.last_id += 1
                        self.broadcast(_frame({"type": "message", "id": self.last_id,
                                               "ts": _ts(), "from": name,
                                               "text": obj["text"], "kind": "say"}))
                        if isinstance(obj.get("label"), str):
                            sock.sendall(_frame({"type": "ack", "label": obj["label"],
                                                 "id": self.last_id}))
                elif kind == "bye":
                    break
        except OSError:
            pass
        finally:
            if name is not None:
                with self.lock:
                    self.clients.pop(name, None)
                    self.last_id += 1
                    self.broadcast(_frame({"type": "leave", "id": self.last_id, "ts": _ts(),
                                           "name": name, "reason": "quit"}))
            try:
                sock.close()
            except OSError:
                pass

    def serve(self, host: str, port: int) -> None:
        listener = socket.create_server((host, port), backlog=1024)
        h, p = listener.getsockname()[:2]
        print(f"textbook: listening on {h}:{p}", file=sys.stderr, flush=True)
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=self.handle, args=(sock,), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        TextbookServer().serve(args.host, args.port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
