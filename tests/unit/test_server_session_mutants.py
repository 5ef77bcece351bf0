"""The server's session state machine: the boundaries, the arithmetic and the
hand-offs that mutation testing showed the other tests did not pin down
(see docs/testing.md).  No sockets, no threads, no clock."""
import json
import logging

import pytest

from parley import protocol as p
from parley.server.session import Close, Limits, Send, ServerSession, State


class User:
    def __init__(self, name, legacy=False):
        self.name, self.legacy = name, legacy


class RecordingHub:
    """Records every call with the exact member and user objects it was given."""

    def __init__(self):
        self.calls = []
        self.users = {}
        self.refuse = None

    def register(self, member, hello, secure=True):
        self.calls.append(("register", member, hello.name))
        if self.refuse:
            return p.Error(self.refuse, "no")
        self.users[hello.name.casefold()] = User(hello.name, p.CAP_ROOMS not in (hello.caps or []))
        return None

    def _record(self, name, member, user, *rest):
        self.calls.append((name, member, user, *rest))

    def say(self, member, user, text, kind, label, room, to):
        self._record("say", member, user, text, kind, label, room, to)

    def join(self, member, user, room, label):
        self._record("join", member, user, room, label)

    def part(self, member, user, room, label):
        self._record("part", member, user, room, label)

    def topic(self, member, user, room, topic, label):
        self._record("topic", member, user, room, topic, label)

    def query(self, member, user, req):
        self._record("query", member, user, req.type)

    def mark_read(self, member, user, req):
        self._record("read", member, user, req.id)

    def rooms_list(self, user):
        self._record("rooms_list", None, user)
        return [{"room": "#general", "topic": "", "count": 1, "joined": True}]

    def users_in(self, user, room):
        self._record("users_in", None, user, room)
        return ["alice", "bob"]

    def leave(self, member, user, reason):
        self._record("leave", member, user, reason)

    def guests_among(self, names):
        return [n for n in names if n == "bob"]

    def claim(self, member, user, password, secure, label):
        self._record("claim", member, user, password, secure, label)

    def change_password(self, member, user, old, new, secure, label):
        self._record("password", member, user, old, new, secure, label)

    def sessions(self, member, user, label):
        self._record("sessions", member, user, label)

    def revoke(self, member, user, req):
        self._record("revoke", member, user, req.session, req.others, req.label)


class Member:
    peer = "10.0.0.7:5555"

    def __init__(self):
        self.pushed = []

    def push(self, frame, log=None, pos=0):
        self.pushed.append(json.loads(frame))


def make(now=0.0, **limits):
    hub, member = RecordingHub(), Member()
    return ServerSession(hub, member, Limits(**limits), now), hub, member


def hello(name="alice", caps=(p.CAP_ROOMS,)):
    return p.Hello(version=1, name=name, caps=list(caps) if caps else None)


def sent(actions):
    return [a.event for a in actions if isinstance(a, Send)]


def closes(actions):
    return [a for a in actions if isinstance(a, Close)]


# --- what the client is told --------------------------------------------------------
def test_public_limits_are_exactly_the_five_the_welcome_documents():
    lim = Limits(max_line=100, max_text=50, rate=2.5, burst=7, ping_interval=12.0)
    assert lim.public() == {"max_line": 100, "max_text": 50, "rate": 2.5, "burst": 7,
                            "ping_interval": 12.0}


def test_a_new_session_has_no_name_and_is_in_handshake():
    s, _, _ = make()
    assert s.name is None and s.state is State.HANDSHAKE


# --- the hub gets this connection and this user --------------------------------------
def test_every_request_reaches_the_hub_with_this_member_and_this_user():
    s, hub, member = make()
    s.receive(hello(), 0)
    user = hub.users["alice"]
    assert s.user is user and hub.calls[0] == ("register", member, "alice")
    s.receive(p.Say(text="hi", label="a"), 0.1)
    s.receive(p.JoinRequest(room="#py", label="b"), 0.2)
    s.receive(p.PartRequest(room="#py", label="c"), 0.3)
    s.receive(p.TopicRequest(room="#py", topic="t", label="d"), 0.4)
    s.receive(p.HistoryRequest(room="#py", label="e"), 0.5)
    s.receive(p.ReadMarker(room="#py", id=9), 0.6)
    s.receive(p.RoomsRequest(label="f"), 0.7)
    s.receive(p.UsersRequest(room="#general", label="g"), 0.8)
    s.receive(p.RegisterRequest(password="pw-one-two", label="h"), 0.9)
    s.receive(p.PasswordRequest(old="o", new="n", label="i"), 1.0)
    s.receive(p.SessionsRequest(label="j"), 1.1)
    s.receive(p.RevokeRequest(session="ab12", label="k"), 1.2)
    s.closed(p.LOST)
    assert hub.calls[1:] == [
        ("say", member, user, "hi", "say", "a", None, None),
        ("join", member, user, "#py", "b"),
        ("part", member, user, "#py", "c"),
        ("topic", member, user, "#py", "t", "d"),
        ("query", member, user, "history"),
        ("read", member, user, 9),
        ("rooms_list", None, user),
        ("users_in", None, user, "#general"),
        # (the member's peer is 10.0.0.7 over plain TCP: not secure for a password)
        ("claim", member, user, "pw-one-two", False, "h"),
        ("password", member, user, "o", "n", False, "i"),
        ("sessions", member, user, "j"),
        ("revoke", member, user, "ab12", None, "k"),
        ("leave", member, user, p.LOST),
    ]


def test_users_answer_carries_the_list_the_label_and_the_room():
    s, hub, member = make()
    s.receive(hello(), 0)
    assert s.receive(p.UsersRequest(room="#general", label="g"), 0.1) == []
    assert member.pushed == [{"type": "users", "users": ["alice", "bob"], "label": "g",
                              "room": "#general", "guests": ["bob"]}]


# --- errors: code, label and a sentence ------------------------------------------------
def test_a_frame_that_is_not_a_request_is_unknown_type_with_its_label():
    s, hub, _ = make()
    s.receive(hello(), 0)
    [err] = sent(s.receive(p.Ack(label="L9"), 0.1))           # a server frame, sent back
    assert (err.code, err.label) == (p.UNKNOWN_TYPE, "L9") and "ack" in err.message
    [err] = sent(s.receive(p.Presence(room="#general", count=1), 0.2))  # one without a label
    assert (err.code, err.label) == (p.UNKNOWN_TYPE, None) and "presence" in err.message


def test_errors_say_why_in_a_sentence():
    s, hub, _ = make()
    [err] = sent(s.receive(p.Say(text="hi"), 0.0))
    assert err.code == p.NOT_REGISTERED and "hello" in err.message
    s.receive(hello(caps=None), 0.1)
    [err] = sent(s.receive(p.Say(text="hi", room="#py", label="L"), 0.2))
    assert (err.code, err.label) == (p.BAD_REQUEST, "L") and "rooms" in err.message
    [err] = sent(s.receive(p.JoinRequest(room="#py"), 0.3))
    assert err.code == p.BAD_REQUEST and '"caps":["rooms"]' in err.message
    [err] = sent(s.receive(hello("bob"), 0.4))
    assert err.code == p.ALREADY_REGISTERED and "alice" in err.message


def test_an_invalid_frame_is_answered_with_the_decoders_code_and_sentence():
    s, _, _ = make()
    bad = p.ProtocolError(p.BAD_FIELD, "field 'text' of 'say' has the wrong type")
    [err] = sent(s.receive(bad, 0.0))
    assert (err.code, err.message) == (p.BAD_FIELD, "field 'text' of 'say' has the wrong type")


def test_a_refused_hello_is_logged_with_peer_short_name_and_code(caplog):
    s, hub, _ = make()
    hub.refuse = p.NAME_INVALID
    with caplog.at_level(logging.INFO, logger="parley.server"):
        s.receive(hello("n" * 100), 0.0)
    [rec] = [r for r in caplog.records if r.name == "parley.server"]
    assert rec.getMessage() == "10.0.0.7:5555 refused %r: name_invalid" % ("n" * 40)


# --- rate limit: refill, retry_after, throttled unlabelled errors ------------------------
def test_tokens_refill_at_rate_per_second():
    s, hub, _ = make(rate=4.0, burst=2, flood_kick=100)
    s.receive(hello(), 0.0)
    assert s.receive(p.Say(text="1"), 0.0) == []            # the bucket is empty now
    assert sent(s.receive(p.Say(text="x", label="a"), 0.0))[0].code == p.RATE_LIMITED
    # half a second at 4/s is two frames, not one more
    assert s.receive(p.Say(text="2"), 0.5) == []
    assert s.receive(p.Say(text="3"), 0.5) == []
    assert sent(s.receive(p.Say(text="4", label="b"), 0.5))[0].code == p.RATE_LIMITED


def test_retry_after_is_the_time_until_the_next_token():
    s, hub, _ = make(rate=3.0, burst=1, flood_kick=100)
    s.receive(hello(), 0.0)                                  # bucket 1 -> 0
    [err] = sent(s.receive(p.Say(text="x", label="L"), 0.1))  # 0.3 token: 0.7 / 3 s to go
    assert err.code == p.RATE_LIMITED and err.retry_after == pytest.approx(0.234, abs=1e-9)
    assert "3 messages per second" in err.message and "burst 1" in err.message
    # waiting exactly retry_after is enough (it is rounded up, never down)
    assert s.receive(p.Say(text="now", label="M"), 0.1 + err.retry_after) == []


def test_unlabelled_rate_errors_at_most_once_a_second_to_the_exact_second():
    s, hub, _ = make(rate=0.01, burst=1, flood_kick=1000)
    s.receive(hello(), 0.0)
    assert len(sent(s.receive(p.Say(text="x"), 10.0))) == 1
    assert sent(s.receive(p.Say(text="x"), 10.5)) == []
    assert sent(s.receive(p.Say(text="x"), 10.75)) == []
    assert len(sent(s.receive(p.Say(text="x"), 11.0))) == 1   # exactly a second later
    assert sent(s.receive(p.Say(text="x"), 11.5)) == []


def test_rate_limited_invalid_and_label_less_frames_never_raise():
    s, hub, _ = make(rate=0.01, burst=1, flood_kick=1000)
    s.receive(hello(), 0.0)
    for item in (p.ProtocolError(p.BAD_JSON, "x"), p.Ping(token="t"), p.Bye()):
        out = s.receive(item, 5.0)
        assert all(e.code == p.RATE_LIMITED for e in sent(out))


# --- timers: exact boundaries and what the bye says ---------------------------------------
def test_handshake_timeout_is_strictly_after_the_limit_and_names_it():
    s, _, _ = make(handshake_timeout=15.0)
    assert s.tick(15.0) == []
    [close] = s.tick(15.25)
    assert close.reason == p.TIMEOUT and "15 s" in close.message


def test_ping_exactly_at_the_interval_is_not_yet_sent_and_carries_a_token():
    s, _, _ = make(ping_interval=30.0, ping_timeout=10.0)
    s.receive(hello(), 2.0)
    assert s.tick(32.0) == []
    [ping] = sent(s.tick(32.5))
    assert isinstance(ping, p.Ping) and ping.token == "32500"      # the server's ms clock


def test_ping_timeout_is_strictly_after_the_limit_and_names_it():
    s, _, _ = make(ping_interval=30.0, ping_timeout=10.0)
    s.receive(hello(), 0.0)
    sent(s.tick(30.5))
    assert s.tick(40.5) == []
    [close] = s.tick(40.75)
    assert close.reason == p.TIMEOUT and close.notify and "10 s" in close.message


def test_a_closed_session_answers_nothing_and_ticks_nothing():
    s, hub, _ = make()
    s.receive(hello(), 0.0)
    s.closed(p.LOST)
    assert s.state is State.CLOSED and s.name is None
    assert s.receive(p.Say(text="late"), 1.0) == []
    assert s.tick(1000.0) == []


def test_retry_after_of_a_whole_second_is_exactly_that():
    s, hub, _ = make(rate=1.0, burst=1, flood_kick=100)
    s.receive(hello(), 0.0)                                  # bucket 1 -> 0
    [err] = sent(s.receive(p.Say(text="x", label="L"), 0.0))
    assert err.retry_after == 1.0


def test_a_decode_error_is_answered_with_the_frames_label():
    s, hub, _ = make()
    s.receive(hello(), 0.0)
    [err] = sent(s.receive(p.ProtocolError(p.BAD_FIELD, "field 'text' is wrong", "L7"), 0.0))
    assert (err.code, err.message, err.label) == (p.BAD_FIELD, "field 'text' is wrong", "L7")
    [err] = sent(s.receive(p.ProtocolError(p.BAD_JSON, "not JSON"), 0.0))
    assert err.label is None
