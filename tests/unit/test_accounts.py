"""Password hashing and login throttling (issue 8), without sockets."""
import base64
import time

import pytest

from parley.server import accounts as a

FAST = dict(n=2 ** 10, r=8, p=1)        # cheap parameters for tests of the format


def test_a_hash_carries_its_parameters_salt_and_key():
    h = a.hash_password("correct horse", **FAST)
    scheme, params, salt, key = h.split("$")
    assert (scheme, params) == ("scrypt", "n=1024,r=8,p=1")
    assert len(base64.b64decode(salt)) == a.SALT_BYTES
    assert len(base64.b64decode(key)) == a.KEY_BYTES
    assert a.parse_hash(h) == a.Parsed(1024, 8, 1, base64.b64decode(salt), base64.b64decode(key))


def test_the_default_parameters_are_the_documented_ones():
    h = a.hash_password("correct horse")
    assert h.startswith("scrypt$n=32768,r=8,p=1$")
    assert a.verify_password("correct horse", h)
    assert not a.needs_rehash(h)


def test_each_hash_has_its_own_salt():
    assert a.hash_password("same password", **FAST) != a.hash_password("same password", **FAST)


def test_verify_accepts_the_password_and_nothing_else():
    h = a.hash_password("correct horse", **FAST)
    assert a.verify_password("correct horse", h) is True
    for wrong in ("correct hors", "Correct horse", "correct horse ", ""):
        assert a.verify_password(wrong, h) is False
    assert a.verify_password("pässwörd ☃", a.hash_password("pässwörd ☃", **FAST))


def test_verify_uses_the_stored_parameters_not_todays():
    old = a.hash_password("correct horse", n=2 ** 11, r=4, p=2)
    assert a.verify_password("correct horse", old)
    assert a.needs_rehash(old)


@pytest.mark.parametrize("params, rehash", [
    ("n=16384,r=8,p=1", True), ("n=32768,r=4,p=1", True), ("n=65536,r=8,p=1", False),
    ("n=32768,r=8,p=2", False), ("n=65536,r=4,p=1", True)])
def test_needs_rehash_when_any_parameter_is_below_todays(params, rehash):
    key = base64.b64encode(b"k" * 32).decode()
    assert a.needs_rehash(f"scrypt${params}$c2FsdA==${key}") is rehash


def test_a_short_key_or_garbage_needs_rehash():
    short = base64.b64encode(b"k" * 16).decode()
    assert a.needs_rehash(f"scrypt$n=32768,r=8,p=1$c2FsdA==${short}")
    assert a.needs_rehash("garbage")


@pytest.mark.parametrize("stored", [
    "", "scrypt", "bcrypt$n=1024,r=8,p=1$c2FsdA==$a2V5", "scrypt$n=1000,r=8,p=1$c2FsdA==$a2V5",
    "scrypt$n=1,r=8,p=1$c2FsdA==$a2V5", "scrypt$n=1024,r=0,p=1$c2FsdA==$a2V5",
    "scrypt$n=1024,r=8,p=0$c2FsdA==$a2V5", "scrypt$n=1024,r=8$c2FsdA==$a2V5",
    "scrypt$n=x,r=8,p=1$c2FsdA==$a2V5", "scrypt$n=1024,r=8,p=1$$a2V5",
    "scrypt$n=1024,r=8,p=1$c2FsdA==$", "scrypt$n=1024,r=8,p=1$not base64!$a2V5",
    "scrypt$n=1024,r=8,p=1$c2FsdA==$a2V5$extra"])
def test_unreadable_hashes_are_refused_not_raised_on(stored):
    assert a.parse_hash(stored) is None
    assert a.verify_password("anything at all", stored) is False


def test_no_account_costs_a_hash_and_fails(monkeypatch):
    calls = []
    real = a._scrypt
    monkeypatch.setattr(a, "_scrypt", lambda *args: calls.append(args[2:]) or real(*args))
    assert a.verify_password("whatever you like", None) is False
    assert calls == [(a.SCRYPT_N, a.SCRYPT_R, a.SCRYPT_P)]     # the real cost, not a shortcut
    # even the dummy's own password does not log in to a missing account
    monkeypatch.setattr(a, "_dummy", a.hash_password("dummy pass", **FAST))
    assert a.verify_password("dummy pass", None) is False


def test_password_rules():
    assert a.password_problem("x" * 7) == "a password needs at least 8 characters"
    assert a.password_problem("x" * 8) is None
    assert a.password_problem("x" * 1024) is None
    assert a.password_problem("x" * 1025) == "a password has at most 1024 characters"
    assert a.password_problem(" " * 9) == "a password cannot be only spaces"


def test_tokens_are_long_random_and_url_safe():
    t = {a.new_token() for _ in range(50)}
    assert len(t) == 50
    assert all(len(x) >= 43 and set(x) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for x in t)


# --- throttling -----------------------------------------------------------------------
def test_the_free_failures_then_a_doubling_wait():
    t = a.LoginThrottle(free=3, base=1.0, cap=8.0, forget=3600)
    for i in range(3):
        assert t.wait("amy", "192.0.2.1", 100.0) == 0.0
        t.failed("amy", "192.0.2.1", 100.0)
    assert t.wait("amy", "192.0.2.1", 100.0) == 1.0
    assert t.wait("amy", "192.0.2.1", 100.4) == 0.6
    assert t.wait("amy", "192.0.2.1", 101.0) == 0.0
    waits = []
    for k in range(5):
        t.failed("amy", "192.0.2.1", 200.0)
        waits.append(t.wait("amy", "192.0.2.1", 200.0))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]              # doubling, up to the cap


def test_names_are_throttled_in_any_letter_case_and_from_any_address():
    t = a.LoginThrottle(free=2, base=5.0)
    t.failed("Amy", "192.0.2.1", 0.0)
    t.failed("AMY", "192.0.2.2", 0.0)
    assert t.wait("amy", "192.0.2.3", 0.0) == 5.0          # a third address, same account
    assert t.wait("bob", "192.0.2.3", 0.0) == 0.0


def test_one_address_trying_many_accounts_is_throttled():
    t = a.LoginThrottle(free=2, base=5.0)
    t.failed("amy", "192.0.2.1", 0.0)
    t.failed("bob", "192.0.2.1", 0.0)
    assert t.wait("carl", "192.0.2.1", 0.0) == 5.0
    assert t.wait("carl", "192.0.2.9", 0.0) == 0.0


def test_success_clears_the_account_but_not_the_address():
    t = a.LoginThrottle(free=1, base=5.0)
    t.failed("amy", "192.0.2.1", 0.0)
    t.succeeded("amy", "192.0.2.1")
    assert t.wait("amy", "192.0.2.2", 0.0) == 0.0
    assert t.wait("bob", "192.0.2.1", 0.0) == 5.0


def test_failures_are_forgotten_after_a_quiet_while():
    t = a.LoginThrottle(free=1, base=5.0, forget=60.0)
    t.failed("amy", "192.0.2.1", 0.0)
    assert t.wait("amy", "192.0.2.2", 4.0) == 1.0
    assert t.wait("amy", "192.0.2.2", 5.0) == 0.0
    t.failed("amy", "192.0.2.1", 100.0)                     # a new round starts at one
    assert t.fails["user:amy"] == (1, 100.0)
    t.prune(159.9)
    assert "user:amy" in t.fails
    t.prune(160.0)
    assert not t.fails
    t.failed("amy", "192.0.2.1", 200.0)
    assert t.wait("amy", "192.0.2.1", 260.0) == 0.0         # waiting forgets too
    assert "user:amy" not in t.fails

