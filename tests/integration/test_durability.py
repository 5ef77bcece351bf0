"""History that survives: kill -9 mid-burst, restarts, and a damaged or busy
database — each a real server process on 127.0.0.1."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from parley import protocol as p
from rawclient import RawClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(*args):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "python_server.py"),
                             "--host", "127.0.0.1", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def port_of(proc):
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            return int(line.rsplit(":", 1)[1].split()[0])
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"server did not start: {proc.stderr.read()}")


def all_history(c, room="#general"):
    """Every stored event of a room, paging back from the newest."""
    frames, before = [], None
    while True:
        req = {"type": "history", "room": room, "limit": 200}
        if before is not None:
            req["before"] = before
        page = c.request(req, "history")
        assert page.type == "history", page
        frames = page.messages + frames
        if not page.more:
            return frames
        before = page.messages[0]["id"]


def test_kill_9_mid_burst_loses_nothing_acknowledged(tmp_path):
    fast = ["--data-dir", str(tmp_path), "--rate", "100000", "--burst", "100000",
            "--flood-kick", "100000"]
    proc = start(*fast)
    try:
        port = port_of(proc)
        c = RawClient(("127.0.0.1", port))
        w = c.hello("writer", rooms=True)
        instance = w.instance
        total = 30000
        sent = threading.Event()

        def sender():          # keeps the server busy while it is killed
            try:
                for start in range(0, total, 500):
                    c.send(b"".join(p.encode(p.Say(text=f"burst {i}", label=f"b{i}"))
                                    for i in range(start, start + 500)))
            except OSError:
                pass
            sent.set()
        threading.Thread(target=sender, daemon=True).start()
        acked = {}
        while len(acked) < 200:                     # some, not all, acknowledged: then kill
            for f in c.frames(0.02):
                if f.type == "ack":
                    acked[f.label] = f.id
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for f in c.frames(0.3):                     # anything that was already on its way
            if f.type == "ack":
                acked[f.label] = f.id
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert len(acked) < total, "the kill came too late to test anything"
    proc = start(*fast)
    try:
        port = port_of(proc)
        c = RawClient(("127.0.0.1", port))
        w = c.hello("reader", rooms=True)
        assert w.instance == instance               # the same history, the same ids
        frames = [f for f in all_history(c) if f["type"] == "message"]
        by_text = {}
        for f in frames:
            assert f["text"] not in by_text, f"stored twice: {f['text']}"
            by_text[f["text"]] = f["id"]
        for label, mid in acked.items():
            i = int(label[1:])
            assert by_text.get(f"burst {i}") == mid, f"acknowledged {label} ({mid}) lost"
        ids = [f["id"] for f in frames]
        assert ids == sorted(ids)
        # ids go on from where they were: a new message gets a bigger id than any before
        new = c.request({"type": "say", "text": "after the restart"}, "ack")
        assert new.id > max(ids)
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_restart_keeps_rooms_topics_dms_and_catch_up(tmp_path):
    args = ["--data-dir", str(tmp_path)]
    proc = start(*args)
    try:
        port = port_of(proc)
        a, b = RawClient(("127.0.0.1", port)), RawClient(("127.0.0.1", port))
        wa = a.hello("alice", rooms=True)
        b.hello("bob", rooms=True)
        a.request({"type": "join", "room": "#Kept"}, "room")
        a.request({"type": "topic", "room": "#kept", "topic": "still here"}, "ack")
        dm = a.request({"type": "say", "text": "dm before restart", "to": "bob"}, "ack")
        seen = a.request({"type": "say", "text": "seen by alice"}, "ack").id
        a.close()
        b.request({"type": "say", "text": "missed by alice"}, "ack")
        b.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    proc = start(*args)
    try:
        port = port_of(proc)
        a = RawClient(("127.0.0.1", port))
        w = a.hello("alice", rooms=True, token=wa.token, last_id=seen, instance=wa.instance)
        assert sorted(r["room"] for r in w.rooms) == ["#Kept", "#general"]
        kept = [r for r in w.rooms if r["room"] == "#Kept"][0]
        assert kept["topic"] == "still here"
        texts = [h.get("text") for h in w.history if h["type"] == "message"]
        assert texts == ["missed by alice"]          # exactly what it missed
        page = a.request({"type": "history", "with": "bob"}, "history")
        assert [(m["id"], m["text"]) for m in page.messages] == [(dm.id, "dm before restart")]
        a.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def one_line_error(proc):
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 2, err
    lines = [l for l in err.strip().splitlines() if "parley-server:" in l]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_second_server_on_the_same_data_dir_is_refused(tmp_path):
    first = start("--data-dir", str(tmp_path))
    try:
        port_of(first)
        line = one_line_error(start("--data-dir", str(tmp_path)))
        assert "another Parley server" in line
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(10)


def test_corrupted_database_is_a_clear_error(tmp_path):
    (tmp_path / "parley.db").write_bytes(b"this is not a database\x00" * 200)
    line = one_line_error(start("--data-dir", str(tmp_path)))
    assert "parley.db" in line and ("damaged" in line or "not a Parley database" in line)


def test_unusable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    line = one_line_error(start("--data-dir", str(blocker / "sub")))
    assert str(blocker) in line


def test_throwaway_server_says_where_history_goes():
    proc = start("--db", ":memory:", "--log-level", "warning")
    try:
        port_of(proc)
        line = proc.stderr.readline()
        assert "history: in memory only" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
