"""The web transport without sockets: framing, cut frames, request heads, paths,
origins, and our own bytes (pongs, close frames) never landing inside a frame."""
from __future__ import annotations

import json
import os
import struct

import pytest

from parley import protocol as p
from parley.server.transports import web
from parley.server.transports.web import (BadRequest, WebSite, WebTransport, frame_lines,
                                          frame_lines_shared, frame_rest, parse_head,
                                          same_origin, url_path)


def parse_frames(data: bytes):
    out, pos = [], 0
    while pos < len(data):
        op, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n, pos = struct.unpack("!H", data[pos:pos + 2])[0], pos + 2
        elif n == 127:
            n, pos = struct.unpack("!Q", data[pos:pos + 8])[0], pos + 8
        assert pos + n <= len(data), "cut frame"
        out.append((op, data[pos:pos + n]))
        pos += n
    return out


LINES = b"".join(p.encode_dict({"type": "message", "text": "x" * n}) for n in
                 (0, 90, 120, 200, 70000))


def test_one_text_frame_per_line_with_every_length_encoding():
    frames = parse_frames(frame_lines(LINES))
    assert [op for op, _ in frames] == [1] * 5
    assert [json.loads(d) for _, d in frames] == [json.loads(ln) for ln in LINES.splitlines()]


def test_shared_framing_is_done_once_per_bytes_object():
    a = frame_lines_shared(LINES)
    assert frame_lines_shared(LINES) is a
    other = bytes(bytearray(LINES))                  # equal, but another object
    assert frame_lines_shared(other) == a


@pytest.mark.parametrize("sent", [0, 1, 2, 3, 5, 90, 97, 200, 300, 400, 500, 70000])
def test_frame_rest_finishes_exactly_the_frame_in_progress(sent):
    framed = frame_lines(LINES)
    view = memoryview(framed)[sent:]
    rest = frame_rest(view)
    parse_frames(framed[:sent] + rest)               # whole frames, nothing cut


class FakeInner:
    """A byte stream that takes at most ``room`` bytes per send."""
    secure = False
    handshaking = False
    want_write = False
    peer = "test:1"
    sock = None

    def __init__(self, room=10**9):
        self.room = room
        self.wire = b""
        self.shut = False

    def send(self, view):
        n = min(len(view), self.room)
        self.wire += bytes(view[:n])
        return n

    def shutdown_write(self):
        self.shut = True


KEY_HEAD = (b"GET /ws HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def client_frame(opcode, payload):
    mask = os.urandom(4)
    assert len(payload) < 126
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def upgraded(room=10**9):
    pytest.importorskip("websockets")
    inner = FakeInner()
    t = WebTransport(inner, WebSite(), 16384)
    assert t.decode(KEY_HEAD) == []
    t.send(memoryview(b""))                          # the 101 response
    assert inner.wire.startswith(b"HTTP/1.1 101") and not t.want_write
    inner.wire = b""
    inner.room = room
    return t, inner


def test_a_pong_waits_for_the_end_of_the_frame_in_progress():
    t, inner = upgraded(room=7)
    data = memoryview(t.wrap(LINES))
    n = t.send(data)                                 # 7 bytes of the first frame
    data = data[n:]
    events = t.decode(client_frame(9, b"ping!") + client_frame(1, b'{"type":"ping"}'))
    assert [e.type for e in events] == ["ping"]
    assert t.want_write
    inner.room = 50
    while data:
        n = t.send(data)
        data = data[n:]
    inner.room = 10**9
    t.send(memoryview(b""))
    frames = parse_frames(inner.wire)
    assert [op for op, _ in frames] == [1] * 5 + [10]     # five texts, then the pong
    assert frames[-1][1] == b"ping!"


def test_close_frame_after_the_goodbye_and_nothing_after_it():
    t, inner = upgraded()
    bye = t.wrap(p.encode(p.Bye(reason=p.FLOOD, message="kicked")))
    t.send(memoryview(bye))
    t.shutdown_write()
    assert inner.shut
    frames = parse_frames(inner.wire)
    assert frames[0][0] == 1 and json.loads(frames[0][1])["reason"] == "flood"
    assert frames[1][0] == 8 and struct.unpack("!H", frames[1][1][:2])[0] == 1008
    assert t.wrap(p.encode(p.Ping())) == b""


@pytest.mark.parametrize("code,reason", [
    (1000, p.QUIT),      # a normal close: the user left
    (1001, p.LOST),      # going away: a reload or a closed tab (held, may come right back)
])
def test_a_client_close_ends_the_conversation(code, reason):
    t, inner = upgraded()
    assert t.decode(client_frame(8, struct.pack("!H", code))) == []
    assert t.ended is not None and t.ended[0] == reason
    t.send(memoryview(b""))
    assert parse_frames(inner.wire)[-1][0] == 8


@pytest.mark.parametrize("head,status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),                     # no Host
    (b"GET / HTTP/3\r\nHost: x\r\n\r\n", 505),
    (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400),
])
def test_bad_heads(head, status):
    with pytest.raises(BadRequest) as e:
        parse_head(head)
    assert e.value.status == status


def test_a_good_head():
    r = parse_head(b"GET /a?b HTTP/1.1\r\nHost: x:1\r\nAccept: a\r\naccept: b\r\n\r\n")
    assert (r.method, r.target, r.headers["host"], r.headers["accept"]) == (
        "GET", "/a?b", "x:1", "a, b")


def test_url_paths():
    assert url_path("/a%20b?x=/../y") == "/a b"
    assert url_path("http://h:1/x/y") == "/x/y"
    assert url_path("*") is None and url_path("x") is None
    assert url_path("/%ff") is None and url_path("/a%00") is None


def test_same_origin():
    assert same_origin("http://h:8888", "h:8888")
    assert same_origin("http://H", "h:80") and same_origin("https://h", "h:443")
    assert not same_origin("http://h:8889", "h:8888")
    assert not same_origin("http://h.evil:8888", "h:8888")
    assert not same_origin("null", "h:8888") and not same_origin("file://", "")
    assert web.normal_origin("HTTPS://Chat.Example.org:443/") == "https://chat.example.org"
