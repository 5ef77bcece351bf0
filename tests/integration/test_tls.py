"""TLS over real sockets on 127.0.0.1: a test CA made here, the server's TLS port,
plain and TLS clients together, the wrong port both ways, handshakes that never
finish, the TLS layer's want-write and pending data, close_notify, and trust on
first use in the client session.  ``openssl s_client`` is the independent peer."""
from __future__ import annotations

import logging
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rawclient import RawClient
from tlsutil import TestCA, self_signed_pair

from parley import protocol as p
from parley.client.session import Session, SessionState, StateChanged
from parley.client.tls import KnownHosts, TlsOptions, TlsRefused, TrustQuestion
from parley.server import certs
from parley.server.app import Server
from parley.server.connection import Limits
from parley.server.transports import tls as tls_transport
from parley.server.transports.tls import server_context

ROOT = Path(__file__).resolve().parents[2]
WAIT = 8.0


class TlsRawClient(RawClient):
    """RawClient over TLS; ``ragged`` is set if the server closed without close_notify."""

    def __init__(self, address, context, server_hostname="127.0.0.1", **kw):
        super().__init__(address, **kw)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname,
                                        suppress_ragged_eofs=False)
        self.ragged = False

    def _read(self, deadline):
        try:
            return super()._read(deadline)
        except ssl.SSLEOFError:
            self.ragged = True
            self.eof = True
            return False


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(ca):
    return ca.issue()


@pytest.fixture
def tls_server(server_cert):
    servers = []

    def start(cert=None, tls_port=0, **limits):
        c, k = cert or server_cert
        srv = Server("127.0.0.1", 0, Limits(**limits), io_threads=2, db=":memory:",
                     tls=server_context(c, k), tls_port=tls_port).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop(grace=0.5)


@pytest.fixture
def clients():
    made = []

    def add(c):
        made.append(c)
        return c

    yield add
    for c in made:
        c.close()


def wait_for(session: Session, pred, what="event", timeout=WAIT):
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {what} within {timeout} s; saw {seen[-10:]}")
        try:
            ev = session.events.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        seen.append(ev)
        if pred(ev):
            return ev


# --- the server's TLS port ----------------------------------------------------------------
@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_openssl_s_client_says_hello_and_gets_welcome(tls_server, ca):
    srv = tls_server()
    host, port = srv.tls_address
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", ca.ca_file,
         "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet", "-ign_eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b'{"type":"hello","version":1,"name":"openssl"}\n')
        proc.stdin.flush()
        decoder = p.FrameDecoder(p.SERVER_FRAMES, 1 << 20)
        welcome = decoder.feed(proc.stdout.readline())
        assert welcome and isinstance(welcome[0], p.Welcome), welcome
        assert welcome[0].name == "openssl"
        proc.stdin.write(b'{"type":"say","text":"hello from s_client","label":"x1"}\n')
        proc.stdin.flush()
        got = []
        while not any(isinstance(e, p.Ack) for e in got):
            line = proc.stdout.readline()
            assert line, "s_client's connection closed"
            got += decoder.feed(line)
        assert any(isinstance(e, p.Message) and e.text == "hello from s_client" for e in got)
    finally:
        proc.kill()
        proc.wait(5)


def test_plain_and_tls_clients_chat_in_one_room(tls_server, ca, clients):
    srv = tls_server()
    plain = clients(RawClient(srv.address))
    secure = clients(TlsRawClient(srv.tls_address, ca.client_context()))
    assert secure.sock.version() in ("TLSv1.2", "TLSv1.3")
    plain.hello("plain", rooms=True)
    secure.hello("secure", rooms=True)
    for c in (plain, secure):
        assert c.request({"type": "join", "room": "#both"}, "room").type == "room"
    assert secure.request({"type": "say", "room": "#both", "text": "over TLS"}, "ack").type == "ack"
    plain.expect("message", text="over TLS", sender="secure")
    assert plain.request({"type": "say", "room": "#both", "text": "in clear"}, "ack").type == "ack"
    secure.expect("message", text="in clear", sender="plain")
    # the session knows which transport carries it (accounts will need that)
    names = {c.name: c.transport.secure for w in srv.workers for c in w.conns}
    assert names == {"plain": False, "secure": True}


def test_a_burst_in_one_write_is_read_whole(tls_server, ca, clients):
    """Many records arriving at once: nothing stays unread inside the SSL layer."""
    srv = tls_server(rate=10000, burst=10000)
    c = clients(TlsRawClient(srv.tls_address, ca.client_context()))
    c.hello("bursty")
    lines = b"".join(p.encode(p.Say(text=f"line {i} " + "x" * 300, label=f"l{i}"))
                     for i in range(300))
    c.sock.sendall(lines)          # ~100 KB: several TLS records, more than one recv
    for i in range(300):
        c.expect("ack", label=f"l{i}")


def test_tls_client_on_the_plain_port_is_closed_with_one_log_line(tls_server, ca, caplog,
                                                                   clients):
    srv = tls_server()
    other = clients(RawClient(srv.address))
    other.hello("other")
    caplog.set_level(logging.INFO, logger="parley.server")
    raw = socket.create_connection(srv.address)
    raw.settimeout(WAIT)
    ctx = ca.client_context()
    started = time.monotonic()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    raw.close()
    assert time.monotonic() - started < 2, "closed at once, not after a timeout"
    assert len([r for r in caplog.records if "TLS client on the plain port" in r.message]) == 1
    assert other.request({"type": "say", "text": "still here"}, "ack").type == "ack"


def test_plain_client_on_the_tls_port_gets_tls_required(tls_server, clients):
    srv = tls_server()
    c = clients(RawClient(srv.tls_address))
    c.send(p.Hello(version=p.PROTOCOL_VERSION, name="confused"))
    err = c.expect("error")
    assert err.code == p.TLS_REQUIRED and "TLS" in err.message
    assert c.wait_closed(WAIT)


def test_garbage_on_the_tls_port_is_closed(tls_server):
    srv = tls_server()
    s = socket.create_connection(srv.tls_address)
    s.settimeout(WAIT)
    s.sendall(b"\x00\x01GET / HTTP/1.0\r\n\r\n")
    assert s.recv(100) == b""
    s.close()


def test_a_handshake_that_never_finishes_is_dropped_and_stalls_no_one(tls_server, ca, clients):
    srv = tls_server(handshake_timeout=1.0)
    # one connects and says nothing; one sends half a ClientHello; one sends a whole
    # ClientHello and then never its Finished
    silent = socket.create_connection(srv.tls_address)
    half = socket.create_connection(srv.tls_address)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    stuck = socket.create_connection(srv.tls_address)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    engine = ca.client_context().wrap_bio(inc, out, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        engine.do_handshake()
    stuck.sendall(out.read())
    started = time.monotonic()
    # meanwhile others connect and chat without waiting
    a = clients(TlsRawClient(srv.tls_address, ca.client_context()))
    b = clients(RawClient(srv.address))
    a.hello("a")
    b.hello("b")
    assert a.request({"type": "say", "text": "not stalled"}, "ack").type == "ack"
    b.expect("message", text="not stalled")
    assert time.monotonic() - started < 0.9, "chat waited for the stuck handshakes"
    for s in (silent, half, stuck):
        s.settimeout(WAIT)
        while True:               # (the stuck one gets the server's handshake flight first)
            data = s.recv(65536)
            if not data:
                break
        s.close()
    elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 3.5, elapsed
    assert not [c for w in srv.workers for c in w.conns if c.name is None]
    assert a.request({"type": "say", "text": "still fine"}, "ack").type == "ack"


def test_many_handshakes_at_once_all_complete(tls_server, ca, clients):
    """Handshake steps are rationed per turn of an I/O thread (HANDSHAKES_PER_TURN):
    the deferred ones still finish."""
    import concurrent.futures
    srv = tls_server()
    ctx = ca.client_context()
    n = 60

    def one(i):
        c = clients(TlsRawClient(srv.tls_address, ctx))
        return c.hello(f"many{i}").name

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        names = list(pool.map(one, range(n)))
    assert names == [f"many{i}" for i in range(n)]


def test_handshake_bytes_the_kernel_does_not_take_wait_for_writable(tls_server, ca, clients,
                                                                     monkeypatch):
    """A handshake that "wants write": the TLS layer's own bytes go out a little at a
    time, each time the socket is writable (EVENT_WRITE), and it still completes."""
    real = tls_transport.TlsTransport._send_backlog
    calls = []

    def trickle(self):
        if not self.backlog:
            return
        calls.append(len(self.backlog))
        keep, self.backlog = self.backlog[97:], self.backlog[:97]
        real(self)                  # the kernel "takes" at most 97 bytes per call
        self.backlog += keep

    monkeypatch.setattr(tls_transport.TlsTransport, "_send_backlog", trickle)
    srv = tls_server()
    a = clients(TlsRawClient(srv.tls_address, ca.client_context()))
    a.hello("trickle", rooms=True)
    b = clients(RawClient(srv.address))
    b.hello("b", rooms=True)
    assert b.request({"type": "say", "text": "x" * 3000}, "ack").type == "ack"
    a.expect("message", text="x" * 3000)
    assert len(calls) > 20


def test_handshake_bytes_left_after_a_read_that_returned_data_still_go_out(
        tls_server, ca, monkeypatch):
    """The read that completes the handshake also returns data (a line in progress),
    and the TLS layer still has bytes of its own to send (session tickets) that the
    kernel did not take: they go out when the socket is writable, without waiting
    for the client to send anything more."""
    real = tls_transport.TlsTransport._send_backlog

    def trickle(self):
        keep, self.backlog = self.backlog[97:], self.backlog[:97]
        real(self)
        self.backlog += keep

    monkeypatch.setattr(tls_transport.TlsTransport, "_send_backlog", trickle)
    srv = tls_server()
    sock = socket.create_connection(srv.tls_address)
    sock.settimeout(WAIT)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    engine = ca.client_context().wrap_bio(inc, out, server_hostname="127.0.0.1")
    while True:
        try:
            engine.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out.pending:
                sock.sendall(out.read())
            inc.write(sock.recv(65536))
    engine.write(b'{"type":"hel')              # half a line: the server has nothing to say
    sock.sendall(out.read())                   # Finished and the data, in one segment
    deadline = time.monotonic() + WAIT

    def transports():
        return [c.transport for w in srv.workers for c in list(w.conns)]

    while not (transports() and all(t.handshaken and not t.backlog for t in transports())):
        assert time.monotonic() < deadline, "the server's handshake bytes were never sent"
        time.sleep(0.01)         # polling another thread's state, not synchronisation
    sock.close()


def test_close_notify_when_the_server_says_bye(tls_server, ca, clients):
    srv = tls_server()
    c = clients(TlsRawClient(srv.tls_address, ca.client_context()))
    c.hello("leaver")
    srv.stop(grace=2.0)
    bye = c.expect("bye")
    assert bye.reason == p.SHUTDOWN
    assert c.wait_closed(WAIT)
    assert not c.ragged, "the server closed without close_notify"


def test_client_bye_gets_acks_then_close_notify(tls_server, ca, clients):
    srv = tls_server()
    c = clients(TlsRawClient(srv.tls_address, ca.client_context()))
    c.hello("quitter")
    c.send(p.Say(text="last words", label="w"))
    c.send(p.Bye())
    c.expect("ack", label="w")
    assert c.wait_closed(WAIT)
    assert not c.ragged


# --- the server's certificate ------------------------------------------------------------
def test_self_signed_certificate_is_made_once_and_reused(tmp_path):
    cert, key, made = certs.self_signed(str(tmp_path))
    assert made and Path(cert).exists() and Path(key).exists()
    if sys.platform != "win32":
        assert Path(key).stat().st_mode & 0o077 == 0, "the key is readable by others"
    fp = certs.fingerprint(cert)
    cert2, key2, made2 = certs.self_signed(str(tmp_path))
    assert (cert2, key2, made2) == (cert, key, False)
    assert certs.fingerprint(cert2) == fp
    server_context(cert, key)          # usable


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_self_signed_with_the_openssl_command_when_cryptography_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography", None)      # import fails
    cert, key, made = certs.self_signed(str(tmp_path), ["localhost", "127.0.0.1"])
    assert made
    ctx = server_context(cert, key)
    assert ctx is not None
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().split("=", 1)[1] == certs.fingerprint(cert)


def test_without_cryptography_or_openssl_a_one_line_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.setattr(certs.shutil, "which", lambda name: None)
    with pytest.raises(certs.CertError) as e:
        certs.self_signed(str(tmp_path))
    assert "cryptography" in str(e.value) and "openssl" in str(e.value)
    assert "\n" not in str(e.value)


def test_server_command_prints_the_fingerprint_and_serves_tls(tmp_path):
    cmd = [sys.executable, str(ROOT / "python_server.py"), "--db", ":memory:",
           "--data-dir", str(tmp_path), "--port", "0", "--tls-port", "0",
           "--tls-self-signed", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any("fingerprint" in line for line in lines):
            line = proc.stderr.readline()
            assert line, f"the server exited: {lines}"
            lines.append(line)
        fp = certs.fingerprint(str(tmp_path / certs.CERT_FILE))
        tls_line = [line for line in lines if "fingerprint" in line][0]
        assert fp in tls_line
        port = int(tls_line.split("TLS on ")[1].split(",")[0].rsplit(":", 1)[1])
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = TlsRawClient(("127.0.0.1", port), ctx)
        assert c.hello("cmdline").name == "cmdline"
        from parley.client.tls import fingerprint
        assert fingerprint(c.sock.getpeercert(binary_form=True)) == fp
        c.close()
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_server_refuses_a_missing_certificate_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "python_server.py"), "--db", ":memory:",
                        "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key",
                        str(tmp_path / "nope.key")], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "nope.pem" in r.stderr


# --- the client session ----------------------------------------------------------------------
@pytest.fixture
def sessions():
    made = []

    def make(port, name, **kw):
        kw.setdefault("connect_timeout", 3.0)
        s = Session("127.0.0.1", port, name, client="tests", **kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_session_verifies_against_a_ca_file(tls_server, ca, sessions, tmp_path):
    srv = tls_server()
    known = tmp_path / "known_hosts"
    s = sessions(srv.tls_address[1], "verified",
                 tls=TlsOptions(ca=ca.ca_file, known_hosts=str(known), trust="no"))
    assert s.registered.wait(WAIT)
    assert s.tls_info.verified_by == "ca"
    assert not known.exists(), "a verified certificate is not pinned"


def test_session_with_a_ca_file_refuses_another_certificate(tls_server, sessions, tmp_path):
    srv = tls_server(cert=self_signed_pair(tmp_path))
    other = TestCA(tmp_path / "other")
    s = sessions(srv.tls_address[1], "strict",
                 tls=TlsOptions(ca=other.ca_file, known_hosts=str(tmp_path / "kh"), trust="yes"))
    ev = wait_for(s, lambda e: isinstance(e, TlsRefused), "refusal")
    assert "does not verify" in ev.message
    wait_for(s, lambda e: isinstance(e, StateChanged) and e.state is SessionState.CLOSED, "close")


def test_trust_on_first_use_then_same_passes_then_changed_refuses(tls_server, sessions, tmp_path):
    known = str(tmp_path / "known_hosts")
    first = self_signed_pair(tmp_path, "first")
    srv = tls_server(cert=first)
    port = srv.tls_address[1]
    # first use, asked: the fingerprint is shown; yes stores it
    s1 = sessions(port, "tofu", tls=TlsOptions(known_hosts=known, trust="ask"))
    q = wait_for(s1, lambda e: isinstance(e, TrustQuestion), "trust question")
    assert q.fingerprint == certs.fingerprint(first[0]) and q.port == port
    s1.trust(True)
    assert s1.registered.wait(WAIT)
    assert s1.tls_info.verified_by == "first use"
    assert KnownHosts(known).get("127.0.0.1", port) == q.fingerprint
    s1.close()
    # the same certificate: no question, even for a session that would refuse one
    s2 = sessions(port, "again", tls=TlsOptions(known_hosts=known, trust="no"))
    assert s2.registered.wait(WAIT)
    assert s2.tls_info.verified_by == "known_hosts"
    s2.close()
    srv.stop(grace=0.5)
    # another certificate on the same host:port: refused loudly, nothing changed on disk
    second = self_signed_pair(tmp_path, "second")
    tls_server(cert=second, tls_port=port)
    s3 = sessions(port, "mitm", tls=TlsOptions(known_hosts=known, trust="yes"))
    ev = wait_for(s3, lambda e: isinstance(e, TlsRefused), "refusal")
    assert ev.changed and ev.expected == q.fingerprint
    assert ev.fingerprint == certs.fingerprint(second[0])
    assert "CHANGED" in ev.message and known in ev.message
    wait_for(s3, lambda e: isinstance(e, StateChanged) and e.state is SessionState.CLOSED, "close")
    assert not s3.registered.is_set()
    assert KnownHosts(known).get("127.0.0.1", port) == q.fingerprint


def test_untrusted_first_use_stores_nothing(tls_server, sessions, tmp_path):
    known = tmp_path / "known_hosts"
    srv = tls_server(cert=self_signed_pair(tmp_path))
    s = sessions(srv.tls_address[1], "careful", tls=TlsOptions(known_hosts=str(known), trust="ask"))
    wait_for(s, lambda e: isinstance(e, TrustQuestion), "trust question")
    s.trust(False)
    ev = wait_for(s, lambda e: isinstance(e, TlsRefused), "refusal")
    assert not ev.changed and "not trusted" in ev.message
    assert not known.exists() or KnownHosts(str(known)).get("127.0.0.1", srv.tls_address[1]) is None


def test_session_reconnects_over_tls_and_catches_up(tls_server, ca, sessions, tmp_path):
    srv = tls_server()
    opts = TlsOptions(ca=ca.ca_file, known_hosts=str(tmp_path / "kh"))
    alice = sessions(srv.tls_address[1], "alice", tls=opts, backoff_initial=1.0)
    bob = sessions(srv.address[1], "bob")             # plain
    assert alice.registered.wait(WAIT) and bob.registered.wait(WAIT)
    alice.reconnect_now()
    wait_for(alice, lambda e: isinstance(e, StateChanged) and e.state is SessionState.RECONNECTING,
             "reconnecting")
    bob.say("while you were away")
    assert bob.wait_idle(WAIT)
    msg = wait_for(alice, lambda e: isinstance(e, p.Message) and e.text == "while you were away",
                   "the missed message")
    assert msg.sender == "bob"
    assert alice.tls_info is not None and alice.connected


def test_session_says_bye_with_close_notify(tls_server, ca, sessions, tmp_path):
    srv = tls_server()
    s = sessions(srv.tls_address[1], "polite",
                 tls=TlsOptions(ca=ca.ca_file, known_hosts=str(tmp_path / "kh")))
    assert s.registered.wait(WAIT)
    [transport] = [c.transport for w in srv.workers for c in list(w.conns)]
    s.close()
    deadline = time.monotonic() + WAIT
    while not transport.peer_closed:
        assert time.monotonic() < deadline, "no close_notify from the client"
        time.sleep(0.01)         # polling another thread's state, not synchronisation


def test_session_on_the_plain_port_with_tls_fails_clearly(tls_server, ca, sessions, tmp_path):
    srv = tls_server()
    from parley.client.session import ConnectFailed
    s = sessions(srv.address[1], "wrongport", tls=TlsOptions(ca=ca.ca_file,
                                                           known_hosts=str(tmp_path / "kh")))
    ev = wait_for(s, lambda e: isinstance(e, ConnectFailed), "connect failure")
    assert "TLS handshake failed" in ev.error and "TLS port" in ev.error


def test_plain_session_on_the_tls_port_stops_with_tls_required(tls_server, sessions):
    srv = tls_server()
    s = sessions(srv.tls_address[1], "plainly")
    err = wait_for(s, lambda e: isinstance(e, p.Error), "error")
    assert err.code == p.TLS_REQUIRED
    wait_for(s, lambda e: isinstance(e, StateChanged) and e.state is SessionState.CLOSED, "close")


def test_tls_under_the_windows_rules(server_cert, ca, tmp_path, monkeypatch):
    """Server and client sessions over TLS with selectors that take sockets only."""
    from test_windows_rules import SocketsOnlySelector
    import selectors
    SocketsOnlySelector.refused = 0
    monkeypatch.setattr(selectors, "DefaultSelector", SocketsOnlySelector)
    srv = Server("127.0.0.1", 0, Limits(), io_threads=2, db=":memory:",
                 selector_factory=SocketsOnlySelector,
                 tls=server_context(*server_cert), tls_port=0).start()
    try:
        port = srv.tls_address[1]
        opts = TlsOptions(ca=ca.ca_file, known_hosts=str(tmp_path / "kh"))
        alice = Session("127.0.0.1", port, "alice", client="test", tls=opts).start()
        bob = Session("127.0.0.1", port, "bob", client="test", tls=opts).start()
        assert alice.registered.wait(WAIT) and bob.registered.wait(WAIT)
        alice.say("hello over TLS, windows-like")
        wait_for(bob, lambda e: isinstance(e, p.Message) and e.text.startswith("hello over TLS"),
                 "the message")
        alice.reconnect_now()
        wait_for(alice, lambda e: isinstance(e, StateChanged) and e.state is SessionState.CONNECTED
                 and e.detail.startswith("reconnected"), "reconnected")
        alice.close()
        bob.close()
    finally:
        srv.stop(grace=0.5)
    assert SocketsOnlySelector.refused == 0


def test_garbage_that_looks_like_tls_never_hurts_the_server(tls_server, ca, caplog, clients):
    """Random records after a TLS-looking first byte, a ClientHello cut short then
    garbage, random bytes after a finished handshake: each connection is closed, the
    server logs no error, and a client that behaves still chats."""
    import random
    rng = random.Random(8)
    srv = tls_server()
    caplog.set_level(logging.INFO)
    payloads = [b"\x16\x03\x01" + rng.randbytes(rng.randrange(1, 3000)) for _ in range(15)]
    payloads += [b"\x16\x03\x01\x00\x05" + rng.randbytes(5) + b"\x17\x03\x03\x00\x10"
                 + rng.randbytes(16) for _ in range(5)]
    for data in payloads:
        s = socket.create_connection(srv.tls_address)
        s.settimeout(WAIT)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        s.close()
    # garbage inside an established TLS connection: an unwrapped write on its socket
    c = TlsRawClient(srv.tls_address, ca.client_context())
    c.hello("victim")
    socket.socket.send(c.sock, b"\x17\x03\x03\x00\x20" + rng.randbytes(32))
    with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC"):    # the server's alert
        c.wait_closed(WAIT)
    c.close()
    ok = clients(TlsRawClient(srv.tls_address, ca.client_context()))
    ok.hello("fine")
    assert ok.request({"type": "say", "text": "all good"}, "ack").type == "ack"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [c for w in srv.workers for c in w.conns if c.name != "fine"]
