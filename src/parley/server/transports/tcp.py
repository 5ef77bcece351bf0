"""Plain TCP with JSON Lines: the frame is the line, so wrapping is the identity
and one shared ``bytes`` of encoded lines goes to every recipient as it is."""
from __future__ import annotations

import logging
import socket
from typing import Protocol, Union

from ... import protocol as p

RECV_SIZE = 65536     # at most this much per read, so a flooder cannot hog a thread

log = logging.getLogger("parley.server")


class Transport(Protocol):
    sock: socket.socket
    peer: str
    secure: bool            # TLS
    want_write: bool        # bytes of its own wait for EVENT_WRITE (a TLS handshake)
    handshaking: bool       # a TLS handshake in progress (costly steps: rationed per turn)

    def fileno(self) -> int: ...
    def recv(self) -> bytes: ...
    def decode(self, data: bytes) -> list[Union[p.Event, p.ProtocolError]]: ...
    def end_of_stream(self) -> list[p.ProtocolError]: ...
    def wrap(self, lines: bytes) -> bytes: ...
    def send(self, data: memoryview) -> int: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class JsonLinesTransport:
    """One JSON object per ``\\n``-terminated line, over a non-blocking socket."""

    secure = False
    want_write = False          # no bytes of its own to send (TLS has: its handshake)
    handshaking = False         # (TLS: until its handshake is done)

    def __init__(self, sock: socket.socket, peer: str, max_line: int):
        self.sock = sock
        self.peer = peer
        self.decoder = p.FrameDecoder(p.CLIENT_FRAMES, max_line)
        self._first = True

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
        return data

    def decode(self, data: bytes) -> list[Union[p.Event, p.ProtocolError]]:
        return self.decoder.feed(data)

    def end_of_stream(self) -> list[p.ProtocolError]:
        return self.decoder.close()

    def wrap(self, lines: bytes) -> bytes:
        return lines

    def send(self, data: memoryview) -> int:
        return self.sock.send(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()
