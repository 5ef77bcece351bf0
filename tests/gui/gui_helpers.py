"""Helpers for driving the Tk client in tests (the fixtures are in conftest.py).

Nothing here synchronises with ``sleep``: ``wait_until`` runs the Tk event loop
(``update`` then ``wait_variable`` on a short ``after``, so the process idles in
Tk's own select) and checks a condition until a deadline.  Keys are delivered
the way a person's would be: focus the widget, ``event_generate`` the key,
``update``.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import tkinter as tk
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from parley.client.gui.app import parse_args  # noqa: E402
from parley.client.gui.window import ChatApp  # noqa: E402

WAIT = 10.0
ARTIFACTS = Path(os.environ.get("PARLEY_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")

# session options that keep reconnect tests quick (the defaults are 0.5 s .. 10 s)
FAST_RECONNECT = {"backoff_initial": 0.1, "backoff_max": 0.5}


class GuiFactory:
    def __init__(self) -> None:
        self.apps: list[ChatApp] = []

    def __call__(self, *argv: str, session_options: Optional[dict] = None) -> ChatApp:
        root = tk.Tk(className="Parley")
        app = ChatApp(root, parse_args(list(argv)),
                      session_options=FAST_RECONNECT if session_options is None else session_options)
        self.apps.append(app)
        root.update()
        wait_until(app, lambda: root.winfo_ismapped(), what="the window to be mapped")
        return app

    def close_all(self) -> None:
        errors = []
        for app in self.apps:
            errors += app.errors
            app.close()
        self.apps.clear()
        assert not errors, f"exceptions in Tk callbacks: {errors!r}"


def pump(app: ChatApp, ms: int = 5) -> None:
    """Run the Tk event loop for about ``ms`` milliseconds."""
    root = app.root
    var = tk.BooleanVar(root)
    root.after(ms, var.set, True)
    root.wait_variable(var)


def wait_until(app: ChatApp, cond: Callable[[], object], timeout: float = WAIT,
               what: str = "condition", detail: Callable[[], str] = lambda: ""):
    """Run the event loop until ``cond()`` is truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if app.closed:
            value = cond()
            if value:
                return value
            raise AssertionError(f"the window closed while waiting for {what}")
        app.root.update()
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n"
                                 f"status: {app.status.text!r}\n{detail()}")
        pump(app)


def wait_joined(app: ChatApp, timeout: float = WAIT) -> None:
    wait_until(app, lambda: app.joined and app.state == "connected" and not app.card.visible,
               timeout, "the server's welcome", detail=lambda: app.card.message.cget("text"))


KEYSYMS = {" ": "space", "/": "slash", ".": "period", ",": "comma", "!": "exclam",
           "?": "question", "-": "minus", "_": "underscore", ":": "colon", "'": "apostrophe",
           "@": "at", "(": "parenleft", ")": "parenright"}

SHIFTED = set('!@#$%^&*()_+:?"<>{}|~')


def press(widget: tk.Misc, keysym: str, shift: bool = False) -> None:
    widget.focus_force()
    widget.update()
    kw = {"state": 1} if shift else {}
    if shift:
        widget.event_generate("<KeyPress-Shift_L>")
    widget.event_generate(f"<KeyPress-{keysym}>", **kw)
    widget.event_generate(f"<KeyRelease-{keysym}>", **kw)
    if shift:
        widget.event_generate("<KeyRelease-Shift_L>")
    widget.update()


def type_text(widget: tk.Misc, text: str) -> None:
    """Type ``text`` key by key (characters without a simple keysym are inserted)."""
    widget.focus_force()
    widget.update()
    for ch in text:
        if ch.isascii() and ch.isalnum():
            widget.event_generate(f"<KeyPress-{ch}>", **({"state": 1} if ch.isupper() else {}))
        elif ch in KEYSYMS:
            shifted = ch in SHIFTED
            widget.event_generate(f"<KeyPress-{KEYSYMS[ch]}>", **({"state": 1} if shifted else {}))
        else:
            widget.insert("insert", ch)
    widget.update()


def invoke_wm_close(app: ChatApp) -> None:
    """What the window manager does when the user clicks the close button."""
    cmd = app.root.tk.call("wm", "protocol", app.root._w, "WM_DELETE_WINDOW")
    app.root.tk.call(cmd)


def screenshot(app: ChatApp, name: str) -> Path:
    """Save the window as PNG in the artifacts directory."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{name}.png"
    root = app.root
    root.update_idletasks()
    root.update()
    window = root.wm_frame() or hex(root.winfo_id())
    if shutil.which("import"):
        subprocess.run(["import", "-window", window, str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    elif shutil.which("xwd") and shutil.which("convert"):
        xwd = out.with_suffix(".xwd")
        subprocess.run(["xwd", "-id", window, "-out", str(xwd)], check=True, timeout=30)
        subprocess.run(["convert", str(xwd), str(out)], check=True, timeout=30)
        xwd.unlink()
    else:
        import pytest
        pytest.skip("neither ImageMagick's import nor xwd is installed")
    return out


def to_docs(shot: Path, name: str) -> None:
    """With PARLEY_DOCS_SCREENSHOTS=1, copy a screenshot into docs/ (``name`` under it)."""
    if os.environ.get("PARLEY_DOCS_SCREENSHOTS"):
        shutil.copyfile(shot, ROOT / "docs" / name)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class Proxy:
    """A TCP relay in front of the server that can cut every connection and refuse
    new ones until restored: a network outage on demand."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.stopping = False
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.refused = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            if not self.up.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    @staticmethod
    def _relay(src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(None)
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.up.clear()
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.stopping = True
        self.cut()
        self.thread.join(2)
        self.listener.close()


def click(widget: tk.Misc, x: int, y: int, button: int = 1) -> None:
    """A mouse click at (x, y) in ``widget`` (press and release, as a person's)."""
    widget.update_idletasks()
    rx, ry = widget.winfo_rootx() + x, widget.winfo_rooty() + y
    widget.event_generate("<Motion>", x=x, y=y, rootx=rx, rooty=ry)
    widget.event_generate(f"<ButtonPress-{button}>", x=x, y=y, rootx=rx, rooty=ry)
    widget.event_generate(f"<ButtonRelease-{button}>", x=x, y=y, rootx=rx, rooty=ry)
    widget.update()


def double_click(widget: tk.Misc, x: int, y: int) -> None:
    """Two clicks in a row at one place: Tk sees <Double-Button-1>."""
    widget.update_idletasks()
    rx, ry = widget.winfo_rootx() + x, widget.winfo_rooty() + y
    for _ in range(2):
        widget.event_generate("<ButtonPress-1>", x=x, y=y, rootx=rx, rooty=ry)
        widget.event_generate("<ButtonRelease-1>", x=x, y=y, rootx=rx, rooty=ry)
    widget.update()


def rooms_client(connect, name: str, *rooms: str, srv=None):
    """A raw protocol client with the rooms capability, in ``rooms`` besides #general."""
    c = connect(srv=srv) if srv is not None else connect()
    c.welcome = c.hello(name, rooms=True)
    for room in rooms:
        reply = c.request({"type": "join", "room": room}, "room")
        assert reply.type == "room", reply
    return c
