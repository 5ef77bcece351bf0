"""Transports: bytes on one client socket <-> protocol frames.

A transport knows framing and socket calls, nothing about chat.  The I/O
thread (connection.py) uses only this interface, so TLS and WebSocket can be
added as more transports without touching the session state machine or the hub.

    t.recv() -> bytes            raw bytes read (b"" at end of stream); may raise
                                 BlockingIOError / InterruptedError / OSError
    t.decode(data) -> [Event | ProtocolError]
    t.wrap(lines) -> bytes       encoded JSON lines (one or more, as the hub
                                 appends them) in this transport's wire form
    t.send(view) -> int          bytes of a wrapped buffer the kernel took
    t.shutdown_write()           half-close after a goodbye
    t.close()
    t.fileno() / t.sock          for the selector (always a socket: Windows' select)
    t.want_write                 bytes of the transport's own (a TLS handshake) wait
                                 for the socket to become writable
    t.secure                     True over TLS

    t.rest_of_frame(view)        the bytes finishing the frame in progress in a wrapped
                                 buffer (so a goodbye can follow it)
    t.ended                      None, or (reason, why) once the transport itself ended
                                 the conversation (HTTP done, WebSocket closed)

Two transports: ``JsonLinesTransport`` (tcp.py, plain TCP) and ``TlsTransport``
(tls.py, the same lines inside TLS, on the server's ``--tls-port``).  Given a
``WebSite``, either hands a connection whose first bytes are an HTTP request
over to ``WebTransport`` (web.py: static files, WebSocket at ``/ws``), which
keeps it as its byte stream.
"""
from .tcp import JsonLinesTransport, Transport
from .tls import TlsTransport
from .web import SwitchProtocol, WebSite, WebTransport

__all__ = ["JsonLinesTransport", "SwitchProtocol", "TlsTransport", "Transport", "WebSite",
           "WebTransport"]
