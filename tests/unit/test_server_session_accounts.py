"""The session's side of accounts and moderation, without sockets: a password
login waits in AUTHENTICATING for the hub's login worker, what the session
does meanwhile, where a password may cross, and closing at each step."""
import logging

import pytest

from parley import protocol as p
from parley.server.hub import Pending
from parley.server.session import Limits, ServerSession, Send, State


class User:
    def __init__(self, name, sid="sid-1"):
        self.name, self.sid, self.legacy = name, sid, False


class Hub:
    def __init__(self):
        self.calls = []
        self.answer = None           # what register returns
        self.users = {}

    def register(self, member, hello, secure=True):
        self.calls.append(("register", hello.name, secure))
        return self.answer

    def leave(self, member, user, reason):
        self.calls.append(("leave", user.name, reason))

    def abandon(self, member, pending, reason):
        self.calls.append(("abandon", pending, reason))

    def moderate(self, member, user, req):
        self.calls.append(("moderate", user.name, req.action, req.label))

    def audit_log(self, member, user, req):
        self.calls.append(("audit", user.name, req.label))


class Member:
    def __init__(self, peer="10.0.0.7:5555", secure=False):
        self.peer, self.secure = peer, secure


def hello(**kw):
    return p.Hello(version=1, name="alice", caps=[p.CAP_ROOMS], **kw)


def make(peer="10.0.0.7:5555", secure=False, **limits):
    hub = Hub()
    return ServerSession(hub, Member(peer, secure), Limits(**limits), 0.0), hub


@pytest.mark.parametrize("peer,secure,expected", [
    ("10.0.0.7:5555", False, False),
    ("10.0.0.7:5555", True, True),
    ("127.0.0.1:5555", False, True),
    ("127.8.9.1:5555", False, True),
    ("::1:5555", False, True),
    ("192.168.1.2:1", False, False),
])
def test_secure_is_tls_or_loopback(peer, secure, expected):
    s, hub = make(peer, secure)
    s.receive(hello(password="pw"), 0.0)
    assert hub.calls == [("register", "alice", expected)]


def test_a_password_login_waits_then_opens_with_the_user_it_became():
    s, hub = make(handshake_timeout=1.0)
    pending = hub.answer = Pending()
    assert s.receive(hello(password="pw"), 0.0) == []
    assert s.state is State.AUTHENTICATING and s.pending is pending
    # meanwhile: another hello is refused, a request is not registered (with its label),
    # a ping is answered, no timeout even long after the handshake limit
    [again] = s.receive(hello(password="pw"), 0.1)
    assert (again.event.code, again.event.message) == (
        p.ALREADY_REGISTERED, "still logging in: wait for the welcome")
    [early] = s.receive(p.Say(text="hi", label="L1"), 0.2)
    assert (early.event.code, early.event.label, early.event.message) == (
        p.NOT_REGISTERED, "L1", "still logging in: wait for the welcome")
    [pong] = s.receive(p.Ping(token="t"), 0.3)
    assert pong.event == p.Pong(token="t")
    assert s.tick(50.0) == [] and s.state is State.AUTHENTICATING
    assert len([c for c in hub.calls if c[0] == "register"]) == 1
    pending.user = User("alice")
    assert s.tick(50.1) == []                  # done not set yet: still waiting
    assert s.state is State.AUTHENTICATING
    pending.done = True
    assert s.receive(p.ModRequest(action="lock", room="#x", label="m"), 50.2) == []
    assert s.state is State.OPEN and s.user is pending.user and s.pending is None
    assert hub.calls[-1] == ("moderate", "alice", "lock", "m")


def test_a_refused_login_goes_back_to_handshake_and_gives_more_time(caplog):
    caplog.set_level(logging.INFO, logger="parley.server")
    s, hub = make(handshake_timeout=10.0)
    pending = hub.answer = Pending()
    s.receive(hello(password="pw"), 8.0)
    pending.done = True                        # (user None: refused, the hub sent why)
    assert s.tick(9.0) == []
    assert s.state is State.HANDSHAKE and s.pending is None and s.refusals == 1
    assert s.connected_at == 8.0               # the timer restarts from that hello
    assert s.tick(17.9) == []
    [close] = s.tick(18.1)
    assert close.reason == p.TIMEOUT
    assert "10.0.0.7:5555 refused '': login" in caplog.messages


def test_closing_while_logging_in_abandons_the_login():
    s, hub = make()
    pending = hub.answer = Pending()
    s.receive(hello(password="pw"), 0.0)
    s.closed(p.LOST)
    assert hub.calls[-1] == ("abandon", pending, p.LOST)
    assert s.state is State.CLOSED and s.pending is None
    assert not [c for c in hub.calls if c[0] == "leave"]


def test_closing_after_the_login_was_noticed_leaves():
    s, hub = make()
    pending = hub.answer = Pending()
    s.receive(hello(password="pw"), 0.0)
    pending.user, pending.done = User("alice"), True
    s.tick(0.1)
    s.closed(p.QUIT)
    assert hub.calls[-1] == ("leave", "alice", p.QUIT)


def test_audit_reaches_the_hub_and_a_legacy_client_cannot_moderate():
    s, hub = make()
    hub.answer = None
    hub.users["alice"] = User("alice")
    s.receive(hello(), 0.0)
    assert s.receive(p.AuditRequest(label="a"), 0.1) == []
    assert hub.calls[-1] == ("audit", "alice", "a")
    s.user.legacy = True
    [err] = s.receive(p.ModRequest(action="kick", room="#x", target="b", label="k"), 0.2)
    assert (err.event.code, err.event.label) == (p.BAD_REQUEST, "k")
