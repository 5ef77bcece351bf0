"""Rooms and direct messages in the desktop client, against a real server:
the room dialog, unread badges, the unread line, DMs from the member list,
history on scrolling up, search, the topic, big rooms, slash commands."""
import re

from gui_helpers import (click, double_click, press, rooms_client, type_text, wait_joined,
                         wait_until)

from parley import protocol as p
from parley.client.gui.render import MARKER_TEXT


def _open(gui, srv, name="alice", *extra):
    app = gui("--port", str(srv.address[1]), "--name", name, *extra)
    wait_joined(app)
    app.input.text.focus_force()          # the window has the focus: reading marks read
    app.root.update()
    return app


def _keys(app):
    return [(r.kind, r.key) for r in app.convlist.rows if r.kind in ("room", "dm")]


def test_join_a_room_with_the_dialog(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", "#python", srv=srv)
    bob.request({"type": "topic", "room": "#python", "topic": "pip and friends"}, "ack")
    app = _open(gui, srv)
    assert _keys(app) == [("room", "#general")]
    assert app.current == "#general"

    x, y = app.convlist.add_button_center()          # the "+" of ROOMS
    click(app.convlist.canvas, x, y)
    d = app.dialog
    assert d.visible
    wait_until(app, lambda: "#python" in d.list_text(), what="the server's room list")
    assert "pip and friends" in d.list_text() and "1 member online" in d.list_text()

    d.var.set("bad name")                             # checked before asking the server
    d.join_button.invoke()
    assert "won\u2019t work" in d.message_text and d.visible
    assert app.current == "#general"

    d.entry.delete(0, "end")                          # typing filters the list
    type_text(d.entry, "pyt")
    assert d.list_text().startswith("#python")
    x, y = d.row_center("#python")                    # pick it from the list
    click(d.list, x, y)
    assert d.var.get() == "#python" and d.join_button.cget("text") == "Join"
    press(d.entry, "Return")
    wait_until(app, lambda: app.current == "#python", what="switched to #python")
    assert not d.visible
    assert _keys(app) == [("room", "#general"), ("room", "#python")]
    assert app.header.title.cget("text") == "python"
    assert app.header.topic_text == "pip and friends"
    wait_until(app, lambda: app.members.names == ["alice", "bob"], what="#python's members")
    bob.expect("join", name="alice", room="#python")

    # a new room: typed without '#', the button says Create
    app.open_room_dialog()
    type_text(d.entry, "retro")
    assert d.var.get() == "#retro" and d.join_button.cget("text") == "Create"
    press(d.entry, "Return")
    wait_until(app, lambda: app.current == "#retro", what="the new room")
    assert _keys(app) == [("room", "#general"), ("room", "#python"), ("room", "#retro")]
    assert app.header.topic_text == "Add a topic" and app.members.names == ["alice"]
    assert not app.errors


def test_badges_count_unread_and_switching_shows_the_unread_line(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", "#python", srv=srv)
    app = _open(gui, srv)
    app.submit("/join #python")
    wait_until(app, lambda: app.current == "#python", what="in #python")
    bob.send(p.Say(text="before you left", room="#python"))
    wait_until(app, lambda: "before you left" in app.chat.messages_text(), what="seen live")
    wait_until(app, lambda: app.session.conversation("#python").unread == 0, what="read")
    app.submit("/switch #general")
    assert app.current == "#general"

    bob.send(p.Say(text="first unread", room="#python"))
    wait_until(app, lambda: app.convlist.badge_of("#python") == "1", what="the badge")
    assert app.convlist.level_of("#python") == "unread"
    bob.send(p.Say(text="second unread", room="#python"))
    bob.send(p.Say(text="@alice have a look", room="#python"))
    wait_until(app, lambda: app.convlist.badge_of("#python") == "3", what="the badge at 3")
    assert app.convlist.level_of("#python") == "mention"       # the stronger badge
    assert app.root.title().startswith("(3!) Parley")
    assert app.convlist.badge_of("#general") == ""
    assert "first unread" not in app.chat.messages_text()       # not in #general's view

    x, y = app.convlist.row_center("#python")
    click(app.convlist.canvas, x, y)
    assert app.current == "#python"
    view = app.chat
    assert app.convlist.badge_of("#python") == ""               # being read
    assert view.marker_shown
    text = view.messages_text()
    assert text.index("before you left") < text.index(MARKER_TEXT) < text.index("first unread")
    assert text.index("first unread") < text.index("second unread") < text.index("have a look")
    # the window has the focus: the conversation is marked read (here and on the server)
    wait_until(app, lambda: app.session.conversation("#python").unread == 0, what="marked read")
    assert app.session.conversation("#python").read_id == view.newest_id
    assert app.root.title().startswith("Parley")

    # leaving and coming back: read, so no line any more
    app.submit("/switch #general")
    assert not view.marker_shown
    app.switch("#python")
    assert not app.chat.marker_shown

    # the sidebar's context menu: mark as read without opening it
    app.submit("/switch #general")
    bob.send(p.Say(text="one more", room="#python"))
    wait_until(app, lambda: app.convlist.badge_of("#python") == "1", what="a new badge")
    app.convlist.fill_menu("#python")
    menu = app.convlist.menu
    labels = [menu.entrycget(i, "label") for i in range(menu.index("end") + 1)
              if menu.type(i) == "command"]
    assert labels == ["Open", "Mark as read", "Leave #python"]
    menu.invoke(1)
    wait_until(app, lambda: app.convlist.badge_of("#python") == "", what="marked read")
    assert app.current == "#general"

    # a direct message shows up under DIRECT MESSAGES with its badge
    app.submit("/switch #general")
    bob.send(p.Say(text="psst", to="alice"))
    wait_until(app, lambda: ("dm", "@bob") in _keys(app), what="the DM in the sidebar")
    wait_until(app, lambda: app.convlist.badge_of("@bob") == "1", what="the DM badge")
    assert [r.label for r in app.convlist.rows if r.kind == "header"] == [
        "ROOMS", "DIRECT MESSAGES"]
    assert not app.errors


def test_a_direct_message_from_the_member_list(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", srv=srv)
    app = _open(gui, srv)
    wait_until(app, lambda: app.members.names == ["alice", "bob"], what="the members")
    x, y = app.members.row_center("bob")
    double_click(app.members.canvas, x, y)
    assert app.current == "@bob"
    assert app.header.title.cget("text") == "bob"
    assert app.header.topic_text == "Direct message \u00b7 online"
    assert app.members.names == ["alice", "bob"]
    assert ("dm", "@bob") in _keys(app)
    assert "Message bob" in app.input.placeholder.cget("text")

    type_text(app.input.text, "lunch?")
    press(app.input.text, "Return")
    got = bob.expect("message", sender="alice")
    assert (got.text, got.to, got.room) == ("lunch?", "bob", None)
    wait_until(app, lambda: not app.pending and "lunch?" in app.chat.messages_text(),
               what="my DM confirmed")
    bob.send(p.Say(text="sure, 12:30", to="alice"))
    wait_until(app, lambda: "sure, 12:30" in app.chat.messages_text(), what="bob's answer")
    app.switch("#general")
    assert "lunch?" not in app.chat.messages_text()

    # the context menu offers the same
    app.members.fill_menu("bob")
    menu = app.members.menu
    labels = [menu.entrycget(i, "label") for i in range(menu.index("end") + 1)]
    assert labels == ["Message", "Mention"]
    menu.invoke(0)
    assert app.current == "@bob"
    app.members.fill_menu("alice")                       # not to myself
    assert menu.entrycget(0, "state") == "disabled"
    assert not app.errors


def test_scrolling_to_the_top_loads_older_history_above_in_order(gui, make_server, connect):
    srv = make_server(rate=100000, burst=100000)
    bob = rooms_client(connect, "bob", srv=srv)
    for i in range(160):
        bob.send(p.Say(text=f"old {i:03d}"))
    for i in range(160):
        bob.expect("message", text=f"old {i:03d}")
    app = _open(gui, srv)
    view = app.chat
    wait_until(app, lambda: "old 159" in view.messages_text() and not app.pager.loading,
               what="the recent messages")
    shown = [int(n) for n in re.findall(r"old (\d{3})", view.messages_text())]
    assert shown == list(range(shown[0], 160)) and shown[0] > 20     # not everything yet

    # /history 20: twenty more, and the view goes up to them
    assert app.submit("/history 20")
    wait_until(app, lambda: f"old {shown[0] - 1:03d}" in view.messages_text()
               and not app.reveal, what="/history")
    app.root.update()
    top = view.text.get("@0,0", "@0,%d" % view.text.winfo_height())
    assert f"old {shown[0] - 20:03d}" in top

    for _ in range(10):
        if "old 000" in view.messages_text():
            break
        oldest = view.oldest_id
        before = [int(n) for n in re.findall(r"old (\d{3})", view.messages_text())]
        view._scrollbar("moveto", "0.0")                # the user drags to the top
        app.root.update()
        top_line = view.text.get("@0,0 linestart", "@0,0 lineend")
        wait_until(app, lambda: view.oldest_id != oldest or app.pager.at_beginning("#general"),
                   what="an older page")
        app.root.update()
        # inserted above without moving what the user is looking at
        assert view.text.get("@0,0 linestart", "@0,0 lineend") == top_line
        after = [int(n) for n in re.findall(r"old (\d{3})", view.messages_text())]
        assert after[-len(before):] == before and len(after) > len(before)
    numbers = [int(n) for n in re.findall(r"old (\d{3})", view.messages_text())]
    assert numbers == list(range(160))                  # all of them, once, in order
    view._scrollbar("moveto", "0.0")
    wait_until(app, lambda: view.messages_text().startswith(
        "This is the beginning of #general."), what="the beginning")
    assert view.entry_ids() == sorted(view.entry_ids())
    assert not app.errors


def test_search_shows_results_and_opens_their_conversation(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", "#ops", srv=srv)
    app = _open(gui, srv)
    app.submit("/join #ops")
    wait_until(app, lambda: app.current == "#ops", what="in #ops")
    bob.request({"type": "say", "text": "the deploy failed at step 3", "room": "#ops"}, "ack")
    for i in range(60):                       # push it out of view, then some more
        bob.request({"type": "say", "text": f"noise {i}", "room": "#ops"}, "ack")
    bob.request({"type": "say", "text": "deploy is green again"}, "ack")
    wait_until(app, lambda: app.convlist.badge_of("#general") == "1", what="the #general one")

    app.root.event_generate("<Control-f>")
    app.root.update()
    assert app.root.focus_get() is app.header.search
    type_text(app.header.search, "deploy")
    press(app.header.search, "Return")
    assert app.search_open
    wait_until(app, lambda: app.results.hits, what="the results")
    assert [h.key for h in app.results.hits] == ["#general", "#ops"]        # newest first
    assert app.results.summary.cget("text") == "2 results for \u201cdeploy\u201d"
    text = app.results.results_text()
    assert text.index("deploy is green") < text.index("deploy failed")
    assert app.results.text.tag_ranges("hterm")                           # the word, marked

    x, y = app.results.hit_center(1)                                      # the #ops one
    click(app.results.text, x, y)
    assert app.current == "#ops"
    wait_until(app, lambda: app.chat.text.tag_ranges("flash"), what="the hit shown")
    start, end = app.chat.text.tag_ranges("flash")
    assert "the deploy failed at step 3" in app.chat.text.get(start, end)
    x, y = app.results.hit_center(0)
    click(app.results.text, x, y)
    assert app.current == "#general"
    app.results.close_button.invoke()
    assert not app.search_open and app.members.winfo_manager()
    assert not app.errors


def test_topic_by_click_and_slash_commands(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", "#py", srv=srv)
    app = _open(gui, srv)
    t = app.input.text
    for line in ("/join py",):
        type_text(t, line)
        press(t, "Return")
    wait_until(app, lambda: app.current == "#py", what="/join")
    bob.expect("join", name="alice", room="#py")

    click(app.header.topic, 5, 5)                          # click the topic to edit it
    assert app.header.editing
    type_text(app.header.topic_entry, "typing hints")
    press(app.header.topic_entry, "Return")
    got = bob.expect("topic")
    assert (got.topic, got.by, got.room) == ("typing hints", "alice", "#py")
    wait_until(app, lambda: app.header.topic_text == "typing hints", what="the new topic")
    assert "alice set the topic: typing hints" in app.chat.messages_text()

    type_text(t, "/topic")
    press(t, "Return")
    assert "The topic of #py: typing hints" in app.chat.messages_text()
    type_text(t, "/me waves")
    press(t, "Return")
    got = bob.expect("message", sender="alice")
    assert (got.kind, got.text, got.room) == ("me", "waves", "#py")
    type_text(t, "/msg bob hi there")
    press(t, "Return")
    assert app.current == "@bob"
    got = bob.expect("message", sender="alice")
    assert (got.text, got.to) == ("hi there", "bob")
    type_text(t, "/switch #py")
    press(t, "Return")
    assert app.current == "#py"
    type_text(t, "/switch #nowhere")
    press(t, "Return")
    assert app.current == "#py" and "You are not in #nowhere" in app.chat.messages_text()
    assert app.input.get() == "/switch #nowhere"          # kept, to fix it
    app.input.set("")
    type_text(t, "/join bad name")
    press(t, "Return")
    assert "Name one room" in app.chat.messages_text()
    app.input.set("")
    type_text(t, "/part")
    press(t, "Return")
    wait_until(app, lambda: app.current == "#general", what="left #py")
    assert ("room", "#py") not in _keys(app)
    assert bob.expect("leave", name="alice").reason == "part"
    type_text(t, "/search hints")
    press(t, "Return")
    assert app.search_open
    assert not app.errors


def test_a_big_room_loads_its_members_on_request(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000, presence_limit=2)
    for name in ("bob", "carol", "dave"):
        rooms_client(connect, name, srv=srv)
    app = _open(gui, srv)
    wait_until(app, lambda: app.members.lazy_shown, what="the big-room summary")
    assert app.members.note.cget("text") == "4 members"
    assert app.members.names == []
    app.members.load_button.invoke()
    wait_until(app, lambda: app.members.names == ["alice", "bob", "carol", "dave"],
               what="the members loaded")
    assert not app.members.lazy_shown
    assert not app.errors


def test_theme_switch_restyles_every_pane(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    rooms_client(connect, "bob", srv=srv)
    app = _open(gui, srv, "alice", "--theme", "dark")
    app.submit("/join #other")
    wait_until(app, lambda: app.current == "#other", what="a second room")
    hidden = app.views["#general"]
    app.search("anything")
    from tkinter import ttk
    style = ttk.Style(app.root)

    def colours():
        return {
            "sidebar list": str(app.convlist.canvas.cget("background")),
            "member list": str(app.members.canvas.cget("background")),
            "chat": str(app.chat.text.cget("background")),
            "hidden chat": str(hidden.text.cget("background")),
            "search results": str(app.results.text.cget("background")),
            "room list": str(app.dialog.list.cget("background")),
            "header": str(style.lookup("Header.TFrame", "background")),
            "header rule": str(app.header.rule.cget("background")),
            "sidebar": str(style.lookup("Sidebar.TFrame", "background")),
            "panel": str(style.lookup("Panel.TFrame", "background")),
        }

    def expected(c):
        return {"sidebar list": c.sidebar, "member list": c.sidebar, "chat": c.surface,
                "hidden chat": c.surface, "search results": c.sidebar, "room list": c.field,
                "header": c.surface, "header rule": c.border, "sidebar": c.sidebar,
                "panel": c.sidebar}

    dark = app.theme.palette
    assert colours() == expected(dark)
    app.status.theme_button.invoke()
    light = app.theme.palette
    assert light.name == "light"
    assert colours() == expected(light)
    assert all(colours()[k] != expected(dark)[k] for k in colours())   # every one changed
    assert str(hidden.text.tag_cget("name", "font"))                   # tags restyled too
    assert not app.errors


def test_switching_between_big_conversations_is_instant(gui, make_server, connect):
    import time
    srv = make_server(rate=1000, burst=1000)
    app = _open(gui, srv)
    app.submit("/join #big")
    wait_until(app, lambda: app.current == "#big", what="#big")
    for n, key in enumerate(("#general", "#big")):
        view = app.view(key)
        view.append([view.fmt.message(p.Message(
            id=10_000_000 + n * 10_000 + i, ts="2026-11-25T10:00:00.000Z", sender=f"user{i % 7}",
            text=f"line {i} " + "lorem ipsum dolor sit amet " * (i % 5), room=key))
            for i in range(2000)])
    app.root.update()
    took = []
    for _ in range(3):
        for key in ("#general", "#big"):
            start = time.perf_counter()
            app.switch(key)
            app.root.update()
            took.append(time.perf_counter() - start)
            assert app.chat.entry_count >= 2000 and app.chat.winfo_ismapped()
    print(f"\nswitching between two conversations of 2,000 messages: "
          f"longest {max(took) * 1000:.1f} ms")
    assert max(took) < 0.5                     # generous: a person would call it instant
    assert not app.errors


def test_only_a_focused_window_marks_messages_read(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", srv=srv)
    app = _open(gui, srv)
    focused = [False]
    app.window_focused = lambda: focused[0]    # the person is in another window
    bob.send(p.Say(text="while you were away"))
    wait_until(app, lambda: "while you were away" in app.chat.messages_text(), what="it")
    wait_until(app, lambda: app.session.conversation("#general").unread == 1, what="unread")
    app._mark_read()
    assert app.session.conversation("#general").unread == 1
    wait_until(app, lambda: app.root.title().startswith("(1) Parley"), what="the title")
    focused[0] = True                              # back to the window
    app.root.event_generate("<FocusIn>")
    wait_until(app, lambda: app.session.conversation("#general").unread == 0, what="read")
    wait_until(app, lambda: app.root.title().startswith("Parley"), what="the title")
    assert not app.errors


def test_messages_typed_offline_wait_dimmed_in_their_room(gui, make_server, connect):
    from gui_helpers import Proxy
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", "#ops", srv=srv)
    proxy = Proxy(srv.address)
    try:
        app = gui("--port", str(proxy.port), "--name", "alice")
        wait_joined(app)
        app.submit("/join #ops")
        wait_until(app, lambda: app.current == "#ops", what="#ops")
        proxy.cut()
        wait_until(app, lambda: app.state == "reconnecting", what="the drop")
        assert app.submit("queued for ops")
        ops = app.chat
        assert "queued for ops" in ops.pending_text()
        assert "waiting for the connection" in ops.pending_text()
        assert ops.text.tag_ranges("pending")
        assert app.view("#general").pending_text() == ""
        app.switch("#general")
        assert app.submit("queued for general")
        assert "queued for general" in app.chat.pending_text()
        assert "queued for ops" not in app.chat.pending_text()
        proxy.restore()
        wait_until(app, lambda: app.state == "connected" and not app.pending, timeout=15,
                   what="both sent")
        assert ops.pending_text() == "" and ops.messages_text().count("queued for ops") == 1
        assert app.chat.messages_text().count("queued for general") == 1
        got = bob.expect("message", sender="alice", room="#ops")
        assert got.text == "queued for ops"
    finally:
        proxy.close()
