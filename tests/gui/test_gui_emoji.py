"""Emoji and other characters outside the BMP: shown, sent and received, never a crash."""
from gui_helpers import press, type_text, wait_joined, wait_until

from parley import protocol as p

EMOJI = "party \U0001F389 thumbs \U0001F44D\U0001F3FD family \U0001F468\u200d\U0001F469\u200d\U0001F467 \u2764\ufe0f math \U0001D54F cjk \u6f22\u5b57"


def test_emoji_in_messages_are_shown_and_sent(gui, server, connect):
    host, port = server.address
    bob = connect("bob")
    app = gui("--port", str(port), "--name", "alice")
    wait_joined(app)
    bob.send(p.Say(text=EMOJI))
    bob.send(p.Me(text="\U0001F680 launches"))
    wait_until(app, lambda: "launches" in app.chat.messages_text(), what="the emoji messages")
    assert EMOJI in app.chat.messages_text()
    assert "\U0001F680 launches" in app.chat.messages_text()

    # typed (pasted) into the input box and sent: the server gets the same characters
    app.input.text.focus_force()
    app.input.insert("back at you \U0001F600\U0001F44B")
    type_text(app.input.text, " ok")
    press(app.input.text, "Return")
    got = bob.expect("message", sender="alice")
    assert got.text == "back at you \U0001F600\U0001F44B ok"
    wait_until(app, lambda: not app.pending, what="the echo")
    assert app.chat.messages_text().count("back at you \U0001F600\U0001F44B ok") == 1
    app.root.update()                                   # drawn without an X error


def test_text_mode_shows_readable_stand_ins(gui, server, connect, monkeypatch):
    host, port = server.address
    bob = connect("bob")
    app = gui("--port", str(port), "--name", "alice", "--emoji", "text")
    wait_joined(app)
    bob.send(p.Say(text="ok \U0001F600"))
    wait_until(app, lambda: "ok \u2039grinning face\u203a" in app.chat.messages_text(),
               what="the stand-in")


def test_an_emoji_name_is_refused_with_an_explanation(gui, server):
    host, port = server.address
    app = gui("--port", str(port))
    app.card.name_var.set("\U0001F600bob")
    app.card.connect_button.invoke()
    app.root.update()
    assert "won\u2019t work" in app.card.message.cget("text")
    assert app.card.visible and app.session is None


def test_emoji_in_a_topic_and_in_search_results_are_safe(gui, make_server, connect):
    from gui_helpers import rooms_client
    srv = make_server(rate=1000, burst=1000)
    bob = rooms_client(connect, "bob", srv=srv)
    bob.request({"type": "topic", "room": "#general", "topic": "launch day \U0001F680"}, "ack")
    bob.request({"type": "say", "text": "rocket \U0001F680 ready"}, "ack")
    app = gui("--port", str(srv.address[1]), "--name", "alice", "--emoji", "text")
    wait_joined(app)
    wait_until(app, lambda: app.header.topic_text.startswith("launch day"), what="the topic")
    assert app.header.topic_text == "launch day \u2039rocket\u203a"
    app.search("rocket")
    wait_until(app, lambda: app.results.hits, what="the search")
    assert "rocket \u2039rocket\u203a ready" in app.results.results_text()
    app.root.update()
    assert not app.errors
