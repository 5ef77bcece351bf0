"""Bad clients never hurt the server or anyone else."""
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from parley import protocol as p
from rawclient import RawClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def still_chatting(a, b, text):
    a.send(p.Say(text=text))
    assert b.expect("message", text=text).sender == a.welcome.name


@pytest.mark.parametrize("garbage, code", [
    (b"this is not json\n", p.BAD_JSON),
    (b"\xc3\x28 invalid utf-8\n", p.BAD_UTF8),
    (b'{"type":"teleport"}\n', p.UNKNOWN_TYPE),
    (b'{"type":"say"}\n', p.BAD_FIELD),
    (b'{"type":"say","text":["no"]}\n', p.BAD_FIELD),
    (b'"just a string"\n', p.BAD_FRAME),
    (b"\x00\x01\x02\xff\xfe\xfd binary\n", p.BAD_UTF8),
    (b"{" * 50000 + b"\n", p.LINE_TOO_LONG),
])
def test_bad_input_gets_error_and_connection_stays_usable(connect, garbage, code):
    bystander = connect("bystander")
    bad = connect("bad")
    bad.send(garbage)
    assert bad.expect("error").code == code
    still_chatting(bad, bystander, "I am still here")
    still_chatting(bystander, bad, "so am I")


def test_oversized_line_without_newline_is_bounded(make_server, connect):
    srv = make_server(max_line=1024)
    bystander = connect("bystander", srv=srv)
    bad = connect("bad", srv=srv)
    bad.send(b"A" * 200_000)                      # no newline, ever
    assert bad.expect("error").code == p.LINE_TOO_LONG
    still_chatting(bystander, bad, "memory is bounded")
    bad.send(b"\n")                                # the line ends; back in business
    still_chatting(bad, bystander, "recovered")


def test_disconnect_mid_line_and_silent_clients(make_server, connect):
    srv = make_server(handshake_timeout=0.3)
    bystander = connect("bystander", srv=srv)
    half = connect("half", srv=srv)
    half.send(b'{"type":"say","te')
    half.sock.close()
    assert bystander.expect("leave", name="half").reason == p.LOST
    silent = connect(srv=srv)                       # connects and says nothing
    bye = silent.expect("bye", timeout=5)
    assert bye.reason == p.TIMEOUT
    assert silent.wait_closed()
    still_chatting(bystander, connect("later", srv=srv), "fine")


def test_unanswered_pings_time_out(make_server, connect):
    srv = make_server(ping_interval=0.2, ping_timeout=0.3)
    watcher = connect("watcher", srv=srv)
    dead = connect("dead", srv=srv, auto_pong=False)
    assert dead.expect("ping")                     # and it never answers
    assert watcher.expect("leave", name="dead", timeout=5).reason == p.TIMEOUT
    assert dead.expect("bye").reason == p.TIMEOUT
    # the watcher answers its pings (auto_pong) and stays
    for _ in range(3):
        watcher.expect("ping", timeout=5)
    watcher.send(p.UsersRequest())
    assert watcher.expect("users").users == ["watcher"]


def test_stalled_reader_is_dropped_and_others_keep_receiving(make_server, connect):
    srv = make_server(outbox=64 * 1024, rate=100_000, burst=100_000)
    stalled = connect("stalled", srv=srv, rcvbuf=4096)   # never reads from here on
    talker = connect("talker", srv=srv)                  # reads its own echoes
    text = "x" * 1000
    leave = None
    # the kernel buffers a few MB per socket on loopback before the outbox fills
    for batch in range(100):
        talker.send(b"".join(p.encode(p.Say(text=f"{batch}.{i} {text}")) for i in range(100)))
        for i in range(100):
            assert talker.expect("message").text.startswith(f"{batch}.{i} ")
        leaves = [f for f in talker.frames(0) if f.type == "leave"]
        if leaves:
            leave = leaves[0]
            break
    if leave is None:
        leave = talker.expect("leave", timeout=5)
    assert leave.name == "stalled" and leave.reason == p.SENDQ
    still_chatting(talker, connect("newcomer", srv=srv), "everyone else is fine")
    # the stalled client, when it finally reads, finds out why at the end
    assert stalled.expect("bye", timeout=10).reason == p.SENDQ


def test_flood_is_rate_limited_then_kicked(make_server, connect):
    srv = make_server(rate=5, burst=10, flood_kick=20)
    bystander = connect("bystander", srv=srv)
    flooder = connect("flooder", srv=srv)
    flooder.send(b"".join(p.encode(p.Say(text=f"spam {i}")) for i in range(500)))
    assert flooder.expect("error").code == p.RATE_LIMITED
    assert bystander.expect("leave", name="flooder", timeout=5).reason == p.FLOOD
    assert flooder.expect("bye").reason == p.FLOOD
    spam = [f for f in bystander.frames(0.2) if f.type == "message"]
    assert len(spam) <= 10 + 1                     # the burst, and not much more
    still_chatting(bystander, connect("friend", srv=srv), "quiet again")


def test_rate_limited_labelled_message_gets_retry_hint(make_server, connect):
    srv = make_server(rate=1, burst=2, flood_kick=100)   # hello takes one token
    c = connect("c", srv=srv)
    c.send(p.Say(text="one", label="1"))
    c.send(p.Say(text="two", label="2"))
    err = c.expect("error", label="2")
    assert err.code == p.RATE_LIMITED and err.retry_after > 0
    assert c.expect("ack").label == "1"


def test_random_garbage_from_many_clients(make_server, connect):
    """A crude live fuzz: random bytes and mangled frames from 10 connections."""
    srv = make_server(rate=1000, burst=1000, flood_kick=10_000)
    bystander = connect("bystander", srv=srv)
    rng = random.Random(1234)
    valid = [p.encode(p.Say(text="ok")), p.encode(p.Hello(version=1, name="fz")),
             p.encode(p.UsersRequest()), p.encode(p.Ping()), b'{"type":"hello"}\n']
    socks = []
    for _ in range(10):
        s = socket.create_connection(srv.address)
        for _ in range(50):
            choice = rng.random()
            if choice < 0.4:
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
            elif choice < 0.8:
                frame = bytearray(rng.choice(valid))
                for _ in range(rng.randint(1, 4)):
                    frame[rng.randrange(len(frame))] = rng.getrandbits(8)
                data = bytes(frame)
            else:
                data = rng.choice(valid)
            try:
                s.sendall(data)
            except OSError:
                break
        socks.append(s)
    for s in socks[::2]:
        s.close()                                   # some vanish abruptly
    still_chatting(bystander, connect("after-fuzz", srv=srv), "server survived")
    for s in socks[1::2]:
        s.close()
    assert all(w.is_alive() for w in srv.workers)


def test_server_full(make_server, connect):
    srv = make_server(max_clients=2)
    connect("one", srv=srv)
    connect("two", srv=srv)
    third = connect(srv=srv)
    assert third.expect("error").code == "server_full"
    assert third.wait_closed()


def test_stop_tells_everyone(make_server, connect):
    srv = make_server()
    a, b = connect("a", srv=srv), connect("b", srv=srv)
    t0 = time.monotonic()
    srv.stop(grace=2)
    assert time.monotonic() - t0 < 3.5
    for c in (a, b):
        assert c.expect("bye").reason == p.SHUTDOWN
        assert c.wait_closed()


def start_server_process(*args):
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "python_server.py"), "--db", ":memory:",
                             "--host", "127.0.0.1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc


def wait_listening(proc):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            return int(line.rsplit(":", 1)[1].split()[0])
    raise AssertionError("server did not start")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_server_process_shuts_down_cleanly_on_signal(sig):
    proc = start_server_process("--port", "0", "--shutdown-grace", "1")
    try:
        port = wait_listening(proc)
        c = RawClient(("127.0.0.1", port))
        c.hello("someone")
        proc.send_signal(sig)
        assert c.expect("bye").reason == p.SHUTDOWN
        assert proc.wait(10) == 0
        c.close()
    finally:
        proc.kill()
        proc.wait()


def test_port_in_use_is_a_clear_one_line_error():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        proc = start_server_process("--port", str(port))
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 2
        assert "already in use" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    finally:
        blocker.close()


def test_help_lists_every_limit():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "python_server.py"), "--help"],
                         capture_output=True, text=True, timeout=10).stdout
    for flag in ("--max-line", "--max-text", "--rate", "--burst", "--outbox",
                 "--ping-interval", "--ping-timeout", "--history", "--port", "--host"):
        assert flag in out
