"""Accounts in the hub, single-threaded: password logins on the login pool,
device tokens, guests, claims, password changes, sessions and revokes, direct
messages to accounts that are away, and the hold of users whose connection
was lost.  The rig of test_hub_mutants.py (a synchronous store, a reader pool
run by hand) plus the store's account methods, a login pool run by hand, a
throttle that records what it is told and hashes as plain text (the hub's
logic, not scrypt's cost).  These are among the tests that mutation testing
runs over ``server/hub.py`` (see docs/testing.md); the same behaviour over
real sockets: tests/integration/test_accounts_server.py."""
import dataclasses
import logging
import threading

import pytest

import test_hub_mutants as base
from parley import protocol as p
from parley.server import accounts as acc
from parley.server import hub as hub_mod
from parley.server import moderation as mod
from parley.server.accountdb import Account, Login
from parley.server.hub import Hub, Pending, token_hash
from test_hub_mutants import TS, TS_TEXT, Readers, hello, texts, types

NOW = TS / 1000                 # the hub's clock (s): the same instant as the store's
PW = "correct horse"


# --- the rig -----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def plain_hashes(monkeypatch):
    """A hash is "h:" + the password ("old:" + it: made with weaker parameters)."""
    verified = []

    def verify(password, stored):
        verified.append((password, stored))
        return stored in ("h:" + password, "old:" + password)

    monkeypatch.setattr(acc, "hash_password", lambda password: "h:" + password)
    monkeypatch.setattr(acc, "verify_password", verify)
    monkeypatch.setattr(acc, "needs_rehash", lambda stored: stored.startswith("old:"))
    return verified


class AcctStore(base.SyncStore):
    """SyncStore with the account and moderation methods of store.Store."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.accounts_by_key = {}
        self.logins_by_hash = {}      # token hash -> Login
        self.acalls = []              # (method, args) of the account reads and changes
        self.rules = mod.Rules()      # what moderation_rules() loads
        self.execs = []               # (sql, params) of the committed exec writes
        self.checked = []             # (op, check) of every submit
        self.waiting = []             # what waiting_dms() answers
        self.mentions = []            # what waiting_mentions() answers
        self.infos = {}               # event id -> what event_info() answers
        self.audit_page = ([], False)
        self.removed = set()          # ids whose text a delete cleared
        self.n_logins = 0
        self.loaded = 0               # moderation_rules() calls

    def _acc(self, name, *args):
        self.acalls.append((name, args))
        if self.fail is not None:
            raise self.fail

    def account(self, name):
        self._acc("account", name)
        return self.accounts_by_key.get(name.casefold())

    def account_by_sid(self, sid):
        self._acc("account_by_sid", sid)
        return next((a for a in self.accounts_by_key.values() if a.sid == sid), None)

    def login_by_token_hash(self, th):
        self._acc("login_by_token_hash", th)
        return self.logins_by_hash.get(th)

    def create_account(self, name, sid, hash, admin=False):
        self._acc("create_account", name, sid, hash)
        if name.casefold() in self.accounts_by_key:
            return None
        a = Account(name.casefold(), name, sid, hash, admin, TS)
        self.accounts_by_key[a.key] = a
        return a

    def set_password_hash(self, sid, hash):
        self._acc("set_password_hash", sid, hash)
        for key, a in self.accounts_by_key.items():
            if a.sid == sid:
                self.accounts_by_key[key] = dataclasses.replace(a, hash=hash)
                return True
        return False

    def add_login(self, th, sid, device):
        self._acc("add_login", th, sid, device)
        self.n_logins += 1
        login = Login(f"L{self.n_logins}", sid, device, TS + self.n_logins, TS + 10 * self.n_logins)
        self.logins_by_hash[th] = login
        self.sessions = {s: v for s, v in self.sessions.items() if v[1] != th}
        return login

    def revoke_logins(self, sid, login_id=None, keep=None):
        self._acc("revoke_logins", sid, login_id, keep)
        gone = [th for th, x in self.logins_by_hash.items() if x.sid == sid and (
            x.id == login_id if login_id is not None else x.id != keep)]
        for th in gone:
            del self.logins_by_hash[th]
        return gone

    def logins(self, sid):
        self._acc("logins", sid)
        return [x for x in reversed(list(self.logins_by_hash.values())) if x.sid == sid]

    def waiting_dms(self, sid, limit):
        self._acc("waiting_dms", sid, limit)
        return list(self.waiting)

    def waiting_mentions(self, sid, name, room_keys, limit):
        self._acc("waiting_mentions", sid, name, list(room_keys), limit)
        return list(self.mentions)

    def moderation_rules(self):
        self.loaded += 1
        return self.rules

    def event_info(self, id_):
        self._acc("event_info", id_)
        if id_ in self.infos:
            return self.infos[id_]
        for w in self.events:
            if w.id == id_:
                return (w.room, w.kind, w.sender, w.sender_sid, id_ in self.removed)
        return None

    def audit(self, before, limit):
        self._read("audit", before, limit)
        return self.audit_page

    def submit(self, w, check=True):
        self.checked.append((w.op, check))
        super().submit(w, check)

    def commit(self, error=None):
        if error is None:
            for w in self.queue:
                if w.op == "exec":
                    self.execs.append((w.text, w.params))
                    if w.text.startswith("UPDATE events SET text=NULL"):
                        self.removed.add(w.params[0])
        return super().commit(error)


class Throttle:
    """acc.LoginThrottle's interface; records what the hub tells it."""

    def __init__(self, wait=0.0):
        self.seconds = wait
        self.calls = []

    def wait(self, name, address, now):
        assert isinstance(now, float)
        self.calls.append(("wait", name, address))
        return self.seconds

    def failed(self, name, address, now):
        assert isinstance(now, float)
        self.calls.append(("failed", name, address))

    def succeeded(self, name, address):
        self.calls.append(("succeeded", name, address))


class Member(base.Member):
    def __init__(self, peer="10.0.0.9:4000"):
        super().__init__(peer)
        self.kicks = []

    def kick(self, reason, message=None):
        self.kicks.append((reason, message))


class Rig(base.Rig):
    """test_hub_mutants' rig with accounts on (``--auth optional``), the hub's
    clock at NOW and its login pool run by hand."""

    def __init__(self, store=None, **kw):
        kw.setdefault("auth", p.AUTH_OPTIONAL)
        kw.setdefault("clock", lambda: NOW)
        super().__init__(store or AcctStore(), **kw)
        self.hub.logins.shutdown()
        self.hub.logins = self.logins = Readers()
        self.hub.throttle = self.throttle = Throttle()

    def settle(self):
        logins = getattr(self, "logins", None)
        while self.store.queue or self.readers.tasks or (logins and logins.tasks):
            if logins is not None:
                logins.run()
            self.store.commit()
            self.readers.run()

    def account(self, name, password=PW, admin=False, sid=None):
        """An account made by an admin (not through the hub)."""
        a = Account(name.casefold(), name, sid or "sid-" + name.casefold(), "h:" + password,
                    admin, TS)
        self.store.accounts_by_key[a.key] = a
        return a

    def login(self, name, password=PW, member=None, **kw):
        """A password login (an account ``name``, or ``register=True``) that succeeds."""
        m = member or Member(kw.pop("peer", "10.0.0.9:4000"))
        pending = self.hub.register(m, hello(name, password=password, **kw))
        assert isinstance(pending, Pending), pending
        self.settle()
        assert pending.done and pending.user is not None, m.frames()
        frames = m.frames()
        assert frames[0]["type"] == "welcome", frames
        m.welcome, m.after = frames[0], frames[1:]
        return m, pending.user

    def refused(self, name, password=PW, member=None, **kw):
        """A password login that the login worker refuses: its pushed error."""
        m = member or Member()
        pending = self.hub.register(m, hello(name, password=password, **kw))
        assert isinstance(pending, Pending), pending
        assert not pending.done and m.out == []
        self.settle()
        assert pending.done and pending.user is None
        [err] = m.frames()
        assert err["type"] == "error"
        return err


@pytest.fixture
def rig():
    return Rig()


def logged(caplog, line):
    return line in [r.getMessage() for r in caplog.records if r.name == "parley.hub"]


def test_account_defaults():
    hub = Hub(base.SyncStore())
    try:
        assert hub.auth == p.AUTH_OPTIONAL and hub.accounts_on
        assert (hub.allow_plain_passwords, hub.open_registration, hub.hold) == (False, True, 0.0)
        assert hub.logins._max_workers == 2
        assert isinstance(hub.throttle, acc.LoginThrottle)
        assert hub.logins.submit(threading.current_thread).result(5).name.startswith(
            "parley-login")
    finally:
        hub.logins.shutdown()
        hub.readers.shutdown()
    hub = Hub(base.SyncStore(), login_workers=0, auth=p.AUTH_OFF)
    try:
        assert hub.logins._max_workers == 1 and not hub.accounts_on
    finally:
        hub.logins.shutdown()
        hub.readers.shutdown()


def test_close_stops_the_login_workers(rig):
    rig.hub.close()
    assert rig.logins.shut == (True, True)


# --- passwords: where they may cross, before any work --------------------------------------
def test_no_passwords_on_a_server_without_accounts():
    rig = Rig(auth=p.AUTH_OFF)
    rig.account("alice")
    for h in (hello("alice", password=PW), hello("alice", register=True)):
        err = rig.hub.register(Member(), h)
        assert (err.code, err.message) == (
            p.ACCOUNTS_OFF, "this server has no accounts (--auth off): connect without a password")
    assert rig.logins.tasks == []


def test_register_without_a_password_is_refused(rig):
    err = rig.hub.register(Member(), hello("alice", register=True))
    assert (err.code, err.message) == (p.BAD_PASSWORD, "give a password")
    assert rig.logins.tasks == []


def test_a_password_from_another_machine_needs_tls(rig):
    err = rig.hub.register(Member(), hello("alice", password=PW), secure=False)
    assert (err.code, err.message) == (
        p.INSECURE, "this server takes passwords only over TLS (or from its own machine): "
        "connect with TLS")
    assert rig.logins.tasks == []
    rig.hub.allow_plain_passwords = True
    assert isinstance(rig.hub.register(Member(), hello("alice", password=PW), secure=False),
                      Pending)


def test_a_password_is_at_most_password_max_characters(rig):
    longest = "x" * acc.PASSWORD_MAX
    assert isinstance(rig.hub.register(Member(), hello("alice", password=longest)), Pending)
    err = rig.hub.register(Member(), hello("alice", password=longest + "x"))
    assert (err.code, err.message) == (
        p.BAD_PASSWORD, f"a password has at most {acc.PASSWORD_MAX} characters")
    assert len(rig.logins.tasks) == 1


def test_closed_registration_refuses_new_accounts_not_logins():
    rig = Rig(open_registration=False)
    rig.account("alice")
    err = rig.hub.register(Member(), hello("bob", password=PW, register=True))
    assert (err.code, err.message) == (
        p.AUTH_REQUIRED, "accounts on this server are made by its admins; ask one for an account")
    assert rig.logins.tasks == []
    m, user = rig.login("alice")
    assert user.account.name == "alice"


def test_a_password_login_is_checked_on_a_login_worker(rig):
    rig.account("alice")
    m = Member("10.1.2.3:555")
    h = hello("alice", password=PW)
    pending = rig.hub.register(m, h)
    assert isinstance(pending, Pending) and not pending.done and pending.user is None
    [(fn, args)] = rig.logins.tasks
    assert args == (m, h, pending, "10.1.2.3")
    assert rig.store.queue == [] and rig.store.acalls == [] and m.out == []
    rig.settle()
    assert rig.throttle.calls == [("wait", "alice", "10.1.2.3"),
                                  ("succeeded", "alice", "10.1.2.3")]
    assert pending.done and pending.user is rig.hub.users["alice"]


# --- the login worker ------------------------------------------------------------------------
def test_a_throttled_login_says_how_long_to_wait(rig):
    rig.account("alice")
    rig.throttle.seconds = 0.5
    m = Member()
    err = rig.refused("alice", member=m)
    assert err == {"type": "error", "code": p.THROTTLED,
                   "message": "too many failed logins: try again in 0.5 s", "retry_after": 0.5}
    assert rig.store.acalls == []              # not even looked up
    assert rig.wakes[-1] == ({m}, [])
    assert rig.hub.users == {}


def test_a_wrong_password_is_counted_and_answered_like_an_unknown_name(rig, plain_hashes,
                                                                          caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    rig.account("alice")
    err = rig.refused("alice", password="not the one")
    assert (err["code"], err["message"]) == (p.LOGIN_FAILED, acc.LOGIN_FAILED)
    assert rig.throttle.calls == [("wait", "alice", "10.0.0.9"), ("failed", "alice", "10.0.0.9")]
    assert logged(caplog, "10.0.0.9: failed login for 'alice'")
    name = "n" * 32
    err = rig.refused(name)
    assert (err["code"], err["message"]) == (p.LOGIN_FAILED, acc.LOGIN_FAILED)
    assert plain_hashes[-1] == (PW, None)       # the same work without an account
    assert rig.throttle.calls[-1] == ("failed", name, "10.0.0.9")
    assert logged(caplog, f"10.0.0.9: failed login for {name[:40]!r}")
    assert rig.store.queue == [] and rig.hub.users == {}
    assert [c for c in rig.store.acalls if c[0] == "add_login"] == []


def test_a_login_is_the_accounts_own_spelling_on_a_new_device(rig, plain_hashes):
    rig.account("Alice")
    m, user = rig.login("ALICE", device="laptop", client="parley-cli")
    assert plain_hashes == [(PW, "h:" + PW)]
    assert rig.throttle.calls == [("wait", "ALICE", "10.0.0.9"), ("succeeded", "ALICE", "10.0.0.9")]
    token = m.welcome["token"]
    th = token_hash(token)
    assert ("add_login", (th, "sid-alice", "laptop")) in rig.store.acalls
    assert ("memberships", ("sid-alice",)) in rig.store.calls
    assert (user.sid, user.name, user.token_hash, user.token) == ("sid-alice", "Alice", th, token)
    assert user.account.key == "alice" and user.tokens == {m: th} and user.login_ids == {m: "L1"}
    assert m.welcome["name"] == "Alice"
    assert m.welcome["account"] == {"name": "Alice", "admin": False, "session": "L1"}
    assert m.welcome["auth"] == "optional" and "guests" not in m.welcome
    assert len(token) >= 43 and token != rig.hub.users["alice"].sid
    # an account has no guest session row: its sid is the account's
    assert [w.op for w in rig.store.events] == ["event"] and rig.store.sessions == {}
    assert rig.store.members == {"sid-alice": {"#general"}}
    assert not any(c[0] == "set_password_hash" for c in rig.store.acalls)


@pytest.mark.parametrize("kw,device", [
    (dict(device="phone", client="cli"), "phone"),
    (dict(client="parley-cli"), "parley-cli"),
    (dict(), ""),
    (dict(device="d" * (p.DEVICE_MAX + 5)), "d" * p.DEVICE_MAX),
])
def test_a_login_names_its_device(rig, kw, device):
    rig.account("alice")
    rig.login("alice", **kw)
    [(_, (_, sid, dev))] = [c for c in rig.store.acalls if c[0] == "add_login"]
    assert (sid, dev) == ("sid-alice", device)


def test_a_hash_of_weaker_parameters_is_replaced_at_login(rig):
    rig.account("alice")
    rig.store.accounts_by_key["alice"] = dataclasses.replace(
        rig.store.accounts_by_key["alice"], hash="old:" + PW)
    rig.login("alice")
    assert ("set_password_hash", ("sid-alice", "h:" + PW)) in rig.store.acalls
    assert rig.store.accounts_by_key["alice"].hash == "h:" + PW


def test_register_makes_the_account_and_logs_in(rig, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    m, user = rig.login("Erin", register=True)
    [(_, (name, sid, hash))] = [c for c in rig.store.acalls if c[0] == "create_account"]
    assert (name, hash) == ("Erin", "h:" + PW)
    assert len(sid) == 16 and int(sid, 16) >= 0 and user.sid == sid
    assert rig.store.accounts_by_key["erin"].sid == sid
    assert m.welcome["account"] == {"name": "Erin", "admin": False, "session": "L1"}
    assert logged(caplog, "10.0.0.9 registered the account Erin")
    assert rig.throttle.calls == [("wait", "Erin", "10.0.0.9")]
    assert [c for c in rig.store.acalls if c[0] == "account"] == []
    other, _ = rig.login("Frank", register=True)
    assert rig.hub.users["frank"].sid != sid


def test_register_refusals(rig):
    err = rig.refused("erin", password="short", register=True)
    assert (err["code"], err["message"]) == (p.BAD_PASSWORD, acc.password_problem("short"))
    rig.connect("Bob")
    err = rig.refused("BOB", register=True)
    assert (err["code"], err["message"]) == (p.NAME_TAKEN, "the name 'BOB' is taken; try another")
    rig.account("carol")
    err = rig.refused("Carol", register=True)
    assert (err["code"], err["message"]) == (
        p.NAME_TAKEN, "the name 'Carol' is registered already; log in, or pick another name")
    assert [c[1][0] for c in rig.store.acalls if c[0] == "create_account"] == ["Carol"]
    assert not any(c[0] == "add_login" for c in rig.store.acalls)


def test_a_login_that_fails_inside_is_an_internal_error(rig, caplog):
    rig.account("alice")
    rig.store.fail = RuntimeError("disk")
    m = Member("10.4.4.4:1")
    err = rig.refused("alice", member=m)
    assert (err["code"], err["message"]) == (
        p.INTERNAL, "the server failed to check that login; try again")
    assert logged(caplog, "10.4.4.4:1: a login failed: RuntimeError")
    assert rig.wakes[-1] == ({m}, [])


# --- device tokens --------------------------------------------------------------------------
def offline(rig, m, user):
    rig.hub.leave(m, user, p.QUIT)
    rig.settle()


def test_a_device_token_reopens_the_account(rig):
    rig.account("Alice")
    m, user = rig.login("alice")
    token = m.welcome["token"]
    rig.hub.join(m, user, "#py", None)
    rig.settle()
    offline(rig, m, user)
    before = len(rig.store.acalls)
    again = Member("10.0.0.9:4001")
    assert rig.hub.register(again, hello("ALICE", token=token)) is None
    assert rig.store.acalls[before:before + 2] == [
        ("login_by_token_hash", (token_hash(token),)), ("account_by_sid", ("sid-alice",))]
    writes = list(rig.store.queue)
    assert [(w.op, w.kind, w.room) for w in writes] == [("event", "join", "#general"),
                                                         ("event", "join", "#py")]
    rig.settle()
    user2 = rig.hub.users["alice"]
    assert (user2.sid, user2.name, user2.token, user2.token_hash) == (
        "sid-alice", "Alice", token, token_hash(token))
    assert user2.login_ids == {again: "L1"} and user2.account.name == "Alice"
    welcome, *unread = again.frames()
    assert (welcome["name"], welcome["token"]) == ("Alice", token)
    assert welcome["account"] == {"name": "Alice", "admin": False, "session": "L1"}
    assert [u["room"] for u in unread] == ["#general", "#py"]
    assert ("unread", ("sid-alice", "Alice", ["#general", "#py"])) in rig.store.calls


def test_a_device_token_is_only_good_for_its_own_account(rig):
    rig.account("alice")
    m, user = rig.login("alice")
    offline(rig, m, user)
    rig.account("bob")
    # alice's token with bob's name: not a login of bob's, and bob has an account
    err = rig.hub.register(Member(), hello("bob", token=m.welcome["token"]))
    assert (err.code, err.message) == (
        p.LOGIN_FAILED, "this session was logged out: log in with your password")
    # with a name nobody owns: a new guest (the token means nothing here)
    new = Member()
    assert rig.hub.register(new, hello("zed", token=m.welcome["token"])) is None
    rig.settle()
    zed = rig.hub.users["zed"]
    assert zed.account is None and zed.sid != "sid-alice"
    assert new.frames()[0]["token"] != m.welcome["token"]


def test_a_revoked_token_is_told_to_log_in(rig):
    rig.account("alice")
    m, user = rig.login("alice")
    offline(rig, m, user)
    rig.store.logins_by_hash.clear()
    err = rig.hub.register(Member(), hello("alice", token=m.welcome["token"]))
    assert (err.code, err.message) == (
        p.LOGIN_FAILED, "this session was logged out: log in with your password")
    # without a token it is a guest asking for an account's name
    err = rig.hub.register(Member(), hello("alice"))
    assert (err.code, err.message) == (
        p.NAME_REGISTERED, "the name 'alice' belongs to an account: log in with its password, "
        "or pick another name")


def test_a_token_of_a_removed_account_is_not_a_login(rig):
    rig.account("alice")
    m, user = rig.login("alice")
    offline(rig, m, user)
    del rig.store.accounts_by_key["alice"]
    assert rig.hub.register(Member(), hello("alice", token=m.welcome["token"])) is None
    rig.settle()
    assert rig.hub.users["alice"].account is None
    assert rig.hub.users["alice"].sid != "sid-alice"


def test_without_accounts_tokens_are_not_looked_up_as_logins():
    rig = Rig(auth=p.AUTH_OFF)
    a, ua = rig.connect("alice")
    offline(rig, a, ua)
    assert rig.hub.register(Member(), hello("alice", token=a.welcome["token"])) is None
    assert [c for c in rig.store.acalls if c[0] == "login_by_token_hash"] == []
    rig.settle()
    assert rig.hub.users["alice"].sid == ua.sid


def test_members_only_server_refuses_guests_and_their_old_sessions():
    rig = Rig(auth=p.AUTH_REQUIRED_MODE)
    msg = "this server is for its members: log in with your password (or register an account)"
    err = rig.hub.register(Member(), hello("zed"))
    assert (err.code, err.message) == (p.AUTH_REQUIRED, msg)
    err = rig.hub.register(Member(), hello("zed", token="unknown"))
    assert (err.code, err.message) == (p.AUTH_REQUIRED, msg)
    rig.store.sessions["g1"] = ("zed", token_hash("tok"))
    err = rig.hub.register(Member(), hello("zed", token="tok"))
    assert (err.code, err.message) == (p.AUTH_REQUIRED, msg)
    assert rig.hub.users == {}
    rig.account("alice")
    m, user = rig.login("alice")
    assert "auth" in m.welcome and m.welcome["auth"] == "required"
    assert "guests" not in m.welcome["rooms"][0]


def test_an_old_guest_session_whose_name_became_an_account(rig):
    rig.store.sessions["g1"] = ("erin", token_hash("tok"))
    rig.account("erin", sid="sid-erin")
    err = rig.hub.register(Member(), hello("erin", token="tok"))
    assert err.code == p.NAME_REGISTERED          # (not "logged out": it was a guest)


def test_a_guest_cannot_take_an_online_accounts_name(rig):
    rig.account("alice")
    m, user = rig.login("alice")
    err = rig.hub.register(Member(), hello("ALICE"))
    assert (err.code, err.message) == (
        p.NAME_REGISTERED, "the name 'ALICE' belongs to an account: log in with its password, "
        "or pick another name")
    err = rig.hub.register(Member(), hello("alice", token="a guess"))
    assert (err.code, err.message) == (
        p.LOGIN_FAILED, "this session was logged out: log in with your password")
    del rig.store.accounts_by_key["alice"]          # removed while online
    err = rig.hub.register(Member(), hello("Alice"))
    assert (err.code, err.message) == (p.NAME_REGISTERED,
                                       "the name 'Alice' belongs to an account")
    assert rig.hub.users["alice"].conns == [m]


def test_a_guest_with_an_accounts_name_online_keeps_it_from_a_login(rig):
    g, gu = rig.connect("bob")
    rig.account("bob")                    # made by an admin meanwhile
    err = rig.refused("bob")
    assert (err["code"], err["message"]) == (p.NAME_TAKEN, "the name 'bob' is taken; try another")
    assert rig.hub.users["bob"] is gu and gu.account is None


# --- several devices of one account ---------------------------------------------------------
def test_a_second_device_joins_the_same_user_as_a_newcomer(rig):
    rig.account("alice")
    a1, user = rig.login("alice", member=Member("10.0.0.1:1"))
    b, ub = rig.connect("bob")
    rig.say(b, ub, "hello all")
    a1.frames()
    b.frames()
    a2, same = rig.login("alice", member=Member("10.0.0.2:2"), last_id=1, instance="inst-A")
    assert same is user and user.conns == [a1, a2]
    assert user.login_ids == {a1: "L1", a2: "L2"}
    assert user.tokens[a2] == token_hash(a2.welcome["token"]) != user.tokens[a1]
    assert a2.welcome["token"] != a1.welcome["token"]
    assert a2.welcome["account"]["session"] == "L2"
    # a new device: the rooms' recent chat, not a catch-up from its last_id
    assert [(h["type"], h["text"]) for h in a2.welcome["history"]] == [("message", "hello all")]
    assert [c for c in rig.store.calls if c[0] == "since"] == []
    assert rig.store.queue == [] and a1.frames() == [] and not a1.was_replaced
    assert b.frames() == []                       # no join notice: alice was there


def test_a_device_back_replaces_only_its_own_connection(rig):
    rig.account("alice")
    a1, user = rig.login("alice", member=Member("10.0.0.1:1"))
    a2, _ = rig.login("alice", member=Member("10.0.0.2:2"))
    a1b = Member("10.0.0.1:3")
    assert rig.hub.register(a1b, hello("alice", token=a1.welcome["token"])) is None
    rig.settle()
    assert a1.was_replaced and not a2.was_replaced
    assert user.conns == [a2, a1b]
    assert user.tokens == {a2: token_hash(a2.welcome["token"]),
                           a1b: token_hash(a1.welcome["token"])}
    assert user.login_ids == {a2: "L2", a1b: "L1"}
    assert a1b.frames()[0]["account"]["session"] == "L1"


def test_a_login_takes_the_account_as_stored_now(rig):
    rig.account("alice")
    a1, user = rig.login("alice")
    rig.store.accounts_by_key["alice"] = dataclasses.replace(
        rig.store.accounts_by_key["alice"], admin=True)
    a2, _ = rig.login("alice", member=Member("10.0.0.2:2"))
    assert user.account.admin is True
    assert a2.welcome["account"] == {"name": "alice", "admin": True, "session": "L2"}


def test_a_device_token_of_an_online_account_adds_a_connection(rig):
    rig.account("alice")
    a1, user = rig.login("alice")
    a2, _ = rig.login("alice", member=Member("10.0.0.2:2"))
    rig.hub.leave(a2, user, p.QUIT)
    a3 = Member("10.0.0.3:3")
    assert rig.hub.register(a3, hello("alice", token=a2.welcome["token"], last_id=rig.hub.last_id)) \
        is None
    rig.settle()
    assert user.conns == [a1, a3] and user.login_ids == {a1: "L1", a3: "L2"}
    assert a3.frames()[0]["token"] == a2.welcome["token"]


# --- the welcome of an account -------------------------------------------------------------
def test_direct_messages_that_waited_are_in_a_new_devices_welcome(rig):
    rig.account("alice")
    b, ub = rig.connect("bob")
    rig.say(b, ub, "in general")                 # id 2
    rig.store.waiting = [{"type": "message", "id": 1, "ts": TS_TEXT, "from": "carol",
                          "text": "while you were out", "kind": "say", "to": "alice"},
                         {"type": "message", "id": 3, "ts": TS_TEXT, "from": "dave",
                          "text": "later", "kind": "say", "to": "alice"}]
    # a mention that waited (id 0), and one that is among the room's recent ones (id 2): once
    rig.store.mentions = [{"type": "message", "id": 0, "ts": TS_TEXT, "from": "erin",
                           "text": "alice?", "kind": "say", "room": "#general"},
                          {"type": "message", "id": 2, "ts": TS_TEXT, "from": "bob",
                           "text": "in general", "kind": "say", "room": "#general"}]
    m, user = rig.login("alice")
    assert ("waiting_dms", ("sid-alice", rig.hub.history)) in rig.store.acalls
    assert ("waiting_mentions", ("sid-alice", "alice", ["#general"], rig.hub.history)) \
        in rig.store.acalls
    assert [h["text"] for h in m.welcome["history"]] == [
        "alice?", "while you were out", "in general", "later"]


def test_guests_and_old_clients_get_no_waiting_messages(rig, caplog):
    rig.store.waiting = [{"type": "message", "id": 1, "ts": TS_TEXT, "from": "carol",
                          "text": "x", "kind": "say", "to": "alice"}]
    g, _ = rig.connect("guest")
    assert g.welcome["history"] == []
    rig.account("alice")
    old = Member()
    assert isinstance(rig.hub.register(old, p.Hello(version=p.PROTOCOL_VERSION, name="alice",
                                                     password=PW)), Pending)
    rig.settle()
    welcome = old.frames()[0]
    assert welcome["history"] == [] and "account" not in welcome and "auth" not in welcome
    assert [c for c in rig.store.acalls if c[0] == "waiting_dms"] == []


def test_waiting_messages_that_cannot_be_read_are_logged(rig, caplog):
    rig.account("alice")

    def broken(sid, limit):
        raise OSError("disk on fire")
    rig.store.waiting_dms = broken
    m, _ = rig.login("alice")
    assert m.welcome["history"] == []
    assert logged(caplog, "waiting messages for alice: disk on fire")


def test_guests_are_marked_where_accounts_are_optional(rig):
    rig.account("alice")
    a, ua = rig.login("alice")
    g, ug = rig.connect("Gus")
    assert g.welcome["guests"] == ["Gus"]
    assert g.welcome["rooms"][0]["guests"] == ["Gus"]
    assert a.welcome.get("guests") is None and "guests" not in a.welcome["rooms"][0]
    assert rig.hub.guests_among(["alice", "GUS", "nobody"]) == ["GUS"]
    rig.say(g, ug, "hi")
    rig.say(a, ua, "hello")
    frames = [f for f in a.frames() if f["type"] == "message"]
    assert [(f["from"], f.get("guest")) for f in frames] == [("Gus", True), ("alice", None)]
    rig.hub.join(a, ua, "#py", "j")
    rig.settle()
    [info] = [f for f in a.frames() if f["type"] == "room"]
    assert "guests" not in info and info["members"] == ["alice"]


def test_a_guest_without_a_token_is_only_looked_up_by_name(rig):
    rig.connect("gus")
    assert rig.store.acalls == [("account", ("gus",))]


def test_no_guest_lists_for_old_clients_or_big_servers():
    rig = Rig(presence_limit=1)
    rig.connect("g1")
    old, _ = rig.connect("old", rooms=False)
    assert "guests" not in old.welcome and old.welcome["users"] == ["g1", "old"]
    new, _ = rig.connect("g2")
    assert new.welcome["users"] == ["g2"] and "guests" not in new.welcome
    assert "members" not in new.welcome["rooms"][0] and "guests" not in new.welcome["rooms"][0]


def test_no_guest_marks_unless_accounts_are_optional():
    for auth in (p.AUTH_OFF, p.AUTH_REQUIRED_MODE):
        rig = Rig(auth=auth)
        assert rig.hub.guests_among(["x"]) is None
    rig = Rig(auth=p.AUTH_OFF)
    g, ug = rig.connect("gus")
    rig.say(g, ug, "hi")
    [f] = [f for f in g.frames() if f["type"] == "message"]
    assert "guest" not in f and "guests" not in g.welcome


# --- direct messages to accounts that are away -----------------------------------------------
def test_a_dm_to_an_account_that_is_away_is_stored_for_it(rig):
    rig.account("Bob", sid="sid-bob")
    a, ua = rig.connect("alice")
    assert rig.hub.say(a, ua, "see you", to="BOB", label="d") is None
    [w] = rig.store.queue
    assert (w.kind, w.room, w.target, w.target_sid, w.sender_sid) == (
        "say", None, "Bob", "sid-bob", ua.sid)
    rig.settle()
    msg, ack = a.frames()
    assert msg == {"type": "message", "id": w.id, "ts": TS_TEXT, "from": "alice",
                   "text": "see you", "kind": "say", "to": "Bob", "guest": True}
    assert ack == {"type": "ack", "label": "d", "id": w.id}
    assert "bob" not in rig.hub.users


def test_a_dm_to_nobody_is_refused_without_looking_up_bad_names(rig):
    a, ua = rig.connect("alice")
    err = rig.hub.say(a, ua, "x", to="zed", label="l")
    assert (err.code, err.message, err.label) == (p.NO_SUCH_USER, "nobody called 'zed' is online",
                                                  "l")
    assert ("account", ("zed",)) in rig.store.acalls
    rig.store.acalls.clear()
    assert rig.hub.say(a, ua, "x", to="bad name").code == p.NO_SUCH_USER
    b, _ = rig.connect("bob")
    rig.store.acalls.clear()
    assert rig.hub.say(a, ua, "x", to="BOB") is None
    assert rig.store.acalls == []
    off = Rig(auth=p.AUTH_OFF)
    off.account("bob")
    c, uc = off.connect("carol")
    assert off.hub.say(c, uc, "x", to="bob").code == p.NO_SUCH_USER
    assert off.store.acalls == []


# --- claim: a guest registers its name ----------------------------------------------------------
def test_claim_refusals(rig):
    g, ug = rig.connect("gus")
    err = rig.hub.claim(g, ug, PW, secure=False, label="c")
    assert (err.code, err.label) == (p.INSECURE, "c")
    err = rig.hub.claim(g, ug, "x" * (acc.PASSWORD_MAX + 1), secure=True, label="c")
    assert (err.code, err.label) == (p.BAD_PASSWORD, "c")
    err = rig.hub.claim(g, ug, "short", secure=True, label="c")
    assert (err.code, err.message, err.label) == (p.BAD_PASSWORD, acc.password_problem("short"),
                                                  "c")
    rig.account("alice")
    a, ua = rig.login("alice")
    err = rig.hub.claim(a, ua, PW, secure=True, label="c")
    assert (err.code, err.message, err.label) == (
        p.BAD_REQUEST, "you are logged in to the account alice already", "c")
    closed = Rig(open_registration=False)
    g2, ug2 = closed.connect("gus")
    err = closed.hub.claim(g2, ug2, PW, secure=True, label="c")
    assert (err.code, err.message, err.label) == (
        p.AUTH_REQUIRED, "accounts on this server are made by its admins", "c")
    off = Rig(auth=p.AUTH_OFF)
    g3, ug3 = off.connect("gus")
    assert off.hub.claim(g3, ug3, PW, secure=True, label="c").code == p.ACCOUNTS_OFF
    assert rig.logins.tasks == [] and closed.logins.tasks == []


def test_claim_turns_the_guest_into_an_account(rig, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    g1, ug = rig.connect("Gus", member=Member("10.0.0.1:1"))
    other, _ = rig.connect("other")
    g2, _ = rig.connect("gus", member=Member("10.0.0.2:2"), token=g1.welcome["token"])
    assert g1.was_replaced and ug.conns == [g2]
    rig.wakes.clear()
    rig.store.acalls.clear()
    assert rig.hub.claim(g2, ug, PW, secure=True, label="c") is None
    assert rig.store.acalls == [] and len(rig.logins.tasks) == 1
    rig.settle()
    th = token_hash(g1.welcome["token"])
    assert rig.store.acalls == [("create_account", ("Gus", ug.sid, "h:" + PW)),
                                ("add_login", (th, ug.sid, ""))]
    assert ug.account.name == "Gus" and ug.login_ids == {g2: "L1"}
    assert g2.frames() == [{"type": "account", "name": "Gus", "admin": False, "session": "L1",
                            "label": "c"}]
    assert rig.wakes == [({g2}, [])]
    assert logged(caplog, "10.0.0.2:2 registered the account Gus")
    assert rig.hub.guests_among(["gus"]) == []
    # its device token is a login of the account now
    rig.hub.leave(g2, ug, p.QUIT)
    rig.settle()
    again = Member()
    assert rig.hub.register(again, hello("gus", token=g1.welcome["token"])) is None
    rig.settle()
    assert again.frames()[0]["account"] == {"name": "Gus", "admin": False, "session": "L1"}


def test_claim_tells_every_connection_the_label_only_to_the_asker(rig):
    g, ug = rig.connect("gus")
    g.frames()
    extra = Member("10.0.0.3:3")
    ug.conns.append(extra)          # (a connection without a token of its own)
    rig.hub.claim(g, ug, PW, secure=True, label="c")
    rig.settle()
    assert g.frames() == [{"type": "account", "name": "gus", "admin": False, "session": "L1",
                           "label": "c"}]
    assert extra.frames() == [{"type": "account", "name": "gus", "admin": False}]
    assert rig.wakes[-1] == ({g, extra}, [])


def test_claim_of_a_name_taken_meanwhile(rig):
    g, ug = rig.connect("gus")
    rig.account("GUS")
    assert rig.hub.claim(g, ug, PW, secure=True, label="c") is None
    rig.settle()
    assert g.frames() == [{"type": "error", "code": p.NAME_TAKEN,
                           "message": "the name gus is registered already", "label": "c"}]
    assert ug.account is None and not any(c[0] == "add_login" for c in rig.store.acalls)
    assert rig.wakes[-1] == ({g}, [])


def test_an_account_request_that_fails_inside_is_an_internal_error(rig, caplog):
    g, ug = rig.connect("gus", member=Member("10.5.5.5:5"))
    rig.store.fail = RuntimeError("boom")
    rig.hub.claim(g, ug, PW, secure=True, label="c")
    rig.settle()
    assert g.frames() == [{"type": "error", "code": p.INTERNAL,
                           "message": "the server failed to do that; try again", "label": "c"}]
    assert logged(caplog, "10.5.5.5:5: an account request failed: RuntimeError")


# --- password changes, sessions, revokes ---------------------------------------------------
@pytest.fixture
def devices(rig):
    """alice on three devices (logins L1, L2, L3)."""
    rig.account("alice")
    ms = [rig.login("alice", member=Member(f"10.0.0.{i}:{i}"))[0] for i in (1, 2, 3)]
    user = rig.hub.users["alice"]
    for m in ms:
        m.frames()
    rig.wakes.clear()
    return rig, user, ms


def test_change_password_refusals(rig):
    g, ug = rig.connect("gus")
    err = rig.hub.change_password(g, ug, PW, "new password", secure=False, label="p")
    assert (err.code, err.label) == (p.INSECURE, "p")
    err = rig.hub.change_password(g, ug, PW, "new password", secure=True, label="p")
    assert (err.code, err.message, err.label) == (
        p.BAD_REQUEST, "guests have no password: register first", "p")
    rig.account("alice")
    a, ua = rig.login("alice")
    err = rig.hub.change_password(a, ua, PW, "short", secure=True, label="p")
    assert (err.code, err.message, err.label) == (p.BAD_PASSWORD, acc.password_problem("short"),
                                                  "p")
    assert rig.logins.tasks == []


def test_change_password_logs_out_the_other_devices(devices, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    rig, user, (m1, m2, m3) = devices
    assert rig.hub.change_password(m2, user, PW, "a new secret", secure=True, label="p") is None
    rig.settle()
    assert rig.throttle.calls[-1] == ("wait", "alice", "10.0.0.2")
    assert ("set_password_hash", ("sid-alice", "h:a new secret")) in rig.store.acalls
    assert ("revoke_logins", ("sid-alice", None, "L2")) in rig.store.acalls
    assert m2.frames() == [{"type": "ack", "label": "p"}]
    assert m2.kicks == []
    assert m1.kicks == m3.kicks == [(p.REVOKED, "this session was logged out from another session")]
    assert rig.wakes[-1] == ({m2}, [])
    assert logged(caplog, "10.0.0.2:2 changed the password of alice")


def test_change_password_without_a_label_is_answered_by_nothing(devices):
    rig, user, (m1, m2, m3) = devices
    rig.hub.change_password(m1, user, PW, "a new secret", secure=True, label=None)
    rig.settle()
    assert m1.frames() == [] and rig.wakes == []
    assert rig.store.accounts_by_key["alice"].hash == "h:a new secret"


def test_change_password_with_a_wrong_old_one(devices):
    rig, user, (m1, m2, m3) = devices
    rig.hub.change_password(m1, user, "not it at all", "a new secret", secure=True, label="p")
    rig.settle()
    assert m1.frames() == [{"type": "error", "code": p.LOGIN_FAILED,
                            "message": "that is not your current password", "label": "p"}]
    assert rig.throttle.calls[-2:] == [("wait", "alice", "10.0.0.1"),
                                       ("failed", "alice", "10.0.0.1")]
    assert ("account_by_sid", ("sid-alice",)) in rig.store.acalls
    assert not any(c[0] in ("set_password_hash", "revoke_logins") for c in rig.store.acalls)
    assert m2.kicks == [] and rig.store.accounts_by_key["alice"].hash == "h:" + PW


def test_change_password_when_throttled(devices):
    rig, user, (m1, m2, m3) = devices
    rig.throttle.seconds = 0.25
    rig.hub.change_password(m1, user, PW, "a new secret", secure=True, label="p")
    rig.settle()
    assert m1.frames() == [{"type": "error", "code": p.THROTTLED, "label": "p",
                            "message": "too many wrong passwords: try again in 0.25 s",
                            "retry_after": 0.25}]
    assert not any(c[0] == "account_by_sid" for c in rig.store.acalls)


def test_change_password_of_a_removed_account(devices, plain_hashes):
    rig, user, (m1, m2, m3) = devices
    del rig.store.accounts_by_key["alice"]
    rig.hub.change_password(m1, user, PW, "a new secret", secure=True, label="p")
    rig.settle()
    assert m1.frames()[0]["code"] == p.LOGIN_FAILED
    assert plain_hashes[-1] == (PW, None)


def test_sessions_lists_the_logins_with_this_one_and_the_online_ones(devices):
    rig, user, (m1, m2, m3) = devices
    rig.hub.leave(m3, user, p.QUIT)
    err = rig.hub.sessions(Member(), rig.connect("gus")[1], "s")
    assert (err.code, err.message, err.label) == (
        p.BAD_REQUEST, "guests have one session: register to have more", "s")
    assert rig.hub.sessions(m2, user, "s") is None
    rig.settle()
    [answer] = [f for f in m2.frames() if f["type"] == "sessions"]
    assert answer == {"type": "sessions", "label": "s", "sessions": [
        {"id": f"L{i}", "device": "", "created": p.format_ts(TS + i),
         "seen": p.format_ts(TS + 10 * i), "current": i == 2, "online": i != 3}
        for i in (3, 2, 1)]}
    assert ("logins", ("sid-alice",)) in rig.store.acalls


def test_revoke_refusals(devices):
    rig, user, (m1, m2, m3) = devices
    g, ug = rig.connect("gus")
    err = rig.hub.revoke(g, ug, p.RevokeRequest(others=True, label="r"))
    assert (err.code, err.message, err.label) == (
        p.BAD_REQUEST, "guests have one session: say bye to end it", "r")
    for req in (p.RevokeRequest(label="r"), p.RevokeRequest(session="L1", others=True, label="r"),
                p.RevokeRequest(others=False, label="r")):
        err = rig.hub.revoke(m1, user, req)
        assert (err.code, err.message, err.label) == (
            p.BAD_REQUEST, "revoke needs a session id, or others", "r")
    assert rig.logins.tasks == []


def test_revoke_one_session(devices):
    rig, user, (m1, m2, m3) = devices
    assert rig.hub.revoke(m1, user, p.RevokeRequest(session="L3", label="r")) is None
    rig.settle()
    assert ("revoke_logins", ("sid-alice", "L3", None)) in rig.store.acalls
    assert m1.frames() == [{"type": "ack", "label": "r"}]
    assert m3.kicks == [(p.REVOKED, "this session was logged out from another session")]
    assert m1.kicks == m2.kicks == []
    rig.hub.revoke(m1, user, p.RevokeRequest(session="L1"))
    rig.settle()
    assert m1.kicks == [(p.REVOKED, "this session was logged out (by you)")] and m1.frames() == []


def test_revoke_an_unknown_session(devices):
    rig, user, (m1, m2, m3) = devices
    rig.hub.revoke(m1, user, p.RevokeRequest(session="nope", label="r"))
    rig.settle()
    assert m1.frames() == [{"type": "error", "code": p.NO_SUCH_SESSION,
                            "message": "you have no session nope", "label": "r"}]
    assert m2.kicks == m3.kicks == []


def test_revoke_the_others(devices):
    rig, user, (m1, m2, m3) = devices
    rig.hub.revoke(m2, user, p.RevokeRequest(others=True, label="r"))
    rig.settle()
    assert ("revoke_logins", ("sid-alice", None, "L2")) in rig.store.acalls
    assert m2.frames() == [{"type": "ack", "label": "r"}] and m2.kicks == []
    assert m1.kicks == m3.kicks == [(p.REVOKED, "this session was logged out from another session")]
    assert rig.wakes[-1] == ({m2}, [])


# --- the hold of a user whose connection was lost -----------------------------------------------
@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(hub_mod.time, "monotonic", lambda: now[0])
    return now


@pytest.mark.parametrize("reason", [p.LOST, p.TIMEOUT, p.SENDQ])
def test_a_lost_connection_is_held(clock, caplog, reason):
    caplog.set_level(logging.INFO, logger="parley.hub")
    rig = Rig(hold=30.0)
    a, ua = rig.connect("alice", member=Member("10.0.0.1:1"))
    b, ub = rig.connect("bob")
    a.frames()
    rig.hub.leave(a, ua, reason)
    assert rig.store.queue == [] and rig.hub.users["alice"] is ua
    assert rig.hub._held == {ua: (1030.0, reason)}
    assert logged(caplog, f"10.0.0.1:1 alice lost its connection ({reason}): held 30 s")
    assert not logged(caplog, f"10.0.0.1:1 alice left ({reason})")
    rig.hub.expire_holds(1029.999)
    assert rig.store.queue == [] and rig.hub.users["alice"] is ua
    rig.hub.expire_holds(1030.0)
    [w] = rig.store.queue
    assert (w.op, w.kind, w.room, w.sender, w.sender_sid, w.text) == (
        "event", "leave", "#general", "alice", ua.sid, reason)
    assert "alice" not in rig.hub.users and rig.hub._held == {}
    assert logged(caplog, f"alice left ({reason}, not back within 30 s)")
    rig.settle()
    [leave] = b.frames()
    assert (leave["type"], leave["name"], leave["reason"]) == ("leave", "alice", reason)


def test_a_quit_or_no_hold_leaves_at_once(clock, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    rig = Rig(hold=30.0)
    a, ua = rig.connect("alice", member=Member("10.0.0.1:1"))
    rig.hub.leave(a, ua, p.QUIT)
    assert [w.kind for w in rig.store.queue] == ["leave"] and rig.hub._held == {}
    assert logged(caplog, "10.0.0.1:1 alice left (quit)")
    rig = Rig()
    assert rig.hub.hold == 0.0
    a, ua = rig.connect("alice")
    rig.hub.leave(a, ua, p.LOST)
    assert [w.kind for w in rig.store.queue] == ["leave"] and rig.hub._held == {}


def test_back_within_the_hold_says_neither_leave_nor_join(clock):
    rig = Rig(hold=30.0)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    a.frames()
    rig.hub.leave(a, ua, p.LOST)
    clock[0] = 1010.0
    a2, ua2 = rig.connect("alice", token=a.welcome["token"])
    assert ua2 is ua and ua.conns == [a2]
    rig.hub.expire_holds(1100.0)
    assert rig.hub._held == {} and rig.store.queue == []
    assert rig.hub.users["alice"] is ua and b.frames() == []


def test_holds_end_on_the_monotonic_clock(clock):
    rig = Rig(hold=5.0)
    a, ua = rig.connect("alice")
    rig.hub.leave(a, ua, p.LOST)
    clock[0] = 1004.9
    rig.hub.expire_holds()
    assert "alice" in rig.hub.users
    clock[0] = 1005.0
    rig.hub.expire_holds()
    assert "alice" not in rig.hub.users and [w.kind for w in rig.store.queue] == ["leave"]


def test_a_held_user_replaced_meanwhile_is_forgotten(clock):
    rig = Rig(hold=5.0)
    a, ua = rig.connect("alice")
    rig.hub.leave(a, ua, p.LOST)
    other = hub_mod.User("s2", "alice", b"")
    rig.hub.users["alice"] = other
    rig.hub.expire_holds(2000.0)
    assert rig.hub._held == {} and rig.hub.users["alice"] is other and rig.store.queue == []


def test_several_holds_end_each_at_its_time(clock):
    rig = Rig(hold=10.0)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    rig.hub.leave(a, ua, p.LOST)
    clock[0] = 1005.0
    rig.hub.leave(b, ub, p.TIMEOUT)
    rig.hub.expire_holds(1010.0)
    assert [(w.sender, w.text) for w in rig.store.queue] == [("alice", p.LOST)]
    assert list(rig.hub._held) == [ub]
    rig.hub.expire_holds(1015.0)
    assert [(w.sender, w.text) for w in rig.store.queue] == [("alice", p.LOST), ("bob", p.TIMEOUT)]


def test_a_token_with_a_lone_surrogate_still_hashes():
    # (a JSON "\ud800" escape decodes to one; the hash must not raise on it)
    import hashlib
    assert token_hash("a\ud800") == hashlib.sha256(b"a\xed\xa0\x80").digest()
    assert token_hash("tok") == hashlib.sha256(b"tok").digest()


def test_a_bad_auth_mode_says_which_modes_there_are():
    with pytest.raises(ValueError) as e:
        Hub(base.SyncStore(), auth="maybe")
    assert str(e.value) == f"auth is one of {p.AUTH_MODES}, not 'maybe'"


@pytest.mark.parametrize("request_", ["password", "sessions", "revoke"])
def test_account_requests_that_fail_inside_keep_their_label(devices, request_):
    rig, user, (m1, m2, m3) = devices
    rig.store.fail = RuntimeError("boom")
    if request_ == "password":
        rig.hub.throttle = acc.LoginThrottle()
        rig.hub.change_password(m1, user, PW, "a new secret", secure=True, label="x")
    elif request_ == "sessions":
        rig.hub.sessions(m1, user, "x")
    else:
        rig.hub.revoke(m1, user, p.RevokeRequest(others=True, label="x"))
    rig.logins.run()
    assert m1.frames() == [{"type": "error", "code": p.INTERNAL,
                            "message": "the server failed to do that; try again", "label": "x"}]


def test_a_device_that_left_is_not_kicked_again(devices):
    rig, user, (m1, m2, m3) = devices
    rig.hub.leave(m3, user, p.QUIT)
    assert m3 not in user.tokens and m3 not in user.login_ids
    rig.hub.revoke(m1, user, p.RevokeRequest(others=True))
    rig.settle()
    assert m3.kicks == [] and m2.kicks == [(p.REVOKED,
                                            "this session was logged out from another session")]


def test_a_hold_shorter_than_a_second(clock):
    rig = Rig(hold=0.5)
    a, ua = rig.connect("alice")
    rig.hub.leave(a, ua, p.LOST)
    assert rig.store.queue == [] and rig.hub._held == {ua: (1000.5, p.LOST)}


def test_holds_ending_together_all_leave(clock):
    rig = Rig(hold=10.0)
    a, ua = rig.connect("alice")
    b, ub = rig.connect("bob")
    c, uc = rig.connect("carol")
    rig.hub.leave(a, ua, p.LOST)
    rig.hub.leave(b, ub, p.SENDQ)
    rig.hub.expire_holds(1010.0)
    assert [(w.sender, w.text) for w in rig.store.queue] == [("alice", p.LOST), ("bob", p.SENDQ)]
    assert list(rig.hub.users) == ["carol"] and rig.hub._held == {}


def test_a_guest_online_keeps_its_name_when_an_account_takes_it(rig):
    g, ug = rig.connect("bob")
    rig.account("bob")                  # made by an admin while bob is online
    again = Member("10.0.0.9:2")
    assert rig.hub.register(again, hello("bob", token=g.welcome["token"])) is None
    rig.settle()
    assert ug.conns == [again] and again.frames()[0]["token"] == g.welcome["token"]


def test_a_reopened_guest_session_resumes_by_its_token(rig):
    a, ua = rig.connect("gus")
    token = a.welcome["token"]
    offline(rig, a, ua)
    back, user = rig.connect("gus", token=token)
    assert user.sid == ua.sid and user.token_hash == token_hash(token)
    assert user.tokens == {back: token_hash(token)}
    again, same = rig.connect("gus", token=token)        # the same device, a new connection
    assert same is user and back.was_replaced and user.conns == [again]
