"""Behaviours that once went unnoticed when broken: each test here fails if its
behaviour is removed (they were checked by breaking the code on purpose)."""
import time

from parley import protocol as p
from parley.client.session import Session


def test_internal_error_is_answered_and_the_connection_stays_usable(server, connect):
    a = connect()
    a.hello("alice", rooms=True)
    real = server.hub.rooms_list

    def broken(user):
        raise RuntimeError("a bug, with a secret: hunter2")
    server.hub.rooms_list = broken
    try:
        err = a.request({"type": "rooms"}, "rooms")
    finally:
        server.hub.rooms_list = real
    assert (err.type, err.code) == ("error", p.INTERNAL)
    assert a.request({"type": "rooms"}, "rooms").type == "rooms"
    assert a.request({"type": "say", "text": "still here"}, "ack").type == "ack"


def test_client_that_answers_pings_stays_one_that_does_not_is_dropped(make_server, connect):
    srv = make_server(ping_interval=0.3, ping_timeout=0.6)
    good = connect(srv=srv)                      # RawClient answers pings by default
    good.hello("good", rooms=True)
    bad = connect(srv=srv, auto_pong=False)
    bad.hello("bad", rooms=True)
    seen_good, seen_bad = [], []
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:           # both read all along; only one answers
        seen_good += good.frames(0.05)
        seen_bad += bad.frames(0.05)
    assert [f.reason for f in seen_bad if f.type == "bye"] == [p.TIMEOUT]
    assert bad.eof
    pings = [f for f in seen_good if f.type == "ping"]
    assert len(pings) >= 2, "the server never pinged the silent-but-alive client"
    assert not good.eof
    assert good.request({"type": "say", "text": "alive"}, "ack").type == "ack"


def test_session_reconnects_when_the_server_stops_answering(make_server):
    """No pong (or anything) from the server for 2 x keepalive: the client gives
    up on the connection and reconnects by itself."""
    import socket
    import threading
    srv = make_server()
    # a silent "server": accepts, reads, never answers; the session must time out
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    conns = []

    def accept():
        while True:
            try:
                c, _ = silent.accept()
            except OSError:
                return
            conns.append(c)
    threading.Thread(target=accept, daemon=True).start()
    s = Session("127.0.0.1", silent.getsockname()[1], "x", keepalive=0.3,
                retry_first=True, backoff_initial=0.05, backoff_max=0.1).start()
    try:
        deadline = time.monotonic() + 5
        while len(conns) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(conns) >= 2, "the session never gave up on a silent server"
    finally:
        s.close(timeout=1)
        silent.close()
        for c in conns:
            c.close()


def test_exactly_once_across_a_connection_cut_between_say_and_ack(server):
    host, port = server.address
    reader = Session(host, port, "reader", client="test").start()
    writer = Session(host, port, "writer", client="test").start()
    assert reader.registered.wait(5) and writer.registered.wait(5)
    for i in range(15):
        writer.say(f"once {i}")
    writer.reconnect_now()                      # cut while some are in flight
    assert writer.wait_idle(15)
    texts = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(texts) < 15:
        try:
            ev = reader.events.get(timeout=0.5)
        except Exception:
            continue
        if getattr(ev, "type", None) == "message":
            texts.append(ev.text)
    time.sleep(0.3)
    while not reader.events.empty():
        ev = reader.events.get()
        if getattr(ev, "type", None) == "message":
            texts.append(ev.text)
    assert texts == [f"once {i}" for i in range(15)]
    reader.close()
    writer.close()


def test_truncated_catch_up_over_sockets_and_its_boundary(make_server, connect):
    srv = make_server(history=5)
    a, b = connect(srv=srv), connect(srv=srv)
    a.hello("alice", rooms=True)
    wb = b.hello("bob", rooms=True)
    mark = a.request({"type": "say", "text": "seen"}, "ack").id
    b.close()
    a.expect("leave", name="bob")
    for i in range(5):
        a.request({"type": "say", "text": f"m{i}"}, "ack")
    back = connect(srv=srv)
    w = back.hello("bob", rooms=True, token=wb.token, last_id=mark, instance=wb.instance)
    assert [h.get("text", h["type"]) for h in w.history] == ["m0", "m1", "m2", "m3", "m4"]
    assert w.truncated is True                  # its own leave + 5 messages: 6 > 5
    back.close()
    a.expect("leave", name="bob")
    mark = a.request({"type": "say", "text": "seen again"}, "ack").id
    for i in range(6):
        a.request({"type": "say", "text": f"n{i}"}, "ack")
    again = connect(srv=srv)
    w = again.hello("bob", rooms=True, token=wb.token, last_id=mark, instance=wb.instance)
    assert w.truncated is True
    assert [h.get("text") for h in w.history] == ["n1", "n2", "n3", "n4", "n5"]


def test_c1_control_characters_refused(connect):
    a = connect()
    a.hello("alice", rooms=True)
    err = a.request({"type": "say", "text": "csi \x9b31m red"}, "ack")
    assert err.code == p.BAD_TEXT
