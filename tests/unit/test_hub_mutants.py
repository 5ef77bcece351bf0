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

    # accounts (none, unless a test adds them)
    accounts_by_key: dict = {}
    logins_by_hash: dict = {}

    def account(self, name):
        return self.accounts_by_key.get(name.casefold())

    def account_by_sid(self, sid):
        return next((a for a in self.accounts_by_key.values() if a.sid == sid), None)

    def login_by_token_hash(self, th):
        return self.logins_by_hash.get(th)

    def moderation_rules(self):
        from parley.server.moderation import Rules
        return Rules()

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
        if self.unread_frames is not None:     # (room rows only for the rooms asked)
            return [f for f in self.unread_frames
                    if "room" not in f or f["room"].casefold() in room_keys]
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
        if log in self.cursors:                 # (a log it does not follow yet: nothing)
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
        # (frames exactly as before accounts, unless a test asks for a mode: no
        # "guest" marks.  Accounts and guests: tests/unit/test_hub_accounts.py)
        kw.setdefault("auth", p.AUTH_OFF)
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


def logged(caplog, line):
    """``line`` is one of the hub's log records, word for word."""
    return line in [r.getMessage() for r in caplog.records if r.name == "parley.hub"]


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


def test_newcomer_welcome():
    rig = Rig(auth=p.AUTH_OPTIONAL)
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
                   "members": ["Alice"], "history": [], "guests": ["Alice"]}],
        "auth": "optional", "guests": ["Alice"]}
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


def test_user_list_keeps_arrival_order_and_spelling(rig):
    rig.connect("Zo")
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


# --- catch-up -------------------------------------------------------------------------
def offline(rig, m, u):
    rig.hub.leave(m, u, p.LOST)
    rig.settle()


def test_catch_up_is_what_was_missed_in_own_rooms_and_dms():
    rig = Rig(presence_limit=10)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    c, uc = rig.connect("carol")
    rig.hub.join(c, uc, "#secret", None)
    rig.settle()
    seen = rig.hub.last_id
    # bob's connection is cut (no leave yet): it comes back on a new one
    rig.say(a, ua, "in general")
    rig.say(c, uc, "not for bob", room="#secret")
    rig.say(a, ua, "to carol", to="carol")
    rig.say(c, uc, "to bob", to="bob")
    b2, ub2 = rig.connect("bob", token=b.welcome["token"], last_id=seen, instance="inst-A")
    hist = b2.welcome["history"]
    assert texts(hist) == ["in general", "to bob"]
    assert hist[-1]["to"] == "bob"
    assert b2.welcome["last_id"] == rig.hub.last_id
    assert "truncated" not in b2.welcome
    [since] = [args for name, args in rig.store.calls if name == "since"]
    assert since == (seen, ["#general"], ub.sid, 500)


def test_catch_up_after_a_leave_has_the_leave_but_not_the_new_join():
    rig = Rig(presence_limit=10)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    seen = rig.hub.last_id
    offline(rig, b, ub)
    rig.say(a, ua, "missed")
    b2, ub2 = rig.connect("bob", token=b.welcome["token"], last_id=seen)
    assert [h.get("text", h["type"]) for h in b2.welcome["history"]] == ["leave", "missed"]
    assert b2.welcome["last_id"] == rig.hub.last_id          # its own join
    [since] = [args for name, args in rig.store.calls if name == "since"]
    assert since == (seen, ["#general"], ub.sid, 500 + 1)   # room for its own join


def test_catch_up_bound_is_exact():
    rig = Rig(history=3, presence_limit=10)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    token = b.welcome["token"]
    offline(rig, b, ub)
    mark = rig.hub.last_id                      # after bob's leave
    for i in range(3):
        rig.say(a, ua, f"n{i}")
    b2, ub2 = rig.connect("bob", token=token, last_id=mark)
    assert texts(b2.welcome["history"]) == ["n0", "n1", "n2"]
    assert "truncated" not in b2.welcome
    offline(rig, b2, ub2)
    mark = rig.hub.last_id
    for i in range(4):
        rig.say(a, ua, f"m{i}")
    b3, _ = rig.connect("bob", token=token, last_id=mark)
    assert texts(b3.welcome["history"]) == ["m1", "m2", "m3"]
    assert b3.welcome["truncated"] is True


def test_catch_up_own_joins_do_not_count_against_the_bound():
    rig = Rig(history=2, presence_limit=10)
    a, ua = rig.connect("alice")
    rig.hub.join(a, ua, "#py", None)
    rig.settle()
    token = a.welcome["token"]
    offline(rig, a, ua)
    b, ub = rig.connect("bob")
    rig.hub.join(b, ub, "#py", None)
    rig.settle()
    mark = rig.hub.last_id
    rig.say(b, ub, "one")
    rig.say(b, ub, "two", room="#py")
    # alice comes back: two joins of its own (not shown) and two messages
    a2, _ = rig.connect("alice", token=token, last_id=mark)
    assert texts(a2.welcome["history"]) == ["one", "two"]
    assert "truncated" not in a2.welcome


def test_catch_up_store_failure_falls_back_to_memory_and_says_truncated(caplog):
    rig = Rig(presence_limit=10)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    token = b.welcome["token"]
    seen = rig.hub.last_id
    offline(rig, b, ub)
    rig.say(a, ua, "m1")
    rig.say(a, ua, "m2")
    m = Member()
    rig.hub.register(m, hello("bob", token=token, last_id=seen))
    rig.store.commit()
    rig.hub.say(a, ua, "after the welcome point")   # newer than the watermark: not in history
    rig.store.commit()
    rig.store.fail = RuntimeError("disk gone")
    rig.readers.run()
    frames = m.frames()
    welcome = frames[0]
    # (from memory, its own join of just now is in it too)
    assert [h.get("text", h["type"]) for h in welcome["history"]] == ["leave", "m1", "m2", "join"]
    assert texts(frames[1:]) == ["after the welcome point"]
    assert welcome["truncated"] is True
    assert logged(caplog, "catch-up for bob failed: disk gone")
    assert logged(caplog, "unread counts for bob failed: disk gone")


def test_catch_up_for_protocol_1_has_no_dms_and_no_topics(rig):
    a, ua = rig.connect("alice")
    old, uold = rig.connect("old", rooms=False)
    b, ub = rig.connect("bob")
    seen = rig.hub.last_id
    offline(rig, old, uold)
    rig.hub.topic(a, ua, None, "new topic", None)
    rig.say(a, ua, "dm", to="bob")
    rig.say(a, ua, "public")
    old2, _ = rig.connect("old", rooms=False, token=old.welcome["token"], last_id=seen)
    assert [h.get("text", h["type"]) for h in old2.welcome["history"]] == ["leave", "public"]


def test_newcomer_history_is_the_last_chat_of_each_room_by_id():
    rig = Rig(join_history=2, presence_limit=10)
    a, ua = rig.connect("alice")
    rig.hub.join(a, ua, "#py", None)
    rig.settle()
    rig.say(a, ua, "g1")
    rig.say(a, ua, "p1", room="#py")
    rig.say(a, ua, "g2")
    rig.say(a, ua, "p2", room="#py")
    rig.say(a, ua, "g3")
    rig.hub.topic(a, ua, None, "t", None)
    rig.settle()
    token = a.welcome["token"]
    offline(rig, a, ua)
    a2, _ = rig.connect("alice", token=token)  # no last_id: as a newcomer
    assert texts(a2.welcome["history"]) == ["p1", "g2", "p2", "g3"]
    assert [r["room"] for r in a2.welcome["rooms"]] == ["#general", "#py"]
    assert texts(a2.welcome["rooms"][1]["history"]) == ["p1", "p2"]


def test_no_join_history_means_no_recent_messages():
    rig = Rig(join_history=0)
    a, ua = rig.connect("alice")
    rig.say(a, ua, "hello")
    b, _ = rig.connect("bob")
    assert b.welcome["history"] == [] and b.welcome["rooms"][0]["history"] == []


def test_default_join_history_is_twenty():
    rig = Rig()
    a, ua = rig.connect("alice")
    for i in range(25):
        rig.say(a, ua, f"m{i}")
    b, _ = rig.connect("bob")
    assert texts(b.welcome["history"]) == [f"m{i}" for i in range(5, 25)]


def test_default_catch_up_is_five_hundred():
    rig = Rig()
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    token = b.welcome["token"]
    offline(rig, b, ub)
    mark = rig.hub.last_id
    for i in range(501):
        rig.hub.say(a, ua, f"m{i}")
    rig.settle()
    b2, _ = rig.connect("bob", token=token, last_id=mark)
    assert len(b2.welcome["history"]) == 500 and b2.welcome["history"][0]["text"] == "m1"
    assert b2.welcome["truncated"] is True


def test_unread_after_a_resume_comes_from_the_store(rig):
    a, ua = rig.connect("alice")
    rig.store.unread_frames = [{"type": "unread", "count": 3, "read_id": 1, "last_id": 9,
                                "mentions": 1, "room": "#general"}]
    a2, _ = rig.connect("alice", token=a.welcome["token"])
    assert a2.after == [rig.store.unread_frames[0]]


def test_unread_of_a_new_session_is_zero_up_to_the_newest_event(rig):
    a, ua = rig.connect("alice")
    [u] = a.after
    assert u == {"type": "unread", "count": 0, "read_id": a.welcome["last_id"],
                 "last_id": a.welcome["last_id"], "mentions": 0, "room": "#general"}


def test_unread_of_a_new_session_in_a_room_without_events():
    rig = Rig(presence_limit=0)                 # no join notices: the room has no events
    a, ua = rig.connect("alice")
    assert a.welcome["last_id"] == 0
    assert a.after == [{"type": "unread", "count": 0, "read_id": 0, "last_id": 0,
                        "mentions": 0, "room": "#general"}]


# --- say, ack after commit ------------------------------------------------------------
def test_message_is_sent_and_acked_only_once_stored(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    a.frames()
    assert rig.hub.say(a, ua, "hi", label="L1") is None
    assert a.frames() == [] and b.frames() == []        # nothing before the commit
    [w] = rig.store.queue
    assert (w.op, w.kind, w.room, w.sender, w.sender_sid, w.text, w.label) == (
        "event", "say", "#general", "alice", ua.sid, "hi", "L1")
    rig.store.commit()
    got = a.raw()
    assert got == [
        b'{"type":"message","id":%d,"ts":"%s","from":"alice","text":"hi","kind":"say",'
        b'"room":"#general"}\n' % (w.id, TS_TEXT.encode()),
        b'{"type":"ack","label":"L1","id":%d}\n' % w.id]
    assert b.raw() == got[:1]
    assert rig.hub.last_id == w.id
    members, logs = rig.wakes[-1]
    assert members == {a} and logs == [rig.hub.rooms["#general"].log]


def test_acks_follow_their_messages_in_order(rig):
    a, ua = rig.connect("alice")
    a.frames()
    for i in range(3):
        rig.hub.say(a, ua, f"m{i}", kind="me" if i == 1 else "say", label=f"L{i}")
    rig.store.commit()                          # one batch
    frames = a.frames()
    assert types(frames) == ["message", "ack"] * 3
    ids = [f["id"] for f in frames]
    assert ids == [ids[0], ids[0], ids[0] + 1, ids[0] + 1, ids[0] + 2, ids[0] + 2]
    assert [f.get("label") for f in frames[1::2]] == ["L0", "L1", "L2"]
    assert [f["kind"] for f in frames[::2]] == ["say", "me", "say"]


def test_message_without_label_has_no_ack(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.say(a, ua, "x")
    assert types(a.frames()) == ["message"]
    assert rig.wakes[-1][0] == set()


def test_message_text_is_encoded_exactly_once_right(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    text = 'quote " backslash \\ é 👋 \u2028'
    rig.say(a, ua, text, kind="me", label="é")
    raw = rig.hub.rooms["#general"].log.frames[-1]
    ev = p.decode_line(raw.rstrip(b"\n"), p.SERVER_FRAMES)
    assert (ev.sender, ev.text, ev.kind, ev.room) == ("alice", text, "me", "#general")
    assert raw == p.encode(ev) and "é".encode() in raw
    ack = [f for f in a.raw() if b'"ack"' in f][-1]
    assert ack == p.encode(p.Ack(label="é", id=ev.id))
    assert rig.hub.rooms["#general"].recent[-1] == ev.to_dict()


def test_room_message_uses_the_rooms_own_spelling(rig):
    a, ua = rig.connect("alice")
    rig.hub.join(a, ua, "#PyThon", None)
    rig.settle()
    a.frames()
    rig.say(a, ua, "x", room="#python")
    [m] = a.frames()
    assert m["room"] == "#PyThon"


def test_refused_messages(rig):
    a, ua = rig.connect("alice")
    c, uc = rig.connect("carol")
    rig.hub.join(a, ua, "#py", None)
    rig.settle()
    err = rig.hub.say(a, ua, "x", room="#py", to="carol", label="L")
    assert (err.code, err.label) == (p.BAD_REQUEST, "L")
    assert err.message == "a message goes to a room or to a user, not both"
    err = rig.hub.say(c, uc, "x", room="#py", label="L")
    assert (err.code, err.label, err.message) == (p.NOT_MEMBER, "L",
                                                  "you are not in #py; join it first")
    err = rig.hub.say(c, uc, "x", room="#nope", label="L")
    assert (err.code, err.label, err.message) == (
        p.NO_SUCH_ROOM, "L", "there is no room #nope; /join #nope creates it")
    err = rig.hub.say(c, uc, "x", room="nope", label="L")
    assert (err.code, err.label) == (p.ROOM_INVALID, "L")
    assert err.message == f"{p.validate_room('nope')} ({p.ROOM_RULES})"
    err = rig.hub.say(a, ua, "x", to="ghost", label="L")
    assert (err.code, err.label, err.message) == (p.NO_SUCH_USER, "L",
                                                  "nobody called 'ghost' is online")
    rig.connect("old", rooms=False)
    err = rig.hub.say(a, ua, "x", to="OLD", label="L")
    assert (err.code, err.label, err.message) == (
        p.DM_UNSUPPORTED, "L", "old's client does not support direct messages")
    assert rig.store.queue == [] and ua.labels == {}   # a refused label can be used again


def test_empty_room_means_general(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.say(a, ua, "x", room="")
    assert [m["room"] for m in a.frames()] == ["#general"]


def test_resent_label_is_acked_again_not_stored_twice(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.say(a, ua, "once", label="L")
    first = a.frames()
    assert rig.hub.say(a, ua, "once", label="L") is None
    assert rig.store.queue == []
    assert a.raw() == [b'{"type":"ack","label":"L","id":%d}\n' % first[0]["id"]]


def test_resent_label_still_being_stored_waits_for_its_ack(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.hub.say(a, ua, "once", label="L")
    assert rig.hub.say(a, ua, "once", label="L") is None     # before the commit
    assert len(rig.store.queue) == 1 and a.frames() == []
    rig.store.commit()
    assert types(a.frames()) == ["message", "ack"]


def test_labels_are_remembered_for_a_window(rig):
    a, ua = rig.connect("alice")
    for i in range(LABEL_WINDOW + 1):
        rig.hub.say(a, ua, "x", label=f"L{i}")
    rig.settle()
    assert LABEL_WINDOW == 256 and len(ua.labels) == LABEL_WINDOW
    a.frames()
    rig.hub.say(a, ua, "x", label="L0")         # forgotten: stored again
    assert len(rig.store.queue) == 1
    rig.store.queue.clear()
    rig.hub.say(a, ua, "x", label="L2")         # remembered (L1 made room for L0)
    assert rig.store.queue == [] and types(a.frames()) == ["ack"]


def test_acks_go_to_every_connection_of_the_user_and_a_closing_one(rig):
    a, ua = rig.connect("alice")
    a2, _ = rig.connect("alice", token=a.welcome["token"])
    a.frames()
    ua.conns.append(a)                          # (two live connections)
    rig.say(a, ua, "x", label="L")
    assert types(a.frames()) == ["message", "ack"]
    assert types(a2.frames()) == ["message", "ack"]
    bye = Member()
    rig.hub.say(bye, ua, "last words", label="B")   # a connection that said bye
    rig.store.commit()
    assert types(bye.frames()) == ["ack"]
    assert rig.wakes[-1][0] == {a, a2, bye}


def test_a_store_failure_is_an_error_never_an_ack(rig, caplog):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    a.frames()
    rig.hub.say(a, ua, "lost", label="L")
    rig.hub.say(a, ua, "lost too")
    rig.store.commit(error="disk full")
    assert a.raw() == [p.encode(p.Error(p.STORE_FAILED, "the server could not store that; "
                                        "it was not sent (try again)", "L"))]
    assert b.frames() == [] and rig.hub.last_id == 2
    assert rig.wakes[-1] == ({a}, [])
    assert logged(caplog, "could not store a say from alice: disk full")
    assert ua.labels == {}                      # the label can be sent again, and is stored
    rig.say(a, ua, "kept", label="L")
    assert types(a.frames()) == ["message", "ack"]


def test_a_failed_write_with_a_closed_sender_still_reaches_it(rig):
    a, ua = rig.connect("alice")
    bye = Member()
    rig.hub.say(bye, ua, "x", label="L")
    rig.store.commit(error="disk full")
    assert types(bye.frames()) == ["error"]
    assert rig.wakes[-1][0] == {a, bye}


def test_a_write_the_store_skipped_is_an_error(rig, caplog):
    a, ua = rig.connect("alice")
    a.frames()
    rig.hub.say(a, ua, "x", label="L")
    [w] = rig.store.queue
    rig.store.queue = []
    rig.hub.committed([w], None)                # id None: not stored
    assert types(a.frames()) == ["error"]
    assert logged(caplog, "could not store a say from alice: not stored")


def test_failed_notices_are_only_logged(rig, caplog):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    a.frames()
    rig.hub.leave(b, ub, p.QUIT)
    rig.hub.store_barrier(lambda: None)
    rig.store.commit(error="disk full")
    assert a.frames() == []
    assert logged(caplog, "could not store a leave from bob: disk full")


def test_failed_other_writes_are_logged_and_replies_not_run(rig, caplog):
    ran = []
    rig.hub.store_barrier(lambda: ran.append(1))
    rig.store.submit(Write(op="room", room="#x", name="#x"))
    rig.store.commit(error="disk full")
    assert ran == []
    assert logged(caplog, "could not store room: disk full")
    rig.hub.store_barrier(lambda: ran.append(2))
    rig.store.commit()
    assert ran == [2]


def test_barrier_runs_after_what_was_submitted_before(rig):
    a, ua = rig.connect("alice")
    seen = []
    rig.hub.say(a, ua, "x", label="L")
    rig.hub.store_barrier(lambda: seen.append(types(a.frames())))
    [_, barrier] = rig.store.queue
    assert barrier.op == "barrier"
    rig.store.commit()
    assert seen == [["message", "ack"]]


def test_a_failed_registration_join_still_welcomes(rig, caplog):
    m = Member()
    rig.hub.register(m, hello("alice"))
    rig.store.commit(error="disk full")
    rig.settle()
    frames = m.frames()
    assert types(frames) == ["welcome", "unread"]
    assert frames[0]["last_id"] == 0
    assert m.holds == ["hold", "release"]
    rig.say(m, rig.hub.users["alice"], "works")
    assert texts(m.frames()) == ["works"]


# --- direct messages ----------------------------------------------------------------------
def test_dm_goes_to_both_only(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("Bob")
    c, uc = rig.connect("carol")
    for m in (a, b, c):
        m.frames()
    assert rig.hub.say(a, ua, "psst", to="bob", label="L") is None
    [w] = rig.store.queue
    assert (w.room, w.target, w.target_sid, w.sender_sid) == (None, "Bob", ub.sid, ua.sid)
    rig.store.commit()
    raw = b'{"type":"message","id":%d,"ts":"%s","from":"alice","text":"psst","kind":"say",' \
          b'"to":"Bob"}\n' % (w.id, TS_TEXT.encode())
    assert a.raw() == [raw, b'{"type":"ack","label":"L","id":%d}\n' % w.id]
    assert b.raw() == [raw]
    assert c.raw() == []
    assert rig.hub.rooms["#general"].log.end == 3       # not in the room's log
    members, logs = rig.wakes[-1]
    assert members == {a} and set(logs) == {ua.dm_log, ub.dm_log}
    assert rig.hub.last_id == w.id


def test_dm_to_oneself_arrives_once(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.say(a, ua, "note", to="ALICE", label="L")
    assert types(a.frames()) == ["message", "ack"]
    assert ua.dm_log.end == 1


def test_dm_to_someone_who_left_before_the_commit(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    a.frames()
    rig.hub.say(a, ua, "psst", to="bob", label="L")
    rig.hub.leave(b, ub, p.QUIT)
    rig.connect("bob")                          # someone else by that name now
    rig.store.commit()
    assert rig.hub.users["bob"].dm_log.end == 0     # not the bob it was meant for
    assert texts(a.frames()) == ["psst"] and ua.dm_log.end == 1


def test_dm_sender_gone_recipient_still_gets_it(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    b.frames()
    rig.hub.say(a, ua, "psst", to="bob")
    rig.hub.leave(a, ua, p.QUIT)
    rig.settle()
    assert texts(b.frames()) == ["psst"]


# --- rooms: join, part, topic ---------------------------------------------------------------
def test_join_creates_a_room_and_answers_once_stored(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    a.frames()
    assert rig.hub.join(a, ua, "#Py", "J") is None
    [room, add, ev] = rig.store.queue
    assert (room.op, room.room, room.name) == ("room", "#py", "#Py")
    assert (add.op, add.sid, add.room) == ("member_add", ua.sid, "#py")
    assert (ev.op, ev.kind, ev.room, ev.sender, ev.sender_sid) == ("event", "join", "#py",
                                                                   "alice", ua.sid)
    assert a.frames() == []
    assert rig.appends >= 1
    rig.store.commit()
    [info] = a.frames()
    assert info == {"type": "room", "room": "#Py", "count": 1, "topic": "",
                    "members": ["alice"], "history": [], "label": "J"}
    assert b.frames() == []                     # not in #py
    assert rig.store.room_rows["#py"] == ["#Py", ""]
    assert rig.wakes[-1][0] == {a}
    # it follows the room from its join on
    rig.hub.join(b, ub, "#PY", None)
    rig.settle()
    [j] = a.frames()
    assert (j["type"], j["name"], j["room"]) == ("join", "bob", "#Py")
    [info] = b.frames()
    assert info["members"] == ["alice", "bob"] and "label" not in info


def test_join_answers_every_connection_the_label_only_to_the_asker(rig):
    a, ua = rig.connect("alice")
    a2, _ = rig.connect("alice", token=a.welcome["token"])
    ua.conns.insert(0, a)
    a.frames()
    rig.hub.join(a2, ua, "#py", "J")
    rig.settle()
    [info] = a.frames()
    [info2] = a2.frames()
    assert "label" not in info and info2["label"] == "J"
    rig.say(a, ua, "both see it", room="#py")
    assert texts(a.frames()) == texts(a2.frames()) == ["both see it"]


def test_join_without_label_answers_all_connections_alike(rig):
    a, ua = rig.connect("alice")
    a2, _ = rig.connect("alice", token=a.welcome["token"])
    ua.conns.insert(0, a)
    a.frames()
    rig.hub.join(a2, ua, "#py", None)
    rig.settle()
    assert a.frames() == a2.frames()


def test_join_a_room_already_in_tells_it_again(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.hub.join(a, ua, "#GENERAL", "J")
    assert rig.store.queue == []
    [info] = a.frames()
    assert (info["type"], info["room"], info["label"], info["count"]) == ("room", "#general",
                                                                          "J", 1)


def test_join_refusals(rig):
    a, ua = rig.connect("alice")
    err = rig.hub.join(a, ua, "py", "J")
    assert (err.code, err.label) == (p.ROOM_INVALID, "J")
    assert err.message == f"{p.validate_room('py')} ({p.ROOM_RULES})"
    old, uold = rig.connect("old", rooms=False)
    err = rig.hub.join(old, uold, "#py", "J")
    assert (err.code, err.label, err.message) == (
        p.BAD_REQUEST, "J", "ask for the rooms capability to join rooms")
    assert rig.store.queue == [] and "#py" not in rig.hub.rooms
    assert rig.hub.join(old, uold, "#General", "J") is None     # its own room: fine
    assert types(old.frames())[-1] == "room"


def test_joining_a_big_room_is_presence_and_answered_at_once():
    rig = Rig(presence_limit=1)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")                  # #general is big now
    assert [w.kind for w in rig.store.events].count("join") == 1
    a.frames()
    assert b.after == [{"type": "unread", "count": 0, "read_id": 1, "last_id": 1,
                        "mentions": 0, "room": "#general"}]
    rig.hub.join(a, ua, "#py", None)
    rig.settle()
    a.frames()
    rig.hub.join(b, ub, "#py", "J")
    assert [w.op for w in rig.store.queue] == ["member_add"]    # no join notice
    [info] = b.frames()                         # answered before the commit
    assert (info["room"], info["count"], info["label"]) == ("#py", 2, "J")
    assert "members" not in info
    rig.settle()
    assert a.frames() == []
    rig.hub.flush_presence(now=10.0)
    frames = sorted(a.frames(), key=lambda f: f["room"])
    assert frames == [{"type": "presence", "room": room, "count": 2, "joined": ["bob"],
                       "left": [], "joined_count": 1, "left_count": 0}
                      for room in ("#general", "#py")]


def test_part_leaves_the_room(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    for m, u in ((a, ua), (b, ub)):
        rig.hub.join(m, u, "#py", None)
        rig.settle()
    a.frames()
    b.frames()
    assert rig.hub.part(b, ub, "#PY", "P") is None
    assert "#py" not in ub.rooms and "bob" not in rig.hub.rooms["#py"].members
    [rm, ev] = rig.store.queue
    assert (rm.op, rm.sid, rm.room) == ("member_remove", ub.sid, "#py")
    assert (ev.op, ev.kind, ev.room, ev.sender, ev.sender_sid, ev.text) == (
        "event", "leave", "#py", "bob", ub.sid, p.PART)
    rig.store.commit()
    [leave] = a.frames()
    assert (leave["type"], leave["name"], leave["reason"], leave["room"]) == (
        "leave", "bob", "part", "#py")
    assert b.raw() == [b'{"type":"ack","label":"P","id":%d}\n' % ev.id]
    rig.say(a, ua, "gone?", room="#py")
    assert b.frames() == []
    assert rig.hub.say(b, ub, "x", room="#py").code == p.NOT_MEMBER


def test_part_refusals(rig):
    a, ua = rig.connect("alice")
    old, uold = rig.connect("old", rooms=False)
    err = rig.hub.part(old, uold, "#general", "P")
    assert (err.code, err.label, err.message) == (
        p.BAD_REQUEST, "P", "a protocol 1 client cannot leave #general")
    err = rig.hub.part(a, ua, "#nope", "P")
    assert (err.code, err.label) == (p.NO_SUCH_ROOM, "P")
    assert rig.store.queue == []


def test_part_of_a_big_room_is_presence_and_acked_at_once():
    rig = Rig(presence_limit=2)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    c, uc = rig.connect("carol")                # 3 > 2: a big room
    a.frames()
    b.frames()
    rig.hub.part(b, ub, "#general", "P")        # 2 left: still big for a leave
    assert [w.op for w in rig.store.queue] == ["member_remove"]
    assert b.raw() == [b'{"type":"ack","label":"P"}\n']
    rig.hub.part(c, uc, "#general", None)       # 1 left: a small room again
    assert [w.op for w in rig.store.queue] == ["member_remove", "member_remove", "event"]
    assert c.frames() == []
    rig.settle()
    rig.hub.flush_presence(now=10.0)
    frames = a.frames()
    assert types(frames) == ["leave", "presence"]
    assert frames[0]["name"] == "carol"
    assert (frames[1]["left"], frames[1]["left_count"], frames[1]["count"]) == (["bob"], 1, 1)


def test_part_of_a_big_room_without_label_has_no_ack():
    rig = Rig(presence_limit=1)
    rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.connect("carol")
    b.frames()
    rig.hub.part(b, ub, "#general", None)
    assert b.frames() == []


def test_topic_is_stored_then_announced_and_acked(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    a.frames()
    assert rig.hub.topic(a, ua, "#General", "  new\ntopic  ", "T") is None
    [w] = rig.store.queue
    assert (w.op, w.kind, w.room, w.sender, w.sender_sid, w.text) == (
        "event", "topic", "#general", "alice", ua.sid, "new topic")
    assert rig.hub.rooms["#general"].topic == ""        # not before it is stored
    rig.store.commit()
    topic = {"type": "topic", "id": w.id, "ts": TS_TEXT, "room": "#general",
             "topic": "new topic", "by": "alice"}
    assert a.frames() == [topic, {"type": "ack", "label": "T", "id": w.id}]
    assert b.frames() == [topic]
    assert rig.hub.rooms["#general"].topic == "new topic"
    assert rig.hub.rooms_list(ua)[0]["topic"] == "new topic"
    rig.hub.topic(a, ua, None, "", None)        # cleared
    rig.settle()
    assert rig.hub.rooms["#general"].topic == ""
    assert b.frames()[0]["topic"] == ""


def test_topic_refusals(rig):
    a, ua = rig.connect("alice")
    err = rig.hub.topic(a, ua, "#general", "x" * (p.TOPIC_MAX + 1), "T")
    assert (err.code, err.label, err.message) == (
        p.TOPIC_TOO_LONG, "T", f"a topic is at most {p.TOPIC_MAX} characters")
    assert rig.hub.topic(a, ua, "#general", "x" * p.TOPIC_MAX, "T") is None
    err = rig.hub.topic(a, ua, "#general", "bell\x07", "T")
    assert (err.code, err.label) == (p.BAD_TEXT, "T")
    assert err.message == "topic contains control characters"
    err = rig.hub.topic(a, ua, "#nope", "x", "T")
    assert (err.code, err.label) == (p.NO_SUCH_ROOM, "T")
    assert len(rig.store.queue) == 1


def test_rooms_list_and_users(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.hub.join(a, ua, "#Zed", None)
    rig.hub.join(a, ua, "#abc", None)
    rig.settle()
    assert rig.hub.rooms_list(ub) == [
        {"room": "#abc", "topic": "", "count": 1, "joined": False},
        {"room": "#general", "topic": "", "count": 2, "joined": True},
        {"room": "#Zed", "topic": "", "count": 1, "joined": False}]
    assert rig.hub.rooms_list(ua)[0]["joined"] is True
    assert rig.hub.users_in(ub, None) == ["alice", "bob"]
    assert rig.hub.users_in(ub, "#ZED") == ["alice"]
    err = rig.hub.users_in(ub, "#nope")
    assert (err.code, err.message) == (p.NO_SUCH_ROOM, "there is no room #nope")
    assert rig.hub.count == 2


# --- leaving and presence -------------------------------------------------------------------
def test_leave_announces_in_every_small_room(rig, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob", member=Member("9.9.9.9:9"))
    for m, u in ((a, ua), (b, ub)):
        rig.hub.join(m, u, "#py", None)
        rig.settle()
    a.frames()
    rig.hub.leave(b, ub, p.TIMEOUT)
    assert "bob" not in rig.hub.users and rig.hub.count == 1
    assert [(w.kind, w.room, w.sender, w.sender_sid, w.text) for w in rig.store.queue] == [
        ("leave", "#general", "bob", ub.sid, "timeout"), ("leave", "#py", "bob", ub.sid, "timeout")]
    rig.store.commit()
    frames = a.frames()
    assert sorted((f["type"], f["name"], f["reason"], f["room"]) for f in frames) == [
        ("leave", "bob", "timeout", "#general"), ("leave", "bob", "timeout", "#py")]
    assert rig.hub.users_in(ua, "#py") == ["alice"]
    assert logged(caplog, "9.9.9.9:9 bob left (timeout)")
    rig.hub.leave(b, ub, p.TIMEOUT)             # twice is harmless
    rig.hub.leave(b, None, p.TIMEOUT)
    assert rig.store.queue == []
    b2, ub2 = rig.connect("BOB")                # the name is free
    assert ub2.sid != ub.sid


def test_leave_of_one_connection_of_two_keeps_the_user(rig):
    a, ua = rig.connect("alice")
    a2, _ = rig.connect("alice", token=a.welcome["token"])
    ua.conns.append(a)
    rig.hub.leave(a, ua, p.LOST)
    assert ua.conns == [a2] and rig.hub.users["alice"] is ua
    assert rig.store.queue == []


def test_leave_of_a_replaced_user_object_does_nothing(rig):
    a, ua = rig.connect("alice")
    token = a.welcome["token"]
    rig.hub.leave(a, ua, p.LOST)
    rig.settle()
    a2, ua2 = rig.connect("alice", token=token)
    ua.conns.append(a)                          # a stale user object still holding a member
    rig.hub.leave(a, ua, p.LOST)
    assert rig.hub.users["alice"] is ua2 and rig.store.queue == []


def test_leave_of_a_big_room_is_coalesced(rig):
    watcher, _ = rig.connect("watcher")
    members = [rig.connect(f"u{i}") for i in range(4)]
    watcher.frames()
    # 5 members > 3: u3 is gone with no notice; the room stays big until 3 are left
    rig.hub.leave(*members[0], p.QUIT)          # 4 left: still >= 3
    rig.hub.leave(*members[1], p.QUIT)          # 3 left: still >= 3
    rig.hub.leave(*members[2], p.QUIT)          # 2 left: a notice
    rig.settle()
    assert [(f["type"], f["name"]) for f in watcher.frames()] == [("leave", "u2")]
    rig.hub.flush_presence(now=50.0)
    [pres] = watcher.frames()
    assert (pres["left"], pres["left_count"], pres["count"]) == (["u0", "u1"], 2, 2)


def test_presence_is_coalesced_and_at_most_once_a_second(rig):
    watcher, _ = rig.connect("watcher")
    watcher.frames()
    members = [rig.connect(f"u{i}") for i in range(8)]
    frames = watcher.frames()
    assert [f["name"] for f in frames if f["type"] == "join"] == ["u0", "u1"]
    rig.hub.flush_presence(now=1000.0)
    [pres] = watcher.frames()
    assert pres == {"type": "presence", "room": "#general", "count": 9,
                    "joined": ["u2", "u3", "u4", "u5", "u6"], "left": [],
                    "joined_count": 6, "left_count": 0}
    assert PRESENCE_NAMES == 5
    assert rig.wakes[-1] == (set(), [rig.hub.rooms["#general"].log])
    log = rig.hub.rooms["#general"].log
    assert log.ids[-1] == rig.hub.last_id       # sorts after what came before it
    rig.hub.flush_presence(now=1000.2)          # nothing new: nothing sent
    assert watcher.frames() == []
    rig.hub.leave(*members[0], p.QUIT)
    rig.hub.flush_presence(now=1000.5)          # within a second of the last one
    assert watcher.frames() == []
    rig.hub.flush_presence(now=1000.999)
    assert watcher.frames() == []
    rig.hub.flush_presence(now=1001.0)
    [pres] = watcher.frames()
    assert (pres["count"], pres["left"], pres["left_count"], pres["joined"]) == (8, ["u0"], 1, [])


def test_came_and_went_within_a_second_says_neither(rig):
    watcher, _ = rig.connect("watcher")
    members = [rig.connect(f"u{i}") for i in range(3)]       # u2 makes it big
    rig.hub.flush_presence(now=100.0)
    watcher.frames()
    rig.hub.leave(*members[2], p.QUIT)
    m, u = rig.connect("u2")
    rig.hub.leave(m, u, p.QUIT)
    x, ux = rig.connect("x")
    rig.hub.flush_presence(now=200.0)
    [pres] = watcher.frames()
    assert (pres["joined"], pres["joined_count"], pres["left"], pres["left_count"]) == (
        ["x"], 1, ["u2"], 1)
    y, uy = rig.connect("y")
    rig.hub.leave(y, uy, p.QUIT)                # joined then left: nothing at all
    rig.hub.flush_presence(now=300.0)
    assert watcher.frames() == []


def test_presence_with_nothing_to_flush_and_the_real_clock(rig):
    n = len(rig.wakes)
    rig.hub.flush_presence()                    # nothing dirty: nothing at all
    assert len(rig.wakes) == n
    big = Rig(presence_limit=0)
    w, _ = big.connect("w")
    big.connect("v")
    n = len(big.wakes)
    big.hub.flush_presence()                    # time.monotonic(): later than -inf
    assert len(big.wakes) == n + 1
    assert types(w.frames()) == ["presence"]


# --- history, search, read markers ------------------------------------------------------------
def history(**kw):
    return p.HistoryRequest(**kw)


def test_history_of_a_room_is_read_on_a_reader_and_answered(rig):
    a, ua = rig.connect("alice")
    rig.hub.join(a, ua, "#Py", None)
    rig.settle()
    a.frames()
    page = [{"type": "message", "id": 3, "ts": TS_TEXT, "from": "x", "text": "old",
             "kind": "say", "room": "#Py"}]
    rig.store.page = (page, True)
    n = rig.appends
    assert rig.hub.query(a, ua, history(room="#PY", before=9, label="H")) is None
    assert a.frames() == [] and len(rig.readers.tasks) == 1
    rig.readers.run()
    assert a.frames() == [{"type": "history", "messages": page, "more": True, "room": "#Py",
                           "label": "H"}]
    assert rig.appends == n + 1
    [(_, (sid, kw))] = [c for c in rig.store.calls if c[0] == "history"]
    assert sid == ua.sid
    assert kw == {"room": "#py", "peer": None, "before": 9, "after": None, "limit": 50}


def test_history_of_a_dm_conversation(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.hub.query(a, ua, history(peer="BoB", after=4, limit=p.PAGE_MAX))
    rig.readers.run()
    assert a.frames() == [{"type": "history", "messages": [], "more": False, "with": "BoB"}]
    [(_, (sid, kw))] = [c for c in rig.store.calls if c[0] == "history"]
    assert kw == {"room": None, "peer": "bob", "before": None, "after": 4, "limit": p.PAGE_MAX}


def test_query_refusals(rig):
    a, ua = rig.connect("alice")
    q = rig.hub.query
    err = q(a, ua, history(room="#general", peer="bob", label="H"))
    assert (err.code, err.label, err.message) == (p.BAD_REQUEST, "H",
                                                  "ask for a room or a person, not both")
    for limit in (0, p.PAGE_MAX + 1):
        err = q(a, ua, history(room="#general", limit=limit, label="H"))
        assert (err.code, err.label, err.message) == (p.BAD_REQUEST, "H",
                                                      f"limit must be 1 to {p.PAGE_MAX}")
    assert q(a, ua, history(room="#general", limit=1)) is None
    err = q(a, ua, history(room="#general", before=5, after=1, label="H"))
    assert (err.code, err.label, err.message) == (p.BAD_REQUEST, "H",
                                                  "give before or after, not both")
    err = q(a, ua, history(label="H"))
    assert (err.code, err.label, err.message) == (p.BAD_REQUEST, "H",
                                                  "history needs a room or with")
    err = q(a, ua, history(room="#nope", label="H"))
    assert (err.code, err.label) == (p.NO_SUCH_ROOM, "H")
    err = q(a, ua, p.SearchRequest(query="  ", label="S"))
    assert (err.code, err.label, err.message) == (p.BAD_QUERY, "S",
                                                  "search for at least one word")
    err = q(a, ua, p.SearchRequest(query="x" * 501, label="S"))
    assert (err.code, err.label, err.message) == (p.BAD_QUERY, "S",
                                                  "a search is at most 500 characters")
    assert q(a, ua, p.SearchRequest(query="x" * 500)) is None
    assert len(rig.readers.tasks) == 2


def test_search_in_the_rooms_one_is_in(rig):
    a, ua = rig.connect("alice")
    rig.hub.join(a, ua, "#py", None)
    rig.settle()
    b, ub = rig.connect("bob")
    rig.hub.join(b, ub, "#secret", None)
    rig.settle()
    a.frames()
    rig.store.page = ([{"type": "message", "id": 1}], True)
    rig.hub.query(a, ua, p.SearchRequest(query="snake", before=7, limit=10, label="S"))
    rig.readers.run()
    assert a.frames() == [{"type": "results", "query": "snake", "messages": [{"type": "message",
                                                                              "id": 1}],
                           "more": True, "label": "S"}]
    [(_, args)] = [c for c in rig.store.calls if c[0] == "search"]
    assert args == (ua.sid, "snake", ["#general", "#py"],
                    {"room": None, "peer": None, "before": 7, "limit": 10})
    rig.hub.query(a, ua, p.SearchRequest(query="snake", room="#PY", peer=None))
    rig.hub.query(a, ua, p.SearchRequest(query="snake", peer="Bob"))
    rig.readers.run()
    calls = [c[1] for c in rig.store.calls if c[0] == "search"]
    assert calls[1][3] == {"room": "#py", "peer": None, "before": None, "limit": 50}
    assert calls[2][3] == {"room": None, "peer": "bob", "before": None, "limit": 50}


def test_a_bad_search_and_a_failed_read_are_errors(rig, caplog):
    a, ua = rig.connect("alice", member=Member("7.7.7.7:7"))
    a.frames()
    rig.store.fail = BadQuery("unbalanced quotes")
    rig.hub.query(a, ua, p.SearchRequest(query='"x', label="S"))
    rig.readers.run()
    assert a.frames() == [{"type": "error", "code": p.BAD_QUERY, "message": "unbalanced quotes",
                           "label": "S"}]
    rig.store.fail = RuntimeError("disk gone")
    n = rig.appends
    rig.hub.query(a, ua, history(room="#general", label="H"))
    rig.readers.run()
    assert a.frames() == [{"type": "error", "code": p.STORE_FAILED,
                           "message": "the server could not read its history; try again",
                           "label": "H"}]
    assert rig.appends == n + 1
    assert logged(caplog, "7.7.7.7:7: a history query failed: disk gone")


def read(**kw):
    return p.ReadMarker(**kw)


def test_read_marker_of_a_room_is_stored_then_every_connection_told(rig):
    a, ua = rig.connect("alice")
    a2, _ = rig.connect("alice", token=a.welcome["token"])
    ua.conns.append(a)
    rig.say(a, ua, "x")
    rig.say(a, ua, "y")                         # id 3
    a.frames()
    a2.frames()
    rig.store.unread_frames = [
        {"type": "unread", "count": 0, "read_id": 3, "last_id": 3, "mentions": 0,
         "room": "#General"},
        {"type": "unread", "count": 1, "read_id": 0, "last_id": 9, "mentions": 0, "with": "bob"}]
    assert rig.hub.mark_read(a, ua, read(id=3, room="#GENERAL", label="R")) is None
    assert a.raw() == [b'{"type":"ack","label":"R"}\n']      # acked at once
    [w] = rig.store.queue
    assert (w.op, w.sid, w.conv, w.read_id) == ("read", ua.sid, "#general", 3)
    rig.store.commit()
    assert a.frames() == [] and len(rig.readers.tasks) == 1
    n = rig.appends
    rig.readers.run()
    assert a.frames() == a2.frames() == [rig.store.unread_frames[0]]
    assert rig.appends == n + 1
    assert ("unread", (ua.sid, "alice", ["#general"])) in rig.store.calls
    assert rig.store.reads == [(ua.sid, "#general", 3)]


def test_read_marker_of_a_dm_conversation(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.say(b, ub, "hi", to="alice")
    a.frames()
    rig.store.unread_frames = [
        {"type": "unread", "count": 0, "read_id": 0, "last_id": 1, "mentions": 0,
         "room": "#general"},
        {"type": "unread", "count": 0, "read_id": 3, "last_id": 3, "mentions": 0, "with": "BOB"},
        {"type": "unread", "count": 2, "read_id": 0, "last_id": 3, "mentions": 0, "with": "carol"}]
    rig.hub.mark_read(a, ua, read(id=3, peer="Bob"))
    [w] = rig.store.queue
    assert w.conv == "@bob"
    rig.settle()
    assert a.frames() == [rig.store.unread_frames[1]]
    assert ("unread", (ua.sid, "alice", [])) in rig.store.calls


def test_read_marker_without_an_unread_row_still_answers(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.say(b, ub, "hi", to="alice")
    a.frames()
    rig.store.unread_frames = []
    rig.hub.mark_read(a, ua, read(id=3, peer="Bob"))
    rig.hub.mark_read(a, ua, read(id=2, room="#General"))
    rig.settle()
    assert a.frames() == [
        {"type": "unread", "count": 0, "read_id": 3, "last_id": 0, "mentions": 0, "with": "Bob"},
        {"type": "unread", "count": 0, "read_id": 2, "last_id": 0, "mentions": 0,
         "room": "#general"}]


def test_read_marker_refusals(rig, caplog):
    a, ua = rig.connect("alice")
    last = rig.hub.last_id
    for kw in ({}, {"room": "#general", "peer": "bob"}):
        err = rig.hub.mark_read(a, ua, read(id=1, label="R", **kw))
        assert (err.code, err.label, err.message) == (p.BAD_REQUEST, "R",
                                                      "read needs a room or with")
    err = rig.hub.mark_read(a, ua, read(id=last + 1, room="#general", label="R"))
    assert (err.code, err.label, err.message) == (p.BAD_REQUEST, "R",
                                                  f"there is no id {last + 1} yet")
    err = rig.hub.mark_read(a, ua, read(id=1, room="#nope", label="R"))
    assert (err.code, err.label) == (p.NO_SUCH_ROOM, "R")
    assert rig.store.queue == []
    assert rig.hub.mark_read(a, ua, read(id=last, room="#general")) is None
    a.frames()
    rig.store.fail = RuntimeError("disk gone")
    rig.settle()
    assert a.frames() == []
    assert logged(caplog, "unread for alice failed: disk gone")


# --- what the first run of mutation testing showed ----------------------------------------
def test_log_trims_again_from_where_it_is():
    log = BroadcastLog(keep_bytes=30)
    assert log.followed_by == set()             # (connection.py's: who to wake)
    for i in range(11):
        log.append(frame(i), i)
    # second trim at 110 bytes: keep the frames ending after 80
    assert (log.base, log.end, log.base_offset) == (8, 11, 80)
    assert log.frames == [frame(8), frame(9), frame(10)]
    assert log.slice(9, 11) == frame(9) + frame(10)


def test_log_never_drops_its_newest_frame():
    log = BroadcastLog(keep_bytes=10)
    big = b"z" * 24 + b"\n"
    log.append(big, 1)                          # 25 > 2 x 10, but it is all there is
    assert (log.base, log.frames, log.lag(0)) == (0, [big], 25)


def test_reader_threads_are_named():
    import threading
    hub = Hub(SyncStore())
    try:
        name = hub.readers.submit(lambda: threading.current_thread().name).result(5)
        assert name.startswith("parley-read")
    finally:
        hub.readers.shutdown()


def test_room_logs_are_named_after_their_room(rig):
    a, ua = rig.connect("alice")
    rig.hub.join(a, ua, "#Py", None)
    assert repr(rig.hub.rooms["#py"].log) == "<BroadcastLog #Py 0..0>"
    assert repr(ua.dm_log) == "<BroadcastLog @alice 0..0>"


def test_catch_up_crowded_out_by_newer_events_is_flagged():
    rig = Rig(history=2, presence_limit=10)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    token = b.welcome["token"]
    seen = rig.hub.last_id
    offline(rig, b, ub)
    rig.say(a, ua, "missed")
    m = Member()
    rig.hub.register(m, hello("bob", token=token, last_id=seen))
    rig.store.commit()                          # its join: the welcome's point
    for i in range(3):                          # stored before its catch-up is read
        rig.hub.say(a, ua, f"new{i}")
    rig.store.commit()
    rig.readers.run()
    frames = m.frames()
    assert frames[0]["history"] == [] and frames[0]["truncated"] is True
    assert texts(frames) == ["new0", "new1", "new2"]


def test_another_instance_is_a_full_catch_up_not_a_newcomers_history():
    rig = Rig(join_history=1)
    a, ua = rig.connect("alice")
    rig.say(a, ua, "m1")
    rig.say(a, ua, "m2")
    b, _ = rig.connect("bob", last_id=rig.hub.last_id, instance="another-server")
    assert [h.get("text", h["type"]) for h in b.welcome["history"]] == ["join", "m1", "m2"]


def test_a_resent_label_of_message_one_is_acked():
    rig = Rig(presence_limit=0)                 # no join notices: the first message is id 1
    a, ua = rig.connect("alice")
    rig.say(a, ua, "first", label="L")
    assert [f["id"] for f in a.frames()] == [1, 1]
    rig.hub.say(a, ua, "first", label="L")
    assert a.frames() == [{"type": "ack", "label": "L", "id": 1}]


def test_own_dms_come_back_with_their_label_in_a_catch_up(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    seen = rig.hub.last_id
    rig.say(a, ua, "psst", to="bob", label="D")
    a2, _ = rig.connect("alice", token=a.welcome["token"], last_id=seen)
    [h] = a2.welcome["history"]
    assert (h["text"], h["to"], h["label"]) == ("psst", "bob", "D")


def test_frames_sort_by_their_ids_across_logs(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.say(a, ua, "room")
    rig.say(a, ua, "dm", to="bob")
    general = rig.hub.rooms["#general"].log
    assert general.ids == [1, 2, 3]
    assert ua.dm_log.ids == ub.dm_log.ids == [4]


def test_one_batch_with_several_kinds_of_writes(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    c, uc = rig.connect("carol")
    a.frames()
    rig.hub.join(a, ua, "#py", "J")             # a join answered once stored,
    rig.hub.leave(c, uc, p.QUIT)                # a notice with no one to answer,
    rig.hub.say(a, ua, "dm", to="bob", label="D")
    rig.hub.say(a, ua, "hi", label="L")         # then messages: all in one commit
    rig.store.commit()
    frames = a.frames()
    assert sorted(types(frames)) == ["ack", "ack", "leave", "message", "message", "room"]
    assert [f["label"] for f in frames if f["type"] == "ack"] == ["D", "L"]


def test_every_failed_message_of_a_batch_is_answered(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    a.frames()
    rig.hub.leave(b, ub, p.QUIT)
    rig.hub.say(a, ua, "one", label="L1")
    rig.hub.say(a, ua, "two", label="L2")
    rig.store.commit(error="disk full")
    assert [(f["type"], f["label"]) for f in a.frames()] == [("error", "L1"), ("error", "L2")]


def test_a_failed_topic_is_an_error_with_its_label(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.hub.topic(a, ua, None, "t", "T")
    rig.store.commit(error="disk full")
    assert [(f["type"], f["code"], f["label"]) for f in a.frames()] == [
        ("error", p.STORE_FAILED, "T")]
    assert rig.hub.rooms["#general"].topic == ""


def test_a_dm_sender_that_said_bye_gets_its_ack(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.hub.say(a, ua, "psst", to="bob", label="D")
    rig.hub.leave(a, ua, p.QUIT)                # gone before the commit
    a.frames()
    rig.store.commit()
    assert a.frames()[0] == {"type": "ack", "label": "D", "id": 3}
    assert texts(b.frames()) == ["psst"]


def test_requests_from_a_closing_connection_are_still_answered(rig):
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.hub.join(a, ua, "#py", None)
    rig.settle()
    closing = Member()                          # not one of the user's connections now
    rig.hub.say(closing, ua, "dm", to="bob", label="D")
    rig.hub.topic(closing, ua, "#py", "t", "T")
    rig.hub.part(closing, ua, "#py", "P")
    rig.store.commit()
    assert [(f["type"], f.get("label")) for f in closing.frames()] == [
        ("ack", "D"), ("ack", "T"), ("ack", "P")]


def test_join_then_part_before_the_commit_answers_no_room(rig):
    a, ua = rig.connect("alice")
    a.frames()
    rig.hub.join(a, ua, "#py", "J")
    rig.hub.part(a, ua, "#py", "P")
    rig.store.commit()
    assert [(f["type"], f.get("label")) for f in a.frames()] == [("ack", "P")]
    assert a.cursors.keys() == {rig.hub.rooms["#general"].log, ua.dm_log}


def test_who_left_is_not_in_a_newcomers_user_list(rig):
    rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.hub.leave(b, ub, p.QUIT)
    c, _ = rig.connect("carol")
    assert c.welcome["users"] == ["alice", "carol"]


def test_room_info_has_the_topic_and_lists_members_up_to_the_limit(rig):
    a, ua = rig.connect("alice")
    rig.hub.topic(a, ua, None, "welcome all", None)
    rig.connect("bob")
    c, uc = rig.connect("carol")                # 3 members: the limit
    info = c.welcome["rooms"][0]
    assert (info["topic"], info["members"]) == ("welcome all", ["alice", "bob", "carol"])
    rig.hub.join(c, uc, "#general", "J")
    [again] = c.frames()
    assert (again["topic"], again["count"]) == ("welcome all", 3)
