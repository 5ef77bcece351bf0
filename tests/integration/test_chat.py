"""Real sockets on 127.0.0.1: chatting, names, notices, history."""
import queue
import re
import time

from parley import protocol as p
from parley.client.session import Session, SessionState, StateChanged

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_two_clients_chat(connect):
    alice = connect("alice")
    bob = connect("bob")
    assert bob.welcome.users == ["alice", "bob"]
    assert alice.expect("join").name == "bob"
    alice.send(p.Say(text="hi bob 👋", label="m1"))
    got = bob.expect("message")
    assert (got.sender, got.text, got.kind) == ("alice", "hi bob 👋", "say")
    assert TS.match(got.ts)
    mine = alice.expect("message")
    ack = alice.expect("ack")
    assert ack.label == "m1" and ack.id == got.id == mine.id


def test_ids_increase_across_senders(connect):
    a, b, c = connect("a"), connect("b"), connect("c")
    for i in range(5):
        a.send(p.Say(text=f"a{i}"))
        b.send(p.Say(text=f"b{i}"))
    ids = [c.expect("message").id for _ in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == 10


def test_three_clients_each_see_everything_in_the_same_order(connect):
    names = ["u1", "u2", "u3"]
    cs = [connect(n) for n in names]
    for i, c in enumerate(cs):
        for j in range(4):
            c.send(p.Say(text=f"{names[i]}-{j}"))
    orders = [[c.expect("message").id for _ in range(12)] for c in cs]
    assert orders[0] == orders[1] == orders[2]


def test_names_unique_case_insensitive_and_retry_on_same_connection(connect):
    connect("Alice")
    c = connect()
    c.send(p.Hello(version=1, name="aLICE"))
    assert c.expect("error").code == p.NAME_TAKEN
    c.send(p.Hello(version=1, name="no spaces allowed"))
    assert c.expect("error").code == p.NAME_INVALID
    c.send(p.Hello(version=1, name="x" * 33))
    assert c.expect("error").code == p.NAME_INVALID
    assert c.hello("alice2").users == ["Alice", "alice2"]
    c.send(p.Hello(version=1, name="again"))
    assert c.expect("error").code == p.ALREADY_REGISTERED


def test_unsupported_version(connect):
    c = connect()
    c.send(p.Hello(version=2, name="future"))
    assert c.expect("error").code == p.VERSION_UNSUPPORTED


def test_must_say_hello_first(connect):
    c = connect()
    c.send(p.Say(text="hi", label="x"))
    err = c.expect("error")
    assert (err.code, err.label) == (p.NOT_REGISTERED, "x")
    c.send(p.Ping(token="t"))
    assert c.expect("pong").token == "t"


def test_join_and_leave_notices_with_reasons(connect):
    watcher = connect("watcher")
    q = connect("quitter")
    assert watcher.expect("join").name == "quitter"
    q.send(p.Bye())
    leave = watcher.expect("leave")
    assert (leave.name, leave.reason) == ("quitter", p.QUIT)
    lost = connect("lost")
    watcher.expect("join", name="lost")
    lost.sock.close()                               # abrupt disconnect
    leave = watcher.expect("leave", name="lost")
    assert leave.reason == p.LOST
    watcher.send(p.UsersRequest(label="u"))
    assert watcher.expect("users").users == ["watcher"]


def test_me_action_and_users_request(connect):
    a = connect("alice")
    b = connect("bob")
    a.send(p.Me(text="waves", label="1"))
    msg = b.expect("message")
    assert (msg.kind, msg.text, msg.sender) == ("me", "waves", "alice")
    b.send(p.UsersRequest(label="who"))
    ul = b.expect("users")
    assert ul.label == "who" and sorted(ul.users) == ["alice", "bob"]


def test_text_rules_answered_with_label(connect):
    a = connect("alice")
    a.send(p.Say(text="x" * 4001, label="long"))
    assert a.expect("error", label="long").code == p.TEXT_TOO_LONG
    a.send(p.Say(text="   ", label="empty"))
    assert a.expect("error", label="empty").code == p.EMPTY_TEXT
    a.send(p.Say(text="\x1b[2Jclear", label="ctl"))
    assert a.expect("error", label="ctl").code == p.BAD_TEXT
    a.send(p.Say(text="multi\nline", label="ok"))
    assert a.expect("message").text == "multi\nline"


def test_newcomer_gets_recent_history(connect):
    a = connect("alice")
    for i in range(3):
        a.send(p.Say(text=f"early {i}"))
    for _ in range(3):
        a.expect("message")
    late = connect("late")
    assert [h["text"] for h in late.welcome.history] == ["early 0", "early 1", "early 2"]


def events_until(session, pred, timeout=5.0):
    """Collect session events until ``pred(event)``; fail after ``timeout``."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = session.events.get(timeout=0.05)
        except queue.Empty:
            continue
        seen.append(ev)
        if pred(ev):
            return seen
    raise AssertionError(f"condition not met; saw {seen[-8:]}")


def test_catch_up_after_forced_disconnect(server, connect):
    host, port = server.address
    bob = Session(host, port, "bob", backoff_initial=0.05).start()
    events_until(bob, lambda e: isinstance(e, p.Welcome))
    alice = connect("alice")
    alice.send(p.Say(text="before"))
    events_until(bob, lambda e: isinstance(e, p.Message) and e.text == "before")
    # cut bob's connection; while he is away alice keeps talking
    bob.reconnect_now()
    for i in range(5):
        alice.send(p.Say(text=f"while away {i}"))
    seen = events_until(bob, lambda e: isinstance(e, p.Message) and e.text == "while away 4")
    texts = [e.text for e in seen if isinstance(e, p.Message)]
    assert texts == [f"while away {i}" for i in range(5)]     # in order, no duplicates
    assert any(isinstance(e, StateChanged) and e.state is SessionState.RECONNECTING for e in seen)
    # the server saw the drop (leave: connection lost), then bob came back as bob
    alice.send(p.Say(text="after"))
    events_until(bob, lambda e: isinstance(e, p.Message) and e.text == "after")
    notices = [(f.type, f.name) for f in alice.frames(0.2) if f.type in ("leave", "join")]
    assert notices == [("leave", "bob"), ("join", "bob")]
    assert bob.name == "bob"
    bob.close()


def test_messages_typed_offline_are_sent_after_reconnect(make_server):
    srv = make_server()
    host, port = srv.address
    a = Session(host, port, "alice", backoff_initial=0.05, backoff_max=0.2).start()
    b = Session(host, port, "bob", backoff_initial=0.05, backoff_max=0.2).start()
    for s in (a, b):
        events_until(s, lambda e: isinstance(e, p.Welcome))
    srv.stop(grace=0.5)
    events_until(a, lambda e: isinstance(e, StateChanged) and e.state is SessionState.RECONNECTING)
    a.say("typed while the server was down")
    assert a.pending() == 1
    make_server(port=port)                      # the server comes back on the same port
    seen = events_until(b, lambda e: isinstance(e, p.Message)
                        and e.text == "typed while the server was down", timeout=10)
    assert sum(isinstance(e, p.Message) for e in seen) == 1
    assert a.wait_idle(5)
    a.close()
    b.close()


def test_session_close_says_bye(server, connect):
    watcher = connect("watcher")
    host, port = server.address
    s = Session(host, port, "leaver").start()
    events_until(s, lambda e: isinstance(e, p.Welcome))
    s.close()
    assert watcher.expect("leave", name="leaver").reason == p.QUIT
