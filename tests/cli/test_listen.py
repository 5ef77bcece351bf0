"""--listen (and --listen --json): print incoming messages one per line until Ctrl-C."""
from __future__ import annotations

import json
import re
import time

import pytest

from cli_helpers import p

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
    bob.wait_join("ears")       # JSON mode prints no banner; this says it is in
    carol = peers(server.port, "carol")
    texts = ["one", "two \"quoted\"", "three 🎉", "tab\there"]
    bob.say_all(texts)
    bob.session.me("nods")
    records = []
    while not records or records[-1].get("text") != "nods":
        records.append(json.loads(lis.wait_line(lambda line: True)))
    assert records[0]["type"] == "join" and records[0]["name"] == "carol"
    messages = [r for r in records if r["type"] == "message"]
    assert [(m["from"], m["text"], m["kind"]) for m in messages] == \
        [("bob", t, "say") for t in texts] + [("bob", "nods", "me")]
    for m in messages:
        assert isinstance(m["id"], int)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m["ts"])
    ids = [r["id"] for r in records]
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
