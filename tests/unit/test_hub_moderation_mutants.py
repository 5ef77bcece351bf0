"""Moderation in the hub, single-threaded: who may do what to whom (ranks),
what each action stores (the exact statements, in order, and the audit row),
what is announced where and acknowledged when, what it does to its target
(kicked out of a room or the server, invited, muted, banned at the door), and
the checks in join, topic, say and the welcome.  The rules themselves
(moderation.Rules, the SQL, the wire form) have their own tests:
test_moderation_rules.py.  The rig: test_hub_accounts_mutants.py; the same
over real sockets: tests/integration/test_moderation.py."""
import logging

import pytest

from parley import protocol as p
from parley.server import moderation as mod
from test_hub_accounts_mutants import NOW, TS, TS_TEXT, Member, Rig, logged
from test_hub_accounts_mutants import plain_hashes  # noqa: F401  (autouse: hashes as text)
from test_hub_mutants import hello, types


class Member(Member):
    """Like connection.Connection: a log it stops following is dropped (what was
    not sent of it yet is not sent), and a kick closes it after what it was
    sent so far (nothing after)."""

    def unsubscribe(self, log):
        self.cursors.pop(log, None)

    def kick(self, reason, message=None):
        super().kick(reason, message)
        self.out = self.raw()
        self.cursors = {}

    def push(self, frame, log=None, pos=0, first=False):
        if not self.kicks:
            super().push(frame, log, pos, first)

HOUR = 3600 * 1000
UNTIL_TEXT = "2026-11-18T12:06:40.500Z"        # TS + one hour
UNTIL_SHOWN = "2026-11-18 12:06 UTC"


class Lab:
    """#Lab, made by the account 'owner'; 'mo' (an account) is its moderator;
    'amy' (an account) and 'bob' (a guest) are in it; 'root' is a server admin
    (online, not in #Lab)."""

    def __init__(self, **kw):
        kw.setdefault("presence_limit", 100)
        self.rig = rig = Rig(**kw)
        self.hub = rig.hub
        for name in ("owner", "mo", "amy"):
            rig.account(name)
        rig.account("root", admin=True)
        self.o, self.uo = rig.login("owner", member=Member("10.0.0.1:1"))
        assert rig.hub.join(self.o, self.uo, "#Lab", None) is None
        rig.settle()
        self.m, self.um = rig.login("mo", member=Member("10.0.0.2:2"))
        self.a, self.ua = rig.login("amy", member=Member("10.0.0.3:3"))
        self.b, self.ub = rig.connect("bob", member=Member("10.0.0.4:4"))
        for m, u in ((self.m, self.um), (self.a, self.ua), (self.b, self.ub)):
            rig.hub.join(m, u, "#lab", None)
        rig.settle()
        self.r, self.ur = rig.login("root", member=Member("10.0.0.5:5"))
        rig.hub.rules.set_role("#lab", "sid-mo", "mod")
        self.room = rig.hub.rooms["#lab"]
        self.drain()

    def drain(self):
        for m in (self.o, self.m, self.a, self.b, self.r):
            m.frames()
        self.rig.store.execs.clear()
        self.rig.store.acalls.clear()
        self.rig.wakes.clear()

    def mod(self, member, user, action, **kw):
        """Ask for ``action``; None once done (stored), else the error."""
        err = self.hub.moderate(member, user, p.ModRequest(action=action, **kw))
        if err is None:
            self.rig.settle()
        return err


@pytest.fixture
def lab():
    return Lab()


def execs(lab):
    return [sql.split(" ", 3)[:3] + [params] for sql, params in lab.rig.store.execs]


def audit_row(lab, actor, action, room, target, reason="", until=None):
    return mod.audit_sql(TS, actor, action, room, target, reason, until)


# --- refusals before anything is read ---------------------------------------------------------
def refusal(lab, action, who=None, **kw):
    member, user = who or (lab.o, lab.uo)
    err = lab.hub.moderate(member, user, p.ModRequest(action=action, label="L", **kw))
    assert err is not None and err.label == "L"
    return err.code, err.message


def test_malformed_requests(lab):
    assert refusal(lab, "z" * 30, room="#lab") == (
        p.BAD_REQUEST, f"unknown action {'z' * 20!r}; one of {', '.join(p.MOD_ACTIONS)}")
    assert refusal(lab, "kick", room="#lab", target="bob", reason="r" * (p.REASON_MAX + 1)) == (
        p.BAD_REQUEST, f"a reason is at most {p.REASON_MAX} characters")
    assert lab.mod(lab.o, lab.uo, "mute", room="#lab", target="bob",
                   reason=" " + "r" * p.REASON_MAX + "\n") is None
    assert lab.hub.rules.sanctions[("mute", "#lab", f"sid:{lab.ub.sid}")].reason == \
        "r" * p.REASON_MAX
    lab.drain()
    assert refusal(lab, "kick", room="#lab", target="bob", reason="bad\x07bell") == (
        p.BAD_TEXT, "the reason contains control characters")
    for action, duration in (("kick", 60.0), ("mute", 0.0), ("ban", -5.0), ("lock", 1.0)):
        assert refusal(lab, action, room="#lab", target="bob", duration=duration) == (
            p.BAD_REQUEST, "a duration (seconds, > 0) goes with mute or ban")
    for target in (None, "", "bad name"):
        assert refusal(lab, "ban", room="#lab", target=target) == (
            p.BAD_REQUEST, "ban needs the name of whom (target)")
    assert refusal(lab, "delete", room="#lab") == (
        p.BAD_REQUEST, "delete needs the message's room and id")
    assert refusal(lab, "delete", id=1) == (p.BAD_REQUEST, "delete needs the message's room and id")
    assert lab.rig.store.acalls == [] and lab.rig.store.queue == []


def test_a_mute_in_general_for_a_message_without_a_room(lab):
    lab.hub.rules.set_role("#general", "sid-owner", "owner")
    lab.mod(lab.o, lab.uo, "mute", room="#general", target="bob")
    err = lab.hub.say(lab.b, lab.ub, "hi")
    assert (err.code, err.message) == (p.MUTED, "you are muted in #general (by owner)")
    assert lab.hub.say(lab.b, lab.ub, "hi", room="#lab") is None
    assert lab.hub.say(lab.b, lab.ub, "psst", to="amy") is None     # a DM is no room


def test_server_wide_is_for_admins_and_some_actions(lab):
    assert refusal(lab, "lock") == (p.BAD_REQUEST, "lock needs a room")
    assert refusal(lab, "invite", target="bob") == (p.BAD_REQUEST, "invite needs a room")
    assert refusal(lab, "kick", target="bob") == (
        p.FORBIDDEN, "only server admins act server-wide")
    assert refusal(lab, "nosuch" , room="#lab")[0] == p.BAD_REQUEST
    assert refusal(lab, "kick", room="#nope", target="bob") == (
        p.NO_SUCH_ROOM, "there is no room #nope")


def test_ranks_in_a_room(lab):
    amy = (lab.a, lab.ua)
    mo = (lab.m, lab.um)
    assert refusal(lab, "kick", amy, room="#LAB", target="bob") == (
        p.FORBIDDEN, "only #Lab's moderators may kick")
    assert refusal(lab, "lock", amy, room="#lab") == (
        p.FORBIDDEN, "only #Lab's moderators may lock")
    assert refusal(lab, "op", mo, room="#lab", target="amy") == (
        p.FORBIDDEN, "only #Lab's owner (or a server admin) may op")
    assert refusal(lab, "deop", amy, room="#lab", target="mo") == (
        p.FORBIDDEN, "only #Lab's owner (or a server admin) may deop")
    # nobody acts on someone who ranks as high
    assert refusal(lab, "kick", mo, room="#lab", target="owner") == (
        p.FORBIDDEN, "owner ranks as high as you here")
    lab.hub.rules.set_role("#lab", "sid-amy", "mod")
    assert refusal(lab, "mute", mo, room="#lab", target="AMY") == (
        p.FORBIDDEN, "amy ranks as high as you here")
    assert refusal(lab, "ban", room="#lab", target="root") == (
        p.FORBIDDEN, "root ranks as high as you here")
    assert refusal(lab, "kick", room="#lab", target="owner") == (
        p.BAD_REQUEST, "you cannot kick yourself")
    assert lab.rig.store.queue == []


def test_an_admin_away_still_ranks_as_an_admin(lab):
    lab.rig.hub.leave(lab.r, lab.ur, p.QUIT)
    lab.rig.settle()
    assert refusal(lab, "ban", room="#lab", target="Root") == (
        p.FORBIDDEN, "root ranks as high as you here")
    assert ("account", ("Root",)) in lab.rig.store.acalls
    lab.rig.account("boss", admin=True)
    b2, ub2 = lab.rig.login("boss")
    assert refusal(lab, "ban", (b2, ub2), target="root") == (
        p.FORBIDDEN, "root ranks as high as you on this server")


def test_targets_that_are_nobody_or_not_there(lab):
    assert refusal(lab, "kick", room="#lab", target="zed") == (
        p.NO_SUCH_USER, "nobody called 'zed' is online or has an account")
    lab.rig.account("away")
    assert refusal(lab, "kick", room="#lab", target="away") == (
        p.NO_SUCH_USER, "away is not online")
    assert refusal(lab, "kick", room="#lab", target="root")[0] == p.FORBIDDEN
    g, ug = lab.rig.connect("gus")
    assert refusal(lab, "kick", room="#lab", target="GUS") == (
        p.NOT_MEMBER, "gus is not in #Lab")
    assert refusal(lab, "op", room="#lab", target="gus") == (
        p.BAD_REQUEST, "only accounts can be moderators")
    assert refusal(lab, "deop", room="#lab", target="amy") == (
        p.BAD_REQUEST, "amy is not a moderator of #Lab")
    assert refusal(lab, "unmute", room="#lab", target="bob") == (
        p.BAD_REQUEST, "bob is not muted in #Lab")
    assert refusal(lab, "unban", (lab.r, lab.ur), target="bob") == (
        p.BAD_REQUEST, "bob is not banned on this server")
    assert lab.rig.store.queue == []


def test_no_account_lookup_for_someone_online_or_without_accounts(lab):
    lab.mod(lab.o, lab.uo, "mute", room="#lab", target="bob")
    assert [c for c in lab.rig.store.acalls if c[0] == "account"] == []
    off = Rig(auth=p.AUTH_OFF)
    off.account("away")
    m, u = off.connect("x")
    err = off.hub.moderate(m, u, p.ModRequest(action="ban", target="away"))
    assert err.code == p.FORBIDDEN and off.store.acalls == []


# --- what an action stores, announces and acknowledges -------------------------------------------
def test_kick_from_a_room(lab, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    assert lab.mod(lab.o, lab.uo, "kick", room="#LAB", target="BOB", reason="  spam\nagain ",
                   label="k") is None
    assert lab.rig.store.execs == [audit_row(lab, "owner", "kick", "#lab", "bob", "spam again")]
    events = lab.rig.store.events[-2:]
    kick, leave = events
    assert (kick.kind, kick.room, kick.sender, kick.sender_sid, kick.target, kick.text) == (
        "mod", "#lab", "owner", "sid-owner", "bob", '{"action":"kick","reason":"spam again"}')
    assert (leave.kind, leave.room, leave.sender, leave.sender_sid, leave.text) == (
        "leave", "#lab", "bob", lab.ub.sid, p.KICKED)
    frame = {"type": "mod", "id": kick.id, "ts": TS_TEXT, "action": "kick", "by": "owner",
             "room": "#Lab", "target": "bob", "reason": "spam again"}
    left = {"type": "leave", "id": leave.id, "ts": TS_TEXT, "name": "bob", "reason": p.KICKED,
            "room": "#Lab"}
    assert lab.o.frames() == [frame, {"type": "ack", "label": "k", "id": kick.id}, left]
    assert lab.a.frames() == [frame, left]
    assert lab.b.frames() == [frame]            # it sees why, then nothing more of #Lab
    assert "#lab" not in lab.ub.rooms and "bob" not in lab.room.members
    assert lab.rig.store.members[lab.ub.sid] == {"#general"}
    assert lab.b.kicks == [] and lab.hub.users["bob"] is lab.ub
    assert logged(caplog, "owner kick bob in #Lab: spam again")
    assert any(lab.b in members for members, logs in lab.rig.wakes)


def test_a_kick_from_general_sends_an_old_client_away(lab):
    old, uold = lab.rig.connect("old", rooms=False, member=Member("10.0.0.8:8"))
    lab.hub.rules.set_role("#general", "sid-owner", "owner")
    assert lab.mod(lab.o, lab.uo, "kick", room="#general", target="old", reason="x") is None
    assert old.kicks == [(p.KICKED, "removed from #general by owner: x")]
    assert "#general" in uold.rooms           # (its connection closes: it leaves then)
    assert [w.kind for w in lab.rig.store.events[-1:]] == ["mod"]


def test_a_kick_of_someone_who_left_meanwhile_does_nothing_more(lab):
    lab.hub.moderate(lab.o, lab.uo, p.ModRequest(action="kick", room="#lab", target="bob"))
    lab.hub.part(lab.b, lab.ub, "#lab", None)
    lab.rig.settle()
    assert [w.kind for w in lab.rig.store.events[-2:]] == ["mod", "leave"]
    assert lab.rig.store.events[-1].text == p.PART
    lab2 = Lab()
    lab2.hub.moderate(lab2.o, lab2.uo, p.ModRequest(action="ban", room="#lab", target="bob"))
    lab2.hub.leave(lab2.b, lab2.ub, p.QUIT)
    lab2.rig.settle()
    assert [w.text for w in lab2.rig.store.events if w.kind == "leave"][-1] == p.QUIT
    assert lab2.b.kicks == []


def test_mute_in_a_room_for_an_hour(lab, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    assert lab.mod(lab.m, lab.um, "mute", room="#lab", target="bob", duration=3600,
                   reason="calm down", label="m") is None
    s = mod.Sanction("mute", "#lab", f"sid:{lab.ub.sid}", "bob", TS + HOUR, "mo", "calm down")
    a = mod.Sanction("mute", "#lab", "addr:10.0.0.4", "bob", TS + HOUR, "mo", "calm down")
    assert lab.rig.store.execs == [mod.Rules().add(s, TS), mod.Rules().add(a, TS),
                                   audit_row(lab, "mo", "mute", "#lab", "bob", "calm down",
                                             TS + HOUR)]
    assert lab.hub.rules.sanctions == {("mute", "#lab", s.who): s, ("mute", "#lab", a.who): a}
    [w] = lab.rig.store.events[-1:]
    assert w.text == '{"action":"mute","reason":"calm down","until":%d}' % (TS + HOUR)
    frame = {"type": "mod", "id": w.id, "ts": TS_TEXT, "action": "mute", "by": "mo",
             "room": "#Lab", "target": "bob", "reason": "calm down", "until": UNTIL_TEXT}
    assert lab.m.frames() == [frame, {"type": "ack", "label": "m", "id": w.id}]
    assert lab.b.frames() == [frame] and lab.b.kicks == []
    assert logged(caplog, "mo mute bob in #Lab: calm down")
    # it may not speak in #Lab until then, but elsewhere and in DMs
    err = lab.hub.say(lab.b, lab.ub, "hi", room="#LAB", label="s")
    assert (err.code, err.message, err.label) == (
        p.MUTED, f"you are muted in #LAB until {UNTIL_SHOWN} (by mo: calm down)", "s")
    assert lab.hub.say(lab.b, lab.ub, "hi") is None
    assert lab.hub.say(lab.b, lab.ub, "hi", to="amy") is None
    # an hour later it may
    lab.hub.clock = lambda: NOW + 3600
    assert lab.hub.say(lab.b, lab.ub, "back", room="#lab") is None
    assert lab.hub.rules.sanctions == {}


def test_a_mute_ends_exactly_at_its_end(lab):
    lab.mod(lab.o, lab.uo, "mute", room="#lab", target="amy", duration=0.5)
    lab.hub.clock = lambda: NOW + 0.499
    assert lab.hub.say(lab.a, lab.ua, "x", room="#lab").code == p.MUTED
    lab.hub.clock = lambda: NOW + 0.5
    assert lab.hub.say(lab.a, lab.ua, "x", room="#lab") is None


def test_an_account_is_muted_by_its_account_not_its_address(lab):
    lab.mod(lab.o, lab.uo, "mute", room="#lab", target="amy")
    assert [k[2] for k in lab.hub.rules.sanctions] == ["sid:sid-amy"]
    assert lab.rig.store.execs[0][1] == ("mute", "#lab", "sid:sid-amy", "amy", None, "owner", "",
                                         TS)
    err = lab.hub.say(lab.a, lab.ua, "x", room="#lab")
    assert (err.code, err.message) == (p.MUTED, "you are muted in #lab (by owner)")
    # a guest from the same address is not muted by it
    g, ug = lab.rig.connect("gus", member=Member("10.0.0.3:99"))
    lab.hub.join(g, ug, "#lab", None)
    lab.rig.settle()
    assert lab.hub.say(g, ug, "x", room="#lab") is None


def test_a_guest_is_muted_at_every_address_it_uses(lab):
    extra = Member("10.0.0.44:1")
    lab.ub.conns.append(extra)
    lab.ub.conns.append(Member("10.0.0.4:7"))
    lab.mod(lab.o, lab.uo, "mute", room="#lab", target="bob")
    assert [e[1][2] for e in lab.rig.store.execs[:-1]] == [
        f"sid:{lab.ub.sid}", "addr:10.0.0.4", "addr:10.0.0.44"]
    # another guest name from one of those addresses is muted too
    g, ug = lab.rig.connect("gus", member=Member("10.0.0.44:2"))
    lab.hub.join(g, ug, "#lab", None)
    lab.rig.settle()
    assert lab.hub.say(g, ug, "x", room="#lab").code == p.MUTED


def test_a_server_wide_mute(lab):
    assert lab.mod(lab.r, lab.ur, "mute", target="amy", label="m") is None
    assert lab.rig.store.execs[-1] == audit_row(lab, "root", "mute", None, "amy")
    assert lab.rig.store.execs[0][1][1] == ""          # room '': everywhere
    err = lab.hub.say(lab.a, lab.ua, "x", to="bob")
    assert (err.code, err.message) == (p.MUTED, "you are muted on this server (by root)")
    assert lab.hub.say(lab.a, lab.ua, "x", room="#lab").message == \
        "you are muted on this server (by root)"
    # announced in each room amy is in, acked after the last
    mods = [w for w in lab.rig.store.events if w.kind == "mod"]
    assert [w.room for w in mods] == ["#general", "#lab"]
    frames = lab.r.frames()
    assert {"type": "ack", "label": "m", "id": mods[-1].id} in frames
    assert [f["id"] for f in frames if f["type"] == "mod"] == [mods[0].id]   # root: #general
    assert len(frames) == 2
    assert types(lab.a.frames()) == ["mod", "mod"]


def test_a_long_duration_is_until_lifted(lab):
    lab.mod(lab.o, lab.uo, "ban", room="#lab", target="bob", duration=mod.DURATION_MAX + 1)
    assert {s.until for s in lab.hub.rules.sanctions.values()} == {None}
    lab2 = Lab()
    lab2.mod(lab2.o, lab2.uo, "ban", room="#lab", target="bob", duration=mod.DURATION_MAX)
    assert {s.until for s in lab2.hub.rules.sanctions.values()} == {TS + mod.DURATION_MAX * 1000}


def test_ban_from_a_room(lab):
    assert lab.mod(lab.o, lab.uo, "ban", room="#lab", target="bob", reason="no", label="b") is None
    ban, leave = lab.rig.store.events[-2:]
    assert (ban.kind, leave.kind, leave.text) == ("mod", "leave", p.BANNED)
    assert "#lab" not in lab.ub.rooms and lab.b.kicks == []
    err = lab.hub.join(lab.b, lab.ub, "#LAB", "j")
    assert (err.code, err.message, err.label) == (p.BANNED, "you are banned from #Lab (by owner: no)",
                                                  "j")
    # from another address under another name: the address is banned too
    g, ug = lab.rig.connect("gus", member=Member("10.0.0.4:9"))
    assert lab.hub.join(g, ug, "#lab", None).code == p.BANNED
    # lifted by the name it was given under
    assert lab.mod(lab.m, lab.um, "unban", room="#lab", target="BOB", label="u") is None
    assert [e[0].split(" ")[0] for e in lab.rig.store.execs[-3:]] == ["DELETE", "DELETE", "INSERT"]
    assert lab.rig.store.execs[-1] == audit_row(lab, "mo", "unban", "#lab", "bob")
    assert lab.hub.rules.sanctions == {}
    [w] = lab.rig.store.events[-1:]
    assert (w.kind, w.target) == ("mod", "bob")
    assert lab.hub.join(lab.b, lab.ub, "#lab", None) is None


def test_a_server_ban_sends_the_target_away_and_keeps_it_out(lab, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    assert lab.mod(lab.r, lab.ur, "ban", target="bob", reason="troll", duration=3600,
                   label="b") is None
    assert lab.b.kicks == [(p.BANNED, "banned from this server by root: troll")]
    # sent away once announced in every room it was in
    assert [(f["type"], f["room"]) for f in lab.b.frames()] == [("mod", "#general"),
                                                                ("mod", "#Lab")]
    assert logged(caplog, "root ban bob (server-wide): troll")
    mods = [w for w in lab.rig.store.events if w.kind == "mod"]
    assert [w.room for w in mods] == ["#general", "#lab"]
    # at the door, by its address as a guest
    err = lab.hub.register(Member("10.0.0.4:5"), hello("newname"))
    assert (err.code, err.message) == (
        p.BANNED, f"you are banned from this server until {UNTIL_SHOWN} (by root: troll)")
    # an account logging in from that address still gets in
    lab.rig.account("eve")
    lab.rig.login("eve", peer="10.0.0.4:6")
    lab.hub.clock = lambda: NOW + 3600
    assert lab.hub.register(Member("10.0.0.4:5"), hello("newname")) is None


def test_a_server_kick(lab):
    lab.ub.conns.append(Member("10.0.0.4:8"))
    assert lab.mod(lab.r, lab.ur, "kick", target="bob") is None
    assert [c.kicks for c in lab.ub.conns] == [[(p.KICKED, "kicked by root")]] * 2
    assert lab.rig.store.execs == [audit_row(lab, "root", "kick", None, "bob")]


def test_a_banned_account_is_refused_at_the_door(lab):
    lab.hub.leave(lab.a, lab.ua, p.QUIT)
    lab.rig.settle()
    lab.drain()
    assert lab.mod(lab.r, lab.ur, "ban", target="amy", label="b") is None
    # nobody to tell (amy is away): done once stored, then acked
    assert lab.rig.store.events[-1].kind == "leave"
    assert lab.r.frames() == [{"type": "ack", "label": "b"}]
    assert ({lab.r}, []) in lab.rig.wakes
    assert lab.rig.store.execs[-1] == audit_row(lab, "root", "ban", None, "amy")
    before = set(lab.rig.store.logins_by_hash)
    err = lab.rig.refused("amy")
    assert (err["code"], err["message"]) == (p.BANNED, "you are banned from this server (by root)")
    assert set(lab.rig.store.logins_by_hash) == before    # its new login was taken back
    lab.hub.clock = lambda: NOW
    lab.mod(lab.r, lab.ur, "unban", target="amy")
    lab.rig.login("amy")


def test_an_online_sid_ban_stops_its_other_devices(lab):
    lab.rig.hub.rules.add(mod.Sanction("ban", "", "sid:sid-amy", "amy", None, "root"), TS)
    err = lab.rig.refused("amy", member=Member("10.9.9.9:1"))
    assert err["code"] == p.BANNED


def test_an_expired_ban_lets_in(lab):
    lab.hub.rules.add(mod.Sanction("ban", "", "addr:10.7.7.7", "x", TS, "root"), TS)
    assert lab.hub.register(Member("10.7.7.7:1"), hello("newbie")) is None
    lab.hub.rules.add(mod.Sanction("ban", "", "addr:10.7.7.8", "x", TS + 1, "root"), TS)
    assert lab.hub.register(Member("10.7.7.8:1"), hello("other")).code == p.BANNED


def test_a_guest_session_resumed_while_banned(lab):
    lab.hub.rules.add(mod.Sanction("ban", "", f"sid:{lab.ub.sid}", "bob", None, "root"), TS)
    err = lab.hub.register(Member("10.8.8.8:1"), hello("bob", token=lab.b.welcome["token"]))
    assert err.code == p.BANNED


def test_invite_to_a_closed_room(lab):
    assert lab.mod(lab.o, lab.uo, "close", room="#lab", label="c") is None
    assert lab.rig.store.execs[0][1] == ("#lab", 0, 1)
    g, ug = lab.rig.connect("gus")
    old, uold = lab.rig.connect("old", rooms=False)
    err = lab.hub.join(g, ug, "#LAB", "j")
    assert (err.code, err.message, err.label) == (
        p.INVITE_ONLY, "#Lab is invite-only: ask one of its moderators to /invite you", "j")
    lab.drain()
    g.frames()
    assert lab.mod(lab.m, lab.um, "invite", room="#lab", target="GUS", label="i") is None
    assert lab.rig.store.execs == [
        mod.Rules().invite("#lab", "GUS", "mo", TS),
        audit_row(lab, "mo", "invite", "#lab", "gus")]
    assert g.frames() == [{"type": "invited", "room": "#Lab", "by": "mo"}]
    assert any(g in members for members, logs in lab.rig.wakes)
    [w] = lab.rig.store.events[-1:]
    assert (w.kind, w.target) == ("mod", "gus")
    assert lab.m.frames()[-1] == {"type": "ack", "label": "i", "id": w.id}
    lab.drain()
    assert lab.hub.join(g, ug, "#lab", None) is None
    assert lab.rig.store.queue[0].op == "exec" and lab.rig.store.queue[0].params == ("#lab", "gus")
    lab.rig.settle()
    assert "#lab" in ug.rooms and lab.hub.rules.invites == set()
    # an invitation is good once
    lab.hub.part(g, ug, "#lab", None)
    lab.rig.settle()
    assert lab.hub.join(g, ug, "#lab", None).code == p.INVITE_ONLY
    # an old client is not told (it cannot join rooms)
    uold.legacy = True
    lab.mod(lab.o, lab.uo, "invite", room="#lab", target="old")
    assert "invited" not in types(old.frames())


def test_moderators_enter_a_closed_room_without_an_invitation(lab):
    lab.mod(lab.o, lab.uo, "close", room="#lab")
    lab.hub.part(lab.m, lab.um, "#lab", None)
    lab.hub.part(lab.a, lab.ua, "#lab", None)
    lab.rig.settle()
    lab.drain()
    assert lab.hub.join(lab.m, lab.um, "#lab", None) is None
    assert [w.op for w in lab.rig.store.queue] == ["member_add", "event"]
    assert lab.hub.join(lab.a, lab.ua, "#lab", None).code == p.INVITE_ONLY
    lab.hub.join(lab.r, lab.ur, "#lab", None)
    assert "#lab" in lab.ur.rooms
    # the owner invited as well: the invitation is used up
    lab.hub.rules.invite("#lab", "owner", "mo", TS)
    lab.hub.part(lab.o, lab.uo, "#lab", None)
    lab.rig.settle()
    lab.hub.join(lab.o, lab.uo, "#lab", None)
    assert lab.rig.store.queue[0].params == ("#lab", "owner")
    lab.mod(lab.o, lab.uo, "open", room="#lab")
    assert lab.rig.store.execs[-2][1] == ("#lab", 0, 0)
    assert lab.hub.join(lab.a, lab.ua, "#lab", None) is None


def test_lock_the_topic(lab):
    assert lab.mod(lab.o, lab.uo, "lock", room="#lab", target="ignored", label="l") is None
    assert lab.rig.store.execs == [mod.Rules().set_flags("#lab", locked=True),
                                   audit_row(lab, "owner", "lock", "#lab", None)]
    [w] = lab.rig.store.events[-1:]
    assert (w.kind, w.target, w.text) == ("mod", None, '{"action":"lock"}')
    err = lab.hub.topic(lab.a, lab.ua, "#LAB", "mine", "t")
    assert (err.code, err.message, err.label) == (
        p.FORBIDDEN, "the topic of #Lab is locked: only its moderators may change it", "t")
    assert lab.hub.topic(lab.m, lab.um, "#lab", "ours", None) is None
    lab.hub.join(lab.r, lab.ur, "#lab", None)
    lab.rig.settle()
    assert lab.hub.topic(lab.r, lab.ur, "#lab", "admins too", None) is None
    assert lab.hub.topic(lab.a, lab.ua, "#general", "elsewhere", None) is None
    lab.mod(lab.o, lab.uo, "unlock", room="#lab")
    assert lab.rig.store.execs[-2] == mod.Rules().set_flags("#lab", locked=False)
    assert lab.hub.topic(lab.a, lab.ua, "#lab", "mine", None) is None


def test_op_and_deop(lab):
    assert lab.mod(lab.o, lab.uo, "op", room="#lab", target="Amy", label="o") is None
    assert lab.rig.store.execs == [mod.Rules().set_role("#lab", "sid-amy", "mod"),
                                   audit_row(lab, "owner", "op", "#lab", "amy")]
    assert lab.hub.rules.rank("#lab", "sid-amy", False) == mod.MODERATOR
    assert lab.mod(lab.a, lab.ua, "kick", room="#lab", target="bob") is None
    lab.drain()
    assert lab.mod(lab.o, lab.uo, "deop", room="#lab", target="amy") is None
    assert lab.rig.store.execs[0] == mod.Rules().set_role("#lab", "sid-amy", None)
    assert lab.hub.rules.rank("#lab", "sid-amy", False) == mod.MEMBER
    # an admin may, in any room; an account away may be made one
    lab.rig.account("away")
    assert lab.mod(lab.r, lab.ur, "op", room="#lab", target="away") is None
    assert lab.hub.rules.roles[("#lab", "sid-away")] == "mod"


def test_room_info_tells_each_person_its_role_there(lab):
    def role(member, user):
        assert lab.hub.join(member, user, "#lab", "again") is None     # already in: told again
        (info,) = [f for f in member.frames() if f["type"] == "room"]
        assert info["room"] == "#Lab" and info["label"] == "again"
        return info.get("role")
    assert [role(lab.o, lab.uo), role(lab.m, lab.um), role(lab.a, lab.ua), role(lab.b, lab.ub)] \
        == ["owner", "mod", None, None]
    lab.mod(lab.o, lab.uo, "op", room="#lab", target="amy")
    assert role(lab.a, lab.ua) == "mod"
    lab.mod(lab.o, lab.uo, "deop", room="#lab", target="mo")
    assert role(lab.m, lab.um) is None
    lab.hub.join(lab.r, lab.ur, "#lab", None)          # an admin: no role (welcome.account.admin)
    lab.rig.settle()
    lab.r.frames()
    assert role(lab.r, lab.ur) is None


def test_a_welcome_tells_the_role_in_each_room(lab):
    o2, _ = lab.rig.login("owner", member=Member("10.0.0.1:9"), device="laptop")
    m2, _ = lab.rig.login("mo", member=Member("10.0.0.2:9"), device="laptop")
    a2, _ = lab.rig.login("amy", member=Member("10.0.0.3:9"), device="laptop")
    roles = [{r["room"]: r.get("role") for r in m.welcome["rooms"]} for m in (o2, m2, a2)]
    assert roles == [{"#general": None, "#Lab": "owner"}, {"#general": None, "#Lab": "mod"},
                     {"#general": None, "#Lab": None}]


def test_a_room_made_by_an_account_is_its_own(lab):
    lab.hub.join(lab.a, lab.ua, "#Amys", None)
    ops = [(w.op, w.params) for w in lab.rig.store.queue]
    assert ops[:2] == [("room", None), ("exec", mod.Rules().set_role("#amys", "sid-amy", "owner")[1])]
    lab.rig.settle()
    assert lab.hub.rules.owner("#amys") == "sid-amy"
    lab.hub.join(lab.b, lab.ub, "#guests", None)
    assert [w.op for w in lab.rig.store.queue] == ["room", "member_add", "event"]
    lab.rig.settle()
    assert lab.hub.rules.owner("#guests") is None


def test_delete_a_message(lab):
    lab.rig.say(lab.b, lab.ub, "oops", room="#lab")
    lab.rig.say(lab.a, lab.ua, "keep", room="#lab")
    oops, keep = lab.rig.store.events[-2:]
    lab.drain()
    # a member may delete only its own
    assert refusal(lab, "delete", (lab.a, lab.ua), room="#lab", id=oops.id) == (
        p.FORBIDDEN, "only #Lab's moderators may delete")
    assert lab.mod(lab.b, lab.ub, "delete", room="#lab", id=oops.id, label="d") is None
    assert ("event_info", (oops.id,)) in lab.rig.store.acalls
    assert lab.rig.store.execs == [
        ("UPDATE events SET text=NULL WHERE id=? AND room=?", (oops.id, "#lab")),
        audit_row(lab, "bob", "delete", "#lab", None)]
    [w] = lab.rig.store.events[-1:]
    assert w.text == '{"action":"delete","message":%d}' % oops.id and w.target is None
    frame = {"type": "mod", "id": w.id, "ts": TS_TEXT, "action": "delete", "by": "bob",
             "room": "#Lab", "message": oops.id}
    assert lab.b.frames() == [frame, {"type": "ack", "label": "d", "id": w.id}]
    # newcomers see it as removed
    [cached] = [f for f in lab.room.recent if f.get("id") == oops.id]
    assert (cached["text"], cached["deleted"]) == ("", True)
    assert [f.get("deleted") for f in lab.room.recent if f.get("id") == keep.id] == [None]
    # only once, only in its room, only chat
    err = refusal(lab, "delete", room="#lab", id=oops.id)
    assert err == (p.NO_SUCH_MESSAGE,
                   f"there is no message {oops.id} in #Lab (or it was removed already)")
    assert refusal(lab, "delete", room="#lab", id=999)[0] == p.NO_SUCH_MESSAGE
    lab.rig.say(lab.o, lab.uo, "general")
    gen = lab.rig.store.events[-1].id
    assert refusal(lab, "delete", room="#lab", id=gen)[0] == p.NO_SUCH_MESSAGE
    join = [w for w in lab.rig.store.events if w.kind == "join" and w.room == "#lab"][0]
    assert refusal(lab, "delete", room="#lab", id=join.id)[0] == p.NO_SUCH_MESSAGE
    # a moderator may delete anyone's; a /me counts as chat
    lab.rig.say(lab.a, lab.ua, "waves", room="#lab", kind="me")
    me = lab.rig.store.events[-1].id
    assert lab.mod(lab.m, lab.um, "delete", room="#lab", id=me) is None


def test_mod_actions_are_logged_with_where(lab, caplog):
    caplog.set_level(logging.INFO, logger="parley.hub")
    lab.mod(lab.o, lab.uo, "lock", room="#lab")
    lab.mod(lab.r, lab.ur, "mute", target="bob")
    assert logged(caplog, "owner lock  in #Lab")
    assert logged(caplog, "root mute bob (server-wide)")


# --- the audit log ----------------------------------------------------------------------------
def test_audit_log_is_for_admins(lab):
    err = lab.hub.audit_log(lab.o, lab.uo, p.AuditRequest(label="a"))
    assert (err.code, err.message, err.label) == (
        p.FORBIDDEN, "only server admins read the audit log", "a")
    for limit in (0, p.PAGE_MAX + 1):
        err = lab.hub.audit_log(lab.r, lab.ur, p.AuditRequest(limit=limit, label="a"))
        assert (err.code, err.message, err.label) == (
            p.BAD_REQUEST, f"limit must be 1 to {p.PAGE_MAX}", "a")
    assert lab.rig.readers.tasks == []


def test_audit_log_pages_are_read_on_a_reader(lab):
    entry = {"id": 7, "ts": TS_TEXT, "by": "owner", "action": "kick"}
    lab.rig.store.audit_page = ([entry], True)
    assert lab.hub.audit_log(lab.r, lab.ur, p.AuditRequest(before=9, limit=p.PAGE_MAX,
                                                            label="a")) is None
    assert lab.r.out == [] and len(lab.rig.readers.tasks) == 1
    lab.rig.settle()
    assert ("audit", (9, p.PAGE_MAX)) in lab.rig.store.calls
    assert lab.r.frames() == [{"type": "audit", "entries": [entry], "more": True, "label": "a"}]
    lab.hub.audit_log(lab.r, lab.ur, p.AuditRequest(limit=1))
    lab.hub.audit_log(lab.r, lab.ur, p.AuditRequest())
    lab.rig.store.audit_page = ([], False)
    lab.rig.settle()
    assert [c[1] for c in lab.rig.store.calls if c[0] == "audit"][-2:] == [(None, 1), (None, 50)]
    assert lab.r.frames()[-1] == {"type": "audit", "entries": [], "more": False}


def test_rules_are_loaded_at_start():
    rig = Rig()
    assert rig.store.loaded == 1 and rig.hub.rules is rig.store.rules


def test_an_old_clients_catch_up_has_no_moderation(lab):
    old, uold = lab.rig.connect("old", rooms=False)
    seen = lab.hub.last_id
    lab.hub.rules.set_role("#general", "sid-owner", "owner")
    lab.mod(lab.o, lab.uo, "lock", room="#general")
    lab.rig.say(lab.o, lab.uo, "after the lock")
    again, _ = lab.rig.connect("old", rooms=False, token=old.welcome["token"], last_id=seen,
                               instance="inst-A")
    assert [h["type"] for h in again.welcome["history"]] == ["message"]
    new, _ = lab.rig.connect("new", last_id=seen, instance="inst-A")
    assert [h["type"] for h in new.welcome["history"]] == ["mod", "message"]



def test_op_and_deop_need_someone_else_there_is(lab):
    for action in ("op", "deop"):
        assert refusal(lab, action, room="#lab", target="zed") == (
            p.NO_SUCH_USER, "nobody called 'zed' is online or has an account")
        assert refusal(lab, action, room="#lab", target="owner") == (
            p.BAD_REQUEST, f"you cannot {action} yourself")
    lab.hub.rules.set_role("#lab", "sid-amy", "owner")
    assert refusal(lab, "deop", room="#lab", target="amy") == (
        p.FORBIDDEN, "amy ranks as high as you here")


def test_a_kick_from_general_moves_a_new_client_out_of_it(lab):
    lab.hub.rules.set_role("#general", "sid-owner", "owner")
    assert lab.mod(lab.o, lab.uo, "kick", room="#general", target="amy") is None
    assert lab.a.kicks == [] and "#general" not in lab.ua.rooms
    assert lab.rig.store.events[-1].kind == "leave"


def test_only_a_delete_names_a_message(lab):
    assert lab.mod(lab.o, lab.uo, "kick", room="#lab", target="bob", id=5) is None
    kick = [w for w in lab.rig.store.events if w.kind == "mod"][-1]
    assert kick.text == '{"action":"kick"}'


def test_a_requester_that_closed_still_gets_its_ack(lab):
    o2, _ = lab.rig.login("owner", member=Member("10.0.0.1:2"))       # a second device
    lab.drain()
    lab.hub.moderate(lab.o, lab.uo, p.ModRequest(action="lock", room="#lab", label="l"))
    lab.hub.leave(lab.o, lab.uo, p.QUIT)
    assert lab.uo.conns == [o2]
    lab.rig.settle()
    [w] = [w for w in lab.rig.store.events if w.kind == "mod"]
    assert lab.o.frames()[-1] == {"type": "ack", "label": "l", "id": w.id}
    assert {"type": "ack", "label": "l", "id": w.id} in o2.frames()


def test_a_failed_audit_read_keeps_its_label(lab):
    lab.rig.store.fail = RuntimeError("disk")
    lab.hub.audit_log(lab.r, lab.ur, p.AuditRequest(label="a"))
    lab.rig.readers.run()
    assert lab.r.frames() == [{"type": "error", "code": p.STORE_FAILED, "label": "a",
                               "message": "the server could not read its history; try again"}]
