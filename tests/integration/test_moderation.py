"""Moderation over real sockets: ranks, kick, mute, ban (room and server),
delete, topic lock, invite-only rooms, announcements, the audit log, and that
it all survives a restart."""
import secrets
import time

import pytest

from parley import protocol as p
from parley.server import accounts as acc
from rawclient import RawClient

PW = "correct horse"
HASH = None


def add_account(srv, name, admin=False):
    global HASH
    if HASH is None:
        HASH = acc.hash_password(PW)      # (one hash for all: the cost is not the point here)
    return srv.store.create_account(name, secrets.token_hex(8), HASH, admin)


def login(srv, name, clients):
    c = RawClient(srv.address)
    clients.append(c)
    c.send(p.Hello(version=p.PROTOCOL_VERSION, name=name, caps=[p.CAP_ROOMS], password=PW))
    w = c.expect("welcome", timeout=10)
    c.welcome = w
    return c


def guest(srv, name, clients, rooms=True):
    c = RawClient(srv.address)
    clients.append(c)
    c.welcome = c.hello(name, rooms=rooms)
    return c


def mod(c, action, **fields):
    return c.request(dict({"type": "mod", "action": action}, **fields), "ack")


@pytest.fixture
def clients():
    out = []
    yield out
    for c in out:
        c.close()


@pytest.fixture
def lab(server, clients):
    """#lab, owned by 'owner'; 'bob' (a guest) is in it."""
    add_account(server, "owner")
    add_account(server, "root", admin=True)
    add_account(server, "mo")
    owner = login(server, "owner", clients)
    owner.request({"type": "join", "room": "#lab"}, "room")
    bob = guest(server, "bob", clients)
    bob.request({"type": "join", "room": "#lab"}, "room")
    owner.expect("join", name="bob", room="#lab")
    return server, owner, bob


def test_kick_is_announced_then_the_target_is_out_of_the_room(lab, clients):
    server, owner, bob = lab
    assert mod(owner, "kick", room="#lab", target="bob", reason="spam").type == "ack"
    seen = owner.expect_sequence("mod", "leave")
    assert [(f.action, f.by, f.target, f.reason, f.room) for f in seen[:1]] == [
        ("kick", "owner", "bob", "spam", "#lab")]
    assert (seen[1].name, seen[1].reason) == ("bob", p.KICKED)
    told = bob.expect("mod")
    assert (told.action, told.target, told.room) == ("kick", "bob", "#lab")
    err = bob.request({"type": "say", "text": "hi", "room": "#lab"}, "ack")
    assert err.code == p.NOT_MEMBER
    assert bob.request({"type": "join", "room": "#lab"}, "room").type == "room"   # may come back


def test_ranks(lab, clients):
    server, owner, bob = lab
    mo = login(server, "mo", clients)
    mo.request({"type": "join", "room": "#lab"}, "room")
    assert mod(bob, "kick", room="#lab", target="mo").code == p.FORBIDDEN
    assert mod(mo, "kick", room="#lab", target="bob").code == p.FORBIDDEN   # not yet a mod
    assert mod(owner, "op", room="#lab", target="mo").type == "ack"
    assert mod(mo, "kick", room="#lab", target="owner").code == p.FORBIDDEN  # outranked
    assert mod(mo, "op", room="#lab", target="bob").code == p.FORBIDDEN     # owners only
    assert mod(owner, "op", room="#lab", target="bob").code == p.BAD_REQUEST  # a guest
    assert mod(mo, "kick", room="#lab", target="bob").type == "ack"
    assert mod(owner, "deop", room="#lab", target="mo").type == "ack"
    assert mod(mo, "lock", room="#lab").code == p.FORBIDDEN
    assert mod(owner, "kick", room="#lab", target="owner").code == p.BAD_REQUEST
    assert mod(owner, "dance", room="#lab").code == p.BAD_REQUEST
    assert mod(owner, "kick", room="#nope", target="bob").code == p.NO_SUCH_ROOM


def test_mute_for_a_while_then_unmute(lab, clients):
    server, owner, bob = lab
    assert mod(owner, "mute", room="#lab", target="bob", duration=600, reason="calm").type == "ack"
    m = owner.expect("mod", action="mute")
    assert m.until and m.reason == "calm"
    err = bob.request({"type": "say", "text": "hey", "room": "#lab"}, "ack")
    assert err.code == p.MUTED and "muted in #lab until" in err.message and "calm" in err.message
    assert bob.request({"type": "say", "text": "elsewhere"}, "ack").type == "ack"   # #general
    assert mod(owner, "unmute", room="#lab", target="bob").type == "ack"
    assert bob.request({"type": "say", "text": "back", "room": "#lab"}, "ack").type == "ack"
    assert mod(owner, "unmute", room="#lab", target="bob").code == p.BAD_REQUEST


def test_a_mute_ends_by_itself(lab, clients):
    server, owner, bob = lab
    assert mod(owner, "mute", room="#lab", target="bob", duration=0.3).type == "ack"
    assert bob.request({"type": "say", "text": "x", "room": "#lab"}, "ack").code == p.MUTED
    deadline = time.monotonic() + 5
    while True:
        answer = bob.request({"type": "say", "text": "free", "room": "#lab"}, "ack")
        if answer.type == "ack" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.type == "ack"


def test_room_ban_keeps_them_out_until_unbanned(lab, clients):
    server, owner, bob = lab
    assert mod(owner, "ban", room="#lab", target="bob", reason="rude").type == "ack"
    bob.expect("mod", action="ban")
    err = bob.request({"type": "join", "room": "#lab"}, "room")
    assert err.code == p.BANNED and "rude" in err.message
    assert mod(owner, "unban", room="#lab", target="bob").type == "ack"
    assert bob.request({"type": "join", "room": "#lab"}, "room").type == "room"


def test_delete_removes_a_message_everywhere(lab, clients):
    server, owner, bob = lab
    bad = bob.request({"type": "say", "text": "unpleasantword here", "room": "#lab"}, "ack")
    own = bob.request({"type": "say", "text": "typo", "room": "#lab"}, "ack")
    other = owner.request({"type": "say", "text": "owner says", "room": "#lab"}, "ack")
    assert mod(bob, "delete", room="#lab", id=other.id).code == p.FORBIDDEN
    assert mod(bob, "delete", room="#lab", id=own.id).type == "ack"      # one's own
    assert mod(owner, "delete", room="#lab", id=bad.id, reason="language").type == "ack"
    m = bob.expect("mod", action="delete", message=bad.id)
    assert (m.by, m.reason) == ("owner", "language")
    page = owner.request({"type": "history", "room": "#lab"}, "history")
    by_id = {f["id"]: f for f in page.messages if f["type"] == "message"}
    assert by_id[bad.id]["deleted"] is True and by_id[bad.id]["text"] == ""
    assert by_id[own.id]["deleted"] is True
    assert "deleted" not in by_id[other.id]
    found = owner.request({"type": "search", "query": "unpleasantword"}, "results")
    assert found.messages == []
    assert mod(owner, "delete", room="#lab", id=bad.id).code == p.NO_SUCH_MESSAGE
    # a newcomer's recent history shows it removed too
    late = guest(server, "late", clients)
    info = late.request({"type": "join", "room": "#lab"}, "room")
    assert "unpleasantword here" not in [f["text"] for f in info.history]


def test_topic_lock(lab, clients):
    server, owner, bob = lab
    assert mod(owner, "lock", room="#lab").type == "ack"
    err = bob.request({"type": "topic", "room": "#lab", "topic": "mine"}, "ack")
    assert err.code == p.FORBIDDEN and "locked" in err.message
    assert owner.request({"type": "topic", "room": "#lab", "topic": "set"}, "ack").type == "ack"
    assert mod(owner, "unlock", room="#lab").type == "ack"
    assert bob.request({"type": "topic", "room": "#lab", "topic": "mine"}, "ack").type == "ack"


def test_invite_only_room(lab, clients):
    server, owner, bob = lab
    assert mod(owner, "close", room="#lab").type == "ack"
    carol = guest(server, "carol", clients)
    assert carol.request({"type": "join", "room": "#lab"}, "room").code == p.INVITE_ONLY
    assert mod(owner, "invite", room="#lab", target="carol").type == "ack"
    inv = carol.expect("invited")
    assert (inv.room, inv.by) == ("#lab", "owner")
    assert carol.request({"type": "join", "room": "#lab"}, "room").type == "room"
    # members already in stay; an invitation is used once
    assert carol.request({"type": "part", "room": "#lab"}, "ack").type == "ack"
    assert carol.request({"type": "join", "room": "#lab"}, "room").code == p.INVITE_ONLY


def test_server_wide_actions_are_for_admins(lab, clients):
    server, owner, bob = lab
    assert mod(owner, "kick", target="bob").code == p.FORBIDDEN
    root = login(server, "root", clients)
    assert mod(root, "kick", target="bob", reason="out").type == "ack"
    bye = bob.expect("bye")
    assert bye.reason == p.KICKED and "root" in bye.message and "out" in bye.message
    bob2 = guest(server, "bob", clients)            # a kick is not a ban (loopback: no cooldown)
    assert mod(root, "ban", target="bob", reason="enough").type == "ack"
    assert bob2.expect("bye").reason == p.BANNED
    # a guest ban is by address too: another guest from there is refused
    again = RawClient(server.address)
    clients.append(again)
    again.send(p.Hello(version=p.PROTOCOL_VERSION, name="newname", caps=[p.CAP_ROOMS]))
    err = again.expect("error")
    assert err.code == p.BANNED and "enough" in err.message
    # ... but an account from the same address still logs in
    assert login(server, "mo", clients).welcome.account["name"] == "mo"
    assert mod(root, "unban", target="bob").type == "ack"
    assert guest(server, "bob", clients).welcome.name == "bob"


def test_a_banned_account_cannot_log_in(lab, clients):
    server, owner, bob = lab
    root = login(server, "root", clients)
    mo = login(server, "mo", clients)
    assert mod(root, "ban", target="mo", duration=3600).type == "ack"
    assert mo.expect("bye").reason == p.BANNED
    c = RawClient(server.address)
    clients.append(c)
    c.send(p.Hello(version=p.PROTOCOL_VERSION, name="mo", caps=[p.CAP_ROOMS], password=PW))
    err = c.expect("error", timeout=10)
    assert err.code == p.BANNED and "until" in err.message
    assert mod(root, "ban", target="root").code == p.BAD_REQUEST


def test_audit_log_for_admins(lab, clients):
    server, owner, bob = lab
    mod(owner, "mute", room="#lab", target="bob", duration=60, reason="r1")
    mod(owner, "lock", room="#lab")
    assert owner.request({"type": "audit"}, "audit").code == p.FORBIDDEN
    root = login(server, "root", clients)
    log = root.request({"type": "audit"}, "audit")
    assert [(e["action"], e["by"], e.get("target"), e.get("room")) for e in log.entries] == [
        ("lock", "owner", None, "#lab"), ("mute", "owner", "bob", "#lab")]
    assert log.entries[1]["reason"] == "r1" and log.entries[1]["until"]
    older = root.request({"type": "audit", "before": log.entries[0]["id"], "limit": 1}, "audit")
    assert [e["action"] for e in older.entries] == ["mute"] and older.more is False


def test_moderation_survives_a_restart(tmp_path, make_server, clients):
    db = str(tmp_path / "parley.db")
    srv = make_server(db=db)
    add_account(srv, "owner")
    owner = login(srv, "owner", clients)
    owner.request({"type": "join", "room": "#lab"}, "room")
    bob = guest(srv, "bob", clients)
    bob.request({"type": "join", "room": "#lab"}, "room")
    assert mod(owner, "ban", room="#lab", target="bob").type == "ack"
    assert mod(owner, "lock", room="#lab").type == "ack"
    for c in clients:
        c.close()
    srv.stop(grace=0.5)
    srv2 = make_server(db=db)
    b2 = RawClient(srv2.address)
    clients.append(b2)
    w = b2.hello("bob", rooms=True, token=bob.welcome.token)
    assert "#lab" not in [r["room"] for r in w.rooms]
    assert b2.request({"type": "join", "room": "#lab"}, "room").code == p.BANNED
    o2 = login(srv2, "owner", clients)
    assert mod(o2, "unban", room="#lab", target="bob").type == "ack"     # still the owner
    assert b2.request({"type": "join", "room": "#lab"}, "room").type == "room"
    assert b2.request({"type": "topic", "room": "#lab", "topic": "x"}, "ack").code == p.FORBIDDEN


def test_an_old_client_never_sees_moderation_frames(lab, clients):
    server, owner, bob = lab
    old = guest(server, "oldie", clients, rooms=False)
    root = login(server, "root", clients)           # (#general has no owner: admins moderate it)
    assert mod(owner, "lock", room="#general").code == p.FORBIDDEN
    assert mod(root, "lock", room="#general").type == "ack"
    assert mod(root, "kick", room="#general", target="bob").type == "ack"
    root.expect("leave", name="bob", room="#general")
    types = [f.type for f in old.frames(0.5)]
    assert "mod" not in types and "leave" in types
