"""The SQLite store: schema, migrations, group commit, failures, reads in wire form."""
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from parley import protocol as p
from parley.server import store as store_mod
from parley.server.store import BadQuery, Store, StoreError, Write, default_data_dir

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "data")
SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src")
T0 = 1_795_000_000.0                       # 2026-11-18T11:06:40Z

A, B, C = "a" * 16, "b" * 16, "c" * 16    # session ids


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


class Recorder:
    """on_commit that remembers every call (on the writer thread)."""

    def __init__(self):
        self.calls = []
        self.cv = threading.Condition()

    def __call__(self, batch, error):
        with self.cv:
            self.calls.append(([w for w in batch], error, [w.id for w in batch]))
            self.cv.notify_all()

    def wait_for(self, write, timeout=10):
        """Wait until ``write`` came back in an on_commit call."""
        with self.cv:
            return self.cv.wait_for(lambda: any(write in b for b, _, _ in self.calls), timeout)


def say(text, room="#general", sender="alice", sid=A, kind="say", label=None):
    return Write(op="event", kind=kind, room=room, sender=sender, sender_sid=sid, text=text,
                 label=label)


def dm(text, sender, sid, target, target_sid, label=None):
    return Write(op="event", kind="say", room=None, sender=sender, sender_sid=sid,
                 target=target, target_sid=target_sid, text=text, label=label)


def put(store, *writes):
    for w in writes:
        store.submit(w)
    assert store.flush(10)
    return writes


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "data" / "parley.db")


@pytest.fixture
def store(db_path):
    s = Store(db_path, clock=Clock()).open()
    s.recorder = Recorder()
    s.start(s.recorder)
    yield s
    s.close()


def ids(frames):
    return [f["id"] for f in frames]


def assert_wire(frame):
    """The frame is exactly what parley.protocol's typed event serialises to."""
    event = p.event_from_dict(frame, p.SERVER_FRAMES)
    assert p.encode(event) == p.encode_dict(frame)


# --- files, schema, ids -------------------------------------------------------------
def test_default_data_dir_per_platform(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg/data")
    assert default_data_dir() == os.path.join("/xdg/data", "parley")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/not/allowed")
    assert default_data_dir() == os.path.join(os.path.expanduser("~"), ".local", "share", "parley")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_data_dir() == os.path.join(os.path.expanduser("~"), "Library",
                                              "Application Support", "Parley")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", r"C:\Users\me\AppData\Local")
    assert default_data_dir() == os.path.join(r"C:\Users\me\AppData\Local", "Parley")


def test_open_creates_directory_schema_and_general(db_path):
    s = Store(db_path).open()
    try:
        assert os.path.isfile(db_path) and os.path.isfile(db_path + ".lock")
        assert re.fullmatch(r"[0-9a-f]{12}", s.instance)
        assert s.last_id == 0 and s.fts
        assert s.rooms() == [("#general", "#general", "")]
        instance = s.instance
    finally:
        s.close()
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION == 3
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert {"meta", "rooms", "sessions", "memberships", "events", "reads",
                "events_room", "events_dm_out", "events_dm_in"} <= names
        assert "events_fts" not in names                 # the search index has its own file
    finally:
        db.close()
    search = sqlite3.connect(os.path.join(os.path.dirname(db_path), "parley-search.db"))
    try:
        assert search.execute("SELECT value FROM meta WHERE key='instance'").fetchone() == (instance,)
        assert search.execute("SELECT v FROM events_fts_config WHERE k='automerge'").fetchone() == (0,)
    finally:
        search.close()
    with Store(db_path) as again:                      # reopening keeps the instance
        assert again.instance == instance


def test_ids_strictly_increase_across_reopen_and_ts_never_goes_back(db_path):
    clock = Clock()
    s = Store(db_path, clock=clock).open()
    s.start()
    first = put(s, say("one"), say("two"))
    assert [w.id for w in first] == [1, 2] and s.last_id == 2
    assert first[0].ts == int(T0 * 1000)
    s.close()
    clock.t -= 3600                                    # the clock jumps back an hour
    s = Store(db_path, clock=clock).open()
    try:
        assert s.last_id == 2
        s.start()
        (w,) = put(s, say("three"))
        assert w.id == 3 and s.last_id == 3
        assert w.ts == int(T0 * 1000)                  # not before the previous message
        assert ids(s.history(A, room="#general")[0]) == [1, 2, 3]
    finally:
        s.close()


def test_memory_store_is_shared_with_reader_threads_and_removed_at_close():
    s = Store(":memory:").open()
    s.start()
    put(s, say("in memory"))
    got = []
    t = threading.Thread(target=lambda: got.append(s.history(None, room="#general")))
    t.start()
    t.join()
    assert [f["text"] for f in got[0][0]] == ["in memory"]
    where = s._tmpdir
    assert where and os.path.isdir(where)
    s.close()
    assert not os.path.exists(where)
    other = Store(":memory:").open()                   # a new one starts empty
    try:
        assert other.last_id == 0 and other.instance != s.instance
    finally:
        other.close()


# --- writes -------------------------------------------------------------------------
def test_group_commit_takes_what_is_queued_in_submit_order(db_path):
    s = Store(db_path, batch_max=1000).open()
    rec = Recorder()
    writes = [say(f"m{i}") for i in range(2500)]
    for w in writes:                                   # all queued before the writer runs
        s.submit(w)
    s.start(rec)
    assert s.flush(30)
    try:
        # up to batch_max; fewer than that: a power of two (500 = 256 + 128 + ...)
        assert [len(batch) for batch, _, _ in rec.calls] == [1000, 1000, 256, 128, 64, 32, 16, 4]
        assert all(err is None for _, err, _ in rec.calls)
        assert [w.id for w in writes] == list(range(1, 2501))
        assert len({w.ts for w in writes[:1000]}) == 1  # one transaction, one timestamp
        frames, _ = s.history(None, room="#general", after=0, limit=200)
        assert [f["text"] for f in frames] == [f"m{i}" for i in range(200)]
    finally:
        s.close()


def test_concurrent_submitters_keep_their_own_order(store):
    per_thread = {}

    def run(n):
        ws = [say(f"t{n}-{i}") for i in range(300)]
        for w in ws:
            store.submit(w)
        per_thread[n] = ws

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.flush(30)
    every = [w.id for ws in per_thread.values() for w in ws]
    assert sorted(every) == list(range(1, 1201))
    for ws in per_thread.values():
        assert [w.id for w in ws] == sorted(w.id for w in ws)
    committed = [w.id for batch, _, _ in store.recorder.calls for w in batch]
    assert committed == list(range(1, 1201))           # on_commit in id order


def test_ops_rooms_topics_sessions_members_reads(store):
    put(store,
        Write(op="room", room="#python", name="#Python"),
        Write(op="room", room="#python", name="#PYTHON"),            # exists: kept as created
        Write(op="session", sid=A, name="alice", token_hash=b"h" * 32),
        Write(op="member_add", sid=A, room="#python"),
        Write(op="member_add", sid=A, room="#general"),
        Write(op="member_add", sid=A, room="#python"),               # twice is harmless
        Write(op="event", kind="topic", room="#python", sender="alice", sender_sid=A,
              text="pip and friends"),
        Write(op="read", sid=A, conv="#python", read_id=5),
        Write(op="read", sid=A, conv="#python", read_id=3))          # never moves back
    assert store.room("#python") == ("#Python", "pip and friends")   # the topic event set it
    assert store.room("#nope") is None
    assert store.memberships(A) == ["#general", "#python"]
    assert store.session_by_token_hash(b"h" * 32) == (A, "alice")
    assert store.session_by_token_hash(b"x" * 32) is None
    assert store.read_position(A, "#python") == 5
    assert store.read_position(A, "#general") == 0
    put(store, Write(op="member_remove", sid=A, room="#python"),
        Write(op="session", sid=A, name="Alice", token_hash=b"h" * 32),
        Write(op="topic_set", room="#python", text="new topic"),
        Write(op="read", sid=A, conv="#python", read_id=9))
    assert store.memberships(A) == ["#general"]
    assert store.session_by_token_hash(b"h" * 32) == (A, "Alice")
    assert store.room("#python") == ("#Python", "new topic")
    assert store.read_position(A, "#python") == 9
    (miss,) = put(store, Write(op="topic_set", room="#nope", text="x"))
    assert miss.error == "no room #nope"


def test_barrier_comes_back_after_earlier_writes(store):
    first = say("before")
    barrier = Write(op="barrier", ctx="mine")
    put(store, first, barrier)
    seen = [w for batch, _, _ in store.recorder.calls for w in batch]
    assert seen.index(barrier) > seen.index(first) and barrier.ctx == "mine"


def test_malformed_writes_are_refused_at_submit(store):
    for bad in (Write(op="nope"), Write(op="event", kind="shout", room="#general", sender="a"),
                Write(op="event", kind="say", room=None, sender="a"),           # DM without target
                Write(op="event", kind="join", room=None, sender="a", target="b"),
                Write(op="session", sid=A), Write(op="read", sid=A, conv="#general"),
                Write(op="member_add", sid=A)):
        with pytest.raises(ValueError):
            store.submit(bad)


def test_one_failing_write_does_not_lose_the_rest_of_its_batch(db_path):
    s = Store(db_path).open()
    rec = Recorder()
    writes = [Write(op="session", sid=A, name="alice", token_hash=b"same"),
              say("kept 1"),
              Write(op="session", sid=B, name="bob", token_hash=b"same"),     # UNIQUE breaks
              say("kept 2")]
    for w in writes:
        s.submit(w)
    s.start(rec)
    assert s.flush(10)
    try:
        assert len(rec.calls) == 1 and rec.calls[0][1] is None
        assert writes[2].error and "UNIQUE" in writes[2].error and writes[2].id is None
        assert [writes[1].id, writes[3].id] == [1, 2]   # no id used up by the failure
        assert s.session_by_token_hash(b"same") == (A, "alice")
        assert [f["text"] for f in s.history(None, room="#general")[0]] == ["kept 1", "kept 2"]
    finally:
        s.close()


def test_disk_full_fails_the_batch_and_the_store_keeps_serving(store):
    put(store, say("before"))
    pages = store._wconn.execute("PRAGMA page_count").fetchone()[0]
    store._wconn.execute(f"PRAGMA max_page_count={pages + 2}")     # a nearly full disk
    big = [say("x" * 9000 + f" big{i}") for i in range(30)]     # each needs new pages
    put(store, *big)
    failed = [(batch, err) for batch, err, _ in store.recorder.calls if any(w in big for w in batch)]
    assert failed and all(err and "full" in err for _, err in failed)
    assert "\n" not in failed[0][1]
    assert all(w.id is None and w.error for w in big)
    assert store.last_id == 1
    (after,) = put(store, say("small after"))                       # still serving
    assert after.id == 2 and after.error is None
    assert store.recorder.calls[-1][1] is None
    assert [f["text"] for f in store.history(None, room="#general")[0]] == ["before", "small after"]
    assert store.search(None, "big0", ["#general"]) == ([], False)


def test_close_commits_what_is_queued(db_path):
    s = Store(db_path).open()
    s.start()
    for i in range(500):
        s.submit(say(f"q{i}"))
    s.close()
    with pytest.raises(StoreError):
        s.submit(say("too late"))
    with Store(db_path) as again:
        assert again.last_id == 500


def test_kill_9_mid_burst_loses_no_acknowledged_message(db_path):
    """A child writes through the store and prints each committed id; it is
    killed with SIGKILL mid-burst.  Every id it reported is there, once."""
    child = r"""
import sys
from parley.server.store import Store, Write
s = Store(sys.argv[1]).open()
def on_commit(batch, error):
    if error is None:
        sys.stdout.write("".join(f"{w.id} {w.text}\n" for w in batch if w.id is not None))
        sys.stdout.flush()
s.start(on_commit)
i = 0
while True:
    for _ in range(500):
        s.submit(Write(op="event", kind="say", room="#general", sender="k", sender_sid="s" * 16,
                       text=f"m{i}"))
        i += 1
    s.flush(10)
"""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", child, db_path], stdout=subprocess.PIPE,
                            env=env, text=True)
    reported = {}
    try:
        deadline = time.monotonic() + 60
        while len(reported) < 5000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            i, text = line.split()
            reported[int(i)] = text
        assert len(reported) >= 5000, "the child did not get going"
        proc.kill()                                   # SIGKILL on POSIX
        for line in proc.stdout:                      # printed after a commit: also acknowledged
            if line.endswith("\n"):
                i, text = line.split()
                reported[int(i)] = text
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    with Store(db_path) as s:
        db = sqlite3.connect(db_path)
        try:
            stored = dict(db.execute("SELECT id, text FROM events"))
            dupes = db.execute("SELECT text FROM events GROUP BY text HAVING count(*) > 1").fetchall()
        finally:
            db.close()
        assert all(stored.get(i) == text for i, text in reported.items())
        assert dupes == []
        assert s.last_id >= max(reported)
        last = max(reported)
        assert ids(s.search(None, reported[last], ["#general"])[0]) == [last]  # index caught up
        s.start()
        (w,) = put(s, say("after the crash"))
        assert w.id == s.last_id > max(stored)


# --- failures at open -------------------------------------------------------------
def test_second_store_on_the_same_directory_fails_fast(db_path):
    first = Store(db_path).open()
    try:
        t = time.monotonic()
        with pytest.raises(StoreError) as e:
            Store(db_path).open()
        assert time.monotonic() - t < 1
        msg = str(e.value)
        assert msg.startswith("another Parley server is using " + os.path.dirname(db_path))
        assert "lock held" in msg and "\n" not in msg
    finally:
        first.close()
    Store(db_path).open().close()                     # free again once the first has closed


def test_garbage_file_is_a_clear_one_line_error(db_path):
    os.makedirs(os.path.dirname(db_path))
    with open(db_path, "wb") as f:
        f.write(b"this is not sqlite at all\n" * 400)
    for _ in range(2):                                # and the lock is released after failing
        with pytest.raises(StoreError) as e:
            Store(db_path).open()
        msg = str(e.value)
        assert msg.startswith(f"{db_path} is not a Parley database or is damaged: ")
        assert "\n" not in msg


def test_foreign_or_newer_database_is_refused(db_path):
    os.makedirs(os.path.dirname(db_path))
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE invoices(id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"is not a Parley database \(it has other tables: invoices"):
        Store(db_path).open()
    os.remove(db_path)
    Store(db_path).open().close()
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA user_version=7")
    db.close()
    with pytest.raises(StoreError, match=r"written by a newer Parley \(schema version 7; this one "
                                         r"knows up to 3\)"):
        Store(db_path).open()


def _open_unprivileged(path):
    """Open a store as a user without root's right to write anywhere: as
    ourselves if we are not root, else in a forked child that drops to nobody."""
    if os.geteuid() != 0:
        try:
            Store(path).open().close()
            return None
        except StoreError as e:
            return str(e)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                      # child
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            try:
                Store(path).open().close()
                msg = "OPENED"
            except StoreError as e:
                msg = str(e)
            except BaseException as e:                # pragma: no cover
                msg = f"UNEXPECTED {e!r}"
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return None if out == "OPENED" else out


@pytest.mark.skipif(os.name == "nt" or not hasattr(os, "geteuid"),
                    reason="POSIX permissions")
def test_read_only_directory_or_file_is_a_clear_error():
    base = tempfile.mkdtemp()
    try:
        os.chmod(base, 0o755)                         # reachable by an unprivileged user
        empty = os.path.join(base, "empty")
        os.mkdir(empty, 0o555)                        # a read-only, empty data directory
        msg = _open_unprivileged(os.path.join(empty, "parley.db"))
        assert msg and msg.startswith(f"cannot write to the data directory {empty}: ")
        assert "permission denied" in msg and "\n" not in msg

        used = os.path.join(base, "used")             # a data directory with a database in it
        Store(os.path.join(used, "parley.db")).open().close()
        for name in os.listdir(used):
            os.chmod(os.path.join(used, name), 0o444)
        os.chmod(used, 0o555)
        msg = _open_unprivileged(os.path.join(used, "parley.db"))
        assert msg and msg.startswith("cannot write to ") and "\n" not in msg

        os.chmod(used, 0o777)                         # a writable directory, read-only file
        os.chmod(os.path.join(used, "parley.db.lock"), 0o666)
        for name in ("parley.db-wal", "parley.db-shm"):
            if os.path.exists(os.path.join(used, name)):
                os.remove(os.path.join(used, name))
        msg = _open_unprivileged(os.path.join(used, "parley.db"))
        assert msg and "read-only" in msg and "\n" not in msg
    finally:
        for root, dirs, _ in os.walk(base):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(base, ignore_errors=True)


# --- migration ---------------------------------------------------------------------
def test_migrates_the_stored_version_0_database(tmp_path):
    path = str(tmp_path / "parley.db")
    shutil.copy(os.path.join(DATA, "parley-v0.db"), path)
    old = sqlite3.connect(path)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 0
    before = old.execute("SELECT id, ts, kind, room, sender, sender_sid, target, text "
                         "FROM events ORDER BY id").fetchall()
    old.close()
    alice, bob, carol1 = "5a11ce00000000a1", "b0b0000000000002", "ca401000000000c1"
    with Store(path) as s:
        assert s.instance == "a1b2c3d4e5f6" and s.last_id == 110
        assert s.rooms() == [("#general", "#general", ""), ("#python", "#Python", "pip and friends")]
        assert s.session_by_token_hash(hashlib.sha256(b"alice-token").digest()) == (alice, "alice")
        assert s.memberships(alice) == ["#general", "#python"]
        room, _ = s.history(alice, room="#python")
        assert [(f["type"], f["id"]) for f in room] == [("join", 104), ("topic", 105),
                                                        ("message", 106)]
        assert room[2]["room"] == "#Python"
        # searchable after the migration (the index was built over the old rows)
        found, _ = s.search(alice, "pip", ["#general", "#python"])
        assert ids(found) == [106]
        assert ids(s.search(alice, "welcome", ["#general"])[0]) == [102]
        # a DM to a name one session had is now that session's; an ambiguous one stays the sender's
        assert ids(s.history(alice, peer="bob")[0]) == [108]
        assert ids(s.history(bob, peer="alice")[0]) == [108]
        assert ids(s.history(alice, peer="carol")[0]) == [109]
        assert s.history(carol1, peer="alice") == ([], False)
        s.start()
        (w,) = put(s, say("first after the upgrade", sid=alice))
        assert w.id == 111
        assert ids(s.search(alice, "upgrade", ["#general"])[0]) == [111]
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION
        after = db.execute("SELECT id, ts, kind, room, sender, sender_sid, target, text "
                           "FROM events WHERE id <= 110 ORDER BY id").fetchall()
        assert after == before
        assert db.execute("SELECT name FROM sqlite_master WHERE name='events_by_room'").fetchall() == []
    finally:
        db.close()


def test_without_fts5_search_uses_like_and_the_index_is_rebuilt_later(db_path, monkeypatch, caplog):
    s = Store(db_path).open()
    s.start()
    put(s, say("indexed normally"))
    s.close()
    monkeypatch.setattr(store_mod, "fts5_available", lambda conn: False)
    s = Store(db_path).open()                         # a SQLite without FTS5
    try:
        assert not s.fts
        s.start()
        put(s, say("written without the index"), say("a don't b"))
        caplog.clear()
        assert ids(s.search(None, "without index", ["#general"])[0]) == [2]
        assert ids(s.search(None, "INDEXED", ["#general"])[0]) == [1]
        assert ids(s.search(None, "don't", ["#general"])[0]) == [3]
        s.search(None, "normally", ["#general"])
        assert sum("LIKE" in r.getMessage() for r in caplog.records) == 1   # said once
    finally:
        s.close()
    monkeypatch.undo()
    with Store(db_path) as s:                         # FTS5 again: the index catches up
        assert s.fts
        assert ids(s.search(None, "without", ["#general"])[0]) == [2]
        assert ids(s.search(None, "indexed OR without", ["#general"])[0]) == [2, 1]


# --- reads: history ------------------------------------------------------------------
@pytest.fixture
def ten(store):
    """#general holds ids 1..10 (a join, eight messages, a leave)."""
    put(store, Write(op="event", kind="join", room="#general", sender="alice", sender_sid=A),
        *[say(f"m{i}") for i in range(2, 10)],
        Write(op="event", kind="leave", room="#general", sender="alice", sender_sid=A,
              text="quit"))
    return store


@pytest.mark.parametrize("kw, want, more", [
    ({}, [8, 9, 10], True),                         # newest
    ({"before": 5}, [2, 3, 4], True),
    ({"before": 4}, [1, 2, 3], False),              # exactly limit rows left: no more
    ({"before": 1}, [], False),
    ({"after": 6}, [7, 8, 9], True),
    ({"after": 7}, [8, 9, 10], False),              # exactly limit rows left
    ({"after": 10}, [], False),
    ({"after": 0}, [1, 2, 3], True),
    ({"before": 11, "limit": 10}, list(range(1, 11)), False),
    ({"limit": 50}, list(range(1, 11)), False),
])
def test_room_history_pages(ten, kw, want, more):
    kw.setdefault("limit", 3)
    frames, got_more = ten.history(A, room="#general", **kw)
    assert ids(frames) == want and got_more is more


def test_history_frames_are_wire_frames(ten):
    frames, _ = ten.history(A, room="#general", limit=10)
    assert frames[0] == {"type": "join", "id": 1, "ts": "2026-11-18T11:06:40.000Z",
                         "name": "alice", "room": "#general"}
    assert frames[1] == {"type": "message", "id": 2, "ts": "2026-11-18T11:06:40.000Z",
                         "from": "alice", "text": "m2", "kind": "say", "room": "#general"}
    assert frames[-1]["type"] == "leave" and frames[-1]["reason"] == "quit"
    for f in frames:
        assert_wire(f)


def test_history_rejects_contradictory_arguments(ten):
    with pytest.raises(ValueError):
        ten.history(A, room="#general", before=3, after=1)
    with pytest.raises(ValueError):
        ten.history(A, room="#general", peer="bob")


def test_dm_history_pages_and_privacy(store):
    put(store, Write(op="session", sid=A, name="alice", token_hash=b"a"),
        Write(op="session", sid=B, name="bob", token_hash=b"b"))
    sent = []
    for i in range(6):                               # alternate directions: ids 1..6
        if i % 2 == 0:
            sent += put(store, dm(f"a{i}", "alice", A, "Bob", B))
        else:
            sent += put(store, dm(f"b{i}", "bob", B, "alice", A))
    put(store, dm("to carol", "alice", A, "carol", C), say("room noise"))
    frames, more = store.history(A, peer="bob", limit=4)
    assert ids(frames) == [3, 4, 5, 6] and more
    assert frames[-1] == {"type": "message", "id": 6, "ts": frames[-1]["ts"], "from": "bob",
                          "text": "b5", "kind": "say", "to": "alice"}
    assert ids(store.history(A, peer="bob", before=3, limit=4)[0]) == [1, 2]
    assert store.history(A, peer="bob", before=3, limit=2)[1] is False   # exactly limit
    assert ids(store.history(A, peer="bob", after=2, limit=2)[0]) == [3, 4]
    assert ids(store.history(B, peer="alice")[0]) == [1, 2, 3, 4, 5, 6]
    assert ids(store.history(A, peer="carol")[0]) == [7]
    # a later session that took the name "bob" sees none of the first bob's DMs
    b2 = "d" * 16
    put(store, Write(op="session", sid=b2, name="bob", token_hash=b"b2"))
    assert store.history(b2, peer="alice") == ([], False)
    assert store.since(0, [], b2, 100) == ([], False)
    assert store.search(b2, "a0", []) == ([], False)
    assert store.search(b2, "a0", [], peer="alice") == ([], False)
    assert [u for u in store.unread(b2, "bob", []) if "with" in u] == []
    # and the first bob still does
    assert ids(store.search(B, "a0", [])[0]) == [1]
    assert ids(store.since(0, [], B, 100)[0]) == [1, 2, 3, 4, 5, 6]


def test_recent_is_the_last_n_of_a_room(ten):
    put(ten, say("elsewhere", room="#other"))
    assert ids(ten.recent("#general", 4)) == [7, 8, 9, 10]
    assert ids(ten.recent("#other", 4)) == [11]
    assert ten.recent("#general", 0) == []


# --- reads: since -------------------------------------------------------------------
def test_since_newest_limit_with_truncation_and_own_labels(store):
    put(store,
        say("r1", room="#a", label="L1"),               # 1
        say("r2", room="#b", sender="bob", sid=B, label="LB"),   # 2
        say("r3", room="#hidden"),                     # 3 (not in the rooms asked for)
        dm("d4", "bob", B, "alice", A, label="LD"),    # 4
        dm("d5", "alice", A, "bob", B, label="L5"),    # 5
        dm("other", "bob", B, "carol", C),             # 6 (not alice's)
        Write(op="event", kind="topic", room="#a", sender="bob", sender_sid=B, text="t"),  # 7
        say("r8", room="#a", label="L8"))              # 8
    frames, truncated = store.since(0, ["#a", "#b"], A, 100)
    assert ids(frames) == [1, 2, 4, 5, 7, 8] and truncated is False
    labels = {f["id"]: f.get("label") for f in frames}
    assert labels == {1: "L1", 2: None, 4: None, 5: "L5", 7: None, 8: "L8"}
    assert ids(store.since(0, ["#a", "#b"], A, 3)[0]) == [5, 7, 8]
    assert store.since(0, ["#a", "#b"], A, 3)[1] is True
    assert store.since(1, ["#a", "#b"], A, 5) == (store.since(0, ["#a", "#b"], A, 100)[0][1:], False)
    assert ids(store.since(4, ["#a"], None, 10)[0]) == [7, 8]   # no session: no DMs
    assert store.since(8, ["#a", "#b"], A, 10) == ([], False)
    for f in frames:
        assert_wire(f)


# --- reads: search ------------------------------------------------------------------
@pytest.fixture(params=["scope tokens", "sql filter"])
def corpus(store, request, monkeypatch):
    """Each search test runs twice: with FTS5 keeping to the scope (few rooms)
    and with the scope checked in SQL only (many rooms)."""
    monkeypatch.setattr(store_mod, "SCOPE_TERMS", 1000 if request.param == "scope tokens" else 0)
    put(store,
        say("pip install parley", room="#python"),                  # 1
        say("the café is open", room="#general"),                   # 2
        say("don't panic, it's only c++", room="#general"),         # 3
        say("what? really?", room="#general", kind="me"),           # 4
        say("python packaging with pip", room="#general"),          # 5
        Write(op="event", kind="topic", room="#python", sender="alice", sender_sid=A,
              text="pip and friends"),                              # 6: a topic is not searched
        dm("secret pip trick", "alice", A, "bob", B),               # 7
        dm("pip for carol", "carol", C, "dave", "e" * 16),          # 8: not alice's
        say("pipeline ready", room="#secret"))                      # 9: not in alice's rooms
    return store


MINE = ["#general", "#python"]


def test_search_scopes_and_order(corpus):
    assert ids(corpus.search(A, "pip", MINE)[0]) == [7, 5, 1]           # newest first
    assert ids(corpus.search(A, "pip", MINE, room="#python")[0]) == [1]
    assert ids(corpus.search(A, "pip", MINE, room="#secret")[0]) == []  # not one of its rooms
    assert ids(corpus.search(A, "pip", MINE, peer="bob")[0]) == [7]
    assert ids(corpus.search(A, "pip", MINE, peer="BOB")[0]) == [7]
    assert ids(corpus.search(B, "pip", [])[0]) == [7]
    assert ids(corpus.search(None, "pip", ["#secret", "#general"])[0]) == [5]
    frames, _ = corpus.search(A, "pip", MINE)
    for f in frames:
        assert_wire(f)


def test_search_paging_with_before(corpus):
    first, more = corpus.search(A, "pip", MINE, limit=2)
    assert ids(first) == [7, 5] and more is True
    rest, more = corpus.search(A, "pip", MINE, before=5, limit=2)
    assert ids(rest) == [1] and more is False
    exact, more = corpus.search(A, "pip", MINE, before=7, limit=2)
    assert ids(exact) == [5, 1] and more is False


@pytest.mark.parametrize("query, want", [
    ('"pip install"', [1]),                     # phrase
    ("pip*", [9] * 0 + [7, 5, 1]),              # prefix (pipeline is not in alice's rooms)
    ("packaging OR install", [5, 1]),
    ("pip NOT python", [7, 1]),
    ("pip AND (install OR trick)", [7, 1]),
    ("NEAR(pip install)", [1]),
    ("cafe", [2]),                              # diacritics folded
    ("PARLEY", [1]),                            # case-insensitive
    ("don't", [3]),                             # plain words with punctuation
    ("c++", [3]),
    ("what?", [4]),
    ("it's only", [3]),
    ("don't OR what?", [4, 3]),                 # syntax kept, odd words quoted
    ('"unterminated phrase', []),
    ("col:install", []),                        # not a column: the words col and install
    ("topic:pip", []),
    ("friends", []),                            # topics are not searched
])
def test_search_queries(corpus, query, want):
    assert ids(corpus.search(A, query, MINE)[0]) == want


@pytest.mark.parametrize("query", ["(pip OR", "pip AND", "NOT", "OR pip", "pip NOT", "   "])
def test_bad_search_raises_bad_query(corpus, query):
    with pytest.raises(BadQuery) as e:
        corpus.search(A, query, MINE)
    assert str(e.value) and "\n" not in str(e.value)


def test_search_over_many_rooms(store, monkeypatch):
    monkeypatch.setattr(store_mod, "MAX_PARAMS", 3)   # several statements, merged
    rooms = [f"#r{i}" for i in range(10)]
    put(store, *[say(f"hello from r{i}", room=r) for i, r in enumerate(rooms)],
        dm("hello in private", "bob", B, "alice", A))
    assert ids(store.search(A, "hello", rooms)[0]) == list(range(11, 0, -1))
    assert ids(store.search(A, "hello", rooms, limit=4)[0]) == [11, 10, 9, 8]
    assert ids(store.search(A, "hello", rooms[:5], before=4)[0]) == [3, 2, 1]


# --- reads: unread --------------------------------------------------------------------
def test_unread_counts_mentions_and_read_markers(store):
    put(store,
        say("hi all"),                                          # 1 alice (own: not counted)
        say("hey Bob, look", sender="carol", sid=C),            # 2 mentions bob
        say("bobby is not bob.smith", sender="carol", sid=C),   # 3 no mention
        say("@bob: ping", sender="carol", sid=C, kind="me"),    # 4 mentions bob
        Write(op="event", kind="join", room="#general", sender="dave", sender_sid="d" * 16),  # 5
        say("in python", room="#python", sender="carol", sid=C),  # 6
        dm("lunch, bob?", "carol", C, "bob", B),                # 7 DM to bob, mentions
        dm("ok", "bob", B, "Carol", C),                         # 8 bob's own reply
        dm("and you alice", "alice", A, "bob", B))              # 9
    got = store.unread(B, "bob", ["#general", "#python", "#empty"])
    assert got[:3] == [
        {"type": "unread", "count": 4, "read_id": 0, "last_id": 5, "mentions": 2, "room": "#general"},
        {"type": "unread", "count": 1, "read_id": 0, "last_id": 6, "mentions": 0, "room": "#python"},
        {"type": "unread", "count": 0, "read_id": 0, "last_id": 0, "mentions": 0, "room": "#empty"}]
    dms = {u["with"]: u for u in got[3:]}
    assert [u["with"] for u in got[3:]] == ["alice", "Carol"]   # newest conversation first
    assert dms["Carol"] == {"type": "unread", "count": 1, "read_id": 0, "last_id": 8,
                            "mentions": 1, "with": "Carol"}
    assert dms["alice"]["count"] == 1 and dms["alice"]["last_id"] == 9
    for u in got:
        assert_wire(u)
    put(store, Write(op="read", sid=B, conv="#general", read_id=3),
        Write(op="read", sid=B, conv="@carol", read_id=8))
    after = store.unread(B, "bob", ["#general"])
    assert after[0] == {"type": "unread", "count": 1, "read_id": 3, "last_id": 5, "mentions": 1,
                        "room": "#general"}
    assert {u["with"]: u["count"] for u in after[1:]} == {"alice": 1, "Carol": 0}
    put(store, Write(op="read", sid=B, conv="#general", read_id=1))     # back: ignored
    assert store.read_position(B, "#general") == 3
    assert store.unread(B, "bob", ["#general"])[0]["read_id"] == 3


def test_unread_count_is_capped(store):
    put(store, *[say(f"n{i}", sender="carol", sid=C) for i in range(store_mod.UNREAD_CAP + 50)])
    (u,) = store.unread(B, "bob", ["#general"])
    assert u["count"] == store_mod.UNREAD_CAP and u["last_id"] == store_mod.UNREAD_CAP + 50


def test_reads_while_writing_from_other_threads(store):
    errors, reads = [], [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                frames, _ = store.history(A, room="#general", limit=20)
                assert ids(frames) == sorted(ids(frames))
                store.search(A, "word", ["#general"], limit=5)
                store.unread(A, "alice", ["#general"])
                reads[0] += 1
            except Exception as e:                     # pragma: no cover - reported below
                errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(3000):
            store.submit(say(f"word {i}", sender="bob", sid=B))
        assert store.flush(60)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == [] and reads[0] > 0
    assert store.unread(A, "alice", ["#general"])[0]["count"] == store_mod.UNREAD_CAP


def test_checkpoints_run_off_the_writer_thread(db_path, monkeypatch):
    calls = []

    class Recording(sqlite3.Connection):
        def execute(self, sql, *args):
            if "wal_checkpoint" in sql:
                calls.append(threading.current_thread().name)
            return super().execute(sql, *args)

    def connect(self, path=None):
        conn = sqlite3.connect(path or self._uri, isolation_level=None, check_same_thread=False,
                               factory=Recording)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    monkeypatch.setattr(Store, "_connect", connect)
    monkeypatch.setattr(store_mod, "CHECKPOINT_EVERY", 0.01)
    s = Store(db_path).open()
    try:
        assert s._wconn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == \
            store_mod.WAL_AUTOCHECKPOINT
        s.start()
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            put(s, say("something to checkpoint"))
        assert calls and set(calls) == {"parley-store-checkpoint"}
    finally:
        s.close()


def test_reads_after_close_and_calls_from_on_commit(db_path):
    s = Store(db_path).open()
    problems = []

    def on_commit(batch, error):
        for call in (s.flush, s.close):
            try:
                call()
            except RuntimeError as e:
                problems.append(str(e))

    s.start(on_commit)
    put(s, say("x"))
    assert problems == ["Store.flush() called from on_commit would wait for itself",
                        "Store.close() called from on_commit (the writer thread)"]
    s.history(None, room="#general")                   # this thread now has a connection
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.history(None, room="#general")
    assert s.flush(0.1) is False


def _search_file(db_path):
    return os.path.join(os.path.dirname(db_path), "parley-search.db")


@pytest.mark.parametrize("damage", ["deleted", "garbage", "another database's", "behind"])
def test_a_lost_or_damaged_search_index_is_rebuilt(db_path, damage):
    with Store(db_path) as s:
        s.start()
        put(s, say("alpha one"), say("alpha two", room="#x"), dm("alpha dm", "bob", B, "alice", A))
    search = _search_file(db_path)
    for ext in ("-wal", "-shm"):
        assert not os.path.exists(search + ext)       # closed cleanly
    if damage == "deleted":
        os.remove(search)
    elif damage == "garbage":
        with open(search, "wb") as f:
            f.write(b"not an index" * 1000)
    elif damage == "another database's":
        db = sqlite3.connect(search)
        db.execute("UPDATE meta SET value='000000000000' WHERE key='instance'")
        db.commit()
        db.close()
    else:                                             # crashed before indexing the last ones
        db = sqlite3.connect(search)
        db.execute("INSERT INTO events_fts(events_fts) VALUES ('delete-all')")
        db.execute("UPDATE meta SET value='1' WHERE key='indexed_upto'")
        db.commit()
        db.close()
    with Store(db_path) as s:                         # not an error: the index is derived
        found = ids(s.search(A, "alpha", ["#general", "#x"])[0])
        assert found == ([3, 2] if damage == "behind" else [3, 2, 1])
        assert ids(s.search(C, "alpha", [])[0]) == []


def test_commits_do_not_wait_for_the_search_index(store):
    put(store, say("warm up"))
    blocker = sqlite3.connect(_search_file(store.path), isolation_level=None, timeout=0)
    try:
        blocker.execute("BEGIN IMMEDIATE")            # the index's write lock is taken
        w = say("acknowledged anyway")
        store.submit(w)
        # not blocked by the index's lock (which is held until after this check:
        # blocked, the commit would never come; no timing is measured here)
        assert store.recorder.wait_for(w, 5)
        assert w.id == 2 and w.error is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert ids(store.search(A, "acknowledged", ["#general"])[0]) == [2]


def test_an_older_index_layout_is_rebuilt(db_path):
    with Store(db_path) as s:
        s.start()
        put(s, say("kept in the index"), dm("private words", "bob", B, "alice", A))
    db = sqlite3.connect(db_path, isolation_level=None)
    try:                      # the index as an early version kept it: in parley.db, by trigger
        db.executescript("""
            CREATE VIRTUAL TABLE events_fts USING fts5(text, content='events', content_rowid='id');
            INSERT INTO events_fts(rowid, text) SELECT id, text FROM events;
            CREATE TRIGGER events_fts_ai AFTER INSERT ON events BEGIN
                INSERT INTO events_fts(rowid, text) VALUES (new.id, new.text); END;""")
    finally:
        db.close()
    with Store(db_path) as s:
        s.start()
        put(s, say("kept too"))
        assert ids(s.search(A, "kept", ["#general"])[0]) == [3, 1]      # once each
        assert ids(s.search(A, "private", [], peer="bob")[0]) == [2]
        db = sqlite3.connect(db_path)
        try:
            assert db.execute("SELECT count(*) FROM sqlite_master "
                              "WHERE name LIKE 'events_fts%'").fetchone()[0] == 0
        finally:
            db.close()


def test_search_index_is_merged_while_idle(store):
    for i in range(12):                               # twelve commits: twelve index segments
        put(store, say(f"segment {i}"))
    deadline = time.monotonic() + 10
    while store._merging and time.monotonic() < deadline:
        time.sleep(0.02)                              # (polling an internal flag, not syncing)
    assert not store._merging
    db = sqlite3.connect(_search_file(store.path), isolation_level=None)
    try:
        before = db.total_changes                     # FTS5: a delta < 2 means nothing merged
        db.execute("INSERT INTO events_fts(events_fts, rank) VALUES ('merge', 500)")
        assert db.total_changes - before < 2
    finally:
        db.close()
    assert ids(store.search(A, "segment", ["#general"], limit=20)[0]) == list(range(12, 0, -1))
