"""Fixtures for the terminal-client tests; the helpers live in cli_helpers.py.

``make_server`` and ``server`` here override the ones in tests/conftest.py for this
directory: they return a ``ServerControl``, which can stop the server and start it
again on the same port (the reconnect tests need that).
"""
from __future__ import annotations

import shutil

import pytest

from cli_helpers import FAST, MODES, ClientProcess, Limits, Peer, ServerControl, Tmux


@pytest.fixture
def make_server():
    """``make_server(limits)`` starts a Server on 127.0.0.1, port 0; all stopped at teardown."""
    started: list[ServerControl] = []

    def make(limits: Limits = FAST) -> ServerControl:
        ctl = ServerControl(limits).start()
        started.append(ctl)
        return ctl

    yield make
    for ctl in started:
        ctl.stop(grace=0.5)


@pytest.fixture
def server(make_server) -> ServerControl:
    """A server with generous rate limits, so tests are not paced."""
    return make_server(FAST)


@pytest.fixture
def peers():
    """``peers(port, name)`` makes a connected Peer (a Session), closed at teardown."""
    made: list[Peer] = []

    def make(port: int, name: str, **kw) -> Peer:
        peer = Peer(port, name, **kw)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


@pytest.fixture
def spawn():
    """``spawn(port, *args)`` starts the client as a subprocess, killed at teardown."""
    made: list[ClientProcess] = []

    def make(port: int, *args: str, **kw) -> ClientProcess:
        cp = ClientProcess(port, *args, **kw)
        made.append(cp)
        return cp

    yield make
    for cp in made:
        cp.kill()


@pytest.fixture
def tmux(tmp_path):
    """A private tmux server (unique -L socket) with one 120x30 pane; killed at teardown."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    t = Tmux(tmp_path)
    yield t
    t.kill()


@pytest.fixture(params=list(MODES))
def mode(request) -> list[str]:
    """Interactive front end: prompt_toolkit, or --plain (readline)."""
    return MODES[request.param]
