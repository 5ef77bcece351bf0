"""--listen (and --listen --json): print incoming messages one per line until Ctrl-C."""
from __future__ import annotations

import json
import re
import time

from cli_helpers import WAIT, Limits, p

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_listen_prints_one_line_per_message_and_exits_on_sigint(server, spawn, peers):
    lis = spawn(server.port, "--listen", "--name", "ears")
    lis.wait_text("*** connected as ears")
    bob = peers(server.port, "bob")
    lis.wait_text("bob joined")
    texts = ["hello there", "second: with a colon", "émoji ok 🎉", "multi\nline"]
    bob.say_all(texts)
    bob.session.me("waves")
    got = [lis.wait_line(lambda line, t=t: line.endswith(f" bob: {t.splitlines()[0]}"),
                         what=repr(t)) for t in texts]
    assert [g.split(" ", 1)[1] for g in got] == [
        "bob: hello there", "bob: second: with a colon", "bob: émoji ok 🎉", "bob: multi"]
    # the second line of a multi-line message is indented under it, not a new message
    assert lis.wait_line(lambda line: True) == "    line"
    assert re.fullmatch(r"\d\d:\d\d:\d\d \* bob waves", lis.wait_text("* bob waves"))
    # stdout is a pipe, not a terminal: no colour codes
    assert not any(ANSI.search(line) for line in lis.lines), lis.lines
    started = time.monotonic()
    assert lis.interrupt() == 0
    assert time.monotonic() - started < 3
    assert "Traceback" not in lis.stderr()
    # leaving with Ctrl-C is a clean quit for the others
    assert bob.wait_leave("ears").reason == p.QUIT


def test_listen_json_lines(server, spawn, peers):
    bob = peers(server.port, "bob")
    lis = spawn(server.port, "--listen", "--json", "--name", "ears")
    bob.wait_join("ears")
    peers(server.port, "carol")
    texts = ["one", "two \"quoted\"", "three 🎉", "tab\there"]
    bob.say_all(texts)
    bob.session.me("nods")
    records = []
    while not records or records[-1].get("text") != "nods":
        records.append(json.loads(lis.wait_line(lambda line: True)))
    # first the welcome (without the secret resume token), then the unread counts
    assert records[0]["type"] == "welcome" and records[0]["name"] == "ears"
    assert "token" not in records[0] and "history" not in records[0]
    assert records[1]["type"] == "unread" and records[1]["room"] == "#general"
    events = [r for r in records if r["type"] not in ("welcome", "unread")]
    assert events[0]["type"] == "join" and events[0]["name"] == "carol"
    messages = [r for r in events if r["type"] == "message"]
    assert [(m["from"], m["text"], m["kind"]) for m in messages] == \
        [("bob", t, "say") for t in texts] + [("bob", "nods", "me")]
    for m in messages:
        assert isinstance(m["id"], int) and m["room"] == "#general"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m["ts"])
    ids = [r["id"] for r in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # every line printed so far is one JSON object
    assert all(isinstance(json.loads(line), dict) for line in lis.lines)
    assert lis.interrupt() == 0
    assert bob.wait_leave("ears").reason == p.QUIT


def test_listen_without_name_picks_one(server, spawn, peers):
    bob = peers(server.port, "bob")
    lis = spawn(server.port, "--listen", "--json")
    join = bob.wait_for(lambda e: isinstance(e, p.Join), what="a join")
    assert re.fullmatch(r"listener-[0-9a-f]{4}", join.name)
    bob.say_all(["ping?"])
    assert json.loads(lis.wait_text("ping?"))["text"] == "ping?"
    assert lis.interrupt() == 0


def test_listen_shows_leave_with_reason(server, spawn, peers):
    lis = spawn(server.port, "--listen", "--name", "ears")
    lis.wait_text("*** connected as ears")
    bob = peers(server.port, "bob")
    lis.wait_text("bob joined")
    bob.close()
    assert lis.wait_text("bob left").endswith("← bob left (quit)")
    assert lis.interrupt() == 0


def test_welcome_banner_comes_before_the_recent_history(server, spawn, peers):
    bob = peers(server.port, "bob")
    bob.say_all(["earlier one", "earlier two"])
    lis = spawn(server.port, "--listen", "--name", "ears")
    lis.wait_text("*** connected as ears")
    lis.wait_text("earlier two")
    assert lis.lines[0].startswith("*** connected as ears"), lis.lines
    assert lis.lines[1].endswith("bob: earlier one") and lis.lines[2].endswith("bob: earlier two")


def test_listen_banner_does_not_offer_commands(server, spawn):
    lis = spawn(server.port, "--listen", "--name", "ears")
    banner = lis.wait_text("*** connected as ears")
    assert "/help" not in banner
    assert lis.interrupt() == 0


# --- rooms: follow one conversation or all ---------------------------------------------
def test_listen_room_follows_only_that_room_joining_it(server, spawn, peers):
    bob = peers(server.port, "bob")
    bob.join_room("#ops")
    lis = spawn(server.port, "--listen", "--room", "#ops", "--name", "ears")
    join = bob.wait_for(lambda e: isinstance(e, p.Join) and e.name == "ears" and e.room == "#ops",
                        what="ears joining #ops")
    assert join.room == "#ops"
    assert lis.wait_text("*** #ops: 2 here: bob, ears").startswith("*** #ops")
    bob.session.say("in general")
    bob.session.say("in ops", room="#ops")
    bob.session.say("psst", to="ears")
    bob.session.say("ops again", room="#ops")
    assert bob.session.wait_idle(WAIT)
    got = lis.wait_text("bob: ops again")
    assert re.fullmatch(r"\d\d:\d\d:\d\d bob: ops again", got)     # no prefix: the followed room
    printed = "\n".join(lis.lines)
    assert "bob: in ops" in printed
    assert "in general" not in printed and "psst" not in printed
    assert lis.interrupt() == 0


def test_listen_all_prefixes_other_conversations(server, spawn, peers):
    lis = spawn(server.port, "--listen", "--all", "--name", "ears")
    lis.wait_text("*** connected as ears")
    bob = peers(server.port, "bob")
    bob.join_room("#ops")
    bob.session.say("psst", to="ears")
    bob.session.say("in general")
    assert bob.session.wait_idle(WAIT)
    assert re.fullmatch(r"\[@bob\] \d\d:\d\d:\d\d bob: psst", lis.wait_text("bob: psst"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d bob: in general", lis.wait_text("bob: in general"))
    assert lis.interrupt() == 0


def json_records(lis, until, what: str) -> list[dict]:
    """Read JSON lines until one satisfies ``until``; every line must be a JSON object."""
    out = []
    while True:
        line = lis.wait_line(lambda line: True, what=what)
        record = json.loads(line)
        assert isinstance(record, dict), line
        out.append(record)
        if until(record):
            return out


def test_listen_json_prints_every_frame_type(make_server, spawn, peers):
    server = make_server(Limits(rate=1000, burst=1000, presence_limit=2))
    lis = spawn(server.port, "--listen", "--json", "--all", "--name", "ears")
    records = json_records(lis, lambda r: r["type"] == "unread", "the unread after the welcome")
    assert [r["type"] for r in records] == ["welcome", "unread"]
    assert "token" not in records[0] and records[0]["caps"] == ["rooms"]
    bob = peers(server.port, "bob")                 # 2 in #general: a join line
    label = bob.session.set_topic("#general", "news")
    bob.wait_for(lambda e: isinstance(e, p.Ack) and e.label == label, what="topic ack")
    bob.session.say("hello")
    bob.session.say("psst", to="ears")
    assert bob.session.wait_idle(WAIT)
    carol = peers(server.port, "carol")             # 3 > presence limit: coalesced presence
    records += json_records(lis, lambda r: r["type"] == "presence", "presence of carol")
    carol.close()
    records += json_records(lis, lambda r: r["type"] == "presence" and r["left"] == ["carol"],
                            "presence of carol leaving")
    bob.close()                                      # 1 left in #general: a leave line again
    records += json_records(lis, lambda r: r["type"] == "leave", "bob's leave")
    server.stop(grace=1.0)
    records += json_records(lis, lambda r: r["type"] == "bye", "the server's bye")
    by_type = {}
    for r in records:
        by_type.setdefault(r["type"], []).append(r)
    assert set(by_type) == {"welcome", "unread", "join", "topic", "message", "presence",
                            "leave", "bye"}, [r["type"] for r in records]
    assert by_type["join"][0]["name"] == "bob" and by_type["join"][0]["room"] == "#general"
    assert (by_type["topic"][0]["topic"], by_type["topic"][0]["by"]) == ("news", "bob")
    # (a room and a DM are delivered independently: compare in id order)
    assert [(m["text"], m.get("room"), m.get("to"))
            for m in sorted(by_type["message"], key=lambda m: m["id"])] == [
        ("hello", "#general", None), ("psst", None, "ears")]
    assert by_type["presence"][0]["joined"] == ["carol"] and by_type["presence"][0]["count"] == 3
    assert (by_type["leave"][0]["name"], by_type["leave"][0]["reason"]) == ("bob", p.QUIT)
    assert by_type["bye"][0]["reason"] == p.SHUTDOWN
    assert lis.interrupt() == 0


def test_listen_json_room_prints_the_room_frame_then_only_that_room(server, spawn, peers):
    bob = peers(server.port, "bob")
    bob.join_room("#ops")
    bob.session.say("before", room="#ops")
    assert bob.session.wait_idle(WAIT)
    lis = spawn(server.port, "--listen", "--json", "--room", "#ops", "--name", "ears")
    records = json_records(lis, lambda r: r["type"] == "room", "the room frame")
    assert [r["type"] for r in records] == ["welcome", "room"], records
    room = records[-1]
    assert (room["room"], room["count"], sorted(room["members"])) == ("#ops", 2, ["bob", "ears"])
    assert [h["text"] for h in room["history"]] == ["before"]
    bob.session.say("outside")
    bob.session.say("inside", room="#ops")
    assert bob.session.wait_idle(WAIT)
    records = json_records(lis, lambda r: r.get("text") == "inside", "the #ops message")
    assert all(r.get("room") == "#ops" for r in records), records
    assert not any(r.get("text") == "outside" for r in records)
    assert lis.interrupt() == 0
