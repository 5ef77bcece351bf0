"""The client core's account additions: the commands (/register, /password,
/sessions, /revoke, /logout), password rules, login hints, guest labels and
the sessions table."""
from __future__ import annotations

import datetime

import pytest

from parley import protocol as p
from parley.client import core
from parley.client.core import parse

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("line,name", [("/register", "register"), ("/password", "password"),
                                       ("/passwd", "password"), ("/sessions", "sessions"),
                                       ("/logout", "logout"), ("/LOGOUT", "logout")])
def test_account_commands_without_arguments(line, name):
    cmd = parse(line, "#general")
    assert (cmd.name, cmd.error, cmd.args, cmd.text) == (name, None, (), None)


@pytest.mark.parametrize("line", ["/register hunter22hunter", "/password old new"])
def test_a_password_on_the_command_line_is_refused_and_not_echoed(line):
    cmd = parse(line, "#general")
    assert cmd.error and "asks for it" in cmd.error
    assert "hunter22" not in cmd.error and "old new" not in cmd.error
    assert cmd.args == () and cmd.text is None


def test_sessions_and_logout_take_no_arguments():
    assert "no arguments" in parse("/sessions all").error
    assert "no arguments" in parse("/logout now").error


def test_revoke_one_session_or_the_others():
    assert parse("/revoke 3f2a9c1e").args == ("3f2a9c1e",)
    for word in ("--others", "-o", "others"):
        cmd = parse(f"/revoke {word}")
        assert (cmd.args, cmd.text, cmd.error) == ((None,), "others", None)
    assert "Name one session" in parse("/revoke").error
    assert "Name one session" in parse("/revoke a b").error
    bad = parse("/revoke ../etc")
    assert "not a session id" in bad.error and bad.args == ()


def test_help_lists_the_account_commands():
    for usage in ("/register", "/password", "/sessions", "/revoke <id|--others>", "/logout"):
        assert usage in core.HELP
    assert "/passwd" in core.HELP


def test_password_problem_mirrors_the_server():
    from parley.server import accounts
    for pw in ("", "short", "1234567", "12345678", " " * 8, "x" * 1024, "x" * 1025):
        assert core.password_problem(pw) == accounts.password_problem(pw), pw
    assert core.password_problem("correct horse") is None


def test_login_hints():
    assert "enter its password" in core.login_hint(p.NAME_REGISTERED, "x")
    assert "TLS" in core.login_hint(p.INSECURE)
    assert core.login_hint("something_new", "the server's words") == "the server's words"
    assert core.login_hint("something_new") == "something_new"


def test_guest_label():
    assert core.guest_label("bob", ["BOB"]) == "bob (guest)"
    assert core.guest_label("alice", ["bob"]) == "alice"


def test_session_table():
    sessions = [
        {"id": "3f2a9c1e", "device": "laptop", "created": "2026-11-25T09:00:01.000Z",
         "seen": "2026-11-25T11:59:00.000Z", "current": True, "online": True},
        {"id": "77ab0c2d", "device": "", "created": "2026-11-20T09:00:01.000Z",
         "seen": "2026-11-21T10:00:00.000Z", "current": False, "online": False},
        "junk"]
    rows = core.session_rows(sessions, NOW, UTC)
    assert rows == [("3f2a9c1e", "laptop", "09:00", "11:59", "this device"),
                    ("77ab0c2d", "-", "Fri 20 Nov 09:00", "Sat 21 Nov 10:00", "")]
    lines = core.session_table(sessions, NOW, UTC)
    assert lines[0].split() == ["id", "device", "logged", "in", "last", "seen"]
    assert lines[1].startswith("3f2a9c1e  laptop") and lines[1].endswith("this device")
    assert len({ln.index("last seen") if "last seen" in ln else None for ln in lines[:1]}) == 1
    # the columns line up
    col = lines[0].index("logged in")
    assert lines[1][col:].startswith("09:00") and lines[2][col:].startswith("Fri 20 Nov")
    online = dict(sessions[1], online=True)
    assert core.session_rows([online], NOW, UTC)[0][4] == "online"
