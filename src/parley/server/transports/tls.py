"""JSON Lines over TLS, non-blocking, inside the I/O thread that owns the connection.

The TLS engine is an ``ssl.SSLObject`` over two ``ssl.MemoryBIO`` buffers: it
never touches the socket itself.  This transport moves the bytes:

    socket --recv--> incoming BIO --SSLObject.read--> plaintext --> JSON Lines decoder
    hub lines --SSLObject.write--> outgoing BIO --> ``backlog`` --send--> socket

so every case the TLS layer can ask for is explicit here:

* the handshake is driven by ``recv`` (each time the socket is readable) until
  it completes; bytes it wants to send go out at once, and what the kernel does
  not take waits in ``backlog`` (``want_write`` tells the I/O thread to wait
  for EVENT_WRITE: a handshake that "wants write").  The session's handshake
  timeout (counted from connect) drops a client whose handshake never finishes.
* a read that "wants write" (a key update, an alert) only fills the outgoing
  BIO: it is flushed like any other output, never blocks.
* a write that "wants read" cannot happen after the handshake (renegotiation is
  off); before it, there is nothing to write but a goodbye, which is dropped.
* data pending inside the SSL layer: ``recv`` reads plaintext until the engine
  wants more bytes, so nothing is left decrypted but unread while the socket
  stays quiet.
* a clean close sends close_notify (``unwrap``) without waiting for the peer's.

Plaintext sent to every recipient is still one shared ``bytes``; each
connection encrypts it for itself in ``send``.  One connection's SSL object is
only ever used by the I/O thread that owns the connection.
"""
from __future__ import annotations

import logging
import socket
import ssl
from typing import Optional, Union

from ... import protocol as p
from .tcp import RECV_SIZE, rest_of_line
from .web import SwitchProtocol, WebTransport, sniff_http

log = logging.getLogger("parley.server")

WRITE_CHUNK = 256 * 1024     # plaintext encrypted per send(), so the backlog stays bounded

# what a plain (JSON Lines) client on the TLS port is told, in clear text, before the close
TLS_REQUIRED_LINE = p.encode(p.Error(p.TLS_REQUIRED,
                                     "this port speaks TLS: connect with TLS (parley --tls)"))


class TlsTransport:
    """One JSON object per line, inside TLS, over a non-blocking socket."""

    secure = True
    ended = None

    def __init__(self, sock: socket.socket, peer: str, max_line: int, context: ssl.SSLContext,
                 web=None):
        self.sock = sock
        self.peer = peer
        self.max_line = max_line
        self.web = web                # a WebSite: an HTTPS request hands over to WebTransport
        self._first_plain = web is not None
        self.decoder = p.FrameDecoder(p.CLIENT_FRAMES, max_line)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self._in, self._out, server_side=True)
        self.handshaken = False
        self.backlog = b""            # ciphertext the kernel did not take yet
        self._first = True            # nothing received yet
        self._closing = False         # close_notify sent: only look for the end of stream
        self.peer_closed = False      # the client's close_notify arrived
    @property
    def handshaking(self) -> bool:
        return not self.handshaken

    @property
    def want_write(self) -> bool:
        """Bytes of the TLS layer's own wait for the socket to become writable."""
        return bool(self.backlog)

    def fileno(self) -> int:
        return self.sock.fileno()

    # --- reading ------------------------------------------------------------------
    def recv(self) -> bytes:
        """Plaintext received (b"" at the end of the stream).  BlockingIOError when
        the bytes read only moved the handshake on, or held no complete record."""
        data = self.sock.recv(RECV_SIZE)
        if not data:
            if self.handshaken and not self.peer_closed:
                log.debug("%s closed without close_notify", self.peer)
            return b""
        if self._closing:       # after our close_notify: only the end of stream matters
            self._in.write(data)
            if not self.peer_closed:
                try:
                    self.ssl.unwrap()        # done once the client's close_notify is in
                    self.peer_closed = True
                except ssl.SSLError:         # not yet (want read), or not a clean close
                    pass
            return data
        if self._first:
            self._first = False
            if data[:1] != b"\x16":          # not a TLS handshake record
                self._refuse_plain(data)
        self._in.write(data)
        if not self.handshaken:
            try:
                self.ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                raise BlockingIOError("TLS handshake in progress") from None
            except ssl.SSLError as e:
                self._flush()                # the alert, if the engine made one
                log.info("%s TLS handshake failed: %s", self.peer, e.reason or e)
                raise
            self.handshaken = True
            log.debug("%s TLS %s %s", self.peer, self.ssl.version(),
                      (self.ssl.cipher() or ("?",))[0])
        out = []
        size = 0
        try:
            # read everything the engine can decrypt now: nothing may stay pending
            # inside it while the socket is quiet (it would never be read)
            while True:
                chunk = self.ssl.read(RECV_SIZE)
                if not chunk:
                    break
                out.append(chunk)
                size += len(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:       # the client's close_notify
            self.peer_closed = True
            if not out:
                self._flush()
                return b""
        finally:
            self._flush()                    # a read may produce output (key update, alert)
        if not out:
            raise BlockingIOError("no complete TLS record yet")
        data = b"".join(out)
        if self._first_plain:
            self._first_plain = False
            if sniff_http(data):
                raise SwitchProtocol(WebTransport(self, self.web, self.max_line), data)
        return data

    def _refuse_plain(self, data: bytes) -> None:
        """A client that does not start with a TLS handshake: tell a JSON Lines
        client in its own language, then close."""
        if data[:1] in (b"{", b" ", b"\r", b"\n"):
            try:
                self.sock.send(TLS_REQUIRED_LINE)
            except OSError:
                pass
            log.info("%s refused: plain text on the TLS port", self.peer)
        else:
            log.info("%s refused: not a TLS handshake (first byte 0x%02x)", self.peer, data[0])
        raise ConnectionRefusedError("not TLS")

    def decode(self, data: bytes) -> list[Union[p.Event, p.ProtocolError]]:
        return self.decoder.feed(data)

    def end_of_stream(self) -> list[p.ProtocolError]:
        return self.decoder.close()

    # --- writing ------------------------------------------------------------------
    def wrap(self, lines: bytes) -> bytes:
        return lines                         # encrypted per connection, in send()

    def send(self, data: memoryview) -> int:
        """Plaintext bytes of ``data`` taken (encrypted; maybe still in ``backlog``)."""
        if self.backlog:
            self._send_backlog()
            if self.backlog:
                return 0
        if not self.handshaken:
            # nothing is sent before the handshake but a goodbye (handshake timeout,
            # shutdown): a client that has not finished its handshake cannot read it
            return len(data)
        n = min(len(data), WRITE_CHUNK)
        if n:
            self.ssl.write(data[:n])
            self._flush()
        return n

    def rest_of_frame(self, data: memoryview) -> bytes:
        return rest_of_line(data)

    def _flush(self) -> None:
        """Move what the engine produced to the socket; keep what the kernel refuses."""
        pending = self._out.pending
        if pending:
            produced = self._out.read()
            self.backlog = self.backlog + produced if self.backlog else produced
        if self.backlog:
            self._send_backlog()

    def _send_backlog(self) -> None:
        try:
            n = self.sock.send(self.backlog)
        except (BlockingIOError, InterruptedError):
            return
        self.backlog = self.backlog[n:]

    # --- closing ------------------------------------------------------------------
    def shutdown_write(self) -> None:
        """close_notify, then half-close; never waits for the client's close_notify."""
        if not self.handshaken:
            raise ConnectionAbortedError("no TLS session to close")
        if not self._closing:
            self._closing = True
            try:
                self.ssl.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass                        # close_notify is in the outgoing BIO
            self._flush()
        if not self.backlog:                # (else: a client that does not read; dropped later)
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for ``cert``/``key`` (PEM files); ssl.SSLError / OSError if unusable."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.load_cert_chain(cert, key)
    return ctx

