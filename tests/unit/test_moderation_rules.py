"""moderation.py without a server: ranks, sanctions and their ends, the SQL
each change stores (run against a real schema), the audit log and the wire
form of a stored action."""
import json
import sqlite3

import pytest

from parley import protocol as p
from parley.server import moderation as mod
from parley.server.moderation import Rules, Sanction


@pytest.fixture
def db():
    c = sqlite3.connect(":memory:", isolation_level=None)
    c.executescript(mod.SCHEMA)
    yield c
    c.close()


def run(db, stmt):
    db.execute(*stmt)


def test_ranks():
    r = Rules()
    r.roles[("#lab", "o")] = "owner"
    r.roles[("#lab", "m")] = "mod"
    assert r.rank("#lab", "o", False) == mod.OWNER
    assert r.rank("#lab", "m", False) == mod.MODERATOR
    assert r.rank("#lab", "x", False) == mod.MEMBER
    assert r.rank("#other", "o", False) == mod.MEMBER          # roles are per room
    assert r.rank("#lab", "x", True) == mod.ADMIN
    assert r.rank(None, "o", False) == mod.MEMBER              # server-wide: admins only
    assert r.rank(None, "x", True) == mod.ADMIN
    assert mod.ADMIN > mod.OWNER > mod.MODERATOR > mod.MEMBER
    assert r.owner("#lab") == "o" and r.owner("#other") is None


def test_find_room_then_server_wide_and_expiry():
    r = Rules()
    room = Sanction("mute", "#lab", "sid:b", "bob", 2000, "alice", "calm")
    server = Sanction("mute", "", "addr:10.0.0.9", "bob", None, "root")
    r.add(room, 0)
    assert r.find("mute", "#lab", ["sid:b"], 1999) is room
    assert r.find("mute", "#other", ["sid:b"], 1999) is None
    assert r.find("ban", "#lab", ["sid:b"], 1999) is None          # another kind
    assert r.find("mute", "#lab", ["sid:b"], 2000) is None          # ended (until is exclusive)
    assert ("mute", "#lab", "sid:b") not in r.sanctions             # and forgotten
    r.add(server, 0)
    assert r.find("mute", "#lab", ["sid:b", "addr:10.0.0.9"], 5000) is server
    assert r.find("mute", "", ["addr:10.0.0.9"], 5000) is server
    assert r.find("mute", "", ["sid:b"], 5000) is None


def test_room_sanction_wins_over_server_wide_when_both_apply():
    r = Rules()
    a = Sanction("ban", "#lab", "sid:b", "bob", None, "alice")
    b = Sanction("ban", "", "sid:b", "bob", None, "root")
    r.add(a, 0)
    r.add(b, 0)
    assert r.find("ban", "#lab", ["sid:b"], 1) is a


def test_by_name_is_case_blind_and_per_scope():
    r = Rules()
    r.add(Sanction("ban", "#lab", "sid:b", "Bob", None, "a"), 0)
    r.add(Sanction("ban", "#lab", "addr:1.2.3.4", "Bob", None, "a"), 0)
    r.add(Sanction("ban", "", "sid:b", "Bob", None, "a"), 0)
    r.add(Sanction("mute", "#lab", "sid:b", "Bob", None, "a"), 0)
    assert sorted(s.who for s in r.by_name("ban", "#lab", "bOB")) == ["addr:1.2.3.4", "sid:b"]
    assert [s.room for s in r.by_name("ban", "", "bob")] == [""]
    assert r.by_name("ban", "#lab", "carol") == []


def test_each_change_is_stored_and_loads_back(db):
    r = Rules()
    run(db, r.set_role("#lab", "o", "owner"))
    run(db, r.set_role("#lab", "m", "mod"))
    run(db, r.set_role("#lab", "m", None))
    run(db, r.set_role("#lab", "m2", "mod"))
    run(db, r.set_role("#lab", "m2", "owner"))                     # an upsert
    run(db, r.set_flags("#lab", locked=True))
    run(db, r.set_flags("#lab", closed=True))
    run(db, r.set_flags("#lab", locked=False))
    run(db, r.set_flags("#x", closed=True))
    run(db, r.invite("#lab", "Carol", "o", 5))
    run(db, r.invite("#lab", "carol", "o", 6))                     # once
    run(db, r.invite("#lab", "dan", "o", 7))
    run(db, r.uninvite("#lab", "DAN"))
    assert r.uninvite("#lab", "nobody") is None
    s1 = Sanction("mute", "#lab", "sid:b", "bob", 9000, "o", "why")
    s2 = Sanction("ban", "", "sid:c", "carl", 100, "root", "")      # ends before load
    s3 = Sanction("ban", "#lab", "sid:d", "dee", None, "o", "")
    for s in (s1, s2, s3):
        run(db, r.add(s, 1))
    run(db, r.add(Sanction("mute", "#lab", "sid:b", "bob", 9500, "m2", "again"), 2))
    run(db, r.lift(s3))
    loaded = mod.load(db, now_ms=500)
    assert loaded.roles == {("#lab", "o"): "owner", ("#lab", "m2"): "owner"} == r.roles
    assert loaded.locked == set() == r.locked
    assert loaded.closed == {"#lab", "#x"} == r.closed
    assert loaded.invites == {("#lab", "carol")} == r.invites
    assert list(loaded.sanctions) == [("mute", "#lab", "sid:b")]
    again = loaded.sanctions[("mute", "#lab", "sid:b")]
    assert (again.until, again.by, again.reason) == (9500, "m2", "again")
    assert db.execute("SELECT count(*) FROM invites").fetchone()[0] == 1


def test_audit_newest_first_with_paging(db):
    run(db, mod.audit_sql(1000, "alice", "mute", "#lab", "bob", "calm", 61000))
    run(db, mod.audit_sql(2000, "alice", "lock", "#lab", None, "", None))
    run(db, mod.audit_sql(3000, "root", "ban", None, "eve", "spam", None))
    entries, more = mod.audit_entries(db, None, 2, {"#lab": "#Lab"})
    assert entries == [
        {"id": 3, "ts": p.format_ts(3000), "by": "root", "action": "ban", "target": "eve",
         "reason": "spam"},
        {"id": 2, "ts": p.format_ts(2000), "by": "alice", "action": "lock", "room": "#Lab"}]
    assert more is True
    older, more = mod.audit_entries(db, 2, 5, {})
    assert older == [{"id": 1, "ts": p.format_ts(1000), "by": "alice", "action": "mute",
                      "room": "#lab", "target": "bob", "reason": "calm",
                      "until": p.format_ts(61000)}]
    assert more is False


def test_event_text_and_frame_round_trip():
    text = mod.event_text("delete", "rude", None, 117)
    assert json.loads(text) == {"action": "delete", "reason": "rude", "message": 117}
    assert mod.event_text("lock", "", None, None) == '{"action":"lock"}'
    f = mod.frame(9, "T", "#lab", "alice", None, text)
    assert f == {"type": "mod", "id": 9, "ts": "T", "action": "delete", "by": "alice",
                 "room": "#lab", "reason": "rude", "message": 117}
    m = mod.frame(10, "T", "#lab", "alice", "bob", mod.event_text("mute", "", 60000, None))
    assert m == {"type": "mod", "id": 10, "ts": "T", "action": "mute", "by": "alice",
                 "room": "#lab", "target": "bob", "until": p.format_ts(60000)}
    # the frame is a valid protocol.Moderation
    ev = p.event_from_dict(m, p.SERVER_FRAMES)
    assert isinstance(ev, p.Moderation) and ev.to_dict() == m
    assert mod.frame(11, "T", None, "x", None, "not json")["action"] == "?"


def test_describe_says_what_where_until_and_who():
    s = Sanction("mute", "#lab", "sid:b", "bob", 1764079800000, "alice", "calm down")
    assert mod.describe(s, "in #lab") == \
        "you are muted in #lab until 2025-11-25 14:10 UTC (by alice: calm down)"
    forever = Sanction("ban", "", "sid:b", "bob", None, "root", "")
    assert mod.describe(forever, "from this server") == "you are banned from this server (by root)"


def test_active():
    s = Sanction("mute", "", "sid:b", "b", 10, "a")
    assert s.active(9) and not s.active(10)
    assert Sanction("mute", "", "sid:b", "b", None, "a").active(10 ** 15)


def test_a_locked_topic_loads_back(db):
    r = Rules()
    run(db, r.set_flags("#lab", locked=True))
    run(db, r.set_flags("#open", locked=False))
    loaded = mod.load(db, now_ms=0)
    assert loaded.locked == {"#lab"} and loaded.closed == set()


def test_an_audit_page_of_exactly_limit_entries_has_no_more(db):
    for ts in (1000, 2000):
        run(db, mod.audit_sql(ts, "alice", "lock", "#lab", None, "", None))
    entries, more = mod.audit_entries(db, None, 2, {})
    assert [e["id"] for e in entries] == [2, 1] and more is False


def test_lifting_a_sanction_twice_is_harmless():
    r = Rules()
    s = Sanction("mute", "#lab", "sid:b", "bob", None, "o")
    r.add(s, 1)
    assert r.lift(s) == r.lift(s) == (
        "DELETE FROM sanctions WHERE kind=? AND room=? AND who=?", ("mute", "#lab", "sid:b"))
    assert r.sanctions == {}
