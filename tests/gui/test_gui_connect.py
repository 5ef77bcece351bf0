"""The connect dialog: a taken or invalid name is explained and can be fixed in place."""
import socket

from gui_helpers import press, type_text, wait_joined, wait_until


def test_a_taken_name_is_explained_and_another_one_works(gui, server, connect):
    host, port = server.address
    bob = connect("bob")
    app = gui("--port", str(port), "--name", "bob")
    wait_until(app, lambda: app.card.level == "error", what="the name to be refused")
    assert app.card.visible
    assert "\u201cbob\u201d is already taken" in app.card.message.cget("text")
    assert not app.joined and app.input.send_button.instate(["disabled"])
    assert app.root.focus_get() is app.card.name_entry          # ready to type another
    session = app.session

    app.card.name_entry.delete(0, "end")
    type_text(app.card.name_entry, "bob2")
    press(app.card.name_entry, "Return")
    wait_joined(app)
    assert app.session is session                  # the same connection, a new hello
    assert app.me == "bob2" and app.members.names == ["bob2", "bob"]
    bob.expect("join", name="bob2")


def test_an_invalid_name_is_explained_without_asking_the_server(gui, server):
    host, port = server.address
    app = gui("--port", str(port))
    app.card.name_var.set("bad name!")
    app.card.connect_button.invoke()
    assert app.session is None
    assert "won\u2019t work" in app.card.message.cget("text")
    assert "letters" in app.card.message.cget("text")
    app.card.name_var.set("")
    app.card.connect_button.invoke()
    assert "required" in app.card.message.cget("text")
    app.card.name_var.set("alice")
    app.card.port_var.set("port")
    app.card.connect_button.invoke()
    assert "port must be a number" in app.card.message.cget("text")
    app.card.port_var.set(str(port))
    app.card.connect_button.invoke()
    wait_joined(app)


def test_an_unreachable_server_is_explained_and_the_port_can_be_fixed(gui, server):
    host, port = server.address
    with socket.socket() as s:               # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    app = gui("--port", str(dead), "--name", "alice")
    wait_until(app, lambda: "Cannot reach" in app.card.message.cget("text"),
               what="the dialog to say the server cannot be reached")
    assert f"127.0.0.1:{dead}" in app.card.message.cget("text")
    assert app.card.visible and app.status.level == "warn"
    app.card.port_var.set(str(port))
    app.card.connect_button.invoke()
    wait_joined(app)
    assert app.status.text == f"Connected to 127.0.0.1:{port} as alice"


def test_quit_in_the_dialog_closes_the_window(gui):
    app = gui()
    app.card.quit_button.invoke()
    assert app.closed


def test_a_refused_connection_shows_the_servers_reason_while_it_waits(gui, make_server, connect):
    """Turned away before hello (one connection per address, loopback included):
    the card says why and when it tries again, not just "cannot reach"."""
    srv = make_server(max_per_address=1, limit_loopback=True)
    host, port = srv.address
    connect(srv=srv).hello("first")
    app = gui("--port", str(port), "--name", "second")
    wait_until(app, lambda: "Retrying in" in app.card.message.cget("text"),
               what="the refusal and the retry")
    text = app.card.message.cget("text")
    assert ("The server refused the connection: at most 1 connection from one address. "
            "Retrying in") in text, text
    assert app.card.level == "error" and not app.joined
