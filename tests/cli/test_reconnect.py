"""The server goes away and comes back on the same port: the client says so and reconnects."""
from __future__ import annotations

from cli_helpers import FAST, PROMPT, SessionState, StateChanged, artifact_name, p, start_alice


def restart(server, lis) -> None:
    """Stop the server under a listening client, check it notices, start it again."""
    server.stop(grace=1.0)
    lis.wait_text("*** server: the server is shutting down")
    lost = lis.wait_text("*** connection lost")
    assert "reconnecting in" in lost
    server.start()                     # the same port number: SO_REUSEADDR
    lis.wait_text(f"*** reconnected to 127.0.0.1:{server.port} as ears")


def test_listen_reconnects_after_server_restart(make_server, spawn, peers):
    server = make_server(FAST)
    port = server.port
    lis = spawn(port, "--listen", "--name", "ears")
    lis.wait_text("*** connected as ears")
    bob = peers(port, "bob")
    bob.say_all(["before 1", "before 2", "before 3"])
    lis.wait_text("bob: before 3")
    bob.close()

    restart(server, lis)
    assert server.port == port
    carol = peers(port, "carol")
    assert "ears" in carol.welcome.users          # it is back under the same name
    assert lis.proc.poll() is None
    assert lis.interrupt() == 0
    assert carol.wait_leave("ears").reason == p.QUIT


def test_listen_shows_new_messages_after_server_restart(make_server, spawn, peers):
    """Ids start again at 1 on the new server: the client must not drop them as duplicates
    of what it saw before the restart (the welcome's ``instance`` tells them apart)."""
    server = make_server(FAST)
    lis = spawn(server.port, "--listen", "--name", "ears")
    lis.wait_text("*** connected as ears")
    bob = peers(server.port, "bob")
    bob.say_all([f"before {i}" for i in range(5)])
    lis.wait_text("bob: before 4")
    bob.close()

    restart(server, lis)
    carol = peers(server.port, "carol")
    carol.say_all(["after the restart"])
    lis.wait_text("carol: after the restart")


def test_interactive_survives_server_restart(tmux, make_server, peers, mode, request):
    server = make_server(FAST)
    bob = start_alice(tmux, server, peers, mode)
    bob.close()
    # (wait for the notice: in --plain mode a line printed while keys are being echoed
    # can garble the display of the input line; see test_interactive.py)
    tmux.wait_text("bob left (quit)")
    tmux.type("written while")
    tmux.wait_screen(lambda s: s[-1].endswith("written while"), what="the typed text")

    server.stop(grace=1.0)
    # the notices appear above the half-typed line, which stays intact
    screen = tmux.wait_screen(
        lambda s: any("*** connection lost" in line for line in s)
        and s[-1] == PROMPT + "written while", what="the connection-lost notice")
    lost = next(line for line in screen if "*** connection lost" in line)
    assert "reconnecting in" in lost
    assert any("*** server: the server is shutting down" in line for line in screen)

    tmux.enter(" offline")
    tmux.wait_text("(offline: the message will be sent when reconnected)")
    server.start()
    tmux.wait_text(f"*** reconnected to 127.0.0.1:{server.port} as alice")

    # the message typed while offline is delivered once reconnected, exactly once
    carol = peers(server.port, "carol")
    carol.wait_message("written while offline", "alice")
    tmux.enter("and after")
    carol.wait_message("and after", "alice")
    assert [m.text for m in carol.messages("alice")] == ["written while offline", "and after"]
    tmux.save(artifact_name(request))
    tmux.enter("/exit")
    assert tmux.wait_dead() == 0


def test_session_sees_new_messages_after_server_restart(make_server, peers):
    """The same at the Session level, for a user who stayed online across the restart."""
    server = make_server(FAST)
    bob = peers(server.port, "bob")
    bob.say_all([f"before {i}" for i in range(5)])
    bob.wait_message("before 4", "bob")
    server.stop(grace=1.0)
    bob.wait_for(lambda e: isinstance(e, StateChanged) and e.state is SessionState.RECONNECTING,
                 what="reconnecting")
    server.start()
    bob.wait_for(lambda e: isinstance(e, StateChanged) and e.state is SessionState.CONNECTED,
                 what="reconnected")
    carol = peers(server.port, "carol")
    carol.say_all(["after the restart"])
    bob.wait_message("after the restart", "carol")
