"""Limits that outlive one connection: per-address connection limits and the
rate-limit bucket of a session.

Without these, a client kicked for flooding reconnects at once with a fresh
burst, one address can open connections without end, and a session that
reconnects (resume token) starts each connection with a full bucket.

* ``admit(address, now)`` is asked by the accept thread before a connection
  gets a slot: open connections per address, new connections per second per
  address (a token bucket), and a cool-down after one of the address's
  connections was kicked for flooding or protocol abuse.
* ``bucket_for(key, mine, now)``: every connection of one session (same resume
  token) shares one message bucket, and it survives a reconnect until it would
  have refilled anyway.

Loopback addresses are exempt unless ``limit_loopback`` (local tools, tests, a
reverse proxy in front of the server).  Sans-IO: the clock is passed in; one
lock, never held during I/O.  The accept thread and the I/O threads call it.
"""
from __future__ import annotations

import ipaddress
import math
import threading
from dataclasses import dataclass
from typing import Optional

from .. import protocol as p


@dataclass
class Bucket:
    """A token bucket (``tokens`` refill at ``rate``/s up to ``size``) and the
    strikes of rejected frames (leaking at the same rate)."""
    tokens: float
    time: float
    strikes: float = 0.0

    def refill(self, now: float, rate: float, size: float) -> None:
        elapsed = max(0.0, now - self.time)
        self.time = now
        self.tokens = min(float(size), self.tokens + elapsed * rate)
        self.strikes = max(0.0, self.strikes - elapsed * rate)

    def full_at(self, rate: float, size: float) -> float:
        """When it will be full again (and its strikes gone) if nobody uses it."""
        need = max(float(size) - self.tokens, self.strikes)
        return self.time + (need / rate if rate > 0 else math.inf)


@dataclass
class Refusal:
    """Why a new connection is refused: an error to send before closing it."""
    code: str
    message: str
    retry_after: Optional[float] = None

    def frame(self) -> bytes:
        return p.encode(p.Error(self.code, self.message, retry_after=self.retry_after))


def ceil_ms(seconds: float) -> float:
    """Rounded up to the millisecond (waiting that long is enough), ignoring
    float noise below a microsecond (0.30000000000000004 s is 0.3 s)."""
    return math.ceil(seconds * 1000 - 1e-3) / 1000


def address_of(peer: str) -> str:
    """The IP address of a peer written ``address:port``."""
    return peer.rsplit(":", 1)[0]


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback      # (scoped "::1%lo" too)
    except ValueError:
        return False


class Guard:
    def __init__(self, *, max_per_address: int = 16, connect_rate: float = 2.0,
                 connect_burst: int = 10, kick_cooldown: float = 10.0,
                 limit_loopback: bool = False, rate: float = 5.0, burst: int = 20):
        self.max_per_address = max_per_address
        self.connect_rate = connect_rate
        self.connect_burst = connect_burst
        self.kick_cooldown = kick_cooldown
        self.limit_loopback = limit_loopback
        self.rate, self.burst = rate, burst          # the message bucket of a session
        self.lock = threading.Lock()
        self.open: dict[str, int] = {}               # address -> open connections
        self.connects: dict[str, Bucket] = {}        # address -> new-connection bucket
        self.banned_until: dict[str, float] = {}     # address -> end of its cool-down
        self.buckets: dict[object, Bucket] = {}      # session key -> message bucket

    @classmethod
    def from_limits(cls, limits) -> "Guard":
        """The guard of a server with these ``session.Limits``."""
        return cls(max_per_address=limits.max_per_address, connect_rate=limits.connect_rate,
                   connect_burst=limits.connect_burst, kick_cooldown=limits.kick_cooldown,
                   limit_loopback=limits.limit_loopback, rate=limits.rate, burst=limits.burst)

    def exempt(self, address: str) -> bool:
        return not self.limit_loopback and is_loopback(address)

    # --- connections ------------------------------------------------------------
    def admit(self, address: str, now: float) -> Optional[Refusal]:
        """A new connection from ``address``: None to let it in (and count it
        as open until ``closed``), or why not."""
        if self.exempt(address):
            return None
        with self.lock:
            until = self.banned_until.get(address)
            if until is not None:
                if now < until:
                    wait = ceil_ms(until - now)
                    return Refusal(p.THROTTLED, "a connection from your address was kicked; "
                                   f"wait {wait:g} s before reconnecting", wait)
                del self.banned_until[address]
            if self.open.get(address, 0) >= self.max_per_address:
                n = self.max_per_address
                return Refusal(p.TOO_MANY_CONNECTIONS, f"at most {n} connection"
                               f"{'' if n == 1 else 's'} from one address")
            b = self.connects.get(address)
            if b is None:
                b = self.connects[address] = Bucket(float(self.connect_burst), now)
            else:
                b.refill(now, self.connect_rate, self.connect_burst)
            if b.tokens < 1:
                wait = ceil_ms((1 - b.tokens) / self.connect_rate)
                return Refusal(p.THROTTLED, f"too many new connections: at most "
                               f"{self.connect_rate:g} per second from one address", wait)
            b.tokens -= 1
            self.open[address] = self.open.get(address, 0) + 1
            return None

    def closed(self, address: str) -> None:
        """A connection that ``admit`` let in is gone."""
        if self.exempt(address):
            return
        with self.lock:
            n = self.open.get(address, 0) - 1
            if n > 0:
                self.open[address] = n
            else:
                self.open.pop(address, None)

    def kicked(self, address: str, now: float) -> None:
        """One of the address's connections was kicked (flood, protocol abuse)."""
        if self.exempt(address) or self.kick_cooldown <= 0:
            return
        with self.lock:
            self.banned_until[address] = now + self.kick_cooldown

    # --- the message bucket of a session -------------------------------------------
    def bucket_for(self, key: object, mine: Bucket, now: float) -> Bucket:
        """The bucket every connection of session ``key`` shares: the one it
        already has (used since the last reconnect), else ``mine``."""
        with self.lock:
            shared = self.buckets.get(key)
            if shared is None:
                self.buckets[key] = mine
                return mine
            shared.refill(now, self.rate, self.burst)
            # what this connection spent before its hello counts too
            shared.tokens = min(shared.tokens, mine.tokens)
            shared.strikes = max(shared.strikes, mine.strikes)
            return shared

    def prune(self, now: float) -> None:
        """Forget what no longer limits anyone: full buckets, ended cool-downs."""
        with self.lock:
            for key in [k for k, b in self.buckets.items()
                        if b.full_at(self.rate, self.burst) <= now]:
                del self.buckets[key]
            for addr in [a for a, b in self.connects.items()
                         if b.full_at(self.connect_rate, self.connect_burst) <= now]:
                del self.connects[addr]
            for addr in [a for a, t in self.banned_until.items() if t <= now]:
                del self.banned_until[addr]
