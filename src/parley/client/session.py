"""The client's network session, shared by the CLI and the GUI.  No UI code.

A ``Session`` owns one background thread that connects, says hello (asking
for the ``rooms`` capability), reads frames, answers pings, paces what you
send to the server's rate limit, and reconnects with backoff when the
connection drops, resuming the same name (``token``) and catching up on missed
messages (``last_id``), dropping duplicates by id.  The UI talks to it through
thread-safe doors:

    session = Session("127.0.0.1", 8888, "alice", client="parley-cli")
    session.start()
    session.say("hello")                    # any thread; queued while offline
    session.say("hi python", room="#python")
    session.send("lunch?", "@bob")          # a conversation key: "#room" or "@name"
    event = session.events.get()            # protocol events + StateChanged, ConversationsChanged, …
    for conv in session.conversations():    # the sidebar: rooms, then direct messages
        print(conv.key, conv.unread)
    session.close()

Conversations are keyed ``"#room"`` (as the server spells the room) or
``"@name"`` (a direct message); keys compare ignoring case.  The session keeps
each one's topic, members and unread counts; UIs read them with
``conversations()`` / ``conversation(key)`` when a ``ConversationsChanged``
event arrives, and keep no copies of their own.

Messages you send carry a label; the server acknowledges each one, and a
message not acknowledged when the connection drops is sent again after the
reconnect unless the catch-up shows it already went through.
"""
from __future__ import annotations

import collections
import enum
import itertools
import logging
import os
import queue
import random
import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from .. import __version__
from .. import protocol as p
from .core import mentions as _mentions
from .tls import (KnownHosts, TlsInfo, TlsOptions, TlsRefusal, TlsRefused, TrustQuestion,
                  describe_handshake_error, fingerprint, handshake, pinning_context,
                  verifying_context)

log = logging.getLogger("parley.session")


class SessionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass
class StateChanged:
    """The session's connection state changed; ``detail`` says why."""
    state: SessionState
    detail: str = ""
    retry_in: Optional[float] = None      # with RECONNECTING: seconds to the next try


@dataclass
class NameRefused:
    """The server refused the hello; call ``set_name`` to try another name, or
    ``set_name(name, password=…)`` to log in.  ``code`` says why: ``name_taken``,
    ``name_invalid``, ``name_registered`` (an account owns it: log in),
    ``auth_required`` (this server wants a password), ``login_failed``,
    ``bad_password``, ``insecure`` (use TLS), ``accounts_off``."""
    name: str
    code: str
    message: str


@dataclass
class LoggedOut:
    """This device's login is no longer valid (revoked from another session, the
    password changed, the account removed): the session stopped and will not
    reconnect; log in again with the password."""
    message: str


@dataclass
class AccountChanged:
    """``session.account`` or ``session.guests`` changed (a welcome, a guest that
    registered, a user list): read them again."""


@dataclass
class MessageRemoved:
    """A moderator (or its author) removed message ``id`` of ``conv``: show it as
    removed.  ``session.is_removed(id)`` says so from then on."""
    conv: str
    id: int
    by: str
    reason: str = ""


@dataclass
class RemovedFromRoom:
    """I was kicked or banned from ``room`` (it left ``conversations()``)."""
    room: str
    action: str                      # "kick" | "ban"
    by: str
    reason: str = ""


@dataclass
class ConnectFailed:
    """The first connection attempt failed and ``retry_first`` is off."""
    host: str
    port: int
    error: str


@dataclass
class ConversationsChanged:
    """The list of conversations or something shown about them (unread counts,
    topic, members, a new direct message, a room joined or left) changed:
    read ``session.conversations()`` again."""


@dataclass
class Conversation:
    """A snapshot of one conversation (a copy: changing it changes nothing).

    ``key`` is ``"#room"`` or ``"@name"``; ``name`` is what the server calls it:
    the room (``"#python"``) or the other person (``"bob"``).  ``members`` is
    sorted (ignoring case), or None for a big room whose member list the
    server left out (ask ``request_users(room)``); ``count`` is how many are in
    it.  ``unread``/``mentions`` count other people's messages after
    ``read_id``; ``last_id`` is the newest id seen in it; ``role`` is mine in a
    room: "owner", "mod" or None."""
    key: str
    kind: str                       # "room" | "dm"
    name: str
    topic: str = ""
    members: Optional[list[str]] = None
    count: int = 0
    unread: int = 0
    mentions: int = 0
    read_id: int = 0
    last_id: int = 0
    role: Optional[str] = None


class OfflineQueueFull(Exception):
    """Too many messages queued while disconnected."""


SessionEvent = Union[p.Event, StateChanged, NameRefused, ConnectFailed, ConversationsChanged,
                     TrustQuestion, TlsRefused, LoggedOut, AccountChanged, MessageRemoved,
                     RemovedFromRoom]

_FATAL = {p.VERSION_UNSUPPORTED, p.TLS_REQUIRED}
_REFUSED = {p.THROTTLED, p.TOO_MANY_CONNECTIONS, p.SERVER_FULL}   # a connection turned away
# a hello refused, the client may send another on the same connection
_HELLO_REFUSED = {p.NAME_TAKEN, p.NAME_INVALID, p.NAME_REGISTERED, p.AUTH_REQUIRED,
                  p.LOGIN_FAILED, p.BAD_PASSWORD, p.INSECURE, p.ACCOUNTS_OFF}
# what a login token that no longer works gets (the name belongs to an account)
_TOKEN_REFUSED = {p.LOGIN_FAILED, p.NAME_REGISTERED, p.AUTH_REQUIRED, p.NAME_TAKEN}
_ONCE = ("register", "password")  # requests with a password: never sent again by themselves
_MESSAGES = ("say", "me")
_ROOM_REQUESTS = ("join", "part", "rooms", "topic", "history", "search", "read")
_SEEN_WINDOW = 8192            # ids remembered for dropping duplicates
_REMOVED_WINDOW = 4096         # ids of removed messages remembered
KICK_WAIT = 5.0                # seconds before reconnecting after a server-wide kick
_READ_INTERVAL = 1.0           # seconds between two read markers for one conversation
NO_ROOMS = "rooms_unsupported"  # a local error: the server does not know rooms


def conv_key(conv: str) -> str:
    """The case-insensitive form of a conversation key (``"#Python"`` → ``"#python"``)."""
    return conv.casefold()


def split_conv(conv: str) -> tuple[str, str]:
    """``"#room"`` → ("room", "#room"); ``"@bob"`` → ("dm", "bob"); else ValueError."""
    if isinstance(conv, str) and conv.startswith("#") and len(conv) > 1:
        return "room", conv
    if isinstance(conv, str) and conv.startswith("@") and len(conv) > 1:
        return "dm", conv[1:]
    raise ValueError(f"a conversation is '#room' or '@name', not {conv!r}")


@dataclass
class _Outgoing:
    label: str
    frame: dict = field(repr=False)     # (may hold a password)
    tracked: bool = True     # answered with this label (ack, room, history…): wait for it


class _Conv:
    """The session thread's mutable state for one conversation (under the lock)."""

    def __init__(self, key: str, kind: str, name: str):
        self.key, self.kind, self.name = key, kind, name
        self.topic = ""
        self.members: Optional[dict[str, str]] = None    # casefold -> spelling
        self.count = 0
        self.read_id = 0
        self.last_id = 0
        self.base_unread = 0         # from the server's last ``unread`` …
        self.base_mentions = 0
        self.base_last = 0           # … which covered messages up to this id
        self.local: list[tuple[int, bool]] = []   # (id, mentions me) counted since then
        self.activity = 0            # for ordering direct messages
        self.role: Optional[str] = None   # mine in this room: "owner", "mod" or None

    def set_members(self, names: Optional[Iterable[str]]) -> None:
        self.members = None if names is None else {n.casefold(): n for n in names}

    def snapshot(self) -> Conversation:
        members = None
        if self.members is not None:
            members = sorted(self.members.values(), key=lambda n: (n.casefold(), n))
        return Conversation(
            key=self.key, kind=self.kind, name=self.name, topic=self.topic, members=members,
            count=self.count, unread=self.base_unread + len(self.local),
            mentions=self.base_mentions + sum(1 for _, m in self.local if m),
            read_id=self.read_id, last_id=self.last_id, role=self.role)


class Session:
    def __init__(self, host: str, port: int, name: str, *, client: str = "parley",
                 retry_first: bool = False, reconnect: bool = True,
                 backoff_initial: float = 0.5, backoff_max: float = 10.0,
                 connect_timeout: float = 5.0, keepalive: float = 20.0,
                 max_queued: int = 500, caps: Iterable[str] = (p.CAP_ROOMS,),
                 tls: Optional[TlsOptions] = None, password: Optional[str] = None,
                 register: bool = False, device: Optional[str] = None,
                 logins: Optional[Any] = None):
        self.host, self.port = host, port
        # a LoginStore (client/logins.py): the login token is kept between runs, so the
        # next start logs in without the password
        self.logins = logins
        # accounts: the password goes in the hello until the first welcome, then only the
        # login token (``self.token``) is used; it is never sent again by itself
        self._password = password
        self._register = bool(register) and password is not None
        self.device = device
        self.auth: Optional[str] = None       # the server's --auth mode, from the welcome
        self.account: Optional[dict] = None   # {"name","admin","session"}; None: a guest
        self.logged_out = False               # the login token stopped working: not reconnecting
        self._guests: dict[str, str] = {}     # casefold -> spelling of guests online
        self._accounts: set[str] = set()      # casefolded names known to be accounts (a
        #                                       join does not say: such a name is in neither)
        self._hello_sent = "guest"            # what the last hello was: guest | password | token
        self.tls = tls                        # None: plain TCP
        self.tls_info: Optional[TlsInfo] = None   # the current connection's, once secured
        self._trust_answer: Optional[bool] = None
        self._trust_given = threading.Event()
        self.name = name
        self.client = client
        self.retry_first = retry_first
        self.reconnect = reconnect
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.max_queued = max_queued
        self.want_caps = list(caps)
        self.caps: list[str] = []             # what the welcome granted
        self.events: "queue.Queue[SessionEvent]" = queue.Queue()
        self.state = SessionState.CONNECTING
        self.last_id: Optional[int] = None
        self.token: Optional[str] = None
        self._saved_token = False             # self.token came from the login store
        if logins is not None and password is None:
            self.token = logins.get(host, port, name)
            self._saved_token = self.token is not None
        self.instance: Optional[str] = None   # the database our ids belong to
        self._welcomed = False                # by this server or an earlier run of it
        self._connected_once = False
        self.limits: dict = {}
        self.registered = threading.Event()
        self._cond = threading.Condition(threading.RLock())
        self._users: set[str] = set()
        self._convs: dict[str, _Conv] = {}    # conv_key -> state
        self._room_order: list[str] = []      # conv_keys of rooms, in join order
        self._tick = itertools.count(1)       # activity order of direct messages
        self._dirty = False                   # ConversationsChanged owed
        self._seen: set[int] = set()
        self._seen_order: collections.deque[int] = collections.deque()
        self._seen_floor = 0                  # ids at or below this count as seen
        self._outgoing: collections.deque[_Outgoing] = collections.deque()
        self._inflight: "collections.OrderedDict[str, _Outgoing]" = collections.OrderedDict()
        self._reads: "collections.OrderedDict[str, _Outgoing]" = collections.OrderedDict()
        self._read_sent: dict[str, float] = {}
        self._labels = itertools.count(1)
        self._label_prefix = os.urandom(3).hex()
        self._closing = False
        self._new_name: Optional[str] = None
        # the waker is a socket pair, not a pipe: Windows' select() takes sockets only
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="parley-session", daemon=True)
        self._sock: Optional[socket.socket] = None
        self._tokens = 0.0
        self._token_time = 0.0
        self._not_before = 0.0
        self._server_wait = 0.0      # seconds the server told us to wait before reconnecting
        self._rehello_at: Optional[float] = None   # a throttled login: say hello again then
        self._removed: "collections.OrderedDict[int, str]" = collections.OrderedDict()
        self.ended: Optional[str] = None      # why the session stopped for good (banned…)

    # --- the UI's side (any thread) ---------------------------------------------
    def start(self) -> "Session":
        self._thread.start()
        return self

    # state the UIs read
    @property
    def users(self) -> set[str]:
        """Everyone online (a copy)."""
        with self._cond:
            return set(self._users)

    @property
    def guests(self) -> set[str]:
        """Who among the users online is a guest (a name no account owns), as far as
        the server told us (welcome, user lists, rooms, messages marked guest)."""
        with self._cond:
            return set(self._guests.values())

    def is_guest(self, name: str) -> bool:
        with self._cond:
            return isinstance(name, str) and name.casefold() in self._guests

    @property
    def marks_guests(self) -> bool:
        """Should the UI mark guests?  Only when someone online (you, maybe) has an
        account: when everybody is a guest the mark says nothing."""
        with self._cond:
            return bool(self._guests) and (bool(self._accounts) or self.account is not None)

    @property
    def is_account(self) -> bool:
        """Logged in to an account (not a guest)."""
        return self.account is not None

    def may_moderate(self, key: Optional[str], owner: bool = False) -> bool:
        """May I moderate room ``key`` (with ``owner``: make or unmake its
        moderators)?  A server admin anywhere; else by my role in the room.  The
        server checks every request anyway: this is what to offer."""
        if self.account is not None and self.account.get("admin"):
            return True
        with self._cond:
            c = self._convs.get(conv_key(key)) if key else None
            role = c.role if c is not None and c.kind == "room" else None
        return role == "owner" or (role == "mod" and not owner)

    @property
    def rooms_enabled(self) -> bool:
        """The server granted the ``rooms`` capability."""
        return p.CAP_ROOMS in self.caps

    def conversations(self) -> list[Conversation]:
        """Rooms in join order (#general first), then direct messages, most
        recently active first."""
        with self._cond:
            rooms = [self._convs[k] for k in self._room_order if k in self._convs]
            rooms.sort(key=lambda c: c.key.casefold() != p.GENERAL)      # stable
            dms = sorted((c for c in self._convs.values() if c.kind == "dm"),
                         key=lambda c: -c.activity)
            return [c.snapshot() for c in rooms + dms]

    def conversation(self, key: str) -> Optional[Conversation]:
        with self._cond:
            c = self._convs.get(conv_key(key)) if isinstance(key, str) else None
            return c.snapshot() if c is not None else None

    def pending_messages(self, key: Optional[str] = None) -> list[tuple[str, p.Event]]:
        """Messages sent but not yet acknowledged (in flight, then queued), oldest
        first, as ``(label, Say | Me)``; only those of conversation ``key`` if given."""
        want = conv_key(key) if key else None
        out: list[tuple[str, p.Event]] = []
        with self._cond:
            for item in itertools.chain(self._inflight.values(), self._outgoing):
                f = item.frame
                if f["type"] not in _MESSAGES:
                    continue
                if want is not None and conv_key(self._frame_conv(f)) != want:
                    continue
                cls = p.Say if f["type"] == "say" else p.Me
                out.append((item.label, cls(text=f["text"], label=item.label,
                                            room=f.get("room"), to=f.get("to"))))
        return out

    # actions: each returns the label of the frame it sends
    def say(self, text: str, room: Optional[str] = None, to: Optional[str] = None) -> str:
        """Send a chat message to #general, ``room`` or (a DM) ``to`` one user.
        Queued while offline.  Returns its label."""
        return self._message("say", text, room, to)

    def me(self, text: str, room: Optional[str] = None, to: Optional[str] = None) -> str:
        """Send an action (``/me waves``).  Returns its label."""
        return self._message("me", text, room, to)

    def send(self, text: str, conv: str, kind: str = "say") -> str:
        """Send to a conversation key: ``"#room"`` or ``"@name"``."""
        if kind not in _MESSAGES:
            raise ValueError(f"kind is 'say' or 'me', not {kind!r}")
        what, name = split_conv(conv)
        return self._message(kind, text, name if what == "room" else None,
                             name if what == "dm" else None)

    def join(self, room: str) -> str:
        """Join (or create) ``room``; the server answers with a ``RoomInfo``."""
        return self._enqueue({"type": "join", "room": room}, counted=False)

    def part(self, room: str) -> str:
        """Leave ``room``; it leaves ``conversations()`` once the server agrees."""
        return self._enqueue({"type": "part", "room": room}, counted=False)

    def list_rooms(self) -> str:
        """Ask for every room there is; answered by a ``RoomList``."""
        return self._enqueue({"type": "rooms"}, counted=False)

    def set_topic(self, room: str, topic: str) -> str:
        return self._enqueue({"type": "topic", "room": room, "topic": topic}, counted=False)

    def request_users(self, room: Optional[str] = None) -> str:
        """Everyone online, or ``room``'s members; answered by a ``UserList``."""
        frame: dict = {"type": "users"}
        if room is not None:
            frame["room"] = room
        return self._enqueue(frame, counted=False)

    def history(self, conv: str, before: Optional[int] = None, after: Optional[int] = None,
                limit: int = 50) -> str:
        """A page of ``conv``'s history; answered by a ``HistoryPage``."""
        frame = {"type": "history", **self._target(conv), "limit": limit}
        if before is not None:
            frame["before"] = before
        if after is not None:
            frame["after"] = after
        return self._enqueue(frame, counted=False)

    def search(self, query: str, conv: Optional[str] = None, before: Optional[int] = None,
               limit: int = 50) -> str:
        """Full-text search (everything you may read, or one conversation);
        answered by ``SearchResults``."""
        frame: dict = {"type": "search", "query": query, "limit": limit}
        if conv:
            frame.update(self._target(conv))
        if before is not None:
            frame["before"] = before
        return self._enqueue(frame, counted=False)

    def mark_read(self, conv: str, id: int) -> Optional[str]:
        """You have read ``conv`` up to ``id``.  Updates the unread counts at once;
        tells the server (at most once a second per conversation, the newest
        position wins) only if ``id`` is past the known read position.
        Returns the read marker's label, or None when nothing needs sending."""
        key = conv_key(conv)
        with self._cond:
            c = self._convs.get(key)
            if c is None or id <= c.read_id:
                return None
            c.read_id = id
            if id >= c.base_last:
                c.base_unread = c.base_mentions = 0
            c.local = [x for x in c.local if x[0] > id]
            if not self.rooms_enabled and self._welcomed:
                self._emit(ConversationsChanged())
                return None       # a protocol-1 server keeps no read positions
            queued = self._reads.get(key)
            if queued is not None:
                queued.frame["id"] = id
                label = queued.label
            else:
                label = self._next_label()
                frame = {"type": "read", "id": id, **self._target(c.key), "label": label}
                self._reads[key] = _Outgoing(label, frame, tracked=False)
        self._emit(ConversationsChanged())
        self._wake()
        return label

    def open_dm(self, name: str) -> str:
        """Open the direct conversation with ``name`` (before any message); its key."""
        with self._cond:
            c = self._dm(name)
            c.activity = next(self._tick)
        self._emit(ConversationsChanged())
        return c.key

    def set_name(self, name: str, password: Optional[str] = None,
                 register: bool = False) -> None:
        """After ``NameRefused``: try again with ``name`` on the same connection, as
        a guest, or with ``password`` (logging in; ``register``: making the account)."""
        with self._cond:
            self.name = name
            self._new_name = name
            self._password = password
            self._register = bool(register) and password is not None
            if password is not None:
                self.token = None        # a password login starts a new device session
        self._wake()

    # accounts: each answered by an ack (or ``account`` / ``sessions``) or an error
    def register(self, password: str) -> str:
        """A guest claims its name as an account; answered by ``AccountInfo``."""
        return self._enqueue({"type": "register", "password": password}, counted=False)

    def change_password(self, old: str, new: str) -> str:
        """Change the account's password (the other sessions are logged out)."""
        return self._enqueue({"type": "password", "old": old, "new": new}, counted=False)

    def list_sessions(self) -> str:
        """The account's logins; answered by ``SessionList``."""
        return self._enqueue({"type": "sessions"}, counted=False)

    def revoke(self, session: Optional[str] = None, others: bool = False) -> str:
        """Log out one session (by id; this one's too) or every ``others``."""
        if (session is None) == (not others):
            raise ValueError("revoke one session id, or others=True")
        frame: dict = {"type": "revoke"}
        if others:
            frame["others"] = True
        else:
            frame["session"] = session
        return self._enqueue(frame, counted=False)

    # moderation: answered by an ack (or ``audit``) or an error
    def moderate(self, action: str, room: Optional[str] = None, target: Optional[str] = None,
                 id: Optional[int] = None, duration: Optional[float] = None,
                 reason: Optional[str] = None) -> str:
        """A ``mod`` request: ``action`` in ``room`` (None: server-wide, admins only) on
        ``target`` (a name) or message ``id``; ``duration`` in seconds (None: until
        lifted).  The fields of ``core.parse(...).mod`` fit as keyword arguments."""
        if action not in p.MOD_ACTIONS:
            raise ValueError(f"unknown moderation action {action!r}")
        frame: dict = {"type": "mod", "action": action}
        for key, value in (("room", room), ("target", target), ("id", id),
                           ("duration", duration), ("reason", reason)):
            if value is not None and value != "":
                frame[key] = value
        return self._enqueue(frame, counted=False)

    def audit(self, before: Optional[int] = None, limit: int = 20) -> str:
        """Server admins: the newest moderation actions; answered by ``AuditLog``."""
        frame: dict = {"type": "audit", "limit": limit}
        if before is not None:
            frame["before"] = before
        return self._enqueue(frame, counted=False)

    def is_removed(self, id: int) -> bool:
        """Was message ``id`` removed by a moderator (or its author) since we started?"""
        with self._cond:
            return id in self._removed

    @property
    def session_id(self) -> Optional[str]:
        """This login's id in ``sessions`` (None for a guest)."""
        acc = self.account
        return acc.get("session") if isinstance(acc, dict) else None

    def pending(self) -> int:
        """Requests and messages not yet acknowledged by the server."""
        with self._cond:
            return len(self._outgoing) + len(self._inflight)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until every message and request sent so far is answered."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (not self._outgoing and not self._inflight) or
                self.state is SessionState.CLOSED, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Say goodbye and stop the session thread."""
        with self._cond:
            self._closing = True
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        elif self._thread.ident is None:          # never started: nothing else closes these
            self.state = SessionState.CLOSED
            for s in (self._wake_r, self._wake_w):
                s.close()

    def trust(self, yes: bool) -> None:
        """Answer a ``TrustQuestion``: trust this certificate (remembered in
        known_hosts) or not (the session stops)."""
        self._trust_answer = yes
        self._trust_given.set()

    def reconnect_now(self) -> None:
        """Drop the current connection (as a network failure would); the session
        reconnects and catches up.  Useful after a network change, and in tests."""
        sock = self._sock
        if sock is not None:
            try:
                # the socket's own shutdown, also under TLS: the SSL object stays the
                # session thread's alone
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def connected(self) -> bool:
        return self.state is SessionState.CONNECTED

    # --- helpers for the UI side -------------------------------------------------------
    def _next_label(self) -> str:
        return f"{self._label_prefix}-{next(self._labels)}"

    @staticmethod
    def _target(conv: str) -> dict:
        what, name = split_conv(conv)
        return {"room": name} if what == "room" else {"with": name}

    def _frame_conv(self, frame: dict) -> str:
        if frame.get("to"):
            return "@" + frame["to"]
        return frame.get("room") or p.GENERAL

    def _message(self, kind: str, text: str, room: Optional[str], to: Optional[str]) -> str:
        if room is not None and to is not None:
            raise ValueError("a message goes to a room or to a user, not both")
        frame: dict = {"type": kind, "text": text}
        if room is not None:
            frame["room"] = room
        if to is not None:
            frame["to"] = to
            with self._cond:
                c = self._dm(to)
                c.activity = next(self._tick)
            self._emit(ConversationsChanged())
        return self._enqueue(frame)

    def _enqueue(self, frame: dict, counted: bool = True) -> str:
        label = self._next_label()
        frame["label"] = label
        with self._cond:
            if self.state is SessionState.CLOSED:
                raise OfflineQueueFull("the session is closed")
            if counted:
                queued = sum(1 for o in self._outgoing if o.frame["type"] in _MESSAGES)
                if queued >= self.max_queued:
                    raise OfflineQueueFull(f"{queued} messages are already waiting "
                                           "to be sent; try again when connected")
            self._outgoing.append(_Outgoing(label, frame))
        self._wake()
        return label

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:           # full (a wake-up is pending anyway) or closed
            pass

    # --- conversation state (under the lock) -----------------------------------------
    def _dm(self, name: str) -> _Conv:
        key = conv_key("@" + name)
        c = self._convs.get(key)
        if c is None:
            c = self._convs[key] = _Conv("@" + name, "dm", name)
            c.set_members({self.name, name})
            c.count = len(c.members)
            c.activity = next(self._tick)
            self._dirty = True
        return c

    def _room(self, room: str, create: bool = False) -> Optional[_Conv]:
        key = conv_key(room)
        c = self._convs.get(key)
        if c is None and create:
            c = self._convs[key] = _Conv(room, "room", room)
            self._room_order.append(key)
            self._dirty = True
        return c

    def _drop_room(self, room: str) -> None:
        key = conv_key(room)
        c = self._convs.get(key)
        if c is not None and c.kind == "room":
            del self._convs[key]
            self._room_order = [k for k in self._room_order if k != key]
            self._reads.pop(key, None)
            self._dirty = True

    def _room_info(self, info: p.RoomInfo) -> None:
        c = self._room(info.room, create=True)
        c.name = c.key = info.room               # the server's spelling
        c.topic = info.topic
        c.count = info.count
        c.role = info.role
        c.set_members(info.members)
        if info.members is not None and self.auth == p.AUTH_OPTIONAL:
            guests = {g.casefold() for g in (info.guests or [])}
            for m in info.members:
                self._mark_guest(m, m.casefold() in guests)
        for f in info.history:
            if isinstance(f.get("id"), int):
                c.last_id = max(c.last_id, f["id"])
        self._dirty = True

    def _is_me(self, name: Optional[str]) -> bool:
        return bool(name) and name.casefold() == self.name.casefold()

    def _apply(self, ev: p.Event, live: bool) -> None:
        """A history frame (message, join, leave, topic) changes the conversations.
        ``live``: it happened now (not part of a welcome's history)."""
        key = p.conversation(ev, self.name)
        if key is None:
            return
        if key.startswith("@"):
            c = self._dm(key[1:])
            c.activity = next(self._tick)
        else:
            c = self._room(key, create=not self.rooms_enabled)
        if c is not None:
            c.last_id = max(c.last_id, ev.id)
            self._dirty = True
        if isinstance(ev, p.Message):
            if live and self.auth == p.AUTH_OPTIONAL:     # a live message says who is a guest
                self._mark_guest(ev.sender, bool(ev.guest))
            if c is not None and live and not self._is_me(ev.sender) and ev.id > c.read_id \
                    and ev.id > c.base_last:
                c.local.append((ev.id, _mentions(ev.text, self.name)))
            return
        if isinstance(ev, p.Topic):
            if c is not None:
                c.topic = ev.topic
            return
        if isinstance(ev, p.Moderation):
            self._moderation(ev, key, c, live)
            return
        if not live:
            return                   # (the welcome's member lists are already current)
        if isinstance(ev, p.Join):
            self._users.add(ev.name)
            if c is not None and c.kind == "room":
                if c.members is not None:
                    c.members[ev.name.casefold()] = ev.name
                    c.count = len(c.members)
                else:
                    c.count += 1
        elif isinstance(ev, p.Leave):
            if ev.reason != p.PART:           # gone from the server, not just from a room
                self._users = {u for u in self._users if u.casefold() != ev.name.casefold()}
                self._guests.pop(ev.name.casefold(), None)
                self._accounts.discard(ev.name.casefold())
            if ev.room and self._is_me(ev.name) and ev.reason == p.PART:
                self._drop_room(ev.room)        # I left it on another connection
                return
            if ev.room:
                rooms = [c] if c is not None and c.kind == "room" else []
            else:                               # no room: gone from every room
                rooms = [self._convs[k] for k in self._room_order if k in self._convs]
            for r in rooms:
                if r.members is not None:
                    r.members.pop(ev.name.casefold(), None)
                    r.count = len(r.members)
                elif ev.room:
                    r.count = max(0, r.count - 1)

    def _moderation(self, ev: p.Moderation, key: str, c: Optional[_Conv], live: bool) -> None:
        """(locked) A ``mod`` frame: a removed message is remembered (and announced);
        a kick or ban of me takes the room out of my conversations."""
        if ev.action == "delete" and isinstance(ev.message, int):
            self._removed[ev.message] = key
            while len(self._removed) > _REMOVED_WINDOW:
                self._removed.popitem(last=False)
            self._emit(MessageRemoved(key, ev.message, ev.by, ev.reason or ""))
        elif ev.action in ("op", "deop") and live and self._is_me(ev.target):
            if c is not None and c.kind == "room":
                c.role = "mod" if ev.action == "op" else None
                self._dirty = True
        elif ev.action in ("kick", "ban") and live and self._is_me(ev.target) and ev.room:
            if c is not None and c.kind == "room":
                self._drop_room(ev.room)
                self._emit(RemovedFromRoom(c.key, ev.action, ev.by, ev.reason or ""))

    def _mark_guest(self, name: str, guest: bool) -> None:
        """(locked) ``name`` is (or is not) a guest; AccountChanged owed if that is news."""
        key = name.casefold()
        if guest == (key in self._guests) and guest != (key in self._accounts):
            return
        if guest:
            self._guests[key] = name
            self._accounts.discard(key)
        else:
            self._guests.pop(key, None)
            self._accounts.add(key)
        self._emit(AccountChanged())

    def _unread(self, u: p.Unread) -> None:
        if u.room:
            c = self._room(u.room)
        elif u.peer:
            c = self._dm(u.peer)
        else:
            return
        if c is None:
            return
        c.last_id = max(c.last_id, u.last_id)
        if u.read_id >= c.read_id:
            c.read_id = u.read_id
            c.base_unread, c.base_mentions = u.count, u.mentions
        else:                       # we already marked more as read than this says
            if c.read_id >= u.last_id:
                c.base_unread = c.base_mentions = 0
            else:
                c.base_unread, c.base_mentions = u.count, u.mentions
        c.base_last = max(c.base_last, u.last_id)
        c.local = [x for x in c.local if x[0] > c.base_last and x[0] > c.read_id]
        self._dirty = True

    def _presence(self, ev: p.Presence) -> None:
        c = self._room(ev.room)
        for n in ev.joined:
            self._users.add(n)
        if c is None:
            return
        c.count = ev.count
        if c.members is not None:
            for n in ev.joined:
                c.members[n.casefold()] = n
            for n in ev.left:
                c.members.pop(n.casefold(), None)
        self._dirty = True

    def _user_list(self, ev: p.UserList) -> None:
        if ev.room:
            c = self._room(ev.room)
            if c is not None:
                c.set_members(ev.users)
                c.count = len(ev.users)
                self._dirty = True
        else:
            self._users = set(ev.users)
        if self.auth == p.AUTH_OPTIONAL:
            guests = {g.casefold() for g in (ev.guests or [])}
            for n in ev.users:
                self._mark_guest(n, n.casefold() in guests)

    def _room_list(self, ev: p.RoomList) -> None:
        for r in ev.rooms:
            name = r.get("room")
            c = self._room(name) if isinstance(name, str) else None
            if c is None:
                continue
            if isinstance(r.get("topic"), str) and r["topic"] != c.topic:
                c.topic = r["topic"]
                self._dirty = True
            if isinstance(r.get("count"), int) and r["count"] != c.count:
                c.count = r["count"]
                self._dirty = True

    def _welcome_rooms(self, w: p.Welcome) -> None:
        """The welcome says which rooms we are in (or, without rooms, #general)."""
        if self.rooms_enabled and w.rooms is not None:
            infos = []
            for d in w.rooms:
                try:
                    infos.append(p.event_from_dict({**d, "type": "room"}, p.SERVER_FRAMES))
                except p.ProtocolError:
                    continue
            keep = {conv_key(i.room) for i in infos}
            for k in list(self._room_order):
                if k not in keep:
                    self._drop_room(k)
            for i in infos:
                self._room_info(i)
            # the welcome's order is the join order
            order = [conv_key(i.room) for i in infos]
            self._room_order = order + [k for k in self._room_order if k not in order]
        else:
            for k in list(self._room_order):
                if k != p.GENERAL:
                    self._drop_room(k)
            c = self._room(p.GENERAL, create=True)
            c.set_members(w.users)
            c.count = len(w.users)
        self._dirty = True

    # --- the session thread ----------------------------------------------------------
    def _emit(self, event: SessionEvent) -> None:
        self.events.put(event)

    def _flush_changes(self) -> None:
        with self._cond:
            dirty, self._dirty = self._dirty, False
        if dirty:
            self._emit(ConversationsChanged())

    def _set_state(self, state: SessionState, detail: str = "",
                   retry_in: Optional[float] = None) -> None:
        with self._cond:
            self.state = state
            self._cond.notify_all()
        self._emit(StateChanged(state, detail, retry_in))

    def _run(self) -> None:
        attempt = 0
        first = True
        try:
            while not self._closing:
                stage = "connect"
                try:
                    sock = socket.create_connection((self.host, self.port), self.connect_timeout)
                    if self.tls is not None:
                        stage = "tls"
                        sock = self._secure(sock)
                except TlsRefusal as e:
                    self._emit(e.event)
                    break
                except OSError as e:
                    if stage == "tls":
                        reason = describe_handshake_error(e, self.port)
                    else:
                        reason = e.strerror or str(e) or type(e).__name__
                    if first and not self.retry_first:
                        self._emit(ConnectFailed(self.host, self.port, reason))
                        break
                    first = False
                    delay = self._backoff(attempt)
                    attempt += 1
                    self._set_state(SessionState.RECONNECTING, reason, delay)
                    if self._sleep(delay):
                        break
                    continue
                first = False
                reason, registered = self._serve(sock)
                if registered:
                    attempt = 0
                if self._closing or not self.reconnect or reason is None:
                    break
                delay = self._backoff(attempt)
                attempt += 1
                self._set_state(SessionState.RECONNECTING, reason, delay)
                if self._sleep(delay):
                    break
        except Exception:   # pragma: no cover - a bug; make it visible
            log.exception("session thread crashed")
        finally:
            self._set_state(SessionState.CLOSED, self.ended or "closed")
            for s in (self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass

    def _secure(self, sock: socket.socket) -> ssl.SSLSocket:
        """TLS over a connected socket, and the server's certificate checked (see
        tls.py): an SSLSocket, OSError (retry later) or TlsRefusal (stop)."""
        assert self.tls is not None
        opts = self.tls
        self.tls_info = None
        known = KnownHosts(opts.known_hosts)
        pinned = None if opts.ca else known.get(self.host, self.port)
        reason = ""
        if pinned is None:
            try:
                ssock = handshake(sock, verifying_context(opts.ca), self.host, self.connect_timeout)
            except ssl.SSLCertVerificationError as e:
                reason = e.verify_message or str(e)
                if opts.ca:
                    raise TlsRefusal(TlsRefused(
                        self.host, self.port,
                        f"the certificate of {self.host}:{self.port} does not verify against "
                        f"{opts.ca}: {reason}")) from None
                # self-signed or an unknown CA: look at its fingerprint (trust on first use)
                sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            else:
                self.tls_info = TlsInfo(ssock.version() or "TLS",
                                        fingerprint(ssock.getpeercert(binary_form=True)), "ca")
                return ssock
        ssock = handshake(sock, pinning_context(), self.host, self.connect_timeout)
        fp = fingerprint(ssock.getpeercert(binary_form=True))
        if pinned is not None:
            if fp != pinned:
                ssock.close()
                raise TlsRefusal(TlsRefused(
                    self.host, self.port,
                    f"THE CERTIFICATE OF {self.host}:{self.port} HAS CHANGED.  Someone may be "
                    f"listening in, or the server has a new certificate.  Expected SHA-256 "
                    f"{pinned}, got {fp}.  If the change is expected, remove the line for "
                    f"{self.host}:{self.port} from {known.path}.",
                    fingerprint=fp, expected=pinned, changed=True))
            self.tls_info = TlsInfo(ssock.version() or "TLS", fp, "known_hosts")
            return ssock
        if not self._ask_trust(fp, reason):
            ssock.close()
            raise TlsRefusal(TlsRefused(
                self.host, self.port,
                f"the certificate of {self.host}:{self.port} (SHA-256 {fp}) is not trusted"
                + (f" ({reason})" if reason else ""), fingerprint=fp))
        try:
            known.add(self.host, self.port, fp)
        except OSError as e:
            log.warning("cannot remember the certificate in %s: %s", known.path, e)
        self.tls_info = TlsInfo(ssock.version() or "TLS", fp, "first use")
        return ssock

    def _ask_trust(self, fp: str, reason: str) -> bool:
        policy = self.tls.trust if self.tls is not None else "no"
        if policy in ("yes", "no"):
            return policy == "yes"
        self._trust_given.clear()
        self._trust_answer = None
        self._emit(TrustQuestion(self.host, self.port, fp, reason))
        while not self._trust_given.wait(0.2):
            if self._closing:
                return False
        return bool(self._trust_answer)

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * (2 ** attempt))
        # never sooner than the server asked (a throttled connection says how long)
        wait, self._server_wait = self._server_wait, 0.0
        return max(round(base * random.uniform(0.8, 1.2), 2), wait)

    def _sleep(self, seconds: float) -> bool:
        """Wait, waking early only to close; True if closing."""
        deadline = time.monotonic() + seconds
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                sel.select(min(left, 0.5))
                self._drain_wake()
        finally:
            sel.close()
        return True

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError, OSError):
            pass

    def _serve(self, sock: socket.socket) -> tuple[Optional[str], bool]:
        """Run one connection.  Returns (why it ended or None to stop, registered?)."""
        self._sock = sock
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        decoder = p.FrameDecoder(p.SERVER_FRAMES, max_line=1 << 24)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        out = bytearray()
        self._tls_retry = None          # TLS: the bytes a write that wanted more must retry
        read_wants_write = False        # TLS: a read waits for the socket to be writable
        registered = False
        last_recv = time.monotonic()
        ping_sent = False
        reason: Optional[str] = "connection lost"

        def hello() -> None:
            with self._cond:
                password, register = self._password, self._register
            token = None if password is not None else self.token
            self._hello_sent = ("password" if password is not None else
                                "token" if token and (self.account is not None or
                                                      self._saved_token) else "guest")
            self._rehello_at = None
            out.extend(p.encode(p.Hello(version=p.PROTOCOL_VERSION, name=self.name,
                                        client=self.client, client_version=__version__,
                                        last_id=self.last_id, token=token,
                                        caps=self.want_caps or None,
                                        instance=self.instance, password=password,
                                        register=True if register else None,
                                        device=self.device if password is not None else None)))

        hello()
        try:
            while True:
                if self._closing:
                    if registered:
                        self._take_reads(out, force=True)
                    out.extend(p.encode(p.Bye(reason=p.QUIT)))
                    self._flush_blocking(sock, out)
                    reason = None
                    break
                with self._cond:
                    new_name, self._new_name = self._new_name, None
                if new_name is not None and not registered:
                    hello()
                elif (not registered and self._rehello_at is not None
                      and time.monotonic() >= self._rehello_at):
                    hello()              # a throttled login, tried again when told
                if registered:
                    self._take_outgoing(out)
                if out:
                    self._send_some(sock, out)
                want = selectors.EVENT_READ | (
                    selectors.EVENT_WRITE if out or read_wants_write else 0)
                sel.modify(sock, want)
                timeout = 1.0
                if not registered and self._rehello_at is not None:
                    timeout = max(0.0, min(timeout, self._rehello_at - time.monotonic()))
                if registered and self._outgoing_ready_soon():
                    timeout = max(0.0, min(timeout, self._next_send_in()))
                ready = sel.select(timeout)
                now = time.monotonic()
                for key, _mask in ready:
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                        continue
                    read_wants_write = False
                    try:
                        data = sock.recv(262144)
                        if isinstance(sock, ssl.SSLSocket):
                            # records already decrypted inside the SSL object: the socket
                            # will not become readable for them, read them now
                            while data and sock.pending():
                                data += sock.recv(sock.pending())
                    except ssl.SSLWantWriteError:   # (TLS) the read needs to write first
                        read_wants_write = True
                        continue
                    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                        continue
                    if not data:
                        raise ConnectionResetError("the server closed the connection")
                    last_recv = now
                    ping_sent = False
                    try:
                        for item in decoder.feed(data):
                            result = self._handle(item, out)
                            if result == "registered":
                                registered = True
                            elif result is not None:
                                reason = result if result != "stop" else None
                                return reason, registered
                    finally:
                        self._flush_changes()
                idle = now - last_recv
                if idle > self.keepalive and not ping_sent:
                    out.extend(p.encode(p.Ping(token="keepalive")))
                    ping_sent = True
                elif idle > 2 * self.keepalive:
                    raise TimeoutError(f"no answer from the server for {int(idle)} s")
        except OSError as e:
            reason = e.strerror or str(e) or "connection lost"
        finally:
            sel.close()
            try:
                sock.close()
            except OSError:
                pass
            self._sock = None
            self.registered.clear()
            lost: list[_Outgoing] = []
            with self._cond:        # whatever was in flight goes out again after reconnecting
                again = []
                for item in self._inflight.values():
                    # … but a password is never sent again without being asked
                    (lost if item.frame["type"] in _ONCE else again).append(item)
                self._outgoing.extendleft(reversed(again))
                self._inflight.clear()
                self._cond.notify_all()
            for item in lost:
                self._emit(p.Error("not_sent", "the connection dropped before the server "
                                   f"answered; {item.frame['type']} again", item.label))
        return reason, registered

    def _send_some(self, sock: socket.socket, out: bytearray) -> None:
        """Send what the socket takes now from the front of ``out``."""
        if not isinstance(sock, ssl.SSLSocket):
            try:
                del out[:sock.send(out)]
            except (BlockingIOError, InterruptedError):
                pass
            return
        # TLS: a write that wants to read or write must be retried with the same bytes
        chunk = self._tls_retry if self._tls_retry is not None else bytes(out[:65536])
        try:
            n = sock.send(chunk)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            self._tls_retry = chunk        # (want-read: we always wait for readable too)
            return
        self._tls_retry = None
        del out[:n]

    def _flush_blocking(self, sock: socket.socket, out: bytearray) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(1.0)
            if self._tls_retry is not None:     # finish a TLS write begun non-blocking
                sock.sendall(self._tls_retry)
                del out[:len(self._tls_retry)]
                self._tls_retry = None
            sock.sendall(out)
            if isinstance(sock, ssl.SSLSocket):
                # the server answers bye with its last frames and its close_notify;
                # then ours (sent earlier, it would arrive before those frames end)
                try:
                    while sock.recv(65536):
                        pass
                    sock = sock.unwrap()
                except (OSError, ValueError):
                    pass
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):     # read until the server hangs up
                pass
        except OSError:
            pass

    # pacing: mirror the server's token bucket so scripted bursts are never refused
    def _refill(self) -> None:
        rate = float(self.limits.get("rate", 5)) * 0.95
        burst = float(self.limits.get("burst", 20))
        now = time.monotonic()
        self._tokens = min(burst, self._tokens + (now - self._token_time) * rate)
        self._token_time = now

    def _outgoing_ready_soon(self) -> bool:
        with self._cond:
            return bool(self._outgoing) or bool(self._reads)

    def _next_send_in(self) -> float:
        self._refill()
        rate = float(self.limits.get("rate", 5)) * 0.95
        wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / rate
        with self._cond:
            if not self._outgoing and self._reads:       # only read markers wait
                now = time.monotonic()
                wait = max(wait, min(self._read_sent.get(k, 0.0) + _READ_INTERVAL - now
                                     for k in self._reads))
        return max(wait, self._not_before - time.monotonic(), 0.0)

    def _take_outgoing(self, out: bytearray) -> None:
        if time.monotonic() < self._not_before:
            return
        self._refill()
        refused: list[p.Error] = []
        with self._cond:
            while self._outgoing and self._tokens >= 1 and len(self._inflight) < 64:
                item = self._outgoing.popleft()
                problem = self._unsupported(item.frame)
                if problem:
                    refused.append(p.Error(NO_ROOMS, problem, item.label))
                    self._cond.notify_all()
                    continue
                if item.tracked:
                    self._inflight[item.label] = item
                self._tokens -= 1
                out.extend(p.encode_dict(item.frame))
            if not self._outgoing:
                self._take_reads(out)
        for err in refused:
            self._emit(err)

    def _take_reads(self, out: bytearray, force: bool = False) -> None:
        """Read markers go out after everything else, at most one a second per
        conversation (the newest position wins)."""
        with self._cond:
            now = time.monotonic()
            for key in list(self._reads):
                if not force and (self._tokens < 1 or
                                  now - self._read_sent.get(key, -1e9) < _READ_INTERVAL):
                    continue
                item = self._reads.pop(key)
                self._read_sent[key] = now
                self._tokens -= 1
                out.extend(p.encode_dict(item.frame))

    def _unsupported(self, frame: dict) -> Optional[str]:
        """(locked) Why a frame cannot go to a server without rooms, or None."""
        if self.rooms_enabled or not self._welcomed:
            return None
        kind = frame["type"]
        room = frame.get("room")
        if kind in _ROOM_REQUESTS and not (kind == "join" and conv_key(room) == p.GENERAL):
            return "this server does not support rooms, history or search"
        if frame.get("to"):
            return "this server does not support direct messages"
        if room is not None and conv_key(room) != p.GENERAL:
            return "this server does not support rooms; it has #general only"
        if room is not None:
            del frame["room"]                 # (a protocol-1 server would not mind it)
        return None

    def _settle(self, label: Optional[str]) -> Optional[_Outgoing]:
        if label is None:
            return None
        with self._cond:
            item = self._inflight.pop(label, None)
            self._cond.notify_all()
        return item

    def _fresh(self, id: int) -> bool:
        """(session thread) First time we see this id?  Remembers it."""
        if id <= self._seen_floor or id in self._seen:
            return False
        self._seen.add(id)
        self._seen_order.append(id)
        if len(self._seen_order) > _SEEN_WINDOW:
            old = self._seen_order.popleft()
            self._seen.discard(old)
            self._seen_floor = max(self._seen_floor, old)
        if self.last_id is None or id > self.last_id:
            self.last_id = id
        return True

    def _handle(self, item: Union[p.Event, p.ProtocolError], out: bytearray) -> Optional[str]:
        """Handle one frame from the server; a string result ends the connection."""
        if isinstance(item, p.ProtocolError):
            log.warning("bad frame from server: %s", item)
            return None
        if isinstance(item, p.Ping):
            out.extend(p.encode(p.Pong(token=item.token)))
            return None
        if isinstance(item, p.Pong):
            return None
        if isinstance(item, p.Welcome):
            self._welcome(item)
            return "registered"
        if isinstance(item, p.HISTORY_FRAMES):
            if not self._fresh(item.id):
                return None            # already seen (catch-up overlap)
            with self._cond:
                self._apply(item, live=True)
            self._emit(item)
            return None
        if isinstance(item, p.UserList):
            self._settle(item.label)
            with self._cond:
                self._user_list(item)
            self._emit(item)
            return None
        if isinstance(item, p.Ack):
            done = self._settle(item.label)
            if done is not None and done.frame["type"] == "part":
                with self._cond:
                    self._drop_room(done.frame["room"])
            self._emit(item)
            return None
        if isinstance(item, p.RoomInfo):
            self._settle(item.label)
            with self._cond:
                self._room_info(item)
            self._emit(item)
            return None
        if isinstance(item, p.Unread):
            with self._cond:
                self._unread(item)
            self._emit(item)
            return None
        if isinstance(item, p.Presence):
            with self._cond:
                self._presence(item)
            self._emit(item)
            return None
        if isinstance(item, p.RoomList):
            self._settle(item.label)
            with self._cond:
                self._room_list(item)
            self._emit(item)
            return None
        if isinstance(item, p.HistoryPage):
            self._settle(item.label)
            self._emit(item)
            return None
        if isinstance(item, p.SearchResults):
            self._settle(item.label)
            self._emit(item)
            return None
        if isinstance(item, p.AccountInfo):
            self._settle(item.label)
            with self._cond:
                self.account = {"name": item.name, "admin": item.admin, "session": item.session}
                self._password = None
                self._guests.pop(self.name.casefold(), None)
                self._accounts.add(self.name.casefold())
            self._emit(item)
            self._emit(AccountChanged())
            return None
        if isinstance(item, (p.SessionList, p.AuditLog)):
            self._settle(item.label)
            self._emit(item)
            return None
        if isinstance(item, p.Invited):
            self._emit(item)
            return None
        if isinstance(item, p.Error):
            return self._error(item)
        if isinstance(item, p.Bye):
            self._emit(item)
            if item.reason == p.REVOKED:
                self._logged_out(item.message or "this session was logged out")
                return "stop"
            if item.reason == p.BANNED:        # coming back would only be refused
                self.ended = item.message or "banned from this server"
                return "stop"
            if item.reason == p.KICKED:        # may come back, after a short wait
                self._server_wait = max(self._server_wait, KICK_WAIT)
            return f"disconnected by the server: {item.message or item.reason}"
        return None

    def _logged_out(self, message: str) -> None:
        """The login token no longer works: forget it, stop, say so."""
        self.token = None
        self._keep_login(None)
        self.logged_out = True
        self.reconnect = False
        with self._cond:
            self._password = None
        self._emit(LoggedOut(message))

    def _keep_login(self, token: Optional[str]) -> None:
        if self.logins is None:
            return
        try:
            if token is None:
                self.logins.forget(self.host, self.port, self.name)
            elif self.account is not None:
                self.logins.put(self.host, self.port, self.account["name"], token)
        except OSError as e:
            log.warning("cannot keep the login token: %s", e)

    def _error(self, err: p.Error) -> Optional[str]:
        if not self.registered.is_set() and self._hello_sent == "token" \
                and err.code in _TOKEN_REFUSED and self._saved_token:
            # a login kept from an earlier run that no longer works: ask for the password
            self._saved_token = False
            self._keep_login(None)
            self.token = None
            self._emit(NameRefused(self.name, p.LOGIN_FAILED,
                                   "your saved login has ended (logged out elsewhere?): "
                                   "enter your password"))
            return None
        if not self.registered.is_set() and self._hello_sent == "token" \
                and err.code in _TOKEN_REFUSED:
            # the login token of an account was revoked (or the account removed) while
            # we were away: never fall back to the password by ourselves
            self._emit(err)
            self._logged_out(f"{err.message} (your login on this device is no longer valid: "
                             "log in again with your password)")
            return "stop"
        if err.code in _HELLO_REFUSED and not self.registered.is_set():
            self.token = None
            with self._cond:
                self._password = None      # asked again by the UI, never resent by itself
                self._register = False
            self._emit(NameRefused(self.name, err.code, err.message))
            return None
        if err.code == p.THROTTLED and not self.registered.is_set() \
                and self._hello_sent == "password":
            # too many failed logins: the connection stays; the same hello goes again
            # once the server's wait is over (it closes a throttled *connection*
            # instead, and then we reconnect no sooner than that)
            self._server_wait = err.retry_after or 1.0
            self._rehello_at = time.monotonic() + (err.retry_after or 1.0)
            self._emit(err)
            return None
        if err.code in _FATAL or (err.code == p.BANNED and not self.registered.is_set()):
            if err.code == p.BANNED:       # banned from the server: its hello is refused
                self.reconnect = False
                self.ended = err.message
            self._emit(err)
            self._closing = True
            return "stop"
        if err.code in _REFUSED:       # the server closes now; come back later
            self._server_wait = err.retry_after or 0.0
            self._emit(err)
            return None
        if err.code == p.RATE_LIMITED and err.label is not None:
            with self._cond:           # not accepted: send it again a little later
                item = self._inflight.pop(err.label, None)
                if item is not None:
                    self._outgoing.appendleft(item)
            self._tokens = 0.0
            self._not_before = time.monotonic() + (err.retry_after or 1.0)
            return None
        done = self._settle(err.label)
        if (done is not None and done.frame["type"] == "part"
                and err.code in (p.NOT_MEMBER, p.NO_SUCH_ROOM)):
            with self._cond:           # not in it after all
                self._drop_room(done.frame["room"])
        self._emit(err)
        return None

    def _welcome(self, w: p.Welcome) -> None:
        if self.instance is not None and w.instance != self.instance:
            self.last_id = None          # another database: its ids are not ours
            self._seen.clear()
            self._seen_order.clear()
            self._seen_floor = 0
            with self._cond:             # nor are the read positions we knew
                for c in self._convs.values():
                    c.read_id = c.last_id = c.base_last = 0
                    c.base_unread = c.base_mentions = 0
                    c.local = []
                self._reads.clear()
                self._read_sent.clear()
        self.instance = w.instance
        self.name = w.name
        self.token = w.token          # an account's: this device's login token
        self.auth = w.auth
        self.account = dict(w.account) if isinstance(w.account, dict) else None
        self._saved_token = False          # (it worked: from now on, as any token)
        if self.account is not None:
            self._keep_login(w.token)
        self.limits = w.limits
        self.caps = list(w.caps or [])
        self._tokens = float(w.limits.get("burst", 20)) / 2   # others may have used some
        self._token_time = time.monotonic()
        mine = {h.get("label") for h in w.history if h.get("label")}
        with self._cond:
            self._password = None         # from now on, the token (never the password)
            self._register = False
            self._users = set(w.users)
            self._guests = {g.casefold(): g for g in (w.guests or [])}
            self._accounts = ({u.casefold() for u in w.users} - set(self._guests)
                              if self.auth == p.AUTH_OPTIONAL else set())
            self._welcomed = True
            if mine:     # sent before the drop and accepted: do not send them twice
                self._outgoing = collections.deque(o for o in self._outgoing if o.label not in mine)
            self._welcome_rooms(w)
            self._cond.notify_all()
        again, self._connected_once = self._connected_once, True
        self._set_state(SessionState.CONNECTED,
                        f"{'reconnected' if again else 'connected'} to {self.host}:{self.port} as {w.name}")
        self._emit(w)
        for frame in w.history:
            try:
                ev = p.event_from_dict(frame, p.SERVER_FRAMES)
            except p.ProtocolError:
                continue
            if isinstance(ev, p.HISTORY_FRAMES):
                if not self._fresh(ev.id):
                    continue
                with self._cond:
                    self._apply(ev, live=False)
                self._emit(ev)
        if self.last_id is None or w.last_id > self.last_id:
            self.last_id = w.last_id
        self._seen_floor = max(self._seen_floor, w.last_id)   # the welcome covers up to here
        self._flush_changes()
        self._emit(AccountChanged())
        self.registered.set()
