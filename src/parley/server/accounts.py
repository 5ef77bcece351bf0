"""Passwords and login throttling for accounts: pure functions and a sans-IO
throttle (the clock is passed in).  No sockets, no database, no threads: the
hub runs ``hash_password``/``verify_password`` on a worker pool, never on an
I/O thread, because each one costs tens of megabytes and a tenth of a second
of CPU on purpose.

Hashes are stored as text that carries their own parameters, so the cost can
be raised later without locking anyone out (``needs_rehash`` tells the hub to
store a new hash at the next successful login)::

    scrypt$n=32768,r=8,p=1$<salt, base64>$<key, base64>

Parameters: scrypt with N = 2**15, r = 8, p = 1 (32 MiB and 0.1-0.4 s per
hash on a 2-core machine), ``maxmem`` 64 MiB, a 16-byte random salt and a
32-byte key.  OWASP's minimum for scrypt is N = 2**17 with r = 8 (128 MiB);
we take less so that a burst of logins on a small classroom server stays
within memory (at most ``workers`` hashes run at once), and say so here.

A login for a name without an account runs the same hash against a dummy, so
a failed login takes the same time and gives the same answer whether or not
the account exists.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import threading
from dataclasses import dataclass
from typing import Optional

SCRYPT_N = 2 ** 15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES = 16
KEY_BYTES = 32

PASSWORD_MIN = 8             # characters
PASSWORD_MAX = 1024          # characters: bounds what a hash has to read

LOGIN_FAILED = "wrong name or password"     # the one answer to every failed login


def password_problem(password: str) -> Optional[str]:
    """Why a new password will not do, or None."""
    if len(password) < PASSWORD_MIN:
        return f"a password needs at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"a password has at most {PASSWORD_MAX} characters"
    if not password.strip():
        return "a password cannot be only spaces"
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=SCRYPT_MAXMEM, dklen=KEY_BYTES)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R,
                  p: int = SCRYPT_P) -> str:
    """A new salted hash of ``password``, with its parameters, as text."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, n, r, p)
    return f"scrypt$n={n},r={r},p={p}${_b64(salt)}${_b64(key)}"


@dataclass(frozen=True)
class Parsed:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def parse_hash(stored: str) -> Optional[Parsed]:
    """The parts of a stored hash, or None if it is not one we can check."""
    try:
        scheme, params, salt, key = stored.split("$")
        if scheme != "scrypt":
            return None
        values = dict(kv.split("=", 1) for kv in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        parsed = Parsed(n, r, p, base64.b64decode(salt, validate=True),
                        base64.b64decode(key, validate=True))
    except (ValueError, KeyError):
        return None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not parsed.salt or not parsed.key:
        return None
    return parsed


_dummy_lock = threading.Lock()
_dummy: Optional[str] = None


def _dummy_hash() -> str:
    global _dummy
    with _dummy_lock:
        if _dummy is None:
            _dummy = hash_password(secrets.token_urlsafe(16))
        return _dummy


def verify_password(password: str, stored: Optional[str]) -> bool:
    """True if ``password`` matches ``stored``.  With ``stored`` None (no such
    account) or unreadable, the same work is done against a dummy hash and the
    answer is False: the time does not tell whether the account exists."""
    parsed = parse_hash(stored) if stored is not None else None
    real = parsed is not None
    if parsed is None:
        parsed = parse_hash(_dummy_hash())
        assert parsed is not None
    key = _scrypt(password, parsed.salt, parsed.n, parsed.r, parsed.p)
    return hmac.compare_digest(key, parsed.key) and real


def needs_rehash(stored: str) -> bool:
    """True if ``stored`` was made with weaker parameters than today's."""
    parsed = parse_hash(stored)
    return (parsed is None or parsed.n < SCRYPT_N or parsed.r < SCRYPT_R
            or parsed.p < SCRYPT_P or len(parsed.key) < KEY_BYTES)


def new_token() -> str:
    """A session token: 32 random bytes, URL-safe text (only its hash is stored)."""
    return secrets.token_urlsafe(32)


class LoginThrottle:
    """Failed logins, counted per account (casefolded name) and per address.

    Each key may fail ``free`` times; after that every further failure doubles
    its wait, from ``base`` seconds up to ``cap``.  A success clears the
    account's count (not the address's: one address trying many accounts stays
    slowed).  Counts fade: a key with no failure for ``forget`` seconds starts
    over.  Like Synapse, Zulip and Ergo, both keys are limited so that neither
    guessing one account from many addresses nor many accounts from one
    address goes fast.  Thread-safe; the clock is passed in.
    """

    def __init__(self, *, free: int = 5, base: float = 1.0, cap: float = 300.0,
                 forget: float = 3600.0):
        self.free, self.base, self.cap, self.forget = free, base, cap, forget
        self.lock = threading.Lock()
        self.fails: dict[str, tuple[int, float]] = {}   # key -> (failures, last failure)

    @staticmethod
    def keys(name: str, address: str) -> tuple[str, str]:
        return "user:" + name.casefold(), "addr:" + address

    def _wait(self, key: str, now: float) -> float:
        entry = self.fails.get(key)
        if entry is None:
            return 0.0
        count, last = entry
        if now - last >= self.forget:
            del self.fails[key]
            return 0.0
        if count < self.free:
            return 0.0
        delay = min(self.cap, self.base * 2 ** (count - self.free))
        return max(0.0, last + delay - now)

    def wait(self, name: str, address: str, now: float) -> float:
        """Seconds before a login for ``name`` from ``address`` may be tried
        (0: now), rounded up to the millisecond."""
        with self.lock:
            w = max(self._wait(k, now) for k in self.keys(name, address))
        return math.ceil(w * 1000) / 1000

    def failed(self, name: str, address: str, now: float) -> None:
        with self.lock:
            for key in self.keys(name, address):
                count, last = self.fails.get(key, (0, now))
                if now - last >= self.forget:
                    count = 0
                self.fails[key] = (count + 1, now)

    def succeeded(self, name: str, address: str) -> None:
        with self.lock:
            self.fails.pop(self.keys(name, address)[0], None)

    def prune(self, now: float) -> None:
        with self.lock:
            for key in [k for k, (_, last) in self.fails.items() if now - last >= self.forget]:
                del self.fails[key]
