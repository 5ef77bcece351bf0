"""Accounts over real sockets: log in, register, guests, devices, sessions,
revoking, password change, throttling, offline direct messages, and the
administration command line (also while the server runs)."""
import logging
import time
import os
import subprocess
import sys

import pytest

from parley import protocol as p
from parley.server import accounts as acc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PW = "correct horse"


def add_account(srv, name, password=PW, admin=False):
    """An account made directly in the running server's store."""
    import secrets
    return srv.store.create_account(name, secrets.token_hex(8), acc.hash_password(password), admin)


def login(connect, name, password=PW, srv=None, **kw):
    c = connect(srv=srv)
    c.send(p.Hello(version=p.PROTOCOL_VERSION, name=name, caps=[p.CAP_ROOMS],
                   password=password, **kw))
    return c, c.expect(("welcome", "error"), timeout=10)


def test_login_gives_a_device_token_that_reconnects_without_the_password(server, connect):
    add_account(server, "Alice", admin=True)
    c, w = login(connect, "alice", device="laptop")
    assert w.type == "welcome", w
    assert w.name == "Alice"                          # the account's own spelling
    assert w.auth == p.AUTH_OPTIONAL
    assert w.account["name"] == "Alice" and w.account["admin"] is True
    session_id = w.account["session"]
    c.close()
    c2 = connect()
    w2 = c2.hello("ALICE", rooms=True, token=w.token, last_id=w.last_id, instance=w.instance)
    assert w2.account == {"name": "Alice", "admin": True, "session": session_id}
    assert w2.token == w.token


def test_wrong_password_and_unknown_name_get_the_same_answer(server, connect):
    add_account(server, "alice")
    _, bad = login(connect, "alice", "not the password")
    _, nobody = login(connect, "nobody", "not the password")
    assert (bad.type, bad.code, bad.message) == ("error", p.LOGIN_FAILED, acc.LOGIN_FAILED)
    assert (nobody.code, nobody.message) == (bad.code, bad.message)


def test_a_refused_login_may_try_again_on_the_same_connection(server, connect):
    add_account(server, "alice")
    c, bad = login(connect, "alice", "not the password")
    assert bad.code == p.LOGIN_FAILED
    c.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS], password=PW))
    assert c.expect("welcome", timeout=10).account["name"] == "alice"


def test_frames_before_the_welcome_of_a_login_are_not_registered(server, connect):
    add_account(server, "alice")
    c = connect()
    c.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS], password=PW))
    c.send(p.Say(text="too early", label="e1"))
    first = c.expect(("welcome", "error"), timeout=10)
    # the say was read while the password was being checked
    assert (first.type, first.code, first.label) == ("error", p.NOT_REGISTERED, "e1")
    assert c.expect("welcome", timeout=10).name == "alice"


def test_a_guest_cannot_take_a_registered_name_in_any_case(server, connect):
    add_account(server, "Alice")
    for name in ("alice", "ALICE", "Alice"):
        c = connect()
        c.send(p.Hello(version=p.PROTOCOL_VERSION, name=name, caps=[p.CAP_ROOMS]))
        err = c.expect("error")
        assert err.code == p.NAME_REGISTERED and "password" in err.message
    # an old client (protocol 1, no caps) is a guest too
    old = connect()
    old.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice"))
    assert old.expect("error").code == p.NAME_REGISTERED


def test_guests_are_marked_in_lists_and_messages(server, connect):
    add_account(server, "alice")
    a, _ = login(connect, "alice")
    bob = connect()
    bob.hello("bob", rooms=True)
    a.expect("join", name="bob")
    users = a.request({"type": "users"}, "users")
    assert sorted(users.users) == ["alice", "bob"] and users.guests == ["bob"]
    bob.send(p.Say(text="hi", label="b1"))
    assert a.expect("message", text="hi").guest is True
    a.send(p.Say(text="hello", label="a1"))
    assert bob.expect("message", text="hello").guest is None


def test_register_makes_an_account_whose_name_is_then_kept(server, connect):
    c, w = login(connect, "carol", "a long passphrase", register=True)
    assert w.type == "welcome" and w.account["name"] == "carol"
    g = connect()
    g.send(p.Hello(version=p.PROTOCOL_VERSION, name="Carol", caps=[p.CAP_ROOMS]))
    assert g.expect("error").code == p.NAME_REGISTERED
    _, again = login(connect, "CAROL", "another passphrase", register=True)
    assert again.code == p.NAME_TAKEN
    _, short = login(connect, "dave", "short", register=True)
    assert short.code == p.BAD_PASSWORD


def test_a_guest_claims_its_name_and_keeps_its_session(server, connect):
    g = connect()
    w = g.hello("erin", rooms=True)
    g.send(p.JoinRequest(room="#lab", label="j"))
    g.expect("room", room="#lab")
    info = g.request({"type": "register", "password": "a long passphrase"}, "account")
    assert (info.type, info.name, info.admin) == ("account", "erin", False)
    assert info.session
    g.close()
    # the same device token now logs in to the account, with its rooms
    again = connect()
    w2 = again.hello("erin", rooms=True, token=w.token)
    assert w2.account["session"] == info.session
    assert sorted(r["room"] for r in w2.rooms) == ["#general", "#lab"]
    # and nobody else may take the name
    other = connect()
    other.send(p.Hello(version=p.PROTOCOL_VERSION, name="erin", caps=[p.CAP_ROOMS]))
    assert other.expect("error").code == p.NAME_REGISTERED


def test_two_devices_share_messages_sessions_and_revoking_one_closes_it(server, connect):
    add_account(server, "alice")
    laptop, w1 = login(connect, "alice", device="laptop")
    phone, w2 = login(connect, "alice", device="phone")
    assert w1.account["session"] != w2.account["session"]
    bob = connect()
    bob.hello("bob", rooms=True)
    bob.send(p.Say(text="psst", to="alice", label="d1"))
    assert laptop.expect("message", text="psst").to == "alice"
    assert phone.expect("message", text="psst").to == "alice"
    assert "join" not in [f.type for f in laptop.frames(0.2) if getattr(f, "name", "") == "alice"]
    listing = laptop.request({"type": "sessions"}, "sessions")
    rows = {s["device"]: s for s in listing.sessions}
    assert set(rows) == {"laptop", "phone"}
    assert rows["laptop"]["current"] is True and rows["phone"]["current"] is False
    assert rows["phone"]["online"] is True
    ack = laptop.request({"type": "revoke", "session": w2.account["session"]}, "ack")
    assert ack.type == "ack"
    bye = phone.expect("bye")
    assert bye.reason == p.REVOKED
    assert phone.wait_closed()
    # the laptop is still in: alice did not leave
    laptop.send(p.Say(text="still here", label="a2"))
    assert bob.expect("message", text="still here").sender == "alice"
    # the phone's token no longer logs in
    back = connect()
    back.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS],
                      token=w2.token))
    err = back.expect("error")
    assert err.code == p.LOGIN_FAILED and "logged out" in err.message
    assert laptop.request({"type": "revoke", "session": "nope"}, "ack").code == p.NO_SUCH_SESSION


def test_a_device_that_reconnects_replaces_only_its_own_connection(server, connect):
    add_account(server, "alice")
    laptop, w1 = login(connect, "alice", device="laptop")
    phone, _ = login(connect, "alice", device="phone")
    laptop2 = connect()
    laptop2.hello("alice", rooms=True, token=w1.token)
    assert laptop.wait_closed()                   # the old laptop connection is gone
    assert not phone.wait_closed(0.3)             # the phone stays
    phone.send(p.Say(text="phone here", label="p1"))
    assert laptop2.expect("message", text="phone here")


def test_password_change_logs_out_other_sessions(server, connect):
    add_account(server, "alice")
    a, _ = login(connect, "alice", device="one")
    b, _ = login(connect, "alice", device="two")
    wrong = a.request({"type": "password", "old": "nope nope", "new": "new pass 123"}, "ack")
    assert wrong.code == p.LOGIN_FAILED
    assert a.request({"type": "password", "old": PW, "new": "new pass 123"}, "ack").type == "ack"
    assert b.expect("bye").reason == p.REVOKED
    _, old = login(connect, "alice", PW)
    assert old.code == p.LOGIN_FAILED
    _, new = login(connect, "alice", "new pass 123")
    assert new.type == "welcome"


def test_a_dm_to_an_account_that_is_away_waits_for_its_next_login(server, connect):
    add_account(server, "alice")
    bob = connect()
    bob.hello("bob", rooms=True)
    ack = bob.request({"type": "say", "text": "call me", "to": "alice"}, "ack")
    assert ack.type == "ack" and ack.id
    guest_dm = bob.request({"type": "say", "text": "x", "to": "nobody"}, "ack")
    assert guest_dm.code == p.NO_SUCH_USER
    a, w = login(connect, "alice")
    waiting = [f for f in w.history if f.get("to")]
    assert [(f["from"], f["text"]) for f in waiting] == [("bob", "call me")]
    unread = a.expect("unread", peer="bob")
    assert unread.count == 1
    # read on one device: the count is 0 on a later login from another
    a.send(p.ReadMarker(id=ack.id, peer="bob"))
    a.expect("unread", peer="bob", count=0)
    a2, w2 = login(connect, "alice")
    assert [f for f in w2.history if f.get("to")] == []
    assert a2.expect("unread", peer="bob").count == 0


def test_failed_logins_are_throttled_per_account(server, connect):
    add_account(server, "alice")
    free = acc.LoginThrottle().free
    c = connect()
    for _ in range(free):
        c.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS],
                       password="guess guess"))
        assert c.expect("error", timeout=10).code == p.LOGIN_FAILED
    # then even the right password waits, from any address (the account is counted)
    c.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS], password=PW))
    t = c.expect("error", timeout=10)
    assert t.code == p.THROTTLED and 0 < t.retry_after <= 1.0
    assert "try again in" in t.message


@pytest.mark.parametrize("auth", [p.AUTH_OFF, p.AUTH_REQUIRED_MODE])
def test_auth_modes(make_server, auth):
    from rawclient import RawClient
    srv = make_server(auth=auth)
    add_account(srv, "alice")
    guest = RawClient(srv.address)
    try:
        guest.send(p.Hello(version=p.PROTOCOL_VERSION, name="zed", caps=[p.CAP_ROOMS]))
        first = guest.expect(("welcome", "error"))
        pw = RawClient(srv.address)
        pw.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS], password=PW))
        answer = pw.expect(("welcome", "error"), timeout=10)
        if auth == p.AUTH_OFF:
            assert first.type == "welcome" and first.auth == p.AUTH_OFF and first.guests is None
            assert (answer.type, answer.code) == ("error", p.ACCOUNTS_OFF)
            # no accounts: the registered name is free to take
            pw.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS]))
            assert pw.expect(("welcome", "error")).type == "welcome"
        else:
            assert (first.type, first.code) == ("error", p.AUTH_REQUIRED)
            assert answer.type == "welcome" and answer.auth == p.AUTH_REQUIRED_MODE
        pw.close()
    finally:
        guest.close()


def test_closed_registration(make_server):
    from rawclient import RawClient
    srv = make_server(open_registration=False)
    c = RawClient(srv.address)
    try:
        c.send(p.Hello(version=p.PROTOCOL_VERSION, name="new", caps=[p.CAP_ROOMS],
                       password="a long passphrase", register=True))
        assert c.expect("error").code == p.AUTH_REQUIRED
        c.hello("new", rooms=True)
        err = c.request({"type": "register", "password": "a long passphrase"}, "account")
        assert err.code == p.AUTH_REQUIRED
    finally:
        c.close()


def test_passwords_never_reach_the_log(server, connect, caplog):
    caplog.set_level(logging.DEBUG)
    add_account(server, "alice")
    login(connect, "alice", "wrong-secret-1")
    login(connect, "bob", "new-secret-2!", register=True)
    c, _ = login(connect, "alice")
    c.request({"type": "password", "old": "wrong-secret-3", "new": "other-secret-4"}, "ack")
    c.send(b'{"type":"hello","version":1,"name":"x","password":"wrong-secret-5",\n')
    c.frames(0.3)
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for secret in ("wrong-secret-1", "new-secret-2!", "wrong-secret-3", "other-secret-4",
                   "wrong-secret-5", PW):
        assert secret not in text
    assert "failed login for 'alice'" in text      # (the event itself is logged)


# --- administration from the command line -------------------------------------------
def admin(db, *args, password=None):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "python_server.py"), "user", *args, "--db", db]
        + (["--password-stdin"] if password is not None else []),
        input=(password + "\n") if password is not None else None,
        capture_output=True, text=True, timeout=60)


def test_admin_command_line_also_while_the_server_runs(tmp_path, make_server):
    from rawclient import RawClient
    db = str(tmp_path / "data" / "parley.db")
    r = admin(db, "add", "root", "--admin", password="root password")
    assert r.returncode == 0 and r.stdout.strip() == "added root (admin)", r.stderr
    assert admin(db, "add", "ROOT", password="x" * 9).returncode == 1     # taken, any case
    assert "at least 8" in admin(db, "add", "sam", password="short").stderr
    srv = make_server(db=db)
    # added while the server runs: can log in at once
    assert admin(db, "add", "sam", password="sam password").returncode == 0
    c = RawClient(srv.address)
    try:
        c.send(p.Hello(version=p.PROTOCOL_VERSION, name="sam", caps=[p.CAP_ROOMS],
                       password="sam password", device="term"))
        w = c.expect("welcome", timeout=10)
        assert w.account == {"name": "sam", "admin": False, "session": w.account["session"]}
        listing = admin(db, "list")
        assert [line.split()[:2] for line in listing.stdout.splitlines()[1:]] == [
            ["root", "yes"], ["sam", "1"]]
        sessions = admin(db, "sessions", "sam").stdout
        assert w.account["session"] in sessions and "term" in sessions
        assert admin(db, "admin", "sam", "on").returncode == 0
        r = admin(db, "passwd", "sam", password="sam new password")
        assert r.returncode == 0 and "1 session(s) logged out" in r.stdout
        # the old token is dead; the new password works and sam is an admin now
        c2 = RawClient(srv.address)
        c2.send(p.Hello(version=p.PROTOCOL_VERSION, name="sam", caps=[p.CAP_ROOMS],
                        token=w.token))
        assert c2.expect("error").code == p.LOGIN_FAILED
        c2.send(p.Hello(version=p.PROTOCOL_VERSION, name="sam", caps=[p.CAP_ROOMS],
                        password="sam new password"))
        assert c2.expect("welcome", timeout=10).account["admin"] is True
        c2.close()
        r = admin(db, "remove", "sam")
        assert r.returncode == 0 and r.stdout.startswith("removed sam")
        assert admin(db, "remove", "sam").stderr.strip().endswith("there is no account 'sam'")
        c3 = RawClient(srv.address)
        c3.send(p.Hello(version=p.PROTOCOL_VERSION, name="sam", caps=[p.CAP_ROOMS],
                        password="sam new password"))
        assert c3.expect("error", timeout=10).code == p.LOGIN_FAILED
        c3.close()
    finally:
        c.close()


def test_admin_password_is_read_without_echo_and_never_printed(tmp_path):
    db = str(tmp_path / "parley.db")
    r = admin(db, "add", "amy", password="amy password 1")
    assert "amy password 1" not in r.stdout + r.stderr
    # no terminal and no --password-stdin: a clear line, not a hang
    r = subprocess.run([sys.executable, os.path.join(ROOT, "python_server.py"), "user",
                        "passwd", "amy", "--db", db], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--password-stdin" in r.stderr


# --- a lost connection is held for a while ---------------------------------------------
def test_a_user_whose_connection_drops_is_held_and_comes_back_without_notices(make_server):
    from rawclient import RawClient
    srv = make_server(hold=30.0)
    watcher = RawClient(srv.address)
    flaky = RawClient(srv.address)
    try:
        watcher.hello("watcher", rooms=True)
        w = flaky.hello("flaky", rooms=True)
        watcher.expect("join", name="flaky")
        flaky.sock.close()                         # no bye: the network went away
        users = watcher.request({"type": "users"}, "users")
        assert "flaky" in users.users              # still online, held
        assert watcher.request({"type": "say", "text": "while you were away"}, "ack").id
        back = RawClient(srv.address)
        w2 = back.hello("flaky", rooms=True, token=w.token, last_id=w.last_id,
                        instance=w.instance)
        assert [f["text"] for f in w2.history if f["type"] == "message"] == [
            "while you were away"]
        types = [(f.type, getattr(f, "name", None)) for f in watcher.frames(0.5)]
        assert ("leave", "flaky") not in types and ("join", "flaky") not in types
        back.close()
    finally:
        watcher.close()


def test_a_held_user_leaves_when_the_hold_is_over_and_a_bye_leaves_at_once(make_server):
    from rawclient import RawClient
    srv = make_server(hold=0.5)
    watcher = RawClient(srv.address)
    try:
        watcher.hello("watcher", rooms=True)
        for name, polite in (("flaky", False), ("polite", True)):
            c = RawClient(srv.address)
            c.hello(name, rooms=True)
            watcher.expect("join", name=name)
            if polite:
                c.send(p.Bye())
            c.sock.close()
            start = time.monotonic()
            leave = watcher.expect("leave", name=name, timeout=10)
            waited = time.monotonic() - start
            assert leave.reason == (p.QUIT if polite else p.LOST)
            if not polite:
                assert waited >= 0.4               # not before the hold is over
    finally:
        watcher.close()


# --- passwords from another machine: only over TLS ------------------------------------
def _lan_address():
    """An address of this machine that is not loopback (a client connecting
    to it is seen as another machine), or None."""
    import socket as so
    s = so.socket(so.AF_INET, so.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))          # no packet is sent: it only picks a route
        addr = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if addr.startswith("127.") else addr


def test_a_password_from_another_machine_needs_tls(tmp_path):
    import ssl
    from tlsutil import TestCA
    from parley.server.app import Server
    from parley.server.connection import Limits
    from parley.server.transports.tls import server_context
    from rawclient import RawClient
    lan = _lan_address()
    if lan is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    ca = TestCA(tmp_path)
    cert, key = ca.issue(names=("localhost", "127.0.0.1", lan))
    for allow in (False, True):
        srv = Server("0.0.0.0", 0, Limits(hold=0.0), io_threads=1, db=":memory:",
                     tls=server_context(cert, key), tls_port=0,
                     allow_plain_passwords=allow).start()
        try:
            add_account(srv, "alice")
            plain = RawClient((lan, srv.address[1]))
            plain.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS],
                               password=PW))
            answer = plain.expect(("welcome", "error"), timeout=10)
            plain.close()
            if not allow:
                assert (answer.type, answer.code) == ("error", p.INSECURE)
                assert "TLS" in answer.message
            else:
                assert answer.type == "welcome"            # the operator allowed it
            secure = RawClient((lan, srv.tls_address[1]))
            secure.sock = ca.client_context().wrap_socket(secure.sock, server_hostname=lan)
            secure.send(p.Hello(version=p.PROTOCOL_VERSION, name="alice", caps=[p.CAP_ROOMS],
                                password=PW))
            w = secure.expect(("welcome", "error"), timeout=10)
            assert w.type == "welcome" and w.account["name"] == "alice"
            secure.close()
        finally:
            srv.stop(grace=0.5)


def test_malformed_tokens_and_passwords_get_clear_errors(server, connect):
    add_account(server, "alice")
    c = connect()
    for frame, code in (
            (b'{"type":"hello","version":1,"name":"alice","password":123}\n', p.BAD_FIELD),
            (b'{"type":"hello","version":1,"name":"alice","token":["x"]}\n', p.BAD_FIELD),
            (b'{"type":"hello","version":1,"name":"alice","register":"yes"}\n', p.BAD_FIELD),
            # a token that is no login of alice's: as if logged out
            ('{"type":"hello","version":1,"name":"alice","token":"\u00e9\u00e8 nope"}\n'.encode(),
             p.LOGIN_FAILED),
            (b'{"type":"hello","version":1,"name":"alice","token":"AAAA"}\n', p.LOGIN_FAILED),
            (b'{"type":"hello","version":1,"name":"alice","password":""}\n', p.LOGIN_FAILED),
    ):
        c.send(frame)
        assert c.expect("error", timeout=10).code == code, frame
    # a token that was real once, replayed by someone else while its owner is online:
    # it is the same device coming back (the old connection is replaced), as for IRC's
    # bouncers; a revoked one is refused (see test_two_devices...)
    owner, w = login(connect, "alice")
    thief = connect()
    thief.send(p.Hello(version=p.PROTOCOL_VERSION, name="bob", caps=[p.CAP_ROOMS],
                       token=w.token))
    assert thief.expect(("welcome", "error")).name == "bob"    # another name: just a guest
    assert owner.request({"type": "users"}, "users").users      # the owner is untouched


def test_a_mention_of_an_account_that_is_away_waits_in_its_next_welcome(make_server, connect):
    server = make_server(rate=1000, burst=1000)
    add_account(server, "alice")
    bob = connect(srv=server)
    bob.hello("bob", rooms=True)
    a, _ = login(connect, "alice", srv=server)
    a.close()                                    # alice is away (conftest: no hold)
    bob.expect("leave", name="alice")
    noise = [bob.request({"type": "say", "text": f"chatter {i}"}, "ack") for i in range(25)]
    bob.request({"type": "say", "text": "alicebot is not her"}, "ack")
    ping = bob.request({"type": "say", "text": "@alice: can you look at this?"}, "ack")
    bob.request({"type": "say", "text": "more chatter " * 3}, "ack")
    for i in range(25):
        bob.request({"type": "say", "text": f"later {i}"}, "ack")
    a2, w = login(connect, "alice", srv=server)
    texts = [f["text"] for f in w.history if f["type"] == "message"]
    # the last 20 of the room, and the mention from before them; not "alicebot"
    assert "@alice: can you look at this?" in texts
    assert "alicebot is not her" not in texts and noise[0].id not in [f["id"] for f in w.history]
    ids = [f["id"] for f in w.history]
    assert ids == sorted(ids) and ping.id in ids
    assert a2.expect("unread", room="#general").mentions == 1


# --- the desktop and terminal clients keep a login between runs -----------------------
def _next(session, kind, timeout=10):
    import queue as q
    deadline = time.monotonic() + timeout
    while True:
        try:
            ev = session.events.get(timeout=max(0.01, deadline - time.monotonic()))
        except q.Empty:
            raise AssertionError(f"no {kind.__name__}")
        if isinstance(ev, kind):
            return ev


def test_a_kept_login_reopens_without_the_password_until_it_is_revoked(server, tmp_path):
    from parley.client.logins import LoginStore
    from parley.client.session import NameRefused, Session
    add_account(server, "alice")
    store = LoginStore(str(tmp_path / "logins.json"))
    host, port = server.address
    first = Session(host, port, "alice", password=PW, logins=store, device="laptop").start()
    w = _next(first, p.Welcome)
    assert store.get(host, port, "alice") == w.token       # kept after the welcome
    first.close()
    # the next run: no password, the kept token logs in, the same device session
    second = Session(host, port, "ALICE", logins=store).start()
    w2 = _next(second, p.Welcome)
    assert w2.account == w.account and w2.token == w.token
    second.close()
    # revoked meanwhile (from another device, or the server's `user revoke`): the next
    # start forgets the token and asks for the password instead of failing
    with server.store._reading() as c:
        from parley.server import accountdb
        acct = accountdb.get(c, "alice")
        assert len(accountdb.revoke(c, acct.sid)) == 1
    third = Session(host, port, "alice", logins=store).start()
    refused = _next(third, NameRefused)
    assert refused.code == p.LOGIN_FAILED and "password" in refused.message
    assert store.get(host, port, "alice") is None
    third.set_name("alice", password=PW)
    assert _next(third, p.Welcome).account["name"] == "alice"
    assert store.get(host, port, "alice") not in (None, w.token)
    third.close()
    # a guest is never kept
    guest = Session(host, port, "bob", logins=store).start()
    _next(guest, p.Welcome)
    guest.close()
    assert store.get(host, port, "bob") is None
