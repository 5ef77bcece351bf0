"""HTTP and WebSocket on the chat port, over real sockets on 127.0.0.1.

The WebSocket peer is websockets' own synchronous client (its threaded client
code, not the sans-IO server protocol the server uses) and, for what no
well-behaved client sends, frames written by hand here.  HTTP is checked with
http.client, raw sockets and ``curl``."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

from rawclient import RawClient  # noqa: E402

from parley import protocol as p  # noqa: E402
from parley.server.app import Server  # noqa: E402
from parley.server.connection import Limits  # noqa: E402
from parley.server.transports.web import HEAD_MAX, WebSite  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WAIT = 8.0


# --- fixtures ---------------------------------------------------------------------------
@pytest.fixture
def site_dir(tmp_path):
    """A web root with one file of each type, a subdirectory, a secret next to it
    (outside the root) and a symlink out of the root."""
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    files = {
        "index.html": b"<!doctype html><title>t</title><script src=app.js></script>",
        "app.js": b"export const x = 1;\n",
        "style.css": b"body{color:red}\n",
        "data.json": b'{"a":1}\n',
        "manifest.webmanifest": b'{"name":"Parley"}\n',
        "icon.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        "icon.png": b"\x89PNG\r\n\x1a\nfake",
        "favicon.ico": b"\x00\x00\x01\x00fake",
        "font.woff2": b"wOF2fake",
        "sw.js": b"self.addEventListener('fetch', () => {});\n",
        "sub/index.html": b"<!doctype html><p>sub</p>",
        ".hidden": b"hidden",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (tmp_path / "secret.txt").write_bytes(b"TOP SECRET")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"TOP SECRET")
    try:
        os.symlink(tmp_path / "outside", root / "link-out", target_is_directory=True)
        os.symlink(tmp_path / "secret.txt", root / "secret-link.txt")
    except (OSError, NotImplementedError):
        pass                                   # (Windows without the privilege)
    return root


@pytest.fixture
def web_server(site_dir):
    servers = []

    def start(site=None, tls=None, io_threads=2, **limits):
        limits.setdefault("hold", 0.0)     # a dropped connection leaves at once (as in conftest)
        srv = Server("127.0.0.1", 0, Limits(**limits), io_threads=io_threads, db=":memory:",
                     tls=tls, tls_port=0, web=site or WebSite(str(site_dir))).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop(grace=0.5)


@pytest.fixture
def srv(web_server):
    return web_server()


class WsClient(RawClient):
    """RawClient's interface (expect, frames, …) over websockets' sync client."""

    def __init__(self, url, timeout=5.0, auto_pong=True, **kw):
        self.auto_pong = auto_pong
        self.timeout = timeout
        self.backlog = []
        self.eof = False
        self._ctx = ws_connect(url, open_timeout=timeout, compression=None, **kw)
        self.ws = self._ctx.__enter__()
        self.sock = self.ws.socket

    def send(self, frame):
        if isinstance(frame, p.Event):
            self.ws.send(p.encode(frame).decode().rstrip("\n"))
        elif isinstance(frame, dict):
            self.ws.send(json.dumps(frame))
        else:
            self.ws.send(frame)

    def _read(self, deadline):
        try:
            msg = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return False
        except ConnectionClosed:
            self.eof = True
            return False
        assert isinstance(msg, str), "the server sends text messages only"
        assert "\n" not in msg, "one JSON object per message"
        ev = p.decode_line(msg.encode(), p.SERVER_FRAMES)
        if self.auto_pong and isinstance(ev, p.Ping):
            self.send(p.Pong(token=ev.token))
        self.backlog.append(ev)
        return True

    def close_code(self, timeout=5.0):
        """The close code the server sent (after reading everything before it)."""
        self.wait_closed(timeout)
        assert self.eof, "the server did not close"
        return self.ws.protocol.close_rcvd.code if self.ws.protocol.close_rcvd else None

    def close(self):
        self.ws.close()


@pytest.fixture
def ws(srv):
    clients = []

    def make(name=None, server=None, path="/ws", **kw):
        host, port = (server or srv).address
        c = WsClient(f"ws://{host}:{port}{path}", **kw)
        clients.append(c)
        if name:
            c.welcome = c.hello(name)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def tcp(srv):
    clients = []

    def make(name=None, server=None, **kw):
        c = RawClient((server or srv).address, **kw)
        clients.append(c)
        if name:
            c.welcome = c.hello(name)
        return c

    yield make
    for c in clients:
        c.close()


def http_get(address, path, method="GET", headers=None):
    c = http.client.HTTPConnection(*address, timeout=WAIT)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def raw_http(address, data: bytes, timeout=WAIT) -> bytes:
    """Send raw bytes; everything the server answers until it closes."""
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def hand_ws(address, headers=b"", rcvbuf=None) -> socket.socket:
    """A WebSocket opened by hand (no library): for frames a library would not send."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(WAIT)
    s.connect(address)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              % (address[0].encode(), address[1]) + headers + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head       # RFC 6455's example key and answer
    return s


def client_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_server_frames(s: socket.socket, timeout=WAIT):
    """(opcode, payload) of every frame until the server closes the connection."""
    s.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    frames, pos = [], 0
    while pos + 2 <= len(data):
        op, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
        assert not data[pos + 1] & 0x80, "server frames are not masked"
        pos += 2
        if n == 126:
            n, pos = struct.unpack("!H", data[pos:pos + 2])[0], pos + 2
        elif n == 127:
            n, pos = struct.unpack("!Q", data[pos:pos + 8])[0], pos + 8
        frames.append((op, data[pos:pos + n]))
        pos += n
    return frames


# --- HTTP -------------------------------------------------------------------------------
CASES = [("/", "text/html; charset=utf-8", "no-cache"),
         ("/index.html", "text/html; charset=utf-8", "no-cache"),
         ("/app.js", "text/javascript; charset=utf-8", "max-age=60"),
         ("/style.css", "text/css; charset=utf-8", "max-age=60"),
         ("/data.json", "application/json", "max-age=60"),
         ("/manifest.webmanifest", "application/manifest+json", "no-cache"),
         ("/icon.svg", "image/svg+xml", "max-age=60"),
         ("/icon.png", "image/png", "max-age=60"),
         ("/favicon.ico", "image/x-icon", "max-age=60"),
         ("/font.woff2", "font/woff2", "max-age=60"),
         ("/sw.js", "text/javascript; charset=utf-8", "no-cache"),
         ("/sub/", "text/html; charset=utf-8", "no-cache")]


def test_static_files_with_types_lengths_caching_and_security_headers(srv, site_dir):
    host, port = srv.address
    conn = http.client.HTTPConnection(host, port, timeout=WAIT)      # one kept-alive connection
    for path, ctype, cache in CASES:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        name = path.lstrip("/") or "index.html"
        if name.endswith("/"):
            name += "index.html"
        assert r.status == 200, path
        assert body == (site_dir / name).read_bytes(), path
        assert r.getheader("Content-Type") == ctype, path
        assert int(r.getheader("Content-Length")) == len(body)
        assert r.getheader("Cache-Control") == cache, path
        assert r.getheader("ETag", "").startswith('"')
        assert r.getheader("X-Content-Type-Options") == "nosniff"
        assert r.getheader("Referrer-Policy") == "no-referrer"
        assert r.getheader("Connection") == "keep-alive"
        csp = r.getheader("Content-Security-Policy")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert f"connect-src 'self' ws://{host}:{port} wss://{host}:{port}" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    conn.close()


def test_etag_revalidation_gives_304_and_head_gives_headers_only(srv, site_dir):
    status, h, body = http_get(srv.address, "/app.js")
    assert status == 200
    etag = h["etag"]
    status, h2, body2 = http_get(srv.address, "/app.js", headers={"If-None-Match": etag})
    assert (status, body2, h2["etag"]) == (304, b"", etag)
    status, _, _ = http_get(srv.address, "/app.js", headers={"If-None-Match": 'W/' + etag})
    assert status == 304
    status, _, body3 = http_get(srv.address, "/app.js", headers={"If-None-Match": '"other"'})
    assert status == 200 and body3 == body
    (site_dir / "app.js").write_bytes(b"export const x = 2;  // changed\n")
    status, h4, body4 = http_get(srv.address, "/app.js", headers={"If-None-Match": etag})
    assert status == 200 and h4["etag"] != etag and b"changed" in body4
    status, h5, body5 = http_get(srv.address, "/app.js", method="HEAD")
    assert status == 200 and body5 == b"" and int(h5["content-length"]) == len(body4)
    assert h5["etag"] == h4["etag"] and h5["content-type"].startswith("text/javascript")


def test_a_big_file_with_connection_close_arrives_whole(srv, site_dir):
    """Bigger than the socket buffers: the rest waits for the socket, then the close."""
    blob = os.urandom(6 << 20)
    (site_dir / "big.bin").write_bytes(blob)
    with socket.create_connection(srv.address, timeout=WAIT) as s:
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)                        # let the server fill the buffers first
        data = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Content-Type: application/octet-stream" in head
    assert body == blob


def test_missing_files_404_and_other_methods_405(srv):
    status, h, body = http_get(srv.address, "/nope.js")
    assert status == 404 and b"Not found" in body
    assert "content-security-policy" in h and h["x-content-type-options"] == "nosniff"
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        status, h, _ = http_get(srv.address, "/index.html", method=method)
        assert status == 405, method
        assert h["allow"] == "GET, HEAD"
    assert status_of(raw_http(srv.address, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")) == 405


@pytest.mark.parametrize("target", [
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/..%2fsecret.txt",
    "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt", "//../secret.txt",
    "/..\\secret.txt", "/%5c..%5csecret.txt", "/link-out/secret.txt", "/secret-link.txt",
    "/.hidden", "http://127.0.0.1/../secret.txt", "/%00/index.html", "/%ff%fe",
])
def test_no_way_out_of_the_web_root(srv, target):
    response = raw_http(srv.address, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close"
                                     f"\r\n\r\n".encode())
    assert status_of(response) in (400, 404), response[:200]
    assert b"TOP SECRET" not in response and b"hidden" not in response.split(b"\r\n\r\n", 1)[1]


def test_absolute_paths_are_relative_to_the_root(srv, site_dir):
    secret = str(site_dir.parent / "secret.txt")
    response = raw_http(srv.address, f"GET {secret} HTTP/1.1\r\nHost: x\r\n"
                                     f"Connection: close\r\n\r\n".encode())
    assert status_of(response) == 404 and b"TOP SECRET" not in response


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (apt-get install curl)")
def test_curl_sees_the_headers_and_no_traversal(srv, site_dir):
    host, port = srv.address
    out = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null",
                          f"http://{host}:{port}/app.js"],
                         capture_output=True, text=True, timeout=30).stdout.lower()
    assert out.startswith("http/1.1 200")
    assert "content-type: text/javascript; charset=utf-8" in out
    assert "content-security-policy: default-src 'self'" in out
    etag = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("etag:")][0]
    code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                           "-H", f"If-None-Match: {etag}", f"http://{host}:{port}/app.js"],
                          capture_output=True, text=True, timeout=30).stdout
    assert code == "304"
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/link-out/secret.txt"):
        r = subprocess.run(["curl", "-s", "--path-as-is", "-w", "\n%{http_code}",
                            f"http://{host}:{port}{path}"],
                           capture_output=True, text=True, timeout=30).stdout
        assert r.endswith("404") and "TOP SECRET" not in r, (path, r)
    head = subprocess.run(["curl", "-sI", f"http://{host}:{port}/"],
                          capture_output=True, text=True, timeout=30).stdout.lower()
    assert head.startswith("http/1.1 200") and "cache-control: no-cache" in head


def test_bad_requests_get_a_status_and_a_close(srv, tcp):
    big = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Junk: " + b"a" * (HEAD_MAX + 10) + b"\r\n\r\n"
    assert status_of(raw_http(srv.address, big)) == 431
    # no end of head in sight, but already too long
    assert status_of(raw_http(srv.address, b"GET /" + b"a" * (2 * HEAD_MAX))) == 431
    assert status_of(raw_http(srv.address, b"GARBAGE\r\n\r\n")) == 400
    assert status_of(raw_http(srv.address, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")) == 505
    assert status_of(raw_http(srv.address, b"GET /\r\n\r\n")) == 400
    assert status_of(raw_http(srv.address, b"GET / HTTP/1.1\r\n\r\n")) == 400          # no Host
    assert status_of(raw_http(srv.address, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")) == 400
    assert status_of(raw_http(srv.address, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5"
                                           b"\r\n\r\nhello")) == 400
    # pipelined: both answered in order, then the close asked for
    two = raw_http(srv.address, b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"HEAD /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2 and two.index(b"javascript") < two.index(b"text/css")
    # and the chat goes on
    a, b = tcp("alice"), tcp("bob")
    a.send(p.Say(text="after the junk"))
    assert b.expect("message").text == "after the junk"


def test_a_slow_request_head_times_out_with_408(web_server):
    srv = web_server(handshake_timeout=1.0)
    with socket.create_connection(srv.address, timeout=WAIT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slo")       # and nothing more
        t0 = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert status_of(data) == 408 and b"Connection: close" in data
        assert time.monotonic() - t0 < 1.0 + 2.0
    # a client that says nothing at all is not known to speak HTTP: it gets the usual bye
    c = RawClient(srv.address)
    assert c.expect("bye", timeout=5).reason == p.TIMEOUT
    assert c.wait_closed()
    c.close()


def test_json_lines_clients_are_unaffected_on_the_same_port(srv, tcp):
    c = tcp()
    c.send(b"  \r\n{\"type\":\"hello\",\"version\":1,\"name\":\"nc\"}\r\n")
    assert c.expect("welcome").name == "nc"
    d = tcp()
    d.send(b"not json\n")                                  # lower case: still JSON Lines
    assert d.expect("error").code == p.BAD_JSON


# --- WebSocket --------------------------------------------------------------------------
def test_hello_welcome_and_chat_with_a_tcp_client_both_ways_in_order(srv, ws, tcp):
    w = ws("webby")
    assert w.welcome.name == "webby" and w.welcome.limits["max_line"] == 16384
    t = tcp("terminal")
    assert w.expect("join").name == "terminal"
    for i in range(10):
        w.send(p.Say(text=f"from web {i}", label=f"w{i}"))
        t.send(p.Say(text=f"from tcp {i}", label=f"t{i}"))
    for c, me, other in ((w, "webby", "terminal"), (t, "terminal", "webby")):
        msgs = [c.expect("message") for _ in range(20)]
        mine = [m.text for m in msgs if m.sender == me]
        theirs = [m.text for m in msgs if m.sender == other]
        prefix = "from web" if me == "webby" else "from tcp"
        assert mine == [f"{prefix} {i}" for i in range(10)]
        other_prefix = "from tcp" if me == "webby" else "from web"
        assert theirs == [f"{other_prefix} {i}" for i in range(10)]
        ids = [m.id for m in msgs]
        assert ids == sorted(ids)
    assert [w.answer(f"w{i}").type for i in range(10)] == ["ack"] * 10
    assert [t.answer(f"t{i}").type for i in range(10)] == ["ack"] * 10
    # the same frames: a bad one gets the usual error, and the connection stays
    w.send("this is not JSON")
    assert w.expect("error").code == p.BAD_JSON
    w.send(json.dumps({"type": "say", "text": "", "label": "e"}))
    assert w.answer("e").code == p.EMPTY_TEXT
    w.send(p.Bye())
    t.expect("leave", name="webby")
    assert w.close_code() == 1000


def test_fragmented_text_messages_and_websocket_pings(srv, ws, tcp):
    w = ws("frag")
    t = tcp("t")
    w.ws.send(iter(['{"type":"say",', '"text":"in three ', 'parts","label":"f"}']))
    assert t.expect("message").text == "in three parts"
    assert w.answer("f").type == "ack"
    pong = w.ws.ping(b"are you there")
    assert pong.wait(WAIT)                              # answered by the server


def test_rate_limit_and_flood_kick_apply_to_websocket_clients(web_server, ws, tcp):
    srv = web_server(rate=5, burst=10, flood_kick=20)
    bystander = tcp("bystander", server=srv)
    flooder = ws("flooder", server=srv)
    for i in range(200):
        try:
            flooder.send(p.Say(text=f"spam {i}"))
        except ConnectionClosed:
            break
    assert flooder.expect("error").code == p.RATE_LIMITED
    assert bystander.expect("leave", name="flooder", timeout=5).reason == p.FLOOD
    assert flooder.expect("bye").reason == p.FLOOD
    assert flooder.close_code() == 1008                  # policy violation
    spam = [f for f in bystander.frames(0.2) if f.type == "message"]
    assert len(spam) <= 10 + 1


def test_a_websocket_client_that_never_reads_is_dropped_and_others_keep_going(web_server, tcp,
                                                                               ws):
    srv = web_server(outbox=64 * 1024, rate=100_000, burst=100_000)
    stalled = hand_ws(srv.address, rcvbuf=4096)   # never read after the upgrade
    stalled.sendall(client_frame(1, json.dumps({"type": "hello", "version": 1,
                                                "name": "stalled"}).encode()))
    talker = tcp("talker", server=srv)
    watcher = ws("watcher", server=srv)
    talker.expect("join", name="watcher")
    text = "x" * 1000
    leave = None
    for batch in range(100):
        talker.send(b"".join(p.encode(p.Say(text=f"{batch}.{i} {text}")) for i in range(100)))
        for i in range(100):
            assert talker.expect("message").text.startswith(f"{batch}.{i} ")
            assert watcher.expect("message").text.startswith(f"{batch}.{i} ")
        leaves = [f for f in talker.frames(0) if f.type == "leave"]
        if leaves:
            leave = leaves[0]
            break
    if leave is None:
        leave = talker.expect("leave", timeout=5)
    assert leave.name == "stalled" and leave.reason == p.SENDQ
    # the stalled client, when it finally reads (within the server's 5 s of grace),
    # finds whole frames, the reason, a close frame
    frames = read_server_frames(stalled, timeout=10)
    stalled.close()
    watcher.send(p.Say(text="still here", label="s"))
    assert talker.expect("message").text == "still here"
    assert watcher.answer("s").type == "ack"
    texts = [json.loads(d) for op, d in frames if op == 1]
    assert texts[-1]["type"] == "bye" and texts[-1]["reason"] == p.SENDQ
    assert frames[-1][0] == 8 and struct.unpack("!H", frames[-1][1][:2])[0] == 1008


def test_websocket_handshake_timeout(web_server):
    srv = web_server(handshake_timeout=1.0)
    host, port = srv.address
    c = WsClient(f"ws://{host}:{port}/ws")                # opens, never says hello
    assert c.expect("bye", timeout=5).reason == p.TIMEOUT
    assert c.close_code() == 1000
    with socket.create_connection(srv.address, timeout=WAIT) as s:   # upgrade half sent
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        data = s.recv(4096)
        assert status_of(data) == 408
        assert s.recv(4096) == b""


def test_oversized_binary_and_broken_frames_are_closed_with_a_code(web_server, ws, tcp):
    srv = web_server(max_line=1000)
    bystander = tcp("bystander", server=srv)
    big = ws("big", server=srv)
    big.send(json.dumps({"type": "say", "text": "x" * 2000}))
    assert big.close_code() == 1009                       # message too big
    binary = ws("binary", server=srv)
    binary.send(b'{"type":"say","text":"as bytes"}')
    assert binary.close_code() == 1003                    # unsupported data
    for bad in (bytes([0x83, 0x80]) + b"\0\0\0\0",               # reserved opcode 3
                b"\x81\x0f" + b'{"type":"ping"}',                  # not masked
                client_frame(9, b"p" * 200)):                       # a control frame > 125
        s = hand_ws(srv.address)
        s.sendall(bad)
        frames = read_server_frames(s)
        s.close()
        assert frames and frames[-1][0] == 8, bad
        assert struct.unpack("!H", frames[-1][1][:2])[0] == 1002    # protocol error
    s = hand_ws(srv.address)
    s.sendall(client_frame(1, b"\xff\xfe not utf-8"))     # invalid UTF-8: the usual error
    s.sendall(client_frame(8, struct.pack("!H", 1000)))   # then a clean close
    frames = read_server_frames(s)
    s.close()
    assert json.loads(frames[0][1])["code"] == p.BAD_UTF8
    assert frames[-1][0] == 8
    # an abrupt disconnect in the middle of a frame
    s = hand_ws(srv.address)
    s.sendall(client_frame(1, b'{"type":"hello","version":1,"name":"cut"}')[:20])
    s.close()
    still = ws("still", server=srv)
    still.send(p.Say(text="fine", label="ok"))
    assert bystander.expect("message").text == "fine"


def test_origin_check(web_server, site_dir):
    srv = web_server(site=WebSite(str(site_dir), origins=("https://chat.example.org",)))
    host, port = srv.address
    url = f"ws://{host}:{port}/ws"
    for bad in ("http://evil.example", f"http://{host}:{port + 1}", "null",
                f"http://{host}.evil.example:{port}"):
        with pytest.raises(InvalidStatus) as e:
            with ws_connect(url, origin=bad, open_timeout=WAIT):
                pass
        assert e.value.response.status_code == 403, bad
    for origin in (f"http://{host}:{port}", "https://chat.example.org",
                   "https://CHAT.example.org:443", None):
        with ws_connect(url, origin=origin, open_timeout=WAIT) as c:
            c.send(json.dumps({"type": "ping"}))
            assert json.loads(c.recv(timeout=WAIT))["type"] == "pong"


def test_websocket_upgrade_errors(srv):
    r = raw_http(srv.address, b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(r) == 426                            # a browser that typed the URL
    r = raw_http(srv.address, b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert status_of(r) == 405
    r = raw_http(srv.address, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert status_of(r) == 400                            # no key


def test_wss_on_the_tls_port(web_server, tmp_path):
    tlsutil = pytest.importorskip("tlsutil")
    ca = tlsutil.TestCA(tmp_path / "ca")
    from parley.server.transports.tls import server_context
    srv = web_server(tls=server_context(*ca.issue()))
    host, port = srv.tls_address
    c = WsClient(f"wss://localhost:{port}/ws", ssl=ca.client_context())
    c.welcome = c.hello("secure")
    t = RawClient(srv.address)
    t.welcome = t.hello("plain")
    c.send(p.Say(text="over wss", label="1"))
    assert t.expect("message").text == "over wss"
    t.send(p.Say(text="over tcp"))
    assert c.expect("message", text="over tcp").sender == "plain"
    assert c.answer("1").type == "ack"
    c.send(p.Bye())
    assert c.close_code() == 1000
    t.close()
    # and HTTPS static files on the same port
    conn = http.client.HTTPSConnection("localhost", port, timeout=WAIT,
                                       context=ca.client_context())
    conn.request("GET", "/app.js")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b"export const x = 1;\n"
    assert "wss://localhost:%d" % port in r.getheader("Content-Security-Policy")
    conn.close()


def test_web_off_gives_a_404_page_saying_why(web_server, tcp):
    srv = web_server(site=WebSite.off("it was started with --no-web"))
    r = raw_http(srv.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(r) == 404 and b"--no-web" in r and b"Connection: close" in r
    c = tcp("still", server=srv)
    assert c.welcome.name == "still"


def test_without_websockets_the_server_runs_and_says_how_to_enable_it(tmp_path):
    code = ("import sys; sys.modules['websockets'] = None; "
            f"sys.path.insert(0, {str(ROOT / 'src')!r}); "
            "from parley.server.app import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "--host", "127.0.0.1", "--port", "0",
                             "--db", ":memory:", "--log-level", "warning"],
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        port = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "listening on" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
            if "web client" in line:
                break
        assert port is not None, lines
        hints = [ln for ln in lines if "web client" in ln]
        assert len(hints) == 1 and "pip install websockets" in hints[0], lines
        c = RawClient(("127.0.0.1", port))
        assert c.hello("old").name == "old"
        c.send(p.Say(text="hi", label="1"))
        assert c.answer("1").type == "ack"
        c.close()
        r = raw_http(("127.0.0.1", port), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(r) == 404 and b"pip install websockets" in r
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_packaged_web_client(web_server):
    """The package's web root is the web client: its page (with how to use the other
    clients when JavaScript is off), its module, its manifest and service worker."""
    srv = web_server(site=WebSite())
    status, h, body = http_get(srv.address, "/")
    assert status == 200 and b"python_client.py" in body
    assert b'<script type="module" src="app.js"></script>' in body and b"onclick" not in body
    for path, ctype in (("/app.js", "text/javascript; charset=utf-8"), ("/sw.js", "text/javascript; charset=utf-8"),
                        ("/manifest.webmanifest", "application/manifest+json"), ("/icon-192.png", "image/png")):
        status, h, _ = http_get(srv.address, path)
        assert status == 200 and h["content-type"] == ctype, (path, status, h)


def test_web_under_the_windows_rules(site_dir):
    """HTTP and WebSocket with a selector that takes sockets only (as on Windows)."""
    from test_windows_rules import SocketsOnlySelector
    srv = Server("127.0.0.1", 0, Limits(), io_threads=1, db=":memory:",
                 selector_factory=SocketsOnlySelector, web=WebSite(str(site_dir))).start()
    try:
        status, _, body = http_get(srv.address, "/app.js")
        assert status == 200 and body == b"export const x = 1;\n"
        host, port = srv.address
        c = WsClient(f"ws://{host}:{port}/ws")
        assert c.hello("win").name == "win"
        c.send(p.Say(text="ok", label="1"))
        assert c.answer("1").type == "ack"
        c.close()
    finally:
        srv.stop(grace=0.5)


def read_all(s: socket.socket, timeout: float = 15.0) -> tuple[int, bool]:
    """(bytes read, closed by the server) within ``timeout``."""
    s.settimeout(1.0)
    total, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError:
            return total, True
        if not chunk:
            return total, True
        total += len(chunk)
    return total, False


def test_pings_and_pipelined_requests_that_are_never_read_are_bounded(srv, tcp):
    """Answers the transport makes itself (pongs, HTTP responses) cannot pile up:
    past OUT_MAX the client is disconnected."""
    from parley.server.transports.web import OUT_MAX
    s = hand_ws(srv.address, rcvbuf=4096)
    s.settimeout(30.0)                          # (a busy machine reads slowly)
    ping = client_frame(9, b"p" * 125) * 1000
    try:
        for _ in range(4 * OUT_MAX // len(ping)):
            s.sendall(ping)
    except OSError:
        pass                                    # the server stopped reading or closed
    total, closed = read_all(s)
    s.close()
    assert closed and total < 2 * OUT_MAX
    with socket.socket() as h:
        h.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        h.settimeout(30.0)
        h.connect(srv.address)
        req = b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
        try:
            for _ in range(200):
                h.sendall(req)
        except OSError:
            pass
        total, closed = read_all(h)
    assert closed and total < 2 * OUT_MAX
    c = tcp("fine")                             # the server is well
    assert c.welcome.name == "fine"


def test_an_http_request_after_the_servers_goodbye(web_server):
    """First bytes that arrive while the server is already closing the connection
    (a silent client timed out) are read and dropped; the I/O thread carries on."""
    srv = web_server(handshake_timeout=0.5, io_threads=1)
    c = RawClient(srv.address)
    assert c.expect("bye", timeout=5).reason == p.TIMEOUT
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    assert srv.workers[0].is_alive()
    c.close()
    status, _, _ = http_get(srv.address, "/app.js")
    assert status == 200
