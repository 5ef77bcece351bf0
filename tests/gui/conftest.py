"""Fixtures for the desktop-client tests: a real Tk window on an X display.

When DISPLAY is unset the session starts its own ``Xvfb`` (a free display
number chosen by Xvfb itself through ``-displayfd``, so parallel runs never
collide) and stops it at the end; without Xvfb every test here is skipped with
the reason.  Each test gets its own config directory (XDG_CONFIG_HOME), so the
remembered connection of a real user is never read or written.
"""
from __future__ import annotations

import importlib.util
import os
import select
import shutil
import subprocess

import pytest

from gui_helpers import GuiFactory


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x800x24",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_fd)
    number = b""
    try:
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], 15.0)
            if not ready:
                raise RuntimeError("Xvfb did not report a display within 15 s")
            chunk = os.read(read_fd, 32)
            if not chunk:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"Xvfb exited: {err.strip()[-500:]}")
            number += chunk
    except Exception:
        proc.kill()
        proc.wait()
        raise
    finally:
        os.close(read_fd)
    return proc, ":" + number.decode().strip()


@pytest.fixture(scope="session", autouse=True)
def x_display():
    """An X display for the whole session: the existing one, or a private Xvfb."""
    if importlib.util.find_spec("tkinter") is None:
        pytest.skip("tkinter is not installed (apt-get install python3-tk)")
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("no DISPLAY and Xvfb is not installed (apt-get install xvfb): "
                    "the GUI tests need an X display")
    proc, display = _start_xvfb()
    os.environ["DISPLAY"] = display
    try:
        yield display
    finally:
        os.environ.pop("DISPLAY", None)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch):
    cfg = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))
    monkeypatch.setenv("PARLEY_EMOJI", "native")
    return cfg


@pytest.fixture
def gui():
    """``gui("--port", "1234", "--name", "alice")`` opens a ChatApp window.

    Windows still open at the end are closed; an exception raised in any Tk
    callback fails the test."""
    factory = GuiFactory()
    yield factory
    factory.close_all()
    # Collect the dead Tk objects here, in the main thread: left to a later GC
    # pass in a session thread, their __del__ would call into Tk from that thread.
    import gc
    gc.collect()
