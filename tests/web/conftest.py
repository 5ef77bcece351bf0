"""Fixtures for the web client tests: a real Parley server (SQLite file, so it
can restart with its history), the test bridge serving the page and /ws, and a
headless Debian Chromium driven by Playwright (never a downloaded browser)."""
import os

import pytest

CHROMIUM = os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium")   # Debian's, never a download
try:
    from playwright.sync_api import sync_playwright
except ImportError:                                   # pragma: no cover
    sync_playwright = None
try:
    import websockets  # noqa: F401  (the bridge, and the server's WebSocket)
except ImportError:                                   # pragma: no cover
    websockets = None

if sync_playwright is None:
    SKIP = "playwright is not installed (pip install playwright)"
elif websockets is None:
    SKIP = "websockets is not installed (pip install websockets)"
elif not os.path.exists(CHROMIUM):
    SKIP = f"no {CHROMIUM} (apt-get install chromium)"
else:
    SKIP = None
HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    """Without a browser, every test here is skipped with a one-line reason."""
    if SKIP:
        for item in items:
            if str(item.fspath).startswith(HERE + os.sep):
                item.add_marker(pytest.mark.skip(reason=SKIP))


if websockets is not None:
    from bridge import Bridge                         # noqa: E402
from parley.server.app import Server                  # noqa: E402
from parley.server.connection import Limits           # noqa: E402

try:                                                  # the server's own HTTP + WebSocket
    from parley.server.transports.web import WEBSOCKETS, WebSite
except ImportError:                                   # pragma: no cover
    WEBSOCKETS = WebSite = None
# "server": the page and /ws from the Parley server itself (the default when it can);
# "bridge": through tests/web/bridge.py, a stand-in in front of a TCP-only server.
TRANSPORT = os.environ.get("PARLEY_WEB_TRANSPORT") or ("server" if WEBSOCKETS else "bridge")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


class Web:
    """A server the browser reaches (itself, or through the bridge), and how to
    stop it and start it again on the same address with the same database."""

    def __init__(self, db, transport=TRANSPORT, limits=None):
        self.db = db
        self.limits = limits or Limits(rate=200.0, burst=400, flood_kick=10_000)
        self.transport = transport
        self.port = 0
        self.server = self._start()
        self.port = self.server.address[1]
        self.bridge = Bridge(self.server.address).start() if transport == "bridge" else None

    def _start(self):
        site = WebSite() if self.transport == "server" else None
        return Server("127.0.0.1", self.port, self.limits, io_threads=1, db=self.db, web=site).start()

    @property
    def url(self):
        return self.bridge.url if self.bridge else f"http://127.0.0.1:{self.port}/"

    @property
    def address(self):
        """Where TCP clients connect."""
        return self.server.address

    def stop_server(self):
        self.server.stop(grace=0.5)
        if self.bridge:
            self.bridge.drop()

    def start_server(self):
        self.server = self._start()

    def close(self):
        if self.bridge:
            self.bridge.stop()
        self.server.stop(grace=0.5)


@pytest.fixture
def web(tmp_path):
    w = Web(str(tmp_path / "parley.db"))
    yield w
    w.close()


@pytest.fixture
def strict_web(tmp_path):
    """A server with the default rate limit (5/s, burst 20) and a short fuse, where
    a room of more than 2 is "big" (no member lists sent unasked)."""
    w = Web(str(tmp_path / "parley.db"), limits=Limits(flood_kick=8, presence_limit=2))
    yield w
    w.close()


@pytest.fixture
def tls_server(tmp_path):
    """The server itself with TLS on a second port (a certificate from a test CA)."""
    if TRANSPORT != "server":
        pytest.skip("the server does not serve the web client itself (bridge mode)")
    tlsutil = pytest.importorskip("tlsutil")
    from parley.server.transports.tls import server_context
    ca = tlsutil.TestCA(tmp_path / "ca")
    srv = Server("127.0.0.1", 0, Limits(), io_threads=1, db=":memory:", web=WebSite(),
                 tls=server_context(*ca.issue()), tls_port=0).start()
    yield srv
    srv.stop(grace=0.5)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        b.devices = p.devices
        yield b
        b.close()


class Watch:
    """Console errors and page errors of every page opened through it."""

    def __init__(self):
        self.errors = []
        self.allowed = None          # a regex of errors that are expected (a refused WebSocket)

    def allow(self, pattern):
        self.allowed = pattern

    def unexpected(self):
        return [e for e in self.errors if not (self.allowed and self.allowed.search(e))]

    def page(self, context):
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.set_default_timeout(10_000)
        return page


@pytest.fixture
def watch():
    w = Watch()
    yield w
    assert w.unexpected() == [], w.unexpected()
