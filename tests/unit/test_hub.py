"""The hub without sockets: names, rooms, ids, ack after commit, catch-up,
presence, and the broadcast log.  A real store (SQLite in memory) behind it."""
import json
import threading
import time

import pytest

from parley import protocol as p
from parley.server.hub import BroadcastLog, Hub


class FakeMember:
    """Does what connection.Connection does with what the hub gives it: follows
    room logs from a position and interleaves private frames where they belong."""

    def __init__(self, peer="test"):
        self.peer = peer
        self.legacy = True
        self.cursors = {}
        self.out = []                 # frames delivered, in order
        self.held = False
        self.was_replaced = False
        self.lock = threading.Lock()

    def subscribe(self, log, pos):
        with self.lock:
            self.cursors[log] = pos

    def unsubscribe(self, log):
        with self.lock:
            self._drain(log, log.end)
            self.cursors.pop(log, None)

    def push(self, frame, log=None, pos=0, first=False):
        with self.lock:
            if first:
                self.out.insert(0, json.loads(frame))
                return
            if log is not None and log in self.cursors:
                self._drain(log, pos)
            self.out.append(json.loads(frame))

    def _drain(self, log, stop):
        cur = self.cursors[log]
        for f in log.frames[cur - log.base:stop - log.base]:
            self.out.append(json.loads(f))
        self.cursors[log] = max(cur, stop)

    def hold(self):
        self.held = True

    def release(self):
        self.held = False

    def replaced(self):
        self.was_replaced = True

    def frames(self):
        with self.lock:
            for log in list(self.cursors):
                self._drain(log, log.end)
            out, self.out = self.out, []
        return out


def hello(name, rooms=True, **kw):
    return p.Hello(version=p.PROTOCOL_VERSION, name=name,
                   caps=[p.CAP_ROOMS] if rooms else None, **kw)


@pytest.fixture
def hub():
    h = Hub(clock=lambda: 1_795_000_000.5, presence_limit=3).start()
    yield h
    h.close()


def settle(hub):
    """Wait until every write so far is stored and sent out, and readers are idle."""
    assert hub.store.flush(5)
    hub.readers.submit(lambda: None).result(5)
    assert hub.store.flush(5)


def join(hub, name, rooms=True, **kw):
    m = FakeMember(name)
    assert hub.register(m, hello(name, rooms, **kw)) is None
    settle(hub)
    deadline = time.monotonic() + 5
    frames = m.frames()
    while not frames and time.monotonic() < deadline:   # a catch-up is read on a reader thread
        time.sleep(0.01)
        frames = m.frames()
    assert frames[0]["type"] == "welcome", frames
    m.welcome = frames[0]
    m.backlog = frames[1:]
    return m, hub.users[name.casefold()]


def say(hub, m, user, text, **kw):
    assert hub.say(m, user, text, **kw) is None
    settle(hub)


def test_welcome_then_others_see_the_join(hub):
    a, ua = join(hub, "alice")
    b, ub = join(hub, "bob")
    assert b.welcome["users"] == ["alice", "bob"]
    assert b.welcome["rooms"][0]["members"] == ["alice", "bob"]
    seen = a.frames()
    joins = [f for f in seen if f["type"] == "join"]
    assert [(j["name"], j["room"]) for j in joins] == [("bob", "#general")]
    # the joiner does not see its own join: its welcome's last_id is that join's id
    assert not [f for f in b.frames() if f["type"] == "join"]
    assert b.welcome["last_id"] == joins[0]["id"]
    assert joins[0]["ts"] == "2026-11-18T11:06:40.500Z"


def test_names_unique_ignoring_case_and_validated(hub):
    join(hub, "Alice")
    assert hub.register(FakeMember(), hello("aLiCe")).code == p.NAME_TAKEN
    assert hub.register(FakeMember(), hello("bad name")).code == p.NAME_INVALID
    assert hub.register(FakeMember(), p.Hello(version=99, name="zed")).code == p.VERSION_UNSUPPORTED
    # a non-ASCII token for a name that is online: refused, not a crash
    assert hub.register(FakeMember(), hello("alice", token="é∂")).code == p.NAME_TAKEN


def test_message_then_ack_and_ids_increase(hub):
    a, ua = join(hub, "alice")
    say(hub, a, ua, "one", label="L1")
    say(hub, a, ua, "two", kind="me", label="L2")
    frames = [f for f in a.frames() if f["type"] in ("message", "ack")]
    assert [f["type"] for f in frames] == ["message", "ack", "message", "ack"]
    assert frames[1] == {"type": "ack", "label": "L1", "id": frames[0]["id"]}
    assert frames[2]["id"] == frames[0]["id"] + 1 and frames[2]["kind"] == "me"


def test_nothing_is_sent_before_it_is_stored(hub):
    a, ua = join(hub, "alice")
    b, ub = join(hub, "bob")
    b.frames()
    gate, entered = threading.Event(), threading.Event()
    hub.store.submit(_blocking_write(gate, entered))
    assert entered.wait(5)                          # the writer thread is held now
    assert hub.say(a, ua, "wait for it", label="L") is None
    time.sleep(0.05)        # (a negative check: nothing may arrive while the writer is held)
    assert [f for f in b.frames() if f["type"] == "message"] == []
    assert [f for f in a.frames() if f["type"] == "ack"] == []
    gate.set()
    settle(hub)
    assert [f["text"] for f in b.frames() if f["type"] == "message"] == ["wait for it"]


def _blocking_write(gate, entered):
    """A barrier whose on_commit waits for ``gate``: holds the writer thread."""
    from parley.server.hub import _Sent
    from parley.server.store import Write
    return Write(op="barrier", ctx=_Sent(None, None,
                                         reply=lambda: (entered.set(), gate.wait(5))))


def test_store_failure_gets_an_error_never_an_ack(hub):
    a, ua = join(hub, "alice")
    a.frames()
    real = hub.store._commit

    def failing(writes):
        for w in writes:
            w.id, w.error = None, "database or disk is full"
        hub.committed(writes, "database or disk is full")
    hub.store._commit = failing
    try:
        say(hub, a, ua, "lost", label="L")
    finally:
        hub.store._commit = real
    frames = a.frames()
    assert [f["type"] for f in frames] == ["error"]
    assert (frames[0]["code"], frames[0]["label"]) == (p.STORE_FAILED, "L")
    say(hub, a, ua, "kept", label="L2")           # and it keeps serving
    assert [f["type"] for f in a.frames()] == ["message", "ack"]


def test_leave_frees_the_name_and_is_announced(hub):
    a, ua = join(hub, "alice")
    b, ub = join(hub, "bob")
    a.frames()
    hub.leave(b, ub, p.TIMEOUT)
    settle(hub)
    leave = [f for f in a.frames() if f["type"] == "leave"]
    assert [(f["name"], f["reason"]) for f in leave] == [("bob", "timeout")]
    assert hub.users_in(ua, None) == ["alice"]
    hub.leave(b, ub, p.TIMEOUT)                     # twice is harmless
    settle(hub)
    assert a.frames() == []
    join(hub, "BOB")


def test_rooms_messages_stay_in_their_room(hub):
    a, ua = join(hub, "alice")
    b, ub = join(hub, "bob")
    c, uc = join(hub, "carol")
    for m, u in ((a, ua), (b, ub)):
        assert hub.join(m, u, "#py", "j") is None
        settle(hub)
    say(hub, a, ua, "in py", room="#PY")
    assert [f["text"] for f in b.frames() if f["type"] == "message"] == ["in py"]
    assert [f for f in c.frames() if f["type"] == "message"] == []
    assert hub.say(c, uc, "x", room="#py").code == p.NOT_MEMBER
    assert hub.say(c, uc, "x", room="#nope").code == p.NO_SUCH_ROOM
    assert hub.say(c, uc, "x", room="nope").code == p.ROOM_INVALID


def test_dm_goes_to_both_only(hub):
    a, ua = join(hub, "alice")
    b, ub = join(hub, "bob")
    c, uc = join(hub, "carol")
    old, uold = join(hub, "old", rooms=False)
    for m in (a, b, c, old):
        m.frames()
    say(hub, a, ua, "psst", to="Bob", label="L")
    got_a = [f["type"] for f in a.frames() if f["type"] in ("message", "ack")]
    assert got_a == ["message", "ack"]
    assert [f["to"] for f in b.frames() if f["type"] == "message"] == ["bob"]
    assert [f for f in c.frames() if f["type"] == "message"] == []
    assert hub.say(a, ua, "x", to="old").code == p.DM_UNSUPPORTED
    assert hub.say(a, ua, "x", to="ghost").code == p.NO_SUCH_USER


def test_catch_up_sends_what_was_missed_with_own_labels(hub):
    a, ua = join(hub, "alice")
    b, ub = join(hub, "bob")
    say(hub, a, ua, "before")
    seen = hub.last_id
    hub.leave(b, ub, p.LOST)
    say(hub, a, ua, "missed 1")
    say(hub, a, ua, "missed 2", label="x")
    b2, _ = join(hub, "bob", last_id=seen, token=b.welcome["token"],
                 instance=b.welcome["instance"])
    hist = b2.welcome["history"]
    assert [h.get("text", h["type"]) for h in hist] == ["leave", "missed 1", "missed 2"]
    assert "label" not in hist[-1]                  # labels only for their author
    hub.leave(a, ua, p.LOST)
    a2, _ = join(hub, "alice", last_id=seen, token=a.welcome["token"])
    mine = [h for h in a2.welcome["history"] if h.get("text") == "missed 2"]
    assert mine[0]["label"] == "x"


def test_other_instance_means_send_everything(hub):
    a, ua = join(hub, "alice")
    say(hub, a, ua, "m1")
    last = hub.last_id
    b, _ = join(hub, "bob", last_id=last, instance="another-server")
    assert "m1" in [h.get("text") for h in b.welcome["history"]]


def test_newcomer_sees_recent_messages_only():
    hub = Hub(join_history=2).start()
    try:
        a, ua = join(hub, "alice")
        for i in range(5):
            say(hub, a, ua, f"m{i}")
        c, _ = join(hub, "carol")
        assert [h["text"] for h in c.welcome["history"]] == ["m3", "m4"]
    finally:
        hub.close()


def test_catch_up_is_bounded_and_truncation_flagged():
    hub = Hub(history=3).start()
    try:
        a, ua = join(hub, "alice")
        b, ub = join(hub, "bob")
        first = hub.last_id
        hub.leave(b, ub, p.LOST)
        for i in range(10):
            say(hub, a, ua, f"m{i}")
        b2, _ = join(hub, "bob", last_id=first, token=b.welcome["token"])
        assert b2.welcome["truncated"] is True
        assert [h["text"] for h in b2.welcome["history"]] == ["m7", "m8", "m9"]
        # exactly at the bound: not truncated
        hub.leave(b2, hub.users["bob"], p.LOST)
        settle(hub)
        mark = hub.last_id
        for i in range(3):
            say(hub, a, ua, f"n{i}")
        b3, _ = join(hub, "bob", last_id=mark, token=b.welcome["token"])
        assert [h["text"] for h in b3.welcome["history"]] == ["n0", "n1", "n2"]
        assert b3.welcome.get("truncated") is None
    finally:
        hub.close()


def test_resume_with_token_takes_over_quietly(hub):
    a, ua = join(hub, "alice")
    token = a.welcome["token"]
    other, _ = join(hub, "other")
    other.frames()
    a2 = FakeMember()
    assert hub.register(a2, hello("alice", token="wrong")).code == p.NAME_TAKEN
    assert hub.register(a2, hello("ALICE", token=token)) is None
    settle(hub)
    assert a.was_replaced
    assert a2.frames()[0]["name"] == "alice"        # keeps its spelling
    assert [f for f in other.frames() if f["type"] in ("join", "leave")] == []
    hub.leave(a, ua, p.LOST)                        # the old connection dying later
    assert hub.users_in(ua, None) == ["alice", "other"]


def test_resent_label_is_acked_again_not_stored_twice(hub):
    a, ua = join(hub, "alice")
    say(hub, a, ua, "once", label="L")
    say(hub, a, ua, "once", label="L")
    frames = [f for f in a.frames() if f["type"] in ("message", "ack")]
    assert [f["type"] for f in frames] == ["message", "ack", "ack"]
    assert frames[1]["id"] == frames[2]["id"] == frames[0]["id"]


def test_big_room_presence_coalesced_small_room_one_by_one(hub):
    watcher, _ = join(hub, "watcher")
    watcher.frames()
    members = [join(hub, f"u{i}") for i in range(5)]
    frames = watcher.frames()
    assert [f["name"] for f in frames if f["type"] == "join"] == ["u0", "u1"]
    hub.flush_presence(now=1000.0)
    [pres] = [f for f in watcher.frames() if f["type"] == "presence"]
    assert (pres["count"], pres["joined"], pres["joined_count"]) == (6, ["u2", "u3", "u4"], 3)
    hub.flush_presence(now=1000.2)                   # nothing new: nothing sent
    assert watcher.frames() == []
    hub.leave(members[0][0], members[0][1], p.QUIT)
    hub.flush_presence(now=1000.5)                   # within a second of the last one
    assert watcher.frames() == []
    hub.flush_presence(now=1001.0)
    [pres] = [f for f in watcher.frames() if f["type"] == "presence"]
    assert (pres["count"], pres["left"], pres["left_count"]) == (5, ["u0"], 1)
    # a member list is left out of a big room's info
    assert members[-1][0].welcome["rooms"][0].get("members") is None


def test_concurrent_says_get_unique_increasing_ids(hub):
    people = [join(hub, f"u{i}") for i in range(3)]
    ids, lock = [], threading.Lock()

    def talk(m, u):
        for i in range(100):
            hub.say(m, u, "x", label=f"{u.name}-{i}")

    threads = [threading.Thread(target=talk, args=pu) for pu in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    settle(hub)
    for m, u in people:
        acks = [f["id"] for f in m.frames() if f["type"] == "ack"]
        assert acks == sorted(acks) and len(acks) == 100
        ids.extend(acks)
    assert len(set(ids)) == 300


def test_broadcast_log_trims_and_reports_lag():
    log = BroadcastLog(keep_bytes=100)
    for i in range(50):
        log.append(b"x" * 9 + b"\n", i)
    assert log.total == 500
    assert log.total - log.base_offset <= 200       # bounded memory
    assert log.total - log.base_offset >= 100       # but keeps what a reader may need
    assert log.lag(log.end) == 0
    assert log.lag(log.end - 3) == 30
    assert log.lag(0) is None                       # trimmed away
    assert log.slice(log.end - 2, log.end) == b"xxxxxxxxx\n" * 2
    assert log.ids == list(range(50 - len(log.frames), 50))   # trimmed with their frames


def test_sent_frames_match_the_typed_events_byte_for_byte(hub):
    """One frame schema: what the hub sends is what protocol.encode makes of the
    typed event (the message is encoded early and only id and ts are spliced in)."""
    a, ua = join(hub, "alice")
    say(hub, a, ua, 'quote " backslash \\ and é 👋', kind="me", label="L")
    room = hub.rooms[p.GENERAL]
    raw = room.log.frames[-1]
    ev = p.decode_line(raw.rstrip(b"\n"), p.SERVER_FRAMES)
    assert isinstance(ev, p.Message)
    assert (ev.sender, ev.text, ev.kind, ev.room) == ("alice", 'quote " backslash \\ and é 👋',
                                                      "me", p.GENERAL)
    assert raw == p.encode(ev)
    b, ub = join(hub, "bob")
    say(hub, a, ua, "dm", to="bob")
    dm = ub.dm_log.frames[-1]
    ev = p.decode_line(dm.rstrip(b"\n"), p.SERVER_FRAMES)
    assert (ev.to, ev.room) == ("bob", None) and dm == p.encode(ev)


def test_notices_and_acks_are_the_typed_events(hub):
    a, ua = join(hub, "alice")
    b, ub = join(hub, "bob")
    hub.topic(a, ua, "#general", "the topic", "T")
    hub.leave(b, ub, p.TIMEOUT)
    settle(hub)
    raw = hub.rooms[p.GENERAL].log.frames[-3:]
    events = [p.decode_line(f.rstrip(b"\n"), p.SERVER_FRAMES) for f in raw]
    assert [type(e) for e in events] == [p.Join, p.Topic, p.Leave]
    assert all(f == p.encode(e) for f, e in zip(raw, events))
    ack = [f for f in a.frames() if f["type"] == "ack"][-1]
    assert p.encode_dict(ack) == p.encode(p.Ack(label="T", id=events[1].id))
