"""Accounts in the hub and the session, without sockets: where a password may
cross, what the session does while one is checked, and the store's account
tables."""
import secrets
import threading

import pytest

from parley import protocol as p
from parley.server import accountdb
from parley.server import accounts as acc
from parley.server.hub import Hub, Pending
from parley.server.session import Limits, ServerSession, State
from parley.server.store import Store

PW = "correct horse"


class Member:
    def __init__(self, peer="10.0.0.7:5555", secure=False):
        self.peer = peer
        self.secure = secure
        self.legacy = False
        self.out = []
        self.arrived = threading.Event()
        self.kicked = None

    def subscribe(self, log, pos): pass
    def unsubscribe(self, log): pass
    def hold(self): pass
    def release(self): pass
    def replaced(self): pass

    def push(self, frame, log=None, pos=0, first=False):
        self.out.append(p.decode_line(frame.rstrip(b"\n"), p.SERVER_FRAMES))
        self.arrived.set()

    def kick(self, reason, message=None):
        self.kicked = reason

    def wait(self, kind, timeout=10.0):
        while True:
            for f in self.out:
                if f.type == kind:
                    return f
            self.arrived.clear()
            assert self.arrived.wait(timeout), f"no {kind}; got {self.out}"


@pytest.fixture
def hub():
    h = Hub(Store(":memory:")).start()
    yield h
    h.close()


def hello(name, **kw):
    return p.Hello(version=p.PROTOCOL_VERSION, name=name, caps=[p.CAP_ROOMS], **kw)


def add(hub, name, password=PW):
    return hub.store.create_account(name, secrets.token_hex(8), acc.hash_password(password))


@pytest.mark.parametrize("peer,secure,allowed", [
    ("10.0.0.7:5555", False, False),       # plain TCP from another machine
    ("10.0.0.7:5555", True, True),         # TLS
    ("127.0.0.1:5555", False, True),       # this machine
    ("::1:5555", False, True),             # (peers are written address:port)
])
def test_a_password_crosses_only_tls_or_loopback(hub, peer, secure, allowed):
    add(hub, "alice")
    m = Member(peer, secure)
    s = ServerSession(hub, m, Limits(), 0.0)
    out = s.receive(hello("alice", password=PW), 0.0)
    if allowed:
        assert out == [] and s.state is State.AUTHENTICATING
        m.wait("welcome")
        s.tick(0.5)
        assert s.state is State.OPEN and s.user.name == "alice"
    else:
        [send] = out
        assert send.event.code == p.INSECURE and "TLS" in send.event.message
        assert s.state is State.HANDSHAKE


def test_allow_plain_passwords_lets_them_through(hub):
    hub.allow_plain_passwords = True
    add(hub, "alice")
    assert isinstance(hub.register(Member(), hello("alice", password=PW), secure=False), Pending)


def test_the_session_waits_for_the_login_and_takes_its_answer(hub):
    add(hub, "alice")
    m = Member("127.0.0.1:1")
    s = ServerSession(hub, m, Limits(handshake_timeout=1.0), 0.0)
    s.receive(hello("alice", password="wrong one"), 0.0)
    assert s.state is State.AUTHENTICATING
    [again] = s.receive(hello("alice", password=PW), 0.1)
    assert again.event.code == p.ALREADY_REGISTERED
    assert m.wait("error").code == p.LOGIN_FAILED
    # no handshake timeout while a worker checks; back to HANDSHAKE once answered
    assert s.tick(0.2) == [] and s.state is State.HANDSHAKE
    assert s.receive(hello("alice", password=PW), 0.3) == []
    m.wait("welcome")
    assert s.tick(0.4) == [] and s.state is State.OPEN


def test_an_account_token_is_only_good_for_its_own_name(hub):
    add(hub, "alice")
    add(hub, "bob")
    m = Member("127.0.0.1:1")
    assert isinstance(hub.register(m, hello("alice", password=PW)), Pending)
    token = m.wait("welcome").token
    hub.leave(m, hub.users["alice"], p.QUIT)
    err = hub.register(Member("127.0.0.1:2"), hello("bob", token=token))
    assert err.code == p.LOGIN_FAILED          # bob's name, alice's token: no
    assert hub.register(Member("127.0.0.1:3"), hello("alice", token=token)) is None


def test_password_longer_than_the_limit_is_refused_before_hashing(hub):
    err = hub.register(Member("127.0.0.1:1"),
                       hello("alice", password="x" * (acc.PASSWORD_MAX + 1)))
    assert err.code == p.BAD_PASSWORD


def test_accounts_off_refuses_passwords_and_ignores_accounts():
    h = Hub(Store(":memory:"), auth=p.AUTH_OFF).start()
    try:
        add(h, "alice")
        assert h.register(Member("127.0.0.1:1"), hello("alice", password=PW)).code == \
            p.ACCOUNTS_OFF
        assert h.register(Member("127.0.0.1:1"), hello("alice")) is None
    finally:
        h.close()


def test_a_bad_auth_mode_is_a_programming_error():
    with pytest.raises(ValueError):
        Hub(Store(":memory:"), auth="maybe")


# --- the store's account tables ------------------------------------------------------
def test_accountdb_names_are_unique_in_any_case_and_logins_list_newest_first(tmp_path):
    with Store(str(tmp_path / "parley.db")) as st:
        a = st.create_account("Alice", "sid-a", "h1")
        assert a.key == "alice" and a.name == "Alice"
        assert st.create_account("ALICE", "sid-b", "h2") is None
        assert st.create_account("bob", "sid-a", "h3") is None      # sid taken
        assert st.account("aLiCe") == a and st.account_by_sid("sid-a") == a
        assert "h1" not in repr(a)
        clock = [1000.0]
        st.clock = lambda: clock[0]
        one = st.add_login(b"t1", "sid-a", "laptop")
        clock[0] += 5
        two = st.add_login(b"t2", "sid-a", "phone")
        assert [x.id for x in st.logins("sid-a")] == [two.id, one.id]
        clock[0] += 5
        st.touch_login(b"t1")
        assert [x.id for x in st.logins("sid-a")] == [one.id, two.id]
        assert st.login_by_token_hash(b"t2") == two
        assert st.revoke_logins("sid-a", "nope") == []
        assert st.revoke_logins("sid-a", keep=one.id) == [b"t2"]
        assert st.login_by_token_hash(b"t2") is None
        assert st.set_password_hash("sid-a", "h9") and st.account("alice").hash == "h9"


def test_a_guest_session_that_becomes_an_account_moves_its_token(tmp_path):
    from parley.server.store import Write
    with Store(str(tmp_path / "parley.db")) as st:
        st.submit(Write(op="session", sid="g1", name="erin", token_hash=b"tok"))
        st.commit_queued()
        assert st.session_by_token_hash(b"tok") == ("g1", "erin")
        st.create_account("erin", "g1", "h")
        st.add_login(b"tok", "g1", "")
        assert st.session_by_token_hash(b"tok") is None
        assert st.login_by_token_hash(b"tok").sid == "g1"


def test_removing_an_account_removes_its_logins(tmp_path):
    with Store(str(tmp_path / "parley.db")) as st:
        st.create_account("alice", "sid-a", "h")
        st.add_login(b"t1", "sid-a", "")
        with st._reading() as c:
            assert accountdb.remove(c, "sid-a") == [b"t1"]
            assert accountdb.count(c) == 0
        assert st.login_by_token_hash(b"t1") is None


def test_a_connection_that_closes_right_after_its_login_leaves(hub):
    add(hub, "alice")
    m = Member("127.0.0.1:1")
    s = ServerSession(hub, m, Limits(), 0.0)
    s.receive(hello("alice", password=PW), 0.0)
    m.wait("welcome")                         # admitted; the session has not noticed yet
    assert "alice" in hub.users
    s.closed(p.LOST)                          # (before any frame or tick)
    assert "alice" not in hub.users           # no ghost left online


def test_a_login_not_admitted_leaves_no_session_behind(hub):
    account = add(hub, "alice")
    ok = Pending()
    hub._login(Member("127.0.0.1:1"), hello("alice", password=PW, device="laptop"), ok,
               "127.0.0.1")
    assert ok.user is not None
    gone = Pending()
    gone.cancelled = True                     # its connection closed while it was checked
    m = Member("127.0.0.1:2")
    hub._login(m, hello("alice", password=PW, device="phone"), gone, "127.0.0.1")
    assert gone.user is None and m.out == []
    assert [x.device for x in hub.store.logins(account.sid)] == ["laptop"]


def test_a_login_whose_connection_closed_is_not_admitted(hub):
    from parley.server.hub import _Identity
    account = add(hub, "alice")
    pending = Pending()
    m = Member("127.0.0.1:1")
    hub.abandon(m, pending, p.LOST)           # closed while the password was checked
    assert pending.cancelled
    ident = _Identity(account.sid, "alice", "tok", b"th", account, "id1", [], True)
    assert hub._admit(m, hello("alice"), ident, pending) is None
    assert "alice" not in hub.users and m.out == []
