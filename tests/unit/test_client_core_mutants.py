"""The shared client core: help layout, badges, time fallbacks and the other
cases mutation testing showed the other tests did not pin down (see
docs/testing.md)."""
import datetime
from dataclasses import dataclass

import pytest

from parley.client import core
from parley.client.core import parse

UTC = datetime.timezone.utc
PLUS5 = datetime.timezone(datetime.timedelta(hours=5))


# --- help ---------------------------------------------------------------------------------
def test_help_lists_every_command_with_its_aliases_in_one_aligned_column():
    text = core._help_text()
    assert text == core.HELP
    lines = text.split("\n")
    assert lines[0] == "Commands:"
    assert lines[-1] == "Anything else is sent to the current conversation."
    rows = lines[1:-1]
    assert len(rows) == len(core.COMMANDS) + 1
    usages = [f"/{s.name}" + (f" {s.args}" if s.args else "") for s in core.COMMANDS] + ["//text"]
    width = max(len(u) for u in usages) + 2
    for row, usage, spec in zip(rows, usages, list(core.COMMANDS) + [None]):
        assert row.startswith("  " + usage + " " * (width - len(usage)))
        described = row[2 + width:]
        assert described and not described.startswith(" ")
        if spec is not None:
            assert described.startswith(spec.help)
            if spec.aliases:
                assert described.endswith("; also " + ", ".join("/" + a for a in spec.aliases))
            else:
                assert "; also" not in described
    assert rows[-1].endswith('send a message that starts with "/"')


def test_usage_of_a_command_without_arguments_has_no_stray_space():
    assert core.usage("rooms").startswith("Usage: /rooms — ")
    assert core.usage("join").startswith("Usage: /join <#room> — ")


# --- what is echoed back is bounded ----------------------------------------------------------
@pytest.mark.parametrize("line", ["/join " + "x" * 100 + "!", "/msg " + "y" * 100 + "!",
                                  "/switch " + "z" * 100])
def test_a_bad_argument_is_echoed_at_most_40_characters(line):
    err = parse(line, current="#general").error
    word = line.split()[1]
    assert err and word[:40] in err and word[:41] not in err


# --- badges and summaries ---------------------------------------------------------------------
@pytest.mark.parametrize("unread,mentions,badge", [
    (0, 0, ""), (3, 0, "3"), (3, 1, "3, 1 mention"), (3, 2, "3, 2 mentions"),
    (0, 1, "0, 1 mention"), (1, 0, "1")])
def test_unread_badge(unread, mentions, badge):
    assert core.unread_badge(unread, mentions) == badge


def test_unread_badge_without_mentions_is_just_the_count():
    assert core.unread_badge(4) == "4"


@dataclass
class Conv:
    key: str
    kind: str = "room"
    unread: int = 0
    mentions: int = 0
    count: int = 1
    topic: str = ""


def test_describe_and_summary_pluralise_mentions():
    assert core.describe(Conv("#py", unread=3, mentions=2, count=2)) == \
        "  #py (3 unread, 2 mentions) 2 members"
    assert core.describe(Conv("@bob", kind="dm", unread=1, mentions=1), current=True) == \
        "* @bob (1 unread, 1 mention)"
    assert core.unread_summary([Conv("#py", unread=3, mentions=2), Conv("@bob", unread=1, mentions=1)]) \
        == "unread: #py 3 (2 mentions), @bob 1 (1 mention)"


def test_day_label_drops_leading_zeros_only():
    assert core.day_label(datetime.date(2026, 11, 4)) == "Wednesday, 4 November 2026"
    assert core.day_label(datetime.date(2026, 11, 10)) == "Tuesday, 10 November 2026"


def test_sorted_users_without_me_is_plain_alphabetical():
    assert core.sorted_users(["xxxx", "Bob", "alice"]) == ["alice", "Bob", "xxxx"]


# --- time fallbacks ------------------------------------------------------------------------------
@pytest.mark.parametrize("ts,fmt,shown", [
    ("2026-11-24T15:04:05+01:00", "%H:%M:%S", "15:04:05"),   # not our format: cut it
    ("2026-11-24T15:04:05+01:00", "%H:%M", "15:04"),
    ("2026-11-24T15:04:05", "%H:%M:%S", "15:04:05"),          # exactly 19 characters
    ("2026-11-24T15:04:0", "%H:%M:%S", "15:04"),              # 18: no seconds to show
    ("2026-11-24T15:04", "%H:%M", "15:04"),                   # exactly 16 characters
    ("2026-11-24T15:0", "%H:%M", "--:--"),
    ("garbage", "%H:%M", "--:--")])
def test_local_time_of_a_timestamp_it_cannot_parse(ts, fmt, shown):
    assert core.local_time(ts, fmt) == shown


def test_local_when_falls_back_like_local_time():
    assert core.local_when("2026-11-24T15:04") == "15:04"


def test_local_when_compares_days_in_the_given_zone():
    ts = "2026-11-24T20:00:00.000Z"                      # 25 Nov 01:00 at +05:00
    now = datetime.datetime(2026, 11, 25, 20, 0, tzinfo=UTC)   # 26 Nov 01:00 at +05:00
    assert core.local_when(ts, now=now, tz=PLUS5) == "Wed 25 Nov 01:00"
    same_day = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert core.local_when(ts, now=same_day, tz=PLUS5) == "01:00"


# --- conversations -----------------------------------------------------------------------------
def test_conversation_of_a_direct_message_is_the_other_person():
    frame = {"type": "message", "id": 1, "from": "amy", "to": "bob", "text": "x"}
    assert core.conversation_of(frame, "bob") == "@amy"
    assert core.conversation_of(frame, "AMY") == "@bob"


def test_config_dir_follows_xdg_then_appdata_on_windows_then_home(monkeypatch, tmp_path):
    from pathlib import Path
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "appdata"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(core.sys, "platform", "win32")
    assert core.config_dir() == tmp_path / "xdg" / "parley"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert core.config_dir() == tmp_path / "appdata" / "parley"
    monkeypatch.setattr(core.sys, "platform", "linux")
    assert core.config_dir() == Path(str(tmp_path / "home"), ".config", "parley")
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert core.config_dir() == tmp_path / "home" / ".config" / "parley"
