"""The server process: store, listener, accept thread, I/O threads, flags, signals.

    python python_server.py [--host 0.0.0.0] [--port 8888] [--data-dir DIR | --db :memory:]
                            [--log-level info] [limits…]
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import errno
import logging
import signal
import socket
import sys
import threading
import os
import selectors
import ssl
import time
from typing import Callable, Optional

from .. import __version__
from .. import protocol as p
from .certs import CertError, default_names, fingerprint, self_signed
from .connection import IOWorker, Limits
from .guard import Guard
from .transports.tls import server_context
from .transports import web as webmod
from .transports.web import WebSite
from .hub import Hub
from .store import Store, StoreError, default_data_dir

log = logging.getLogger("parley.server")

SERVER_FULL = p.encode(p.Error(p.SERVER_FULL, "the server is full, try again later"))
REFUSED_LINGER = 2.0          # seconds a refused connection has to read why and hang up
REFUSED_LINGER_MAX = 1000     # refused connections lingering at once (oldest closed first)

LIMIT_HELP = {
    "max_line": "longest protocol line in bytes; longer lines get a line_too_long error",
    "max_text": "longest chat message in characters (text_too_long)",
    "rate": "messages per second a client may send (token bucket refill rate)",
    "burst": "messages a client may send at once (token bucket size)",
    "flood_kick": "rejected messages (leaking at --rate per second) before a client is "
                  "disconnected for flooding",
    "outbox": "bytes queued for one client before it is disconnected as too slow",
    "ping_interval": "seconds of silence before the server pings a client",
    "ping_timeout": "seconds a client has to answer a ping before it is dropped",
    "handshake_timeout": "seconds a new connection has to send hello",
    "history": "most messages sent in one catch-up to a client that reconnects",
    "join_history": "recent messages of each room shown to a user who joins fresh",
    "max_clients": "most simultaneous connections; more are refused with server_full",
    "hold": "seconds a user whose connection was lost (network drop, reloaded web page) "
            "stays online: back within it, nobody sees a leave and a join (0: leave at once)",
    "presence_limit": "rooms with more members announce joins and leaves as a coalesced "
                      "summary at most once a second instead of one by one",
    "max_per_address": "most simultaneous connections from one IP address "
                       "(too_many_connections)",
    "connect_rate": "new connections per second from one IP address, after a burst of "
                    "--connect-burst (throttled)",
    "connect_burst": "new connections from one IP address at once",
    "kick_cooldown": "seconds an IP address is refused after one of its connections was "
                     "kicked for flooding or protocol errors (0: no wait)",
    "limit_loopback": "apply the per-address limits to loopback clients too (127.0.0.1, ::1 "
                      "are exempt by default: local tools and a reverse proxy)",
}


class Server:
    """A running chat server.  ``start()`` returns once it listens."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8888,
                 limits: Optional[Limits] = None, io_threads: int = 2,
                 db: str = ":memory:",
                 selector_factory: Callable[[], selectors.BaseSelector] = selectors.DefaultSelector,
                 tls: Optional[ssl.SSLContext] = None, tls_port: int = 8889,
                 web: Optional[WebSite] = None, auth: str = p.AUTH_OPTIONAL,
                 allow_plain_passwords: bool = False, open_registration: bool = True):
        self.host, self.port = host, port
        # HTTP (static files) and WebSocket (/ws) on the same ports; None: JSON Lines only
        self.web = web
        # TLS: the same chat on a second port (plain TCP stays for old clients)
        self.tls, self.tls_port = tls, tls_port
        self.tls_listener: Optional[socket.socket] = None
        self._tls_accept_thread: Optional[threading.Thread] = None
        self.limits = limits or Limits()
        self.store = Store(db)
        self.hub = Hub(self.store, history=self.limits.history,
                       join_history=self.limits.join_history,
                       outbox_bytes=2 * self.limits.outbox,   # per room log (trimmed past twice that)
                       limits=self.limits.public(), presence_limit=self.limits.presence_limit,
                       auth=auth, allow_plain_passwords=allow_plain_passwords,
                       open_registration=open_registration, hold=self.limits.hold)
        self.guard = Guard.from_limits(self.limits)
        self.workers = [IOWorker(i, self.hub, self.limits, selector_factory, guard=self.guard,
                                 web=web)
                        for i in range(max(1, io_threads))]
        self.hub.on_append = self._wake_all
        self.hub.on_wake = self._wake_for
        self.listener: Optional[socket.socket] = None
        self._accept_thread: Optional[threading.Thread] = None
        self._stopping = threading.Event()
        self._next = 0
        self._refused = 0                 # connections refused by the per-address limits
        self._refusal_log_at = 0.0

    @property
    def address(self) -> tuple[str, int]:
        assert self.listener is not None
        return self.listener.getsockname()[:2]

    @property
    def tls_address(self) -> tuple[str, int]:
        assert self.tls_listener is not None
        return self.tls_listener.getsockname()[:2]

    def _wake_all(self) -> None:
        for w in self.workers:
            w.wake()

    def _wake_for(self, members: set, logs: list) -> None:
        """After a commit: wake only the I/O threads that have something to send."""
        workers = {m.worker for m in members}
        for lg in logs:
            workers.update(lg.followed_by)
        for w in workers:
            if logs:
                w.logs_grew(logs)
            else:
                w.wake()

    def start(self) -> "Server":
        """Listen (OSError), open the store (StoreError), start the threads."""
        self._bind()
        try:
            if self.tls is not None:
                self.tls_listener = self._listener(self.tls_port)
            self.hub.start()
        except BaseException:
            assert self.listener is not None
            self.listener.close()
            if self.tls_listener is not None:
                self.tls_listener.close()
            raise
        self._listen()
        return self

    def _bind(self) -> None:
        self.listener = self._listener(self.port)

    def _listener(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(1024)
        sock.settimeout(0.2)
        return sock

    def _listen(self) -> None:
        for w in self.workers:
            w.start()
        self._accept_thread = threading.Thread(target=self._accept_loop,
                                               name="parley-accept", daemon=True)
        self._accept_thread.start()
        host, port = self.address
        log.info("Parley %s listening on %s:%d (%d I/O threads)", __version__, host, port,
                 len(self.workers))
        if self.tls_listener is not None:
            self._tls_accept_thread = threading.Thread(
                target=self._accept_loop, args=(self.tls_listener, self.tls),
                name="parley-accept-tls", daemon=True)
            self._tls_accept_thread.start()
            log.info("TLS listening on %s:%d", *self.tls_address)

    def _accept_loop(self, listener: Optional[socket.socket] = None,
                     tls: Optional[ssl.SSLContext] = None) -> None:
        listener = listener or self.listener
        assert listener is not None
        lingering: collections.deque = collections.deque()     # refused: (socket, close by)
        try:
            self._accept_until_stopped(listener, tls, lingering)
        finally:
            for sock, _ in lingering:
                sock.close()

    def _accept_until_stopped(self, listener: socket.socket, tls: Optional[ssl.SSLContext],
                              lingering: collections.deque) -> None:
        while not self._stopping.is_set():
            if lingering:
                self._linger(lingering)
            listener.settimeout(0.05 if lingering else 0.2)
            try:
                sock, addr = listener.accept()
            except socket.timeout:
                continue
            except OSError as e:
                if self._stopping.is_set():
                    break
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("cannot accept: %s (out of file descriptors?)", e)
                    time.sleep(0.1)
                continue
            peer = f"{addr[0]}:{addr[1]}"
            if sum(len(w.conns) for w in self.workers) >= self.limits.max_clients:
                self._refuse(sock, SERVER_FULL, tls, lingering)
                log.warning("%s refused: server full", peer)
                continue
            refusal = self.guard.admit(addr[0], time.monotonic())
            if refusal is not None:
                self._refuse(sock, refusal.frame(), tls, lingering)
                self._refused += 1
                now = time.monotonic()
                if now >= self._refusal_log_at:      # one line per address burst, not per try
                    self._refusal_log_at = now + 5.0
                    log.warning("%s refused: %s (%d refused in all)", peer, refusal.code,
                                self._refused)
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            worker = self.workers[self._next % len(self.workers)]   # round robin
            self._next += 1
            worker.add(sock, peer, tls)

    @staticmethod
    def _refuse(sock: socket.socket, frame: bytes, tls: Optional[ssl.SSLContext],
                lingering: collections.deque) -> None:
        """Say why (a short frame into an empty socket buffer: never blocks),
        half-close, and let ``_linger`` read what the client sent until it hangs
        up: closing with its hello unread would reset the connection, and the
        client would never see why.  (On the TLS port: just close; a TLS client
        could not read a clear-text frame.)"""
        if tls is not None:
            sock.close()
            return
        try:
            sock.setblocking(False)
            sock.send(frame)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(lingering) >= REFUSED_LINGER_MAX:
            lingering.popleft()[0].close()
        lingering.append((sock, time.monotonic() + REFUSED_LINGER))

    @staticmethod
    def _linger(lingering: collections.deque) -> None:
        """(accept thread) Read and drop what refused clients send; close each
        at its end of stream or after ``REFUSED_LINGER`` seconds."""
        now = time.monotonic()
        for _ in range(len(lingering)):
            sock, until = lingering.popleft()
            try:
                while sock.recv(4096):
                    pass
                done = True                         # end of stream: they read it and left
            except (BlockingIOError, InterruptedError):
                done = now >= until
            except OSError:
                done = True
            if done:
                sock.close()
            else:
                lingering.append((sock, until))

    def stop(self, grace: float = 3.0) -> None:
        """Stop accepting, tell every client, wait for goodbyes up to ``grace`` s."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join()
        if self.listener is not None:
            self.listener.close()
        if self._tls_accept_thread is not None:
            self._tls_accept_thread.join()
        if self.tls_listener is not None:
            self.tls_listener.close()
        deadline = time.monotonic() + grace
        for w in self.workers:
            w.begin_shutdown(deadline)
        for w in self.workers:
            w.join(grace + 1.0)
        self.hub.close()               # commits what is queued, closes the database
        log.info("server stopped")

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="parley-server",
        description="Parley chat server: JSON Lines over TCP and TLS, HTTP and WebSocket for "
                    "browsers on the same ports (see docs/protocol.md).")
    ap.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    ap.add_argument("--port", type=int, default=8888, help="TCP port (default 8888; 0 picks a free one)")
    ap.add_argument("--data-dir", default=None,
                    help=f"where history is kept (default {default_data_dir()}; created if missing)")
    ap.add_argument("--db", default=None,
                    help="the database file (default DATA_DIR/parley.db); ':memory:' for a "
                         "throwaway server that forgets everything when it stops")
    ap.add_argument("--log-level", default="info",
                    choices=["debug", "info", "warning", "error"], help="logging level (default info)")
    ap.add_argument("--io-threads", type=int, default=2,
                    help="threads serving client sockets (default 2)")
    ap.add_argument("--shutdown-grace", type=float, default=3.0,
                    help="seconds to let clients read their goodbye on shutdown (default 3)")
    ap.add_argument("--version", action="version", version=f"parley {__version__}")
    tls = ap.add_argument_group(
        "TLS", "TLS is served on a second port (--tls-port), next to the plain one: plain and "
               "TLS clients chat in the same rooms.  Any of these options turns it on.")
    tls.add_argument("--tls-cert", metavar="FILE",
                     help="the certificate chain (PEM) to serve; goes with --tls-key")
    tls.add_argument("--tls-key", metavar="FILE", help="the private key (PEM) of --tls-cert")
    tls.add_argument("--tls-self-signed", action="store_true",
                     help="serve a self-signed certificate, made on first start in the data "
                          "directory (tls-cert.pem, tls-key.pem) and reused later; needs the "
                          "'cryptography' package or the openssl command.  Its SHA-256 "
                          "fingerprint is printed at start: clients show it on first use")
    tls.add_argument("--tls-port", type=int, default=None,
                     help="TLS port (default 8889; 0 picks a free one)")
    web = ap.add_argument_group(
        "web", "Browsers are served on the same ports as the other clients: an HTTP request "
               "gets static files (http:// on --port, https:// on --tls-port), /ws is the "
               "WebSocket (ws://, wss://) speaking the same JSON frames.  WebSocket needs the "
               "'websockets' package (pip install websockets, or the 'web' extra).")
    web.add_argument("--web-root", metavar="DIR", default=None,
                     help="serve the static files of this directory instead of the built-in "
                          "web client")
    web.add_argument("--web-origin", metavar="URL", action="append", default=[],
                     help="also let pages from this origin (e.g. https://chat.example.org) open "
                          "the WebSocket; repeatable.  Same-origin pages and clients that send "
                          "no Origin (not browsers) are always allowed; others get 403")
    web.add_argument("--no-web", action="store_true",
                     help="no HTTP or WebSocket: an HTTP request gets a 404 page saying so, "
                          "then the connection is closed")
    accounts = ap.add_argument_group(
        "accounts", "Manage them with `parley-server user ...` (see `parley-server user --help`).")
    accounts.add_argument("--auth", choices=p.AUTH_MODES, default=p.AUTH_OPTIONAL,
                          help="off: no accounts, any free name; optional (default): anyone "
                               "joins as a guest under a name no account owns, and may "
                               "register it; required: log in to chat (for a class or team "
                               "with accounts made by an admin or by registering)")
    accounts.add_argument("--registration", choices=("open", "closed"), default="open",
                          help="open (default): anyone may register an account; closed: "
                               "only admins make accounts (parley-server user add)")
    accounts.add_argument("--allow-plain-passwords", action="store_true",
                          help="accept passwords over plain TCP from other machines (by "
                               "default only over TLS or from this machine)")
    group = ap.add_argument_group("limits")
    for f in dataclasses.fields(Limits):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            group.add_argument(flag, action="store_true", dest=f.name, help=LIMIT_HELP[f.name])
        else:
            group.add_argument(flag, type=type(f.default), default=f.default, dest=f.name,
                               help=f"{LIMIT_HELP[f.name]} (default {f.default})")
    return ap


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _raise_fd_limit() -> None:
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def _tls_setup(args: argparse.Namespace) -> tuple[ssl.SSLContext, str]:
    """The TLS context and its certificate's fingerprint; CertError in one line."""
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CertError("--tls-cert and --tls-key go together")
    if args.tls_cert:
        cert, key = args.tls_cert, args.tls_key
    else:
        data_dir = args.data_dir or default_data_dir()
        names = [args.host] if args.host not in ("0.0.0.0", "::", "") else []
        cert, key, made = self_signed(data_dir, names + default_names())
        if made:
            log.info("made a self-signed certificate: %s", cert)
    try:
        context = server_context(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise CertError(f"cannot use the certificate {cert} and key {key}: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    return context, fingerprint(cert)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["user"]:
        from . import admin
        return admin.main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)
    _raise_fd_limit()
    limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    if args.db is not None:
        db = args.db
    else:
        db = os.path.join(args.data_dir or default_data_dir(), "parley.db")
    tls_context, tls_fingerprint = None, None
    if args.tls_cert or args.tls_key or args.tls_self_signed or args.tls_port is not None:
        try:
            tls_context, tls_fingerprint = _tls_setup(args)
        except CertError as e:
            print(f"parley-server: {e}", file=sys.stderr)
            return 2
    web_note = None
    if args.no_web:
        web = WebSite.off("it was started with --no-web")
    elif webmod.WEBSOCKETS is None:
        web = WebSite.off("the server has no WebSocket support: " + webmod.ENABLE_HINT)
        web_note = "web client off: " + webmod.ENABLE_HINT
    else:
        if args.web_root is not None and not os.path.isdir(args.web_root):
            print(f"parley-server: --web-root {args.web_root}: not a directory", file=sys.stderr)
            return 2
        web = WebSite(args.web_root or "", tuple(args.web_origin))
    server = Server(args.host, args.port, limits, io_threads=args.io_threads, db=db,
                    tls=tls_context, tls_port=8889 if args.tls_port is None else args.tls_port,
                    web=web, auth=args.auth, allow_plain_passwords=args.allow_plain_passwords,
                    open_registration=args.registration == "open")
    try:
        server.start()
    except StoreError as e:
        print(f"parley-server: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno == errno.EADDRINUSE and server.listener is not None and tls_context:
            print(f"parley-server: TLS port {server.tls_port} on {args.host} is already in use; "
                  f"pick one with --tls-port", file=sys.stderr)
        elif e.errno == errno.EADDRINUSE:
            print(f"parley-server: port {args.port} on {args.host} is already in use "
                  f"(another server running?); pick one with --port", file=sys.stderr)
        else:
            print(f"parley-server: cannot listen on {args.host}:{args.port}: {e.strerror or e}",
                  file=sys.stderr)
        return 2
    where = "in memory only (--db :memory:)" if db == ":memory:" else db
    if not log.isEnabledFor(logging.INFO):    # always say where we listen and keep history
        host, port = server.address
        print(f"Parley {__version__} listening on {host}:{port}", file=sys.stderr, flush=True)
        print(f"history: {where}", file=sys.stderr, flush=True)
    else:
        log.info("history: %s", where)
    if tls_context is not None:
        host, port = server.tls_address
        # always shown: clients show this fingerprint and ask whether to trust it
        print(f"TLS on {host}:{port}, certificate SHA-256 fingerprint {tls_fingerprint}",
              file=sys.stderr, flush=True)
    if web_note is not None:
        print(web_note, file=sys.stderr, flush=True)     # one line: how to turn it on
    elif web.enabled:
        host, port = server.address
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        where = f"http://{_url_host(host)}:{port}/"
        if tls_context is not None:
            where += f" and https://{_url_host(host)}:{server.tls_address[1]}/"
        print(f"web client on {where} (WebSocket at /ws)", file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(0.5):
        if not all(w.is_alive() for w in server.workers):
            log.critical("an I/O thread died; shutting down")
            server.stop(args.shutdown_grace)
            return 1
    server.stop(args.shutdown_grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
