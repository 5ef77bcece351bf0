"""Abuse limits over real sockets: connections per address, new connections per
second, the wait after a kick, a session's rate limit across reconnects, a big
catch-up, and labelled frames that fail to decode.  The per-address limits
exempt loopback by default, so most tests here turn ``limit_loopback`` on."""
import time

from parley import protocol as p


def refused(c):
    """The error a refused connection gets, after which the server hangs up."""
    err = c.expect("error")
    assert c.wait_closed(5), "the server should close a refused connection"
    return err


def test_open_connections_from_one_address_are_limited(make_server, connect):
    srv = make_server(limit_loopback=True, max_per_address=3, connect_burst=50)
    ins = [connect(srv=srv) for _ in range(3)]
    for i, c in enumerate(ins):
        c.hello(f"u{i}")
    err = refused(connect(srv=srv))
    assert err.code == p.TOO_MANY_CONNECTIONS and "at most 3" in err.message
    # the others are untouched
    ins[0].send({"type": "say", "text": "still here", "label": "s"})
    ins[0].expect("ack", label="s")
    ins[1].expect("message", text="still here")
    # one leaves: its slot comes free (as soon as the server has seen it go)
    ins[2].send({"type": "bye"})
    assert ins[2].wait_closed()
    ins[2].close()
    deadline = time.monotonic() + 5
    while True:
        c = connect(srv=srv)
        first = c.frames(0.2)
        if not any(getattr(f, "type", "") == "error" for f in first):
            assert c.hello("again").name == "again"
            break
        assert time.monotonic() < deadline, "the freed slot was never given back"


def test_new_connections_per_second_are_throttled_and_retry_after_is_enough(make_server, connect):
    srv = make_server(limit_loopback=True, connect_burst=3, connect_rate=2.0)
    for i in range(3):
        connect(srv=srv).hello(f"u{i}")
    err = refused(connect(srv=srv))
    assert err.code == p.THROTTLED and 0 < err.retry_after <= 0.5
    time.sleep(err.retry_after)             # the server said how long: that is enough
    assert connect(srv=srv).hello("late").name == "late"


def test_connect_close_churn_from_one_address_is_cut_short(make_server, connect):
    """2,000 connect-hello-close cycles once stalled everyone for 1-2 s; now the
    address gets its burst, then one-line refusals that never reach the hub."""
    srv = make_server(limit_loopback=True, connect_burst=10, connect_rate=2.0)
    admitted = refusals = 0
    for i in range(200):
        c = connect(srv=srv)
        c.send(p.Hello(version=1, name=f"churn{i}"))
        first = c.expect(("welcome", "error"))
        if first.type == "welcome":
            admitted += 1
        else:
            assert first.code == p.THROTTLED
            refusals += 1
        c.close()
    assert refusals >= 180 and admitted <= 20   # the burst of 10, plus 2/s while it ran


def test_a_client_kicked_for_flooding_waits_before_it_can_come_back(make_server, connect):
    srv = make_server(limit_loopback=True, burst=3, rate=1.0, flood_kick=4,
                      kick_cooldown=1.5, connect_burst=50)
    watcher = connect(srv=srv)
    watcher.hello("watcher")
    flooder = connect(srv=srv)
    flooder.hello("flooder")
    for i in range(20):
        flooder.send({"type": "say", "text": f"spam {i}"})
    bye = flooder.expect("bye")
    assert bye.reason == p.FLOOD
    again = connect(srv=srv)
    err = refused(again)
    assert err.code == p.THROTTLED and 1.0 < err.retry_after <= 1.5 and "kicked" in err.message
    # a connection already open from that address keeps working
    watcher.send({"type": "say", "text": "calm", "label": "w"})
    watcher.expect("ack", label="w")
    time.sleep(err.retry_after)
    assert connect(srv=srv).hello("back").name == "back"


def test_loopback_is_exempt_by_default(make_server, connect):
    srv = make_server(max_per_address=2, connect_burst=1, kick_cooldown=60)
    names = [connect(srv=srv).hello(f"local{i}").name for i in range(5)]
    assert names == [f"local{i}" for i in range(5)]


def test_a_resumed_session_keeps_its_rate_limit(make_server, connect):
    """Resuming 40 times in a row once gave 760 accepted messages where one
    connection may send its burst; the session's bucket is now shared."""
    srv = make_server(burst=5, rate=1.0, flood_kick=1000)
    first = connect(srv=srv)
    w = first.hello("amy", rooms=True)
    token = w.token
    accepted = 0
    t0 = time.monotonic()
    c = first
    for round_ in range(10):
        for i in range(5):
            c.send({"type": "say", "text": f"r{round_} m{i}", "label": f"{round_}.{i}"})
        for i in range(5):
            reply = c.answer(f"{round_}.{i}")
            accepted += reply.type == "ack"
        c.close()
        c = connect(srv=srv)
        c.hello("amy", rooms=True, token=token, last_id=0)
    elapsed = time.monotonic() - t0
    # one burst (minus the hellos' own tokens) plus the refill while it ran
    assert accepted <= 5 + elapsed * 1.0 + 1, (accepted, elapsed)
    assert accepted >= 4


def test_a_catch_up_bigger_than_the_outbox_arrives_whole(make_server, connect):
    """500 long emoji messages (8 MB) missed by a client that reads promptly: it
    gets all of them in its welcome, not sendq_exceeded."""
    srv = make_server(rate=10000, burst=10000, flood_kick=100000, outbox=1 << 20, history=600)
    a = connect(srv=srv)
    w = a.hello("amy", rooms=True)
    token, last = w.token, w.last_id
    a.close()
    b = connect(srv=srv)
    b.hello("bob", rooms=True)
    text = "\U0001F600" * 3996            # 16,000 bytes of UTF-8 with the number
    acks = []
    for start in range(0, 500, 40):   # in steps, so that bob (who reads his own) keeps up
        for i in range(start, min(start + 40, 500)):
            b.send(p.Say(text=text + str(i), label=f"L{i}"))
        acks += [b.expect("ack", label=f"L{i}", timeout=30).id for i in range(start, min(start + 40, 500))]
        b.backlog.clear()
    back = connect(srv=srv)
    back.send(p.Hello(version=p.PROTOCOL_VERSION, name="amy", caps=[p.CAP_ROOMS],
                      token=token, last_id=last))
    welcome = back.expect("welcome", timeout=30)
    got = [f for f in welcome.history if f["type"] == "message"]
    assert [f["id"] for f in got] == acks                # every one, in order
    assert got[-1]["text"] == text + "499" and not welcome.truncated
    # and the connection is alive afterwards
    b.send(p.Say(text="after", label="after"))
    assert back.expect("message", timeout=10).text == "after"
    assert not [f for f in back.frames(0.2) if f.type == "bye"]


def test_a_labelled_frame_that_fails_to_decode_gets_its_error_with_the_label(server, connect):
    c = connect()
    c.hello("amy", rooms=True)
    c.send(b'{"type":"say","text":5,"label":"x1"}\n')
    c.send(b'{"type":"dance","label":"x2"}\n')
    c.send(b'{"type":"join","label":"x3"}\n')
    c.send(b'{"type":"say","text":5,"label":7}\n')        # a label that is no label
    errors = [c.expect("error") for _ in range(4)]
    assert [(e.code, e.label) for e in errors] == [
        (p.BAD_FIELD, "x1"), (p.UNKNOWN_TYPE, "x2"), (p.BAD_FIELD, "x3"), (p.BAD_FIELD, None)]


def test_a_refused_client_that_already_sent_its_hello_still_reads_why(make_server, connect):
    """Closing a socket with unread input resets the connection, and the
    client would lose the error; the server reads until the client hangs up."""
    import socket
    srv = make_server(limit_loopback=True, max_per_address=1)
    connect(srv=srv).hello("first")
    s = socket.create_connection(srv.address, timeout=5)
    try:
        s.sendall(p.encode(p.Hello(version=1, name="second")))
        time.sleep(0.3)          # deliberately late: the refusal happened long ago
        # a client that goes on sending is not reset (which would lose the error)
        s.sendall(p.encode(p.Say(text="anyone?")) * 100)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    (err,) = p.FrameDecoder(p.SERVER_FRAMES).feed(data)
    assert err.code == p.TOO_MANY_CONNECTIONS
