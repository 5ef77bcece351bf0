"""The Windows rules, checked on Linux: select() there takes sockets only.

The server's I/O threads and the client session run here with a selector that
refuses any file descriptor that is not a socket (as Windows' select() does,
with WSAENOTSOCK), and they must still chat, reconnect and shut down."""
import ast
import os
import pathlib
import selectors
import socket
import stat

import pytest

from parley.client.session import Session
from parley.server.app import Server
from parley.server.connection import Limits

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "parley"


class SocketsOnlySelector(selectors.SelectSelector):
    """select() as on Windows: sockets only."""
    refused = 0

    def register(self, fileobj, events, data=None):
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            SocketsOnlySelector.refused += 1
            raise OSError(10038, "An operation was attempted on something that is not a socket")
        return super().register(fileobj, events, data)


def test_the_selector_really_refuses_a_pipe():
    r, w = os.pipe()
    try:
        with pytest.raises(OSError):
            SocketsOnlySelector().register(r, selectors.EVENT_READ)
    finally:
        os.close(r)
        os.close(w)


@pytest.fixture
def windows_selectors(monkeypatch):
    SocketsOnlySelector.refused = 0
    monkeypatch.setattr(selectors, "DefaultSelector", SocketsOnlySelector)
    yield
    assert SocketsOnlySelector.refused == 0


def test_server_and_client_sessions_with_sockets_only_selectors(windows_selectors):
    srv = Server("127.0.0.1", 0, Limits(), io_threads=2, db=":memory:",
                 selector_factory=SocketsOnlySelector).start()
    try:
        host, port = srv.address
        alice = Session(host, port, "alice", client="test").start()
        bob = Session(host, port, "bob", client="test").start()
        assert alice.registered.wait(5) and bob.registered.wait(5)
        alice.say("hello from a windows-like selector")
        assert alice.wait_idle(5)
        got = None
        for _ in range(50):
            ev = bob.events.get(timeout=5)
            if getattr(ev, "type", None) == "message":
                got = ev
                break
        assert got is not None and got.text == "hello from a windows-like selector"
        # a dropped connection: the client's reconnect path also uses the selector
        bob.registered.clear()
        bob.reconnect_now()
        assert bob.registered.wait(10)
        alice.close()
        bob.close()
    finally:
        srv.stop(grace=0.5)


def test_no_pipes_or_posix_only_calls_in_the_product_code():
    """Calls that do not exist (or do not work with select) on Windows."""
    banned = {("os", "pipe"), ("os", "set_blocking"), ("os", "fork"), ("os", "getuid"),
              ("signal", "SIGHUP"), ("signal", "SIGKILL"), ("signal", "SIGUSR1")}
    found = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and (node.value.id, node.attr) in banned:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value.id}.{node.attr}")
    assert found == []


def test_posix_only_modules_are_imported_behind_a_guard():
    """``resource``, ``fcntl``, ``termios``, ``readline`` are absent on Windows: each
    import must sit in a try block (or a platform check) so the import cannot fail."""
    posix_only = {"resource", "fcntl", "termios", "readline", "pwd", "grp"}
    bad = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Try, ast.If)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        guarded.add(id(inner))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            if set(names) & posix_only and id(node) not in guarded:
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert bad == []
