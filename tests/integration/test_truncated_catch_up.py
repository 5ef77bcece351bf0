"""A catch-up that does not reach back far enough is said so to the user."""
import time

from parley import protocol as p
from parley.client.cli import TRUNCATED_NOTE, Formatter
from parley.client.session import Session


def test_cli_says_when_a_reconnect_catch_up_is_truncated(make_server, connect):
    srv = make_server(history=3)
    host, port = srv.address
    s = Session(host, port, "reader", client="test").start()
    try:
        assert s.registered.wait(5)
        fmt = Formatter("reader", colour=False)
        writer = connect(srv=srv)
        writer.hello("writer", rooms=True)
        first = None
        while first is None:
            ev = s.events.get(timeout=5)
            if isinstance(ev, p.Welcome):
                first = ev
        assert TRUNCATED_NOTE not in fmt.event(first)
        # the reader is cut off; five messages go by; it comes back
        s.registered.clear()
        s.reconnect_now()
        for i in range(5):
            writer.request({"type": "say", "text": f"while away {i}"}, "ack")
        deadline = time.monotonic() + 10
        again = None
        while again is None and time.monotonic() < deadline:
            ev = s.events.get(timeout=10)
            if isinstance(ev, p.Welcome):
                again = ev
        assert again is not None and again.truncated is True
        shown = fmt.event(again)
        assert TRUNCATED_NOTE in shown
        # a reconnect that missed little says nothing of the kind
        assert s.registered.wait(10)
        s.registered.clear()
        s.reconnect_now()
        writer.request({"type": "say", "text": "one more"}, "ack")
        third = None
        while third is None:
            ev = s.events.get(timeout=10)
            if isinstance(ev, p.Welcome):
                third = ev
        assert not third.truncated and TRUNCATED_NOTE not in fmt.event(third)
    finally:
        s.close()
