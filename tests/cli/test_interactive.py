"""Interactive mode on a real pty (tmux): prompt_toolkit and the --plain readline fallback.

The screen is read with ``tmux capture-pane``; the final screen of each test is
saved under tests/cli/artifacts/ (plain text, and .ansi with the colours).
"""
from __future__ import annotations

import re

import pytest

from cli_helpers import PROMPT, artifact_name, client_argv, lines_with, p, start_alice


def test_half_typed_line_survives_incoming_messages(tmux, server, peers, mode, request):
    bob = start_alice(tmux, server, peers, mode)
    assert lines_with(tmux.screen(), "*** connected as alice. 2 online: alice, bob")

    tmux.type("hello wor")
    tmux.wait_screen(lambda s: s[-1].endswith("hello wor"), what="the typed text")
    incoming = [f"incoming {i}: the quick brown fox" for i in range(6)]
    bob.say_all(incoming)
    # the messages appear above the input line, and the input line is redrawn intact
    typed = PROMPT + "hello wor"
    screen = tmux.wait_screen(
        lambda s: any(incoming[-1] in line for line in s) and s[-1] == typed
        and tmux.cursor() == (len(typed), len(s) - 1),
        what="all incoming messages, and below them the prompt with 'hello wor' and the "
             "cursor at its end")
    rows = [lines_with(screen, f"bob: {t}") for t in incoming]
    assert all(len(r) == 1 for r in rows), screen          # each exactly once
    rows = [r[0] for r in rows]
    assert rows == sorted(rows) and rows[-1] < len(screen) - 1, screen
    for r, t in zip(rows, incoming):
        assert re.fullmatch(rf"\d\d:\d\d:\d\d bob: {re.escape(t)}", screen[r]), screen[r]
    assert lines_with(screen, "hello wor") == [len(screen) - 1], screen   # not garbled elsewhere

    tmux.enter("ld")
    msg = bob.wait_message("hello world", "alice")
    assert msg.kind == "say"
    # alice sees her own message too, once the server has accepted it
    tmux.wait_screen(lambda s: any(re.fullmatch(r"\d\d:\d\d:\d\d alice: hello world", line)
                                   for line in s), what="alice's own message")
    tmux.save(artifact_name(request))
    assert [m.text for m in bob.messages("alice")] == ["hello world"]


def test_commands_users_help_unknown_me_and_exit(tmux, server, peers, mode, request):
    bob = start_alice(tmux, server, peers, mode)

    tmux.enter("/users")
    tmux.wait_screen(lambda s: any(line.endswith("2 online: alice, bob") for line in s[1:]),
                     what="/users output")

    tmux.enter("/help")
    screen = tmux.wait_text("//text")
    help_text = "\n".join(screen)
    for cmd in ("Commands:", "/users", "/me <action>", "/help", "/exit"):
        assert cmd in help_text

    tmux.enter("/foo bar")
    screen = tmux.wait_text("Unknown command /foo")
    line = screen[lines_with(screen, "Unknown command /foo")[0]]
    assert "/help" in line and "//" in line

    tmux.enter("/me waves")
    tmux.enter("//not a command")
    tmux.enter("after the commands")
    bob.wait_message("after the commands", "alice")
    # commands are local: bob got exactly the three messages, in order
    assert [(m.kind, m.text) for m in bob.messages("alice")] == [
        ("me", "waves"), ("say", "/not a command"), ("say", "after the commands")]
    tmux.wait_text("* alice waves")

    tmux.enter("/exit")
    assert tmux.wait_dead() == 0
    assert bob.wait_leave("alice").reason == p.QUIT
    screen = tmux.screen()
    assert "Bye." in screen
    tmux.save(artifact_name(request))


def test_ctrl_d_leaves(tmux, server, peers, mode):
    bob = start_alice(tmux, server, peers, mode)
    tmux.keys("C-d")
    assert tmux.wait_dead() == 0
    assert bob.wait_leave("alice").reason == p.QUIT


def test_bob_leaving_and_joining_is_shown(tmux, server, peers, mode):
    bob = start_alice(tmux, server, peers, mode)
    tmux.type("draft")
    tmux.wait_screen(lambda s: s[-1].endswith("draft"), what="the typed text")
    carol = peers(server.port, "carol")
    carol.close()
    screen = tmux.wait_screen(lambda s: any("carol left (quit)" in line for line in s)
                              and s[-1] == PROMPT + "draft", what="carol's join and leave")
    joined = lines_with(screen, "→ carol joined")
    left = lines_with(screen, "← carol left (quit)")
    assert len(joined) == 1 and len(left) == 1 and joined[0] < left[0]
    tmux.enter()
    bob.wait_message("draft", "alice")


@pytest.mark.parametrize("how", ["NO_COLOR", "--no-color", "colour"])
def test_colour_switches(tmux, server, peers, how):
    """Colours on a terminal by default; none with NO_COLOR or --no-color."""
    bob = peers(server.port, "bob")
    extra = ["--no-color"] if how == "--no-color" else []
    env = {"NO_COLOR": "1"} if how == "NO_COLOR" else {}
    tmux.start(client_argv(server.port, "--listen", "--name", "ears", *extra), env=env)
    tmux.wait_text("*** connected as ears")
    bob.say_all(["paint it"])
    tmux.wait_text("bob: paint it")
    coloured = tmux.screen(escapes=True)
    line = next(line for line in coloured if "paint it" in line)
    if how == "colour":
        assert "\x1b[" in line, repr(line)
    else:
        assert "\x1b[" not in "\n".join(coloured), coloured



@pytest.mark.parametrize("args", [
    pytest.param([], id="toolkit"),
    pytest.param(["--plain"], id="plain"),
    pytest.param(["--plain", "--no-color"], id="plain-nocolor"),
])
def test_cursor_inside_the_line_survives_incoming_messages(tmux, server, peers, args, request):
    bob = start_alice(tmux, server, peers, args)
    tmux.type("hello world")
    tmux.keys("Left", "Left", "Left", "Left", "Left")
    tmux.wait_screen(lambda s: s[-1] == PROMPT + "hello world"
                     and tmux.cursor() == (len(PROMPT + "hello "), len(s) - 1),
                     what="the cursor before 'world'")
    bob.say_all(["interruption"])
    tmux.wait_text("bob: interruption")
    tmux.type("XX")
    try:
        tmux.wait_screen(lambda s: s[-1] == PROMPT + "hello XXworld"
                         and tmux.cursor() == (len(PROMPT + "hello XX"), len(s) - 1),
                         timeout=2, what="'XX' inserted before 'world', the cursor after it")
    finally:
        tmux.save(artifact_name(request))
    tmux.enter()
    bob.wait_message("hello XXworld", "alice")


@pytest.mark.parametrize("args", [
    pytest.param([], id="toolkit"),
    pytest.param(["--plain", "--no-color"], id="plain-nocolor"),
    pytest.param(["--plain"], id="plain"),
])
def test_long_line_wraps_and_home_key_goes_to_its_start(tmux, server, peers, args, request):
    bob = start_alice(tmux, server, peers, args)
    long = "A" * (tmux.width + 10)
    tmux.type(long)
    tmux.wait_screen(lambda s: s[-1] == "A" * (len(PROMPT + long) - tmux.width),
                     what="the long line wrapped")
    tmux.keys("C-a")
    tmux.type("Z")
    try:
        tmux.wait_screen(lambda s: s[-2] == (PROMPT + "Z" + long)[:tmux.width]
                         and s[-1] == (PROMPT + "Z" + long)[tmux.width:]
                         and tmux.cursor() == (len(PROMPT + "Z"), len(s) - 2),
                         timeout=2, what="'Z' at the start of the line, the cursor after it")
    finally:
        tmux.save(artifact_name(request))
    tmux.enter()
    bob.wait_message("Z" + long, "alice")


@pytest.mark.parametrize("args", [
    pytest.param([], id="toolkit"),
    pytest.param(["--plain"], id="plain"),
])
def test_local_command_output_does_not_double_the_prompt(tmux, server, peers, args, request):
    start_alice(tmux, server, peers, args)
    tmux.enter("/users")
    tmux.wait_screen(lambda s: s[-2].endswith("2 online: alice, bob"), what="/users output")
    tmux.wait_reading()
    tmux.type("next")
    screen = tmux.wait_screen(lambda s: s[-1].endswith("next"), what="the typed text")
    tmux.save(artifact_name(request))
    assert screen[-1] == PROMPT + "next"
