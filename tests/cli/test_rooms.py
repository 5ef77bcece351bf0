"""Rooms and direct messages in the interactive client, on a real pty (tmux), in both
front ends (prompt_toolkit and --plain readline).

The prompt shows the current conversation (``#general> ``, ``@bob> ``); lines of
other conversations carry a ``[#room]`` / ``[@name]`` prefix.
"""
from __future__ import annotations

import re

from cli_helpers import (Peer, ServerControl, Tmux, _until_ready, artifact_name,
                         client_argv, lines_with, p)

T = r"\d\d:\d\d:\d\d"


def start_cli(tmux: Tmux, server: ServerControl, name: str, mode: list[str],
              watcher: Peer, *extra: str) -> None:
    """``name`` in the terminal, ready to type; ``watcher`` sees it join."""
    tmux.start(client_argv(server.port, "--name", name, *mode, *extra))
    watcher.wait_join(name)
    _until_ready(tmux, timeout=8.0)


def prompt_is(tmux: Tmux, conv: str) -> list[str]:
    return tmux.wait_screen(lambda s: s[-1] == f"{conv}>" and tmux.cursor() == (
        len(conv) + 2, len(s) - 1), what=f"the prompt {conv}> ")


def matching(screen: list[str], pattern: str) -> list[int]:
    return [i for i, line in enumerate(screen) if re.fullmatch(pattern, line)]


def wait_match(tmux: Tmux, pattern: str, what: str = "") -> list[str]:
    return tmux.wait_screen(lambda s: bool(matching(s, pattern)), what=what or pattern)


def test_join_switch_and_other_rooms_prefixed(tmux, server, peers, mode, request):
    bob = peers(server.port, "bob")
    start_cli(tmux, server, "alice", mode, bob)
    tmux.enter("/join #python")
    prompt_is(tmux, "#python")
    tmux.wait_text("*** #python: 1 here: alice")
    bob.join_room("#python")
    tmux.wait_text("→ bob joined")                       # a join in the current room
    bob.session.say("hello snakes", room="#python")
    bob.session.say("meanwhile in general")
    assert bob.session.wait_idle(8)
    # (rooms are delivered independently: their lines may come in either order)
    screen = tmux.wait_screen(lambda s: matching(s, rf"{T} bob: hello snakes") and matching(
        s, rf"\[#general\] {T} bob: meanwhile in general"), what="both messages")
    here = matching(screen, rf"{T} bob: hello snakes")           # no prefix: current room
    other = matching(screen, rf"\[#general\] {T} bob: meanwhile in general")
    assert len(here) == 1 and len(other) == 1, screen

    tmux.enter("typed in python")
    got = bob.wait_message("typed in python", "alice")
    assert got.room == "#python"

    tmux.enter("/switch #general")
    screen = prompt_is(tmux, "#general")
    switched = lines_with(screen, "*** now in #general: 2 here: alice, bob")
    assert len(switched) == 1, screen
    # its recent history follows, without prefix, and the new message is marked
    wait_match(tmux, rf"{T} bob: meanwhile in general")
    screen = tmux.screen()
    after = [i for i in matching(screen, rf"{T} bob: meanwhile in general") if i > switched[0]]
    marker = [i for i in lines_with(screen, "--- new since you were here ---") if i > switched[0]]
    assert len(after) == 1 and marker and marker[0] < after[0], screen

    tmux.enter("back in general")
    got = bob.wait_message("back in general", "alice")
    assert got.room == "#general"
    tmux.enter("/part #python")
    leave = bob.wait_leave("alice")
    assert (leave.room, leave.reason) == ("#python", p.PART)
    tmux.save(artifact_name(request))


def test_join_of_a_bad_room_name_and_unknown_switch(tmux, server, peers, mode):
    bob = peers(server.port, "bob")
    start_cli(tmux, server, "alice", mode, bob)
    tmux.enter("/join #no!")
    tmux.wait_text("is not a room name")
    tmux.enter("/switch #nowhere")
    tmux.wait_text("you are not in #nowhere; /join #nowhere joins it")
    screen = prompt_is(tmux, "#general")
    assert lines_with(screen, "is not a room name")


def test_direct_messages_both_ways_between_two_terminals(tmp_path, server, peers, mode,
                                                         request):
    watcher = peers(server.port, "watcher")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = Tmux(tmp_path / "a"), Tmux(tmp_path / "b")
    try:
        start_cli(a, server, "alice", mode, watcher)
        start_cli(b, server, "bob", mode, watcher)
        a.enter("/msg bob lunch?")
        wait_match(b, rf"\[@alice\] {T} alice: lunch\?", "alice's DM on bob's screen")
        wait_match(a, rf"\[@bob\] {T} alice: lunch\?", "alice's own DM, tagged @bob")
        prompt_is(a, "#general")                       # /msg does not switch

        b.enter("/switch @alice")
        screen = prompt_is(b, "@alice")
        assert lines_with(screen, "*** now talking with alice (online)")
        wait_match(b, rf"{T} alice: lunch\?")         # the conversation's history, no prefix
        b.enter("yes, at noon")
        wait_match(a, rf"\[@bob\] {T} bob: yes, at noon", "bob's answer on alice's screen")
        wait_match(b, rf"{T} bob: yes, at noon")

        a.enter("/msg bob")                            # without text: switch to it
        prompt_is(a, "@bob")
        a.enter("see you")
        wait_match(b, rf"{T} alice: see you", "in the current conversation: no prefix")
        a.save(artifact_name(request) + "-alice")
        b.save(artifact_name(request) + "-bob")
        # the watcher saw none of it
        assert watcher.session.pending() == 0
        watcher.session.say("end")
        watcher.wait_message("end", "watcher")
        texts = [m.text for m in watcher.messages()]
        assert texts == ["end"], texts
    finally:
        a.kill()
        b.kill()


def test_search_and_history(tmux, server, peers, mode, request):
    bob = peers(server.port, "bob")
    bob.say_all([f"old {i:02d}" for i in range(30)])
    bob.say_all(["the quick brown fox", "a lazy dog", "quick thinking"])
    start_cli(tmux, server, "alice", mode, bob)
    tmux.wait_text("bob: quick thinking")               # the recent history of #general

    tmux.enter("/search quick")
    def hits_of(screen):
        heads = lines_with(screen, "*** 2 results for 'quick'")
        return [line for line in screen[heads[0] + 1:]
                if line.startswith("  [#general] ")] if heads else []

    screen = tmux.wait_screen(lambda s: len(hits_of(s)) == 2, what="two search results")
    hits = hits_of(screen)
    assert [re.sub(r"^  \[#general\] \S+ ", "", h) for h in hits] == [
        "bob: quick thinking", "bob: the quick brown fox"], screen        # newest first

    # the newcomer saw the last 20 messages (old 13 … quick thinking); /history 5 goes on
    tmux.enter("/history 5")
    screen = tmux.wait_text("--- end of the earlier messages in #general ---")
    start = lines_with(screen, "--- 5 earlier in #general (/history for more) ---")
    assert len(start) == 1, screen
    shown = [re.sub(rf"^{T} ", "", line) for line in screen[start[0] + 1:start[0] + 6]]
    assert shown == [f"bob: old {i:02d}" for i in range(8, 13)], screen
    tmux.enter("/history 50")
    screen = tmux.wait_screen(lambda s: lines_with(s, "--- the beginning of #general ---") and
                              lines_with(s, "--- end of the earlier")[-1] >
                              lines_with(s, "--- the beginning of #general ---")[-1],
                              what="the whole second page")
    start = lines_with(screen, "--- the beginning of #general ---")[-1]
    rest = [re.sub(rf"^{T} ", "", line) for line in screen[start + 1:]]
    assert rest[0] == "→ bob joined", screen
    assert rest[1:9] == [f"bob: old {i:02d}" for i in range(8)], screen
    tmux.save(artifact_name(request))


def test_topic_rooms_and_users(tmux, server, peers, mode, request):
    bob = peers(server.port, "bob")
    start_cli(tmux, server, "alice", mode, bob)
    tmux.enter("/topic")
    tmux.wait_text("#general has no topic; /topic <text> sets it")
    tmux.enter("/topic Welcome all")
    topic = bob.wait_for(lambda e: isinstance(e, p.Topic), what="the topic")
    assert (topic.room, topic.topic, topic.by) == ("#general", "Welcome all", "alice")
    wait_match(tmux, rf"{T} alice set the topic: Welcome all")
    tmux.enter("/topic")
    tmux.wait_text("*** #general topic: Welcome all")

    tmux.enter("/join #python")
    prompt_is(tmux, "#python")
    tmux.wait_text("*** #python: 1 here: alice")
    bob.session.say("unread for alice")
    assert bob.session.wait_idle(8)
    wait_match(tmux, rf"\[#general\] {T} bob: unread for alice")
    tmux.enter("/rooms")
    screen = tmux.wait_screen(lambda s: lines_with(s, "*** 2 rooms:") and
                              len(s) > lines_with(s, "*** 2 rooms:")[-1] + 3, what="/rooms")
    head = lines_with(screen, "*** 2 rooms:")[-1]
    assert screen[head + 1] == "   #general  (2 online, 1 unread, 1 mention, joined) — Welcome all", \
        screen
    assert screen[head + 2] == " * #python  (1 online, joined)", screen

    tmux.enter("/users #general")
    tmux.wait_text("[#general] 2 in #general: alice, bob")
    tmux.enter("/users")
    tmux.wait_screen(lambda s: s[-2].endswith("2 online: alice, bob"), what="/users output")
    tmux.save(artifact_name(request))


def test_help_lists_the_room_commands(tmux, server, peers, mode):
    bob = peers(server.port, "bob")
    start_cli(tmux, server, "alice", mode, bob)
    tmux.enter("/help")
    screen = tmux.wait_text("Anything else is sent to the current conversation.")
    text = "\n".join(screen)
    for usage in ("/join <#room>", "/part [#room]", "/rooms", "/topic [text]",
                  "/msg <name> [text]", "/switch <#room|@name>", "/history [n]",
                  "/search <words>", "/users [#room]", "/me <action>", "/exit", "//text"):
        assert usage in text, usage


def test_room_option_starts_in_that_room(tmux, server, peers, mode):
    bob = peers(server.port, "bob")
    bob.join_room("#ops")
    tmux.start(client_argv(server.port, "--name", "alice", "--room", "#ops", *mode))
    join = bob.wait_for(lambda e: isinstance(e, p.Join) and e.name == "alice"
                        and e.room == "#ops", what="alice joining #ops")
    assert join.room == "#ops"
    tmux.wait_text("*** #ops: 2 here: alice, bob")
    prompt_is(tmux, "#ops")
    tmux.wait_reading()
    tmux.enter("in ops")
    assert bob.wait_message("in ops", "alice").room == "#ops"
