"""Accounts in the terminal client: scripts (--password-stdin, exit codes) and
interactive logins on a real pty (tmux): the password prompt never echoes,
/register asks twice, /sessions is a table, /logout forgets the login, a
device logged out from elsewhere is told so, guests are marked."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_helpers import (CLIENT, FAST, MODES, PROMPT, ROOT, Peer, ServerControl, add_account,
                         artifact_name, client_argv, client_env, lines_with, p, poll, run_client)

PW = "correct horse"


@pytest.fixture
def acct_server():
    """A server (auth optional) with the account alice / PW."""
    ctl = ServerControl(FAST).start()
    add_account(ctl.server, "alice", PW)
    yield ctl
    ctl.stop(grace=0.5)


def logins(ctl: ServerControl, name: str) -> list:
    acc = ctl.server.store.account(name)
    return ctl.server.store.logins(acc.sid) if acc else []


# --- scripts ------------------------------------------------------------------------------
def test_script_logs_in_with_password_stdin_and_sends(acct_server, peers):
    bob = peers(acct_server.port, "bob")
    r = run_client(acct_server.port, "--name", "alice", "--password-stdin", "--device", "cron",
                   input=f"{PW}\nfrom the script\n")
    assert r.returncode == 0, r.stderr
    m = bob.wait_message("from the script", "alice")
    assert not m.guest                                   # an account's message
    assert PW not in r.stdout + r.stderr
    assert [x.device for x in logins(acct_server, "alice")] == ["cron"]


def test_script_with_a_wrong_password_exits_3_with_one_line(acct_server, peers):
    bob = peers(acct_server.port, "bob")
    r = run_client(acct_server.port, "--name", "alice", "--password-stdin",
                   input="not the password\nshould not be sent\n")
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [
        "parley: login refused: wrong name or password (login_failed)"]
    assert "not the password" not in r.stdout + r.stderr
    assert not bob.messages("alice")


def test_script_as_a_guest_on_a_registered_name_exits_3(acct_server):
    r = run_client(acct_server.port, "--name", "ALICE", input="hi\n")
    assert r.returncode == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "name_registered" in lines[0] and "--login" in lines[0]


def test_script_registers_then_logs_in(acct_server):
    r = run_client(acct_server.port, "--name", "carol", "--register", "--password-stdin",
                   input="a long passphrase\nhello\n")
    assert r.returncode == 0, r.stderr
    assert acct_server.server.store.account("carol") is not None
    r = run_client(acct_server.port, "--name", "carol", "--password-stdin",
                   input="a long passphrase\nagain\n")
    assert r.returncode == 0, r.stderr
    short = run_client(acct_server.port, "--name", "dave", "--register", "--password-stdin",
                       input="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr


def test_password_stdin_refuses_an_empty_line(acct_server):
    r = run_client(acct_server.port, "--name", "alice", "--password-stdin", input="\nhi\n")
    assert r.returncode == 2 and "empty" in r.stderr


def test_listen_json_shows_the_account_and_guest_messages(acct_server, peers):
    proc = subprocess.Popen([sys.executable, str(CLIENT), "--host", "127.0.0.1", "--port",
                             str(acct_server.port), "--name", "alice", "--password-stdin",
                             "--listen", "--json"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=client_env(), cwd=ROOT)
    try:
        proc.stdin.write(PW + "\n")
        proc.stdin.close()
        welcome = json.loads(proc.stdout.readline())
        assert welcome["type"] == "welcome" and "token" not in welcome
        assert welcome["account"]["name"] == "alice" and welcome["auth"] == "optional"
        bob = peers(acct_server.port, "bob")
        bob.say_all(["hi from a guest"])
        while True:
            frame = json.loads(proc.stdout.readline())
            if frame.get("type") == "message":
                break
        assert frame["from"] == "bob" and frame["guest"] is True
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


# --- interactive --------------------------------------------------------------------------
def _ready(tmux) -> None:
    tmux.wait_text("Type /help for commands.")
    tmux.wait_screen(lambda s: s[-1].startswith(PROMPT.rstrip()), what="the prompt")
    tmux.wait_reading()


def test_login_prompt_does_not_echo_then_sessions_guests_and_logout(tmux, acct_server, peers,
                                                                   mode, request):
    bob = peers(acct_server.port, "bob")
    tmux.start(client_argv(acct_server.port, "--name", "alice", "--login", *mode))
    tmux.wait_text("Password for alice:")
    tmux.enter(PW)
    _ready(tmux)
    screen = tmux.screen()
    assert PW not in tmux.text(), screen                        # never echoed
    assert lines_with(screen, "*** connected as alice (logged in). 2 online: alice, bob (guest)")

    # a guest's message is marked; the half-typed line survives it
    tmux.type("half typed")
    tmux.wait_screen(lambda s: s[-1].endswith("half typed"), what="the typed text")
    bob.say_all(["hi from a guest"])
    tmux.wait_screen(lambda s: any(line.endswith("bob (guest): hi from a guest") for line in s)
                     and s[-1] == PROMPT + "half typed", what="the guest's message, then the prompt")
    tmux.keys("C-u")
    tmux.wait_screen(lambda s: s[-1] == PROMPT.rstrip(), what="an empty prompt")

    tmux.enter("/sessions")
    screen = tmux.wait_text("this device")
    sid = logins(acct_server, "alice")[0].id
    row = [line for line in screen if line.strip().startswith(sid)]
    assert row and "this device" in row[0], screen
    assert lines_with(screen, "id") and any("logged in" in line and "last seen" in line
                                           for line in screen)
    tmux.save(artifact_name(request))

    tmux.enter("/logout")
    assert tmux.wait_dead() == 0
    assert logins(acct_server, "alice") == []                    # the login is gone
    assert PW not in tmux.text()


def test_a_guest_told_the_name_is_registered_is_asked_for_the_password(tmux, acct_server,
                                                                      request):
    tmux.start(client_argv(acct_server.port, "--name", "alice", *MODES["toolkit"]))
    tmux.wait_text("This name is registered: enter its password")
    tmux.wait_text("Password for alice:")
    tmux.enter("wrong password")
    tmux.wait_text("Wrong name or password.")
    tmux.wait_screen(lambda s: s[-1] == "Password for alice:", what="asked again")
    tmux.enter(PW)
    _ready(tmux)
    assert "(logged in)" in tmux.text()
    assert PW not in tmux.text() and "wrong password" not in tmux.text()
    tmux.save(artifact_name(request))


def test_register_asks_twice_without_echo_and_keeps_the_name(tmux, acct_server, peers, request):
    alice = peers(acct_server.port, "alice", password=PW)           # an account online
    tmux.start(client_argv(acct_server.port, "--name", "carol", "--plain"))
    _ready(tmux)
    assert "*** connected as carol (as a guest: /register keeps the name)" in tmux.text()
    tmux.enter("/register")
    tmux.wait_text("New password:")
    tmux.enter("short")
    tmux.wait_text("That password won't do: a password needs at least 8 characters.")
    tmux.wait_screen(lambda s: s[-1] == "New password:", what="asked again")
    tmux.enter("carol's long secret")
    tmux.wait_text("Again, to be sure:")
    tmux.enter("carol's long secret")
    tmux.wait_text("the name carol is yours now")
    assert "long secret" not in tmux.text()
    acc = poll(lambda: acct_server.server.store.account("carol"), what="carol's account")
    assert acc.name == "carol"
    # alice (an account) sees carol's messages unmarked from now on
    tmux.enter("now an account")
    assert not alice.wait_message("now an account", "carol").guest
    tmux.save(artifact_name(request))


def test_logged_out_from_another_device(tmux, acct_server, request):
    tmux.start(client_argv(acct_server.port, "--name", "alice", "--login", "--plain"))
    tmux.wait_text("Password for alice:")
    tmux.enter(PW)
    _ready(tmux)
    phone = Peer(acct_server.port, "alice", password=PW, device="phone")
    try:
        label = phone.session.revoke(others=True)
        phone.wait_for(lambda e: isinstance(e, p.Ack) and e.label == label, what="the ack")
        tmux.wait_text("*** logged out: this session was logged out from another session")
        assert "reconnecting" not in tmux.text()
        tmux.enter("/exit")
        assert tmux.wait_dead() == 3
        tmux.save(artifact_name(request))
    finally:
        phone.close()
