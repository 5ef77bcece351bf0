"""A bare socket speaking Parley's JSON lines, for poking at the server in tests."""
import itertools
import json
import socket
import time

from parley import protocol as p

_labels = itertools.count(1)


class RawClient:
    """A bare socket speaking JSON lines, for poking at the server."""

    def __init__(self, address, timeout=5.0, rcvbuf=None, auto_pong=True):
        self.auto_pong = auto_pong
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(address)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.decoder = p.FrameDecoder(p.SERVER_FRAMES, max_line=1 << 24)
        self.backlog = []
        self.eof = False

    def send(self, frame):
        if isinstance(frame, p.Event):
            data = p.encode(frame)
        elif isinstance(frame, dict):
            data = json.dumps(frame).encode() + b"\n"
        else:
            data = frame
        self.sock.sendall(data)

    def hello(self, name, rooms=False, **kw):
        """Say hello (with the rooms capability when ``rooms``); return the welcome."""
        if rooms:
            kw.setdefault("caps", [p.CAP_ROOMS])
        self.send(p.Hello(version=p.PROTOCOL_VERSION, name=name, **kw))
        return self.expect("welcome")

    def request(self, frame, reply, timeout=None, **fields):
        """Send a labelled request and return its answer (``reply`` type or error)."""
        label = f"r{next(_labels)}"
        frame = dict(frame, label=label)
        self.send(frame)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self.backlog):
                if getattr(ev, "label", None) == label and ev.type in (reply, "error"):
                    del self.backlog[i]
                    return ev
            if self.eof or time.monotonic() >= deadline:
                raise AssertionError(f"no answer to {frame}; got {self.backlog[-5:]}")
            self._read(deadline)

    def types(self, timeout=0.3):
        """The types of everything that arrives within ``timeout``, in order."""
        return [ev.type for ev in self.frames(timeout)]

    def expect_sequence(self, *kinds, timeout=None):
        """Wait for frames of these types to arrive in this order (others may come
        between); return them.  Fails if one arrives before the one it follows."""
        deadline = time.monotonic() + (timeout or self.timeout)
        found = []
        while len(found) < len(kinds):
            for i, ev in enumerate(self.backlog):
                want = kinds[len(found)]
                if ev.type == want:
                    found.append(ev)
                    del self.backlog[i]
                    break
                if ev.type in kinds[len(found) + 1:]:
                    raise AssertionError(f"{ev.type} came before {want}: {ev}")
            else:
                if self.eof or time.monotonic() >= deadline:
                    raise AssertionError(f"expected {kinds}, got {found} then {self.backlog[-5:]}")
                self._read(deadline)
        return found

    def _read(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        for ev in self.decoder.feed(data):
            if self.auto_pong and isinstance(ev, p.Ping):
                self.send(p.Pong(token=ev.token))
            self.backlog.append(ev)
        return True

    def expect(self, kind, timeout=None, **fields):
        """Return (and remove) the first frame of type ``kind`` (or one of the
        types in a tuple) with ``fields``; other frames stay in the backlog for
        later ``expect``/``frames`` calls."""
        kinds = kind if isinstance(kind, tuple) else (kind,)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self.backlog):
                if getattr(ev, "type", None) in kinds and all(
                        getattr(ev, k, None) == v for k, v in fields.items()):
                    del self.backlog[i]
                    return ev
            if self.eof or time.monotonic() >= deadline:
                raise AssertionError(f"no {kind} {fields or ''} frame; got {self.backlog[-5:]}"
                                     f"{' (connection closed)' if self.eof else ''}")
            self._read(deadline)

    def answer(self, label, timeout=None):
        """The ack or error that answers the request labelled ``label``."""
        return self.expect(("ack", "error"), timeout, label=label)

    def frames(self, timeout=0.3):
        """Everything that arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.eof:
            self._read(deadline)
        out, self.backlog = self.backlog, []
        return out

    def wait_closed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._read(deadline)
        return self.eof

    def close(self):
        self.sock.close()
