"""Plain TCP with JSON Lines: the frame is the line, so wrapping is the identity
and one shared ``bytes`` of encoded lines goes to every recipient as it is."""
from __future__ import annotations

import logging
import socket
from typing import Optional, Protocol, Union

from ... import protocol as p
from .web import SwitchProtocol, WebTransport, sniff_http

RECV_SIZE = 65536     # at most this much per read, so a flooder cannot hog a thread

log = logging.getLogger("parley.server")


class Transport(Protocol):
    sock: socket.socket
    peer: str
    secure: bool            # TLS
    want_write: bool        # bytes of its own wait for EVENT_WRITE (a TLS handshake)
    handshaking: bool       # a TLS handshake in progress (costly steps: rationed per turn)
    ended: Optional[tuple[str, str]]  # (reason, why): the transport ended the conversation

    def fileno(self) -> int: ...
    def recv(self) -> bytes: ...
    def decode(self, data: bytes) -> list[Union[p.Event, p.ProtocolError]]: ...
    def end_of_stream(self) -> list[p.ProtocolError]: ...
    def wrap(self, lines: bytes) -> bytes: ...
    def send(self, data: memoryview) -> int: ...
    def rest_of_frame(self, data: memoryview) -> bytes: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class JsonLinesTransport:
    """One JSON object per ``\\n``-terminated line, over a non-blocking socket."""

    secure = False
    want_write = False          # no bytes of its own to send (TLS has: its handshake)
    handshaking = False         # (TLS: until its handshake is done)
    ended = None                # (the web transport ends a conversation by itself)

    def __init__(self, sock: socket.socket, peer: str, max_line: int, web=None):
        self.sock = sock
        self.peer = peer
        self.max_line = max_line
        self.decoder = p.FrameDecoder(p.CLIENT_FRAMES, max_line)
        self._first = True
        self.web = web              # a WebSite: an HTTP request hands over to WebTransport

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> bytes:
        data = self.sock.recv(RECV_SIZE)
        if self._first and data:
            self._first = False
            if data[0] == 0x16 and data[1:2] in (b"", b"\x03"):
                # a TLS ClientHello: answering in JSON would only garble its handshake
                log.info("%s refused: a TLS client on the plain port", self.peer)
                raise ConnectionRefusedError("TLS on the plain port")
            if self.web is not None and sniff_http(data):
                raise SwitchProtocol(WebTransport(self, self.web, self.max_line, self.sock.send),
                                     data)
        return data

    def decode(self, data: bytes) -> list[Union[p.Event, p.ProtocolError]]:
        return self.decoder.feed(data)

    def end_of_stream(self) -> list[p.ProtocolError]:
        return self.decoder.close()

    def wrap(self, lines: bytes) -> bytes:
        return lines

    def send(self, data: memoryview) -> int:
        return self.sock.send(data)

    def rest_of_frame(self, data: memoryview) -> bytes:
        return rest_of_line(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def rest_of_line(data: memoryview) -> bytes:
    """The bytes that finish the line in progress at the start of ``data``."""
    rest = bytes(data)
    nl = rest.find(b"\n")
    return rest[:nl + 1] if nl >= 0 else b""
