"""Client connections and the I/O threads that serve them.

This is the only module that touches a client socket.  A small pool of
``IOWorker`` threads each owns a share of the connections and a selector:

* readable socket -> ``recv`` once (at most 64 KiB, so a flooder cannot hog a
  thread) -> ``FrameDecoder`` -> ``Connection.handle`` -> ``Hub`` (locked,
  no I/O) -> the frame is appended to the shared broadcast log.
* every loop, a flush pass sends each connection everything between its
  cursor and the end of the log, plus its private frames, in one ``send``.
  Connections at the same cursor share one ``bytes`` object.
* a socket whose kernel buffer is full keeps its unsent bytes and waits for
  EVENT_WRITE; once its lag passes the outbox bound it is told why
  (``bye`` / ``sendq_exceeded``) and dropped.  Nobody else waits for it.
"""
from __future__ import annotations

import collections
import logging
import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .. import protocol as p
from .hub import Hub

log = logging.getLogger("parley.server")

RECV_SIZE = 65536


@dataclass
class Limits:
    """Every limit has a name, a default and a command-line flag (see app.py)."""
    max_line: int = 16384          # bytes in one protocol line
    max_text: int = 4000           # characters in one chat message
    rate: float = 5.0              # frames per second per client (token bucket refill)
    burst: int = 20                # token bucket size
    flood_kick: int = 30           # rejected frames (leaking at `rate`/s) before a kick
    outbox: int = 1 << 20          # bytes a client may lag behind before it is dropped
    ping_interval: float = 30.0    # seconds of silence before the server pings
    ping_timeout: float = 30.0     # seconds to answer a ping
    handshake_timeout: float = 15.0  # seconds to send hello after connecting
    history: int = 500             # messages kept for catch-up
    join_history: int = 20         # recent messages shown to a newcomer
    max_clients: int = 20000       # simultaneous connections

    def public(self) -> dict:
        """The limits a client is told in its welcome."""
        return {"max_line": self.max_line, "max_text": self.max_text,
                "rate": self.rate, "burst": self.burst,
                "ping_interval": self.ping_interval}


class Connection:
    """One client: its socket, decoder, outbox and rate limiter."""

    def __init__(self, sock: socket.socket, peer: str, worker: "IOWorker"):
        self.sock = sock
        self.peer = peer
        self.worker = worker
        limits = worker.limits
        self.decoder = p.FrameDecoder(p.CLIENT_FRAMES, limits.max_line)
        # Hub.Member fields
        self.name: Optional[str] = None
        self.token: Optional[str] = None
        self.cursor: Optional[int] = None
        # outbox: private frames tagged with the log position they come after
        self.private: collections.deque[tuple[int, bytes]] = collections.deque()
        self.private_bytes = 0
        self.pending: Optional[memoryview] = None   # bytes the kernel did not take yet
        self.blocked = False
        # liveness and limits
        now = time.monotonic()
        self.connected_at = now
        self.last_recv = now
        self.ping_sent: Optional[float] = None
        self.tokens = float(limits.burst)
        self.strikes = 0.0
        self.bucket_time = now
        self.last_rate_error = 0.0
        self.closed = False
        self.draining_until: Optional[float] = None   # half-closed, reading until EOF

    def __repr__(self) -> str:
        return f"<Connection {self.peer} {self.name or '-'}>"

    # --- Hub.Member ------------------------------------------------------------
    def push(self, frame: bytes, pos: int = 0) -> None:
        """Queue a frame for this client only, after log frame ``pos``."""
        self.private.append((pos, frame))
        self.private_bytes += len(frame)

    def replaced(self) -> None:
        """The same user resumed on a new connection: drop this one quietly."""
        self.worker.call_soon(lambda: self.worker.close(self, p.QUIT, notify=False))

    def send_event(self, event: p.Event) -> None:
        self.push(p.encode(event), self.cursor if self.cursor is not None else 0)

    def error(self, code: str, message: str, label: Optional[str] = None, **extra) -> None:
        self.send_event(p.Error(code=code, message=message, label=label, **extra))

    # --- rate limiting ------------------------------------------------------------
    def _refill(self, now: float) -> None:
        limits = self.worker.limits
        elapsed = now - self.bucket_time
        self.bucket_time = now
        self.tokens = min(float(limits.burst), self.tokens + elapsed * limits.rate)
        self.strikes = max(0.0, self.strikes - elapsed * limits.rate)

    def strike(self) -> bool:
        """Count a rejected frame; True if the client must now be kicked."""
        self.strikes += 1
        return self.strikes > self.worker.limits.flood_kick

    # --- frames in --------------------------------------------------------------
    def handle(self, item: p.Event | p.ProtocolError, now: float) -> None:
        w = self.worker
        if isinstance(item, p.Pong):
            return
        self._refill(now)
        if self.tokens < 1:
            label = getattr(item, "label", None)
            if label is not None or now - self.last_rate_error >= 1.0:
                self.last_rate_error = now
                wait = (1 - self.tokens) / w.limits.rate
                self.error(p.RATE_LIMITED, f"slow down: at most {w.limits.rate:g} messages "
                           f"per second (burst {w.limits.burst})", label,
                           retry_after=round(wait, 3))
            if self.strike():
                w.close(self, p.FLOOD, "kicked for flooding")
            return
        self.tokens -= 1
        if isinstance(item, p.ProtocolError):
            self.error(item.code, item.message)
            if self.strike():
                w.close(self, p.PROTOCOL, "too many invalid frames")
            return
        hub = w.hub
        if isinstance(item, p.Hello):
            if self.name is not None:
                self.error(p.ALREADY_REGISTERED, f"you are already registered as {self.name}")
                return
            refusal = hub.register(self, item)
            if refusal is not None:
                self.send_event(refusal)
                log.info("%s refused %r: %s", self.peer, item.name[:40], refusal.code)
            return
        if isinstance(item, p.Ping):
            self.send_event(p.Pong(token=item.token))
            return
        if isinstance(item, p.Bye):
            w.close(self, p.QUIT, notify=False)
            return
        label = getattr(item, "label", None)
        if self.name is None:
            self.error(p.NOT_REGISTERED, "send hello with a name first", label)
            return
        if isinstance(item, (p.Say, p.Me)):
            problem = p.text_problem(item.text, w.limits.max_text)
            if problem:
                self.error(*problem, label)
            else:
                hub.say(self, item.text, item.type, label)
        elif isinstance(item, p.UsersRequest):
            self.send_event(p.UserList(users=hub.users(), label=label))


class IOWorker(threading.Thread):
    """One I/O thread: a selector over its share of the connections."""

    def __init__(self, index: int, hub: Hub, limits: Limits):
        super().__init__(name=f"parley-io-{index}", daemon=True)
        self.hub = hub
        self.limits = limits
        self.selector = selectors.DefaultSelector()
        self.conns: set[Connection] = set()
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._woken = False
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.running = True
        self.shutdown_deadline: Optional[float] = None
        self._next_housekeeping = 0.0

    # --- called from other threads ----------------------------------------------
    def wake(self) -> None:
        if not self._woken:
            self._woken = True
            try:
                os.write(self._wake_w, b"x")
            except (BlockingIOError, OSError):
                pass

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._calls.append(fn)
        self.wake()

    def add(self, sock: socket.socket, peer: str) -> None:
        self.call_soon(lambda: self._add(sock, peer))

    def begin_shutdown(self, deadline: float) -> None:
        self.call_soon(lambda: self._begin_shutdown(deadline))

    # --- the loop -----------------------------------------------------------------
    def run(self) -> None:
        try:
            while self.running:
                self._iterate()
        except Exception:  # a bug: log it loudly, never die silently
            log.exception("I/O thread %s crashed", self.name)
            raise
        finally:
            for c in list(self.conns):
                self._drop(c)
            self.selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _iterate(self) -> None:
        timeout = 0.25 if self.shutdown_deadline is None else 0.05
        events = self.selector.select(timeout)
        now = time.monotonic()
        for key, mask in events:
            c = key.data
            if c is None:
                self._drain_wakeups()
            elif c.closed:
                continue
            elif c.draining_until is not None:
                self._drain_closing(c, mask)
            else:
                if mask & selectors.EVENT_WRITE:
                    self._send_pending(c)   # its lag only shrinks here; flush() checks growth
                if mask & selectors.EVENT_READ and not c.closed:
                    self._on_readable(c, now)
        while self._calls:
            self._calls.popleft()()
        self.flush()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + 0.5
            self._housekeeping(now)
        if self.shutdown_deadline is not None:
            # wait for each client to read its goodbye and hang up, or the deadline
            if not self.conns or now >= self.shutdown_deadline:
                self.running = False

    def _drain_wakeups(self) -> None:
        # Empty the pipe first, then clear the flag.  The other order loses
        # wake-ups: a wake() between the two would leave the flag set with the
        # pipe empty, and every later wake() would skip writing, so this thread
        # would sleep through new messages until its select() timed out.
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        self._woken = False

    def _add(self, sock: socket.socket, peer: str) -> None:
        if self.shutdown_deadline is not None:
            sock.close()
            return
        c = Connection(sock, peer, self)
        self.conns.add(c)
        self.selector.register(sock, selectors.EVENT_READ, c)
        log.debug("%s connected", peer)

    def _on_readable(self, c: Connection, now: float) -> None:
        try:
            data = c.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close(c, p.LOST, notify=False)
            return
        if not data:
            self.close(c, p.LOST, notify=False)
            return
        c.last_recv = now
        c.ping_sent = None
        for item in c.decoder.feed(data):
            if c.closed or c.draining_until is not None:
                break
            try:
                c.handle(item, now)
            except Exception:   # never let one client's frame take the thread down
                log.exception("%s %s: error handling %r", c.peer, c.name, item)
                c.error("internal", "the server failed to handle that frame")

    def _send_pending(self, c: Connection) -> bool:
        """Send what the kernel did not take before; True once all is out."""
        data = c.pending
        if data is None:
            return True
        try:
            n = c.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            if c.draining_until is not None:
                self._drop(c)
            else:
                self.close(c, p.LOST, notify=False)
            return False
        if n < len(data):
            c.pending = data[n:]
            if not c.blocked:
                c.blocked = True
                self.selector.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            return False
        c.pending = None
        if c.blocked:
            c.blocked = False
            self.selector.modify(c.sock, selectors.EVENT_READ, c)
        return True

    # --- fan-out ------------------------------------------------------------------
    def flush(self) -> None:
        """Send every ready connection what it is owed, one send() each."""
        hub_log = self.hub.log
        end_now = hub_log.end
        ready = []
        blocked = []
        for c in self.conns:
            if c.draining_until is not None or c.closed:
                continue
            if c.blocked:       # owed more while the kernel still holds the last send
                if c.private or (c.cursor is not None and c.cursor < end_now):
                    blocked.append(c)
            elif c.private or (c.cursor is not None and c.cursor < end_now):
                ready.append(c)
        if not ready and not blocked:
            return
        outbox = self.limits.outbox
        with self.hub.lock:            # snapshot only: references, no copying, no I/O
            lags = [(c, hub_log.lag(c.cursor) if c.cursor is not None else 0) for c in blocked]
            end, base = hub_log.end, hub_log.base
            lo = min((c.cursor for c in ready if c.cursor is not None), default=end)
            lo = max(lo, base)
            frames = hub_log.frames[lo - base:end - base]
        for c, lag in lags:               # a slow reader falling further behind
            if lag is None or lag + len(c.pending or b"") + c.private_bytes > outbox:
                self._too_slow(c)
        shared: dict[int, bytes] = {}
        for c in ready:
            cursor = c.cursor
            if cursor is not None and cursor < lo:   # trimmed away: far too slow
                self.close(c, p.SENDQ, "you fell too far behind")
                continue
            if c.private:
                parts = []
                while c.private:
                    pos, frame = c.private.popleft()
                    if cursor is not None and pos > cursor:
                        parts.append(b"".join(frames[cursor - lo:min(pos, end) - lo]))
                        cursor = min(pos, end)
                    parts.append(frame)
                c.private_bytes = 0
                if cursor is not None and cursor < end:
                    parts.append(b"".join(frames[cursor - lo:]))
                data = b"".join(parts)
            else:
                data = shared.get(cursor)
                if data is None:
                    data = shared[cursor] = b"".join(frames[cursor - lo:])
            if cursor is not None:
                c.cursor = end
            if data:
                c.pending = memoryview(data)
                if not self._send_pending(c) and c.pending is not None \
                        and len(c.pending) > outbox:
                    self._too_slow(c)

    def _too_slow(self, c: Connection) -> None:
        self.close(c, p.SENDQ, f"more than {self.limits.outbox} bytes queued for you")

    # --- timeouts, pings, slow consumers -------------------------------------------
    def _housekeeping(self, now: float) -> None:
        limits = self.limits
        for c in list(self.conns):
            if c.closed:
                continue
            if c.draining_until is not None:
                if now >= c.draining_until:
                    self._drop(c)
                continue
            idle = now - c.last_recv
            if c.name is None and c.cursor is None:
                if idle > limits.handshake_timeout:
                    self.close(c, p.TIMEOUT, f"no hello within {limits.handshake_timeout:g} s")
                continue
            if c.ping_sent is not None:
                if now - c.ping_sent > limits.ping_timeout:
                    self.close(c, p.TIMEOUT, f"no answer to ping within {limits.ping_timeout:g} s")
                    continue
            elif idle > limits.ping_interval:
                c.ping_sent = now
                c.send_event(p.Ping(token=str(int(now * 1000))))

    # --- closing --------------------------------------------------------------------
    def close(self, c: Connection, reason: str, message: Optional[str] = None,
              notify: bool = True) -> None:
        """Remove ``c`` from the chat.  With ``notify``, tell it why (``bye``),
        half-close, and keep reading briefly so the goodbye is not lost to a reset."""
        if c.closed or c.draining_until is not None:
            return
        self.hub.leave(c, reason)
        c.name = None                   # (also when it was replaced by a resumed session)
        if not notify:
            self._drop(c)
            return
        text = message or p.LEAVE_REASONS.get(reason)
        log.info("%s disconnecting: %s (%s)", c.peer, reason, text)
        bye = p.encode(p.Bye(reason=reason, message=text))
        rest = bytes(c.pending or b"")
        if reason == p.SENDQ:
            # it cannot take what it owes: finish the line in progress, then say why
            nl = rest.find(b"\n")
            data = (rest[:nl + 1] if nl >= 0 else b"") + bye
        else:
            data = rest + b"".join(f for _, f in c.private) + bye
        c.private.clear()
        c.private_bytes = 0
        c.cursor = None
        c.pending = memoryview(data)
        c.draining_until = time.monotonic() + 5.0
        if self._send_pending(c) and not c.closed:
            self._half_close(c)

    def _half_close(self, c: Connection) -> None:
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(c)

    def _drain_closing(self, c: Connection, mask: int) -> None:
        """A connection we are closing: send the rest of the goodbye, read until EOF."""
        if mask & selectors.EVENT_WRITE and c.pending is not None:
            if self._send_pending(c) and not c.closed:
                self._half_close(c)
        if mask & selectors.EVENT_READ and not c.closed:
            try:
                data = c.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._drop(c)

    def _drop(self, c: Connection) -> None:
        if c.closed:
            return
        c.closed = True
        self.conns.discard(c)
        try:
            self.selector.unregister(c.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            c.sock.close()
        except OSError:
            pass

    def _begin_shutdown(self, deadline: float) -> None:
        self.shutdown_deadline = deadline
        for c in list(self.conns):
            if c.draining_until is None:
                c.name = None             # no leave notices: everyone is leaving
                self.close(c, p.SHUTDOWN, "the server is shutting down")
