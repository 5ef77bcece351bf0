"""The moderation commands of the client core: /kick, /mute with durations,
--server, /delete ids, room commands, /audit; the lines shown for ``mod``
frames and the audit table."""
from __future__ import annotations

import datetime

import pytest

from parley import protocol as p
from parley.client import core
from parley.client.core import format_duration, parse, parse_duration

UTC = datetime.timezone.utc


@pytest.mark.parametrize("word,seconds", [
    ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1w", 604800),
    ("1h30m", 5400), ("10M", 600), ("90s", 90)])
def test_durations(word, seconds):
    assert parse_duration(word) == seconds


@pytest.mark.parametrize("word", ["10", "m", "10x", "1.5h", "-5m", "10m!", "", "soon"])
def test_not_durations(word):
    assert parse_duration(word) is None


def test_format_duration():
    assert [format_duration(x) for x in (600, 5400, 86400, 691200, 45, None, 0)] == [
        "10m", "1h30m", "1d", "1w1d", "45s", "", "0s"]


def test_mute_with_a_duration_and_a_reason_in_the_current_room():
    cmd = parse("/mute bob 10m calm down", "#lab")
    assert cmd.error is None
    assert cmd.mod == {"action": "mute", "room": "#lab", "target": "bob", "duration": 600,
                       "reason": "calm down"}
    assert (cmd.name, cmd.target, cmd.text) == ("mute", "#lab", "calm down")


def test_a_reason_that_does_not_start_with_a_duration_is_all_reason():
    assert parse("/mute @bob calm down", "#lab").mod == {
        "action": "mute", "room": "#lab", "target": "bob", "reason": "calm down"}
    assert parse("/ban bob 2d", "#lab").mod == {
        "action": "ban", "room": "#lab", "target": "bob", "duration": 172800}
    # a kick has no duration: "10m" is its reason
    assert parse("/kick bob 10m", "#lab").mod["reason"] == "10m"


def test_server_wide_actions():
    for flag in ("-s", "--server"):
        cmd = parse(f"/ban {flag} bob 1w spam", "@carol")        # no room needed
        assert cmd.error is None, cmd
        assert cmd.mod == {"action": "ban", "target": "bob", "duration": 604800,
                           "reason": "spam"}
        assert cmd.target is None
    assert parse("/unmute -s bob", "#lab").mod == {"action": "unmute", "target": "bob"}
    for line in ("/op -s bob", "/lock --server", "/delete -s 5", "/invite -s bob"):
        cmd = parse(line, "#lab")
        assert cmd.error and "acts in a room only" in cmd.error, line
    assert "not both" in parse("/kick -s #lab bob", "#x").error


def test_a_room_named_first_instead_of_the_current_one():
    assert parse("/kick #lab bob spam", "#general").mod == {
        "action": "kick", "room": "#lab", "target": "bob", "reason": "spam"}
    assert parse("/close lab", "#lab").error      # (a word that is not a #room: refused)
    assert parse("/close #lab", "@bob").mod == {"action": "close", "room": "#lab"}


def test_room_commands_need_a_room():
    for line in ("/kick bob", "/lock", "/delete 3", "/invite bob", "/op bob"):
        cmd = parse(line, "@bob")
        assert cmd.error and "acts in a room" in cmd.error, line
        assert cmd.mod is None
    assert parse("/lock", "#lab").mod == {"action": "lock", "room": "#lab"}
    assert parse("/open", "#lab").mod == {"action": "open", "room": "#lab"}
    assert "no arguments" in parse("/unlock now", "#lab").error


def test_delete_takes_a_message_id():
    assert parse("/delete 117 rude", "#lab").mod == {
        "action": "delete", "room": "#lab", "id": 117, "reason": "rude"}
    assert parse("/del 5", "#lab").mod == {"action": "delete", "room": "#lab", "id": 5}
    for bad in ("/delete", "/delete abc", "/delete 0", "/delete -3"):
        assert parse(bad, "#lab").error, bad


def test_targets_and_reasons_are_checked():
    assert "Say who" in parse("/kick", "#lab").error
    assert "not a user name" in parse("/kick bo!b", "#lab").error
    assert "takes no reason" in parse("/unban bob please", "#lab").error
    assert "takes no reason" in parse("/op bob now", "#lab").error
    long = "x" * (p.REASON_MAX + 1)
    assert "at most" in parse(f"/kick bob {long}", "#lab").error
    assert parse(f"/kick bob {long[:-1]}", "#lab").error is None
    assert "at most" in parse("/mute bob 600w", "#lab").error
    assert "at least" in parse("/mute bob 0s", "#lab").error


def test_audit():
    assert parse("/audit", "#lab").args == (20,)
    assert parse("/audit 5", "@bob").args == (5,)
    assert parse("/audit x", "#lab").error
    assert parse(f"/audit {p.PAGE_MAX + 1}", "#lab").error


def test_every_moderation_command_is_in_the_one_help():
    for name in core.MOD_COMMANDS + ("audit",):
        assert f"/{name} " in core.HELP, name
    assert "30s, 10m, 2h, 1d, 1w" in core.HELP
    for spec in core.COMPANIONS:                     # told in another row, parsed as itself
        assert f"\n  /{spec.name} " not in core.HELP
        assert spec.name in core.usage(spec.name)
    # the help stays one screen high (a 30-row terminal, with the typed line and prompt)
    assert len(core.HELP.splitlines()) <= 28
    assert max(map(len, core.HELP.splitlines())) <= 118


def mod(action, **kw):
    kw.setdefault("room", "#lab")
    return p.Moderation(id=120, ts="2026-11-25T14:00:00.000Z", action=action, by="alice", **kw)


def test_mod_lines():
    assert core.mod_line(mod("mute", target="bob", reason="calm down",
                             until="2026-11-25T14:10:00.000Z")) == \
        "alice muted bob in #lab for 10m: calm down"
    assert core.mod_line(mod("delete", message=117)) == "alice removed a message (id 117)"
    assert core.mod_line(mod("kick", target="bob")) == "alice kicked bob in #lab"
    assert core.mod_line(mod("ban", target="bob", reason="spam")) == \
        "alice banned bob in #lab: spam"
    assert core.mod_line(mod("invite", target="bob")) == "alice invited bob to #lab"
    assert core.mod_line(mod("op", target="bob")) == "alice made bob a moderator of #lab"
    assert core.mod_line(mod("lock")) == "alice locked the topic of #lab"
    assert core.mod_line(mod("close")) == "alice made #lab invite-only"
    assert core.mod_line(mod("open")) == "alice made #lab open to all"


def test_audit_table():
    now = datetime.datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    lines = core.audit_table([
        {"id": 7, "ts": "2026-11-25T14:00:00.000Z", "by": "alice", "action": "lock",
         "room": "#lab"},
        {"id": 6, "ts": "2026-11-25T13:00:00.000Z", "by": "root", "action": "ban",
         "target": "bob", "reason": "spam", "until": "2026-11-25T16:00:00.000Z"}],
        now=now, tz=UTC)
    assert lines[0].split() == ["id", "when", "by", "action", "where", "target", "until",
                                "reason"]
    assert lines[1].split() == ["7", "14:00", "alice", "lock", "#lab", "-", "-"]
    assert lines[2].split() == ["6", "13:00", "root", "ban", "server", "bob", "16:00", "spam"]
    assert len({ln.index("action") if i == 0 else None for i, ln in enumerate(lines)}) == 2
