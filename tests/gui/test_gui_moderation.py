"""Moderation in the desktop client, against the real server: the member
list's context menu (right-click, and Shift+F10 from the keyboard) mutes and
kicks with a reason asked in a small card; a message's context menu removes it
and it is redrawn as "message removed"; mod frames are system lines; the menus
and the card follow the theme.

Screenshots go to tests/gui/artifacts (with PARLEY_DOCS_SCREENSHOTS=1 the kick
card is copied to docs/screenshots/gui-moderation.png)."""
from __future__ import annotations

import queue
import secrets
import time

import pytest

from gui_helpers import click, press, screenshot, to_docs, type_text, wait_joined, wait_until

from parley import protocol as p
from parley.client.session import RemovedFromRoom, Session
from parley.server import accounts

PW = "correct horse"


@pytest.fixture
def mod_server(make_server):
    srv = make_server()
    srv.store.create_account("owner", secrets.token_hex(8),
                             accounts.hash_password(PW, n=2 ** 11, r=4, p=1))
    return srv


@pytest.fixture
def device():
    made = []

    def make(port, name, **kw):
        s = Session("127.0.0.1", port, name, client="tests", **kw).start()
        made.append(s)
        assert s.registered.wait(10), f"{name} was not welcomed"
        return s

    yield make
    for s in made:
        s.close()


def next_of(session, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = session.events.get(timeout=0.2)
        except queue.Empty:
            continue
        if pred(ev):
            return ev
    raise AssertionError("no such event")


def logged_in_owner_in_lab(gui, port):
    app = gui("--port", str(port))
    type_text(app.card.name_entry, "owner")
    type_text(app.card.password_entry, PW)
    press(app.card.password_entry, "Return")
    wait_joined(app)
    app.join_room("#lab")                       # made here: owner owns #lab
    wait_until(app, lambda: app.current == "#lab" and app.session.conversation("#lab"),
               what="owner in #lab")
    return app


def menu_labels(menu):
    end = menu.index("end")
    return [menu.entrycget(i, "label") if menu.type(i) != "separator" else "-"
            for i in range(end + 1)] if end is not None else []


def menu_index(menu, label):
    return menu_labels(menu).index(label)


@pytest.fixture
def no_popup(monkeypatch):
    """Menus record where they would pop up instead of grabbing the pointer."""
    import tkinter as tk
    shown = []
    monkeypatch.setattr(tk.Menu, "tk_popup", lambda self, x, y, entry="": shown.append(
        (self, x, y)))
    return shown


def test_member_menu_mutes_and_kicks_with_a_reason(gui, mod_server, device, no_popup):
    port = mod_server.address[1]
    app = logged_in_owner_in_lab(gui, port)
    bob = device(port, "bob")
    label = bob.join("#lab")
    next_of(bob, lambda e: isinstance(e, p.RoomInfo) and e.label == label)
    wait_until(app, lambda: "bob" in app.members.names, what="bob in the member list")
    members = app.members

    # the keyboard: focus the list, Down to bob's row, Shift+F10 opens its menu
    members.canvas.focus_force()
    target = members.names.index("bob")
    for _ in range(target + 1):
        press(members.canvas, "Down")
    press(members.canvas, "F10", shift=True)
    assert no_popup and no_popup[-1][0] is members.menu
    labels = menu_labels(members.menu)
    for want in ("Message", "Kick\u2026", "Mute", "Unmute", "Ban\u2026", "Unban",
                 "Make moderator", "Remove moderator", "Invite to room"):
        assert want in labels, labels
    # Mute ▸ For 5 minutes… asks for a reason, then mutes
    sub = members.nametowidget(members.menu.entrycget(menu_index(members.menu, "Mute"), "menu"))
    assert "For 1 hour\u2026" in menu_labels(sub) and "Until unmuted\u2026" in menu_labels(sub)
    sub.invoke(menu_index(sub, "For 5 minutes\u2026"))
    card = app.reason_card
    wait_until(app, lambda: card.visible, what="the reason card")
    assert card.title.cget("text") == "Mute bob in #lab for 5m"
    type_text(card.entry, "calm down")
    press(card.entry, "Return")
    wait_until(app, lambda: "owner muted bob in #lab for 5m: calm down" in app.chat.content(),
               what="the mute's system line")
    assert not card.visible
    said = bob.send("but", "#lab")
    err = next_of(bob, lambda e: isinstance(e, p.Error) and e.label == said)
    assert err.code == p.MUTED

    # the mouse: right-click on bob's row, Kick…
    x, y = members.row_center("bob")
    click(members.canvas, x, y, button=3)
    members.menu.invoke(menu_index(members.menu, "Kick\u2026"))
    wait_until(app, lambda: card.visible, what="the reason card")
    assert card.title.cget("text") == "Kick bob from #lab"
    type_text(card.entry, "enough")
    app.root.update()
    shot = screenshot(app, "gui-moderation-kick-card")
    to_docs(shot, "screenshots/gui-moderation.png")
    press(card.entry, "Return")
    wait_until(app, lambda: "owner kicked bob in #lab: enough" in app.chat.content(),
               what="the kick's system line")
    out = next_of(bob, lambda e: isinstance(e, RemovedFromRoom))
    assert (out.room, out.reason) == ("#lab", "enough")
    wait_until(app, lambda: "bob" not in app.members.names, what="bob out of the list")
    assert "owner kicked bob" in "".join(app.chat.tagged_text("system"))
    screenshot(app, "gui-moderation-kicked")

    # nobody but me: my own row has no moderation items
    members.fill_menu("owner")
    assert "Kick\u2026" not in menu_labels(members.menu)


def test_message_menu_removes_a_message_and_it_is_redrawn(gui, mod_server, device, no_popup):
    port = mod_server.address[1]
    app = logged_in_owner_in_lab(gui, port)
    bob = device(port, "bob")
    label = bob.join("#lab")
    next_of(bob, lambda e: isinstance(e, p.RoomInfo) and e.label == label)
    bob.send("buy cheap watches now", "#lab")
    bob.send("and a second line from bob", "#lab")
    chat = app.chat
    wait_until(app, lambda: "and a second line from bob" in chat.content(),
               what="bob's messages")
    t = chat.text
    index = t.search("buy cheap watches", "1.0")
    t.see(index)
    app.root.update()
    x, y, w, h = t.bbox(index)
    click(t, x + 2, y + h // 2, button=3)
    labels = menu_labels(chat.menu)
    assert "Remove message\u2026" in labels, labels
    chat.menu.invoke(menu_index(chat.menu, "Remove message\u2026"))
    card = app.reason_card
    wait_until(app, lambda: card.visible, what="the reason card")
    type_text(card.entry, "spam")
    press(card.entry, "Return")
    wait_until(app, lambda: "buy cheap watches" not in chat.content(), what="the redraw")
    text = chat.content()
    assert "message removed" in text and "and a second line from bob" in text
    assert chat.tagged_text("removed") == ["message removed\n"]
    assert "owner removed a message" in text and ": spam" in text
    shot = screenshot(app, "gui-moderation-removed")
    # the light theme: the menus and the card follow it
    app.set_theme("light")
    palette = app.theme.palette
    assert str(chat.menu.cget("background")) == palette.field
    assert str(app.members.menu.cget("background")) == palette.field
    app.remove_message(1)
    wait_until(app, lambda: card.visible, what="the reason card")
    assert str(t.tag_cget("removed", "foreground")) == palette.text_faint
    screenshot(app, "gui-moderation-light")
    card.cancel()
    assert not card.visible and shot.exists()
    # a removed message is no longer offered for removal
    index = t.search("message removed", "1.0")
    assert chat.message_at(index) is None


def test_member_menu_offers_moderation_by_role(gui, mod_server, device, no_popup):
    """An account that moderates nothing sees Message and Mention only; made a
    moderator of #lab (live, by its owner) it gets the moderation items there,
    but not the owner's (Make / Remove moderator), and nothing in #general."""
    port = mod_server.address[1]
    mod_server.store.create_account("amy", secrets.token_hex(8),
                                    accounts.hash_password(PW, n=2 ** 11, r=4, p=1))
    owner = device(port, "owner", password=PW)
    label = owner.join("#lab")
    next_of(owner, lambda e: isinstance(e, p.RoomInfo) and e.label == label)
    app = gui("--port", str(port))
    type_text(app.card.name_entry, "amy")
    type_text(app.card.password_entry, PW)
    press(app.card.password_entry, "Return")
    wait_joined(app)
    wait_until(app, lambda: app.session.is_account, what="amy logged in")
    app.join_room("#lab")
    wait_until(app, lambda: app.current == "#lab" and app.session.conversation("#lab")
               and "owner" in app.members.names, what="amy in #lab")
    members = app.members

    def offered():
        x, y = members.row_center("owner")
        click(members.canvas, x, y, button=3)
        assert no_popup and no_popup[-1][0] is members.menu
        return menu_labels(members.menu)

    assert offered() == ["Message", "Mention"]
    owner.moderate("op", room="#lab", target="amy")
    wait_until(app, lambda: app.session.conversation("#lab").role == "mod", what="amy opped")
    labels = offered()
    assert "Kick\u2026" in labels and "Ban\u2026" in labels and "Invite to room" in labels
    assert "Make moderator" not in labels and "Remove moderator" not in labels
    app.switch("#general")
    wait_until(app, lambda: app.current == "#general" and "owner" in app.members.names,
               what="#general shown")
    assert offered() == ["Message", "Mention"]
