"""Load generator for Parley (JSON Lines) and IRC servers.

Built so that it is not the bottleneck:

* a few worker processes (``multiprocessing``, fork), each owning a share of
  the client sockets and driving them with one ``epoll`` loop, non-blocking;
* receive path in bulk: one ``recv(262144)`` per ready socket, then C-speed
  ``bytes.count`` for newlines (frames), for the benchmark marker
  (deliveries) and for join notices.  Only when a chunk holds frames that are
  neither (a ping, an error, a bye, a leave) are those lines located with
  ``bytes.find`` and decoded;
* latency is sampled: every message text carries its send time
  (``time.time_ns()``, comparable across processes) and only a sample of
  clients extract it (``~B~<ns>~``) from what they receive;
* sends are prebuilt byte strings; a burst is one ``send`` per sender.

The coordinator (``LoadGen``) talks to the workers over pipes with small
commands (connect, burst, steady, flood, churn, stats, drain, close).  Every
wait has a timeout; a worker exits when its pipe closes or after
``MAX_WORKER_LIFETIME`` seconds.

Modes a client can have: ``normal``; ``stall`` (never reads after welcome);
``slow`` (reads one byte per second); ``flood`` (sends as fast as its socket
allows); ``track`` (decodes every frame and records message ids: soak test).

Run on its own against a running server, e.g.::

    python benchmarks/loadgen.py --port 7000 --clients 500 --rate 50 --seconds 10
"""
from __future__ import annotations

import argparse
import collections
import errno
import heapq
import json
import math
import multiprocessing
import os
import random
import re
import resource
import select
import socket
import ssl
import time
from typing import Any, Optional

RECV_SIZE = 262144
NL = b"\n"
MARK = b"~B~"                      # in every benchmark message's text
FMARK = b"~F~"                     # in every flood message's text
MARK_RE = re.compile(rb"~B~(\d+)~")
# a labelled say carries its send time in the label ("a<ns>-<seq>"): the ack's
# latency needs no table of what is in flight
ACK_RE = re.compile(rb'"type":"ack","label":"a(\d+)-')
TEXT_BYTES = 100                   # length of a benchmark message's text
MAX_TAIL = 4 * 1024 * 1024         # a partial line longer than this is dropped
OUT_CAP = 8 * 1024 * 1024          # per-client unsent bytes before we drop sends
MAX_WORKER_LIFETIME = 4 * 3600
MAX_LAT_SAMPLES = 2_000_000
ACCESS = 0x7FFFFFFF

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
EPOLLERR, EPOLLHUP = select.EPOLLERR, select.EPOLLHUP

# client states
NEW, CONNECTING, HELLO, IRC_REG, IRC_JOIN, READY, CLOSED, ROOMS, TLS_HS, WS_HS = range(10)
HANDSHAKING = (CONNECTING, HELLO, IRC_REG, IRC_JOIN, ROOMS, TLS_HS, WS_HS)
# TLS (Parley's --tls-port): what a non-blocking SSL socket raises instead of BlockingIOError
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

PARLEY, IRC = "parley", "irc"

# WebSocket (Parley's /ws on the same port): what the server sends are FIN text frames
# (0x81, unmasked) of JSON objects, each ending in '}'.  '}' then 0x81 cannot occur
# inside UTF-8 text, so it marks a frame boundary; the header after it (length < 126,
# or 126 + 2 bytes, or 127 + 8 bytes) is replaced by a newline in one C-speed pass
# (and the last '}' gets one too).
WS_HEADER = re.compile(rb"}(?:\x81(?:\x7e..|\x7f.{8}|[\x00-\x7d])|\Z)", re.DOTALL)
WS_UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def ws_frames(lines: bytes) -> bytes:
    """JSON lines -> masked client text frames (mask key 0: a benchmark needs no
    secrecy from proxies, and XOR with zero leaves the payload as it is)."""
    out = []
    for line in lines.split(NL):
        if not line:
            continue
        n = len(line)
        if n < 126:
            out.append(bytes((0x81, 0x80 | n)))
        elif n < 65536:
            out.append(b"\x81\xfe" + n.to_bytes(2, "big"))
        else:
            out.append(b"\x81\xff" + n.to_bytes(8, "big"))
        out.append(b"\0\0\0\0")
        out.append(line)
    return b"".join(out)


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def bench_text(seq: int, idx: int, now_ns: int) -> bytes:
    head = b"~B~%d~%d~%d~" % (now_ns, idx, seq)
    return head + b"x" * max(0, TEXT_BYTES - len(head))


def say_frame(proto: str, text: bytes, label: Optional[str] = None,
              room: Optional[str] = None, to: Optional[str] = None) -> bytes:
    """A chat message in ``proto``: to #general (protocol 1), or with the rooms
    cap to ``room`` or, as a direct message, ``to`` a user."""
    if proto == IRC:
        return b"PRIVMSG #bench :" + text + b"\r\n"
    out = b'{"type":"say","text":"' + text + b'"'
    if label is not None:
        out += b',"label":"' + label.encode() + b'"'
    if room is not None:
        out += b',"room":"' + room.encode() + b'"'
    elif to is not None:
        out += b',"to":"' + to.encode() + b'"'
    return out + b"}\n"


class Client:
    __slots__ = ("idx", "name", "sock", "fd", "state", "tail", "sample", "track", "mode",
                 "t_start", "t_reg", "out", "mask", "last_id", "token", "seen", "base_id",
                 "marks", "bye", "seq", "sessions", "truncated", "flood_off", "retries",
                 "closed_at", "close_reason", "gen", "slow_bytes", "dups", "hist",
                 "caps", "rooms", "part_general", "post_room", "joins_left", "wsbuf")

    def __init__(self, idx: int, name: str, mode: str, sample: bool, track: bool):
        self.idx, self.name, self.mode = idx, name, mode
        self.sample, self.track = sample, track
        self.sock: Optional[socket.socket] = None
        self.fd = -1
        self.state = NEW
        self.tail = b""
        self.wsbuf = b""
        self.t_start = self.t_reg = 0
        self.out = bytearray()
        self.mask = 0
        self.last_id: Optional[int] = None   # highest id seen in any frame
        self.token: Optional[str] = None
        self.seen: Optional[bytearray] = bytearray() if track else None  # id -> 1 if seen
        self.base_id: Optional[int] = None   # welcome.last_id of the first session
        self.marks = 0
        self.bye: Optional[str] = None
        self.seq = 0
        self.sessions = 0
        self.truncated = 0
        self.flood_off = 0
        self.retries = 0
        self.closed_at = 0
        self.close_reason = ""
        self.gen = 0                  # bumped at each (re)connect; stale timers check it
        self.slow_bytes = 0
        self.dups = 0
        self.hist = 0
        self.caps = False             # hello with "caps":["rooms"]
        self.rooms: list = []         # rooms to join after the welcome (cap rooms)
        self.part_general = False     # leave #general after the welcome
        self.post_room: Optional[str] = None   # where its messages go (None: #general)
        self.joins_left = 0


def _new_stats() -> dict:
    return {
        "frames": 0, "bytes": 0, "marks": 0, "joins": 0, "flood_marks": 0,
        "last_mark_ns": 0, "first_send_ns": 0, "last_send_ns": 0, "last_reg_ns": 0,
        "sent": 0, "send_dropped": 0, "late_skipped": 0,
        "registered": 0, "failed": 0, "lost": 0, "pongs": 0, "acks": 0,
        "errors": {}, "byes": {}, "fail_reasons": {}, "lost_reasons": {},
        "lat": [], "connect_ns": [], "leaves": [], "flood_sent": 0, "flood_kicks": [],
        "rate_limited": 0, "reconnects": 0, "name_retries": 0, "flood_client_marks": 0,
        "ack_lat": [], "expected": 0, "dms": 0, "welcomes": 0, "presence": 0,
        "last_ack_ns": 0,
    }


def _inc(d: dict, key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


class Worker:
    """One process: a share of the clients and an epoll loop."""

    def __init__(self, conn, wid: int):
        self.conn, self.wid = conn, wid
        self.ep = select.epoll()
        self.ctl_fd = conn.fileno()
        self.ep.register(self.ctl_fd, EPOLLIN)
        self.clients: dict[int, Client] = {}        # idx -> client
        self.by_fd: dict[int, Client] = {}
        self.pending: collections.deque = collections.deque()  # waiting to connect
        self.inflight = 0
        self.max_inflight = 64
        self.reg_timeout = 60.0
        self.host, self.port, self.proto = "127.0.0.1", 0, PARLEY
        self.st = _new_stats()
        self.timers: list = []
        self.tseq = 0
        self.exit = False
        self.steady: Optional[dict] = None
        self.flood: Optional[dict] = None
        self.churn: Optional[dict] = None
        self.msg_ids: set[int] = set()     # track mode: ids known to be messages
        self.ack_ids: set[int] = set()
        self.join_pat = b'"type":"join"'
        self.rng = random.Random(1000 + wid)
        self.tls: Optional[ssl.SSLContext] = None
        self.ws = False                     # WebSocket at /ws instead of JSON Lines

    # --- timers -----------------------------------------------------------
    def at(self, when: float, fn, *args) -> None:
        self.tseq += 1
        heapq.heappush(self.timers, (when, self.tseq, fn, args))

    def _run_timers(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            _, _, fn, args = heapq.heappop(self.timers)
            fn(*args)

    # --- main loop --------------------------------------------------------
    def run(self) -> None:
        deadline = time.monotonic() + MAX_WORKER_LIFETIME
        while not self.exit and time.monotonic() < deadline:
            now = time.monotonic()
            timeout = 0.05
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - now))
            if self.steady is not None:
                timeout = min(timeout, max(0.0, self.steady["next"] - now))
            if self.flood is not None:
                timeout = 0.0 if self.flood.get("busy") else min(timeout, 0.01)
            try:
                events = self.ep.poll(timeout, 4096)
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd == self.ctl_fd:
                    self._control()
                    continue
                c = self.by_fd.get(fd)
                if c is None:
                    continue
                if c.state == CONNECTING:
                    self._connected(c)
                    continue
                if c.state == TLS_HS:
                    self._tls_handshake(c)
                    continue
                if ev & EPOLLOUT:
                    self._writable(c)
                if ev & (EPOLLIN | EPOLLERR | EPOLLHUP) and c.state != CLOSED:
                    if c.mode in ("stall", "slow") and c.state == READY:
                        # never read here; just stop being woken up for it
                        self._set_mask(c, 0)
                        if ev & (EPOLLHUP | EPOLLERR):
                            c.closed_at = c.closed_at or time.time_ns()
                            self.ep.unregister(c.fd)
                            self.by_fd.pop(c.fd, None)
                        continue
                    self._readable(c)
            now = time.monotonic()
            self._run_timers(now)
            self._start_connects()
            if self.steady is not None:
                self._steady_tick(now)
            if self.flood is not None:
                self._flood_tick(now)
        for c in self.clients.values():
            if c.sock is not None:
                try:
                    c.sock.close()
                except OSError:
                    pass

    # --- control ----------------------------------------------------------
    def _control(self) -> None:
        try:
            cmd = self.conn.recv()
        except (EOFError, OSError):
            self.exit = True
            return
        op = cmd.pop("op")
        try:
            result = getattr(self, "op_" + op)(**cmd)
        except Exception as e:  # report, never die silently
            import traceback
            result = {"error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()}
        try:
            self.conn.send(result)
        except (BrokenPipeError, OSError):
            self.exit = True

    def op_setup(self, host: str, port: int, proto: str, max_inflight: int = 64,
                 reg_timeout: float = 60.0, tls: bool = False, ws: bool = False) -> dict:
        self.host, self.port, self.proto = host, port, proto
        self.ws = ws
        if tls:          # a benchmark: encryption yes, certificate checks no
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE
        self.max_inflight, self.reg_timeout = max_inflight, reg_timeout
        self.join_pat = b" JOIN " if proto == IRC else b'"type":"join"'
        return {"pid": os.getpid()}

    def op_connect(self, clients: list) -> dict:
        for idx, name, mode, sample, track, *opts in clients:
            c = Client(idx, name, mode, sample, track)
            if opts and opts[0]:
                o = opts[0]
                c.caps = bool(o.get("caps"))
                c.rooms = list(o.get("rooms") or [])
                c.part_general = bool(o.get("part_general"))
                c.post_room = o.get("post_room")
            self.clients[idx] = c
            self.pending.append(c)
        self._start_connects()
        return {"queued": len(clients)}

    def op_stats(self, reset: bool = False, lat: bool = False, clients: bool = False) -> dict:
        st = self.st
        out = {k: v for k, v in st.items() if k not in ("lat", "connect_ns", "leaves",
                                                        "flood_kicks", "ack_lat")}
        out["errors"], out["byes"] = dict(st["errors"]), dict(st["byes"])
        out["fail_reasons"], out["lost_reasons"] = dict(st["fail_reasons"]), dict(st["lost_reasons"])
        out["leaves"] = list(st["leaves"])
        out["flood_kicks"] = list(st["flood_kicks"])
        out["ready"] = sum(1 for c in self.clients.values() if c.state == READY)
        out["open"] = sum(1 for c in self.clients.values() if c.state not in (CLOSED, NEW))
        out["inflight"] = self.inflight + len(self.pending)
        out["cpu"] = sum(os.times()[:2])
        if lat:
            out["lat"] = st["lat"]
            out["connect_ns"] = st["connect_ns"]
            out["ack_lat"] = st["ack_lat"]
            st["lat"], st["connect_ns"], st["ack_lat"] = [], [], []
        if clients:
            out["clients"] = {c.idx: {"name": c.name, "state": c.state, "marks": c.marks,
                                      "bye": c.bye, "mode": c.mode,
                                      "close_reason": c.close_reason,
                                      "closed_at": c.closed_at}
                              for c in self.clients.values()}
        if reset:
            self.st = _new_stats()
            self.st["registered"], self.st["failed"] = st["registered"], st["failed"]
        return out

    def op_burst(self, senders: list, count: int) -> dict:
        t_first = 0
        for idx in senders:
            c = self.clients.get(idx)
            if c is None or c.state != READY:
                continue
            now = time.time_ns()
            if not t_first:
                t_first = now
            parts = []
            for _ in range(count):
                c.seq += 1
                parts.append(say_frame(self.proto, bench_text(c.seq, c.idx, time.time_ns())))
            self._send(c, b"".join(parts))
            self.st["sent"] += count
        if t_first and not self.st["first_send_ns"]:
            self.st["first_send_ns"] = t_first
        self.st["last_send_ns"] = time.time_ns()
        return {"t_first": t_first}

    def op_steady(self, senders: Optional[list], rate: float, duration: float,
                  label: bool = False, dm_frac: float = 0.0, dm_pool: Optional[list] = None,
                  ack_lat: bool = False, room_sizes: Optional[dict] = None,
                  tick: float = 0.0) -> dict:
        """Send ``rate`` messages/s for ``duration`` s, round-robin over
        ``senders`` (None: any ready normal client, at random).

        With the rooms cap: each message goes to its sender's ``post_room``, or
        with probability ``dm_frac`` as a DM to a random ``u<i>``, i in
        ``dm_pool``.  ``ack_lat``: every message is labelled with its send
        time, and the ack's latency is recorded.  ``room_sizes`` (room -> members)
        lets the worker count the deliveries it expects.  ``tick`` > 0 sends what
        is due at most every ``tick`` s, one send per client (fewer system calls
        at high rates)."""
        if rate <= 0 or duration <= 0:
            self.steady = None
            return {"ok": True}
        now = time.monotonic()
        self.steady = {"t0": now, "end": now + duration, "rate": rate, "k": 0,
                       "senders": senders, "next": now, "label": label,
                       "dm_frac": dm_frac, "dm_pool": dm_pool or [], "ack_lat": ack_lat,
                       "room_sizes": room_sizes, "tick": tick}
        return {"ok": True}

    def op_steady_stop(self) -> dict:
        self.steady = None
        return {"ok": True}

    def op_flood(self, idx: int, duration: float, reconnect: bool = True) -> dict:
        c = self.clients[idx]
        block = b"".join(say_frame(self.proto, FMARK + b"flood~" + b"y" * 90) for _ in range(200))
        self.flood = {"idx": idx, "end": time.monotonic() + duration, "block": block,
                      "frame_len": len(block) // 200, "reconnect": reconnect, "kicks": 0,
                      "busy": False}
        if c.state == READY:
            self._set_mask(c, EPOLLIN | EPOLLOUT)
        return {"ok": True}

    def op_churn(self, rate: float, duration: float, down_min: float = 0.2,
                 down_max: float = 2.0) -> dict:
        """Each ready client disconnects with probability ``rate`` per second
        and reconnects after a random pause, resuming from the last id seen."""
        now = time.monotonic()
        self.churn = {"rate": rate, "end": now + duration, "down": (down_min, down_max)}
        self.at(now + 0.1, self._churn_tick)
        return {"ok": True}

    def op_churn_stop(self) -> dict:
        self.churn = None
        return {"ok": True}

    def op_reconnect_all(self) -> dict:
        """Reconnect every closed track-mode client now (end of the soak)."""
        n = 0
        for c in self.clients.values():
            if c.state == CLOSED and c.track:
                c.gen += 1
                self.pending.append(c)
                n += 1
        self._start_connects()
        return {"queued": n}

    def op_track_report(self) -> dict:
        """Per client: first base id, ids seen (bytes, 1 = seen), truncations."""
        per = {}
        for c in self.clients.values():
            if not c.track:
                continue
            per[c.idx] = {"name": c.name, "base": c.base_id, "seen": bytes(c.seen or b""),
                          "state": c.state, "sessions": c.sessions, "truncated": c.truncated,
                          "dups": c.dups, "last_id": c.last_id, "hist": c.hist}
        return {"clients": per, "msg_ids": sorted(self.msg_ids), "ack_ids": sorted(self.ack_ids)}

    def op_drain(self, modes: tuple = ("stall", "slow"), seconds: float = 5.0) -> dict:
        """Read what the stalled/slow clients never read; find bye / EOF."""
        out = {}
        for c in self.clients.values():
            if c.mode not in modes or c.sock is None:
                continue
            got = bytearray()
            eof, err = False, ""
            deadline = time.monotonic() + seconds
            last_data = time.monotonic()
            c.sock.setblocking(False)
            while time.monotonic() < deadline and len(got) < 256 * 1024 * 1024:
                try:
                    data = c.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    if time.monotonic() - last_data > 1.0:
                        break            # open, and nothing more comes: not closed
                    select.select([c.sock], [], [], 0.2)
                    continue
                except OSError as e:
                    err = errno.errorcode.get(e.errno, str(e.errno))
                    break
                if not data:
                    eof = True
                    break
                got += data
                last_data = time.monotonic()
            bye = None
            pos = got.rfind(b'"type":"bye"')
            if pos >= 0:
                start = got.rfind(b"\n", 0, pos) + 1
                end = got.find(b"\n", pos)
                try:
                    bye = json.loads(bytes(got[start:end if end >= 0 else len(got)]))
                except ValueError:
                    bye = {"raw": bytes(got[start:start + 200]).decode("utf-8", "replace")}
            elif self.proto == IRC:
                pos = got.rfind(b"ERROR ")
                if pos >= 0:
                    end = got.find(b"\n", pos)
                    bye = {"raw": bytes(got[pos:end]).decode("utf-8", "replace").strip()}
            out[c.idx] = {"name": c.name, "mode": c.mode, "bytes_read_at_end": len(got),
                          "slow_bytes": c.slow_bytes, "eof": eof, "error": err, "bye": bye,
                          "hup_at": c.closed_at}
        return out

    def op_close(self, idxs: Optional[list] = None) -> dict:
        n = 0
        for c in list(self.clients.values()):
            if idxs is not None and c.idx not in idxs:
                continue
            if c.sock is not None:
                self._close(c, "closed by bench", lost=False)
                n += 1
        self.pending.clear()
        self.steady = self.flood = self.churn = None
        return {"closed": n}

    def op_exit(self) -> dict:
        self.exit = True
        return {"ok": True}

    # --- connections ------------------------------------------------------
    def _set_mask(self, c: Client, mask: int) -> None:
        if c.mask != mask and c.fd in self.by_fd:
            self.ep.modify(c.fd, mask)
            c.mask = mask

    def _start_connects(self) -> None:
        while self.pending and self.inflight < self.max_inflight:
            c = self.pending.popleft()
            if c.state in (NEW, CLOSED):
                self._connect(c)

    def _connect(self, c: Client) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock, c.fd, c.tail, c.out, c.bye = s, s.fileno(), b"", bytearray(), None
        c.wsbuf = b""
        c.state = CONNECTING
        c.t_start = time.time_ns()
        c.gen += 1
        self.inflight += 1
        err = s.connect_ex((self.host, self.port))
        if err not in (0, errno.EINPROGRESS):
            self._fail(c, "connect:" + errno.errorcode.get(err, str(err)))
            return
        self.by_fd[c.fd] = c
        c.mask = EPOLLOUT
        self.ep.register(c.fd, EPOLLOUT)
        self.at(time.monotonic() + self.reg_timeout, self._reg_deadline, c, c.gen)

    def _tls_handshake(self, c: Client) -> None:
        try:
            c.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._set_mask(c, EPOLLIN)
            return
        except ssl.SSLWantWriteError:
            self._set_mask(c, EPOLLOUT)
            return
        except OSError as e:
            self._fail(c, f"tls:{type(e).__name__}")
            return
        c.state = CONNECTING
        self._connected(c)

    def _reg_deadline(self, c: Client, gen: int) -> None:
        if c.gen == gen and c.state in HANDSHAKING:
            self._fail(c, "registration timeout")

    def _connected(self, c: Client, upgraded: bool = False) -> None:
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(c, "connect:" + errno.errorcode.get(err, str(err)))
            return
        if self.tls is not None and not isinstance(c.sock, ssl.SSLSocket):
            c.sock = self.tls.wrap_socket(c.sock, do_handshake_on_connect=False)
            c.state = TLS_HS
            self._tls_handshake(c)
            return
        self._set_mask(c, EPOLLIN)
        if self.ws and not upgraded:
            c.state = WS_HS
            self._send(c, WS_UPGRADE % (self.host.encode(), self.port))
            return
        if self.proto == IRC:
            c.state = IRC_REG
            n = c.name.encode()
            self._send(c, b"NICK " + n + b"\r\nUSER " + n + b" 0 * :bench\r\n")
        else:
            c.state = HELLO
            hello: dict[str, Any] = {"type": "hello", "version": 1, "name": c.name,
                                     "client": "bench"}
            if c.last_id is not None:
                hello["last_id"] = c.last_id
            if c.token:
                hello["token"] = c.token
            if c.caps:
                hello["caps"] = ["rooms"]
            self._send(c, json.dumps(hello, separators=(",", ":")).encode() + NL)

    def _registered(self, c: Client, now_ns: int) -> None:
        c.state = READY
        c.t_reg = now_ns
        c.sessions += 1
        self.inflight -= 1
        st = self.st
        st["registered"] += 1
        st["last_reg_ns"] = now_ns
        if c.sessions > 1:
            st["reconnects"] += 1
        st["connect_ns"].append(now_ns - c.t_start)
        if c.mode in ("stall", "slow"):
            self._set_mask(c, 0)
            if c.mode == "slow":
                self.at(time.monotonic() + 1.0, self._slow_read, c, c.gen)
        elif c.mode == "flood" and self.flood is not None:
            self._set_mask(c, EPOLLIN | EPOLLOUT)

    def _fail(self, c: Client, reason: str) -> None:
        if c.state in HANDSHAKING:
            self.inflight -= 1
        _inc(self.st["fail_reasons"], reason)
        self.st["failed"] += 1
        self._close(c, reason, lost=False)

    def _close(self, c: Client, reason: str, lost: bool = True) -> None:
        if c.sock is None:
            return
        if c.state in HANDSHAKING and lost:
            self.inflight -= 1
        if c.fd in self.by_fd:
            try:
                self.ep.unregister(c.fd)
            except (OSError, ValueError):
                pass
            self.by_fd.pop(c.fd, None)
        try:
            c.sock.close()
        except OSError:
            pass
        c.sock, c.fd, c.mask = None, -1, 0
        was = c.state
        c.state = CLOSED
        c.closed_at = time.time_ns()
        c.close_reason = reason
        if lost:
            self.st["lost"] += 1
            _inc(self.st["lost_reasons"], f"{reason}" + ("" if was == READY else " (before ready)"))
        if c.mode == "flood" and self.flood is not None and lost:
            self._flood_kicked(c, reason)

    def _lost(self, c: Client, reason: str) -> None:
        if c.bye:
            reason = f"bye:{c.bye}"
        self._close(c, reason, lost=True)

    def _send(self, c: Client, data: bytes) -> None:
        if c.sock is None:
            return
        if self.ws and c.state != WS_HS:
            data = ws_frames(data)
        if c.out:
            if len(c.out) > OUT_CAP:
                self.st["send_dropped"] += 1
                return
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except WOULD_BLOCK:
            n = 0
        except OSError as e:
            self._lost(c, "send:" + errno.errorcode.get(e.errno, str(e.errno)))
            return
        if n < len(data):
            c.out += data[n:]
            self._set_mask(c, (c.mask or EPOLLIN) | EPOLLOUT)

    def _writable(self, c: Client) -> None:
        if c.out:
            try:
                n = c.sock.send(c.out)
            except WOULD_BLOCK:
                return
            except OSError as e:
                self._lost(c, "send:" + errno.errorcode.get(e.errno, str(e.errno)))
                return
            del c.out[:n]
            if c.out:
                return
        if c.mode == "flood" and self.flood is not None and c.state == READY:
            self._flood_write(c)
            return
        if c.state != CLOSED:
            self._set_mask(c, 0 if c.mode in ("stall", "slow") and c.state == READY else EPOLLIN)

    # --- receive ----------------------------------------------------------
    def _readable(self, c: Client) -> None:
        try:
            data = c.sock.recv(RECV_SIZE)
            if self.tls is not None:        # records decrypted but not yet read
                while data and c.sock.pending():
                    data += c.sock.recv(RECV_SIZE)
        except WOULD_BLOCK:
            return
        except OSError as e:
            self._lost(c, "recv:" + errno.errorcode.get(e.errno, str(e.errno)))
            return
        if not data:
            self._lost(c, "eof")
            return
        if self.ws:
            if c.state == WS_HS:
                data = self._ws_upgraded(c, data)
            data = self._ws_lines(c, data) if data else b""
            if not data:
                return
        now = time.time_ns()
        st = self.st
        st["bytes"] += len(data)
        if c.tail:
            data = c.tail + data
            c.tail = b""
        if c.state != READY:
            data = self._handshake(c, data, now)
            if not data or c.state != READY:
                return
        end = data.rfind(NL) + 1
        if end < len(data):
            tail = data[end:]
            c.tail = tail if len(tail) <= MAX_TAIL else b""
        if end == 0:
            return
        if c.track:
            self._track(c, data, end, now)
            return
        frames = data.count(NL, 0, end)
        st["frames"] += frames
        marks = data.count(MARK, 0, end)
        if marks and c.mode == "flood":          # the flooder is not one of "the others"
            st["flood_client_marks"] += marks
        elif marks:
            st["marks"] += marks
            c.marks += marks
            st["last_mark_ns"] = now
            if c.sample and len(st["lat"]) < MAX_LAT_SAMPLES:
                lat = st["lat"]
                for m in MARK_RE.finditer(data, 0, end):
                    lat.append(now - int(m.group(1)))
        other = frames - marks
        if other:
            joins = data.count(self.join_pat, 0, end)
            st["joins"] += joins
            if other > joins:
                if self.proto == IRC:
                    self._special_irc(c, data, end, now)
                else:
                    self._special(c, data, end, now)

    def _ws_upgraded(self, c: Client, data: bytes) -> bytes:
        """The server's answer to the upgrade; then hello (as a frame).  What is left."""
        head = c.wsbuf + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            c.wsbuf = head if len(head) < 65536 else b""
            return b""
        c.wsbuf = b""
        if not head.startswith(b"HTTP/1.1 101"):
            self._fail(c, "ws:" + head[:40].decode("latin-1", "replace"))
            return b""
        c.state = CONNECTING
        self._connected(c, upgraded=True)   # now says hello, framed
        return head[end + 4:]

    def _ws_lines(self, c: Client, data: bytes) -> bytes:
        """Complete server frames -> JSON lines; a partial frame waits in wsbuf."""
        buf = c.wsbuf + data if c.wsbuf else data
        n = len(buf)
        pos = buf.rfind(b"}\x81") + 1        # everything before is whole frames
        while pos + 2 <= n:                  # the frame(s) after it: complete?
            ln, h = buf[pos + 1] & 0x7F, 2
            if ln == 126:
                if pos + 4 > n:
                    break
                ln, h = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif ln == 127:
                if pos + 10 > n:
                    break
                ln, h = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if pos + h + ln > n:
                break
            if buf[pos] != 0x81:             # a close frame: the end of the stream follows
                n = pos
                break
            pos += h + ln
        c.wsbuf = buf[pos:n]
        if not pos:
            return b""
        ln = buf[1] & 0x7F                   # the first frame's header
        h0 = 2 if ln < 126 else 4 if ln == 126 else 10
        return WS_HEADER.sub(b"}\n", memoryview(buf)[h0:pos])

    def _lines_with(self, data: bytes, end: int, pat: bytes):
        pos = data.find(pat, 0, end)
        while pos >= 0:
            start = data.rfind(NL, 0, pos) + 1
            stop = data.find(NL, pos, end)
            if stop < 0:
                stop = end
            yield data[start:stop]
            pos = data.find(pat, stop, end)

    def _special(self, c: Client, data: bytes, end: int, now: int) -> None:
        st = self.st
        st["flood_marks"] += data.count(FMARK, 0, end)
        if data.find(b'"presence"', 0, end) >= 0:
            st["presence"] += data.count(b'{"type":"presence"', 0, end)
            if c.sample and len(st["leaves"]) < 10000:
                # a big room announces leaves in a coalesced presence frame (no reason)
                for line in self._lines_with(data, end, b'"presence"'):
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if obj.get("type") == "presence":
                        for who in obj.get("left") or []:
                            st["leaves"].append((now, who, "(presence: left)"))
        for line in self._lines_with(data, end, b'"ping"'):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("type") == "ping":
                pong = {"type": "pong"}
                if obj.get("token") is not None:
                    pong["token"] = obj["token"]
                self._send(c, json.dumps(pong, separators=(",", ":")).encode() + NL)
                st["pongs"] += 1
        if data.find(b'"error"', 0, end) >= 0:
            n = data.count(b'"rate_limited"', 0, end)
            st["rate_limited"] += n
            if n:
                _inc(st["errors"], "rate_limited", n)
            for line in self._lines_with(data, end, b'"error"'):
                if b'"rate_limited"' in line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("type") == "error":
                    _inc(st["errors"], str(obj.get("code")))
        for line in self._lines_with(data, end, b'"bye"'):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("type") == "bye":
                c.bye = str(obj.get("reason"))
                _inc(st["byes"], c.bye)
        if data.find(b'"ack"', 0, end) >= 0:
            st["acks"] += data.count(b'"type":"ack"', 0, end)
            st["last_ack_ns"] = now
            if len(st["ack_lat"]) < MAX_LAT_SAMPLES:
                lat = st["ack_lat"]
                for m in ACK_RE.finditer(data, 0, end):
                    lat.append(now - int(m.group(1)))
        if c.sample and data.find(b'"leave"', 0, end) >= 0 and len(st["leaves"]) < 10000:
            for line in self._lines_with(data, end, b'"leave"'):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("type") == "leave":
                    st["leaves"].append((now, obj.get("name"), obj.get("reason")))

    def _special_irc(self, c: Client, data: bytes, end: int, now: int) -> None:
        st = self.st
        st["flood_marks"] += data.count(FMARK, 0, end)
        for line in data[:end].split(NL):
            if MARK in line or FMARK in line or b" JOIN " in line:
                continue
            line = line.rstrip(b"\r")
            if line.startswith(b"PING"):
                self._send(c, b"PONG" + line[4:] + b"\r\n")
                st["pongs"] += 1
            elif line.startswith(b"ERROR"):
                c.bye = line.decode("utf-8", "replace")[:120]
                _inc(st["byes"], c.bye)
            else:
                parts = line.split(b" ", 3)
                if len(parts) >= 3 and parts[1] in (b"QUIT", b"PART", b"KICK"):
                    if c.sample and len(st["leaves"]) < 10000:
                        who = parts[0][1:].split(b"!")[0].decode("utf-8", "replace")
                        why = line.split(b" :", 1)[-1].decode("utf-8", "replace")
                        st["leaves"].append((now, who, why))
                elif len(parts) >= 2 and parts[1][:1] in (b"4", b"5") and parts[1].isdigit():
                    _inc(st["errors"], parts[1].decode() + " " +
                         (parts[3].decode("utf-8", "replace")[:60] if len(parts) > 3 else ""))

    def _handshake(self, c: Client, data: bytes, now: int) -> bytes:
        """Process lines one by one until registered; return what is left."""
        while c.state not in (READY, CLOSED):
            nl = data.find(NL)
            if nl < 0:
                c.tail = data if len(data) <= MAX_TAIL else b""
                return b""
            line, data = data[:nl], data[nl + 1:]
            self.st["frames"] += 1
            if self.proto == IRC:
                self._irc_line(c, line.rstrip(b"\r"), now)
            else:
                self._parley_line(c, line, now)
        return data

    def _parley_line(self, c: Client, line: bytes, now: int) -> None:
        try:
            obj = json.loads(line)
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        t = obj.get("type")
        if t == "welcome":
            self.st["welcomes"] += 1
            if c.track:
                self._welcome_track(c, obj)
            c.token = obj.get("token") or c.token
            lid = obj.get("last_id")
            if isinstance(lid, int) and (c.last_id is None or lid > c.last_id):
                c.last_id = lid
            if c.caps and (c.rooms or c.part_general):
                # cap rooms: join its rooms (and leave #general) before it counts as ready
                parts = [b'{"type":"join","room":"%s","label":"j%d"}\n' % (r.encode(), k)
                         for k, r in enumerate(c.rooms)]
                if c.part_general:
                    parts.append(b'{"type":"part","room":"#general","label":"pg"}\n')
                c.joins_left = len(parts)
                c.state = ROOMS
                self._send(c, b"".join(parts))
                return
            self._registered(c, now)
        elif c.state == ROOMS and t in ("room", "ack") and \
                str(obj.get("label", "")).startswith(("j", "pg")):
            c.joins_left -= 1
            if c.joins_left <= 0:
                self._registered(c, now)
        elif t == "error":
            code = str(obj.get("code"))
            _inc(self.st["errors"], code)
            if code == "name_taken" and c.track and c.retries < 20:
                # reconnecting before the server noticed our old connection closed
                c.retries += 1
                self.st["name_retries"] += 1
                self.inflight -= 1
                self._close(c, "name_taken retry", lost=False)
                self.at(time.monotonic() + 0.3, self._requeue, c, c.gen)
            else:
                self._fail(c, "error:" + code)
        elif t == "ping":
            pong = {"type": "pong"}
            if obj.get("token") is not None:
                pong["token"] = obj["token"]
            self._send(c, json.dumps(pong, separators=(",", ":")).encode() + NL)
            self.st["pongs"] += 1
        elif t == "bye":
            c.bye = str(obj.get("reason"))
            _inc(self.st["byes"], c.bye)

    def _irc_line(self, c: Client, line: bytes, now: int) -> None:
        if line.startswith(b"PING"):
            self._send(c, b"PONG" + line[4:] + b"\r\n")
            self.st["pongs"] += 1
            return
        if line.startswith(b"ERROR"):
            c.bye = line.decode("utf-8", "replace")[:120]
            self._fail(c, "irc:" + c.bye)
            return
        parts = line.split(b" ", 3)
        if len(parts) < 2:
            return
        code = parts[1]
        if code == b"001":
            c.state = IRC_JOIN
            self._send(c, b"JOIN #bench\r\n")
        elif code == b"366":
            self._registered(c, now)
        elif code in (b"432", b"433", b"436", b"471", b"473", b"474", b"475", b"405"):
            self._fail(c, "irc:" + code.decode())

    def _requeue(self, c: Client, gen: int) -> None:
        if c.gen == gen and c.state == CLOSED:
            self.pending.append(c)

    # --- track mode (soak) ------------------------------------------------
    def _mark_seen(self, c: Client, i: int) -> None:
        seen = c.seen
        if i >= len(seen):
            seen.extend(b"\0" * (i + 1024 - len(seen)))
        if seen[i]:
            c.dups += 1
        seen[i] = 1

    def _welcome_track(self, c: Client, obj: dict) -> None:
        lid = obj.get("last_id")
        if c.base_id is None and isinstance(lid, int):
            c.base_id = lid
        if obj.get("truncated"):
            c.truncated += 1
        for h in obj.get("history") or []:
            if isinstance(h, dict) and isinstance(h.get("id"), int):
                if h.get("type", "message") == "message":
                    self.msg_ids.add(h["id"])
                    self._mark_seen(c, h["id"])
                    c.hist += 1
                if c.last_id is None or h["id"] > c.last_id:
                    c.last_id = h["id"]

    def _track(self, c: Client, data: bytes, end: int, now: int) -> None:
        st = self.st
        for line in data[:end].split(NL):
            if not line:
                continue
            st["frames"] += 1
            try:
                obj = json.loads(line)
            except ValueError:
                _inc(st["errors"], "bench:undecodable")
                continue
            t = obj.get("type")
            i = obj.get("id")
            if isinstance(i, int) and t in ("message", "join", "leave"):
                if c.last_id is None or i > c.last_id:
                    c.last_id = i
            if t == "message":
                if isinstance(i, int):
                    self.msg_ids.add(i)
                    self._mark_seen(c, i)
                text = obj.get("text", "")
                if text.startswith("~B~"):
                    st["marks"] += 1
                    c.marks += 1
                    st["last_mark_ns"] = now
                    if c.sample:
                        try:
                            st["lat"].append(now - int(text.split("~")[2]))
                        except (IndexError, ValueError):
                            pass
            elif t == "ack":
                st["acks"] += 1
                if isinstance(i, int):
                    self.ack_ids.add(i)
            elif t == "join":
                st["joins"] += 1
            elif t == "ping":
                pong = {"type": "pong"}
                if obj.get("token") is not None:
                    pong["token"] = obj["token"]
                self._send(c, json.dumps(pong, separators=(",", ":")).encode() + NL)
                st["pongs"] += 1
            elif t == "error":
                _inc(st["errors"], str(obj.get("code")))
            elif t == "bye":
                c.bye = str(obj.get("reason"))
                _inc(st["byes"], c.bye)

    # --- sending schedules ------------------------------------------------
    def _steady_tick(self, now: float) -> None:
        s = self.steady
        if now >= s["end"]:
            self.steady = None
            return
        due = int((now - s["t0"]) * s["rate"]) + 1
        if due - s["k"] > s["rate"] + 1:          # more than 1 s behind: skip, count it
            self.st["late_skipped"] += due - s["k"] - 1
            s["k"] = due - 1
        senders = s["senders"]
        pool = None
        out: dict = {}                            # client -> frames due now (one send each)
        st = self.st
        dm_frac, dm_pool, ack_lat = s["dm_frac"], s["dm_pool"], s["ack_lat"]
        sizes = s["room_sizes"]
        while s["k"] < due:
            s["k"] += 1
            if senders is None:
                if pool is None:
                    pool = [c for c in self.clients.values()
                            if c.state == READY and c.mode == "normal"]
                c = self.rng.choice(pool) if pool else None
            else:
                c = self.clients.get(senders[s["k"] % len(senders)])
            if c is None or c.state != READY:
                continue
            c.seq += 1
            ns = time.time_ns()
            if ack_lat:
                label = "a%d-%d" % (ns, c.seq)
            else:
                label = f"{c.idx}-{c.seq}" if s["label"] else None
            room = to = None
            if dm_frac and self.rng.random() < dm_frac:
                j = self.rng.choice(dm_pool)
                if j == c.idx:
                    j = dm_pool[(dm_pool.index(j) + 1) % len(dm_pool)]
                to = f"u{j}"
                st["dms"] += 1
                st["expected"] += 1 if j == c.idx else 2
            else:
                room = c.post_room
                if sizes is not None:
                    st["expected"] += sizes.get(room, 0)
            frame = say_frame(self.proto, bench_text(c.seq, c.idx, ns), label, room, to)
            lst = out.get(c)
            if lst is None:
                out[c] = [frame]
            else:
                lst.append(frame)
            st["sent"] += 1
            if not st["first_send_ns"]:
                st["first_send_ns"] = ns
            st["last_send_ns"] = ns
        for c, frames in out.items():
            self._send(c, frames[0] if len(frames) == 1 else b"".join(frames))
        s["next"] = max(s["t0"] + s["k"] / s["rate"], now + s["tick"])

    def _flood_write(self, c: Client) -> None:
        f = self.flood
        if time.monotonic() >= f["end"]:
            self._set_mask(c, EPOLLIN)
            f["busy"] = False
            return
        block = memoryview(f["block"])
        sent = 0
        for _ in range(16):
            try:
                n = c.sock.send(block[c.flood_off:])
            except (BlockingIOError, InterruptedError):
                f["busy"] = False
                break
            except OSError as e:
                self._lost(c, "send:" + errno.errorcode.get(e.errno, str(e.errno)))
                return
            sent += n
            c.flood_off = (c.flood_off + n) % len(block)
        else:
            f["busy"] = True
        self.st["flood_sent"] += sent // f["frame_len"]

    def _flood_tick(self, now: float) -> None:
        f = self.flood
        c = self.clients.get(f["idx"])
        if now >= f["end"]:
            if c is not None and c.state == READY:
                self._set_mask(c, EPOLLIN)
            self.flood = None
            return
        if c is not None and c.state == READY and f.get("busy"):
            self._flood_write(c)

    def _flood_kicked(self, c: Client, reason: str) -> None:
        f = self.flood
        f["kicks"] += 1
        self.st["flood_kicks"].append((time.time_ns(), reason))
        f["busy"] = False
        if f["reconnect"] and time.monotonic() < f["end"] - 0.2:
            c.name = f"{c.name.split('-')[0]}-{f['kicks']}"
            c.flood_off = 0
            self.at(time.monotonic() + 0.05, self._requeue, c, c.gen)

    def _slow_read(self, c: Client, gen: int) -> None:
        if c.gen != gen or c.sock is None:
            return
        try:
            data = c.sock.recv(1)
            if data:
                c.slow_bytes += 1
            else:
                c.closed_at = c.closed_at or time.time_ns()
                return
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            c.closed_at = c.closed_at or time.time_ns()
            return
        self.at(time.monotonic() + 1.0, self._slow_read, c, gen)

    def _churn_tick(self) -> None:
        ch = self.churn
        if ch is None:
            return
        now = time.monotonic()
        if now >= ch["end"]:
            self.churn = None
            return
        p = ch["rate"] * 0.1
        for c in list(self.clients.values()):
            if c.state == READY and c.mode == "normal" and self.rng.random() < p:
                if self.rng.random() < 0.5 and self.proto != IRC:
                    try:
                        c.sock.send(b'{"type":"bye","reason":"quit"}\n')
                    except OSError:
                        pass
                self._close(c, "churn", lost=False)
                _inc(self.st["lost_reasons"], "churn (by bench)")
                c.retries = 0
                self.at(now + self.rng.uniform(*ch["down"]), self._requeue, c, c.gen)
        self.at(now + 0.1, self._churn_tick)


def _worker_main(conn, wid: int) -> None:
    raise_nofile()
    Worker(conn, wid).run()


# ---------------------------------------------------------------------------
# coordinator side
# ---------------------------------------------------------------------------
class LoadGenError(RuntimeError):
    pass


def _merge(results: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for r in results:
        for k, v in r.items():
            if k in ("last_mark_ns", "last_send_ns", "last_reg_ns", "last_ack_ns"):
                out[k] = max(out.get(k, 0), v)
            elif k == "first_send_ns":
                if v and (not out.get(k) or v < out[k]):
                    out[k] = v
                else:
                    out.setdefault(k, 0)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
            elif isinstance(v, dict):
                d = out.setdefault(k, {})
                for kk, vv in v.items():
                    if isinstance(vv, (int, float)):
                        d[kk] = d.get(kk, 0) + vv
                    else:
                        d[kk] = vv
            elif isinstance(v, list):
                out.setdefault(k, []).extend(v)
            else:
                out[k] = v
    return out


class LoadGen:
    """Coordinator: starts worker processes and drives them with commands."""

    def __init__(self, host: str, port: int, proto: str = PARLEY, workers: int = 2,
                 max_inflight: int = 64, reg_timeout: float = 60.0, tls: bool = False,
                 ws: bool = False):
        self.host, self.port, self.proto = host, port, proto
        self.tls = tls
        self.ws = ws
        self.nworkers = workers
        self.max_inflight, self.reg_timeout = max_inflight, reg_timeout
        self.procs: list = []
        self.conns: list = []
        self.owner: dict[int, int] = {}     # client idx -> worker
        self.pids: list[int] = []

    def __enter__(self) -> "LoadGen":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        raise_nofile()
        ctx = multiprocessing.get_context("fork")
        for wid in range(self.nworkers):
            a, b = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(b, wid), daemon=True,
                            name=f"loadgen-{wid}")
            p.start()
            b.close()
            self.procs.append(p)
            self.conns.append(a)
        r = self.call_all("setup", host=self.host, port=self.port, proto=self.proto,
                          max_inflight=self.max_inflight, reg_timeout=self.reg_timeout,
                          tls=self.tls, ws=self.ws)
        self.pids = [x["pid"] for x in r]

    def stop(self) -> None:
        for c in self.conns:
            try:
                c.send({"op": "exit"})
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + 5
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(2)
        for c in self.conns:
            c.close()
        self.procs, self.conns = [], []

    # --- plumbing -----------------------------------------------------------
    def _send(self, wid: int, op: str, **kw) -> None:
        kw["op"] = op
        self.conns[wid].send(kw)

    def _recv(self, wid: int, timeout: float) -> Any:
        if not self.conns[wid].poll(timeout):
            raise LoadGenError(f"worker {wid} did not answer within {timeout:.0f} s")
        r = self.conns[wid].recv()
        if isinstance(r, dict) and "error" in r and "tb" in r:
            raise LoadGenError(f"worker {wid}: {r['error']}\n{r['tb']}")
        return r

    def call_all(self, op: str, timeout: float = 30.0, per_worker: Optional[list] = None,
                 **kw) -> list:
        for wid in range(self.nworkers):
            args = dict(kw)
            if per_worker is not None:
                args.update(per_worker[wid])
            self._send(wid, op, **args)
        return [self._recv(wid, timeout) for wid in range(self.nworkers)]

    def _split(self, idxs) -> list[list[int]]:
        parts: list[list[int]] = [[] for _ in range(self.nworkers)]
        for i in idxs:
            parts[self.owner.get(i, i % self.nworkers)].append(i)
        return parts

    def cpu(self) -> float:
        """CPU seconds used so far by the worker processes."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
        return total

    # --- operations ---------------------------------------------------------
    def connect(self, idxs, modes: Optional[dict] = None, sample_every: int = 1,
                track: bool = False, name_fmt: str = "u{}", caps: bool = False,
                rooms_of=None, part_general: bool = False) -> None:
        """Queue clients for connection (returns at once; see wait_registered).
        ``caps``: hello with the rooms cap; ``rooms_of(i)`` the rooms client i
        joins after its welcome (the first is where its messages go);
        ``part_general``: it leaves #general too."""
        modes = modes or {}
        per: list[list] = [[] for _ in range(self.nworkers)]
        for i in idxs:
            wid = i % self.nworkers
            self.owner[i] = wid
            mode = modes.get(i, "normal")
            opts = None
            if caps:
                rooms = list(rooms_of(i)) if rooms_of is not None else []
                opts = {"caps": True, "rooms": rooms, "part_general": part_general,
                        "post_room": rooms[0] if rooms else None}
            per[wid].append((i, name_fmt.format(i), mode,
                             i % sample_every == 0 and mode == "normal", track, opts))
        self.call_all("connect", per_worker=[{"clients": p} for p in per])

    def stats(self, reset: bool = False, lat: bool = False, clients: bool = False) -> dict:
        return _merge(self.call_all("stats", reset=reset, lat=lat, clients=clients))

    def wait_registered(self, target: int, timeout: float, poll: float = 0.05) -> dict:
        """Wait until ``target`` clients registered or all attempts ended."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if s["registered"] >= target or s["inflight"] == 0 or time.monotonic() > deadline:
                s["timed_out"] = s["registered"] < target and time.monotonic() > deadline
                return s
            time.sleep(poll)

    def burst(self, senders, count: int) -> int:
        parts = self._split(senders)
        r = self.call_all("burst", per_worker=[{"senders": p, "count": count} for p in parts])
        firsts = [x["t_first"] for x in r if x["t_first"]]
        return min(firsts) if firsts else 0

    def steady(self, senders, msgs_per_s: float, duration: float, label: bool = False,
               **kw) -> None:
        """See Worker.op_steady for ``kw`` (dm_frac, dm_pool, ack_lat, room_sizes, tick)."""
        if senders is None:
            per = [{"senders": None, "rate": msgs_per_s / self.nworkers} for _ in range(self.nworkers)]
        else:
            parts = self._split(senders)
            total = sum(len(p) for p in parts) or 1
            per = [{"senders": p or None, "rate": msgs_per_s * len(p) / total if p else 0.0}
                   for p in parts]
        self.call_all("steady", per_worker=per, duration=duration, label=label, **kw)

    def flood(self, idx: int, duration: float, reconnect: bool = True) -> None:
        wid = self.owner[idx]
        self._send(wid, "flood", idx=idx, duration=duration, reconnect=reconnect)
        self._recv(wid, 10)

    def wait_marks(self, target: int, timeout: float, idle: float = 5.0,
                   poll: float = 0.02) -> dict:
        """Wait until ``target`` deliveries were counted, or no progress for
        ``idle`` s, or ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            s = self.stats()
            now = time.monotonic()
            if s["marks"] != last:
                last, last_change = s["marks"], now
            if s["marks"] >= target or now > deadline or now - last_change > idle:
                s["complete"] = s["marks"] >= target
                return s
            time.sleep(poll)

    def wait_quiet(self, idle: float = 1.0, timeout: float = 60.0, poll: float = 0.1) -> dict:
        """Wait until no frame but pings arrived for ``idle`` s (bounded by
        ``timeout``): the server's keep-alive pings never stop."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            s = self.stats()
            now = time.monotonic()
            if s["frames"] - s["pongs"] != last:
                last, last_change = s["frames"] - s["pongs"], now
            if now - last_change >= idle or now > deadline:
                s["quiet"] = now - last_change >= idle
                return s
            time.sleep(poll)

    def drain(self, seconds: float = 5.0) -> dict:
        r = self.call_all("drain", seconds=seconds, timeout=seconds * 3 + 30)
        out = {}
        for x in r:
            out.update(x)
        return out

    def close_clients(self, idxs=None) -> None:
        if idxs is None:
            self.call_all("close")
        else:
            parts = self._split(idxs)
            self.call_all("close", per_worker=[{"idxs": p} for p in parts])


def percentiles(samples_ns: list, ps=(50, 99)) -> dict:
    """Percentiles (nearest rank) and max of nanosecond samples, in ms."""
    if not samples_ns:
        return {f"p{p}": None for p in ps} | {"max": None, "n": 0}
    s = sorted(samples_ns)
    out: dict[str, Any] = {}
    for p in ps:
        k = min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))
        out[f"p{p}"] = s[k] / 1e6
    out["max"] = s[-1] / 1e6
    out["n"] = len(s)
    return out


def main(argv: Optional[list] = None) -> None:
    ap = argparse.ArgumentParser(description="Drive a running chat server with N clients.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--proto", choices=[PARLEY, IRC], default=PARLEY)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20.0, help="messages/s in total")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    with LoadGen(args.host, args.port, args.proto, args.workers) as lg:
        t0 = time.monotonic()
        lg.connect(range(args.clients), sample_every=max(1, args.clients // 100))
        s = lg.wait_registered(args.clients, timeout=120)
        print(f"registered {s['registered']}/{args.clients} in {time.monotonic() - t0:.2f} s,"
              f" failed {s['failed']} {s['fail_reasons']}")
        lg.stats(reset=True, lat=True)
        lg.steady(list(range(min(args.clients, 100))), args.rate, args.seconds)
        time.sleep(args.seconds)
        s = lg.wait_quiet(idle=1.0, timeout=30)
        s2 = lg.stats(lat=True)
        p = percentiles(s2["lat"])
        print(f"sent {s['sent']} delivered {s['marks']} "
              f"({s['marks'] / args.seconds:.0f}/s) latency p50 {p['p50']} p99 {p['p99']} "
              f"max {p['max']} ms; errors {s['errors']} byes {s['byes']} lost {s['lost']}")
        lg.close_clients()


if __name__ == "__main__":
    main()
