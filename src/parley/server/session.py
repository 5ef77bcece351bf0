"""One client's session on the server, sans-IO: a state machine.

It takes decoded frames (and the time) and answers with actions; it never
touches a socket, a thread or the clock.  The I/O thread (connection.py)
feeds it what a transport decoded and carries out what it returns:

    actions = session.receive(item, now)     # a frame or a ProtocolError
    actions = session.tick(now)              # timers: handshake, ping, ping timeout
    for a in actions:  Send(frame) -> queue it for this client
                       Close(reason, message, notify) -> say bye (or not) and close

States::

    HANDSHAKE --hello ok--> OPEN --bye / kick / timeout--> CLOSED
        |  (a refused hello stays in HANDSHAKE: the client may try another name)
        +--hello with a password--> AUTHENTICATING --checked--> OPEN (or back to HANDSHAKE)

A password is checked on the hub's login workers (scrypt is slow on purpose);
the hub pushes the welcome or the error itself and marks the ``Pending`` done,
which the session notices at its next frame or tick.

Chat requests go to the hub (``Hub.say``, ``Hub.join`` …), which answers
asynchronously by pushing frames to the member; a request refused at once
comes back here as an ``Error`` and is sent.  Rate limiting is a token bucket
per session; rejected frames (rate-limited or invalid) count as strikes,
which leak at the refill rate, and too many close the connection.
"""
from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from typing import Optional, Union

from .. import protocol as p
from .guard import Bucket, Guard, address_of, is_loopback

log = logging.getLogger("parley.server")


@dataclass
class Limits:
    """Every limit has a name, a default and a command-line flag (see app.py)."""
    max_line: int = 16384          # bytes in one protocol line
    max_text: int = 4000           # characters in one chat message
    rate: float = 5.0              # frames per second per client (token bucket refill)
    burst: int = 20                # token bucket size
    flood_kick: int = 30           # rejected frames (leaking at `rate`/s) before a kick
    outbox: int = 1 << 20          # bytes a client may lag behind before it is dropped
    ping_interval: float = 30.0    # seconds of silence before the server pings
    ping_timeout: float = 30.0     # seconds to answer a ping
    handshake_timeout: float = 15.0  # seconds from connecting to a successful hello
    history: int = 500             # messages sent at most in one catch-up
    join_history: int = 20         # recent messages of each room shown to a newcomer
    max_clients: int = 20000       # simultaneous connections
    presence_limit: int = 100      # rooms with more members get coalesced presence
    hold: float = 15.0             # seconds a user whose connection was lost stays online
    max_per_address: int = 16      # open connections from one address
    connect_rate: float = 2.0      # new connections per second from one address (refill)
    connect_burst: int = 10        # new connections from one address at once
    kick_cooldown: float = 10.0    # seconds an address waits after a kick for flooding
    limit_loopback: bool = False   # apply the per-address limits to 127.0.0.1/::1 too

    def public(self) -> dict:
        """The limits a client is told in its welcome."""
        return {"max_line": self.max_line, "max_text": self.max_text,
                "rate": self.rate, "burst": self.burst,
                "ping_interval": self.ping_interval}


class State(enum.Enum):
    HANDSHAKE = "handshake"
    AUTHENTICATING = "authenticating"    # a password being checked on a login worker
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class Send:
    """Send this frame to this client only."""
    event: p.Event


@dataclass
class Close:
    """End the connection; with ``notify`` say ``bye`` with the reason first."""
    reason: str
    message: Optional[str] = None
    notify: bool = True


Action = Union[Send, Close]


class ServerSession:
    """The protocol state of one connection.  ``member`` is what the hub pushes
    frames to (the connection); ``hub`` is the shared chat state."""

    def __init__(self, hub, member, limits: Limits, now: float, guard: Optional[Guard] = None):
        self.hub = hub
        self.guard = guard
        self.member = member
        self.limits = limits
        self.state = State.HANDSHAKE
        self.user = None                 # the hub's User once registered
        self.connected_at = now
        self.last_recv = now
        self.ping_sent: Optional[float] = None
        # the rate limit; shared by the session's connections once registered
        self.bucket = Bucket(float(limits.burst), now)
        self.last_rate_error: Optional[float] = None
        self.refusals = 0                # refused hellos (each gives the user more time)
        self.pending = None              # hub.Pending while AUTHENTICATING

    @property
    def secure(self) -> bool:
        """May a password cross this connection: TLS, or from this very machine."""
        if getattr(self.member, "secure", False):
            return True
        return is_loopback(address_of(self.member.peer))

    @property
    def name(self) -> Optional[str]:
        return self.user.name if self.user is not None else None

    # --- input ---------------------------------------------------------------------
    def receive(self, item: Union[p.Event, p.ProtocolError], now: float) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        self.last_recv = now
        self.ping_sent = None
        if isinstance(item, p.Pong):             # never counts against the rate limit
            return []
        if self.state is State.AUTHENTICATING:
            self._check_pending(now)
        self.bucket.refill(now, self.limits.rate, self.limits.burst)
        if self.bucket.tokens < 1:
            return self._rate_limited(item, now)
        self.bucket.tokens -= 1
        if isinstance(item, p.ProtocolError):
            out: list[Action] = [Send(p.Error(item.code, item.message, item.label))]
            if self._strike():
                out.append(self._close(p.PROTOCOL, "too many invalid frames"))
            return out
        if isinstance(item, p.Ping):
            return [Send(p.Pong(token=item.token))]
        if isinstance(item, p.Bye):
            return [self._close(p.QUIT, notify=False)]
        if isinstance(item, p.Hello):
            return self._hello(item, now)
        label = getattr(item, "label", None)
        if self.state is State.AUTHENTICATING:
            return [Send(p.Error(p.NOT_REGISTERED, "still logging in: wait for the welcome",
                                 label))]
        if self.state is not State.OPEN:
            return [Send(p.Error(p.NOT_REGISTERED, "send hello with a name first", label))]
        error = self._dispatch(item, label)
        return [Send(error)] if error is not None else []

    def _hello(self, hello: p.Hello, now: float) -> list[Action]:
        if self.state is State.OPEN:
            return [Send(p.Error(p.ALREADY_REGISTERED, f"you are already registered as {self.name}"))]
        if self.state is State.AUTHENTICATING:
            return [Send(p.Error(p.ALREADY_REGISTERED, "still logging in: wait for the welcome"))]
        refusal = self.hub.register(self.member, hello, self.secure)
        if refusal is not None and not isinstance(refusal, p.Error):      # a Pending
            self.state = State.AUTHENTICATING
            self.pending = refusal
            return []
        if refusal is not None:
            self._refused(refusal.code, hello.name)
            return [Send(refusal)]
        self._opened(self.hub.users.get(hello.name.casefold()), now)
        return []

    def _refused(self, code: str, name: str) -> None:
        self.refusals += 1
        if self.refusals <= 4:       # a person picking another name gets more time
            self.connected_at = self.last_recv
        log.info("%s refused %r: %s", self.member.peer, name[:40], code)

    def _opened(self, user, now: float) -> None:
        self.user = user
        self.state = State.OPEN
        if self.guard is not None and self.user is not None:
            # a reconnect (or a second device) of the session does not bring a fresh burst
            self.bucket = self.guard.bucket_for(self.user.sid, self.bucket, now)

    def _check_pending(self, now: float) -> None:
        pending = self.pending
        if pending is None or not pending.done:
            return
        self.pending = None
        if pending.user is not None:
            self._opened(pending.user, now)
        else:                        # refused (the hub sent why): the client may try again
            self.state = State.HANDSHAKE
            self._refused("login", "")

    def _dispatch(self, item: p.Event, label: Optional[str]) -> Optional[p.Error]:
        hub, user, member = self.hub, self.user, self.member
        if isinstance(item, (p.Say, p.Me)):
            problem = p.text_problem(item.text, self.limits.max_text)
            if problem:
                return p.Error(*problem, label)
            if user.legacy and (item.room not in (None, p.GENERAL) or item.to is not None):
                return p.Error(p.BAD_REQUEST, "ask for the rooms capability to use rooms "
                               "and direct messages", label)
            return hub.say(member, user, item.text, item.type, label, item.room, item.to)
        if isinstance(item, p.UsersRequest):
            users = hub.users_in(user, item.room)
            if isinstance(users, p.Error):
                users.label = label
                return users
            guests = hub.guests_among(users) if not user.legacy else None
            member.push(p.encode(p.UserList(users=users, label=label, room=item.room,
                                            guests=guests or None)))
            return None
        if user.legacy:
            return p.Error(p.BAD_REQUEST, f"'{item.type}' needs the rooms capability "
                           f"(hello with \"caps\":[\"rooms\"])", label)
        if isinstance(item, p.JoinRequest):
            return hub.join(member, user, item.room, label)
        if isinstance(item, p.PartRequest):
            return hub.part(member, user, item.room, label)
        if isinstance(item, p.TopicRequest):
            return hub.topic(member, user, item.room, item.topic, label)
        if isinstance(item, p.RoomsRequest):
            member.push(p.encode(p.RoomList(rooms=hub.rooms_list(user), label=label)))
            return None
        if isinstance(item, (p.HistoryRequest, p.SearchRequest)):
            return hub.query(member, user, item)
        if isinstance(item, p.ReadMarker):
            return hub.mark_read(member, user, item)
        if isinstance(item, p.RegisterRequest):
            return hub.claim(member, user, item.password, self.secure, label)
        if isinstance(item, p.PasswordRequest):
            return hub.change_password(member, user, item.old, item.new, self.secure, label)
        if isinstance(item, p.SessionsRequest):
            return hub.sessions(member, user, label)
        if isinstance(item, p.RevokeRequest):
            return hub.revoke(member, user, item)
        if isinstance(item, p.ModRequest):
            return hub.moderate(member, user, item)
        if isinstance(item, p.AuditRequest):
            return hub.audit_log(member, user, item)
        return p.Error(p.UNKNOWN_TYPE, f"'{item.type}' is not a request", label)

    # --- limits --------------------------------------------------------------------
    def _strike(self) -> bool:
        """Count a rejected frame; True if the client must now be kicked."""
        self.bucket.strikes += 1
        return self.bucket.strikes > self.limits.flood_kick

    def _rate_limited(self, item, now: float) -> list[Action]:
        out: list[Action] = []
        label = getattr(item, "label", None)
        # labelled frames always get their answer; unlabelled errors at most once a second
        if label is not None or self.last_rate_error is None or now - self.last_rate_error >= 1.0:
            self.last_rate_error = now
            # rounded up to the millisecond: a client that waits exactly this long is let in
            wait = math.ceil((1 - self.bucket.tokens) / self.limits.rate * 1000) / 1000
            out.append(Send(p.Error(p.RATE_LIMITED,
                                    f"slow down: at most {self.limits.rate:g} messages per "
                                    f"second (burst {self.limits.burst})", label,
                                    retry_after=wait)))
        if self._strike():
            out.append(self._close(p.FLOOD, "kicked for flooding"))
        return out

    # --- timers --------------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """Called every half second or so: handshake timeout, pings, ping timeout."""
        if self.state is State.CLOSED:
            return []
        limits = self.limits
        if self.state is State.AUTHENTICATING:
            self._check_pending(now)
            if self.state is State.AUTHENTICATING:
                return []            # the login workers always answer (no timeout here)
        if self.state is State.HANDSHAKE:
            # counted from connect: pinging or failing hellos never keeps a slot
            if now - self.connected_at > limits.handshake_timeout:
                return [self._close(p.TIMEOUT, f"no hello within {limits.handshake_timeout:g} s")]
            return []
        if self.ping_sent is not None:
            if now - self.ping_sent > limits.ping_timeout:
                return [self._close(p.TIMEOUT, f"no answer to ping within {limits.ping_timeout:g} s")]
        elif now - self.last_recv > limits.ping_interval:
            self.ping_sent = now
            return [Send(p.Ping(token=str(int(now * 1000))))]
        return []

    def _close(self, reason: str, message: Optional[str] = None, notify: bool = True) -> Close:
        self.state = State.CLOSED
        return Close(reason, message or p.LEAVE_REASONS.get(reason), notify)

    def closed(self, reason: str) -> None:
        """The connection is gone (for whatever reason): leave the chat."""
        self.state = State.CLOSED
        user, self.user = self.user, None
        pending, self.pending = self.pending, None
        if pending is not None:         # still logging in (or admitted, not yet noticed)
            self.hub.abandon(self.member, pending, reason)
        elif user is not None:
            self.hub.leave(self.member, user, reason)
