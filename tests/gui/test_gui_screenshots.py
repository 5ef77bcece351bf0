"""What a person sees: screenshots of the window in both themes (saved as artifacts).

The dark one is the picture in docs/screenshot.png."""
from gui_helpers import ARTIFACTS, png_size, screenshot, wait_joined, wait_until

from parley import protocol as p


def test_screenshots_dark_and_light(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    bob = connect("bob", srv=srv)
    carol = connect("carol", srv=srv)

    def say(client, text, kind="say"):
        client.send(p.Me(text=text) if kind == "me" else p.Say(text=text))
        client.expect("message", text=text)

    say(bob, "Morning all! Did the deploy go out last night?")
    say(carol, "It did \U0001F389 release notes: https://example.com/parley/releases/0.1")
    say(carol, "The migration step was slower than expected, otherwise smooth.")
    app = gui("--port", str(srv.address[1]), "--name", "alice")
    wait_joined(app)
    dave = connect("dave", srv=srv)
    say(bob, "@alice could you review the reconnect PR when you have a minute? \U0001F64F")
    wait_until(app, lambda: "reconnect PR" in app.chat.messages_text(), what="bob")
    assert app.submit("Sure, looking at it now \U0001F440")
    wait_until(app, lambda: not app.pending, what="my message")
    say(dave, "grabs a coffee \u2615", kind="me")
    say(carol, "Notes from the retro:\n\u2022 backoff is capped at 10 s\n"
               "\u2022 catch-up replays missed messages in order")
    wait_until(app, lambda: "in order" in app.chat.messages_text(), what="carol's notes")
    assert app.submit("Thanks carol, that matches the logs. The reconnect path now resumes the "
                      "same name and replays what was missed, so nothing is lost or shown twice.")
    wait_until(app, lambda: not app.pending, what="my second message")
    app.input.set("Looks good to me \U0001F44D")
    wait_until(app, lambda: app.members.names == ["alice", "bob", "carol", "dave"],
               what="four users")

    dark = screenshot(app, "gui-dark")
    app.set_theme("light")
    light = screenshot(app, "gui-light")
    app.set_theme("dark")
    for shot in (dark, light):
        w, h = png_size(shot)
        assert w >= 640 and h >= 420
    assert not app.errors


def test_screenshot_of_the_connect_dialog(gui, server, connect):
    connect("bob")
    app = gui("--port", str(server.address[1]), "--name", "bob")
    wait_until(app, lambda: app.card.level == "error", what="the name to be refused")
    screenshot(app, "gui-dialog-name-taken")
    assert (ARTIFACTS / "gui-dialog-name-taken.png").exists()
