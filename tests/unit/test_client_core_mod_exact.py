"""Moderation in the client core, exactly: every parse result and error
sentence, the "done" summaries, the system lines, the audit and session tables."""
import datetime

import pytest

from parley import protocol as p
from parley.client import core
from parley.client.core import parse, usage

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def err(name, problem):
    return f"{problem}. {usage(name)}"


@pytest.mark.parametrize("line,current,mod,args,text,target", [
    ("/mute bob 10m calm down", "#lab",
     {"action": "mute", "room": "#lab", "target": "bob", "duration": 600, "reason": "calm down"},
     ("bob",), "calm down", "#lab"),
    ("/mute bob calm down", "#lab",        # not a duration: the reason starts there
     {"action": "mute", "room": "#lab", "target": "bob", "reason": "calm down"},
     ("bob",), "calm down", "#lab"),
    ("/ban #other bob 1h30m", "#lab",
     {"action": "ban", "room": "#other", "target": "bob", "duration": 5400},
     ("bob",), None, "#other"),
    ("/ban -s bob 1d spam", "#lab",
     {"action": "ban", "target": "bob", "duration": 86400, "reason": "spam"},
     ("bob",), "spam", None),
    ("/kick --server bob", "@alice", {"action": "kick", "target": "bob"}, ("bob",), None, None),
    ("/kick bob   go away  ", "#lab",
     {"action": "kick", "room": "#lab", "target": "bob", "reason": "go away"},
     ("bob",), "go away", "#lab"),
    ("/delete 17 rude", "#lab", {"action": "delete", "room": "#lab", "id": 17, "reason": "rude"},
     (17,), "rude", "#lab"),
    ("/lock", "#lab", {"action": "lock", "room": "#lab"}, (), None, "#lab"),
    ("/close #x", "#lab", {"action": "close", "room": "#x"}, (), None, "#x"),
    ("/invite carol", "#lab", {"action": "invite", "room": "#lab", "target": "carol"},
     ("carol",), None, "#lab"),
    ("/op carol", "#lab", {"action": "op", "room": "#lab", "target": "carol"},
     ("carol",), None, "#lab"),
    ("/unban -s bob", None, {"action": "unban", "target": "bob"}, ("bob",), None, None),
])
def test_moderation_commands_parse_to_their_request(line, current, mod, args, text, target):
    cmd = parse(line, current)
    assert cmd.error is None, cmd.error
    assert (cmd.mod, cmd.args, cmd.text, cmd.target) == (mod, args, text, target)


@pytest.mark.parametrize("line,current,name,problem", [
    ("/kick", "#lab", "kick", "Say who"),
    ("/delete", "#lab", "delete", "Say which message (its id)"),
    ("/delete x1", "#lab", "delete", "'x1' is not a message id (a number)"),
    ("/delete 0", "#lab", "delete", "'0' is not a message id (a number)"),
    ("/kick bob", "@bob", "kick",
     "Moderation acts in a room: switch to one (or name it: /kick #room …)"),
    ("/kick bob", None, "kick",
     "Moderation acts in a room: switch to one (or name it: /kick #room …)"),
    ("/lock -s", "#lab", "lock",
     "/lock acts in a room only; -s is for /kick, /mute, /unmute, /ban, /unban"),
    ("/kick -s #lab bob", "#lab", "kick", "Either a room or --server, not both"),
    ("/lock now", "#lab", "lock", "/lock takes no arguments but a #room"),
    ("/mute bob 0s", "#lab", "mute", "A duration is at least 1s"),
    ("/mute bob 600w", "#lab", "mute", "A duration is at most 520w (leave it out: until lifted)"),
    ("/invite bob why", "#lab", "invite", "/invite takes no reason"),
    ("/audit 1 2", "#lab", "audit", "Give one number"),
    ("/audit 0", "#lab", "audit", f"The number of entries is 1 to {p.PAGE_MAX}, not '0'"),
    ("/audit x", "#lab", "audit", f"The number of entries is 1 to {p.PAGE_MAX}, not 'x'"),
    (f"/audit {p.PAGE_MAX + 1}", "#lab", "audit",
     f"The number of entries is 1 to {p.PAGE_MAX}, not '{p.PAGE_MAX + 1}'"),
])
def test_moderation_commands_refuse_with_a_sentence(line, current, name, problem):
    cmd = parse(line, current)
    assert (cmd.name, cmd.error, cmd.mod) == (name, err(name, problem), None)


def test_long_reasons_and_audit_sizes():
    long = "x" * (p.REASON_MAX + 1)
    assert parse(f"/kick bob {long}", "#lab").error == err(
        "kick", f"A reason is at most {p.REASON_MAX} characters, this one is {p.REASON_MAX + 1}")
    assert parse(f"/kick bob {long[1:]}", "#lab").mod["reason"] == long[1:]
    assert parse("/audit", None).args == (20,)
    assert parse("/audit 1", None).args == (1,)
    assert parse(f"/audit {p.PAGE_MAX}", None).args == (p.PAGE_MAX,)
    assert parse("/mute bob 520w", "#lab").mod["duration"] == 520 * 7 * 86400
    assert parse("/mute bob 1s", "#lab").mod["duration"] == 1


@pytest.mark.parametrize("fields,line", [
    ({"action": "mute", "room": "#lab", "target": "bob", "duration": 600},
     "muted bob in #lab for 10m"),
    ({"action": "ban", "target": "bob"}, "banned bob on this server"),
    ({"action": "delete", "room": "#lab", "id": 9}, "removed message 9 from #lab"),
    ({"action": "lock", "room": "#lab"}, "locked the topic of #lab"),
    ({"action": "open", "room": "#lab"}, "opened #lab"),
    ({"action": "op", "room": "#lab", "target": "c"}, "made a moderator: c in #lab"),
    ({"action": "zap"}, "zap on this server"),
])
def test_mod_summary(fields, line):
    assert core.mod_summary(fields) == line


def ev(**kw):
    base = {"id": 1, "ts": "2026-11-25T14:00:00.000Z", "by": "alice", "room": "#lab"}
    base.update(kw)
    return p.Moderation(**base)


@pytest.mark.parametrize("frame,line", [
    (ev(action="mute", target="bob", until="2026-11-25T14:10:00.000Z", reason="calm"),
     "alice muted bob in #lab for 10m: calm"),
    (ev(action="ban", target="bob"), "alice banned bob in #lab"),
    (ev(action="ban", target="bob", room=None), "alice banned bob in the server"),
    (ev(action="delete", message=7), "alice removed a message (id 7)"),
    (ev(action="delete", message=7, reason="rude"), "alice removed a message (id 7): rude"),
    (ev(action="kick", target="bob", reason="x"), "alice kicked bob in #lab: x"),
    (ev(action="unmute", target="bob"), "alice unmuted bob in #lab"),
    (ev(action="invite", target="bob"), "alice invited bob to #lab"),
    (ev(action="op", target="bob"), "alice made bob a moderator of #lab"),
    (ev(action="deop", target="bob"), "alice took bob's moderator role in #lab"),
    (ev(action="lock"), "alice locked the topic of #lab"),
    (ev(action="unlock", reason="ok"), "alice unlocked the topic of #lab: ok"),
    (ev(action="close"), "alice made #lab invite-only"),
    (ev(action="open"), "alice made #lab open to all"),
    (ev(action="zap"), "alice: zap ? in #lab"),
])
def test_mod_line(frame, line):
    assert core.mod_line(frame) == line


def test_until_text():
    assert core.until_text(None) == ""
    assert core.until_text("") == ""
    assert core.until_text("2026-11-25T16:00:00.000Z", "2026-11-25T14:00:00.000Z") == "for 2h"
    assert core.until_text("2026-11-25T16:00:00.000Z").startswith("until ")
    assert core.until_text("2026-11-25T16:00:00.000Z", "garbage").startswith("until ")


def test_format_and_parse_duration():
    assert core.format_duration(None) == ""
    assert core.format_duration(0) == "0s"
    assert core.format_duration(59.6) == "1m"
    assert core.format_duration(3600 + 1800 + 5) == "1h30m"
    assert core.format_duration(8 * 86400 + 7200) == "1w1d"
    assert core.parse_duration("1H30m") == 5400
    assert core.parse_duration("10") is None and core.parse_duration("m") is None


def test_audit_table_is_aligned_with_a_heading():
    rows = core.audit_table([
        {"id": 12, "ts": "2026-11-25T14:00:00.000Z", "by": "alice", "action": "mute",
         "room": "#lab", "target": "bob", "until": "2026-11-25T14:10:00.000Z", "reason": "calm"},
        {"id": 3, "ts": "2026-11-25T13:00:00.000Z", "by": "root", "action": "ban"},
        "not a dict",
    ], now=NOW, tz=UTC)
    assert rows == [
        "id  when   by     action  where   target  until  reason",
        "12  14:00  alice  mute    #lab    bob     14:10  calm",
        "3   13:00  root   ban     server  -       -",
    ]


def test_session_table_marks_this_device_and_online():
    rows = core.session_table([
        {"id": "a1", "device": "laptop", "created": "2026-11-25T09:00:00.000Z",
         "seen": "2026-11-25T14:00:00.000Z", "current": True, "online": True},
        {"id": "b2", "device": "", "created": "2026-11-25T10:00:00.000Z",
         "seen": "2026-11-25T11:00:00.000Z", "current": False, "online": True},
        {"id": "c3", "device": "phone", "created": "2026-11-25T10:00:00.000Z",
         "seen": "2026-11-25T11:00:00.000Z"},
        7,
    ], now=NOW, tz=UTC)
    assert rows == [
        "id  device  logged in  last seen",
        "a1  laptop  09:00      14:00      this device",
        "b2  -       10:00      11:00      online",
        "c3  phone   10:00      11:00",
    ]
