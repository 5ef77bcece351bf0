"""Moderation in the terminal client, against the real server: scripts that
/delete, /mute (with a duration) and /kick, and /audit as an admin; the
interactive client on a pty (tmux) showing mod frames as system lines, a
removed message as "[message removed]", the muted error as one line and a
kick out of the current room; --json passing mod frames through."""
from __future__ import annotations

import json

import pytest

from cli_helpers import (FAST, PROMPT, ServerControl, add_account, artifact_name, client_argv,
                         p, run_client)
from parley.client.session import RemovedFromRoom

PW = "correct horse"


@pytest.fixture
def lab(peers):
    """A server with the accounts owner and root (admin); #lab made by owner (so
    owner owns it), and bob (a guest) in it."""
    ctl = ServerControl(FAST).start()
    add_account(ctl.server, "owner", PW)
    add_account(ctl.server, "root", PW, admin=True)
    made = run_client(ctl.port, "--name", "owner", "--password-stdin", "--room", "#lab",
                      input=f"{PW}\n")
    assert made.returncode == 0, made.stderr
    bob = peers(ctl.port, "bob")
    bob.join_room("#lab")
    yield ctl, bob
    ctl.stop(grace=0.5)


def as_owner(ctl, *lines: str, name: str = "owner"):
    return run_client(ctl.port, "--name", name, "--password-stdin", "--room", "#lab",
                      input=PW + "\n" + "".join(line + "\n" for line in lines))


def test_script_deletes_mutes_kicks_and_the_target_sees_it(lab):
    ctl, bob = lab
    label = bob.session.send("something rude", "#lab")
    rude = bob.wait_for(lambda e: isinstance(e, p.Message) and e.label == label
                        or isinstance(e, p.Message) and e.text == "something rude")
    r = as_owner(ctl, f"/delete {rude.id} rude", "/mute bob 10m calm down")
    assert r.returncode == 0, r.stderr
    gone = bob.wait_for(lambda e: isinstance(e, p.Moderation) and e.action == "delete")
    assert (gone.message, gone.by, gone.reason) == (rude.id, "owner", "rude")
    assert bob.session.is_removed(rude.id)
    muted = bob.wait_for(lambda e: isinstance(e, p.Moderation) and e.action == "mute")
    assert (muted.target, muted.reason) == ("bob", "calm down")
    assert muted.until is not None
    # the target's message is refused with the muted error
    label = bob.session.send("can I speak?", "#lab")
    err = bob.wait_for(lambda e: isinstance(e, p.Error) and e.label == label)
    assert err.code == p.MUTED and "until" in err.message and "calm down" in err.message
    # kicked: out of the room
    r = as_owner(ctl, "/kick bob enough")
    assert r.returncode == 0, r.stderr
    out = bob.wait_for(lambda e: isinstance(e, RemovedFromRoom))
    assert (out.room, out.action, out.reason) == ("#lab", "kick", "enough")
    assert bob.session.conversation("#lab") is None


def test_script_refused_action_is_one_line_and_exit_1(lab):
    ctl, bob = lab
    add_account(ctl.server, "mallory", PW)
    r = as_owner(ctl, "/kick bob", name="mallory")          # not a moderator of #lab
    assert r.returncode == 1
    refusals = [ln for ln in r.stderr.splitlines() if "refused" in ln]
    assert len(refusals) == 1 and "(forbidden)" in refusals[0], r.stderr
    assert bob.session.conversation("#lab") is not None


def test_audit_as_an_admin_is_a_table(lab):
    ctl, bob = lab
    assert as_owner(ctl, "/mute bob 2h spam", "/lock").returncode == 0
    r = run_client(ctl.port, "--name", "root", "--password-stdin", input=f"{PW}\n/audit\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = [i for i, ln in enumerate(lines) if ln.split()[:4] == ["id", "when", "by", "action"]]
    assert head, r.stdout
    rows = [ln.split() for ln in lines[head[0] + 1:]]
    assert rows[0][2:6] == ["owner", "lock", "#lab", "-"]          # newest first
    assert rows[1][2:6] == ["owner", "mute", "#lab", "bob"] and rows[1][-1] == "spam"
    # not an admin: refused
    r = as_owner(ctl, "/audit")
    assert r.returncode == 1 and "(forbidden)" in r.stderr


def test_listen_json_passes_mod_frames_through(lab, spawn):
    ctl, bob = lab
    listener = spawn(ctl.port, "--name", "carol", "--listen", "--json", "--room", "#lab")
    listener.wait_text('"type": "room"')
    assert as_owner(ctl, "/mute bob 30s hush").returncode == 0
    line = listener.wait_text('"type": "mod"')
    frame = json.loads(line)
    assert (frame["action"], frame["by"], frame["target"], frame["room"], frame["reason"]) == (
        "mute", "owner", "bob", "#lab", "hush")


# --- interactive, on a pty ------------------------------------------------------------------
def _ready(tmux, prompt: str = PROMPT) -> None:
    tmux.wait_text("Type /help for")            # (a long banner wraps)
    tmux.wait_screen(lambda s: s[-1].startswith(prompt.rstrip()), what="the prompt")
    tmux.wait_reading()


def test_interactive_moderator_sees_system_lines_and_removed_messages(tmux, lab, request):
    ctl, bob = lab
    tmux.start(client_argv(ctl.port, "--name", "owner", "--login", "--room", "#lab", "--plain"))
    tmux.wait_text("Password for owner:")
    tmux.enter(PW)
    _ready(tmux, "#lab> ")
    bob.session.send("buy cheap watches", "#lab")
    spam = bob.wait_message("buy cheap watches", "bob")
    tmux.wait_text("buy cheap watches")
    tmux.enter("/mute bob 10m calm down")
    tmux.wait_text("* owner muted bob in #lab for 10m: calm down")
    tmux.wait_text("done: muted bob in #lab for 10m")
    tmux.enter(f"/delete {spam.id} spam")
    tmux.wait_text(f"* owner removed a message (id {spam.id}): spam")
    tmux.enter("/switch #lab")                       # the recent history, from the server
    screen = tmux.wait_text("[message removed]")
    recent = screen[max(i for i, ln in enumerate(screen) if "/switch #lab" in ln):]
    assert any(ln.endswith(": [message removed]") and " bob" in ln for ln in recent), screen
    assert not any("cheap watches" in ln for ln in recent), screen
    tmux.enter("/lock")
    tmux.wait_text("* owner locked the topic of #lab")
    tmux.enter("/audit")
    tmux.wait_text("only server admins read the audit log (forbidden)")
    tmux.save(artifact_name(request))


def test_interactive_target_is_muted_then_kicked_out_of_the_room(tmux, lab, peers, request):
    ctl, _ = lab
    owner = peers(ctl.port, "owner", password=PW)
    tmux.start(client_argv(ctl.port, "--name", "dave", "--room", "#lab", "--plain"))
    _ready(tmux, "#lab> ")
    owner.wait_for(lambda e: isinstance(e, p.Join) and e.name == "dave")
    owner.session.moderate("mute", room="#lab", target="dave", duration=600, reason="calm down")
    tmux.wait_text("* owner muted dave in #lab for 10m: calm down")
    tmux.enter("but why")
    screen = tmux.wait_text("(muted)")
    err = [ln for ln in screen if "(muted)" in ln]
    assert len(err) == 1 and err[0].startswith("! you are muted in #lab until "), screen
    owner.session.moderate("kick", room="#lab", target="dave", reason="enough")
    tmux.wait_text("owner kicked you from #lab: enough")
    tmux.wait_text("now in #general")
    tmux.enter("back in general")                   # now goes to #general
    m = owner.wait_message("back in general", "dave")
    assert m.room == "#general"
    tmux.wait_screen(lambda s: s[-1].startswith("#general>"), what="the #general prompt")
    tmux.save(artifact_name(request))
