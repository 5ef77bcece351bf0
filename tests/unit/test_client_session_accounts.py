"""The client Session with accounts, against the scripted server of
test_client_session.py: the password goes in the first hello only, the
welcome's login token is what a reconnect uses, a revoked login stops the
session (no reconnect, no password sent by itself), guests are tracked."""
from __future__ import annotations

import time

from parley import protocol as p
from parley.client.session import (AccountChanged, LoggedOut, NameRefused, SessionState,
                                   StateChanged)

from test_client_session import (WAIT, harness, msg, room_info, server, welcome)  # noqa: F401

ACCOUNT = {"name": "alice", "admin": False, "session": "3f2a9c1e"}


def account_welcome(**kw) -> p.Welcome:
    w = welcome(token=kw.pop("token", "login-token"), **kw)
    w.auth = p.AUTH_OPTIONAL
    w.account = dict(ACCOUNT)
    return w


def test_password_in_the_first_hello_then_only_the_login_token(harness):
    h = harness(password="correct horse", device="laptop")
    conn = h.start()
    hello = conn.expect("hello")
    assert (hello.password, hello.device, hello.token, hello.register) == (
        "correct horse", "laptop", None, None)
    assert "correct horse" not in repr(hello)
    conn.send(account_welcome())
    h.wait_type(p.Welcome)
    assert h.s.account == ACCOUNT and h.s.auth == p.AUTH_OPTIONAL
    assert h.s.session_id == "3f2a9c1e" and h.s.is_account
    conn.close()                                    # the network drops
    h.wait_type(StateChanged, state=SessionState.RECONNECTING)
    again = h.server.accept().expect("hello")
    assert again.password is None                   # never resent by itself
    assert again.token == "login-token"
    assert again.device is None and again.register is None


def test_register_flag_goes_with_the_password(harness):
    h = harness(password="a long passphrase", register=True)
    hello = h.start().expect("hello")
    assert hello.register is True and hello.password == "a long passphrase"


def test_a_guest_sends_no_password_fields(harness):
    h = harness(register=True)                      # register without a password: ignored
    hello = h.start().expect("hello")
    assert hello.password is None and hello.register is None and hello.device is None


def test_revoked_bye_stops_the_session_and_it_does_not_reconnect(harness):
    h = harness(password="correct horse")
    conn = h.start()
    conn.expect("hello")
    conn.send(account_welcome())
    h.wait_type(p.Welcome)
    conn.send(p.Bye(reason=p.REVOKED, message="this session was logged out from another session"))
    out = h.wait_type(LoggedOut)
    assert "logged out" in out.message
    h.wait_type(StateChanged, state=SessionState.CLOSED)
    assert h.s.logged_out and h.s.token is None
    assert not any(isinstance(e, StateChanged) and e.state is SessionState.RECONNECTING
                   for e in h.seen)
    h.server.lsock.settimeout(0.4)                  # and nobody knocks again
    try:
        h.server.lsock.accept()
        raise AssertionError("the session reconnected after being logged out")
    except OSError:
        pass


def test_a_refused_login_token_on_reconnect_means_logged_out(harness):
    h = harness(password="correct horse")
    conn = h.start()
    conn.expect("hello")
    conn.send(account_welcome())
    h.wait_type(p.Welcome)
    conn.close()
    again = h.server.accept()
    hello = again.expect("hello")
    assert hello.token == "login-token" and hello.password is None
    # revoked while we were away: the server answers the token like a guest's hello
    again.send(p.Error(code=p.NAME_REGISTERED, message="the name 'alice' belongs to an account"))
    h.wait_type(LoggedOut)
    h.wait_type(StateChanged, state=SessionState.CLOSED)
    assert h.s.logged_out
    assert not any(isinstance(e, NameRefused) for e in h.seen)
    again.nothing("hello", within=0.3)              # the password is not tried by itself


def test_login_failed_is_a_name_refused_and_the_ui_may_try_again(harness):
    h = harness(password="wrong one")
    conn = h.start()
    conn.expect("hello")
    conn.send(p.Error(code=p.LOGIN_FAILED, message="wrong name or password"))
    refused = h.wait_type(NameRefused)
    assert refused.code == p.LOGIN_FAILED
    assert not h.s.logged_out
    conn.nothing("hello", within=0.3)               # waits for the UI
    h.s.set_name("alice", password="correct horse")
    hello = conn.expect("hello")
    assert hello.password == "correct horse" and hello.token is None
    conn.send(account_welcome())
    h.wait_type(p.Welcome)


def test_a_guest_told_the_name_is_registered_can_log_in_on_the_same_connection(harness):
    h = harness()
    conn = h.start()
    assert conn.expect("hello").password is None
    conn.send(p.Error(code=p.NAME_REGISTERED, message="the name 'alice' belongs to an account"))
    assert h.wait_type(NameRefused).code == p.NAME_REGISTERED
    h.s.set_name("alice", password="correct horse")
    assert conn.expect("hello").password == "correct horse"


def test_a_throttled_login_is_tried_again_when_the_server_says(harness):
    h = harness(password="correct horse")
    conn = h.start()
    conn.expect("hello")
    conn.send(p.Error(code=p.THROTTLED, message="too many failed logins: try again in 0.5 s",
                      retry_after=0.5))
    told = time.monotonic()
    assert h.wait_type(p.Error, code=p.THROTTLED).retry_after == 0.5
    hello = conn.expect("hello")                     # on the same connection
    assert time.monotonic() - told >= 0.45
    assert hello.password == "correct horse"


def test_a_guest_registers_its_name(harness):
    h = harness()
    conn = h.start()
    conn.expect("hello")
    general = room_info("#general", ["alice", "bob"])
    general.guests = ["alice", "bob"]
    w = welcome(rooms=[general])
    w.auth, w.guests = p.AUTH_OPTIONAL, ["alice", "bob"]
    conn.send(w)
    h.wait_type(p.Welcome)
    assert h.s.account is None and h.s.guests == {"alice", "bob"}
    label = h.s.register("a long passphrase")
    req = conn.expect("register")
    assert req.password == "a long passphrase" and req.label == label
    conn.send(p.AccountInfo(name="alice", session="5d0e2b7a", label=label))
    h.wait_type(p.AccountInfo)
    assert h.s.account == {"name": "alice", "admin": False, "session": "5d0e2b7a"}
    assert h.s.guests == {"bob"}
    assert h.s.pending() == 0


def test_a_register_in_flight_is_not_sent_again_after_a_drop(harness):
    h = harness()
    conn = h.start()
    conn.expect("hello")
    conn.send(welcome())
    h.wait_type(p.Welcome)
    label = h.s.register("a long passphrase")
    conn.expect("register")
    conn.close()                                     # no answer: the connection drops
    err = h.wait_type(p.Error, label=label)
    assert err.code == "not_sent"
    again = h.server.accept()
    again.expect("hello")
    again.send(welcome())
    h.wait_type(p.Welcome)
    again.nothing("register", within=0.4)


def test_sessions_revoke_and_password_requests(harness):
    h = harness(password="correct horse")
    conn = h.start()
    conn.expect("hello")
    conn.send(account_welcome())
    h.wait_type(p.Welcome)
    label = h.s.list_sessions()
    assert conn.expect("sessions").label == label
    rows = [{"id": "3f2a9c1e", "device": "laptop", "created": "2026-11-25T09:00:01.000Z",
             "seen": "2026-11-25T09:00:01.000Z", "current": True, "online": True}]
    conn.send(p.SessionList(sessions=rows, label=label))
    assert h.wait_type(p.SessionList).sessions == rows
    one = h.s.revoke("77ab0c2d")
    assert conn.expect("revoke").session == "77ab0c2d"
    others = h.s.revoke(others=True)
    got = conn.expect("revoke", others=True)
    assert got.session is None and got.label == others
    pw = h.s.change_password("correct horse", "battery staple 2")
    got = conn.expect("password")
    assert (got.old, got.new, got.label) == ("correct horse", "battery staple 2", pw)
    for lab in (one, others, pw):
        conn.send(p.Ack(label=lab))
    assert h.s.wait_idle(WAIT)


def test_guests_from_welcome_user_lists_rooms_and_messages(harness):
    h = harness()
    conn = h.start()
    conn.expect("hello")
    general = room_info("#general", ["alice", "bob", "carol"])
    general.guests = ["bob"]
    w = welcome(users=("alice", "bob", "carol"), rooms=[general])
    w.auth, w.guests = p.AUTH_OPTIONAL, ["bob"]
    conn.send(w)
    h.wait_type(p.Welcome)
    assert h.s.guests == {"bob"} and h.s.is_guest("BOB") and not h.s.is_guest("carol")
    conn.send(p.Message(id=11, ts="2026-11-24T15:04:05.123Z", sender="dave", text="hi",
                        room="#general", guest=True))
    h.wait_type(p.Message, id=11)
    assert h.s.is_guest("dave")
    conn.send(msg(12, "bob", "registered now"))      # no guest mark: an account
    h.wait_type(p.Message, id=12)
    assert not h.s.is_guest("bob")
    conn.send(p.UserList(users=["alice", "carol", "dave"], guests=["carol"]))
    h.wait_type(p.UserList)
    assert h.s.guests == {"carol"}
    conn.send(p.Leave(id=13, ts="2026-11-24T15:04:05.123Z", name="carol", reason=p.QUIT))
    h.wait_type(p.Leave)
    assert h.s.guests == set()
    assert any(isinstance(e, AccountChanged) for e in h.seen)


def test_guests_are_marked_only_when_someone_has_an_account(harness):
    h = harness()
    conn = h.start()
    conn.expect("hello")
    general = room_info("#general", ["alice", "bob"])
    general.guests = ["alice", "bob"]
    w = welcome(rooms=[general])
    w.auth, w.guests = p.AUTH_OPTIONAL, ["alice", "bob"]
    conn.send(w)
    h.wait_type(p.Welcome)
    assert not h.s.marks_guests                    # everybody is a guest: no marks
    # a join does not say whether the newcomer has an account: still no marks
    conn.send(p.Join(id=11, ts="2026-11-24T15:04:05.123Z", name="zed", room="#general"))
    h.wait_type(p.Join)
    assert not h.s.marks_guests and not h.s.is_guest("zed")
    conn.send(msg(12, "zed", "an account speaks"))   # no guest flag: an account
    h.wait_type(p.Message, id=12)
    assert h.s.marks_guests
    conn.send(p.Leave(id=13, ts="2026-11-24T15:04:05.123Z", name="zed", reason=p.QUIT))
    h.wait_type(p.Leave)
    assert not h.s.marks_guests
