"""The client's network session, shared by the CLI and the GUI.  No UI code.

A ``Session`` owns one background thread that connects, says hello, reads
frames, answers pings, paces what you send to the server's rate limit, and
reconnects with backoff when the connection drops, resuming the same name
(``token``) and catching up on missed messages (``last_id``), dropping
duplicates by id.  The UI talks to it through two thread-safe doors:

    session = Session("127.0.0.1", 8888, "alice", client="parley-cli")
    session.start()
    session.say("hello")            # any thread; queued while offline
    event = session.events.get()    # protocol events + StateChanged, NameRefused, …
    session.close()

Messages you send carry a label; the server acknowledges each one, and a
message not acknowledged when the connection drops is sent again after the
reconnect unless the catch-up shows it already went through.
"""
from __future__ import annotations

import collections
import enum
import itertools
import logging
import os
import queue
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Optional, Union

from .. import __version__
from .. import protocol as p

log = logging.getLogger("parley.session")


class SessionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass
class StateChanged:
    """The session's connection state changed; ``detail`` says why."""
    state: SessionState
    detail: str = ""
    retry_in: Optional[float] = None      # with RECONNECTING: seconds to the next try


@dataclass
class NameRefused:
    """The server refused the name; call ``set_name`` to try another."""
    name: str
    code: str
    message: str


@dataclass
class ConnectFailed:
    """The first connection attempt failed and ``retry_first`` is off."""
    host: str
    port: int
    error: str


class OfflineQueueFull(Exception):
    """Too many messages queued while disconnected."""


SessionEvent = Union[p.Event, StateChanged, NameRefused, ConnectFailed]

_FATAL = {p.VERSION_UNSUPPORTED}


@dataclass
class _Outgoing:
    label: str
    frame: dict


class Session:
    def __init__(self, host: str, port: int, name: str, *, client: str = "parley",
                 retry_first: bool = False, reconnect: bool = True,
                 backoff_initial: float = 0.5, backoff_max: float = 10.0,
                 connect_timeout: float = 5.0, keepalive: float = 20.0,
                 max_queued: int = 500):
        self.host, self.port = host, port
        self.name = name
        self.client = client
        self.retry_first = retry_first
        self.reconnect = reconnect
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.max_queued = max_queued
        self.events: "queue.Queue[SessionEvent]" = queue.Queue()
        self.state = SessionState.CONNECTING
        self.users: set[str] = set()
        self.last_id: Optional[int] = None
        self.token: Optional[str] = None
        self.instance: Optional[str] = None   # the server run our ids belong to
        self._welcomed = False
        self.limits: dict = {}
        self.registered = threading.Event()
        self._cond = threading.Condition()
        self._outgoing: collections.deque[_Outgoing] = collections.deque()
        self._inflight: "collections.OrderedDict[str, _Outgoing]" = collections.OrderedDict()
        self._labels = itertools.count(1)
        self._label_prefix = os.urandom(3).hex()
        self._closing = False
        self._new_name: Optional[str] = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name="parley-session", daemon=True)
        self._sock: Optional[socket.socket] = None
        self._tokens = 0.0
        self._token_time = 0.0
        self._not_before = 0.0

    # --- the UI's side (any thread) ---------------------------------------------
    def start(self) -> "Session":
        self._thread.start()
        return self

    def say(self, text: str) -> str:
        """Send a chat message (queued while offline).  Returns its label."""
        return self._enqueue({"type": "say", "text": text})

    def me(self, text: str) -> str:
        """Send an action (``/me waves``).  Returns its label."""
        return self._enqueue({"type": "me", "text": text})

    def request_users(self) -> str:
        return self._enqueue({"type": "users"}, counted=False)

    def set_name(self, name: str) -> None:
        """After ``NameRefused``: try again with ``name`` on the same connection."""
        with self._cond:
            self.name = name
            self._new_name = name
        self._wake()

    def pending(self) -> int:
        """Messages not yet acknowledged by the server."""
        with self._cond:
            return len(self._outgoing) + len(self._inflight)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until every message sent so far is acknowledged (or refused)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (not self._outgoing and not self._inflight) or
                self.state is SessionState.CLOSED, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Say goodbye and stop the session thread."""
        with self._cond:
            self._closing = True
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def reconnect_now(self) -> None:
        """Drop the current connection (as a network failure would); the session
        reconnects and catches up.  Useful after a network change, and in tests."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def connected(self) -> bool:
        return self.state is SessionState.CONNECTED

    def _enqueue(self, frame: dict, counted: bool = True) -> str:
        label = f"{self._label_prefix}-{next(self._labels)}"
        frame["label"] = label
        with self._cond:
            if self.state is SessionState.CLOSED:
                raise OfflineQueueFull("the session is closed")
            if counted and len(self._outgoing) >= self.max_queued:
                raise OfflineQueueFull(f"{len(self._outgoing)} messages are already waiting "
                                       "to be sent; try again when connected")
            self._outgoing.append(_Outgoing(label, frame))
        self._wake()
        return label

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # --- the session thread ----------------------------------------------------------
    def _emit(self, event: SessionEvent) -> None:
        self.events.put(event)

    def _set_state(self, state: SessionState, detail: str = "",
                   retry_in: Optional[float] = None) -> None:
        with self._cond:
            self.state = state
            self._cond.notify_all()
        self._emit(StateChanged(state, detail, retry_in))

    def _run(self) -> None:
        attempt = 0
        first = True
        try:
            while not self._closing:
                try:
                    sock = socket.create_connection((self.host, self.port), self.connect_timeout)
                except OSError as e:
                    reason = e.strerror or str(e) or type(e).__name__
                    if first and not self.retry_first:
                        self._emit(ConnectFailed(self.host, self.port, reason))
                        break
                    first = False
                    delay = self._backoff(attempt)
                    attempt += 1
                    self._set_state(SessionState.RECONNECTING, reason, delay)
                    if self._sleep(delay):
                        break
                    continue
                first = False
                reason, registered = self._serve(sock)
                if registered:
                    attempt = 0
                if self._closing or not self.reconnect or reason is None:
                    break
                delay = self._backoff(attempt)
                attempt += 1
                self._set_state(SessionState.RECONNECTING, reason, delay)
                if self._sleep(delay):
                    break
        except Exception:   # pragma: no cover - a bug; make it visible
            log.exception("session thread crashed")
        finally:
            self._set_state(SessionState.CLOSED, "closed")
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2 ** attempt))
        return round(base * random.uniform(0.8, 1.2), 2)

    def _sleep(self, seconds: float) -> bool:
        """Wait, waking early only to close; True if closing."""
        deadline = time.monotonic() + seconds
        while not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sel = selectors.DefaultSelector()
            sel.register(self._wake_r, selectors.EVENT_READ)
            sel.select(min(left, 0.5))
            sel.close()
            self._drain_wake()
        return True

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _serve(self, sock: socket.socket) -> tuple[Optional[str], bool]:
        """Run one connection.  Returns (why it ended or None to stop, registered?)."""
        self._sock = sock
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        decoder = p.FrameDecoder(p.SERVER_FRAMES, max_line=1 << 24)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        out = bytearray()
        registered = False
        hello_sent = False
        last_recv = time.monotonic()
        ping_sent = False
        reason: Optional[str] = "connection lost"

        def hello() -> None:
            nonlocal hello_sent
            out.extend(p.encode(p.Hello(version=p.PROTOCOL_VERSION, name=self.name,
                                        client=self.client, client_version=__version__,
                                        last_id=self.last_id, token=self.token,
                                        instance=self.instance)))
            hello_sent = True

        hello()
        try:
            while True:
                if self._closing:
                    out.extend(p.encode(p.Bye(reason=p.QUIT)))
                    self._flush_blocking(sock, out)
                    reason = None
                    break
                with self._cond:
                    new_name, self._new_name = self._new_name, None
                if new_name is not None and not registered:
                    hello()
                if registered:
                    self._take_outgoing(out)
                if out:
                    try:
                        n = sock.send(out)
                        del out[:n]
                    except (BlockingIOError, InterruptedError):
                        pass
                want = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
                sel.modify(sock, want)
                timeout = 1.0
                if registered and self._outgoing_ready_soon():
                    timeout = max(0.0, min(timeout, self._next_send_in()))
                ready = sel.select(timeout)
                now = time.monotonic()
                for key, _mask in ready:
                    if key.fileobj == self._wake_r:
                        self._drain_wake()
                        continue
                    try:
                        data = sock.recv(262144)
                    except (BlockingIOError, InterruptedError):
                        continue
                    if not data:
                        raise ConnectionResetError("the server closed the connection")
                    last_recv = now
                    ping_sent = False
                    for item in decoder.feed(data):
                        result = self._handle(item, out)
                        if result == "registered":
                            registered = True
                        elif result is not None:
                            reason = result if result != "stop" else None
                            return reason, registered
                idle = now - last_recv
                if idle > self.keepalive and not ping_sent:
                    out.extend(p.encode(p.Ping(token="keepalive")))
                    ping_sent = True
                elif idle > 2 * self.keepalive:
                    raise TimeoutError(f"no answer from the server for {int(idle)} s")
        except OSError as e:
            reason = e.strerror or str(e) or "connection lost"
        finally:
            sel.close()
            try:
                sock.close()
            except OSError:
                pass
            self._sock = None
            self.registered.clear()
            with self._cond:        # whatever was in flight goes out again after reconnecting
                self._outgoing.extendleft(reversed(list(self._inflight.values())))
                self._inflight.clear()
                self._cond.notify_all()
        return reason, registered

    def _flush_blocking(self, sock: socket.socket, out: bytearray) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(1.0)
            sock.sendall(out)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):     # read until the server hangs up
                pass
        except OSError:
            pass

    # pacing: mirror the server's token bucket so scripted bursts are never refused
    def _refill(self) -> None:
        rate = float(self.limits.get("rate", 5)) * 0.95
        burst = float(self.limits.get("burst", 20))
        now = time.monotonic()
        self._tokens = min(burst, self._tokens + (now - self._token_time) * rate)
        self._token_time = now

    def _outgoing_ready_soon(self) -> bool:
        with self._cond:
            return bool(self._outgoing)

    def _next_send_in(self) -> float:
        self._refill()
        rate = float(self.limits.get("rate", 5)) * 0.95
        wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / rate
        return max(wait, self._not_before - time.monotonic(), 0.0)

    def _take_outgoing(self, out: bytearray) -> None:
        if time.monotonic() < self._not_before:
            return
        self._refill()
        with self._cond:
            while self._outgoing and self._tokens >= 1 and len(self._inflight) < 64:
                item = self._outgoing.popleft()
                self._inflight[item.label] = item
                self._tokens -= 1
                out.extend(p.encode_dict(item.frame))

    def _settle(self, label: Optional[str]) -> bool:
        if label is None:
            return False
        with self._cond:
            item = self._inflight.pop(label, None)
            self._cond.notify_all()
        return item is not None

    def _handle(self, item: Union[p.Event, p.ProtocolError], out: bytearray) -> Optional[str]:
        """Handle one frame from the server; a string result ends the connection."""
        if isinstance(item, p.ProtocolError):
            log.warning("bad frame from server: %s", item)
            return None
        if isinstance(item, p.Ping):
            out.extend(p.encode(p.Pong(token=item.token)))
            return None
        if isinstance(item, p.Pong):
            return None
        if isinstance(item, p.Welcome):
            self._welcome(item)
            return "registered"
        if isinstance(item, (p.Message, p.Join, p.Leave)):
            if self.last_id is not None and item.id <= self.last_id:
                return None            # already seen (catch-up overlap)
            self.last_id = item.id
            if isinstance(item, p.Join):
                self.users.add(item.name)
            elif isinstance(item, p.Leave):
                self.users.discard(item.name)
            self._emit(item)
            return None
        if isinstance(item, p.UserList):
            self._settle(item.label)
            self.users = set(item.users)
            self._emit(item)
            return None
        if isinstance(item, p.Ack):
            self._settle(item.label)
            self._emit(item)
            return None
        if isinstance(item, p.Error):
            return self._error(item)
        if isinstance(item, p.Bye):
            self._emit(item)
            return f"disconnected by the server: {item.message or item.reason}"
        return None

    def _error(self, err: p.Error) -> Optional[str]:
        if err.code in (p.NAME_TAKEN, p.NAME_INVALID) and not self.registered.is_set():
            self.token = None
            self._emit(NameRefused(self.name, err.code, err.message))
            return None
        if err.code in _FATAL:
            self._emit(err)
            self._closing = True
            return "stop"
        if err.code == p.RATE_LIMITED and err.label is not None:
            with self._cond:           # not accepted: send it again a little later
                item = self._inflight.pop(err.label, None)
                if item is not None:
                    self._outgoing.appendleft(item)
            self._tokens = 0.0
            self._not_before = time.monotonic() + (err.retry_after or 1.0)
            return None
        self._settle(err.label)
        self._emit(err)
        return None

    def _welcome(self, w: p.Welcome) -> None:
        if self.instance is not None and w.instance != self.instance:
            self.last_id = None          # the server restarted: its ids start again
        self.instance = w.instance
        self.name = w.name
        self.token = w.token
        self.limits = w.limits
        self.users = set(w.users)
        self._tokens = float(w.limits.get("burst", 20)) / 2   # others may have used some
        self._token_time = time.monotonic()
        mine = {h.get("label") for h in w.history if h.get("label")}
        with self._cond:
            if mine:     # sent before the drop and accepted: do not send them twice
                self._outgoing = collections.deque(o for o in self._outgoing if o.label not in mine)
            self._cond.notify_all()
        resumed = self.last_id is not None
        again, self._welcomed = self._welcomed, True
        self._set_state(SessionState.CONNECTED,
                        f"{'reconnected' if again else 'connected'} to {self.host}:{self.port} as {w.name}")
        self._emit(w)
        for frame in w.history:
            try:
                ev = p.event_from_dict(frame, p.SERVER_FRAMES)
            except p.ProtocolError:
                continue
            if isinstance(ev, (p.Message, p.Join, p.Leave)):
                if self.last_id is not None and ev.id <= self.last_id:
                    continue
                if resumed:      # (the welcome's user list is already current)
                    self.last_id = ev.id
                self._emit(ev)
        if self.last_id is None or w.last_id > self.last_id:
            self.last_id = w.last_id
        self.registered.set()
