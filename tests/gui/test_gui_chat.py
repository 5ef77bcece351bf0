"""Chatting in the desktop client: connect, send, receive, users, commands, scrolling."""
import json

from gui_helpers import invoke_wm_close, press, screenshot, type_text, wait_joined, wait_until

from parley import protocol as p


def test_connects_with_a_name_and_sends_with_enter(gui, server, connect, private_config):
    host, port = server.address
    bob = connect("bob")
    app = gui("--host", host, "--port", str(port), "--name", "alice")
    wait_joined(app)
    assert app.status.text == f"Connected to {host}:{port} as alice"
    assert app.status.level == "ok"
    assert app.root.title() == f"Parley \u2014 alice @ {host}:{port}"
    assert "Welcome, alice!" in app.chat.messages_text()
    bob.expect("join", name="alice")

    type_text(app.input.text, "Hello Bob!")
    press(app.input.text, "Return")
    assert app.input.get() == ""                       # Enter sent it
    got = bob.expect("message", sender="alice")
    assert got.text == "Hello Bob!" and got.kind == "say"
    wait_until(app, lambda: not app.pending and "Hello Bob!" in app.chat.messages_text(),
               what="my message confirmed by the server")
    assert app.chat.messages_text().count("Hello Bob!") == 1
    assert "Hello Bob!" not in app.chat.pending_text()

    # the connection is remembered for the next start
    saved = json.loads((private_config / "parley" / "gui.json").read_text())
    assert saved == {"name": "alice", "host": host, "port": port, "theme": "dark", "tls": "off"}


def test_the_dialog_is_prefilled_from_last_use_and_connects_on_enter(gui, server, private_config):
    host, port = server.address
    (private_config / "parley").mkdir(parents=True)
    (private_config / "parley" / "gui.json").write_text(
        json.dumps({"name": "zoe", "host": host, "port": port}))
    app = gui()                                        # no flags: nothing automatic
    assert app.card.visible and app.session is None
    assert (app.card.name_var.get(), app.card.host_var.get(), app.card.port_var.get()) == (
        "zoe", host, str(port))
    press(app.card.name_entry, "Return")
    wait_joined(app)
    assert app.me == "zoe"


def test_receives_messages_mentions_and_user_list_changes(gui, server, connect):
    host, port = server.address
    bob = connect("bob")
    app = gui("--port", str(port), "--name", "alice")
    wait_joined(app)
    assert app.members.names == ["alice", "bob"]
    assert app.members.title.cget("text") == "MEMBERS \u2014 2"

    bob.send(p.Say(text="hi @alice, the docs are at https://example.com/docs"))
    bob.send(p.Me(text="waves"))
    wait_until(app, lambda: "waves" in app.chat.messages_text(), what="bob's messages")
    text = app.chat.messages_text()
    assert "bob\n" in text and "hi @alice, the docs are at https://example.com/docs" in text
    assert app.chat.tagged_text("mword") == ["@alice"]
    assert app.chat.tagged_text("url") == ["https://example.com/docs"]
    assert any("the docs" in t for t in app.chat.tagged_text("mention"))
    assert any("waves" in t for t in app.chat.tagged_text("action"))

    carol = connect("carol")
    wait_until(app, lambda: app.members.names == ["alice", "bob", "carol"],
               what="carol in the user list")
    assert "\u2192 carol joined" in app.chat.messages_text()
    assert app.members.title.cget("text") == "MEMBERS \u2014 3"
    carol.send(p.Bye(reason="quit"))
    wait_until(app, lambda: app.members.names == ["alice", "bob"], what="carol gone")
    assert "\u2190 carol left (quit)" in app.chat.messages_text()
    assert any("carol left" in t for t in app.chat.tagged_text("notice"))


def test_commands_work_locally_and_unknown_ones_are_never_sent(gui, server, connect):
    host, port = server.address
    bob = connect("bob")
    app = gui("--port", str(port), "--name", "alice")
    wait_joined(app)
    t = app.input.text

    type_text(t, "/help")
    press(t, "Return")
    assert "/users" in app.chat.messages_text() and "Shift+Enter" in app.chat.messages_text()

    type_text(t, "/users")
    press(t, "Return")
    assert "2 online: alice, bob" in app.chat.messages_text()

    type_text(t, "/nick bobby")
    press(t, "Return")
    assert "Unknown command /nick" in app.chat.messages_text()

    type_text(t, "/me waves")
    press(t, "Return")
    got = bob.expect("message", sender="alice")
    assert (got.kind, got.text) == ("me", "waves")     # /nick was never sent
    wait_until(app, lambda: not app.pending, what="the action confirmed")
    assert "alice waves" in app.chat.messages_text()

    # Shift+Enter makes a new line, Enter sends both lines as one message
    type_text(t, "line one")
    press(t, "Return", shift=True)
    type_text(t, "line two")
    assert app.input.get() == "line one\nline two"
    wait_until(app, lambda: int(t.cget("height")) == 2, what="the input box to grow")
    press(t, "Return")
    assert bob.expect("message", sender="alice").text == "line one\nline two"

    # Up recalls what was sent, Down goes back to the draft
    type_text(t, "draft")
    press(t, "Up")
    assert app.input.get() == "line one\nline two"
    press(t, "Down")
    assert app.input.get() == "draft"


def test_slash_exit_and_closing_the_window_disconnect_cleanly(gui, server, connect):
    host, port = server.address
    bob = connect("bob")
    app = gui("--port", str(port), "--name", "alice")
    wait_joined(app)
    type_text(app.input.text, "/exit")
    press(app.input.text, "Return")
    wait_until(app, lambda: app.closed, what="the window to close")
    assert bob.expect("leave", name="alice").reason == "quit"

    again = gui("--port", str(port), "--name", "alice")
    wait_joined(again)
    bob.expect("join", name="alice")
    invoke_wm_close(again)
    assert again.closed
    assert bob.expect("leave", name="alice").reason == "quit"


def test_auto_scroll_stops_while_scrolled_up_and_resumes(gui, make_server, connect):
    srv = make_server(rate=100000, burst=100000)
    bob = connect("bob", srv=srv)
    app = gui("--port", str(srv.address[1]), "--name", "alice")
    wait_joined(app)
    bob.send(b"".join(p.encode(p.Say(text=f"filler {i}")) for i in range(80)))
    wait_until(app, lambda: "filler 79" in app.chat.messages_text(), what="the filler")
    wait_until(app, app.chat.at_bottom, what="the view to follow the new messages")
    assert app.chat.indicator_text is None

    app.chat._scrollbar("moveto", "0.0")
    wait_until(app, lambda: not app.chat.follow.following, what="follow mode off")
    top = app.chat.text.index("@0,0")
    bob.send(p.Say(text="news 1"))
    bob.send(p.Say(text="news 2"))
    wait_until(app, lambda: app.chat.indicator_text == "\u2193  2 new messages",
               what="the new-messages indicator")
    assert app.chat.text.index("@0,0") == top          # the view did not move
    assert app.chat.indicator.winfo_ismapped()
    screenshot(app, "gui-new-messages-indicator")

    app.chat.indicator.invoke()                         # click it: back to the bottom
    wait_until(app, app.chat.at_bottom, what="the view at the bottom")
    assert app.chat.indicator_text is None and app.chat.follow.following

    # scrolling to the bottom by hand also resumes following
    app.chat._scrollbar("moveto", "0.0")
    bob.send(p.Say(text="news 3"))
    wait_until(app, lambda: app.chat.indicator_text is not None, what="the indicator again")
    app.chat._scrollbar("moveto", "1.0")
    wait_until(app, lambda: app.chat.indicator_text is None, what="the indicator to go")
    bob.send(p.Say(text="news 4"))
    wait_until(app, lambda: "news 4" in app.chat.messages_text(), what="news 4")
    wait_until(app, app.chat.at_bottom, what="following again")


def test_the_conversation_is_read_only_but_selectable(gui, server, connect):
    host, port = server.address
    bob = connect("bob")
    app = gui("--port", str(port), "--name", "alice")
    wait_joined(app)
    bob.send(p.Say(text="copy https://example.com/x please"))
    wait_until(app, lambda: "please" in app.chat.messages_text(), what="the message")
    t = app.chat.text
    assert str(t.cget("state")) == "disabled"
    before = app.chat.content()
    t.focus_force()
    t.update()
    t.event_generate("<KeyPress-x>")              # typing goes to the input box instead
    t.update()
    assert app.chat.content() == before
    assert app.input.get() == "x"
    start, end = t.tag_ranges("url")
    t.tag_add("sel", start, end)
    app.chat.copy()
    assert app.root.clipboard_get() == "https://example.com/x"


def test_the_theme_can_be_switched_and_is_remembered(gui, server, private_config):
    host, port = server.address
    app = gui("--port", str(port), "--name", "alice", "--theme", "light")
    wait_joined(app)
    assert app.theme.palette.name == "light"
    assert str(app.chat.text.cget("background")) == app.theme.palette.surface
    app.status.theme_button.invoke()
    assert app.theme.palette.name == "dark"
    assert str(app.chat.text.cget("background")) == app.theme.palette.surface
    saved = json.loads((private_config / "parley" / "gui.json").read_text())
    assert saved["theme"] == "dark"


def test_right_click_on_a_link_offers_to_copy_it(gui, server, connect):
    host, port = server.address
    bob = connect("bob")
    app = gui("--port", str(port), "--name", "alice")
    wait_joined(app)
    bob.send(p.Say(text="see www.python.org for more"))
    wait_until(app, lambda: "for more" in app.chat.messages_text(), what="the link")
    t = app.chat.text
    t.see("end")
    app.root.update()
    start = t.tag_ranges("url")[0]
    x, y, w, h = t.bbox(f"{start}+2c")
    t.event_generate("<Button-3>", x=x + 1, y=y + h // 2, rootx=t.winfo_rootx() + x + 1,
                     rooty=t.winfo_rooty() + y + h // 2)
    app.root.update()
    menu = app.chat.menu
    labels = [menu.entrycget(i, "label") for i in range(menu.index("end") + 1)
              if menu.type(i) == "command"]
    assert labels == ["Copy", "Copy link", "Open link in browser", "Select all", "Jump to latest"]
    menu.invoke(labels.index("Copy link"))
    menu.unpost()
    assert app.root.clipboard_get() == "www.python.org"
