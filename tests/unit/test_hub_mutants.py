"""The hub, single-threaded: what each client receives, in which order, with
which ids, acks and errors.  A synchronous in-memory store stands in for
SQLite: writes wait in its queue until the test commits them (``rig.settle()``
or ``rig.store.commit()``), and the hub's reader pool is replaced by a list of
tasks the test runs.  No threads, no sleeps, no clock: these are the tests
that mutation testing runs over ``server/hub.py`` (see docs/testing.md).
test_hub.py covers the same hub with the real store and its writer thread."""
import json
import logging

import pytest

from parley import __version__
from parley import protocol as p
from parley.server import hub as hub_mod
from parley.server.hub import LABEL_WINDOW, PRESENCE_NAMES, BroadcastLog, Hub, token_hash
from parley.server.store import BadQuery, Write

TS = 1_795_000_000_500          # the store's clock, in ms
TS_TEXT = "2026-11-18T11:06:40.500Z"


# --- the rig -----------------------------------------------------------------------------
class SyncStore:
    """The part of store.Store the hub uses, in memory and without a thread."""

    def __init__(self, instance="inst-A", ts=TS):
        self.opened = False
        self.started = False
        self.closed = False
        self.instance = instance
        self.last_id = 0
        self.ts = ts
        self.queue = []               # submitted, not yet committed
        self.events = []              # committed event writes, oldest first
        self.room_rows = {}           # key -> [name, topic]
        self.sessions = {}            # sid -> (name, token hash)
        self.members = {}             # sid -> set of room keys
        self.reads = []               # (sid, conv, read_id)
        self.on_commit = None
        self.page = ([], False)       # what history() and search() answer
        self.unread_frames = None     # what unread() answers (None: computed)
        self.fail = None              # an exception every read raises
        self.calls = []               # (method, args) of the reads

    # life cycle
    def open(self):
        self.opened = True
        return self

    def start(self, on_commit):
        self.started = True
        self.on_commit = on_commit

    def close(self):
        self.closed = True

    # writes
    def submit(self, w, check=True):
        self.queue.append(w)

    def commit(self, error=None):
        """One transaction for everything queued; then the hub's callback."""
        batch, self.queue = self.queue, []
        if not batch:
            return batch
        for w in batch:
            if error is not None:
                if w.op != "barrier":
                    w.id, w.error = None, error
                continue
            if w.op == "event":
                self.last_id += 1
                w.id, w.ts = self.last_id, self.ts
                self.events.append(w)
                if w.kind == "topic":
                    self.room_rows[w.room][1] = w.text
            elif w.op == "room":
                self.room_rows.setdefault(w.room, [w.name, ""])
            elif w.op == "session":
                self.sessions[w.sid] = (w.name, w.token_hash)
            elif w.op == "member_add":
                self.members.setdefault(w.sid, set()).add(w.room)
            elif w.op == "member_remove":
                self.members.get(w.sid, set()).discard(w.room)
            elif w.op == "read":
                self.reads.append((w.sid, w.conv, w.read_id))
        self.on_commit(batch, error)
        return batch

    # reads
    def _read(self, name, *args):
        self.calls.append((name, args))
        if self.fail is not None:
            raise self.fail

    def wire(self, w, me=None):
        ts = p.format_ts(w.ts)
        room = self.room_rows[w.room][0] if w.room is not None else None
        if w.kind in ("say", "me"):
            d = {"type": "message", "id": w.id, "ts": ts, "from": w.sender, "text": w.text,
                 "kind": w.kind}
            if me is not None and w.label is not None and w.sender_sid == me:
                d["label"] = w.label
            if room is not None:
                d["room"] = room
            else:
                d["to"] = w.target
            return d
        if w.kind == "topic":
            return {"type": "topic", "id": w.id, "ts": ts, "room": room, "topic": w.text,
                    "by": w.sender}
        d = {"type": w.kind, "id": w.id, "ts": ts, "name": w.sender}
        if w.kind == "leave":
            d["reason"] = w.text or "quit"
        d["room"] = room
        return d

    def rooms(self):
        self._read("rooms")
        return [(k, n, t) for k, (n, t) in sorted(self.room_rows.items())]

    def recent(self, key, n):
        self._read("recent", key, n)
        return [self.wire(w) for w in self.events if w.room == key][-n:] if n > 0 else []

    def session_by_token_hash(self, h):
        self._read("session_by_token_hash", h)
        for sid, (name, th) in self.sessions.items():
            if th == h:
                return sid, name
        return None

    def memberships(self, sid):
        self._read("memberships", sid)
        return sorted(self.members.get(sid, ()))

    def since(self, last_id, room_keys, sid, limit):
        self._read("since", last_id, list(room_keys), sid, limit)
        rows = [w for w in self.events if w.id > last_id and (
            w.room in room_keys or (w.room is None and sid in (w.sender_sid, w.target_sid)))]
        return [self.wire(w, sid) for w in rows[-limit:]], len(rows) > limit

    def history(self, sid, **kw):
        self._read("history", sid, kw)
        return self.page

    def search(self, sid, query, room_keys, **kw):
        self._read("search", sid, query, list(room_keys), kw)
        return self.page

    def unread(self, sid, name, room_keys):
        self._read("unread", sid, name, list(room_keys))
        if self.unread_frames is not None:
            return self.unread_frames
        return [{"type": "unread", "count": 0, "read_id": 0, "last_id": 0, "mentions": 0,
                 "room": self.room_rows[k][0]} for k in room_keys]


class Readers:
    """The hub's reader pool, run by hand: ``run()`` does what was submitted."""

    def __init__(self):
        self.tasks = []
        self.shut = None

    def submit(self, fn, *args):
        self.tasks.append((fn, args))

    def run(self):
        ran = 0
        while self.tasks:
            fn, args = self.tasks.pop(0)
            fn(*args)
            ran += 1
        return ran

    def shutdown(self, wait=True, cancel_futures=False):
        self.shut = (wait, cancel_futures)


class Member:
    """What connection.Connection does with what the hub gives it: follows logs
    from a position, puts each private frame after the log frame it was pushed
    at, the welcome (``first``) before everything queued."""

    def __init__(self, peer="10.0.0.9:4000"):
        self.peer = peer
        self.legacy = None
        self.cursors = {}
        self.out = []                 # raw frames delivered, in order
        self.held = False
        self.holds = []               # "hold" / "release", in order
        self.was_replaced = False

    def subscribe(self, log, pos):
        self.cursors[log] = pos

    def unsubscribe(self, log):
        self._drain(log, log.end)
        del self.cursors[log]

    def push(self, frame, log=None, pos=0, first=False):
        assert isinstance(frame, bytes) and frame.endswith(b"\n")
        if first:
            self.out.insert(0, frame)
            return
        if log is not None and log in self.cursors:
            self._drain(log, pos)
        self.out.append(frame)

    def _drain(self, log, stop):
        cur = self.cursors[log]
        self.out.extend(log.frames[cur - log.base:stop - log.base])
        self.cursors[log] = max(cur, stop)

    def hold(self):
        self.held = True
        self.holds.append("hold")

    def release(self):
        self.held = False
        self.holds.append("release")

    def replaced(self):
        self.was_replaced = True

    def raw(self):
        for log in list(self.cursors):
            self._drain(log, log.end)
        out, self.out = self.out, []
        return out

    def frames(self):
        return [json.loads(f) for f in self.raw()]


class Rig:
    def __init__(self, store=None, **kw):
        self.store = store or SyncStore()
        kw.setdefault("presence_limit", 3)
        self.hub = Hub(self.store, **kw)
        self.hub.readers.shutdown()
        self.hub.readers = self.readers = Readers()
        self.wakes = []
        self.appends = 0
        self.hub.on_append = self._append
        self.hub.on_wake = lambda members, logs: self.wakes.append((set(members), list(logs)))
        self.hub.start()
        self.settle()

    def _append(self):
        self.appends += 1

    def settle(self):
        while self.store.queue or self.readers.tasks:
            self.store.commit()
            self.readers.run()

    def connect(self, name, rooms=True, member=None, **kw):
        m = member or Member(name)
        assert self.hub.register(m, hello(name, rooms, **kw)) is None
        self.settle()
        frames = m.frames()
        assert frames[0]["type"] == "welcome", frames
        m.welcome, m.after = frames[0], frames[1:]
        return m, self.hub.users[name.casefold()]

    def say(self, m, u, text, **kw):
        assert self.hub.say(m, u, text, **kw) is None
        self.settle()


def hello(name, rooms=True, **kw):
    return p.Hello(version=p.PROTOCOL_VERSION, name=name,
                   caps=[p.CAP_ROOMS] if rooms else None, **kw)


def types(frames):
    return [f["type"] for f in frames]


def texts(frames):
    return [f["text"] for f in frames if f["type"] == "message"]


@pytest.fixture
def rig():
    return Rig()


# --- BroadcastLog ------------------------------------------------------------------------
def frame(i):
    return b"%09d\n" % i             # 10 bytes


def test_log_keeps_everything_up_to_twice_its_bound():
    log = BroadcastLog(keep_bytes=30, name="#py")
    for i in range(6):
        log.append(frame(i), 100 + i)
    assert (log.base, log.end, log.total, log.base_offset) == (0, 6, 60, 0)
    assert log.ids == [100, 101, 102, 103, 104, 105]
    assert log.ends == [10, 20, 30, 40, 50, 60]
    assert log.slice(0, 6) == b"".join(frame(i) for i in range(6))
    assert repr(log) == "<BroadcastLog #py 0..6>"


def test_log_trims_to_the_frames_that_end_past_its_bound():
    log = BroadcastLog(keep_bytes=30)
    for i in range(7):
        log.append(frame(i), 100 + i)
    # 70 bytes > 2 x 30: keep the frames ending after 70 - 30 = 40 (not the one ending at 40)
    assert (log.base, log.end, log.total, log.base_offset) == (4, 7, 70, 40)
    assert log.frames == [frame(4), frame(5), frame(6)]
    assert log.ids == [104, 105, 106]
    assert log.ends == [50, 60, 70]
    assert log.slice(4, 7) == frame(4) + frame(5) + frame(6)
    assert log.slice(5, 6) == frame(5)
    log.append(frame(7), 107)                   # 80 - 40 = 40 <= 60: no trim
    assert (log.base, log.end) == (4, 8)


def test_log_trims_a_big_frame_alone():
    log = BroadcastLog(keep_bytes=10)
    log.append(b"x" * 15 + b"\n", 1)
    log.append(b"y" * 9 + b"\n", 2)
    # 26 > 20: keep from the first frame ending after 16 (the second)
    assert (log.base, log.base_offset, log.frames) == (1, 16, [b"y" * 9 + b"\n"])


def test_log_offsets_and_lag():
    log = BroadcastLog(keep_bytes=30)
    for i in range(7):
        log.append(frame(i), i)
    assert log.offset(4) == 40                  # the base
    assert log.offset(5) == 50
    assert log.offset(7) == 70                  # the end
    assert log.lag(3) is None                   # trimmed away
    assert log.lag(4) == 30
    assert log.lag(6) == 10
    assert log.lag(7) == 0
    assert log.lag(9) == 0                      # beyond the end: nothing owed
    empty = BroadcastLog(keep_bytes=30)
    assert (empty.lag(0), empty.offset(0), empty.end) == (0, 0, 0)


# --- start and close --------------------------------------------------------------------
def test_start_creates_general_once_and_starts_the_writer():
    store = SyncStore(instance="i-1")
    rig = Rig(store)
    assert store.opened and store.started
    assert store.room_rows == {"#general": ["#general", ""]}
    assert rig.hub.instance == "i-1"
    assert list(rig.hub.rooms) == ["#general"]
    assert rig.hub.start() is rig.hub           # a second start does nothing
    assert store.queue == [] and len(store.calls) == 1


def test_start_loads_rooms_with_their_recent_events():
    store = SyncStore()
    store.opened = True
    rig = Rig(store, recent=3)
    a, ua = rig.connect("alice")
    rig.hub.join(a, ua, "#Py", None)
    rig.settle()
    for i in range(5):
        rig.say(a, ua, f"m{i}", room="#py")
    rig.hub.topic(a, ua, "#py", "snakes", None)
    rig.settle()
    again = Rig(store, recent=3, join_history=2)
    hub = again.hub
    assert hub.last_id == store.last_id == rig.hub.last_id
    assert sorted(hub.rooms) == ["#general", "#py"]
    py = hub.rooms["#py"]
    assert (py.key, py.name, py.topic) == ("#py", "#Py", "snakes")
    assert [f.get("text", f["type"]) for f in py.recent] == ["m3", "m4", "topic"]
    assert py.recent.maxlen == 3
    assert ("recent", ("#py", 3)) in store.calls
    assert store.queue == []                    # #general exists: not created again
    b, ub = again.connect("bob")
    hub.join(b, ub, "#py", "j")
    again.settle()
    info = [f for f in b.frames() if f["type"] == "room"][0]
    assert texts(info["history"]) == ["m4"]     # m4, the topic, bob's join


def test_start_opens_only_an_unopened_store():
    store = SyncStore()
    opened = []
    store.open = lambda: opened.append(1)
    store.opened = True
    Rig(store)
    assert opened == []


def test_close_waits_for_readers_then_closes_the_store(rig):
    rig.hub.close()
    assert rig.readers.shut == (True, True)
    assert rig.store.closed


def test_without_a_store_the_hub_makes_an_in_memory_one_with_its_clock():
    clock = lambda: 5.0  # noqa: E731
    hub = Hub(clock=clock)
    try:
        assert hub.store.memory and hub.store.clock is clock
        assert not hub.store.opened
    finally:
        hub.readers.shutdown()


def test_defaults_are_the_documented_limits():
    hub = Hub(SyncStore())
    hub.readers.shutdown()
    assert (hub.history, hub.join_history, hub.presence_limit) == (500, 20, 100)
    assert hub.keep_bytes == 1 << 20
    assert hub.recent_size == 200
    assert hub.limits == {} and hub.last_id == 0 and hub.instance == ""
    assert hub.readers._max_workers == 2


def test_at_least_one_reader_thread():
    hub = Hub(SyncStore(), readers=0)
    try:
        assert hub.readers._max_workers == 1
        assert hub.readers.submit(lambda: 7).result(5) == 7
    finally:
        hub.readers.shutdown()


def test_recent_cache_holds_at_least_the_join_history():
    rig = Rig(recent=2, join_history=4)
    assert rig.hub.recent_size == 4
    a, ua = rig.connect("alice")
    for i in range(6):
        rig.say(a, ua, f"m{i}")
    b, _ = rig.connect("bob")
    # the cache holds the last 4 events: m3, m4, m5 and bob's own join
    assert texts(b.welcome["history"]) == ["m3", "m4", "m5"]


def test_without_on_wake_a_commit_wakes_everyone():
    store = SyncStore()
    hub = Hub(store)
    hub.readers.shutdown()
    hub.readers = Readers()
    woken = []
    hub.on_append = lambda: woken.append(1)
    hub.start()
    store.commit()
    assert woken == [1]


# --- registration and the welcome -------------------------------------------------------
def test_refusals_say_why(rig):
    err = rig.hub.register(Member(), p.Hello(version=7, name="zed"))
    assert err.code == p.VERSION_UNSUPPORTED
    assert err.message == f"this server speaks protocol version {p.PROTOCOL_VERSION}, not 7"
    err = rig.hub.register(Member(), hello("bad name"))
    assert err.code == p.NAME_INVALID
    assert err.message == f"{p.validate_name('bad name')} ({p.NAME_RULES})"
    rig.connect("alice")
    err = rig.hub.register(Member(), hello("ALICE"))
    assert (err.code, err.message) == (p.NAME_TAKEN, "the name 'ALICE' is taken; try another")
    assert rig.hub.register(Member(), hello("alice", token="wrong")).code == p.NAME_TAKEN
    assert rig.store.queue == [] and rig.hub.count == 1


def test_newcomer_welcome(rig):
    rig.hub.limits["rate"] = 5
    m = Member("1.2.3.4:5")
    assert rig.hub.register(m, hello("Alice")) is None
    assert m.legacy is False and m.held and m.out == []
    [session, member_add, join] = rig.store.queue
    assert (session.op, session.name) == ("session", "Alice")
    assert (member_add.op, member_add.sid, member_add.room) == ("member_add", session.sid, "#general")
    assert (join.op, join.kind, join.room, join.sender, join.sender_sid) == (
        "event", "join", "#general", "Alice", session.sid)
    rig.settle()
    welcome, unread = m.frames()
    user = rig.hub.users["alice"]
    assert session.token_hash == token_hash(welcome["token"]) == user.token_hash
    assert welcome == {
        "type": "welcome", "version": p.PROTOCOL_VERSION, "server": f"parley/{__version__}",
        "name": "Alice", "users": ["Alice"], "last_id": join.id, "token": user.token,
        "limits": {"rate": 5}, "history": [], "caps": [p.CAP_ROOMS], "instance": "inst-A",
        "rooms": [{"type": "room", "room": "#general", "count": 1, "topic": "",
                   "members": ["Alice"], "history": []}]}
    assert len(welcome["token"]) >= 24 and len(user.sid) == 16
    assert unread == {"type": "unread", "count": 0, "read_id": join.id, "last_id": join.id,
                      "mentions": 0, "room": "#general"}
    assert m.holds == ["hold", "release"]
    assert user.conns == [m] and user.rooms == {"#general": rig.hub.rooms["#general"]}
    assert user.dm_log.name == "@Alice" and user.dm_log.keep_bytes == rig.hub.keep_bytes
    assert rig.hub.last_id == join.id


def test_two_newcomers_get_different_sessions(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    assert ua.sid != ub.sid and a.welcome["token"] != b.welcome["token"]


def test_others_see_a_join_the_joiner_does_not(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    assert b.welcome["users"] == ["alice", "bob"]
    assert b.welcome["rooms"][0]["members"] == ["alice", "bob"]
    assert b.welcome["rooms"][0]["count"] == 2
    [j] = a.frames()
    assert j == {"type": "join", "id": b.welcome["last_id"], "ts": TS_TEXT, "name": "bob",
                 "room": "#general"}
    assert types(b.after) == ["unread"]
    assert b.frames() == []


def test_names_in_the_welcome_keep_their_spelling_and_unicode_safely(rig):
    rig.connect("Zoë".encode("ascii", "ignore").decode() or "Zo")
    rig.connect("x.y-z_1")
    m, _ = rig.connect("Bob")
    assert m.welcome["users"] == ["Zo", "x.y-z_1", "Bob"]


def test_legacy_client_welcome(rig):
    a, ua = rig.connect("alice")
    old, uold = rig.connect("old", rooms=False)
    assert old.legacy is True and uold.legacy is True
    w = old.welcome
    assert "caps" not in w and "rooms" not in w
    assert w["users"] == ["alice", "old"]
    assert old.after == []                      # no unread counts for protocol 1
    [j] = a.frames()
    assert (j["type"], j["name"]) == ("join", "old")


def test_a_big_server_lists_only_yourself_to_new_clients():
    rig = Rig(presence_limit=2)
    rig.connect("a")
    m, _ = rig.connect("b")
    assert m.welcome["users"] == ["a", "b"]     # as many as the limit: all listed
    m, _ = rig.connect("c")
    assert m.welcome["users"] == ["c"]          # more: ask for the list
    old, _ = rig.connect("old", rooms=False)
    assert old.welcome["users"] == ["a", "b", "c", "old"]   # protocol 1 has no other way


def test_register_logs_who_joined(rig, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    a, ua = rig.connect("alice", member=Member("1.1.1.1:1"))
    token = a.welcome["token"]
    rig.connect("alice", member=Member("1.1.1.1:2"), token=token)
    rig.hub.leave(rig.hub.users["alice"].conns[0], rig.hub.users["alice"], p.QUIT)
    rig.settle()
    rig.connect("alice", member=Member("1.1.1.1:3"), token=token)
    lines = [r.getMessage() for r in caplog.records]
    assert "1.1.1.1:1 alice joined" in lines
    assert "1.1.1.1:2 alice resumed" in lines
    assert "1.1.1.1:2 alice left (quit)" in lines
    assert "1.1.1.1:3 alice reopened its session" in lines


def test_resume_on_a_new_connection_is_quiet(rig):
    a, ua = rig.connect("alice")
    other, _ = rig.connect("other")
    a.frames()
    a2 = Member("new")
    assert rig.hub.register(a2, hello("ALICE", token=a.welcome["token"])) is None
    assert rig.store.queue == []                # nothing to store: the same session
    assert a.was_replaced and not other.was_replaced
    assert ua.conns == [a2] and rig.hub.users["alice"] is ua
    assert a2.held is False                     # no catch-up asked: welcomed at once
    rig.settle()
    welcome, unread = a2.frames()
    assert welcome["name"] == "alice" and welcome["token"] == a.welcome["token"]
    assert welcome["last_id"] == rig.hub.last_id and welcome["history"] == []
    assert unread["type"] == "unread"
    assert other.frames() == []
    rig.hub.leave(a, ua, p.LOST)                # the old connection dying later: no effect
    rig.settle()
    assert rig.hub.users_in(ua, None) == ["alice", "other"] and other.frames() == []
    rig.say(a2, ua, "still here")
    assert texts(other.frames()) == ["still here"]


def test_resume_as_a_protocol_1_client_changes_the_session_to_legacy(rig):
    a, ua = rig.connect("alice")
    old, _ = rig.connect("alice", rooms=False, token=a.welcome["token"])
    assert ua.legacy is True and "caps" not in old.welcome
    assert rig.hub.say(a, ua, "x", to="alice").code == p.DM_UNSUPPORTED


def test_resume_catch_up_up_to_the_welcome(rig):
    a, ua = rig.connect("alice")
    rig.say(a, ua, "seen")
    seen = rig.hub.last_id
    rig.say(a, ua, "missed", label="L")
    a2 = Member("new")
    assert rig.hub.register(a2, hello("alice", token=a.welcome["token"], last_id=seen,
                                      instance="inst-A")) is None
    assert a2.held and a2.out == []             # its catch-up is read on a reader thread
    rig.hub.say(a2, ua, "while reading", label="W")     # stored before the catch-up is read
    rig.store.commit()
    rig.readers.run()
    rig.settle()
    frames = a2.frames()
    assert types(frames) == ["welcome", "message", "ack", "unread"]
    welcome = frames[0]
    assert [(h["text"], h.get("label")) for h in welcome["history"]] == [("missed", "L")]
    assert welcome["last_id"] == seen + 1 and "truncated" not in welcome
    assert frames[1]["text"] == "while reading" and frames[1]["id"] == seen + 2
    assert a2.holds == ["hold", "release"]


def test_resume_with_an_up_to_date_last_id_needs_no_read(rig):
    a, ua = rig.connect("alice")
    rig.say(a, ua, "seen")
    a2 = Member("new")
    rig.hub.register(a2, hello("alice", token=a.welcome["token"], last_id=rig.hub.last_id))
    assert not a2.held and a2.frames()[0]["history"] == []
    assert [c for c in rig.store.calls if c[0] == "since"] == []


def test_another_instance_means_everything(rig):
    a, ua = rig.connect("alice")
    rig.say(a, ua, "m1")
    rig.say(a, ua, "m2")
    last = rig.hub.last_id
    b, _ = rig.connect("bob", last_id=last, instance="another-server")
    assert texts(b.welcome["history"]) == ["m1", "m2"]
    c, _ = rig.connect("carol", last_id=rig.hub.last_id, instance="inst-A")
    assert c.welcome["history"] == []
    d, _ = rig.connect("dave", last_id=rig.hub.last_id)    # no instance given: trusted
    assert d.welcome["history"] == []


def test_reopened_session_from_the_store():
    rig = Rig()
    a, ua = rig.connect("Alice")
    rig.hub.join(a, ua, "#py", None)
    rig.hub.join(a, ua, "#rust", None)
    rig.settle()
    rig.say(a, ua, "bye all", room="#py")
    sid, token = ua.sid, a.welcome["token"]
    rig.hub.leave(a, ua, p.QUIT)
    rig.settle()
    rig.store.members[sid].discard("#general")   # it had left #general
    rig.store.members[sid].add("#gone")          # a room that no longer exists
    queued = len(rig.store.calls)
    m = Member("again")
    assert rig.hub.register(m, hello("alice", token=token)) is None
    assert ("session_by_token_hash", (token_hash(token),)) in rig.store.calls[queued:]
    assert ("memberships", (sid,)) in rig.store.calls[queued:]
    writes = list(rig.store.queue)
    # the same session, its rooms back; no new session, no membership rows to add
    assert [(w.op, w.kind, w.room) for w in writes] == [("event", "join", "#py"),
                                                         ("event", "join", "#rust")]
    rig.settle()
    user = rig.hub.users["alice"]
    assert user.sid == sid and user.name == "Alice" and user.token == token
    assert sorted(user.rooms) == ["#py", "#rust"]
    welcome, *unread = m.frames()
    assert welcome["name"] == "Alice" and welcome["token"] == token
    assert [r["room"] for r in welcome["rooms"]] == ["#py", "#rust"]
    assert ("unread", (sid, "Alice", ["#py", "#rust"])) in rig.store.calls
    assert [u["room"] for u in unread] == ["#py", "#rust"]


def test_reopened_session_without_rooms_goes_to_general():
    rig = Rig()
    a, ua = rig.connect("alice")
    sid, token = ua.sid, a.welcome["token"]
    rig.hub.leave(a, ua, p.QUIT)
    rig.settle()
    rig.store.members[sid] = {"#gone"}
    m = Member()
    rig.hub.register(m, hello("alice", token=token))
    assert [(w.op, w.room) for w in rig.store.queue] == [("member_add", "#general"),
                                                          ("event", "#general")]
    rig.settle()
    assert list(rig.hub.users["alice"].rooms) == ["#general"]


def test_reopened_session_as_protocol_1_is_in_general_only():
    rig = Rig()
    a, ua = rig.connect("alice")
    rig.hub.join(a, ua, "#py", None)
    rig.settle()
    token = a.welcome["token"]
    rig.hub.leave(a, ua, p.QUIT)
    rig.settle()
    old, uold = rig.connect("alice", rooms=False, token=token)
    assert list(uold.rooms) == ["#general"] and uold.sid == ua.sid


def test_a_token_of_another_name_starts_a_new_session(rig):
    a, ua = rig.connect("alice")
    token = a.welcome["token"]
    rig.hub.leave(a, ua, p.QUIT)
    rig.settle()
    b, ub = rig.connect("bob", token=token)
    assert ub.sid != ua.sid and b.welcome["token"] != token
    assert ub.token_hash == token_hash(b.welcome["token"])
    c, uc = rig.connect("carol", token="never-issued")
    assert uc.sid not in (ua.sid, ub.sid) and c.welcome["token"] != "never-issued"


def test_a_token_for_a_name_online_is_not_looked_up(rig):
    a, ua = rig.connect("alice")
    before = len(rig.store.calls)
    rig.connect("alice", token=a.welcome["token"])
    assert [c for c in rig.store.calls[before:] if c[0] == "session_by_token_hash"] == []
