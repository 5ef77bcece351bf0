"""HTTP and WebSocket on the chat port, in the I/O threads.

The first byte a client sends decides what it speaks (``sniff``): a JSON Lines
frame starts with ``{`` (or blank space), an HTTP request with its method in
capitals (``GET /``).  On an HTTP request the plain or TLS transport hands the
connection over to a ``WebTransport`` that keeps it as its byte stream:

    socket -> inner transport (TCP, or TLS decrypted) -> WebTransport.decode
        HTTP mode:  request heads (capped at HEAD_MAX) -> static files, 304, 404…
                    GET /ws + Upgrade -> origin check -> websockets' ServerProtocol
        WS mode:    ServerProtocol (sans-IO) -> text messages -> the same JSON frames
                    as a line on TCP -> the session, hub, limits, pings

Output the transport makes itself (HTTP responses, WebSocket pongs and close
frames) waits in ``out`` and goes out between the I/O thread's buffers, never
inside a frame.  Chat frames do not go through websockets' send path: a
server's frames are unmasked, so ``wrap`` frames each JSON line once per
distinct ``bytes`` object (the hub hands the same object to every member of a
room) and every recipient gets the same framed bytes.

WebSocket support needs the optional ``websockets`` package (the ``web``
extra); without it ``WEBSOCKETS`` is None and HTTP requests get a page saying
how to enable it.
"""
from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional, Union

from ... import __version__
from ... import protocol as p

try:                                    # optional: the `web` extra
    from websockets.frames import Opcode
    from websockets.protocol import State as _WsState
    from websockets.server import ServerProtocol
    from websockets.version import version as WEBSOCKETS
    OP_TEXT, OP_BINARY, OP_CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
except ImportError:                     # (also when sys.modules["websockets"] is None)
    ServerProtocol = None               # type: ignore[assignment,misc]
    WEBSOCKETS = None                   # type: ignore[assignment]

log = logging.getLogger("parley.server")
# websockets logs every connection at INFO and every frame (hello tokens included)
# at DEBUG: keep only its warnings
_ws_log = logging.getLogger("parley.server.websockets")
_ws_log.setLevel(logging.WARNING)

HEAD_MAX = 16384                # bytes of one HTTP request head (request line + headers)
FILE_MAX = 16 << 20             # largest static file served
OUT_MAX = 4 << 20               # HTTP responses queued before keep-alive stops (pipelining)
WS_PATH = "/ws"
ENABLE_HINT = ("pip install websockets (or pip install 'parley[web]') to serve the web "
               "client on this port")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain; charset=utf-8",
}
NO_CACHE = {"index.html", "sw.js", "service-worker.js", "manifest.webmanifest"}
SHORT_CACHE = "max-age=60"      # asset paths are not versioned: revalidate by ETag soon
REASONS = {200: "OK", 101: "Switching Protocols", 304: "Not Modified", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 413: "Content Too Large",
           426: "Upgrade Required", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 505: "HTTP Version Not Supported"}
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HOST_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")


def sniff_http(data: bytes) -> bool:
    """True if the first bytes of a connection are an HTTP request: its method,
    in capitals.  A JSON Lines client starts with '{' (or blank space)."""
    return 65 <= data[0] <= 90          # A-Z


class SwitchProtocol(Exception):
    """Raised by a transport's ``recv`` when the client speaks HTTP: the I/O thread
    replaces the connection's transport with ``transport`` and decodes ``data``."""

    def __init__(self, transport: "WebTransport", data: bytes):
        super().__init__("HTTP request")
        self.transport = transport
        self.data = data


# --- the static site ------------------------------------------------------------------
@dataclass
class WebSite:
    """What HTTP serves: static files under ``root``, WebSocket at ``/ws``.

    ``enabled`` False (``--no-web``, or websockets missing): every HTTP request gets
    a 404 page saying why, then the connection closes.  Shared by every I/O
    thread: only its file cache changes (whole entries, replaced atomically)."""
    root: str = ""
    origins: tuple = ()                 # extra origins allowed to open /ws (--web-origin)
    enabled: bool = True
    why_off: str = ""
    _files: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.root:
            self.root = default_root()
        self.root = os.path.realpath(self.root)
        self.origins = tuple(normal_origin(o) for o in self.origins)

    @classmethod
    def off(cls, why: str) -> "WebSite":
        return cls(enabled=False, why_off=why)

    def resolve(self, path: str) -> Optional[str]:
        """The file a decoded URL path names, or None (missing, hidden, outside the root)."""
        parts = [s for s in path.split("/") if s]
        for s in parts:
            if s in (".", "..") or s.startswith(".") or "\\" in s or ":" in s or "\0" in s:
                return None
        full = os.path.join(self.root, *parts)
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        real = os.path.realpath(full)       # symlinks out of the root are refused
        try:
            if os.path.commonpath([real, self.root]) != self.root:
                return None
        except ValueError:                   # another drive (Windows)
            return None
        return real if os.path.isfile(real) else None

    def load(self, real: str) -> Optional[tuple[bytes, str]]:
        """(body, etag) of a file, cached until its size or mtime changes."""
        try:
            st = os.stat(real)
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size)
        hit = self._files.get(real)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        if st.st_size > FILE_MAX:
            log.warning("not serving %s: larger than %d bytes", real, FILE_MAX)
            return None
        try:
            with open(real, "rb") as f:
                body = f.read(FILE_MAX + 1)
        except OSError:
            return None
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        self._files[real] = (key, body, etag)
        return body, etag


def default_root() -> str:
    """The package's own web directory (src/parley/web/)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "web")


def normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports left out."""
    u = urllib.parse.urlsplit(origin.strip())
    scheme = (u.scheme or "").lower()
    try:
        host, port = (u.hostname or "").lower(), u.port
    except ValueError:
        return origin.strip().lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _host_port(value: str, default_port: int) -> Optional[tuple[str, int]]:
    u = urllib.parse.urlsplit("//" + value.strip())
    try:
        port = u.port
    except ValueError:
        return None
    return (u.hostname or "").lower(), port if port is not None else default_port


def same_origin(origin: str, host: str) -> bool:
    """The Origin's host and port equal the Host header's (the page came from here)."""
    u = urllib.parse.urlsplit(origin)
    scheme = u.scheme.lower()
    if scheme not in ("http", "https"):
        return False
    default = 443 if scheme == "https" else 80
    a = _host_port(u.netloc, default)
    b = _host_port(host, default)
    return a is not None and a == b and bool(a[0])


# --- WebSocket frames the server sends -------------------------------------------------
_SMALL = [bytes((0x81, n)) for n in range(126)]
# id(lines) -> (lines, framed), shared by the I/O threads: entries are immutable and
# single dict operations are atomic, so no lock; holding ``lines`` keeps its id unique
_framed: dict = {}


def text_header(n: int) -> bytes:
    if n < 126:
        return _SMALL[n]
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


def frame_lines(lines: bytes) -> bytes:
    """JSON lines -> one unmasked WebSocket text frame per line (without its newline)."""
    parts = []
    for line in lines.split(b"\n"):
        if line:
            parts.append(text_header(len(line)))
            parts.append(line)
    return b"".join(parts)


def frame_lines_shared(lines: bytes) -> bytes:
    """``frame_lines`` once per distinct ``bytes`` object in this thread: the hub gives
    one object to every member of a room, so 1,000 recipients cost one framing."""
    hit = _framed.get(id(lines))
    if hit is not None and hit[0] is lines:
        return hit[1]
    framed = frame_lines(lines)
    if len(_framed) >= 16:
        _framed.clear()
    _framed[id(lines)] = (lines, framed)
    return framed


def frame_rest(view: memoryview) -> bytes:
    """The bytes that finish the frame in progress in ``view``, a tail of frames
    made by ``frame_lines`` (so the stream can end with a goodbye)."""
    obj = view.obj
    start = len(obj) - len(view)
    pos = 0
    while pos < start:
        n = obj[pos + 1] & 0x7F
        if n == 126:
            n, hl = int.from_bytes(obj[pos + 2:pos + 4], "big"), 4
        elif n == 127:
            n, hl = int.from_bytes(obj[pos + 2:pos + 10], "big"), 10
        else:
            hl = 2
        nxt = pos + hl + n
        if nxt > start:
            return bytes(obj[start:nxt])
        pos = nxt
    return b""


# --- HTTP requests ---------------------------------------------------------------------
@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict          # lower-case name -> value (repeated headers joined with ", ")
    head: bytes            # the raw head, for websockets' handshake


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_head(head: bytes) -> Request:
    """One request head (up to and including its blank line) -> Request, or BadRequest."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # (latin-1 decodes anything)
        raise BadRequest(400, "unreadable request") from None
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if not set(method.encode()) <= _TOKEN:
        raise BadRequest(400, "malformed method")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505 if version.startswith("HTTP/") else 400, "HTTP/1.1 or 1.0 only")
    headers: dict = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name.encode()) <= _TOKEN:
            raise BadRequest(400, "malformed header")
        name = name.lower()
        value = value.strip(" \t")
        if any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in value):
            raise BadRequest(400, "control characters in a header")
        if name in headers:
            if name in ("host", "content-length"):
                raise BadRequest(400, f"repeated {name} header")
            headers[name] += ", " + value
        else:
            headers[name] = value
    if version == "HTTP/1.1" and "host" not in headers:
        raise BadRequest(400, "no Host header")
    return Request(method, target, version, headers, head)


def url_path(target: str) -> Optional[str]:
    """The decoded path of a request target, or None if unusable."""
    if target.startswith(("http://", "https://")):
        target = urllib.parse.urlsplit(target).path or "/"
    if not target.startswith("/"):
        return None
    path = target.split("?", 1)[0].split("#", 1)[0]
    try:
        path = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    if "\0" in path:
        return None
    return path


# --- the transport ---------------------------------------------------------------------
class WebTransport:
    """HTTP, then maybe WebSocket, over an inner transport's byte stream.

    Behind the same interface as the JSON Lines transports (see __init__.py), plus
    ``ended``: (reason, message) once the transport has closed the conversation
    itself (an HTTP response with ``Connection: close``, a WebSocket closing
    handshake or protocol error); the I/O thread then flushes ``out`` and closes."""

    def __init__(self, inner, site: WebSite, max_line: int, send=None):
        self.inner = inner
        self._send = send or inner.send         # (plain TCP: the socket's own send)
        self.sock = inner.sock
        self.peer = inner.peer
        self.secure = inner.secure
        self.site = site
        self.max_line = max_line
        self.buf = b""                  # HTTP: bytes of a request head not complete yet
        self.out: list = []             # bytes of our own (responses, pongs, close frames)
        self.out_size = 0
        self._mid = False               # the last send() stopped inside the caller's buffer
        self.ws = None                  # websockets' ServerProtocol once upgraded
        self.parts: list = []           # a fragmented text message being assembled
        self.binary = False
        self.ended: Optional[tuple[str, str]] = None
        self.close_code = 1000          # our close frame after a goodbye

    # --- the interface ------------------------------------------------------------
    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def handshaking(self) -> bool:
        return self.inner.handshaking

    @property
    def want_write(self) -> bool:
        return bool(self.out) or self.inner.want_write

    def recv(self) -> bytes:
        return self.inner.recv()

    def decode(self, data: bytes) -> list[Union[p.Event, p.ProtocolError]]:
        if self.ended is not None:
            return []
        try:
            out = self._decode(data)
        except Exception:   # a bug here must not take the I/O thread down
            log.exception("%s error in the web transport", self.peer)
            self.ended = (p.LOST, "internal error")
            return []
        if self.out_size > OUT_MAX and self.ended is None:
            # answers pile up for a client that does not read them
            if self.ws is None:             # big files, or pipelining: send them, then close
                self.ended = (p.QUIT, "HTTP done")
            else:                           # pongs for a flood of WebSocket pings
                log.info("%s disconnecting: %d bytes of pongs not read", self.peer,
                         self.out_size)
                self.ended = (p.SENDQ, "pongs not read")
        return out

    def _decode(self, data: bytes) -> list[Union[p.Event, p.ProtocolError]]:
        if self.ws is not None:
            return self._ws_data(data)
        self.buf += data
        self._http()
        if self.ws is not None and self.buf:    # frames right behind the upgrade request
            rest, self.buf = self.buf, b""
            return self._ws_data(rest)
        return []

    def end_of_stream(self) -> list[p.ProtocolError]:
        return []

    def wrap(self, lines: bytes) -> bytes:
        ws = self.ws
        if ws is not None and ws.close_sent is None and not lines.startswith(b'{"type":"bye"'):
            return frame_lines_shared(lines)          # the common case: fan-out
        if ws is None:
            # an HTTP connection the server closes (handshake timeout, shutdown):
            # a request cut short is told so
            if lines and self.buf.strip() and self.ended is None:
                self.buf = b""
                return self._response(408, "the request head did not arrive in time",
                                      close=True)
            return b""
        if self.ws.close_sent is not None:
            return b""                  # nothing may follow our close frame
        if lines.startswith(b'{"type":"bye"'):
            self.close_code = _close_code(lines)
            return frame_lines(lines)
        return frame_lines_shared(lines)

    def send(self, view: memoryview) -> int:
        if self.out and not self._mid:      # between buffers: our own bytes first
            self._flush_out()
            if self.out:
                return 0
        if not view:
            return 0
        n = self._send(view)
        if n:
            self._mid = n < len(view)
            if not self._mid and self.out:
                self._flush_out()
        return n

    def rest_of_frame(self, view: memoryview) -> bytes:
        return frame_rest(view) if self.ws is not None else b""

    def shutdown_write(self) -> None:
        ws = self.ws
        if ws is not None and ws.close_sent is None and ws.state is _WsState.OPEN:
            try:
                ws.send_close(self.close_code)
            except Exception:           # (not open: nothing to close)
                pass
            self._take_ws_output()
        if self.out:
            self._flush_out()
        if not self.out:                # (else: a client that does not read; dropped later)
            self.inner.shutdown_write()

    def close(self) -> None:
        self.inner.close()

    # --- output of our own ----------------------------------------------------------
    def _queue(self, data: bytes) -> None:
        if data:
            self.out.append(memoryview(data))
            self.out_size += len(data)

    def _flush_out(self) -> None:
        while self.out:
            head = self.out[0]
            try:
                n = self.inner.send(head)
            except (BlockingIOError, InterruptedError):
                return
            self.out_size -= n
            if n < len(head):
                self.out[0] = head[n:]
                return
            self.out.pop(0)

    # --- HTTP ---------------------------------------------------------------------
    def _http(self) -> None:
        while self.ended is None and self.ws is None:
            buf = self.buf
            ends = [(i, i + n) for i, n in ((buf.find(b"\r\n\r\n"), 4), (buf.find(b"\n\n"), 2))
                    if i >= 0]
            if not ends:
                start = buf.lstrip(b"\r\n")
                if len(buf) > HEAD_MAX:
                    self._fail_http(431, f"the request head is longer than {HEAD_MAX} bytes")
                elif start and not sniff_http(start):
                    self._fail_http(400, "not an HTTP request")
                return
            size = min(ends)[1]
            if size > HEAD_MAX:
                self._fail_http(431, f"the request head is longer than {HEAD_MAX} bytes")
                return
            head, self.buf = self.buf[:size], self.buf[size:]
            try:
                req = parse_head(head.lstrip(b"\r\n"))
            except BadRequest as e:
                self._fail_http(e.status, str(e))
                return
            self._handle(req)
            if self.out_size > OUT_MAX:         # a client pipelining without reading: wait
                break

    def _fail_http(self, status: int, message: str) -> None:
        log.info("%s HTTP %d: %s", self.peer, status, message)
        self._queue(self._response(status, message, close=True))
        self.buf = b""
        self.ended = (p.QUIT, f"HTTP {status}")

    def _handle(self, req: Request) -> None:
        h = req.headers
        keep = req.version == "HTTP/1.1" and "close" not in h.get("connection", "").lower()
        if "transfer-encoding" in h or h.get("content-length", "0").strip() not in ("0", ""):
            # no request here has a body; not reading it would desynchronise keep-alive
            self._finish(req, 405 if req.method not in ("GET", "HEAD") else 400,
                         "request bodies are not accepted", close=True)
            return
        if not self.site.enabled:
            self._finish(req, 404, f"The web client is off on this server: {self.site.why_off}",
                         close=True)
            return
        path = url_path(req.target)
        if path is None:
            self._finish(req, 400, "bad request target", close=True)
            return
        if path == WS_PATH:
            if req.method != "GET":
                self._finish(req, 405, "WebSocket: GET only", close=True, allow="GET")
                return
            self._upgrade(req)
            return
        if req.method not in ("GET", "HEAD"):
            self._finish(req, 405, f"{req.method} is not allowed here", close=True)
            return
        real = self.site.resolve(path)
        loaded = self.site.load(real) if real is not None else None
        if loaded is None:
            self._finish(req, 404, "Not found", close=not keep)
            return
        body, etag = loaded
        name = os.path.basename(real)
        ctype = CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")
        cache = "no-cache" if name in NO_CACHE or ctype.startswith("text/html") else SHORT_CACHE
        extra = [("ETag", etag), ("Cache-Control", cache)]
        inm = h.get("if-none-match")
        if inm is not None and _etag_matches(inm, etag):
            self._log(req, 304)
            self._queue(self._head(304, extra, 0, None, close=not keep, host=h.get("host")))
        else:
            self._log(req, 200)
            self._queue(self._head(200, extra, len(body), ctype, close=not keep,
                                   host=h.get("host")))
            if req.method == "GET":
                self._queue(body)
        if not keep:
            self.ended = (p.QUIT, "HTTP done")

    def _finish(self, req: Request, status: int, message: str, close: bool,
                allow: str = "GET, HEAD") -> None:
        self._log(req, status)
        self._queue(self._response(status, message, close=close, head_only=req.method == "HEAD",
                                   allow=allow if status == 405 else None,
                                   host=req.headers.get("host")))
        if close:
            self.ended = (p.QUIT, f"HTTP {status}")

    def _log(self, req: Request, status: int) -> None:
        if log.isEnabledFor(logging.DEBUG):     # the path only: a query may hold anything
            log.debug("%s %s %s %d", self.peer, req.method,
                      req.target.split("?", 1)[0][:200], status)

    def _head(self, status: int, extra: list, length: int, ctype: Optional[str],
              close: bool, host: Optional[str] = None) -> bytes:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
                 f"Server: parley/{__version__}",
                 f"Date: {email.utils.formatdate(usegmt=True)}"]
        if ctype is not None:
            lines.append(f"Content-Type: {ctype}")
        if status != 304:
            lines.append(f"Content-Length: {length}")
        lines += [f"{k}: {v}" for k, v in extra]
        lines += [f"Content-Security-Policy: {self._csp(host)}",
                  "X-Content-Type-Options: nosniff",
                  "Referrer-Policy: no-referrer",
                  "X-Frame-Options: DENY",
                  "Connection: close" if close else "Connection: keep-alive"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _csp(self, host: Optional[str]) -> str:
        connect = "'self'"
        if host and set(host) <= _HOST_OK and len(host) <= 255:
            connect += f" ws://{host} wss://{host}"
        return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                f"connect-src {connect}; object-src 'none'; base-uri 'none'; "
                "form-action 'self'; frame-ancestors 'none'")

    def _response(self, status: int, message: str, close: bool, head_only: bool = False,
                  allow: Optional[str] = None, host: Optional[str] = None) -> bytes:
        body = (f"<!doctype html>\n<meta charset=utf-8><title>{status} "
                f"{REASONS.get(status, 'Error')}</title>\n<h1>{status} "
                f"{REASONS.get(status, 'Error')}</h1>\n<p>{_escape(message)}</p>\n").encode()
        extra = [("Cache-Control", "no-store")]
        if allow:
            extra.append(("Allow", allow))
        head = self._head(status, extra, len(body), "text/html; charset=utf-8", close, host)
        return head if head_only else head + body

    # --- WebSocket ------------------------------------------------------------------
    def _upgrade(self, req: Request) -> None:
        origin = req.headers.get("origin")
        host = req.headers.get("host", "")
        if origin is not None and not (same_origin(origin, host)
                                       or normal_origin(origin) in self.site.origins):
            log.info("%s WebSocket refused: origin %r not allowed (host %r)", self.peer,
                     origin[:100], host[:100])
            self._finish(req, 403, "This origin may not open a WebSocket here "
                                   "(the server's --web-origin allows others).", close=True)
            return
        ws = ServerProtocol(max_size=self.max_line, logger=_ws_log)
        ws.receive_data(req.head)
        events = ws.events_received()
        if not events:                   # websockets could not parse what we could
            self._finish(req, 400, "bad WebSocket handshake", close=True)
            return
        response = ws.accept(events[0])
        if response.status_code != 101:
            self._log(req, response.status_code)
            response.headers["Content-Security-Policy"] = self._csp(host)
            response.headers["X-Content-Type-Options"] = "nosniff"
            ws.send_response(response)
            for chunk in ws.data_to_send():
                self._queue(chunk)
            self.ended = (p.QUIT, f"HTTP {response.status_code}")
            return
        self._log(req, 101)
        ws.send_response(response)
        self.ws = ws
        self._take_ws_output()
        log.debug("%s WebSocket open%s", self.peer, " (TLS)" if self.secure else "")

    def _ws_data(self, data: bytes) -> list[Union[p.Event, p.ProtocolError]]:
        ws = self.ws
        out: list = []
        if data:
            ws.receive_data(data)
        for frame in ws.events_received():
            op = frame.opcode
            if op is OP_TEXT or op is OP_BINARY:
                self.binary = op is OP_BINARY
                self.parts = [frame.data]
            elif op is OP_CONT:
                self.parts.append(frame.data)
            else:
                continue                    # ping (answered by websockets), pong, close
            if not frame.fin:
                continue
            payload = b"".join(self.parts) if len(self.parts) > 1 else bytes(self.parts[0])
            self.parts = []
            if self.binary:
                log.info("%s WebSocket: a binary message; closing (1003)", self.peer)
                ws.fail(1003, "binary messages are not supported: send JSON as text")
                break
            try:
                out.append(p.decode_line(payload, p.CLIENT_FRAMES))
            except p.ProtocolError as e:
                out.append(e)
        self._take_ws_output()
        return out

    def _take_ws_output(self) -> None:
        ws = self.ws
        if ws is None:
            return
        for chunk in ws.data_to_send():
            if chunk:
                self._queue(chunk)
            elif self.ended is None:        # websockets' end of stream: the closing is done
                self._ws_ended()

    def _ws_ended(self) -> None:
        ws = self.ws
        exc = ws.parser_exc
        if exc is None and ws.close_rcvd is not None:
            # 1001 "going away": a reload or a closed tab (a reload comes right
            # back: the user is held, not gone); a client that means to leave says bye
            code = ws.close_rcvd.code
            self.ended = (p.LOST if code == 1001 else p.QUIT, f"closed by the client ({code})")
            return
        code = ws.close_sent.code if ws.close_sent is not None else 1006
        reason = p.PROTOCOL if code == 1002 else p.LOST
        why = f"WebSocket {code}: {(ws.close_sent.reason if ws.close_sent else '') or exc}"
        if code not in (1000, 1001):
            log.info("%s %s", self.peer, why)
        self.ended = (reason, why[:200])


def _close_code(bye: bytes) -> int:
    for reason, code in ((b'"shutdown"', 1001), (b'"flood"', 1008), (b'"sendq_exceeded"', 1008),
                         (b'"protocol"', 1002)):
        if reason in bye:
            return code
    return 1000


def _etag_matches(header: str, etag: str) -> bool:
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag == etag or tag == "W/" + etag:
            return True
    return False


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
