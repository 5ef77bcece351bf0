"""The hub: who is online, which rooms they are in, and fan-out.  No sockets.

Three nouns, as in miniircd: a ``User`` (one chat session: a name, a resume
token, one or more connections), a ``Room`` (name, topic, members, its own
broadcast log and a small cache of recent history) and the ``Hub`` that holds
them under one lock.

The path of a message::

    Hub.say()        validate under the lock, hand a Write to the store (no I/O here)
    store writer     commits a batch, then calls Hub.committed() on its thread
    Hub.committed()  under the lock: encode each frame ONCE, append it to its
                     room's BroadcastLog (or push a DM to both users' connections),
                     push the sender's ack after it; then wake the I/O threads
    I/O thread       sends every connection what lies between its cursor and the
                     end of each room log it follows, in one send() (connection.py)

Nothing is sent or acknowledged before it is stored, so an id a client has
seen is never reused, even after ``kill -9``.  The lock is held only to
change or snapshot state, never for socket or disk I/O.

The hub sees connections only through ``Member`` (subscribe to a log, push a
private frame, hold/release): cursors and sockets live in connection.py.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from .. import __version__
from .. import protocol as p
from . import accounts as acc
from . import moderation as mod
from .accountdb import Account
from .guard import address_of, is_loopback
from .store import CHAT, Store, Write

log = logging.getLogger("parley.hub")

PRESENCE_NAMES = 5          # names listed in one coalesced presence frame
HOLD_REASONS = (p.LOST, p.TIMEOUT, p.SENDQ)   # connection ends that may be a reconnect soon
LABEL_WINDOW = 256          # labels remembered per user to make a resent message idempotent


class Member(Protocol):
    """What the hub needs from a connection (connection.Connection).  Every
    method is thread-safe: it queues work for the connection's own I/O thread."""
    peer: str
    legacy: bool            # a protocol-1 client: #general only, no new frame types

    def subscribe(self, log: "BroadcastLog", pos: int) -> None: ...
    def unsubscribe(self, log: "BroadcastLog") -> None: ...
    def push(self, frame: bytes, log: Optional["BroadcastLog"] = None, pos: int = 0,
             first: bool = False) -> None: ...
    def hold(self) -> None: ...
    def release(self) -> None: ...
    def replaced(self) -> None: ...
    def kick(self, reason: str, message: Optional[str] = None) -> None: ...


class BroadcastLog:
    """Append-only list of encoded frames with absolute positions.

    ``frames[i - base]`` is frame number ``i``.  The front is trimmed once the
    log holds more than ``2 * keep_bytes``: a reader further behind than
    ``keep_bytes`` has exceeded its outbox bound and is disconnected anyway.
    Not locked itself: the hub's lock guards it.
    """

    def __init__(self, keep_bytes: int, name: str = ""):
        self.name = name
        self.keep_bytes = keep_bytes
        self.followed_by: set = set()  # the I/O threads with a connection on it (their business)
        self.frames: list[bytes] = []
        self.ids: list[int] = []      # ids[i - base]: the id frame i sorts by (its message id)
        self.ends: list[int] = []     # ends[i - base]: total bytes up to and including frame i
        self.base = 0
        self.base_offset = 0          # total bytes before frame ``base``
        self.total = 0

    def __repr__(self) -> str:
        return f"<BroadcastLog {self.name} {self.base}..{self.end}>"

    @property
    def end(self) -> int:
        return self.base + len(self.frames)

    def append(self, frame: bytes, id: int) -> None:
        """Add an encoded frame; ``id`` orders it among other logs' frames (a frame
        without an id of its own, such as presence, takes the newest id so far)."""
        self.frames.append(frame)
        self.ids.append(id)
        self.total += len(frame)
        self.ends.append(self.total)
        if self.total - self.base_offset > 2 * self.keep_bytes:
            self._trim()

    def _trim(self) -> None:
        limit = self.total - self.keep_bytes
        # first index whose end is beyond the limit: keep it and all after
        lo, hi = 0, len(self.ends)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.ends[mid] <= limit:
                lo = mid + 1
            else:
                hi = mid
        if lo:
            self.base_offset = self.ends[lo - 1]
            del self.frames[:lo]
            del self.ids[:lo]
            del self.ends[:lo]
            self.base += lo

    def offset(self, pos: int) -> int:
        """Total bytes before frame ``pos`` (pos >= base)."""
        return self.base_offset if pos == self.base else self.ends[pos - self.base - 1]

    def lag(self, pos: int) -> Optional[int]:
        """Bytes from ``pos`` to the end, or None if ``pos`` was trimmed away."""
        if pos < self.base:
            return None
        return self.total - self.offset(min(pos, self.end))

    def slice(self, start: int, stop: int) -> bytes:
        return b"".join(self.frames[start - self.base:stop - self.base])


@dataclass(eq=False)
class Room:
    key: str                    # casefolded name: the identity
    name: str                   # as created: '#Python'
    topic: str
    log: BroadcastLog
    recent: collections.deque   # the last few history frames (dicts), oldest first
    members: dict = field(default_factory=dict)      # user key -> User (online)
    # coalesced presence of a big room, flushed at most once a second
    joined: list = field(default_factory=list)
    left: list = field(default_factory=list)
    joined_count: int = 0
    left_count: int = 0


@dataclass(eq=False)
class User:
    """One chat session: a name, its resume token (hash), its rooms, its connections."""
    sid: str
    name: str
    token_hash: bytes
    conns: list = field(default_factory=list)          # Members, newest last
    rooms: dict = field(default_factory=dict)          # room key -> Room
    labels: "collections.OrderedDict[str, int]" = field(default_factory=collections.OrderedDict)
    legacy: bool = False
    token: str = ""             # kept in memory only, to tell a resuming client again
    dm_log: Optional[BroadcastLog] = None    # its direct messages, followed by its connections
    account: Optional[Account] = None        # None: a guest
    # each connection's token hash and login id: an account has one login per
    # device, so a device that reconnects replaces only its own connection
    tokens: dict = field(default_factory=dict)
    login_ids: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.name.casefold()


@dataclass(eq=False)
class _Registration:
    user: User
    member: Member
    last_id: Optional[int]       # the client's resume point (None: a newcomer)
    resumed: bool
    new_session: bool
    token: str = ""              # what its welcome tells it (its device's token)
    outstanding: int = 0         # join writes not yet committed
    watermark: int = 0           # the newest id when it started following its rooms
    own: set = field(default_factory=set)   # ids of its own joins: not in its catch-up


@dataclass(eq=False)
class _Sent:
    """What the hub remembers about a Write until it is committed."""
    user: Optional[User]
    member: Optional[Member]
    label: Optional[str] = None
    registration: Optional[_Registration] = None
    reply: Optional[Callable[[], None]] = None      # run once stored
    tail: Optional[bytes] = None     # a message's encoded fields after id and ts (made early)
    after: Optional[Callable[[bytes], None]] = None   # (locked) once appended: its frame


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Pending:
    """A hello with a password, being checked on a login worker.  The session
    looks at ``done``; ``user`` is who it became (None: refused, and its error
    was pushed).  Set before the welcome or the error is pushed."""
    __slots__ = ("done", "user", "cancelled")

    def __init__(self) -> None:
        self.done = False
        self.user: Optional[User] = None
        self.cancelled = False          # the connection closed while it was checked


@dataclass(eq=False)
class _Identity:
    """Who a hello turned out to be, before the locked part of registering."""
    sid: str
    name: str
    token: str
    th: bytes
    account: Optional[Account] = None
    login_id: Optional[str] = None
    rooms_before: Optional[list] = None      # stored memberships (None: a new session)
    fresh_login: bool = False                # a password login: a device of its own


class Hub:
    """Shared state of one chat server.  Every public method is thread-safe."""

    def __init__(self, store: Optional[Store] = None, *, history: int = 500,
                 join_history: int = 20, outbox_bytes: int = 1 << 20,
                 limits: Optional[dict] = None, presence_limit: int = 100,
                 recent: int = 200, readers: int = 2,
                 clock: Callable[[], float] = time.time, auth: str = p.AUTH_OPTIONAL,
                 allow_plain_passwords: bool = False, open_registration: bool = True,
                 login_workers: int = 2, hold: float = 0.0):
        if auth not in p.AUTH_MODES:
            raise ValueError(f"auth is one of {p.AUTH_MODES}, not {auth!r}")
        self.lock = threading.Lock()
        self.auth = auth
        self.allow_plain_passwords = allow_plain_passwords
        self.open_registration = open_registration
        self.clock = clock
        # password hashing (scrypt: ~32 MiB and 0.1-0.4 s each, on purpose) runs
        # here, never on an I/O thread; at most ``login_workers`` at once
        self.logins = ThreadPoolExecutor(max(1, login_workers), thread_name_prefix="parley-login")
        self.throttle = acc.LoginThrottle()
        self.store = store if store is not None else Store(":memory:", clock=clock)
        self.history = history
        self.join_history = join_history
        self.keep_bytes = outbox_bytes
        self.limits = dict(limits or {})
        self.presence_limit = presence_limit
        self.recent_size = max(recent, join_history)
        self.users: dict[str, User] = {}          # casefolded name -> User (online)
        self._quoted: dict[str, bytes] = {}        # the same, each name JSON-encoded once
        self.rooms: dict[str, Room] = {}          # room key -> Room (every room there is)
        self.last_id = 0                           # newest id sent out (committed)
        self.instance = ""
        self.readers = ThreadPoolExecutor(max(1, readers), thread_name_prefix="parley-read")
        self.on_append: Callable[[], None] = lambda: None   # wakes the I/O threads
        # after a commit: wake just the I/O threads of these members and these logs
        self.on_wake: Callable[[set, list], None] = lambda members, logs: self.on_append()
        self._touched: set = set()                 # (locked) members pushed to in a commit
        self._presence_dirty: set[Room] = set()
        self._presence_sent = float("-inf")
        self._started = False
        self.rules = mod.Rules()                   # roles, sanctions, invites (locked)
        self.hold = hold                           # s a user stays after a lost connection
        self._held: dict = {}                      # (locked) User -> (monotonic end, reason)

    # --- life cycle --------------------------------------------------------------
    def start(self) -> "Hub":
        """Open the store, load the rooms, start the writer.  Raises StoreError."""
        if self._started:
            return self
        if not self.store.opened:
            self.store.open()
        self.instance = self.store.instance
        self.last_id = self.store.last_id
        for key, name, topic in self.store.rooms():
            self._add_room(key, name, topic, self.store.recent(key, self.recent_size))
        if p.GENERAL not in self.rooms:
            self._add_room(p.GENERAL, p.GENERAL, "", [])
            self.store.submit(Write(op="room", room=p.GENERAL, name=p.GENERAL))
        self.rules = self.store.moderation_rules()
        self.store.start(self.committed)
        self._started = True
        return self

    def close(self) -> None:
        self.logins.shutdown(cancel_futures=True)
        self.readers.shutdown(cancel_futures=True)      # (waits for a running read)
        self.store.close()

    def _add_room(self, key: str, name: str, topic: str, recent: list) -> Room:
        room = Room(key, name, topic, BroadcastLog(self.keep_bytes, name),
                    collections.deque(recent, maxlen=self.recent_size))
        self.rooms[key] = room
        return room

    def _big(self, room: Room) -> bool:
        return len(room.members) > self.presence_limit

    def _room_info(self, room: Room, user: User, label: Optional[str] = None) -> p.RoomInfo:
        """(locked) ``room`` as ``user`` sees it: with its role there, so that a
        client offers moderation only to whom may use it."""
        count = len(room.members)
        members = None if count > self.presence_limit else [u.name for u in room.members.values()]
        guests = None
        if members is not None and self.auth == p.AUTH_OPTIONAL:
            guests = [u.name for u in room.members.values() if u.account is None] or None
        return p.RoomInfo(room=room.name, count=count, topic=room.topic, members=members,
                          history=self._recent_chat(room), label=label, guests=guests,
                          role=self.rules.roles.get((room.key, user.sid)))

    def guests_among(self, names: list) -> Optional[list]:
        """Which of ``names`` (online) are guests; None unless --auth optional."""
        if self.auth != p.AUTH_OPTIONAL:
            return None
        with self.lock:
            return [n for n in names if (u := self.users.get(n.casefold())) is not None
                    and u.account is None]

    def _recent_chat(self, room: Room) -> list:
        if not self.join_history:
            return []
        chat = [f for f in room.recent if f["type"] == "message"]
        return chat[-self.join_history:]

    # --- registration -------------------------------------------------------------
    @property
    def accounts_on(self) -> bool:
        return self.auth != p.AUTH_OFF

    def register(self, member: Member, hello: p.Hello,
                 secure: bool = True) -> "Optional[p.Error] | Pending":
        """Add ``member`` as ``hello.name``; its welcome follows (pushed) once its
        joins are stored.  Returns an error if refused (the client may retry), or
        a ``Pending`` for a password login (checked on a login worker, whose
        answer is pushed).  ``secure``: TLS or loopback (passwords allowed)."""
        if hello.version != p.PROTOCOL_VERSION:
            return p.Error(p.VERSION_UNSUPPORTED,
                           f"this server speaks protocol version {p.PROTOCOL_VERSION}, "
                           f"not {hello.version}")
        problem = p.validate_name(hello.name)
        if problem:
            return p.Error(p.NAME_INVALID, f"{problem} ({p.NAME_RULES})")
        if hello.password is not None or hello.register:
            refusal = self._password_refusal(hello.password, secure)
            if refusal is not None:
                return refusal
            if hello.register and not self.open_registration:
                return p.Error(p.AUTH_REQUIRED, "accounts on this server are made by its "
                               "admins; ask one for an account")
            pending = Pending()
            address = address_of(member.peer)
            self.logins.submit(self._login, member, hello, pending, address)
            return pending
        key = hello.name.casefold()
        ident: Optional[_Identity] = None
        th = token_hash(hello.token) if hello.token else None
        if th is not None and self.accounts_on:
            login = self.store.login_by_token_hash(th)        # a device of an account
            if login is not None:
                account = self.store.account_by_sid(login.sid)
                if account is not None and account.key == key:
                    ident = _Identity(account.sid, account.name, hello.token, th, account,
                                      login.id, self.store.memberships(account.sid))
        if ident is None and th is not None and key not in self.users:
            stored = self.store.session_by_token_hash(th)      # a guest session from before
            if stored is not None and stored[1].casefold() == key:
                ident = _Identity(stored[0], stored[1], hello.token, th,
                                  rooms_before=self.store.memberships(stored[0]))
        if ident is None or ident.account is None:
            if key not in self.users or ident is not None:
                refusal = self._guest_refusal(hello.name)
                if refusal is not None:
                    if th is not None and refusal.code == p.NAME_REGISTERED and ident is None:
                        # the token of a login that was revoked (or of another server)
                        return p.Error(p.LOGIN_FAILED, "this session was logged out: log in "
                                       "with your password")
                    return refusal
        return self._admit(member, hello, ident)

    def abandon(self, member: Member, pending: Pending, reason: str) -> None:
        """The connection of a login being checked closed: if it was admitted
        meanwhile, it leaves; if not, it will not be."""
        with self.lock:
            user = pending.user
            if user is None:
                pending.cancelled = True
        if user is not None:
            self.leave(member, user, reason)

    def _password_refusal(self, password: Optional[str], secure: bool) -> Optional[p.Error]:
        if not self.accounts_on:
            return p.Error(p.ACCOUNTS_OFF, "this server has no accounts (--auth off): "
                           "connect without a password")
        if password is None:
            return p.Error(p.BAD_PASSWORD, "give a password")
        if not secure and not self.allow_plain_passwords:
            return p.Error(p.INSECURE, "this server takes passwords only over TLS (or from "
                           "its own machine): connect with TLS")
        if len(password) > acc.PASSWORD_MAX:
            return p.Error(p.BAD_PASSWORD, f"a password has at most {acc.PASSWORD_MAX} characters")
        return None

    def _guest_refusal(self, name: str) -> Optional[p.Error]:
        """Why a guest may not take ``name`` (None: it may)."""
        if self.auth == p.AUTH_REQUIRED_MODE:
            return p.Error(p.AUTH_REQUIRED, "this server is for its members: log in with your "
                           "password (or register an account)")
        if self.auth == p.AUTH_OPTIONAL and self.store.account(name) is not None:
            return p.Error(p.NAME_REGISTERED, f"the name {name!r} belongs to an account: log in "
                           f"with its password, or pick another name")
        return None

    def _login(self, member: Member, hello: p.Hello, pending: Pending, address: str) -> None:
        """(login worker) Check a password (or make an account), then register."""
        try:
            result = self._check_login(hello, address)
            if isinstance(result, _Identity):
                ident = result
                result = self._admit(member, hello, ident, pending)
                if ident.fresh_login and (result is not None or pending.cancelled):
                    # not admitted (its connection closed meanwhile, or a ban): the
                    # login made for it would only clutter the account's sessions
                    self.store.revoke_logins(ident.sid, ident.login_id)
        except Exception as e:
            log.error("%s: a login failed: %s", member.peer, type(e).__name__)
            result = p.Error(p.INTERNAL, "the server failed to check that login; try again")
        if result is not None:
            pending.done = True
            member.push(p.encode(result))
            self.on_wake({member}, [])

    def _check_login(self, hello: p.Hello, address: str) -> "_Identity | p.Error":
        name, password = hello.name, hello.password or ""
        now = time.monotonic()
        wait = self.throttle.wait(name, address, now)
        if wait > 0:
            return p.Error(p.THROTTLED, f"too many failed logins: try again in {wait:g} s",
                           retry_after=wait)
        if hello.register:
            problem = acc.password_problem(password)
            if problem:
                return p.Error(p.BAD_PASSWORD, problem)
            with self.lock:
                online = self.users.get(name.casefold())
            if online is not None:
                return p.Error(p.NAME_TAKEN, f"the name {name!r} is taken; try another")
            account = self.store.create_account(name, secrets.token_hex(8),
                                                acc.hash_password(password))
            if account is None:
                return p.Error(p.NAME_TAKEN, f"the name {name!r} is registered already; "
                               f"log in, or pick another name")
            log.info("%s registered the account %s", address, account.name)
        else:
            account = self.store.account(name)
            if not acc.verify_password(password, account.hash if account else None):
                self.throttle.failed(name, address, time.monotonic())
                log.info("%s: failed login for %r", address, name[:40])
                return p.Error(p.LOGIN_FAILED, acc.LOGIN_FAILED)
            self.throttle.succeeded(name, address)
            assert account is not None
            if acc.needs_rehash(account.hash):
                self.store.set_password_hash(account.sid, acc.hash_password(password))
        token = acc.new_token()
        th = token_hash(token)
        device = (hello.device or hello.client or "")[:p.DEVICE_MAX]
        login = self.store.add_login(th, account.sid, device)
        return _Identity(account.sid, account.name, token, th, account, login.id,
                         self.store.memberships(account.sid), fresh_login=True)

    def _admit(self, member: Member, hello: p.Hello, ident: Optional[_Identity],
               pending: Optional[Pending] = None) -> Optional[p.Error]:
        """The locked part of registering: a new user, or another connection of
        one online (the same device back, or another device of an account)."""
        key = hello.name.casefold()
        legacy = p.CAP_ROOMS not in (hello.caps or [])
        last_id = hello.last_id
        if last_id is not None and hello.instance not in (None, self.instance):
            last_id = 0                 # ids of another database: send all we can
        member.legacy = legacy
        th = token_hash(hello.token) if hello.token else None
        writes: list[Write] = []
        stored = ident is not None and ident.rooms_before is not None
        with self.lock:
            if pending is not None and pending.cancelled:
                return None             # its connection is gone: nobody to admit
            whos = ["addr:" + address_of(member.peer)]
            if ident is not None:
                whos.append("sid:" + ident.sid)
            online = self.users.get(key)
            if online is not None:
                whos.append("sid:" + online.sid)
            ban = self.rules.find(mod.BAN, "", whos, self._now_ms())
            if ban is not None and (ban.who.startswith("sid:") or ident is None
                                    or ident.account is None):
                # (an address ban is for guests: an account on a shared network still gets in)
                return p.Error(p.BANNED, mod.describe(ban, "from this server"))
            user = self.users.get(key)
            if user is not None:
                if ident is not None and ident.account is not None:
                    if user.sid != ident.sid:
                        return p.Error(p.NAME_TAKEN, f"the name {hello.name!r} is taken; try another")
                    th = ident.th
                    user.account = ident.account          # (as stored now: admin may change)
                elif user.account is not None and self.accounts_on and th is not None:
                    # an account's devices come back by their login (checked above)
                    return p.Error(p.LOGIN_FAILED, "this session was logged out: log in with "
                                   "your password")
                elif th is None or not hmac.compare_digest(th, user.token_hash):
                    if user.account is not None and self.accounts_on:
                        return self._guest_refusal(hello.name) or p.Error(
                            p.NAME_REGISTERED, f"the name {hello.name!r} belongs to an account")
                    return p.Error(p.NAME_TAKEN, f"the name {hello.name!r} is taken; try another")
                # the same device back on a new connection (no leave/join notices), or
                # another device of the account
                for old in [c for c in user.conns if user.tokens.get(c) == th]:
                    old.replaced()
                    user.conns.remove(old)
                    user.tokens.pop(old, None)
                    user.login_ids.pop(old, None)
                user.conns.append(member)
                user.tokens[member] = th
                if ident is not None and ident.login_id is not None:
                    user.login_ids[member] = ident.login_id
                user.legacy = legacy
                token = ident.token if ident is not None else user.token
                reg = _Registration(user, member, last_id, resumed=True, new_session=False,
                                    token=token)
                if ident is not None and ident.fresh_login:
                    reg.last_id = last_id = None     # a new device: like a newcomer
            else:
                if ident is not None:
                    sid, name, token, th = ident.sid, ident.name, ident.token, ident.th
                    rooms_before = ident.rooms_before or []
                    rooms = [k for k in rooms_before if k in self.rooms] or [p.GENERAL]
                else:
                    sid, name, token = secrets.token_hex(8), hello.name, secrets.token_urlsafe(24)
                    rooms_before = []
                    rooms = [p.GENERAL]
                    th = token_hash(token)
                if legacy:
                    rooms = [p.GENERAL]
                user = User(sid, name, th, [member], legacy=legacy, token=token,
                            dm_log=BroadcastLog(self.keep_bytes, "@" + name),
                            account=ident.account if ident is not None else None)
                user.tokens[member] = th
                if ident is not None and ident.login_id is not None:
                    user.login_ids[member] = ident.login_id
                self.users[key] = user
                self._quoted[key] = p.quote(name).encode()
                new_session = not stored
                reg = _Registration(user, member, last_id, resumed=False,
                                    new_session=new_session, token=token)
                if ident is None:
                    writes.append(Write(op="session", sid=sid, name=name, token_hash=th))
                for rkey in rooms:
                    writes.extend(self._enter_room(user, self.rooms[rkey], reg, store_membership=(
                        not stored or rkey not in rooms_before)))
            member.hold()
            if not reg.outstanding:
                self._subscribe_all(reg)
            if pending is not None:
                pending.user = user         # (locked: see abandon())
        if pending is not None:
            pending.done = True
        for w in writes:
            self.store.submit(w)
        if not reg.outstanding:
            self._finish_registration(reg)
        log.info("%s %s %s", member.peer, user.name,
                 "resumed" if reg.resumed else ("reopened its session" if stored else "joined"))
        return None

    def _enter_room(self, user: User, room: Room, reg: Optional[_Registration] = None,
                    store_membership: bool = True, label: Optional[str] = None,
                    member: Optional[Member] = None) -> list[Write]:
        """(locked) Put ``user`` in ``room``; return the writes that record it."""
        writes = []
        room.members[user.key] = user
        user.rooms[room.key] = room
        if store_membership:
            writes.append(Write(op="member_add", sid=user.sid, room=room.key))
        if self._big(room):
            self._presence(room, user.name, joined=True)
        else:
            sent = _Sent(user, member, label, registration=reg)
            if reg is not None:
                reg.outstanding += 1
            writes.append(Write(op="event", kind="join", room=room.key, sender=user.name,
                                sender_sid=user.sid, ctx=sent))
        return writes

    def _presence(self, room: Room, name: str, joined: bool) -> None:
        names, other = (room.joined, room.left) if joined else (room.left, room.joined)
        if name in other:              # came and went within one second: say neither
            other.remove(name)
            if joined:
                room.left_count -= 1
            else:
                room.joined_count -= 1
        else:
            if len(names) < PRESENCE_NAMES:
                names.append(name)
            if joined:
                room.joined_count += 1
            else:
                room.left_count += 1
        self._presence_dirty.add(room)

    def flush_presence(self, now: Optional[float] = None) -> None:
        """Send each big room's coalesced joins and leaves, at most once a second."""
        if not self._presence_dirty:
            return
        now = time.monotonic() if now is None else now
        if now - self._presence_sent < 1.0:
            return
        self._presence_sent = now
        grown = []
        with self.lock:
            rooms, self._presence_dirty = self._presence_dirty, set()
            for room in rooms:
                if room.joined_count or room.left_count:
                    frame = p.Presence(room=room.name, count=len(room.members),
                                       joined=room.joined, left=room.left,
                                       joined_count=room.joined_count,
                                       left_count=room.left_count)
                    room.log.append(p.encode(frame), self.last_id)
                    grown.append(room.log)
                room.joined, room.left = [], []
                room.joined_count = room.left_count = 0
        self.on_wake(set(), grown)

    def _subscribe_all(self, reg: _Registration) -> None:
        """(locked) The member follows its rooms' logs from their ends now."""
        member = reg.member
        for room in reg.user.rooms.values():
            member.subscribe(room.log, room.log.end)
        dms = reg.user.dm_log
        member.subscribe(dms, dms.end)
        reg.watermark = self.last_id

    def _finish_registration(self, reg: _Registration) -> None:
        """Push the welcome: now for a newcomer (recent messages come from the
        rooms' caches); for a reconnecting client its catch-up is read from the
        store on a reader thread (the connection is on hold until then)."""
        if reg.last_id is not None and reg.last_id < reg.watermark:
            self.readers.submit(self._welcome, reg)
        else:
            self._welcome(reg)

    def _welcome(self, reg: _Registration) -> None:
        user, member = reg.user, reg.member
        watermark = reg.watermark
        with self.lock:
            rooms = list(user.rooms.values())
            infos = [self._room_info(r, user) for r in rooms] if not user.legacy else None
            many = len(self.users) > self.presence_limit
            # everyone's name, pre-encoded: spliced into the welcome outside the lock
            quoted = list(self._quoted.values()) if user.legacy or not many else None
            caches = {r.key: [f for f in r.recent if f["type"] == "message"][-self.join_history:]
                      for r in rooms} if reg.last_id is None and self.join_history else {}
            room_keys = [r.key for r in rooms]
            # (not for an old client, which gets everyone's name: O(users) a welcome)
            guests = ([u.name for u in self.users.values() if u.account is None]
                      if self.auth == p.AUTH_OPTIONAL and quoted is not None
                      and not user.legacy else None)
            login_id = user.login_ids.get(member)
        truncated = False
        if reg.last_id is None:          # a newcomer: the last few messages of each room
            history = []
            for chat in caches.values():
                history.extend(chat)
            if user.account is not None and not user.legacy:
                # an account on a new device: the direct messages and mentions that
                # waited for it (unread), beside each room's last few messages
                try:
                    seen = {f["id"] for f in history}
                    for f in (self.store.waiting_dms(user.sid, self.history) +
                              self.store.waiting_mentions(user.sid, user.name, room_keys,
                                                          self.history)):
                        if f["id"] not in seen:
                            seen.add(f["id"])
                            history.append(f)
                except Exception as e:
                    log.error("waiting messages for %s: %s", user.name, e)
            history.sort(key=lambda f: f["id"])
        elif reg.last_id >= watermark:
            history = []
        else:
            history, truncated = self._catch_up(user, reg.last_id, watermark, room_keys, reg.own)
        welcome = p.Welcome(
            version=p.PROTOCOL_VERSION, server=f"parley/{__version__}", name=user.name,
            users=[] if quoted is not None else [user.name], last_id=watermark,
            token=reg.token or user.token,
            limits=self.limits, history=history, truncated=True if truncated else None,
            caps=None if user.legacy else [p.CAP_ROOMS], instance=self.instance,
            rooms=[i.to_dict() for i in infos] if infos is not None else None,
            auth=None if user.legacy else self.auth,
            account=None if user.account is None or user.legacy else
            {"name": user.account.name, "admin": user.account.admin, "session": login_id},
            guests=guests if guests and not user.legacy else None)
        data = p.encode(welcome)
        if quoted is not None:     # (names cannot contain this text: it is the users field)
            data = data.replace(b'"users":[]', b'"users":[' + b",".join(quoted) + b"]", 1)
        member.push(data, first=True)   # before anything pushed while on hold
        member.release()
        self.on_append()
        if not user.legacy:
            self.readers.submit(self._send_unread, user, member, reg.new_session, watermark)

    def _catch_up(self, user: User, last_id: int, watermark: int,
                  room_keys: list, own: set) -> tuple[list, bool]:
        """(reader thread) Everything after ``last_id`` up to ``watermark`` in the
        user's rooms and DMs, from the store (but its own joins of just now)."""
        try:
            frames, truncated = self.store.since(last_id, room_keys, user.sid,
                                                 self.history + len(own))
            frames = [f for f in frames if f["id"] not in own]
            if len(frames) > self.history:
                frames, truncated = frames[-self.history:], True
        except Exception as e:     # the database failed: say so, send what is in memory
            log.error("catch-up for %s failed: %s", user.name, e)
            with self.lock:
                frames = sorted((f for k in room_keys if k in self.rooms
                                 for f in self.rooms[k].recent
                                 if last_id < f["id"] <= watermark), key=lambda f: f["id"])
            truncated = True
        frames = [f for f in frames if f["id"] <= watermark]
        if user.legacy:       # a protocol-1 client: #general only, no DMs or topics
            frames = [f for f in frames if f.get("room") is not None
                      and f["type"] not in ("topic", "mod")]
        return frames, truncated

    def _send_unread(self, user: User, member: Member, new_session: bool, watermark: int) -> None:
        try:
            if new_session:
                with self.lock:
                    rooms = list(user.rooms.values())
                frames = [p.Unread(room=r.name, count=0, read_id=watermark,
                                   last_id=r.recent[-1]["id"] if r.recent else 0) for r in rooms]
                frames = [p.encode(f) for f in frames]
            else:
                frames = [p.encode_dict(d) for d in
                          self.store.unread(user.sid, user.name, list(user.rooms))]
        except Exception as e:
            log.error("unread counts for %s failed: %s", user.name, e)
            return
        for f in frames:
            member.push(f)
        self.on_append()

    def store_barrier(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (on the writer thread) once everything submitted so far is
        committed and sent out: a client that said bye still gets its acks."""
        self.store.submit(Write(op="barrier", ctx=_Sent(None, None, reply=fn)))

    # --- leaving -------------------------------------------------------------------
    def leave(self, member: Member, user: Optional[User], reason: str) -> None:
        """``member``'s connection is gone.  When it was the user's last one, the
        user leaves every room (small rooms get a stored leave notice) -- at
        once if it quit or was sent away, else (its connection was lost: a
        network drop, a reloaded web page) after ``hold`` seconds, unless it is
        back by then: a reconnect within the hold shows no leave and no join."""
        if user is None:
            return
        with self.lock:
            if member not in user.conns:
                return
            user.conns.remove(member)
            user.tokens.pop(member, None)
            user.login_ids.pop(member, None)
            if user.conns or self.users.get(user.key) is not user:
                return
            if reason in HOLD_REASONS and self.hold > 0:
                self._held[user] = (time.monotonic() + self.hold, reason)
                log.info("%s %s lost its connection (%s): held %g s", member.peer, user.name,
                         reason, self.hold)
                return
            writes = self._depart(user, reason)
        for w in writes:
            self.store.submit(w)
        log.info("%s %s left (%s)", member.peer, user.name, reason)

    def _depart(self, user: User, reason: str) -> list:
        """(locked) ``user`` is no longer online: out of every room."""
        self._held.pop(user, None)
        writes = []
        del self.users[user.key]
        self._quoted.pop(user.key, None)
        for room in user.rooms.values():
            room.members.pop(user.key, None)
            if len(room.members) >= self.presence_limit:
                self._presence(room, user.name, joined=False)
            else:
                writes.append(Write(op="event", kind="leave", room=room.key,
                                    sender=user.name, sender_sid=user.sid, text=reason))
        return writes

    def expire_holds(self, now: Optional[float] = None) -> None:
        """Users held after a lost connection whose hold is over leave now."""
        if not self._held:
            return
        now = time.monotonic() if now is None else now
        writes, gone = [], []
        with self.lock:
            for user, (until, reason) in list(self._held.items()):
                if user.conns:                      # it came back
                    del self._held[user]
                elif now >= until:
                    if self.users.get(user.key) is user:
                        writes += self._depart(user, reason)
                        gone.append((user.name, reason))
                    else:
                        del self._held[user]
        for w in writes:
            self.store.submit(w)
        for name, reason in gone:
            log.info("%s left (%s, not back within %g s)", name, reason, self.hold)

    # --- requests ------------------------------------------------------------------
    def _room_for(self, user: User, room: Optional[str],
                  label: Optional[str] = None) -> "Room | p.Error":
        """(locked) The room a request names, if the user is in it; else the
        error that answers the request (with its label)."""
        name = room or p.GENERAL
        r = self.rooms.get(name.casefold())
        if r is None:       # (a room that exists has a valid name: checked only if not)
            problem = p.validate_room(name)
            if problem:
                return p.Error(p.ROOM_INVALID, f"{problem} ({p.ROOM_RULES})", label)
            return p.Error(p.NO_SUCH_ROOM, f"there is no room {name}; /join {name} creates it",
                           label)
        if r.key not in user.rooms:
            return p.Error(p.NOT_MEMBER, f"you are not in {r.name}; join it first", label)
        return r

    def say(self, member: Member, user: User, text: str, kind: str = "say",
            label: Optional[str] = None, room: Optional[str] = None,
            to: Optional[str] = None) -> Optional[p.Error]:
        """Store a chat message; it is sent to its room (or DM) and acknowledged
        once committed.  Returns an error if refused now."""
        if room is not None and to is not None:
            return p.Error(p.BAD_REQUEST, "a message goes to a room or to a user, not both", label)
        away = None       # an account that is not online: its direct messages wait for it
        if to is not None and self.accounts_on and to.casefold() not in self.users:
            if p.validate_name(to) is None:
                account = self.store.account(to)
                if account is not None:
                    away = User(account.sid, account.name, b"", account=account)
        with self.lock:
            if label is not None:
                seen = user.labels.get(label)
                if seen is not None:        # sent again after a reconnect: it went through
                    if seen > 0:
                        member.push(p.encode(p.Ack(label=label, id=seen)))
                    return None             # (still being stored: its ack will come)
            muted = self._sanction(mod.MUTE, "" if to is not None else
                                   (room or p.GENERAL).casefold(), user)
            if muted is not None:
                where = "on this server" if not muted.room else "in " + (room or p.GENERAL)
                return p.Error(p.MUTED, mod.describe(muted, where), label)
            if to is not None:
                target = self.users.get(to.casefold()) or away
                if target is None:
                    return p.Error(p.NO_SUCH_USER, f"nobody called {to!r} is online", label)
                if target.legacy:
                    return p.Error(p.DM_UNSUPPORTED,
                                   f"{target.name}'s client does not support direct messages", label)
            else:
                r = self._room_for(user, room, label)
                if isinstance(r, p.Error):
                    return r
            if label is not None:
                user.labels[label] = 0
                if len(user.labels) > LABEL_WINDOW:
                    user.labels.popitem(last=False)
        # the rest outside the lock; the message is encoded here, on the I/O
        # thread: the writer thread, which every message goes through, only
        # splices in its id and time
        sent = _Sent(user, member, label)
        if to is not None:
            w = Write(op="event", kind=kind, sender=user.name, sender_sid=user.sid,
                      target=target.name, target_sid=target.sid, text=text, label=label, ctx=sent)
            where = ',"to":' + p.quote(target.name)
        else:
            w = Write(op="event", kind=kind, room=r.key, sender=user.name, sender_sid=user.sid,
                      text=text, label=label, ctx=sent)
            where = ',"room":' + p.quote(r.name)
        if user.account is None and self.auth == p.AUTH_OPTIONAL:
            where += ',"guest":true'
        sent.tail = ('"from":' + p.quote(user.name) + ',"text":' + p.quote(text) + ',"kind":'
                     + p.quote(kind) + where + "}").encode()
        self.store.submit(w, check=False)      # (every field checked above)
        return None

    def join(self, member: Member, user: User, room: str, label: Optional[str]) -> Optional[p.Error]:
        problem = p.validate_room(room)
        if problem:
            return p.Error(p.ROOM_INVALID, f"{problem} ({p.ROOM_RULES})", label)
        if user.legacy and room.casefold() != p.GENERAL:
            return p.Error(p.BAD_REQUEST, "ask for the rooms capability to join rooms", label)
        key = room.casefold()
        writes = []
        with self.lock:
            r = self.rooms.get(key)
            if r is None:
                r = self._add_room(key, room, "", [])
                writes.append(Write(op="room", room=key, name=room))
                if user.account is not None:        # its creator owns it
                    writes.append(self._exec(self.rules.set_role(key, user.sid, "owner")))
            elif key not in user.rooms:
                banned = self._sanction(mod.BAN, key, user)
                if banned is not None:
                    return p.Error(p.BANNED, mod.describe(banned, "from " + r.name), label)
                if key in self.rules.closed:
                    rank = self.rules.rank(key, user.sid, self._admin(user))
                    undo = self.rules.uninvite(key, user.name)
                    if undo is None and rank == mod.MEMBER:
                        return p.Error(p.INVITE_ONLY, f"{r.name} is invite-only: ask one of its "
                                       f"moderators to /invite you", label)
                    if undo is not None:
                        writes.append(self._exec(undo))
            if key in user.rooms:       # already there: tell it again
                member.push(p.encode(self._room_info(r, user, label)))
            else:
                writes.extend(self._enter_room(user, r, label=label, member=member))
                if not writes or writes[-1].op != "event":
                    # a big room: no stored notice to wait for
                    self._joined(member, user, r, label)
        for w in writes:
            self.store.submit(w)
        self.on_append()
        return None

    def _joined(self, member: Member, user: User, room: Room, label: Optional[str]) -> None:
        """(locked) ``user`` is in ``room``: its connections follow the log; the
        requester gets the room's info."""
        self._touched.update(user.conns)
        for c in user.conns:
            c.subscribe(room.log, room.log.end)
            c.push(p.encode(self._room_info(room, user, label if c is member else None)))

    def part(self, member: Member, user: User, room: str, label: Optional[str]) -> Optional[p.Error]:
        if user.legacy:
            return p.Error(p.BAD_REQUEST, "a protocol 1 client cannot leave #general", label)
        with self.lock:
            r = self._room_for(user, room, label)
            if isinstance(r, p.Error):
                return r
            del user.rooms[r.key]
            r.members.pop(user.key, None)
            for c in user.conns:
                c.unsubscribe(r.log)
            writes = [Write(op="member_remove", sid=user.sid, room=r.key)]
            if len(r.members) >= self.presence_limit:
                self._presence(r, user.name, joined=False)
                if label is not None:
                    member.push(p.encode(p.Ack(label=label)))
            else:
                writes.append(Write(op="event", kind="leave", room=r.key, sender=user.name,
                                    sender_sid=user.sid, text=p.PART,
                                    ctx=_Sent(user, member, label)))
        for w in writes:
            self.store.submit(w)
        self.on_append()
        return None

    def topic(self, member: Member, user: User, room: str, topic: str,
              label: Optional[str]) -> Optional[p.Error]:
        if len(topic) > p.TOPIC_MAX:
            return p.Error(p.TOPIC_TOO_LONG, f"a topic is at most {p.TOPIC_MAX} characters", label)
        topic = topic.replace("\n", " ").strip()
        problem = p.text_problem(topic, p.TOPIC_MAX) if topic else None
        if problem:
            return p.Error(problem[0], problem[1].replace("message", "topic"), label)
        with self.lock:
            r = self._room_for(user, room, label)
            if isinstance(r, p.Error):
                return r
            if r.key in self.rules.locked and \
                    self.rules.rank(r.key, user.sid, self._admin(user)) == mod.MEMBER:
                return p.Error(p.FORBIDDEN, f"the topic of {r.name} is locked: only its "
                               f"moderators may change it", label)
        self.store.submit(Write(op="event", kind="topic", room=r.key, sender=user.name,
                                sender_sid=user.sid, text=topic, ctx=_Sent(user, member, label)))
        return None

    def rooms_list(self, user: User) -> list[dict]:
        with self.lock:
            return [{"room": r.name, "topic": r.topic, "count": len(r.members),
                     "joined": r.key in user.rooms}
                    for r in sorted(self.rooms.values(), key=lambda r: r.key)]

    def users_in(self, user: User, room: Optional[str]) -> "list[str] | p.Error":
        with self.lock:
            if room is None:
                return [u.name for u in self.users.values()]
            r = self.rooms.get(room.casefold())
            if r is None:
                return p.Error(p.NO_SUCH_ROOM, f"there is no room {room}")
            return [u.name for u in r.members.values()]

    @property
    def count(self) -> int:
        return len(self.users)

    # --- reads on the reader threads (never on an I/O thread) -----------------------
    def query(self, member: Member, user: User, req: p.Event) -> Optional[p.Error]:
        """history / search: checked here, run on a reader thread, answer pushed."""
        label = req.label
        room_key = None
        if req.room is not None and req.peer is not None:
            return p.Error(p.BAD_REQUEST, "ask for a room or a person, not both", label)
        limit = req.limit if req.limit is not None else 50
        if not 1 <= limit <= p.PAGE_MAX:
            return p.Error(p.BAD_REQUEST, f"limit must be 1 to {p.PAGE_MAX}", label)
        if getattr(req, "after", None) is not None and req.before is not None:
            return p.Error(p.BAD_REQUEST, "give before or after, not both", label)
        with self.lock:
            if req.room is not None:
                r = self._room_for(user, req.room, label)
                if isinstance(r, p.Error):
                    return r
                room_key, room_name = r.key, r.name
            readable = list(user.rooms)
        peer = req.peer.casefold() if req.peer else None
        if isinstance(req, p.HistoryRequest):
            if room_key is None and peer is None:
                return p.Error(p.BAD_REQUEST, "history needs a room or with", label)

            def run() -> p.Event:
                frames, more = self.store.history(user.sid, room=room_key, peer=peer,
                                                  before=req.before, after=req.after, limit=limit)
                return p.HistoryPage(messages=frames, more=more,
                                     room=room_name if room_key else None,
                                     peer=req.peer, label=label)
        else:
            if not req.query.strip():
                return p.Error(p.BAD_QUERY, "search for at least one word", label)
            if len(req.query) > 500:
                return p.Error(p.BAD_QUERY, "a search is at most 500 characters", label)

            def run() -> p.Event:
                frames, more = self.store.search(user.sid, req.query, readable, room=room_key,
                                                 peer=peer, before=req.before, limit=limit)
                return p.SearchResults(query=req.query, messages=frames, more=more, label=label)
        self.readers.submit(self._answer, member, run, label)
        return None

    def _answer(self, member: Member, run: Callable[[], p.Event], label: Optional[str]) -> None:
        from .store import BadQuery
        try:
            event = run()
        except BadQuery as e:
            event = p.Error(p.BAD_QUERY, str(e), label)
        except Exception as e:
            log.error("%s: a history query failed: %s", member.peer, e)
            event = p.Error(p.STORE_FAILED, "the server could not read its history; try again", label)
        member.push(p.encode(event))
        self.on_append()

    def mark_read(self, member: Member, user: User, req: p.ReadMarker) -> Optional[p.Error]:
        label = req.label
        if (req.room is None) == (req.peer is None):
            return p.Error(p.BAD_REQUEST, "read needs a room or with", label)
        with self.lock:
            if req.room is not None:
                r = self._room_for(user, req.room, label)
                if isinstance(r, p.Error):
                    return r
                conv, shown = r.key, {"room": r.name}
            else:
                conv, shown = "@" + req.peer.casefold(), {"peer": req.peer}
            if req.id > self.last_id:
                return p.Error(p.BAD_REQUEST, f"there is no id {req.id} yet", label)
        def tell() -> None:
            try:
                frames = [d for d in self.store.unread(user.sid, user.name, [r.key] if req.room else [])
                          if (d.get("room") or "").casefold() == conv or
                          "@" + (d.get("with") or "").casefold() == conv]
            except Exception as e:
                log.error("unread for %s failed: %s", user.name, e)
                return
            if not frames:
                frames = [dict(p.Unread(count=0, read_id=req.id, **shown).to_dict())]
            with self.lock:
                conns = list(user.conns)
            for c in conns:
                for f in frames:
                    c.push(p.encode_dict(f))
            self.on_append()
        self.store.submit(Write(op="read", sid=user.sid, conv=conv, read_id=req.id,
                                ctx=_Sent(None, None, reply=lambda: self.readers.submit(tell))))
        if label is not None:
            member.push(p.encode(p.Ack(label=label)))
        return None

    # --- accounts: requests of a connected user (checked on the login workers) -------
    def _account_job(self, member: Member, label: Optional[str],
                     job: Callable[[], "p.Event | None"]) -> None:
        """Run ``job`` on a login worker; push its answer (or an error)."""
        def run() -> None:
            try:
                answer = job()
            except Exception as e:
                log.error("%s: an account request failed: %s", member.peer, type(e).__name__)
                answer = p.Error(p.INTERNAL, "the server failed to do that; try again", label)
            if answer is not None:
                member.push(p.encode(answer))
                self.on_wake({member}, [])
        self.logins.submit(run)

    def claim(self, member: Member, user: User, password: str, secure: bool,
              label: Optional[str]) -> Optional[p.Error]:
        """A guest registers its name as an account; it stays connected, and its
        history, rooms and direct messages are the account's from now on."""
        refusal = self._password_refusal(password, secure)
        if refusal is not None:
            refusal.label = label
            return refusal
        if user.account is not None:
            return p.Error(p.BAD_REQUEST, f"you are logged in to the account {user.name} already",
                           label)
        if not self.open_registration:
            return p.Error(p.AUTH_REQUIRED, "accounts on this server are made by its admins",
                           label)
        problem = acc.password_problem(password)
        if problem:
            return p.Error(p.BAD_PASSWORD, problem, label)

        def job() -> p.Event:
            account = self.store.create_account(user.name, user.sid, acc.hash_password(password))
            if account is None:
                return p.Error(p.NAME_TAKEN, f"the name {user.name} is registered already", label)
            with self.lock:
                hashes = set(user.tokens.values())
            # each token of the guest (one per device) becomes a login of the account
            ids = {th: self.store.add_login(th, user.sid, "").id for th in hashes}
            with self.lock:
                user.account = account
                for c, th in user.tokens.items():
                    if th in ids:
                        user.login_ids[c] = ids[th]
                conns = list(user.conns)
                login_ids = dict(user.login_ids)
            log.info("%s registered the account %s", member.peer, account.name)
            for c in conns:
                c.push(p.encode(p.AccountInfo(name=account.name, admin=account.admin,
                                              session=login_ids.get(c),
                                              label=label if c is member else None)))
            self.on_wake(set(conns), [])
            return None
        self._account_job(member, label, job)
        return None

    def change_password(self, member: Member, user: User, old: str, new: str, secure: bool,
                        label: Optional[str]) -> Optional[p.Error]:
        """Check the old password, store the new one, log out the other sessions."""
        refusal = self._password_refusal(old, secure)
        if refusal is not None:
            refusal.label = label
            return refusal
        if user.account is None:
            return p.Error(p.BAD_REQUEST, "guests have no password: register first", label)
        problem = acc.password_problem(new)
        if problem:
            return p.Error(p.BAD_PASSWORD, problem, label)
        address = address_of(member.peer)

        def job() -> p.Event:
            wait = self.throttle.wait(user.name, address, time.monotonic())
            if wait > 0:
                return p.Error(p.THROTTLED, f"too many wrong passwords: try again in {wait:g} s",
                               label, retry_after=wait)
            account = self.store.account_by_sid(user.sid)
            if not acc.verify_password(old, account.hash if account else None):
                self.throttle.failed(user.name, address, time.monotonic())
                return p.Error(p.LOGIN_FAILED, "that is not your current password", label)
            self.store.set_password_hash(user.sid, acc.hash_password(new))
            with self.lock:
                keep = user.login_ids.get(member)
            self._revoked(user, self.store.revoke_logins(user.sid, keep=keep), member)
            log.info("%s changed the password of %s", member.peer, user.name)
            return p.Ack(label=label) if label is not None else None
        self._account_job(member, label, job)
        return None

    def sessions(self, member: Member, user: User, label: Optional[str]) -> Optional[p.Error]:
        if user.account is None:
            return p.Error(p.BAD_REQUEST, "guests have one session: register to have more",
                           label)

        def job() -> p.Event:
            with self.lock:
                mine = user.login_ids.get(member)
                online = set(user.login_ids.values())
            return p.SessionList(sessions=[
                {"id": x.id, "device": x.device, "created": p.format_ts(x.created),
                 "seen": p.format_ts(x.seen), "current": x.id == mine, "online": x.id in online}
                for x in self.store.logins(user.sid)], label=label)
        self._account_job(member, label, job)
        return None

    def revoke(self, member: Member, user: User, req: p.RevokeRequest) -> Optional[p.Error]:
        label = req.label
        if user.account is None:
            return p.Error(p.BAD_REQUEST, "guests have one session: say bye to end it", label)
        if (req.session is None) == (not req.others):
            return p.Error(p.BAD_REQUEST, "revoke needs a session id, or others", label)

        def job() -> p.Event:
            with self.lock:
                keep = user.login_ids.get(member)
            if req.others:
                hashes = self.store.revoke_logins(user.sid, keep=keep)
            else:
                hashes = self.store.revoke_logins(user.sid, req.session)
                if not hashes:
                    return p.Error(p.NO_SUCH_SESSION, f"you have no session {req.session}", label)
            if label is not None:          # before a kick of this very connection
                member.push(p.encode(p.Ack(label=label)))
                self.on_wake({member}, [])     # (pushed from a login worker: wake its thread)
            self._revoked(user, hashes, member)
            return None
        self._account_job(member, label, job)
        return None

    def _revoked(self, user: User, hashes: list, by: Optional[Member] = None) -> None:
        """Close the connections that logged in with these (now deleted) tokens."""
        gone = set(hashes)
        with self.lock:
            conns = [c for c, th in user.tokens.items() if th in gone]
        for c in conns:
            c.kick(p.REVOKED, "this session was logged out" + (
                " (by you)" if c is by else " from another session"))

    # --- moderation (the rules: moderation.py) ----------------------------------------
    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    @staticmethod
    def _admin(user: User) -> bool:
        return user.account is not None and user.account.admin

    @staticmethod
    def _exec(stmt: tuple) -> Write:
        return Write(op="exec", text=stmt[0], params=stmt[1])

    @staticmethod
    def _whos(user: User) -> list:
        """(locked) Who a sanction of ``user`` may be filed under: its session
        or account, and for a guest the addresses it connects from."""
        whos = ["sid:" + user.sid]
        if user.account is None:
            whos += ["addr:" + address_of(c.peer) for c in user.conns]
        return whos

    def _sanction(self, kind: str, room: str, user: User) -> Optional[mod.Sanction]:
        """(locked) The mute or ban that applies to ``user`` in ``room`` ('' server)."""
        if not self.rules.sanctions:
            return None
        return self.rules.find(kind, room, self._whos(user), self._now_ms())

    def moderate(self, member: Member, user: User, req: p.ModRequest) -> Optional[p.Error]:
        """Kick, mute, ban, delete, lock, close, invite, op … (see moderation.py).
        The action is stored, announced in its room(s), recorded in the audit
        log, then acknowledged."""
        label, action = req.label, req.action
        if action not in p.MOD_ACTIONS:
            return p.Error(p.BAD_REQUEST, f"unknown action {action[:20]!r}; one of "
                           f"{', '.join(p.MOD_ACTIONS)}", label)
        reason = (req.reason or "").replace("\n", " ").strip()
        if len(reason) > p.REASON_MAX:
            return p.Error(p.BAD_REQUEST, f"a reason is at most {p.REASON_MAX} characters", label)
        if reason and p.text_problem(reason, p.REASON_MAX):
            return p.Error(p.BAD_TEXT, "the reason contains control characters", label)
        if req.duration is not None and (action not in (mod.MUTE, mod.BAN) or req.duration <= 0):
            return p.Error(p.BAD_REQUEST, "a duration (seconds, > 0) goes with mute or ban", label)
        target = req.target
        if action in mod.TARGETED and (not target or p.validate_name(target)):
            return p.Error(p.BAD_REQUEST, f"{action} needs the name of whom (target)", label)
        if action not in mod.TARGETED:
            target = None
        if action == "delete" and (req.id is None or req.room is None):
            return p.Error(p.BAD_REQUEST, "delete needs the message's room and id", label)
        # reads first, outside the lock
        t_account = (self.store.account(target)
                     if target and self.accounts_on and target.casefold() not in self.users
                     else None)
        info = self.store.event_info(req.id) if action == "delete" else None
        now = self._now_ms()
        until = (now + int(req.duration * 1000)
                 if req.duration is not None and req.duration <= mod.DURATION_MAX else None)
        admin = self._admin(user)
        stmts: list = []
        with self.lock:
            if req.room is None:
                if action not in mod.SERVER_WIDE:
                    return p.Error(p.BAD_REQUEST, f"{action} needs a room", label)
                if not admin:
                    return p.Error(p.FORBIDDEN, "only server admins act server-wide", label)
                room, rank = None, mod.ADMIN
            else:
                room = self.rooms.get(req.room.casefold())
                if room is None:
                    return p.Error(p.NO_SUCH_ROOM, f"there is no room {req.room}", label)
                rank = self.rules.rank(room.key, user.sid, admin)
                own = (action == "delete" and info is not None and info[3] == user.sid)
                need = mod.OWNER if action in mod.NEEDS_OWNER else mod.MODERATOR
                if rank < need and not own:
                    who = "owner (or a server admin)" if need == mod.OWNER else "moderators"
                    return p.Error(p.FORBIDDEN, f"only {room.name}'s {who} may {action}", label)
            scope = room.key if room is not None else ""
            tuser = self.users.get(target.casefold()) if target else None
            taccount = tuser.account if tuser is not None else t_account
            tsid = tuser.sid if tuser is not None else (taccount.sid if taccount else None)
            tname = tuser.name if tuser is not None else (taccount.name if taccount else target)
            if action in ("kick", "mute", "ban", "op", "deop"):
                if tsid is None:
                    return p.Error(p.NO_SUCH_USER, f"nobody called {target!r} is online or "
                                   f"has an account", label)
                if tsid == user.sid:
                    return p.Error(p.BAD_REQUEST, f"you cannot {action} yourself", label)
                trank = self.rules.rank(room.key if room else None, tsid,
                                        bool(taccount and taccount.admin))
                if trank >= rank:
                    return p.Error(p.FORBIDDEN, f"{tname} ranks as high as you "
                                   f"{'here' if room else 'on this server'}", label)
            if action == "kick":
                if tuser is None:
                    return p.Error(p.NO_SUCH_USER, f"{tname} is not online", label)
                if room is not None and room.key not in tuser.rooms:
                    return p.Error(p.NOT_MEMBER, f"{tname} is not in {room.name}", label)
            if action in (mod.MUTE, mod.BAN):
                whos = ["sid:" + tsid]
                if tuser is not None and tuser.account is None:
                    whos += sorted({"addr:" + address_of(c.peer) for c in tuser.conns})
                for who in whos:
                    stmts.append(self.rules.add(mod.Sanction(action, scope, who, tname, until,
                                                             user.name, reason), now))
            elif action in ("unmute", "unban"):
                kind = mod.MUTE if action == "unmute" else mod.BAN
                found = self.rules.by_name(kind, scope, target)
                if not found:
                    where = f"in {room.name}" if room else "on this server"
                    return p.Error(p.BAD_REQUEST, f"{target} is not "
                                   f"{'muted' if kind == mod.MUTE else 'banned'} {where}", label)
                stmts += [self.rules.lift(x) for x in found]
                tname = found[0].name
            elif action == "invite":
                stmts.append(self.rules.invite(room.key, target, user.name, now))
            elif action == "op":
                if taccount is None:
                    return p.Error(p.BAD_REQUEST, "only accounts can be moderators", label)
                stmts.append(self.rules.set_role(room.key, tsid, "mod"))
            elif action == "deop":
                if self.rules.roles.get((room.key, tsid)) != "mod":
                    return p.Error(p.BAD_REQUEST, f"{tname} is not a moderator of {room.name}",
                                   label)
                stmts.append(self.rules.set_role(room.key, tsid, None))
            elif action in ("lock", "unlock"):
                stmts.append(self.rules.set_flags(room.key, locked=action == "lock"))
            elif action in ("close", "open"):
                stmts.append(self.rules.set_flags(room.key, closed=action == "close"))
            elif action == "delete":
                if info is None or info[0] != room.key or info[1] not in CHAT or info[4]:
                    return p.Error(p.NO_SUCH_MESSAGE, f"there is no message {req.id} in "
                                   f"{room.name} (or it was removed already)", label)
                stmts.append(("UPDATE events SET text=NULL WHERE id=? AND room=?",
                              (req.id, room.key)))
            stmts.append(mod.audit_sql(now, user.name, action, scope or None,
                                       tname if target else None, reason, until))
            if room is not None:
                rooms = [room]
            else:          # server-wide: announced in each room the person is in
                rooms = list(tuser.rooms.values()) if tuser is not None else []

            def effect(data: Optional[bytes]) -> None:
                self._mod_effect(action, room, tuser, user, reason, req.id, data)
        for stmt in stmts:
            self.store.submit(self._exec(stmt), check=False)
        text = mod.event_text(action, reason, until, req.id if action == "delete" else None)
        log.info("%s %s %s%s%s", user.name, action, tname or "",
                 f" in {room.name}" if room else " (server-wide)" if target else "",
                 f": {reason}" if reason else "")
        for i, r in enumerate(rooms):
            last = i == len(rooms) - 1
            sent = _Sent(user, member, label if last else None,
                         after=effect if last else None)
            self.store.submit(Write(op="event", kind="mod", room=r.key, sender=user.name,
                                    sender_sid=user.sid, target=tname if target else None,
                                    text=text, ctx=sent))
        if not rooms:                  # nobody to tell: done once stored
            def done() -> None:
                with self.lock:
                    effect(None)
                if label is not None:
                    member.push(p.encode(p.Ack(label=label)))
                self.on_wake({member}, [])
            self.store_barrier(done)
        return None

    def _mod_effect(self, action: str, room: Optional[Room], tuser: Optional[User],
                    actor: User, reason: str, message: Optional[int],
                    data: Optional[bytes]) -> None:
        """(locked; once announced) What the action does besides being known."""
        why = f" by {actor.name}" + (f": {reason}" if reason else "")
        if action == "delete" and room is not None:
            for f in room.recent:
                if f.get("id") == message:
                    f["text"], f["deleted"] = "", True
            return
        if tuser is None or self.users.get(tuser.key) is not tuser:
            return                     # (offline, or gone meanwhile)
        if action == "invite" and room is not None:
            frame = p.encode(p.Invited(room=room.name, by=actor.name))
            for c in tuser.conns:
                if not c.legacy:
                    c.push(frame)
            self._touched.update(tuser.conns)
        elif action in ("kick", mod.BAN) and room is None:
            reason_code = p.KICKED if action == "kick" else p.BANNED
            for c in list(tuser.conns):
                c.kick(reason_code, ("kicked" if action == "kick" else "banned from this server")
                       + why)
        elif action in ("kick", mod.BAN) and room is not None and room.key in tuser.rooms:
            if room.key == p.GENERAL and tuser.legacy:
                for c in list(tuser.conns):     # an old client lives in #general only
                    c.kick(p.KICKED, f"removed from {room.name}{why}")
                return
            del tuser.rooms[room.key]
            room.members.pop(tuser.key, None)
            for c in tuser.conns:
                if data is not None:
                    c.push(data)       # it sees why before it stops following the room
                c.unsubscribe(room.log)
            self._touched.update(tuser.conns)
            self.store.submit(Write(op="member_remove", sid=tuser.sid, room=room.key))
            self.store.submit(Write(op="event", kind="leave", room=room.key, sender=tuser.name,
                                    sender_sid=tuser.sid,
                                    text=p.KICKED if action == "kick" else p.BANNED))

    def audit_log(self, member: Member, user: User, req: p.AuditRequest) -> Optional[p.Error]:
        label = req.label
        if not self._admin(user):
            return p.Error(p.FORBIDDEN, "only server admins read the audit log", label)
        limit = req.limit if req.limit is not None else 50
        if not 1 <= limit <= p.PAGE_MAX:
            return p.Error(p.BAD_REQUEST, f"limit must be 1 to {p.PAGE_MAX}", label)

        def run() -> p.Event:
            entries, more = self.store.audit(req.before, limit)
            return p.AuditLog(entries=entries, more=more, label=label)
        self.readers.submit(self._answer, member, run, label)
        return None

    # --- the store's writer thread calls this after each commit ---------------------
    def committed(self, batch: list[Write], error: Optional[str]) -> None:
        """Send out what was just stored (encode once, append, ack), or report
        what could not be stored (never acknowledged)."""
        finished = []
        replies = []
        grown = set()
        ts_ms, ts = None, ""
        with self.lock:
            touched = self._touched = set()
            for w in batch:
                sent: Optional[_Sent] = w.ctx          # (the hub's writes carry a _Sent or None)
                if w.op != "event":
                    if error is not None:
                        log.error("could not store %s: %s", w.op, error)
                    elif sent is not None and sent.reply is not None:
                        replies.append(sent.reply)
                    continue
                if error is not None or w.id is None:
                    self._failed(w, sent, error or "not stored")
                    if sent and sent.registration is not None:
                        reg = sent.registration
                        reg.outstanding -= 1
                        if reg.outstanding == 0:
                            self._subscribe_all(reg)
                            finished.append(reg)
                    continue
                self.last_id = max(self.last_id, w.id)
                if w.ts != ts_ms:
                    ts_ms, ts = w.ts, p.format_ts(w.ts)       # (one per batch)
                if w.room is not None:
                    room = self.rooms.get(w.room)
                    if room is None:
                        continue
                    if w.kind in CHAT:  # encoded early (say()): only id and ts spliced in
                        frame = {"type": "message", "id": w.id, "ts": ts, "from": w.sender,
                                 "text": w.text, "kind": w.kind, "room": room.name}
                        data = _spliced(w.id, ts, sent.tail)
                    else:
                        frame = _notice(w, ts, room.name)
                        data = p.encode_dict(frame)
                        if w.kind == "topic":
                            room.topic = w.text or ""
                    room.recent.append(frame)
                    room.log.append(data, w.id)
                    grown.add(room.log)
                    after = (room.log, room.log.end)
                else:                  # a DM: into the logs of both people (once if to oneself)
                    data = _spliced(w.id, ts, sent.tail)
                    after = (None, 0)
                    for key in {w.sender.casefold(), w.target.casefold()}:
                        u = self.users.get(key)
                        if u is not None and u.sid in (w.sender_sid, w.target_sid):
                            u.dm_log.append(data, w.id)
                            grown.add(u.dm_log)
                            if u.sid == w.sender_sid:
                                after = (u.dm_log, u.dm_log.end)
                if sent is None:
                    continue
                if sent.registration is not None:
                    reg = sent.registration
                    reg.own.add(w.id)
                    reg.outstanding -= 1
                    if reg.outstanding == 0:
                        self._subscribe_all(reg)
                        finished.append(reg)
                    continue
                if sent.after is not None:
                    sent.after(data)
                user = sent.user
                if w.kind == "join" and user is not None:
                    if w.room in user.rooms:      # (not if it left again meanwhile)
                        self._joined(sent.member, user, user.rooms[w.room], sent.label)
                    continue
                if sent.label is not None and user is not None:
                    if sent.label in user.labels:
                        user.labels[sent.label] = w.id
                    ack = b'{"type":"ack","label":%s,"id":%d}\n' % (
                        p.quote(sent.label).encode(), w.id)
                    targets = list(user.conns)
                    if sent.member is not None and sent.member not in targets:
                        targets.append(sent.member)      # it said bye: still owed its acks
                    touched.update(targets)
                    for c in targets:
                        c.push(ack, *after)
        for reg in finished:
            self._finish_registration(reg)
        for reply in replies:
            reply()
        self.on_wake(touched, list(grown))

    def _failed(self, w: Write, sent: Optional[_Sent], error: str) -> None:
        """(locked) A write that could not be stored: its sender gets an error."""
        log.error("could not store a %s from %s: %s", w.kind, w.sender, error)
        if sent is None or sent.user is None or sent.label is None:
            return
        sent.user.labels.pop(sent.label, None)
        err = p.encode(p.Error(p.STORE_FAILED, "the server could not store that; "
                               "it was not sent (try again)", sent.label))
        targets = list(sent.user.conns)
        if sent.member is not None and sent.member not in targets:
            targets.append(sent.member)
        self._touched.update(targets)
        for c in targets:
            c.push(err)


def _spliced(id: int, ts: str, tail: bytes) -> bytes:
    """A message frame from its fields after id and ts, encoded by say()."""
    return b'{"type":"message","id":%d,"ts":"%s",%s\n' % (id, ts.encode(), tail)


def _notice(w: Write, ts: str, room: str) -> dict:
    """A stored join, leave or topic in its wire form, from the typed events of
    parley.protocol.  (Chat messages are encoded in say().)"""
    if w.kind == "join":
        event: p.Event = p.Join(id=w.id, ts=ts, name=w.sender, room=room)
    elif w.kind == "leave":
        event = p.Leave(id=w.id, ts=ts, name=w.sender, reason=w.text or p.QUIT, room=room)
    elif w.kind == "mod":
        return mod.frame(w.id, ts, room, w.sender, w.target, w.text)
    else:
        event = p.Topic(id=w.id, ts=ts, room=room, topic=w.text or "", by=w.sender)
    return event.to_dict()
