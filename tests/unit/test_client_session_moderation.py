"""The client Session with moderation, against the scripted server of
test_client_session.py: ``mod``/``audit`` requests, a removed message is
remembered and announced, a kick or ban of me takes the room away, a bye
``banned`` stops reconnecting (a ``kicked`` one does not), ``invited`` is
passed on."""
from __future__ import annotations

from parley import protocol as p
from parley.client import session as session_mod
from parley.client.session import (MessageRemoved, RemovedFromRoom, SessionState,
                                   StateChanged)

from test_client_session import (TS, WAIT, harness, msg, room_info, server,  # noqa: F401
                                 welcome)


def modframe(id, action, by="owner", room="#lab", **kw):
    return p.Moderation(id=id, ts=TS, action=action, by=by, room=room, **kw)


def connected(harness, rooms=("#general", "#lab")):
    h = harness()
    conn = h.start()
    conn.expect("hello")
    conn.send(welcome(rooms=[room_info(r, ["alice", "bob", "owner"]) for r in rooms]))
    h.wait_type(p.Welcome)
    return h, conn


def test_moderate_and_audit_requests(harness):
    h, conn = connected(harness)
    label = h.s.moderate("mute", room="#lab", target="bob", duration=600, reason="calm down")
    f = conn.expect("mod")
    assert (f.action, f.room, f.target, f.duration, f.reason, f.id, f.label) == (
        "mute", "#lab", "bob", 600, "calm down", None, label)
    h.s.moderate(**{"action": "ban", "target": "bob"})            # server-wide
    f = conn.expect("mod", action="ban")
    assert f.room is None and f.duration is None and f.reason is None
    h.s.moderate("delete", room="#lab", id=117, reason="")
    d = conn.expect("mod", action="delete")
    assert d.id == 117 and d.reason is None
    conn.send(p.Ack(label=label), p.Ack(label=f.label), p.Ack(label=d.label))
    h.wait_type(p.Ack, label=label)
    audit = h.s.audit(limit=5)
    assert conn.expect("audit").limit == 5
    conn.send(p.AuditLog(entries=[{"id": 1, "action": "lock"}], more=False, label=audit))
    got = h.wait_type(p.AuditLog)
    assert got.entries == [{"id": 1, "action": "lock"}]
    assert h.s.wait_idle(WAIT)                     # the audit answer settles its request
    try:
        h.s.moderate("smite", target="bob")
        raise AssertionError("an unknown action was accepted")
    except ValueError:
        pass


def test_a_deleted_message_is_marked_removed(harness):
    h, conn = connected(harness)
    conn.send(msg(11, "bob", "something rude", room="#lab"))
    h.wait_type(p.Message)
    assert not h.s.is_removed(11)
    conn.send(modframe(12, "delete", message=11, reason="rude"))
    gone = h.wait_type(MessageRemoved)
    assert (gone.conv, gone.id, gone.by, gone.reason) == ("#lab", 11, "owner", "rude")
    assert h.s.is_removed(11) and not h.s.is_removed(12)
    h.wait_type(p.Moderation, id=12)              # the frame itself, for the UI's system line
    assert [c.key for c in h.s.conversations()] == ["#general", "#lab"]   # nothing else changes


def test_kicked_from_a_room_removes_it(harness):
    h, conn = connected(harness)
    conn.send(modframe(12, "kick", target="ALICE", reason="spam"))
    out = h.wait_type(RemovedFromRoom)
    assert (out.room, out.action, out.by, out.reason) == ("#lab", "kick", "owner", "spam")
    assert [c.key for c in h.s.conversations()] == ["#general"]
    # someone else's kick changes nothing of mine
    conn.send(modframe(13, "ban", room="#general", target="bob"))
    h.wait_type(p.Moderation, id=13)
    assert [c.key for c in h.s.conversations()] == ["#general"]
    assert not any(isinstance(e, RemovedFromRoom) and e.id == 13 for e in h.seen
                   if hasattr(e, "id"))


def test_banned_from_a_room_removes_it(harness):
    h, conn = connected(harness)
    conn.send(modframe(12, "ban", target="alice", until="2026-11-25T14:10:00.000Z"))
    h.wait_type(RemovedFromRoom, action="ban")
    assert h.s.conversation("#lab") is None


def test_banned_bye_stops_the_session_and_it_does_not_reconnect(harness):
    h, conn = connected(harness)
    conn.send(p.Bye(reason=p.BANNED, message="banned from this server by root: enough"))
    h.wait_type(p.Bye)
    closed = h.wait_type(StateChanged, state=SessionState.CLOSED)
    assert "banned from this server by root: enough" in closed.detail
    assert h.s.ended == "banned from this server by root: enough"
    assert not any(isinstance(e, StateChanged) and e.state is SessionState.RECONNECTING
                   for e in h.seen)
    h.server.lsock.settimeout(0.4)                  # and nobody knocks again
    try:
        h.server.lsock.accept()
        raise AssertionError("the session reconnected after a ban")
    except OSError:
        pass


def test_kicked_bye_reconnects_after_a_wait(harness, monkeypatch):
    monkeypatch.setattr(session_mod, "KICK_WAIT", 0.3)
    h, conn = connected(harness)
    conn.send(p.Bye(reason=p.KICKED, message="kicked by root: calm down"))
    again = h.wait_type(StateChanged, state=SessionState.RECONNECTING)
    assert "kicked by root: calm down" in again.detail
    assert again.retry_in >= 0.3                    # not at once (the backoff alone is 0.05)
    h.server.accept().expect("hello")


def test_banned_at_hello_stops(harness):
    h = harness()
    conn = h.start()
    conn.expect("hello")
    conn.send(p.Error(code=p.BANNED, message="you are banned from this server (by root)"))
    h.wait_type(p.Error, code=p.BANNED)
    closed = h.wait_type(StateChanged, state=SessionState.CLOSED)
    assert "banned" in closed.detail
    h.server.lsock.settimeout(0.4)
    try:
        h.server.lsock.accept()
        raise AssertionError("the session reconnected after a ban")
    except OSError:
        pass


def test_invited_is_passed_on(harness):
    h, conn = connected(harness)
    conn.send(p.Invited(room="#secret", by="owner"))
    inv = h.wait_type(p.Invited)
    assert (inv.room, inv.by) == ("#secret", "owner")


def test_muted_error_settles_the_message(harness):
    h, conn = connected(harness)
    label = h.s.send("hello?", "#lab")
    conn.expect("say")
    conn.send(p.Error(code=p.MUTED, message="you are muted in #lab (by owner)", label=label))
    h.wait_type(p.Error, code=p.MUTED)
    assert h.s.wait_idle(WAIT) and h.s.pending() == 0


def test_my_role_in_each_room_decides_what_to_offer(harness):
    h = harness()
    conn = h.start()
    conn.expect("hello")
    lab = room_info("#lab", ["alice", "bob"])
    lab.role = "mod"
    own = room_info("#mine", ["alice"])
    own.role = "owner"
    conn.send(welcome(rooms=[room_info("#general", ["alice", "bob"]), lab, own]))
    h.wait_type(p.Welcome)
    s = h.s
    assert [(c.key, c.role) for c in s.conversations()] == \
        [("#general", None), ("#lab", "mod"), ("#mine", "owner")]
    assert [s.may_moderate(k) for k in ("#general", "#LAB", "#mine", "@bob", None)] == \
        [False, True, True, False, False]
    assert [s.may_moderate(k, owner=True) for k in ("#general", "#lab", "#mine")] == \
        [False, False, True]
    # made a moderator of #general, live; someone else's op changes nothing of mine
    conn.send(modframe(20, "op", room="#general", target="ALICE"))
    conn.send(modframe(21, "deop", room="#lab", target="bob"))
    h.wait_type(p.Moderation, id=21)
    assert [(c.key, c.role) for c in s.conversations()] == \
        [("#general", "mod"), ("#lab", "mod"), ("#mine", "owner")]
    conn.send(modframe(22, "deop", room="#lab", target="alice"))
    h.wait_type(p.Moderation, id=22)
    assert s.conversation("#lab").role is None and not s.may_moderate("#lab")
    # a new room frame (joined again) says it anew
    again = room_info("#lab", ["alice", "bob"], label="j")
    again.role = "owner"
    conn.send(again)
    h.wait_type(p.RoomInfo, label="j")
    assert s.conversation("#lab").role == "owner" and s.may_moderate("#lab", owner=True)


def test_an_admin_may_moderate_any_room(harness):
    h, conn = connected(harness)
    h.s.account = {"name": "alice", "admin": True, "session": "L1"}
    assert h.s.may_moderate("#general") and h.s.may_moderate("#lab", owner=True)
    h.s.account = {"name": "alice", "admin": False, "session": "L1"}
    assert not h.s.may_moderate("#lab")
