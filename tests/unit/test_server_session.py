"""The server's per-connection state machine, without sockets or threads."""
import json

import pytest

from parley import protocol as p
from parley.server.session import Close, Limits, Send, ServerSession, State


class FakeUser:
    def __init__(self, name, legacy=False):
        self.name, self.legacy = name, legacy


class FakeHub:
    """Records what the session asks of the hub."""

    def __init__(self):
        self.calls = []
        self.users = {}
        self.refuse = None

    def register(self, member, hello, secure=True):
        self.calls.append(("register", hello.name))
        if self.refuse:
            return p.Error(self.refuse, "no")
        self.users[hello.name.casefold()] = FakeUser(hello.name, p.CAP_ROOMS not in (hello.caps or []))
        return None

    def say(self, member, user, text, kind, label, room, to):
        self.calls.append(("say", user.name, text, kind, label, room, to))

    def join(self, member, user, room, label):
        self.calls.append(("join", room, label))

    def part(self, member, user, room, label):
        self.calls.append(("part", room, label))

    def topic(self, member, user, room, topic, label):
        self.calls.append(("topic", room, topic, label))

    def rooms_list(self, user):
        return [{"room": "#general", "topic": "", "count": 1, "joined": True}]

    def users_in(self, user, room):
        return ["alice"] if room in (None, "#general") else p.Error(p.NO_SUCH_ROOM, "none")

    def query(self, member, user, req):
        self.calls.append(("query", req.type, req.label))

    def mark_read(self, member, user, req):
        self.calls.append(("read", req.room, req.id))

    def leave(self, member, user, reason):
        self.calls.append(("leave", user.name, reason))


class FakeMember:
    peer = "test:1"
    legacy = True

    def __init__(self):
        self.pushed = []

    def push(self, frame, log=None, pos=0):
        self.pushed.append(json.loads(frame))


def make(now=0.0, **limits):
    hub, member = FakeHub(), FakeMember()
    return ServerSession(hub, member, Limits(**limits), now), hub, member


def hello(name="alice", caps=(p.CAP_ROOMS,)):
    return p.Hello(version=1, name=name, caps=list(caps) if caps else None)


def sent(actions):
    return [a.event for a in actions if isinstance(a, Send)]


def test_hello_opens_and_second_hello_is_refused():
    s, hub, _ = make()
    assert s.state is State.HANDSHAKE
    assert s.receive(hello(), 0.1) == []
    assert s.state is State.OPEN and s.name == "alice"
    [err] = sent(s.receive(hello("bob"), 0.2))
    assert err.code == p.ALREADY_REGISTERED
    assert hub.calls == [("register", "alice")]


def test_refused_hello_stays_in_handshake_and_may_retry():
    s, hub, _ = make()
    hub.refuse = p.NAME_TAKEN
    [err] = sent(s.receive(hello(), 0.1))
    assert err.code == p.NAME_TAKEN and s.state is State.HANDSHAKE
    hub.refuse = None
    assert s.receive(hello("alice2"), 0.2) == [] and s.state is State.OPEN


def test_chat_before_hello_is_refused_with_its_label():
    s, hub, _ = make()
    [err] = sent(s.receive(p.Say(text="hi", label="L1"), 0.1))
    assert (err.code, err.label) == (p.NOT_REGISTERED, "L1")
    assert hub.calls == []


def test_say_goes_to_the_hub_with_room_and_target():
    s, hub, _ = make()
    s.receive(hello(), 0)
    s.receive(p.Say(text="hi", label="L1", room="#py"), 0.1)
    s.receive(p.Me(text="waves", to="bob"), 0.2)
    assert hub.calls[1:] == [("say", "alice", "hi", "say", "L1", "#py", None),
                             ("say", "alice", "waves", "me", None, None, "bob")]


@pytest.mark.parametrize("text,code", [
    ("", p.EMPTY_TEXT), ("   ", p.EMPTY_TEXT), ("x" * 11, p.TEXT_TOO_LONG),
    ("bell\x07", p.BAD_TEXT), ("a\x85b", p.BAD_TEXT)])
def test_text_rules(text, code):
    s, hub, _ = make(max_text=10)
    s.receive(hello(), 0)
    [err] = sent(s.receive(p.Say(text=text, label="L"), 0.1))
    assert (err.code, err.label) == (code, "L")
    assert [c for c in hub.calls if c[0] == "say"] == []


def test_text_at_the_limit_is_accepted():
    s, hub, _ = make(max_text=10)
    s.receive(hello(), 0)
    assert s.receive(p.Say(text="x" * 10), 0.1) == []
    assert hub.calls[-1][2] == "x" * 10


def test_protocol_1_client_cannot_use_rooms():
    s, hub, member = make()
    s.receive(hello(caps=None), 0)
    [err] = sent(s.receive(p.JoinRequest(room="#py", label="L"), 0.1))
    assert (err.code, err.label) == (p.BAD_REQUEST, "L")
    [err] = sent(s.receive(p.Say(text="hi", room="#py"), 0.2))
    assert err.code == p.BAD_REQUEST
    [err] = sent(s.receive(p.Say(text="hi", to="bob"), 0.3))
    assert err.code == p.BAD_REQUEST
    assert s.receive(p.Say(text="hi", room="#general"), 0.4) == []   # #general is fine
    assert [c[0] for c in hub.calls] == ["register", "say"]


def test_room_requests_are_dispatched():
    s, hub, member = make()
    s.receive(hello(), 0)
    s.receive(p.JoinRequest(room="#py", label="a"), 0.1)
    s.receive(p.PartRequest(room="#py", label="b"), 0.2)
    s.receive(p.TopicRequest(room="#py", topic="t", label="c"), 0.3)
    s.receive(p.HistoryRequest(room="#py", label="d"), 0.4)
    s.receive(p.SearchRequest(query="x", label="e"), 0.5)
    s.receive(p.ReadMarker(room="#py", id=3), 0.6)
    s.receive(p.RoomsRequest(label="f"), 0.7)
    s.receive(p.UsersRequest(room="#nope", label="g"), 0.8)
    assert hub.calls[1:] == [("join", "#py", "a"), ("part", "#py", "b"), ("topic", "#py", "t", "c"),
                             ("query", "history", "d"), ("query", "search", "e"),
                             ("read", "#py", 3)]
    assert member.pushed[0] == {"type": "rooms", "label": "f", "rooms": [
        {"room": "#general", "topic": "", "count": 1, "joined": True}]}


def test_users_error_carries_label():
    s, hub, member = make()
    s.receive(hello(), 0)
    [err] = sent(s.receive(p.UsersRequest(room="#nope", label="g"), 0.1))
    assert (err.code, err.label) == (p.NO_SUCH_ROOM, "g")


def test_ping_answered_and_pong_never_counts_against_the_rate():
    s, hub, _ = make(rate=1.0, burst=3)
    s.receive(hello(), 0)
    for i in range(50):                    # far more pongs than the bucket holds
        assert s.receive(p.Pong(token="x"), 0.0) == []
    [pong] = sent(s.receive(p.Ping(token="t1"), 0.0))
    assert pong == p.Pong(token="t1")
    assert s.receive(p.Say(text="still fine"), 0.0) == []


def test_rate_limit_labelled_always_answered_unlabelled_once_a_second():
    s, hub, _ = make(rate=1.0, burst=2, flood_kick=100)
    s.receive(hello(), 0)
    s.receive(p.Say(text="1"), 0)                       # bucket: 2 -> 0 with the hello
    out = [sent(s.receive(p.Say(text="x"), 0.1 + i * 0.01)) for i in range(5)]
    errors = [e for batch in out for e in batch]
    assert len(errors) == 1 and errors[0].code == p.RATE_LIMITED and errors[0].retry_after > 0
    labelled = [sent(s.receive(p.Say(text="x", label=f"L{i}"), 0.2)) for i in range(3)]
    assert [b[0].label for b in labelled] == ["L0", "L1", "L2"]
    # a second later an unlabelled one is answered again
    later = sent(s.receive(p.Say(text="x"), 0.1 + 1.0))
    assert later == [] or later[0].code == p.RATE_LIMITED
    assert not any(isinstance(a, Close) for b in out for a in b)


def test_flood_is_kicked_after_flood_kick_rejections():
    s, hub, _ = make(rate=1.0, burst=1, flood_kick=5)
    s.receive(hello(), 0)
    closes = []
    for i in range(7):
        closes += [a for a in s.receive(p.Say(text="x"), 0.001 * i) if isinstance(a, Close)]
    assert closes == [Close(p.FLOOD, "kicked for flooding", True)]
    assert s.state is State.CLOSED
    assert s.receive(p.Say(text="x"), 0.01) == []        # nothing after closing


def test_invalid_frames_count_and_end_in_bye_protocol():
    s, hub, _ = make(rate=100.0, burst=100, flood_kick=3)
    s.receive(hello(), 0)
    bad = p.ProtocolError(p.BAD_JSON, "line is not valid JSON")
    results = [s.receive(bad, 0.0) for _ in range(4)]
    assert [sent(r)[0].code for r in results] == [p.BAD_JSON] * 4
    assert [a for a in results[3] if isinstance(a, Close)] == [
        Close(p.PROTOCOL, "too many invalid frames", True)]
    assert not any(isinstance(a, Close) for r in results[:3] for a in r)


def test_strikes_leak_at_the_refill_rate():
    s, hub, _ = make(rate=10.0, burst=100, flood_kick=3)
    s.receive(hello(), 0)
    bad = p.ProtocolError(p.BAD_JSON, "x")
    for i in range(20):        # one bad frame a second never adds up to a kick
        assert not any(isinstance(a, Close) for a in s.receive(bad, 1.0 + i))


def test_handshake_timeout_counts_from_connect_not_from_pings():
    s, hub, _ = make(handshake_timeout=15.0)
    for t in range(1, 15):
        s.receive(p.Ping(token="k"), float(t))
        assert s.tick(float(t)) == []
    [close] = s.tick(15.5)
    assert close.reason == p.TIMEOUT and close.notify
    assert s.state is State.CLOSED


def test_refused_hellos_give_a_person_more_time_but_not_forever():
    s, hub, _ = make(handshake_timeout=10.0)
    hub.refuse = p.NAME_TAKEN
    t = 0.0
    for _ in range(4):
        t += 9.0
        s.receive(hello(), t)
        assert s.tick(t + 0.5) == []
    t += 9.0
    s.receive(hello(), t)                  # the fifth refusal does not extend it
    assert s.tick(t + 0.5) == []           # 9.5 s after the fourth
    assert s.tick(t + 1.5)[0].reason == p.TIMEOUT


def test_ping_after_silence_then_timeout_without_answer():
    s, hub, _ = make(ping_interval=30.0, ping_timeout=10.0)
    s.receive(hello(), 0)
    assert s.tick(29.0) == []
    [ping] = sent(s.tick(30.5))
    assert isinstance(ping, p.Ping)
    assert s.tick(35.0) == []              # not pinged twice
    assert s.tick(40.0) == []
    [close] = s.tick(40.6)
    assert close.reason == p.TIMEOUT


def test_an_answer_resets_the_ping_timer():
    s, hub, _ = make(ping_interval=30.0, ping_timeout=10.0)
    s.receive(hello(), 0)
    sent(s.tick(30.5))
    s.receive(p.Pong(token="x"), 31.0)
    assert s.tick(45.0) == []
    assert isinstance(sent(s.tick(61.5))[0], p.Ping)


def test_bye_closes_quietly_and_closed_leaves_the_hub_once():
    s, hub, _ = make()
    s.receive(hello(), 0)
    [close] = s.receive(p.Bye(), 1.0)
    assert close == Close(p.QUIT, "quit", False)
    s.closed(p.QUIT)
    s.closed(p.LOST)
    assert [c for c in hub.calls if c[0] == "leave"] == [("leave", "alice", p.QUIT)]
