"""The real entry point, python improved_gui_client.py, as a separate process."""
import signal
import subprocess
import sys
import time

from gui_helpers import ROOT


def test_the_script_joins_and_leaves_cleanly_on_sigterm(server, connect, private_config):
    host, port = server.address
    bob = connect("bob")
    proc = subprocess.Popen([sys.executable, str(ROOT / "improved_gui_client.py"),
                             "--host", host, "--port", str(port), "--name", "carol"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        bob.expect("join", name="carol", timeout=20)
        bob.send(b'{"type":"say","text":"hi carol \\ud83d\\ude00"}\n')   # drawn without a crash
        bob.expect("message", sender="bob")
        saved = private_config / "parley" / "gui.json"      # written once the window joined
        deadline = time.monotonic() + 20
        while not saved.exists() and proc.poll() is None and time.monotonic() < deadline:
            bob.frames(timeout=0.05)                         # (waits on bob's socket)
        assert saved.exists(), "the client never remembered the connection"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert bob.expect("leave", name="carol").reason == "quit"
