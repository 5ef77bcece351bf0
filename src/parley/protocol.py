"""Parley wire protocol, sans-IO.

One UTF-8 JSON object per ``\\n``-terminated line ("JSON Lines"), each with a
``type``.  This module turns bytes into typed events and typed events into
bytes.  It owns no socket, no thread and reads no clock: the server, the CLI
client, the GUI client and the benchmarks all share it.

    decoder = FrameDecoder(CLIENT_FRAMES, max_line=8192)
    for item in decoder.feed(data):
        if isinstance(item, ProtocolError): ...   # bad line; stream goes on
        else: ...                                  # a validated event
    sock.sendall(encode(Message(id=1, ts="...", sender="bob", text="hi")))

See docs/protocol.md for the frames with an example exchange for each.
"""
from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional, Union

PROTOCOL_VERSION = 1

# --- error codes (stable, machine readable) -------------------------------
LINE_TOO_LONG = "line_too_long"
BAD_UTF8 = "bad_utf8"
BAD_JSON = "bad_json"
BAD_FRAME = "bad_frame"          # valid JSON but not an object / no type
UNKNOWN_TYPE = "unknown_type"
BAD_FIELD = "bad_field"          # missing or mistyped field
TRUNCATED = "truncated"          # connection closed in the middle of a line
NAME_TAKEN = "name_taken"
NAME_INVALID = "name_invalid"
VERSION_UNSUPPORTED = "version_unsupported"
NOT_REGISTERED = "not_registered"
ALREADY_REGISTERED = "already_registered"
TEXT_TOO_LONG = "text_too_long"
EMPTY_TEXT = "empty_text"
BAD_TEXT = "bad_text"            # control characters in a message
RATE_LIMITED = "rate_limited"
# rooms, direct messages, history (cap "rooms")
ROOM_INVALID = "room_invalid"    # a room name that breaks the room rules
NO_SUCH_ROOM = "no_such_room"
NOT_MEMBER = "not_member"        # you are not in that room (join it first)
NO_SUCH_USER = "no_such_user"    # a direct message to nobody online
DM_UNSUPPORTED = "dm_unsupported"  # the recipient's client does not know direct messages
BAD_REQUEST = "bad_request"      # fields that do not fit together (room and to, huge pages…)
BAD_QUERY = "bad_query"          # a search the full-text engine cannot parse
TOPIC_TOO_LONG = "topic_too_long"
STORE_FAILED = "store_failed"    # the server could not store it: not sent, try again
INTERNAL = "internal"
SERVER_FULL = "server_full"
TOO_MANY_CONNECTIONS = "too_many_connections"  # from one address (--max-per-address)
THROTTLED = "throttled"          # new connections too fast, or just kicked: see retry_after
TLS_REQUIRED = "tls_required"  # plain text on a TLS port (sent in clear text, then closed)
# accounts
AUTH_REQUIRED = "auth_required"      # this server admits accounts only: log in or register
NAME_REGISTERED = "name_registered"  # a guest asked for a name an account owns
LOGIN_FAILED = "login_failed"        # wrong name or password (the same answer for both)
INSECURE = "insecure"                # a password over plain text from another machine
ACCOUNTS_OFF = "accounts_off"        # this server runs with --auth off
BAD_PASSWORD = "bad_password"        # a new password that breaks the password rules
NO_SUCH_SESSION = "no_such_session"  # revoke: no session of yours has that id
# moderation
FORBIDDEN = "forbidden"          # you may not do that (not a moderator / a higher rank)
MUTED = "muted"                  # you are muted here (see the message: until when)
BANNED = "banned"                # you are banned from this room / this server
INVITE_ONLY = "invite_only"      # the room takes only people who were invited
NO_SUCH_MESSAGE = "no_such_message"

# --- reasons a user leaves / a connection is closed -----------------------
QUIT = "quit"
TIMEOUT = "timeout"
FLOOD = "flood"
LOST = "lost"
SENDQ = "sendq_exceeded"
SHUTDOWN = "shutdown"
PROTOCOL = "protocol"
PART = "part"
REVOKED = "revoked"              # the session was logged out (from another device, or its
                                 # account removed or its password changed)
KICKED = "kicked"                # a moderator removed you (from a room, or the server)

LEAVE_REASONS = {
    QUIT: "quit",
    TIMEOUT: "timed out",
    FLOOD: "kicked for flooding",
    LOST: "connection lost",
    SENDQ: "too slow to keep up",
    SHUTDOWN: "server shutting down",
    PROTOCOL: "too many protocol errors",
    PART: "left the room",
    REVOKED: "logged out",
    KICKED: "kicked",
    BANNED: "banned",
}

# moderation actions (``mod`` request and frame); see docs/protocol.md
MOD_ACTIONS = ("kick", "mute", "unmute", "ban", "unban", "delete", "lock", "unlock",
               "close", "open", "invite", "op", "deop")
REASON_MAX = 300                 # characters of a moderation reason

NAME_MAX = 32
NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,%d}" % NAME_MAX)
NAME_RULES = ("1-32 characters: letters A-Z a-z, digits, '_', '-' or '.'; "
              "no spaces; unique ignoring case")

ROOM_MAX = 32
ROOM_RE = re.compile(r"#[A-Za-z0-9_.\-]{1,%d}" % ROOM_MAX)
ROOM_RULES = ("'#' then 1-32 characters: letters A-Z a-z, digits, '_', '-' or '.'; "
              "unique ignoring case")
GENERAL = "#general"             # everyone is in it by default
TOPIC_MAX = 300                  # characters in a room topic
PAGE_MAX = 200                   # messages in one history or search page

# capabilities a client may ask for in hello.caps; the welcome says which it got
CAP_ROOMS = "rooms"              # rooms, direct messages, history, search, unread

# --auth: who may chat (the welcome tells the client which one)
AUTH_OFF = "off"                 # no accounts: any free name, as in protocol 1
AUTH_OPTIONAL = "optional"       # guests take any name no account owns; accounts are kept
AUTH_REQUIRED_MODE = "required"  # log in (or register) to chat
AUTH_MODES = (AUTH_OFF, AUTH_OPTIONAL, AUTH_REQUIRED_MODE)
DEVICE_MAX = 64                  # characters of a session's device label

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")  # all but \t \n


class ProtocolError(Exception):
    """A line that is not a valid frame.  ``code`` is stable, ``message`` human;
    ``label`` is the frame's label when it had a usable one, so that its error
    is answered like any labelled request (exactly one ack or error per label)."""

    def __init__(self, code: str, message: str, label: Optional[str] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.label = label

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ProtocolError)
                and (self.code, self.message) == (other.code, other.message))

    def __hash__(self) -> int:
        return hash((self.code, self.message))


def validate_name(name: object) -> Optional[str]:
    """Return None if ``name`` is a valid user name, else a human reason."""
    if not isinstance(name, str) or not name:
        return "a name is required"
    if len(name) > NAME_MAX:
        return f"names are at most {NAME_MAX} characters"
    if not NAME_RE.fullmatch(name):
        return "names may use only letters, digits, '_', '-' and '.'"
    return None


def validate_room(room: object) -> Optional[str]:
    """Return None if ``room`` is a valid room name (``#name``), else a human reason."""
    if not isinstance(room, str) or not room:
        return "a room name is required"
    if not room.startswith("#"):
        return "room names start with '#'"
    if len(room) > ROOM_MAX + 1:
        return f"room names are at most {ROOM_MAX} characters after the '#'"
    if not ROOM_RE.fullmatch(room):
        return "room names may use only letters, digits, '_', '-' and '.' after the '#'"
    return None


def text_problem(text: str, max_chars: int) -> Optional[tuple[str, str]]:
    """Check a chat message's text; return (code, sentence) or None if fine."""
    if not text.strip():
        return EMPTY_TEXT, "message is empty"
    if len(text) > max_chars:
        return TEXT_TOO_LONG, f"message is {len(text)} characters, the limit is {max_chars}"
    if _CONTROL.search(text):
        return BAD_TEXT, "message contains control characters"
    return None


# --- events ----------------------------------------------------------------
@dataclass
class Event:
    """Base of every frame.  Subclasses set ``type`` and declare fields."""
    type: ClassVar[str] = ""

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                d[f.metadata.get("wire", f.name)] = value
        return d


def _wire(name: str, default: Any = dataclasses.MISSING) -> Any:
    """A field whose JSON key differs from its Python name (``from``, ``with``)."""
    return field(default=default, metadata={"wire": name})


# Frames a client sends ------------------------------------------------------
@dataclass
class Hello(Event):
    type: ClassVar[str] = "hello"
    version: int
    name: str
    client: Optional[str] = None
    client_version: Optional[str] = None
    last_id: Optional[int] = None        # resume: "I have seen up to this id"
    token: Optional[str] = field(default=None, repr=False)   # resume: my session
    caps: Optional[list[str]] = None
    instance: Optional[str] = None       # resume: the server run last_id belongs to
    # accounts: log in to the account ``name`` (with ``register``: create it).  Never
    # in a repr or a log line.
    password: Optional[str] = field(default=None, repr=False)
    register: Optional[bool] = None
    device: Optional[str] = None         # a label for this login in the session list


@dataclass
class Say(Event):
    """A chat message to a room (default ``#general``) or, with ``to``, to one user."""
    type: ClassVar[str] = "say"
    text: str
    label: Optional[str] = None
    room: Optional[str] = None           # cap rooms: which room (default #general)
    to: Optional[str] = None             # cap rooms: a direct message to this user


@dataclass
class Me(Event):
    """An action, shown as ``* alice waves``."""
    type: ClassVar[str] = "me"
    text: str
    label: Optional[str] = None
    room: Optional[str] = None
    to: Optional[str] = None


@dataclass
class UsersRequest(Event):
    type: ClassVar[str] = "users"
    label: Optional[str] = None
    room: Optional[str] = None           # cap rooms: the room's members (default: everyone online)


@dataclass
class JoinRequest(Event):
    """Join (and create, if new) a room.  Answered by ``room`` or ``error``."""
    type: ClassVar[str] = "join"
    room: str
    label: Optional[str] = None


@dataclass
class PartRequest(Event):
    """Leave a room.  Answered by ``ack`` or ``error``."""
    type: ClassVar[str] = "part"
    room: str
    label: Optional[str] = None


@dataclass
class RoomsRequest(Event):
    """List the rooms.  Answered by ``rooms``."""
    type: ClassVar[str] = "rooms"
    label: Optional[str] = None


@dataclass
class TopicRequest(Event):
    """Set a room's topic (empty clears it).  Answered by ``ack`` or ``error``."""
    type: ClassVar[str] = "topic"
    room: str
    topic: str
    label: Optional[str] = None


@dataclass
class HistoryRequest(Event):
    """A page of a room's (``room``) or a direct conversation's (``with``) history:
    the ``limit`` newest before ``before``, or the oldest after ``after``.
    Answered by ``history`` or ``error``."""
    type: ClassVar[str] = "history"
    room: Optional[str] = None
    peer: Optional[str] = _wire("with", None)
    before: Optional[int] = None
    after: Optional[int] = None
    limit: Optional[int] = None
    label: Optional[str] = None


@dataclass
class SearchRequest(Event):
    """Full-text search over what you may read (your rooms and your direct
    messages), or one ``room`` / ``with`` conversation.  Newest first.
    Answered by ``results`` or ``error``."""
    type: ClassVar[str] = "search"
    query: str
    room: Optional[str] = None
    peer: Optional[str] = _wire("with", None)
    before: Optional[int] = None
    limit: Optional[int] = None
    label: Optional[str] = None


@dataclass
class ReadMarker(Event):
    """I have read up to ``id`` in this room / conversation.  The server keeps it
    and tells your other connections (``unread``)."""
    type: ClassVar[str] = "read"
    id: int
    room: Optional[str] = None
    peer: Optional[str] = _wire("with", None)
    label: Optional[str] = None


@dataclass
class RegisterRequest(Event):
    """A guest claims its name as an account with this password.  Answered by
    ``account`` (its connections stay) or ``error``."""
    type: ClassVar[str] = "register"
    password: str = field(repr=False)
    label: Optional[str] = None


@dataclass
class PasswordRequest(Event):
    """Change your password.  Your other sessions are logged out.  Answered by
    ``ack`` or ``error``."""
    type: ClassVar[str] = "password"
    old: str = field(repr=False)
    new: str = field(repr=False)
    label: Optional[str] = None


@dataclass
class SessionsRequest(Event):
    """List your account's sessions (logins).  Answered by ``sessions``."""
    type: ClassVar[str] = "sessions"
    label: Optional[str] = None


@dataclass
class RevokeRequest(Event):
    """Log out one of your sessions (``session``: its id, yours too) or, with
    ``others``, every session but this one.  Their connections get ``bye``
    ``revoked``.  Answered by ``ack`` or ``error``."""
    type: ClassVar[str] = "revoke"
    session: Optional[str] = None
    others: Optional[bool] = None
    label: Optional[str] = None


@dataclass
class ModRequest(Event):
    """A moderation action in ``room`` (or, without it, server-wide: admins
    only).  ``target``: a user name; ``id``: the message to delete; ``duration``:
    seconds a mute or ban lasts (absent: until lifted).  Answered by ``ack``
    (once the action is announced) or ``error``."""
    type: ClassVar[str] = "mod"
    action: str
    room: Optional[str] = None
    target: Optional[str] = None
    id: Optional[int] = None
    duration: Optional[float] = None
    reason: Optional[str] = None
    label: Optional[str] = None


@dataclass
class AuditRequest(Event):
    """Server admins: the newest moderation actions (before ``before``).
    Answered by ``audit``."""
    type: ClassVar[str] = "audit"
    before: Optional[int] = None
    limit: Optional[int] = None
    label: Optional[str] = None


@dataclass
class Ping(Event):
    type: ClassVar[str] = "ping"
    token: Optional[str] = None


@dataclass
class Pong(Event):
    type: ClassVar[str] = "pong"
    token: Optional[str] = None


@dataclass
class Bye(Event):
    """Client: I am leaving.  Server: I am closing your connection, and why."""
    type: ClassVar[str] = "bye"
    reason: Optional[str] = None
    message: Optional[str] = None


# Frames a server sends -----------------------------------------------------
@dataclass
class Welcome(Event):
    type: ClassVar[str] = "welcome"
    version: int
    server: str
    name: str
    users: list[str]
    last_id: int
    token: str
    limits: dict
    history: list[dict] = field(default_factory=list)
    truncated: Optional[bool] = None     # history did not reach back to last_id
    caps: Optional[list[str]] = None
    instance: Optional[str] = None       # which server's ids these are (changes with its database)
    rooms: Optional[list[dict]] = None   # cap rooms: the rooms you are in (RoomInfo dicts)
    auth: Optional[str] = None           # the server's --auth mode (off, optional, required)
    account: Optional[dict] = None       # logged in: {"name", "admin", "session"}; absent for a guest
    guests: Optional[list[str]] = None   # which of ``users`` are guests (auth optional)


@dataclass
class Message(Event):
    type: ClassVar[str] = "message"
    id: int
    ts: str
    sender: str = _wire("from")
    text: str = ""
    kind: str = "say"                    # "say" or "me"
    label: Optional[str] = None          # only in your own messages' catch-up
    room: Optional[str] = None           # the room it was said in (cap rooms)
    to: Optional[str] = None             # a direct message: its recipient (cap rooms)
    guest: Optional[bool] = None         # sent by a guest (a name no account owns)
    deleted: Optional[bool] = None       # removed by a moderator (``text`` is empty)


@dataclass
class Join(Event):
    type: ClassVar[str] = "join"
    id: int
    ts: str
    name: str
    room: Optional[str] = None


@dataclass
class Leave(Event):
    type: ClassVar[str] = "leave"
    id: int
    ts: str
    name: str
    reason: str = QUIT
    room: Optional[str] = None


@dataclass
class UserList(Event):
    type: ClassVar[str] = "users"
    users: list[str]
    label: Optional[str] = None
    room: Optional[str] = None
    guests: Optional[list[str]] = None   # which of them are guests (auth optional)


@dataclass
class Topic(Event):
    """A room's topic changed (stored, with an id like a message)."""
    type: ClassVar[str] = "topic"
    id: int
    ts: str
    room: str
    topic: str
    by: str


@dataclass
class Presence(Event):
    """Joins and leaves in a big room, coalesced (at most one a second), instead
    of one ``join``/``leave`` per user: ``count`` members now, who came and went."""
    type: ClassVar[str] = "presence"
    room: str
    count: int
    joined: list[str] = field(default_factory=list)    # the first few names
    left: list[str] = field(default_factory=list)
    joined_count: int = 0
    left_count: int = 0


@dataclass
class RoomInfo(Event):
    """A room you are in: sent as the answer to ``join`` and in the welcome's
    ``rooms``.  ``members`` lists who is online in it unless the room is big
    (``count`` above the presence limit): then ask ``users`` with the room."""
    type: ClassVar[str] = "room"
    room: str
    count: int
    topic: str = ""
    members: Optional[list[str]] = None
    history: list[dict] = field(default_factory=list)   # the last few messages
    label: Optional[str] = None
    guests: Optional[list[str]] = None   # which members are guests (auth optional)
    role: Optional[str] = None           # yours here: "owner" or "mod" (absent: a member)


@dataclass
class RoomList(Event):
    """The answer to ``rooms``: each is {"room","topic","count","joined"}."""
    type: ClassVar[str] = "rooms"
    rooms: list[dict]
    label: Optional[str] = None


@dataclass
class HistoryPage(Event):
    """A page of history, oldest first; ``more`` if older (``before``) or newer
    (``after``) messages remain."""
    type: ClassVar[str] = "history"
    messages: list[dict]
    more: bool
    room: Optional[str] = None
    peer: Optional[str] = _wire("with", None)
    label: Optional[str] = None


@dataclass
class SearchResults(Event):
    """The answer to ``search``: matching messages, newest first; ``more`` if
    older matches remain (ask again with ``before`` = the last id)."""
    type: ClassVar[str] = "results"
    query: str
    messages: list[dict]
    more: bool = False
    label: Optional[str] = None


@dataclass
class Unread(Event):
    """Your read position and unread count in one room or direct conversation:
    sent after the welcome for each of your conversations, and again whenever
    you (on any connection) mark it read.  ``last_id`` is its newest message."""
    type: ClassVar[str] = "unread"
    count: int
    read_id: int = 0
    last_id: int = 0
    mentions: int = 0
    room: Optional[str] = None
    peer: Optional[str] = _wire("with", None)


@dataclass
class AccountInfo(Event):
    """You are logged in to this account now (the answer to ``register``)."""
    type: ClassVar[str] = "account"
    name: str
    admin: bool = False
    session: Optional[str] = None        # this login's id in ``sessions``
    label: Optional[str] = None


@dataclass
class SessionList(Event):
    """The answer to ``sessions``: each is {"id", "device", "created", "seen",
    "current"} (times in the wire format), newest first."""
    type: ClassVar[str] = "sessions"
    sessions: list[dict]
    label: Optional[str] = None


@dataclass
class Moderation(Event):
    """A moderation action, announced in its room (stored with an id like a
    message): who did what to whom, why, and until when.  For ``delete``,
    ``message`` is the id of the removed message (show it as removed)."""
    type: ClassVar[str] = "mod"
    id: int
    ts: str
    action: str
    by: str
    room: Optional[str] = None
    target: Optional[str] = None
    reason: Optional[str] = None
    until: Optional[str] = None          # wire-format time a mute or ban ends
    message: Optional[int] = None


@dataclass
class AuditLog(Event):
    """The answer to ``audit``: entries {"id","ts","by","action","room",
    "target","reason","until"}, newest first; ``more`` if older ones remain."""
    type: ClassVar[str] = "audit"
    entries: list[dict]
    more: bool = False
    label: Optional[str] = None


@dataclass
class Invited(Event):
    """You were invited to an invite-only room: ``join`` it when you like."""
    type: ClassVar[str] = "invited"
    room: str
    by: str


@dataclass
class Ack(Event):
    type: ClassVar[str] = "ack"
    label: str
    id: Optional[int] = None


@dataclass
class Error(Event):
    type: ClassVar[str] = "error"
    code: str
    message: str
    label: Optional[str] = None
    retry_after: Optional[float] = None  # with rate_limited: seconds to wait


def _registry(*classes: type[Event]) -> dict[str, type[Event]]:
    return {c.type: c for c in classes}


CLIENT_FRAMES = _registry(Hello, Say, Me, UsersRequest, JoinRequest, PartRequest, RoomsRequest,
                          TopicRequest, HistoryRequest, SearchRequest, ReadMarker,
                          RegisterRequest, PasswordRequest, SessionsRequest, RevokeRequest,
                          ModRequest, AuditRequest, Ping, Pong, Bye)
SERVER_FRAMES = _registry(Welcome, Message, Join, Leave, UserList, Topic, Presence, RoomInfo,
                          RoomList, HistoryPage, SearchResults, Unread, AccountInfo, SessionList,
                          Moderation, AuditLog, Invited, Ack, Error, Ping, Pong, Bye)

# frames that carry an id and belong to a conversation's history
HISTORY_FRAMES = (Message, Join, Leave, Topic, Moderation)


def conversation(frame: "dict | Event", me: str = "") -> Optional[str]:
    """The conversation a history frame belongs to: its room (``#x``), or for a
    direct message the other person (``@name``); None for neither (protocol 1
    frames without a room belong to #general)."""
    get = frame.get if isinstance(frame, dict) else (lambda k, d=None: getattr(
        frame, "sender" if k == "from" else k, d))
    room = get("room")
    if room:
        return room
    to = get("to")
    if to:
        sender = get("from") or ""
        other = to if sender.casefold() == me.casefold() else sender
        return "@" + other
    return GENERAL if get("type") in ("message", "join", "leave") else None


# --- validation --------------------------------------------------------------
_HINTS: dict[type, dict[str, tuple[str, Any, bool]]] = {}


def _spec(cls: type[Event]) -> dict[str, tuple[str, Any, bool]]:
    """wire key -> (python name, type hint, required), computed once per class."""
    spec = _HINTS.get(cls)
    if spec is None:
        hints = typing.get_type_hints(cls)
        spec = {}
        for f in dataclasses.fields(cls):
            required = (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING)
            spec[f.metadata.get("wire", f.name)] = (f.name, hints[f.name], required)
        _HINTS[cls] = spec
    return spec


def _str_ok(value: Any) -> bool:
    return isinstance(value, str) and (value.isascii() or not _SURROGATE.search(value))


def _int_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _float_ok(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checker(hint: Any) -> Callable[[Any], bool]:
    """A function that tells whether a decoded JSON value fits a field's type
    hint; made once per field, so decoding a line does no type introspection."""
    origin = typing.get_origin(hint)
    if origin is Union:          # Optional[X] (None never gets here: an absent field)
        (inner,) = [h for h in typing.get_args(hint) if h is not type(None)]
        return _checker(inner)
    simple = {str: _str_ok, int: _int_ok, float: _float_ok,
              bool: lambda value: isinstance(value, bool),
              dict: lambda value: isinstance(value, dict),
              list: lambda value: isinstance(value, list)}.get(hint)
    if simple is not None:
        return simple
    if origin is list:
        (item,) = typing.get_args(hint)
        item_ok = _checker(item)
        return lambda value: isinstance(value, list) and all(item_ok(v) for v in value)
    raise TypeError(f"unsupported field type {hint!r}")  # programming error


_PLANS: dict[type, tuple[tuple[str, str, Callable[[Any], bool], bool], ...]] = {}


def _plan(cls: type[Event]) -> tuple[tuple[str, str, Callable[[Any], bool], bool], ...]:
    """(wire key, python name, checker, required) per field, made once per class."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple((key, name, _checker(hint), required)
                                   for key, (name, hint, required) in _spec(cls).items())
    return plan


def event_from_dict(obj: Any, registry: dict[str, type[Event]]) -> Event:
    """Validate a decoded JSON value and build its event, or raise ProtocolError.

    Unknown fields are ignored (forward compatibility)."""
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_FRAME, "a frame must be a JSON object")
    label = obj.get("label")
    if not _str_ok(label):
        label = None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(BAD_FRAME, "a frame needs a string 'type'", label)
    cls = registry.get(kind)
    if cls is None:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown frame type {kind[:40]!r}", label)
    kwargs = {}
    for key, name, ok, required in _plan(cls):
        value = obj.get(key)
        if value is None:
            if required:
                raise ProtocolError(BAD_FIELD, f"'{kind}' needs field '{key}'", label)
            continue
        if not ok(value):
            raise ProtocolError(BAD_FIELD, f"field '{key}' of '{kind}' has the wrong type",
                                label)
        kwargs[name] = value
    return cls(**kwargs)


def decode_line(line: bytes, registry: dict[str, type[Event]]) -> Event:
    """One line (without its newline) to one event, or raise ProtocolError."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(BAD_UTF8, "line is not valid UTF-8") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(BAD_JSON, "line is not valid JSON") from None
    return event_from_dict(obj, registry)


def encode(event: Event) -> bytes:
    """An event to its wire form: compact JSON and a newline."""
    return encode_dict(event.to_dict())


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))   # made once: thread-safe
quote = json.encoder.encode_basestring    # a str as a JSON string, like _ENCODER does


def encode_dict(d: dict) -> bytes:
    return _ENCODER.encode(d).encode("utf-8") + b"\n"


class FrameDecoder:
    """Incremental decoder: feed it bytes as they come, get events back.

    A line longer than ``max_line`` bytes yields one ``line_too_long`` error and
    is skipped up to its newline; the stream stays usable.  Blank lines and a
    trailing ``\\r`` (telnet, netcat) are accepted.  ``feed`` never raises.
    """

    def __init__(self, registry: dict[str, type[Event]], max_line: int = 16384):
        self.registry = registry
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False      # inside an over-long line, until its newline

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Union[Event, ProtocolError]]:
        out: list[Union[Event, ProtocolError]] = []
        buf = self._buf
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                self._line(bytes(buf[start:nl]), out)
            start = nl + 1
        del buf[:start]
        if len(buf) > self.max_line:
            if not self._skipping:
                out.append(ProtocolError(
                    LINE_TOO_LONG, f"line is longer than {self.max_line} bytes"))
                self._skipping = True
            buf.clear()
        return out

    def _line(self, line: bytes, out: list) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line:
            out.append(ProtocolError(LINE_TOO_LONG, f"line is longer than {self.max_line} bytes"))
            return
        if not line.strip():
            return
        try:
            out.append(decode_line(line, self.registry))
        except ProtocolError as e:
            out.append(e)

    def close(self) -> list[ProtocolError]:
        """End of stream: report a partial line, if any."""
        if self._buf.strip() and not self._skipping:
            self._buf.clear()
            return [ProtocolError(TRUNCATED, "connection closed in the middle of a line")]
        self._buf.clear()
        return []


def format_ts(epoch_ms: int) -> str:
    """UTC millisecond timestamp in the wire format, e.g. 2026-11-24T15:04:05.123Z."""
    import time
    secs, ms = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"
