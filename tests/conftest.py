"""Shared fixtures: an in-process server on 127.0.0.1:0 and a raw protocol client."""
import os
import tempfile

import pytest

# clients keep settings, known_hosts and login tokens in the config directory: never
# the real one of whoever runs the tests (child processes inherit this too)
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="parley-test-config-")

from rawclient import RawClient  # noqa: F401  (tests/ is on sys.path via rootdir conftest)
from parley.server.app import Server
from parley.server.connection import Limits


@pytest.fixture
def make_server():
    servers = []

    def start(port=0, io_threads=2, db=":memory:", **limits):
        # Server options (accounts) beside the limits
        options = {k: limits.pop(k) for k in ("auth", "allow_plain_passwords",
                                              "open_registration") if k in limits}
        # a dropped connection leaves at once unless a test asks for a hold
        limits.setdefault("hold", 0.0)
        srv = Server("127.0.0.1", port, Limits(**limits), io_threads=io_threads, db=db,
                     **options).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop(grace=0.5)


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture
def connect(server):
    clients = []

    def make(name=None, srv=None, **kw):
        c = RawClient((srv or server).address, **kw)
        clients.append(c)
        if name:
            c.welcome = c.hello(name)
        return c

    yield make
    for c in clients:
        c.close()
