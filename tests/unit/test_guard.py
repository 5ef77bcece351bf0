"""Per-address connection limits and the session's shared rate bucket, without
sockets: the clock is passed in."""
import pytest

from parley import protocol as p
from parley.server.guard import Bucket, Guard, Refusal, address_of, is_loopback
from parley.server.session import Limits, ServerSession, State

from test_server_session import FakeHub, FakeMember, hello

ADDR = "192.0.2.7"          # TEST-NET-1: never loopback


def test_peer_strings_give_their_address():
    assert address_of("192.0.2.7:51000") == "192.0.2.7"
    assert address_of("::1:51000") == "::1"
    assert address_of("fe80::1%eth0:4000") == "fe80::1%eth0"


@pytest.mark.parametrize("addr, loop", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("::1%lo", True),
    ("192.0.2.7", False),
    ("::ffff:192.0.2.7", False), ("fe80::1%eth0", False), ("not an address", False)])
def test_loopback_addresses(addr, loop):
    assert is_loopback(addr) is loop


def test_open_connections_per_address_are_limited_and_freed_on_close():
    g = Guard(max_per_address=2, connect_burst=100)
    assert g.admit(ADDR, 0.0) is None
    assert g.admit(ADDR, 0.0) is None
    r = g.admit(ADDR, 0.0)
    assert r.code == p.TOO_MANY_CONNECTIONS and "at most 2 connections" in r.message
    assert r.retry_after is None
    assert g.admit("192.0.2.8", 0.0) is None            # another address is not affected
    g.closed(ADDR)
    assert g.admit(ADDR, 0.0) is None                   # a slot came free
    assert g.admit(ADDR, 0.0).code == p.TOO_MANY_CONNECTIONS
    g.closed(ADDR)
    g.closed(ADDR)
    assert ADDR not in g.open                           # counted down to nothing: forgotten
    g.closed(ADDR)                                      # (one too many: never negative)
    assert ADDR not in g.open


def test_new_connections_per_second_are_a_token_bucket_with_retry_after():
    g = Guard(max_per_address=100, connect_rate=2.0, connect_burst=3)
    for _ in range(3):
        assert g.admit(ADDR, 10.0) is None
    r = g.admit(ADDR, 10.0)
    assert r.code == p.THROTTLED and r.retry_after == 0.5
    assert "at most 2 per second" in r.message
    assert g.admit(ADDR, 10.25).retry_after == 0.25      # a refused try costs nothing
    assert g.admit(ADDR, 10.5) is None                   # waiting retry_after is enough
    assert g.admit(ADDR, 10.5).code == p.THROTTLED
    assert g.admit(ADDR, 12.0) is None                   # refills at 2 per second...
    assert g.admit(ADDR, 12.0) is None
    assert g.admit(ADDR, 12.0) is None
    assert g.admit(ADDR, 12.0).code == p.THROTTLED       # ...up to the burst of 3
    assert g.open[ADDR] == 7                             # refused tries never counted as open


def test_retry_after_is_rounded_up_to_the_millisecond():
    g = Guard(connect_rate=3.0, connect_burst=1)
    assert g.admit(ADDR, 0.0) is None
    r = g.admit(ADDR, 0.0)
    assert r.retry_after == 0.334                        # 1/3 s, rounded up
    assert g.admit(ADDR, 0.334) is None


def test_a_kick_makes_the_address_wait_then_it_is_let_in_again():
    g = Guard(kick_cooldown=10.0, connect_burst=100)
    assert g.admit(ADDR, 0.0) is None
    g.kicked(ADDR, 5.0)
    r = g.admit(ADDR, 7.5)
    assert r.code == p.THROTTLED and r.retry_after == 7.5
    assert r.message == "a connection from your address was kicked; wait 7.5 s before reconnecting"
    assert g.admit("192.0.2.8", 7.5) is None             # only that address
    assert g.admit(ADDR, 15.0) is None                   # the cool-down ended exactly then
    assert ADDR not in g.banned_until


def test_no_cooldown_when_it_is_zero():
    g = Guard(kick_cooldown=0.0)
    g.kicked(ADDR, 1.0)
    assert not g.banned_until
    assert g.admit(ADDR, 1.0) is None


def test_a_short_cooldown_still_counts():
    g = Guard(kick_cooldown=0.5)
    g.kicked(ADDR, 1.0)
    assert g.admit(ADDR, 1.2).retry_after == 0.3
    assert g.admit(ADDR, 1.5) is None


def test_the_defaults_are_the_servers_limits():
    g, lim = Guard(), Limits()
    assert (g.max_per_address, g.connect_rate, g.connect_burst, g.kick_cooldown,
            g.limit_loopback, g.rate, g.burst) == (
        lim.max_per_address, lim.connect_rate, lim.connect_burst, lim.kick_cooldown,
        lim.limit_loopback, lim.rate, lim.burst)


def test_loopback_is_exempt_unless_asked():
    g = Guard(max_per_address=1, connect_burst=1, kick_cooldown=60)
    g.kicked("127.0.0.1", 0.0)
    for _ in range(5):
        assert g.admit("127.0.0.1", 0.0) is None
        assert g.admit("::1", 0.0) is None
    g.closed("127.0.0.1")
    assert not g.open and not g.connects and not g.banned_until
    strict = Guard(max_per_address=1, connect_burst=5, limit_loopback=True)
    assert strict.admit("127.0.0.1", 0.0) is None
    assert strict.admit("127.0.0.1", 0.0).code == p.TOO_MANY_CONNECTIONS
    strict.closed("127.0.0.1")
    assert strict.admit("127.0.0.1", 0.0) is None
    strict.kicked("127.0.0.1", 0.0)
    assert strict.admit("127.0.0.1", 1.0).code == p.THROTTLED


def test_a_refusal_is_an_error_frame():
    frame = Refusal(p.THROTTLED, "wait", 1.5).frame()
    assert frame == p.encode(p.Error(p.THROTTLED, "wait", retry_after=1.5))


def test_a_bucket_refills_at_its_rate_up_to_its_size_and_strikes_leak():
    b = Bucket(tokens=0.0, time=10.0, strikes=3.0)
    b.refill(11.0, rate=2.0, size=5)
    assert (b.tokens, b.strikes, b.time) == (2.0, 1.0, 11.0)
    b.refill(20.0, rate=2.0, size=5)
    assert (b.tokens, b.strikes) == (5.0, 0.0)
    b.refill(19.0, rate=2.0, size=5)                     # a clock that goes back: no change
    assert (b.tokens, b.time) == (5.0, 19.0)


def test_a_bucket_knows_when_it_is_full_again():
    assert Bucket(tokens=1.0, time=10.0).full_at(rate=2.0, size=5) == 12.0
    assert Bucket(tokens=5.0, time=10.0, strikes=4.0).full_at(rate=2.0, size=5) == 12.0
    assert Bucket(tokens=5.0, time=10.0).full_at(rate=2.0, size=5) == 10.0
    assert Bucket(tokens=0.0, time=10.0).full_at(rate=0.0, size=5) == float("inf")


def test_the_connections_of_one_session_share_one_bucket():
    g = Guard(rate=1.0, burst=10)
    first = Bucket(4.0, 0.0)
    assert g.bucket_for("sid", first, 0.0) is first
    second = Bucket(9.0, 0.0, strikes=2.0)                # fresh but for its hello
    shared = g.bucket_for("sid", second, 2.0)
    assert shared is first
    assert shared.tokens == 6.0                           # 4 + 2 s at 1/s, not 9
    assert shared.strikes == 2.0                          # the larger strike count
    spent = Bucket(1.0, 2.0)
    assert g.bucket_for("sid", spent, 2.0).tokens == 1.0  # and what the new one already spent
    assert g.bucket_for("other", Bucket(10.0, 2.0), 2.0) is not first


def test_prune_forgets_only_what_no_longer_limits_anyone():
    g = Guard(rate=1.0, burst=10, connect_rate=1.0, connect_burst=2, kick_cooldown=5.0)
    g.bucket_for("busy", Bucket(0.0, 0.0), 0.0)          # full again at 10
    g.bucket_for("idle", Bucket(8.0, 0.0), 0.0)          # full again at 2
    g.admit(ADDR, 0.0)                                    # connect bucket full again at 1
    g.kicked("192.0.2.9", 0.0)                           # waits until 5
    g.prune(1.0)
    assert ADDR not in g.connects                         # full exactly then: forgotten
    g.prune(2.0)
    assert set(g.buckets) == {"busy"}
    assert ADDR not in g.connects and "192.0.2.9" in g.banned_until
    assert g.open == {ADDR: 1}                            # open connections are never pruned
    g.prune(5.0)
    assert not g.banned_until
    g.prune(9.9)
    assert set(g.buckets) == {"busy"}
    g.prune(10.0)
    assert not g.buckets


class SidUser:
    def __init__(self, name, sid):
        self.name, self.sid, self.legacy = name, sid, False


class SidHub(FakeHub):
    """Resuming with the same token gives the same session id."""

    def register(self, member, hello, secure=True):
        self.calls.append(("register", hello.name))
        self.users[hello.name.casefold()] = SidUser(hello.name, "sid-" + (hello.token or hello.name))
        return None


def test_a_reconnecting_session_does_not_get_a_fresh_burst():
    guard = Guard(rate=1.0, burst=5)
    limits = Limits(rate=1.0, burst=5, flood_kick=100)
    hub = SidHub()
    s1 = ServerSession(hub, FakeMember(), limits, 0.0, guard)
    s1.receive(hello("amy"), 0.0)
    assert s1.state is State.OPEN
    said = [s1.receive(p.Say(text="hi", label=f"a{i}"), 0.0) for i in range(4)]
    assert said == [[]] * 4                               # hello + 4 = the burst of 5
    s1.closed(p.LOST)
    s2 = ServerSession(hub, FakeMember(), limits, 0.0, guard)
    s2.receive(hello("amy"), 0.0)                          # its hello is let in (own bucket)...
    assert s2.state is State.OPEN
    out = s2.receive(p.Say(text="again", label="b0"), 0.0)
    assert [a.event.code for a in out] == [p.RATE_LIMITED]   # ...but no fresh burst after it
    assert out[0].event.label == "b0"
    assert s2.receive(p.Say(text="later", label="b1"), 1.0) == []   # refilled at 1/s
    # another person (another session) has a burst of its own
    s3 = ServerSession(hub, FakeMember(), limits, 1.0, guard)
    s3.receive(hello("bob"), 1.0)
    assert all(s3.receive(p.Say(text="x"), 1.0) == [] for _ in range(4))


def test_without_a_guard_each_connection_has_its_own_bucket():
    limits = Limits(rate=1.0, burst=2)
    hub = SidHub()
    for _ in range(2):
        s = ServerSession(hub, FakeMember(), limits, 0.0)
        s.receive(hello("amy"), 0.0)
        assert s.receive(p.Say(text="hi"), 0.0) == []


def test_ceil_ms_rounds_up_but_not_float_noise():
    from parley.server.guard import ceil_ms
    assert ceil_ms(1.5 - 1.2) == 0.3
    assert ceil_ms(0.3001) == 0.301
    assert ceil_ms(1 / 3) == 0.334
    assert ceil_ms(2.0) == 2.0


def test_one_connection_is_said_in_the_singular():
    g = Guard(max_per_address=1)
    g.admit(ADDR, 0.0)
    assert g.admit(ADDR, 0.0).message == "at most 1 connection from one address"
    g = Guard(max_per_address=3)
    for _ in range(3):
        g.admit(ADDR, 0.0)
    assert g.admit(ADDR, 0.0).message == "at most 3 connections from one address"


def test_a_servers_guard_takes_every_limit_from_its_limits():
    lim = Limits(max_per_address=3, connect_rate=0.5, connect_burst=4, kick_cooldown=7.0,
                 limit_loopback=True, rate=2.0, burst=9)
    g = Guard.from_limits(lim)
    assert (g.max_per_address, g.connect_rate, g.connect_burst, g.kick_cooldown,
            g.limit_loopback, g.rate, g.burst) == (3, 0.5, 4, 7.0, True, 2.0, 9)
