"""Client connections and the I/O threads that serve them.

This is the only module that touches a client socket (through a transport,
see transports/).  A small pool of ``IOWorker`` threads each owns a share of
the connections and a selector:

* readable socket -> ``transport.recv`` once -> ``transport.decode`` ->
  ``ServerSession.receive`` (sans-IO: validation, limits, dispatch) -> the hub
  (locked, no I/O) -> the store's writer -> ``Hub.committed`` appends the
  frame to its room's broadcast log and pushes the ack.
* every loop, a flush pass sends each connection what it is owed: for each
  room log it follows, everything between its cursor and the end, with its
  private frames (welcome, acks, DMs, answers) in their place, in one
  ``send``.  Connections in the same room at the same cursor share one
  ``bytes`` object.
* a socket whose kernel buffer is full keeps its unsent bytes and waits for
  EVENT_WRITE; once its lag passes the outbox bound it is told why
  (``bye`` / ``sendq_exceeded``) and dropped.  Nobody else waits for it.

Other threads (the hub, the store's writer, reader threads) never touch a
connection's state: they append to its ``inbox`` and wake its thread.
"""
from __future__ import annotations

import collections
import logging
import selectors
import socket
import threading
import time
from typing import Callable, Optional

from .. import protocol as p
from .hub import BroadcastLog, Hub
from .guard import Guard, address_of
from .session import Close, Limits, Send, ServerSession
from .transports import JsonLinesTransport, SwitchProtocol, TlsTransport

log = logging.getLogger("parley.server")

__all__ = ["Connection", "IOWorker", "Limits", "Waker"]

_LEGACY_HIDDEN = (b'{"type":"topic"', b'{"type":"presence"',    # frames protocol 1 never had
                  b'{"type":"mod"', b'{"type":"invited"')
# TLS handshake steps (public-key work, about a millisecond each) per turn of an I/O
# thread's loop: in a connect storm the others' messages go out between batches
HANDSHAKES_PER_TURN = 8


class Waker:
    """Wakes a thread blocked in select() from any other thread.

    A connected socket pair, as asyncio uses on Windows: select() there takes
    sockets only, so a pipe cannot be used.  ``wake`` writes one byte unless a
    wake-up is already pending; ``drain`` empties the socket first and then
    clears the flag (the other order could lose a wake-up)."""

    def __init__(self) -> None:
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)
        self.w.setblocking(False)
        self._woken = False

    def fileno(self) -> int:
        return self.r.fileno()

    def wake(self) -> None:
        if not self._woken:
            self._woken = True
            try:
                self.w.send(b"x")
            except OSError:          # buffer full (a wake-up is pending anyway) or closed
                pass

    def drain(self) -> None:
        try:
            while self.r.recv(4096):
                pass
        except OSError:
            pass
        self._woken = False

    def close(self) -> None:
        self.r.close()
        self.w.close()


class Connection:
    """One client: its transport, protocol session, room cursors and outbox.

    Everything but ``inbox`` belongs to the connection's I/O thread."""

    def __init__(self, transport, worker: "IOWorker", now: float):
        self.transport = transport
        self.sock = transport.sock
        self.peer = transport.peer
        self.worker = worker
        self.legacy = True                      # set by the hub from the hello's caps
        self.session = ServerSession(worker.hub, self, worker.limits, now, worker.guard)
        self.inbox: collections.deque = collections.deque()     # from any thread
        self.cursors: dict[BroadcastLog, int] = {}              # room log -> next frame to send
        self.private: collections.deque = collections.deque()   # (log|None, pos, frame)
        self.private_bytes = 0
        self.held = False                       # registering: nothing goes out until the welcome
        self.pending: Optional[memoryview] = None   # bytes the kernel did not take yet
        # the welcome's size until it is sent: a catch-up is owed by design, not a
        # lag, so it may exceed the outbox (it is bounded by --history)
        self.slack = 0
        self.blocked = False
        self.closed = False
        self.draining_until: Optional[float] = None   # half-closed, reading until EOF
        self.finishing = False                  # said bye: send what it is owed, then close
        self.said_bye = False
        self.read_eof = False                   # the client hung up after its bye
        self.registered = True                  # in the selector

    def __repr__(self) -> str:
        return f"<Connection {self.peer} {self.session.name or '-'}>"

    @property
    def name(self) -> Optional[str]:
        return self.session.name

    # --- hub.Member (any thread) -----------------------------------------------------
    def _post(self, op: tuple) -> None:
        self.inbox.append(op)
        self.worker.dirty.append(self)      # (after the op: the worker sees both)

    def subscribe(self, log: BroadcastLog, pos: int) -> None:
        self._post((0, log, pos))
        self.worker.wake()

    def unsubscribe(self, log: BroadcastLog) -> None:
        self._post((1, log, 0))
        self.worker.wake()

    def push(self, frame: bytes, log: Optional[BroadcastLog] = None, pos: int = 0,
             first: bool = False) -> None:
        """Queue a frame for this client only (after frame ``pos`` of ``log``;
        with ``first``, before everything still queued: the welcome)."""
        self._post((7 if first else 2, log, pos, frame))

    def hold(self) -> None:
        self._post((3,))

    def release(self) -> None:
        self._post((4,))
        self.worker.wake()

    def replaced(self) -> None:
        """The same user resumed on a new connection: drop this one quietly."""
        self._post((5,))
        self.worker.wake()

    def finish(self) -> None:
        """Everything this client sent is stored and acknowledged: close after sending."""
        self._post((6,))
        self.worker.wake()

    def kick(self, reason: str, message: Optional[str] = None) -> None:
        """Close this connection with ``bye`` (reason, message), after what is queued."""
        self._post((8, reason, message))
        self.worker.wake()

    @property
    def secure(self) -> bool:
        """Over TLS (a WebSocket over TLS too)."""
        return bool(getattr(self.transport, "secure", False))

    # --- the I/O thread ----------------------------------------------------------------
    def apply_inbox(self, closing: bool = False) -> None:
        inbox = self.inbox
        while inbox:
            op = inbox.popleft()
            kind = op[0]
            if kind == 2:
                self.private.append(op[1:])
                self.private_bytes += len(op[3])
            elif kind == 0:
                self.cursors[op[1]] = op[2]
                self.worker.follow(self, op[1])
            elif kind == 1:
                self.cursors.pop(op[1], None)
                self.worker.unfollow(self, op[1])
            elif kind == 3:
                self.held = True
            elif kind == 4:
                self.held = False
            elif kind == 5 and not closing:
                self.worker.close(self, p.QUIT, notify=False)
            elif kind == 6:
                self.finishing = True
            elif kind == 8 and not closing:
                self.worker.close(self, op[1], op[2], notify=True)
            elif kind == 7:
                self.private.appendleft(op[1:])
                self.private_bytes += len(op[3])
                self.slack = len(op[3])

    def owed(self) -> bool:
        if self.private:
            return True
        for log, cur in self.cursors.items():
            if cur < log.end:
                return True
        return False


class IOWorker(threading.Thread):
    """One I/O thread: a selector over its share of the connections."""

    def __init__(self, index: int, hub: Hub, limits: Limits,
                 selector_factory: Callable[[], selectors.BaseSelector] = selectors.DefaultSelector,
                 guard: Optional[Guard] = None, web=None):
        super().__init__(name=f"parley-io-{index}", daemon=True)
        self.web = web              # a WebSite: HTTP and WebSocket on the same ports (or None)
        self.index = index
        self.hub = hub
        self.limits = limits
        self.guard = guard          # per-address limits (told when a connection ends)
        self.selector = selector_factory()
        self.conns: set[Connection] = set()
        self._calls: collections.deque[Callable[[], None]] = collections.deque()
        # which connections to visit in a flush: not all of them, only those
        self.dirty: collections.deque = collections.deque()     # with inbox items (any thread)
        self.grown: collections.deque = collections.deque()     # logs appended to (any thread)
        self.followers: dict[BroadcastLog, set] = {}            # log -> my connections on it
        self.waker = Waker()
        self.selector.register(self.waker.r, selectors.EVENT_READ, None)
        self.running = True
        self.shutdown_deadline: Optional[float] = None
        self._next_housekeeping = 0.0

    # --- called from other threads ----------------------------------------------
    def wake(self) -> None:
        self.waker.wake()

    def logs_grew(self, logs) -> None:
        """(any thread) These logs have new frames: visit their followers."""
        self.grown.extend(logs)
        self.wake()

    def follow(self, c: "Connection", log: BroadcastLog) -> None:
        fs = self.followers.get(log)
        if fs is None:
            fs = self.followers[log] = set()
            log.followed_by.add(self)       # so a commit to it wakes this thread
        fs.add(c)

    def unfollow(self, c: "Connection", log: BroadcastLog) -> None:
        fs = self.followers.get(log)
        if fs is not None:
            fs.discard(c)
            if not fs:
                del self.followers[log]
                log.followed_by.discard(self)

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._calls.append(fn)
        self.wake()

    def add(self, sock: socket.socket, peer: str, tls=None) -> None:
        """Serve ``sock``; ``tls`` (an ssl.SSLContext) for a client of the TLS port."""
        self.call_soon(lambda: self._add(sock, peer, tls))

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
            self.waker.close()

    def _iterate(self) -> None:
        timeout = 0.25 if self.shutdown_deadline is None else 0.05
        events = self.selector.select(timeout)
        now = time.monotonic()
        handshakes = HANDSHAKES_PER_TURN
        for key, mask in events:
            c = key.data
            if c is None:
                self.waker.drain()
            elif c.closed:
                continue
            elif c.draining_until is not None:
                self._drain_closing(c, mask)
            elif c.transport.handshaking and handshakes <= 0:
                continue            # still readable next turn (select is level-triggered)
            else:
                if c.transport.handshaking:
                    handshakes -= 1
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

    def _add(self, sock: socket.socket, peer: str, tls=None) -> None:
        if self.shutdown_deadline is not None:
            sock.close()
            return
        if tls is not None:     # its SSL object is created here: only this thread uses it
            transport = TlsTransport(sock, peer, self.limits.max_line, tls, self.web)
        else:
            transport = JsonLinesTransport(sock, peer, self.limits.max_line, self.web)
        c = Connection(transport, self, time.monotonic())
        self.conns.add(c)
        self.selector.register(sock, selectors.EVENT_READ, c)
        log.debug("%s connected", peer)

    def _on_readable(self, c: Connection, now: float) -> None:
        try:
            data = c.transport.recv()
        except (BlockingIOError, InterruptedError):
            if c.transport.want_write:
                self._wait_writable(c)
            return
        except OSError:
            self.close(c, p.LOST, notify=False)
            return
        except SwitchProtocol as switch:    # an HTTP request: the web transport takes over
            c.transport = switch.transport
            data = switch.data
        if c.transport.want_write:
            self._wait_writable(c)
        if not data:
            if c.said_bye:        # it hung up after bye: still send its acks, then close
                c.read_eof = True
                self._unregister(c)
                return
            self.close(c, p.LOST, notify=False)
            return
        for item in c.transport.decode(data):
            if c.closed or c.draining_until is not None or c.finishing:
                break
            try:
                actions = c.session.receive(item, now)
            except Exception:   # never let one client's frame take the thread down
                # the frame may hold what the client typed (or a token): log its type only
                log.exception("%s %s: error handling a %r frame", c.peer, c.name,
                              getattr(item, "type", "?"))
                actions = [Send(p.Error(p.INTERNAL, "the server failed to handle that frame",
                                        getattr(item, "label", None)))]
            self._act(c, actions)
        t = c.transport
        if t.ended is not None and not c.closed and c.draining_until is None:
            # the transport closed the conversation (HTTP done, WebSocket closing
            # handshake or error): send what it queued, then half-close
            self.close(c, t.ended[0], t.ended[1], notify=False, graceful=True)
        elif t.want_write and not c.closed:     # its own bytes (an HTTP response, a pong)
            self._wait_writable(c)

    def _act(self, c: Connection, actions: list) -> None:
        for a in actions:
            if isinstance(a, Send):
                c.push(p.encode(a.event))
            elif isinstance(a, Close):
                if a.reason == p.QUIT and not a.notify:
                    self._said_bye(c)
                else:
                    self.close(c, a.reason, a.message, a.notify)

    def _said_bye(self, c: Connection) -> None:
        """The client said bye: it leaves now, but still gets the acks of what it
        sent before (they come once stored); then the connection closes."""
        user = c.session.user
        c.session.closed(p.QUIT)
        if user is None:
            self.close(c, p.QUIT, notify=False)
            return
        c.said_bye = True
        self.hub.store_barrier(c.finish)

    def _unregister(self, c: Connection) -> None:
        if c.registered:
            c.registered = False
            try:
                self.selector.unregister(c.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _wait_writable(self, c: Connection) -> None:
        """The transport has bytes of its own (a TLS handshake) the kernel did not
        take: wait for EVENT_WRITE as for any unsent bytes (an empty ``pending``)."""
        if c.pending is None and not c.closed:
            c.pending = memoryview(b"")
            self._send_pending(c)

    def _send_pending(self, c: Connection) -> bool:
        """Send what the kernel did not take before; True once all is out."""
        data = c.pending
        if data is None:
            return True
        try:
            n = c.transport.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            if c.draining_until is not None:
                self._drop(c)
            else:
                self.close(c, p.LOST, notify=False)
            return False
        if n < len(data) or c.transport.want_write:
            c.pending = data[n:]
            if not c.blocked:
                c.blocked = True
                if c.read_eof:
                    self.selector.register(c.sock, selectors.EVENT_WRITE, c)
                    c.registered = True
                else:
                    self.selector.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            return False
        c.pending = None
        c.slack = 0
        if c.blocked:
            c.blocked = False
            self.dirty.append(c)        # what it was owed meanwhile goes in the next flush
            if c.read_eof:
                self._unregister(c)
            else:
                self.selector.modify(c.sock, selectors.EVENT_READ, c)
        return True

    # --- fan-out ------------------------------------------------------------------
    def flush(self, everyone: bool = False) -> None:
        """Send every ready connection what it is owed, one send() each.  Visits
        only the connections that may be owed something: with new private frames
        (``dirty``) or following a log that grew; ``everyone`` visits all."""
        if everyone:
            candidates = set(self.conns)
            self.dirty.clear()
            self.grown.clear()
        else:
            candidates = set()
            dirty, grown, followers = self.dirty, self.grown, self.followers
            while dirty:
                candidates.add(dirty.popleft())
            seen = set()
            while grown:
                lg = grown.popleft()
                if lg not in seen:
                    seen.add(lg)
                    fs = followers.get(lg)
                    if fs:
                        candidates.update(fs)
        ready = []
        blocked = []
        for c in candidates:
            if c.inbox:
                c.apply_inbox()
            if c.draining_until is not None or c.closed or c.held:
                continue
            if c.owed():
                (blocked if c.blocked else ready).append(c)
            elif c.finishing and not c.blocked:
                self.close(c, p.QUIT, notify=False, graceful=True)
        if not ready and not blocked:
            return
        outbox = self.limits.outbox
        snaps: dict[BroadcastLog, list] = {}
        for c in ready:
            for lg, cur in c.cursors.items():
                s = snaps.get(lg)
                if s is None:
                    snaps[lg] = [cur]
                elif cur < s[0]:
                    s[0] = cur
        with self.hub.lock:        # snapshot only: references, no copying, no I/O
            for lg, s in snaps.items():
                end, base = lg.end, lg.base
                lo = min(max(s[0], base), end)
                s[:] = [lo, end, lg.frames[lo - base:end - base], lg.ids[lo - base:end - base]]
            lags = []
            for c in blocked:
                lag = len(c.pending or b"") + c.private_bytes
                for lg, cur in c.cursors.items():
                    behind = lg.lag(cur)
                    lag = None if behind is None or lag is None else lag + behind
                lags.append((c, lag))
        for c, lag in lags:               # a slow reader falling further behind
            if lag is None or lag > outbox + c.slack:
                self._too_slow(c)
        shared: dict = {}
        for c in ready:
            if c.closed:
                continue
            data = self._owed_bytes(c, snaps, shared)
            if data is None:
                self.close(c, p.SENDQ, "you fell too far behind")
                continue
            if data:
                c.pending = memoryview(c.transport.wrap(data))
                if not self._send_pending(c) and c.pending is not None \
                        and len(c.pending) > outbox + c.slack:
                    self._too_slow(c)

    def _owed_bytes(self, c: Connection, snaps: dict, shared: dict) -> Optional[bytes]:
        """Everything ``c`` is owed now, in id order across its logs (so a client
        that saw id N has seen every lower id meant for it: its catch-up after a
        cut can start from N), with each private frame in its place."""
        active = []
        for lg, cur in c.cursors.items():
            lo, end = snaps[lg][0], snaps[lg][1]
            if cur < lo:
                return None                 # trimmed away: far too slow
            if cur < end:
                active.append(lg)
        if not c.private and len(active) == 1:
            lg = active[0]                  # the common case: one room, shared bytes
            lo, end, frames, _ids = snaps[lg]
            key = (lg, c.cursors[lg], c.legacy)
            data = shared.get(key)
            if data is None:
                run = frames[key[1] - lo:end - lo]
                if c.legacy:
                    run = [f for f in run if not f.startswith(_LEGACY_HIDDEN)]
                data = shared[key] = b"".join(run)
            c.cursors[lg] = end
            return data
        items = []                          # (sort id, rank, sequence, bytes)
        seq = 0
        hidden = _LEGACY_HIDDEN if c.legacy else None
        for lg in active:
            lo, end, frames, ids = snaps[lg]
            cur = c.cursors[lg]
            for i in range(cur - lo, end - lo):
                frame = frames[i]
                if hidden is None or not frame.startswith(hidden):
                    items.append((ids[i], 0, seq, frame))
                seq += 1
            c.cursors[lg] = end
        while c.private:
            lg, pos, frame = c.private.popleft()
            if lg is not None and lg in snaps and pos > snaps[lg][0]:
                lo, end, frames, ids = snaps[lg]
                after = ids[min(pos, end) - 1 - lo]     # right after the frame it follows
                items.append((after, 1, seq, frame))
            else:
                items.append((-1, 0, seq, frame))       # welcome, replies: first, in order
            seq += 1
        c.private_bytes = 0
        items.sort()                        # (the sequence number is unique: bytes never compared)
        return b"".join(t[3] for t in items)

    def _too_slow(self, c: Connection) -> None:
        self.close(c, p.SENDQ, f"more than {self.limits.outbox} bytes queued for you")

    # --- timeouts, pings, presence --------------------------------------------------
    def _housekeeping(self, now: float) -> None:
        for c in list(self.conns):
            if c.closed:
                continue
            if c.draining_until is not None:
                if now >= c.draining_until:
                    self._drop(c)
                continue
            if c.finishing:
                continue
            self._act(c, c.session.tick(now))
        if self.index == 0:
            self.hub.flush_presence()
            self.hub.expire_holds()
            if self.guard is not None:
                self.guard.prune(now)
        self.flush(everyone=True)           # a safety net: nothing waits longer than this

    # --- closing --------------------------------------------------------------------
    def close(self, c: Connection, reason: str, message: Optional[str] = None,
              notify: bool = True, graceful: bool = False) -> None:
        """Remove ``c`` from the chat.  With ``notify``, tell it why (``bye``),
        half-close, and keep reading briefly so the goodbye is not lost to a reset.
        ``graceful`` (after a client's bye): send what is owed, then half-close."""
        if c.closed or c.draining_until is not None:
            return
        c.session.closed(reason)
        if reason in (p.FLOOD, p.PROTOCOL, p.KICKED) and self.guard is not None:
            self.guard.kicked(address_of(c.peer), time.monotonic())
        if not notify and not graceful:
            self._drop(c)
            return
        c.apply_inbox(closing=True)     # errors and acks queued just before: they go first
        rest = bytes(c.pending or b"")
        if notify:
            text = message or p.LEAVE_REASONS.get(reason)
            log.info("%s disconnecting: %s (%s)", c.peer, reason, text)
            bye = c.transport.wrap(p.encode(p.Bye(reason=reason, message=text)))
            if reason == p.SENDQ:
                # it cannot take what it owes: finish the frame in progress, then say why
                data = (c.transport.rest_of_frame(c.pending) if c.pending else b"") + bye
            else:
                private = c.transport.wrap(b"".join(f for _, _, f in c.private))
                data = rest + private + bye
        else:
            data = rest
        c.private.clear()
        c.private_bytes = 0
        for lg in list(c.cursors):
            self.unfollow(c, lg)
        c.cursors.clear()
        # (an empty buffer still flushes the transport's own bytes: an HTTP response)
        c.pending = memoryview(data) if data or c.transport.want_write else None
        c.draining_until = time.monotonic() + 5.0
        if self._send_pending(c) and not c.closed:
            self._half_close(c)



    def _half_close(self, c: Connection) -> None:
        if c.read_eof:
            self._drop(c)
            return
        try:
            c.transport.shutdown_write()
        except OSError:
            self._drop(c)

    def _drain_closing(self, c: Connection, mask: int) -> None:
        """A connection we are closing: send the rest of the goodbye, read until EOF."""
        if mask & selectors.EVENT_WRITE and c.pending is not None:
            if self._send_pending(c) and not c.closed:
                self._half_close(c)
        if mask & selectors.EVENT_READ and not c.closed:
            try:
                data = c.transport.recv()
            except (BlockingIOError, InterruptedError):
                return
            except SwitchProtocol:      # its first bytes came after our goodbye: not EOF
                return
            except OSError:
                data = b""
            if not data:
                self._drop(c)

    def _drop(self, c: Connection) -> None:
        if c.closed:
            return
        c.closed = True
        c.session.closed(p.LOST)
        self.conns.discard(c)
        if self.guard is not None:
            self.guard.closed(address_of(c.peer))
        for lg in list(c.cursors):
            self.unfollow(c, lg)
        self._unregister(c)
        try:
            c.transport.close()
        except OSError:
            pass

    def _begin_shutdown(self, deadline: float) -> None:
        self.shutdown_deadline = deadline
        for c in list(self.conns):
            if c.draining_until is None:
                c.session.user = None      # no leave notices: everyone is leaving
                self.close(c, p.SHUTDOWN, "the server is shutting down")
