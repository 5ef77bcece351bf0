"""Losing the connection: status, offline sending, reconnecting, catching up."""
import re

from gui_helpers import Proxy, press, screenshot, to_docs, type_text, wait_joined, wait_until

from parley import protocol as p
from parley.server.app import Server
from parley.server.connection import Limits


def test_server_restart_reconnects_and_delivers_what_was_typed_offline(gui, connect):
    srv = Server("127.0.0.1", 0, Limits(rate=1000, burst=1000)).start()
    host, port = srv.address
    try:
        app = gui("--port", str(port), "--name", "alice")
        wait_joined(app)
        for i in range(6):                  # ids the next server will use again
            assert app.submit(f"before restart {i}")
        wait_until(app, lambda: not app.pending, what="sent before the restart")
        srv.stop(grace=0.5)
        wait_until(app, lambda: app.state == "reconnecting", what="the drop to be noticed")
        wait_until(app, lambda: "Connection lost" in app.status.text, what="the status bar")
        assert app.status.level == "warn"
        shown = app.chat.messages_text()
        assert "The server closed the connection: the server is shutting down." in shown
        assert "Reconnecting\u2026 messages you send meanwhile are delivered" in shown
        assert app.members.online is False                  # presence dots greyed

        # the input stays usable; what is typed now waits, visibly
        assert app.input.send_button.instate(["!disabled"])
        type_text(app.input.text, "typed while offline")
        press(app.input.text, "Return")
        assert "typed while offline" in app.chat.pending_text()
        assert "waiting for the connection" in app.chat.pending_text()
        wait_until(app, lambda: "1 message waiting to be sent" in app.status.text,
                   what="the waiting count in the status bar")
        to_docs(screenshot(app, "gui-offline"), "screenshots/offline.png")

        srv = Server("127.0.0.1", port, Limits(rate=1000, burst=1000)).start()
        bob = connect("bob", srv=srv)
        wait_until(app, lambda: app.state == "connected" and not app.pending, timeout=15,
                   what="reconnected and the offline message confirmed")
        assert app.status.text == f"Connected to 127.0.0.1:{port} as alice"
        assert f"Reconnected to 127.0.0.1:{port}" in app.chat.messages_text()
        assert app.members.online is True
        assert app.chat.pending_text() == ""
        assert app.chat.messages_text().count("typed while offline") == 1
        # a new database: the old ids mean nothing now, new messages are not taken
        # for ones already shown
        assert "history starts afresh" in app.chat.messages_text()
        assert "before restart" not in app.chat.messages_text()
        for i in range(4):
            bob.send(p.Say(text=f"after restart {i}"))
        wait_until(app, lambda: "after restart 3" in app.chat.messages_text(),
                   what="bob's messages")
        assert all(f"after restart {i}" in app.chat.messages_text() for i in range(4))
        # bob gets it live, or in his welcome's recent history if alice was quicker
        seen = [h.get("text") for h in bob.welcome.history]
        if "typed while offline" not in seen:
            assert bob.expect("message", sender="alice").text == "typed while offline"
    finally:
        srv.stop(grace=0.5)


def test_missed_messages_appear_in_order_without_duplicates(gui, make_server, connect):
    srv = make_server(rate=1000, burst=1000)
    proxy = Proxy(srv.address)
    try:
        bob = connect("bob", srv=srv)
        app = gui("--port", str(proxy.port), "--name", "alice")
        wait_joined(app)
        bob.send(p.Say(text="before 1"))
        wait_until(app, lambda: "before 1" in app.chat.messages_text(), what="before 1")

        proxy.cut()                                    # the network goes away
        wait_until(app, lambda: app.state == "reconnecting", what="the drop")
        assert "Connection lost (" in app.chat.messages_text()
        bob.expect("leave", name="alice")
        for i in range(1, 6):
            bob.send(p.Say(text=f"missed {i}"))
        for i in range(1, 6):
            bob.expect("message", text=f"missed {i}")
        assert all(f"missed {i}" not in app.chat.messages_text() for i in range(1, 6))
        type_text(app.input.text, "sent during the outage")
        press(app.input.text, "Return")

        proxy.restore()
        wait_until(app, lambda: "missed 5" in app.chat.messages_text() and not app.pending,
                   timeout=15, what="the catch-up")
        bob.send(p.Say(text="after 1"))
        wait_until(app, lambda: "after 1" in app.chat.messages_text(), what="after 1")
        text = app.chat.messages_text()
        order = re.findall(r"(before 1|missed \d|after 1|sent during the outage)", text)
        assert order[:6] == ["before 1"] + [f"missed {i}" for i in range(1, 6)], order
        assert order.count("sent during the outage") == 1
        assert order[-1] == "after 1"
        assert len(order) == len(set(order)) == 8
        assert bob.expect("message", sender="alice").text == "sent during the outage"
    finally:
        proxy.close()


def test_a_message_the_server_refuses_is_shown_and_kept(gui, server, connect):
    host, port = server.address
    app = gui("--port", str(port), "--name", "alice")
    wait_joined(app)
    assert app.submit("ring \x07 the bell")           # control characters: the server says no
    wait_until(app, lambda: "Not sent" in app.chat.messages_text(), what="the refusal")
    assert not app.pending
    assert "control characters" in app.chat.messages_text()
    assert app.input.get() == "ring \x07 the bell"      # back in the box to fix, not lost


def test_a_message_over_the_limit_is_refused_locally(gui, make_server):
    srv = make_server(max_text=20)
    app = gui("--port", str(srv.address[1]), "--name", "alice")
    wait_joined(app)
    assert not app.submit("x" * 21)
    assert "at most 20" in app.chat.messages_text()
    assert not app.pending


def test_name_taken_while_away_reopens_the_dialog_and_keeps_my_messages(gui, make_server,
                                                                       connect):
    srv = make_server(rate=1000, burst=1000)
    proxy = Proxy(srv.address)
    try:
        app = gui("--port", str(proxy.port), "--name", "alice")
        wait_joined(app)
        bob = connect("bob", srv=srv)
        proxy.cut()
        wait_until(app, lambda: app.state == "reconnecting", what="the drop")
        bob.expect("leave", name="alice")
        connect("alice", srv=srv)                       # someone else takes the name
        assert app.submit("still here")                 # typed while away
        proxy.restore()
        wait_until(app, lambda: app.card.visible and app.card.level == "error",
                   what="the dialog to come back")
        assert "already taken" in app.card.message.cget("text")
        assert "still here" in app.chat.pending_text()  # not lost
        app.card.name_var.set("alice2")
        press(app.card.name_entry, "Return")
        wait_joined(app)
        assert app.me == "alice2"
        got = bob.expect("message", sender="alice2")
        assert got.text == "still here"
        wait_until(app, lambda: not app.pending, what="the message confirmed")
    finally:
        proxy.close()


def test_a_truncated_catch_up_is_said_and_the_rest_is_shown(gui, connect, make_server):
    srv = make_server(history=3, rate=1000, burst=1000)
    proxy = Proxy(srv.address)
    try:
        bob = connect("bob", srv=srv)
        app = gui("--port", str(proxy.port), "--name", "alice")
        wait_joined(app)
        proxy.cut()
        wait_until(app, lambda: app.state == "reconnecting", what="the drop")
        bob.expect("leave", name="alice")
        for i in range(1, 7):
            bob.send(p.Say(text=f"missed {i}"))
            bob.expect("message", text=f"missed {i}")
        proxy.restore()
        wait_until(app, lambda: "missed 6" in app.chat.messages_text(), timeout=15,
                   what="the catch-up")
        shown = app.chat.messages_text()
        assert "You missed more than the server sends in one catch-up" in shown
        assert "missed 4" in shown and "missed 5" in shown    # the newest ones it got
        assert "missed 1" not in shown                         # the oldest: not sent
    finally:
        proxy.close()
