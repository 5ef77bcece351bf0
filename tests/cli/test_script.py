"""Scripting mode: stdin is a pipe, every line is sent, exit 0 once all are acknowledged."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from cli_helpers import Limits, p, run_client


def sent_by(peer, name: str) -> list[str]:
    """Wait until ``name`` has left (so everything it sent has been delivered), then
    return the texts it sent, in the order the peer received them."""
    peer.wait_leave(name)
    return [m.text for m in peer.messages(sender=name)]


def test_many_lines_arrive_in_order(server, peers):
    watcher = peers(server.port, "watcher")
    lines = [f"line {i:03d} {'x' * (i % 7)}" for i in range(300)]
    r = run_client(server.port, "--name", "bot", input="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert sent_by(watcher, "bot") == lines
    leave = watcher.seen[-1]
    assert isinstance(leave, p.Leave) and leave.reason == p.QUIT


def test_default_rate_limit_is_paced_and_nothing_is_lost(make_server, peers):
    """25 lines against rate 5/s, burst 20: the client paces itself; none is refused."""
    server = make_server(Limits())
    assert (server.limits.rate, server.limits.burst) == (5.0, 20)
    watcher = peers(server.port, "watcher")
    lines = [f"paced {i}" for i in range(25)]
    r = run_client(server.port, "--name", "pacer", input="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    assert "rate_limited" not in r.stderr and "refused" not in r.stderr
    assert sent_by(watcher, "pacer") == lines


def test_me_slash_slash_blank_lines_and_unknown_commands(server, peers):
    watcher = peers(server.port, "watcher")
    script = "first\n\n   \n/me waves\n//etc/passwd is a path\n/frobnicate now\nlast\r\n"
    r = run_client(server.port, "--name", "bot", input=script)
    assert r.returncode == 0, r.stderr
    assert "unknown command '/frobnicate'" in r.stderr
    watcher.wait_leave("bot")
    got = [(m.kind, m.text) for m in watcher.messages(sender="bot")]
    assert got == [("say", "first"), ("me", "waves"), ("say", "/etc/passwd is a path"),
                   ("say", "last")]


def test_exit_command_stops_the_script(server, peers):
    watcher = peers(server.port, "watcher")
    r = run_client(server.port, "--name", "bot", input="before\n/exit\nafter\n")
    assert r.returncode == 0, r.stderr
    assert sent_by(watcher, "bot") == ["before"]


def test_empty_input_exits_zero(server, peers):
    watcher = peers(server.port, "watcher")
    r = run_client(server.port, "--name", "quiet", input="")
    assert r.returncode == 0, r.stderr
    assert sent_by(watcher, "quiet") == []


def test_text_too_long_exits_one_and_says_why(make_server, peers):
    server = make_server(Limits(rate=1000, burst=1000, max_text=100))
    watcher = peers(server.port, "watcher")
    r = run_client(server.port, "--name", "bot",
                   input="short one\n" + "y" * 101 + "\nshort two\n")
    assert r.returncode == 1
    assert "text_too_long" in r.stderr
    assert "101" in r.stderr and "100" in r.stderr      # the sentence gives the sizes
    # the refused line is not delivered; the others are, in order
    assert sent_by(watcher, "bot") == ["short one", "short two"]


def test_text_at_the_limit_is_accepted(make_server, peers):
    server = make_server(Limits(rate=1000, burst=1000, max_text=100))
    watcher = peers(server.port, "watcher")
    r = run_client(server.port, "--name", "bot", input="z" * 100 + "\n")
    assert r.returncode == 0, r.stderr
    assert sent_by(watcher, "bot") == ["z" * 100]


def test_name_required_when_stdin_is_piped(server):
    r = run_client(server.port, input="hello\n")
    assert r.returncode == 2
    assert "--name is required" in r.stderr
    assert server.hub.count == 0           # it did not even connect


def test_name_taken_exits_one_with_a_clear_message(server, peers):
    alice = peers(server.port, "alice")
    for name in ("alice", "ALICE"):          # names are case-insensitive
        r = run_client(server.port, "--name", name, input="hi\n")
        assert r.returncode == 1, (name, r.stderr)
        assert "taken" in r.stderr and name in r.stderr, r.stderr
    # the impostor never got in: nothing was said in alice's name
    alice.session.say("still me")
    alice.wait_message("still me", "alice")
    assert [m.text for m in alice.messages()] == ["still me"]


def test_invalid_name_exits_one(server):
    r = run_client(server.port, "--name", "no spaces allowed", input="hi\n")
    assert r.returncode == 1
    assert r.stderr.strip(), "expected an explanation on stderr"


def test_connection_refused_gives_troubleshooting_hint():
    # a socket bound but not listening: connecting to it is refused, and no one
    # else can take the port while we hold it
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        r = run_client(port, "--name", "bot", input="hello\n", timeout=10)
    assert r.returncode == 1
    assert f"Cannot connect to 127.0.0.1:{port}" in r.stderr
    assert "Is the server running" in r.stderr
    assert r.stdout == ""


def test_connection_refused_in_listen_mode():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        r = run_client(port, "--listen", timeout=10)
    assert r.returncode == 1
    assert "Is the server running" in r.stderr


# --- rooms and direct messages ----------------------------------------------------------
def by_id(peer, name: str) -> list[tuple]:
    """What ``name`` sent, in the order it was sent (ids are given in commit order;
    rooms are delivered independently, so arrival order across rooms may differ)."""
    peer.wait_leave(name)
    return [(m.room, m.to, m.kind, m.text)
            for m in sorted(peer.messages(sender=name), key=lambda m: m.id)]


def test_room_option_sends_every_line_to_the_room(server, peers):
    watcher = peers(server.port, "watcher")
    watcher.join_room("#ops")
    r = run_client(server.port, "--name", "bot", "--room", "#ops",
                   input="deploy started\n/me deploys\n//etc is fine\ndeploy done\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert by_id(watcher, "bot") == [("#ops", None, "say", "deploy started"),
                                     ("#ops", None, "me", "deploys"),
                                     ("#ops", None, "say", "/etc is fine"),
                                     ("#ops", None, "say", "deploy done")]


def test_room_option_creates_the_room_and_accepts_a_name_without_hash(server, peers):
    watcher = peers(server.port, "watcher")
    r = run_client(server.port, "--name", "bot", "--room", "builds", input="green\n")
    assert r.returncode == 0, r.stderr
    label = watcher.session.list_rooms()
    rooms = watcher.wait_for(lambda e: isinstance(e, p.RoomList) and e.label == label)
    assert [x["room"] for x in rooms.rooms] == ["#builds", "#general"]
    info = watcher.join_room("#builds")
    assert [h["text"] for h in info.history] == ["green"]


def test_to_option_sends_direct_messages_nobody_else_sees(server, peers):
    bob = peers(server.port, "bob")
    carol = peers(server.port, "carol")
    r = run_client(server.port, "--name", "bot", "--to", "bob", input="psst\n/me whispers\n")
    assert r.returncode == 0, r.stderr
    assert by_id(bob, "bot") == [(None, "bob", "say", "psst"), (None, "bob", "me", "whispers")]
    carol.wait_leave("bot")
    assert carol.messages(sender="bot") == []


def test_to_nobody_exits_one(server):
    r = run_client(server.port, "--name", "bot", "--to", "nobody", input="hello?\n")
    assert r.returncode == 1
    assert "no_such_user" in r.stderr


@pytest.mark.parametrize("args,why", [
    (["--room", "#bad!"], "room names may use only"),
    (["--room", "#" + "x" * 33], "at most 32"),
    (["--to", "no spaces"], "names may use only"),
    (["--room", "#a", "--to", "bob"], "not allowed with"),
    (["--all"], "--all goes with --listen"),
])
def test_bad_target_options_exit_two(server, args, why):
    r = run_client(server.port, "--name", "bot", *args, input="hello\n")
    assert r.returncode == 2
    assert why in r.stderr
    assert server.hub.count == 0


def test_script_commands_move_between_conversations(server, peers):
    watcher = peers(server.port, "watcher")
    watcher.join_room("#ops")
    script = ("in general\n/join #ops\nin ops\n/msg watcher psst\n/switch @watcher\nalso dm\n"
              "/switch #general\nback\n/rooms\n/frobnicate\n")
    r = run_client(server.port, "--name", "bot", input=script)
    assert r.returncode == 0, r.stderr
    assert "skipped '/rooms' (interactive only)" in r.stderr
    assert "unknown command '/frobnicate'" in r.stderr
    assert by_id(watcher, "bot") == [("#general", None, "say", "in general"),
                                     ("#ops", None, "say", "in ops"),
                                     (None, "watcher", "say", "psst"),
                                     (None, "watcher", "say", "also dm"),
                                     ("#general", None, "say", "back")]


def test_usage_error_in_a_script_is_skipped_not_sent(server, peers):
    watcher = peers(server.port, "watcher")
    r = run_client(server.port, "--name", "bot", input="/switch #nowhere!\nstill sent\n")
    assert r.returncode == 0, r.stderr             # a usage error is skipped, not sent
    assert "not a room name" in r.stderr
    assert by_id(watcher, "bot") == [("#general", None, "say", "still sent")]


class SilentServer:
    """Welcomes a client, then never acknowledges anything."""

    def __init__(self):
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.got: list = []
        self.conns: list = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        conn, _ = self.lsock.accept()
        self.conns.append(conn)
        decoder = p.FrameDecoder(p.CLIENT_FRAMES)
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                conn.close()
                return
            for f in decoder.feed(data):
                self.got.append(f)
                if isinstance(f, p.Hello):
                    conn.sendall(p.encode(p.Welcome(
                        version=1, server="silent", name=f.name, users=[f.name], last_id=0,
                        token="t", limits={"rate": 100.0, "burst": 100}, caps=["rooms"],
                        rooms=[p.RoomInfo(room="#general", count=1).to_dict()])))

    def close(self) -> None:
        self.lsock.close()
        for c in self.conns:
            c.close()


def test_not_acknowledged_within_the_timeout_exits_one():
    silent = SilentServer()
    try:
        started = time.monotonic()
        r = run_client(silent.port, "--name", "bot", "--timeout", "1",
                       input="one\ntwo\n", timeout=15)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert r.returncode == 1
    assert "2 of 2 messages were not acknowledged in time" in r.stderr
    assert took < 8
    assert [f.text for f in silent.got if isinstance(f, p.Say)] == ["one", "two"]


def test_a_refused_connection_exits_one_with_the_servers_reason(make_server, peers):
    """Turned away before hello (here: one connection per address, loopback
    included): a script says why and exits 1 instead of retrying forever."""
    server = make_server(Limits(rate=1000, burst=1000, max_per_address=1, limit_loopback=True))
    alice = peers(server.port, "alice")
    r = run_client(server.port, "--name", "bot", input="hi\n", timeout=20)
    assert r.returncode == 1, r.stderr
    assert "refused the connection" in r.stderr and "too_many_connections" in r.stderr
    assert "at most 1 connection from one address" in r.stderr
    assert "Traceback" not in r.stderr
    alice.session.say("still me")                  # the one let in is unaffected
    alice.wait_message("still me", "alice")
    assert [m.text for m in alice.messages()] == ["still me"]
