"""Accounts in the desktop client: the connect card's password field and
"create an account" box, refusals explained in the card, the account menu
(register this name, change password, sessions with log out), guests marked in
the member list, a device logged out from elsewhere sent back to the card.

Screenshots of the login card and of the sessions card are saved under
tests/gui/artifacts (with PARLEY_DOCS_SCREENSHOTS=1 the login card is copied to
docs/screenshots/gui-login.png)."""
from __future__ import annotations

import secrets

import pytest

from gui_helpers import press, screenshot, to_docs, type_text, wait_joined, wait_until

from parley.client.session import LoggedOut, Session
from parley.server import accounts

PW = "correct horse"


@pytest.fixture
def acct_server(make_server):
    srv = make_server()
    srv.store.create_account("alice", secrets.token_hex(8),
                             accounts.hash_password(PW, n=2 ** 11, r=4, p=1))
    return srv


@pytest.fixture
def device():
    """``device(port, name, password)``: another device (a Session), welcomed."""
    made = []

    def make(port, name, password=None, **kw):
        s = Session("127.0.0.1", port, name, client="tests", password=password, **kw).start()
        made.append(s)
        assert s.registered.wait(10), f"{name} was not welcomed"
        return s

    yield make
    for s in made:
        s.close()


def events(session, cls, timeout=10.0):
    import queue
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = session.events.get(timeout=0.2)
        except queue.Empty:
            continue
        if isinstance(ev, cls):
            return ev
    raise AssertionError(f"no {cls.__name__}")


def test_login_card_password_and_account_menu(gui, acct_server, device):
    port = acct_server.address[1]
    bob = device(port, "bob")                                   # a guest
    app = gui("--port", str(port))
    card = app.card
    assert str(card.password_entry.cget("show")) == "\u2022"    # never shown as typed
    type_text(card.name_entry, "alice")
    type_text(card.password_entry, PW)
    app.root.update()
    to_docs(screenshot(app, "gui-login"), "screenshots/gui-login.png")
    press(card.password_entry, "Return")
    wait_joined(app)
    assert card.password_var.get() == ""                        # the window keeps none
    s = app.session
    assert s.is_account and s.account["name"] == "alice"
    assert "account" in str(app.account_label.cget("text"))
    # bob is a guest, alice an account: bob is marked in the member list
    wait_until(app, lambda: "bob" in app.members.panel.guests, what="bob marked as a guest")
    marks = [app.members.canvas.itemcget(i, "text")
             for i in app.members.canvas.find_withtag("mark")]
    assert "guest" in marks and "you" in marks, marks
    app.account_menu_popup()
    labels = [app.account_menu.entrycget(i, "label") for i in range(app.account_menu.index("end") + 1)
              if app.account_menu.type(i) == "command"]
    assert labels == ["Sessions\u2026", "Change password\u2026", "Log out"]
    bob.close()


def test_a_registered_name_asks_for_its_password_in_the_card(gui, acct_server):
    port = acct_server.address[1]
    app = gui("--port", str(port), "--name", "alice")             # as a guest
    wait_until(app, lambda: app.card.level == "error", what="the name to be refused")
    assert "registered: enter its password" in app.card.message.cget("text")
    assert app.root.focus_get() is app.card.password_entry
    session = app.session
    type_text(app.card.password_entry, "not it at all")
    press(app.card.password_entry, "Return")
    wait_until(app, lambda: "Wrong name or password" in app.card.message.cget("text"),
               what="login_failed in the card")
    type_text(app.card.password_entry, PW)
    press(app.card.password_entry, "Return")
    wait_joined(app)
    assert app.session is session and session.is_account          # the same connection


def test_create_an_account_from_the_card(gui, acct_server):
    port = acct_server.address[1]
    app = gui("--port", str(port))
    app.card.name_var.set("carol")
    app.card.password_var.set("carol's long secret")
    app.card.register_var.set(True)
    app.card.connect_button.invoke()
    wait_joined(app)
    assert app.session.is_account
    assert acct_server.store.account("carol") is not None


def test_sessions_card_lists_devices_and_logs_one_out(gui, acct_server, device):
    port = acct_server.address[1]
    phone = device(port, "alice", PW, device="phone")
    app = gui("--port", str(port))
    app.card.name_var.set("alice")
    app.card.password_var.set(PW)
    app.card.connect_button.invoke()
    wait_joined(app)
    app.submit("/sessions")
    card = app.sessions_card
    wait_until(app, lambda: len(card.tree.get_children()) == 2, what="two sessions listed")
    rows = {iid: card.tree.item(iid, "values") for iid in card.tree.get_children()}
    mine = app.session.session_id
    assert rows[mine][3] == "this device" and rows[mine][0].startswith("desktop on ")
    other = next(i for i in rows if i != mine)
    assert rows[other][0] == "phone" and rows[other][3] == "online"
    card.tree.selection_set(other)
    app.root.update()
    screenshot(app, "gui-sessions")
    card.revoke_button.invoke()
    out = events(phone, LoggedOut)
    assert "logged out" in out.message
    wait_until(app, lambda: list(card.tree.get_children()) == [mine],
               what="the list without the phone")
    assert card.message_text == "Logged out."


def test_register_this_name_as_a_guest(gui, acct_server):
    port = acct_server.address[1]
    app = gui("--port", str(port), "--name", "dave")
    wait_joined(app)
    assert "guest" in str(app.account_label.cget("text"))
    app.account_menu_popup()
    assert app.account_menu.entrycget(0, "label") == "Register this name\u2026"
    app.account_menu.invoke(0)
    pc = app.password_card
    assert pc.visible and not pc.old_entry.winfo_ismapped()
    type_text(pc.new_entry, "short")
    type_text(pc.again_entry, "short")
    press(pc.again_entry, "Return")
    assert "at least 8 characters" in pc.message_text
    pc.new_entry.delete(0, "end")
    pc.again_entry.delete(0, "end")
    type_text(pc.new_entry, "dave's long secret")
    type_text(pc.again_entry, "dave's long secret")
    press(pc.again_entry, "Return")
    wait_until(app, lambda: app.session.is_account, what="the account frame")
    wait_until(app, lambda: not pc.visible, what="the card to close")
    assert "account" in str(app.account_label.cget("text"))
    assert acct_server.store.account("dave") is not None


def test_logged_out_from_another_device_goes_back_to_the_card(gui, acct_server, device):
    port = acct_server.address[1]
    app = gui("--port", str(port))
    app.card.name_var.set("alice")
    app.card.password_var.set(PW)
    app.card.connect_button.invoke()
    wait_joined(app)
    phone = device(port, "alice", PW, device="phone")
    phone.revoke(others=True)
    wait_until(app, lambda: app.card.visible and "logged out" in app.card.message.cget("text"),
               what="the card to say so")
    assert app.root.focus_get() is app.card.password_entry
    assert app.session.logged_out
