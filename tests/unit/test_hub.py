"""The hub without sockets: names, notices, ids, history, the broadcast log."""
import json
import threading

from parley import protocol as p
from parley.server.hub import BroadcastLog, Hub


class FakeMember:
    def __init__(self, peer="test"):
        self.name = self.token = self.cursor = None
        self.peer = peer
        self.private = []
        self.was_replaced = False

    def push(self, frame, pos=0):
        self.private.append(json.loads(frame))

    def replaced(self):
        self.was_replaced = True


def hello(name, **kw):
    return p.Hello(version=p.PROTOCOL_VERSION, name=name, **kw)


def log_frames(hub, start=0):
    return [json.loads(f) for f in hub.log.frames[start - hub.log.base:]]


def make_hub(**kw):
    return Hub(clock=lambda: 1_795_000_000.5, **kw)


def test_register_welcomes_and_announces():
    hub = make_hub()
    a, b = FakeMember(), FakeMember()
    assert hub.register(a, hello("alice")) is None
    assert hub.register(b, hello("bob")) is None
    welcome = b.private[0]
    assert welcome["type"] == "welcome" and welcome["users"] == ["alice", "bob"]
    assert welcome["name"] == "bob" and welcome["token"]
    joins = [f for f in log_frames(hub) if f["type"] == "join"]
    assert [j["name"] for j in joins] == ["alice", "bob"]
    assert joins[0]["ts"] == "2026-11-18T11:06:40.500Z"
    # a joiner's cursor is after its own join: it learns of itself from the welcome
    assert b.cursor == hub.log.end


def test_names_unique_ignoring_case_and_validated():
    hub = make_hub()
    hub.register(FakeMember(), hello("Alice"))
    assert hub.register(FakeMember(), hello("aLiCe")).code == p.NAME_TAKEN
    assert hub.register(FakeMember(), hello("bad name")).code == p.NAME_INVALID
    err = hub.register(FakeMember(), p.Hello(version=99, name="zed"))
    assert err.code == p.VERSION_UNSUPPORTED


def test_ids_increase_and_ack_follows_message():
    hub = make_hub()
    a = FakeMember()
    hub.register(a, hello("alice"))
    first = hub.say(a, "one")
    second = hub.say(a, "two", "me", label="L")
    assert second == first + 1
    assert a.private[-1] == {"type": "ack", "label": "L", "id": second}
    msgs = [f for f in log_frames(hub) if f["type"] == "message"]
    assert [(m["text"], m["kind"], m["from"]) for m in msgs] == [("one", "say", "alice"),
                                                                   ("two", "me", "alice")]


def test_leave_announces_reason_and_frees_name():
    hub = make_hub()
    a = FakeMember()
    hub.register(a, hello("alice"))
    hub.leave(a, p.TIMEOUT)
    assert log_frames(hub)[-1]["type"] == "leave" and log_frames(hub)[-1]["reason"] == "timeout"
    assert hub.users() == []
    hub.leave(a, p.TIMEOUT)                         # twice is harmless
    assert hub.register(FakeMember(), hello("ALICE")) is None


def test_catch_up_sends_what_was_missed_with_own_labels():
    hub = make_hub()
    a, b = FakeMember(), FakeMember()
    hub.register(a, hello("alice"))
    hub.register(b, hello("bob"))
    seen = hub.say(a, "before")
    hub.leave(b, p.LOST)
    hub.say(a, "missed 1")
    hub.say(FakeMember(), "from nobody")           # unregistered: ignored
    b2 = FakeMember()
    hub.say(a, "missed 2", label="x")
    hub.register(b2, hello("bob", last_id=seen))
    hist = b2.private[0]["history"]
    assert [h.get("text", h["type"]) for h in hist] == ["leave", "missed 1", "missed 2"]
    assert "label" not in hist[-1]                  # labels only for their author
    a2 = FakeMember()
    hub.leave(a, p.LOST)
    hub.register(a2, hello("alice", last_id=seen))
    mine = [h for h in a2.private[0]["history"] if h.get("text") == "missed 2"]
    assert mine[0]["label"] == "x"


def test_newcomer_sees_recent_messages_only():
    hub = make_hub(join_history=2)
    a = FakeMember()
    hub.register(a, hello("alice"))
    for i in range(5):
        hub.say(a, f"m{i}")
    c = FakeMember()
    hub.register(c, hello("carol"))
    assert [h["text"] for h in c.private[0]["history"]] == ["m3", "m4"]


def test_history_is_bounded_and_truncation_flagged():
    hub = make_hub(history=3)
    a = FakeMember()
    hub.register(a, hello("alice"))
    for i in range(10):
        hub.say(a, f"m{i}")
    assert len(hub.history) == 3
    b = FakeMember()
    hub.register(b, hello("bob", last_id=1))
    assert b.private[0]["truncated"] is True


def test_resume_with_token_takes_over_quietly():
    hub = make_hub()
    a = FakeMember()
    hub.register(a, hello("alice"))
    token = a.private[0]["token"]
    end = hub.log.end
    a2 = FakeMember()
    assert hub.register(a2, hello("alice", token="wrong")).code == p.NAME_TAKEN
    assert hub.register(a2, hello("alice", token=token)) is None
    assert a.was_replaced and a.name is None
    assert hub.log.end == end                       # no leave/join noise
    hub.leave(a, p.LOST)                            # the old connection dying later
    assert hub.users() == ["alice"]
    a3 = FakeMember()                               # other spelling: the name keeps its own
    assert hub.register(a3, hello("ALICE", token=a2.token)) is None
    assert a3.private[0]["name"] == "alice" and a3.private[0]["users"] == ["alice"]


def test_concurrent_says_get_unique_ids():
    hub = make_hub()
    members = [FakeMember() for _ in range(8)]
    for i, m in enumerate(members):
        hub.register(m, hello(f"u{i}"))
    ids = []
    lock = threading.Lock()

    def talk(m):
        mine = [hub.say(m, "x") for _ in range(500)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=talk, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 4000


def test_broadcast_log_trims_and_reports_lag():
    log = BroadcastLog(keep_bytes=100)
    for _ in range(50):
        log.append(b"x" * 9 + b"\n")
    assert log.total == 500
    assert log.total - log.base_offset <= 200       # bounded memory
    assert log.lag(log.end) == 0
    assert log.lag(log.end - 3) == 30
    assert log.lag(0) is None                       # trimmed away
    assert log.slice(log.end - 2, log.end) == b"xxxxxxxxx\n" * 2
