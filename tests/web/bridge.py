"""A test-only stand-in for the server's own web transport: serves the static
files of src/parley/web/ over HTTP and bridges each WebSocket at /ws to a TCP
connection to a real Parley server (text message -> one line; one line -> one
text message), so the web client can be tested before the server speaks
WebSocket itself.  It sends the Content-Security-Policy the server will send,
so a CSP violation shows up as a console error in the tests.
"""
from __future__ import annotations

import mimetypes
import socket
import threading
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.server import serve

WEB = Path(__file__).resolve().parents[2] / "src" / "parley" / "web"
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".webmanifest": "application/manifest+json"}


def static_response(path: str) -> Response:
    path = path.split("?", 1)[0]
    if path.endswith("/"):
        path += "index.html"
    target = (WEB / path.lstrip("/")).resolve()
    if WEB not in target.parents or not target.is_file():
        return Response(404, "Not Found", Headers([("Content-Type", "text/plain"),
                                                   ("Content-Length", "9")]), b"not found")
    body = target.read_bytes()
    ctype = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))),
                       ("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                       ("Cache-Control", "no-cache"), ("Connection", "close")])
    if target.name == "sw.js":
        headers["Service-Worker-Allowed"] = "/"
    return Response(200, "OK", headers, body)


class Bridge:
    """``Bridge(target).start()``; ``url`` is the page; ``drop()`` cuts every
    bridged connection."""

    def __init__(self, target):
        self.target = target
        self.links: list[tuple[object, socket.socket]] = []
        self.lock = threading.Lock()
        self.server = serve(self._handle, "127.0.0.1", 0, process_request=self._route,
                            max_size=1 << 20, compression=None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.socket.getsockname()[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "Bridge":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.drop()
        self.server.shutdown()
        self.thread.join(5)

    def drop(self) -> None:
        with self.lock:
            links, self.links = self.links, []
        for ws, sock in links:
            for close in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close, ws.close):
                try:
                    close()
                except OSError:
                    pass

    def _route(self, connection, request):
        if request.path.split("?", 1)[0] != "/ws":
            return static_response(request.path)
        return None

    def _handle(self, ws) -> None:
        try:
            sock = socket.create_connection(self.target, timeout=5)
        except OSError:
            ws.close()
            return
        sock.settimeout(None)
        with self.lock:
            self.links.append((ws, sock))

        def down():                        # server -> browser
            try:
                with sock.makefile("rb") as lines:
                    for line in lines:
                        text = line.decode("utf-8").rstrip("\r\n")
                        if text:
                            ws.send(text)
            except Exception:              # either side went away
                pass
            finally:
                ws.close()

        threading.Thread(target=down, daemon=True).start()
        try:
            for message in ws:              # browser -> server
                if isinstance(message, str):
                    sock.sendall(message.encode("utf-8") + b"\n")
        except Exception:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass
