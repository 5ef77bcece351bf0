"""What a person sees: screenshots of the window in both themes (saved as artifacts).

With PARLEY_DOCS_SCREENSHOTS=1 they are also copied to docs/ (docs/screenshot.png
is the dark one)."""
from gui_helpers import (ARTIFACTS, png_size, rooms_client, screenshot, to_docs, wait_joined,
                         wait_until)

from parley.client.gui.render import MARKER_TEXT


def test_screenshots_dark_and_light(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", "#python", "#design", srv=srv)
    carol = rooms_client(connect, "carol", "#python", "#design", srv=srv)
    dave = rooms_client(connect, "dave", "#python", srv=srv)
    bob.request({"type": "topic", "room": "#python",
                 "topic": "Packaging, typing and the test suite"}, "ack")

    def say(client, text, room=None, to=None, kind="say"):
        frame = {"type": kind, "text": text}
        if room:
            frame["room"] = room
        if to:
            frame["to"] = to
        reply = client.request(frame, "ack")
        assert reply.type == "ack", reply

    say(bob, "Morning all! Did the deploy go out last night?")
    say(carol, "It did \U0001F389 release notes: https://example.com/parley/releases/0.2")
    say(bob, "Has anyone tried the new resolver with editable installs?", "#python")
    say(carol, "Yes, `pip install -e .` works, the build backend does the rest.", "#python")
    app = gui("--port", str(srv.address[1]), "--name", "alice")
    wait_joined(app)
    app.input.text.focus_force()
    for room in ("#python", "#design"):
        assert app.submit(f"/join {room}")
        wait_until(app, lambda: app.current == room, what=room)
    say(carol, "Mockups for the sidebar are in the shared folder.", "#design")
    wait_until(app, lambda: "Mockups" in app.chat.messages_text(), what="#design")
    app.switch("#python")
    wait_until(app, lambda: "editable installs" in app.chat.messages_text(), what="#python")
    assert app.submit("I moved the CI to the new resolver yesterday, all green so far.")
    wait_until(app, lambda: not app.pending, what="my message")
    wait_until(app, lambda: app.session.conversation("#python").unread == 0, what="read")

    app.switch("#general")                 # while alice reads #general, the others talk
    say(dave, "Quick question: do we pin the type checker's version?", "#python")
    say(bob, "We do, in the dev extras. Bumping it is a one-line PR.", "#python")
    say(dave, "reads the changelog", "#python", kind="me")
    say(carol, "@alice the flaky reconnect test is fixed \u2014 could you double-check?",
        "#python")
    for text in ("New colour tokens are in.", "Light theme contrast checked.",
                 "Badges: accent for mentions."):
        say(carol, text, "#design")
    say(bob, "@alice lunch at 12:30? \U0001F35C", to="alice")
    wait_until(app, lambda: app.convlist.badge_of("#python") == "4"
               and app.convlist.badge_of("#design") == "3"
               and any(r.key == "@bob" for r in app.convlist.rows),
               what="the badges", detail=lambda: repr(app.convlist.rows))
    app.switch("#python")                  # the unread line above what is new
    wait_until(app, lambda: app.chat.marker_shown, what="the unread line")
    assert MARKER_TEXT in app.chat.messages_text()
    say(bob, "@alice are you around for the retro?")
    wait_until(app, lambda: app.convlist.badge_of("#general") == "1"
               and app.convlist.level_of("#general") == "mention", what="#general's mention")
    app.input.set("Looking at it now \U0001F440")
    app.root.update()

    dark = screenshot(app, "gui-dark")
    app.set_theme("light")
    light = screenshot(app, "gui-light")
    app.switch("@bob")
    wait_until(app, lambda: "lunch" in app.chat.messages_text(), what="the DM")
    app.input.set("")
    app.search("reconnect")
    wait_until(app, lambda: app.results.hits, what="the search")
    search = screenshot(app, "gui-light-dm-search")
    app.close_search()
    app.set_theme("dark")
    app.switch("#python")
    app.open_room_dialog()
    wait_until(app, lambda: "#design" in app.dialog.list_text(), what="the room list")
    dialog = screenshot(app, "gui-dark-room-dialog")
    app.dialog.cancel()
    for shot in (dark, light, search, dialog):
        w, h = png_size(shot)
        assert w >= 820 and h >= 460
    assert not app.errors
    to_docs(dark, "screenshot.png")
    to_docs(dark, "screenshots/dark.png")
    to_docs(light, "screenshots/light.png")
    to_docs(search, "screenshots/dm-and-search.png")
    to_docs(dialog, "screenshots/room-dialog.png")


def test_screenshot_of_the_connect_dialog(gui, server, connect):
    connect("bob")
    app = gui("--port", str(server.address[1]), "--name", "bob")
    wait_until(app, lambda: app.card.level == "error", what="the name to be refused")
    shot = screenshot(app, "gui-dialog-name-taken")
    assert (ARTIFACTS / "gui-dialog-name-taken.png").exists()
    to_docs(shot, "screenshots/connect-dialog.png")
