"""The client core shared by every Parley client (terminal, desktop, and later
the browser): one slash-command parser, one help text, one name colour, one
time formatter, mention detection and how conversations are named.  No I/O,
no UI toolkit, no network: plain functions, unit-tested on their own.

    cmd = parse("/join #python", current="#general")
    if cmd.error:            # a usage problem or an unknown command: show it
        ...
    elif cmd.name == "join":
        session.join(cmd.target)

Conversations are written ``"#room"`` or ``"@name"`` (a direct message), as
in ``parley.client.session``.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from .. import protocol as p

HISTORY_DEFAULT = 20        # /history without a number, and what /switch shows
PASSWORD_MIN = 8            # the server's password rules (checked again by the server)
PASSWORD_MAX = 1024
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


# --- the command table -------------------------------------------------------------
@dataclass(frozen=True)
class CommandSpec:
    name: str                     # the canonical name, e.g. "switch"
    args: str                     # how to call it, for help: "<#room|@name>"
    help: str                     # one line
    aliases: tuple[str, ...] = ()


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("join", "<#room>", "join a room (created if new) and switch to it"),
    CommandSpec("part", "[#room]", "leave a room (default: the current one)", ("leave",)),
    CommandSpec("rooms", "", "list the rooms, their topics and your unread counts", ("list",)),
    CommandSpec("topic", "[text]", "show the room's topic, or set it ('/topic -' clears it)"),
    CommandSpec("msg", "<name> [text]", "send a direct message; without text, switch to it",
                ("query", "dm")),
    CommandSpec("switch", "<#room|@name>", "change the current conversation", ("go", "w")),
    CommandSpec("history", "[n]", f"show n older messages (default {HISTORY_DEFAULT})"),
    CommandSpec("search", "<words>", "search the messages you may read (\"a phrase\", pre*)"),
    CommandSpec("users", "[#room]", "who is online, or who is in a room", ("who", "names")),
    CommandSpec("me", "<action>", "send an action, shown as \"* you <action>\""),
    CommandSpec("register", "", "keep your name: make it an account (asks for a password)"),
    CommandSpec("password", "", "change your password (logs out your other sessions)",
                ("passwd",)),
    CommandSpec("sessions", "", "list the devices logged in to your account"),
    CommandSpec("revoke", "<id|--others>", "log out one of your sessions, or all the others"),
    CommandSpec("logout", "", "log out this device (forget its login) and leave"),
    # moderation: room moderators, the room's owner, server admins (-s: server-wide, admins);
    # each undoing command shares its row in the help (see COMPANIONS)
    CommandSpec("kick", "[-s] <name> [reason]",
                "out of the room (may come back); -s: off the server (admins)"),
    CommandSpec("mute", "[-s] <name> [time] [reason]",
                "silence for 30s, 10m, 2h, 1d, 1w or until /unmute <name>"),
    CommandSpec("ban", "[-s] <name> [time] [reason]",
                "out and kept out, for a time or until /unban <name>"),
    CommandSpec("delete", "<id> [reason]", "remove a message (yours, or any you moderate)",
                ("del",)),
    CommandSpec("lock", "", "only moderators may set the topic; /unlock undoes it"),
    CommandSpec("close", "", "invite-only: /invite <name> lets one in; /open undoes it"),
    CommandSpec("op", "<name>", "make an account a moderator (owner); /deop <name> undoes it"),
    CommandSpec("audit", "[n]", "the latest moderation actions (server admins)"),
    CommandSpec("help", "", "this help", ("?",)),
    CommandSpec("exit", "", "leave (Ctrl-D works too)", ("quit",)),
)
# commands told in another command's help row (to keep the help one screen high)
COMPANIONS: tuple[CommandSpec, ...] = (
    CommandSpec("unmute", "[-s] <name>", "let a muted person speak again"),
    CommandSpec("unban", "[-s] <name>", "lift a ban"),
    CommandSpec("unlock", "", "anyone in the room may set the topic again"),
    CommandSpec("open", "", "anyone may join the room again"),
    CommandSpec("invite", "<name>", "invite someone to the room (needed when it is closed)"),
    CommandSpec("deop", "<name>", "take a moderator's role away (the room's owner)"),
)
_BY_NAME = {alias: spec for spec in COMMANDS + COMPANIONS
            for alias in (spec.name, *spec.aliases)}


def _help_text() -> str:
    rows = [(f"/{s.name}" + (f" {s.args}" if s.args else ""), s.help
             + ("; also " + ", ".join("/" + a for a in s.aliases) if s.aliases else ""))
            for s in COMMANDS]
    rows.append(("//text", "send a message that starts with \"/\""))
    width = max(len(r[0]) for r in rows) + 2
    lines = ["Commands:"] + [f"  {usage:<{width}}{text}" for usage, text in rows]
    lines.append("Anything else is sent to the current conversation.")
    return "\n".join(lines)


HELP = _help_text()


def usage(name: str) -> str:
    spec = _BY_NAME[name]
    return f"Usage: /{spec.name}" + (f" {spec.args}" if spec.args else "") + f" — {spec.help}"


# --- parsing -----------------------------------------------------------------------
@dataclass
class Command:
    """What a typed line asks for.

    ``name``: "say", "empty", "unknown" or a command from ``COMMANDS``
    (canonical name).  ``target``: the conversation it is about (``"#room"`` /
    ``"@name"``) or None.  ``text``: a message, action, topic or search query
    (``None`` for "/topic" alone: show it).  ``args``: the other arguments
    (``/history 50`` → ``(50,)``).  ``error``: when set, nothing is to be done
    but show it (a usage line or an unknown command)."""
    name: str
    args: tuple = ()
    text: Optional[str] = None
    target: Optional[str] = None
    error: Optional[str] = None
    mod: Optional[dict] = None     # a moderation command: the ``mod`` request's fields


def _room_arg(word: str) -> tuple[Optional[str], Optional[str]]:
    """A room argument, '#' optional: (room, None) or (None, problem)."""
    room = word if word.startswith("#") else "#" + word
    problem = p.validate_room(room)
    if problem:
        return None, f"{word[:40]!r} is not a room name: {problem} ({p.ROOM_RULES})"
    return room, None


def _name_arg(word: str) -> tuple[Optional[str], Optional[str]]:
    name = word[1:] if word.startswith("@") else word
    problem = p.validate_name(name)
    if problem:
        return None, f"{word[:40]!r} is not a user name: {problem}"
    return name, None


def conv_arg(word: str) -> tuple[Optional[str], Optional[str]]:
    """``#room`` or ``@name`` → (conversation key, None), or (None, problem)."""
    if word.startswith("#"):
        room, problem = _room_arg(word)
        return room, problem
    if word.startswith("@"):
        name, problem = _name_arg(word)
        return ("@" + name if name else None), problem
    return None, (f"{word[:40]!r}: write #room for a room or @name for a direct "
                  f"conversation")


def parse(line: str, current: Optional[str] = None) -> Command:
    """Turn one typed line into a Command; ``current`` is the conversation on
    screen (``"#general"``, ``"@bob"``), where plain text and /me go."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return Command("empty")
    if text.startswith("//"):
        return Command("say", text=text[1:], target=current)
    if not text.startswith("/"):
        return Command("say", text=text, target=current)
    head, _, rest = text.partition(" ")
    if "\n" in head:                      # "/me\nwaves" (a multi-line input box)
        head, _, more = head.partition("\n")
        rest = more + (" " + rest if rest else "")
    spec = _BY_NAME.get(head[1:].lower())
    if spec is None:
        return Command("unknown", error=(
            f"Unknown command {head[:40]}. Type /help for the list; "
            "start with // to send a message beginning with '/'."))
    name = spec.name
    words = rest.split()

    def bad(problem: str) -> Command:
        return Command(name, error=f"{problem}. {usage(name)}")

    if name in ("help", "exit", "rooms"):
        return Command(name)
    if name in ("register", "password", "sessions", "logout"):
        if words:
            if name in ("register", "password"):
                return bad("Do not type a password here: it would be shown and kept in the "
                           "line history; /" + name + " asks for it without echo")
            return bad(f"/{name} takes no arguments")
        return Command(name)
    if name in MOD_COMMANDS or name == "audit":
        return _parse_mod(name, words, rest, current, bad)
    if name == "revoke":
        if len(words) != 1:
            return bad("Name one session id (see /sessions), or --others")
        if words[0] in ("--others", "-o", "others"):
            return Command(name, args=(None,), text="others")
        if not _SESSION_ID.match(words[0]):
            return bad(f"{words[0][:40]!r} is not a session id (see /sessions)")
        return Command(name, args=(words[0],))
    if name == "me":
        action = rest.strip()
        if not action:
            return Command(name, error=usage(name) + ", e.g. /me waves")
        return Command(name, text=action, target=current)
    if name == "join":
        if len(words) != 1:
            return bad("Name one room")
        room, problem = _room_arg(words[0])
        return bad(problem) if problem else Command(name, args=(room,), target=room)
    if name == "part":
        if len(words) > 1:
            return bad("Name one room")
        if words:
            room, problem = _room_arg(words[0])
            return bad(problem) if problem else Command(name, args=(room,), target=room)
        if not current or not current.startswith("#"):
            return bad("You are not in a room here")
        return Command(name, target=current)
    if name == "topic":
        if not current or not current.startswith("#"):
            return bad("Direct conversations have no topic; switch to a room")
        topic = rest.strip()
        if not topic:
            return Command(name, target=current)                  # show it
        if topic == "-":
            topic = ""                                             # clear it
        elif len(topic) > p.TOPIC_MAX:
            return bad(f"A topic is at most {p.TOPIC_MAX} characters, this one is {len(topic)}")
        return Command(name, text=topic, target=current)
    if name == "msg":
        if not words:
            return bad("Say to whom")
        who, problem = _name_arg(words[0])
        if problem:
            return bad(problem)
        body = rest.strip()[len(words[0]):].strip()
        return Command(name, args=(who,), text=body, target="@" + who)
    if name == "switch":
        if len(words) != 1:
            return bad("Name one conversation")
        conv, problem = conv_arg(words[0])
        return bad(problem) if problem else Command(name, args=(conv,), target=conv)
    if name == "history":
        if len(words) > 1:
            return bad("Give one number")
        n = HISTORY_DEFAULT
        if words:
            if not words[0].isdigit() or not 1 <= int(words[0]) <= p.PAGE_MAX:
                return bad(f"The number of messages is 1 to {p.PAGE_MAX}, not {words[0][:20]!r}")
            n = int(words[0])
        if not current:
            return bad("No conversation here")
        return Command(name, args=(n,), target=current)
    if name == "search":
        query = rest.strip()
        if not query:
            return bad("Search for what")
        return Command(name, text=query)
    if name == "users":
        if len(words) > 1:
            return bad("Name one room")
        if words:
            room, problem = _room_arg(words[0])
            return bad(problem) if problem else Command(name, args=(room,), target=room)
        return Command(name)
    raise AssertionError(f"command {name} has no parser")     # pragma: no cover


# --- moderation ----------------------------------------------------------------------
MOD_COMMANDS = ("kick", "mute", "unmute", "ban", "unban", "delete", "lock", "unlock", "close",
                "open", "invite", "op", "deop")
SERVER_WIDE = ("kick", "mute", "unmute", "ban", "unban")      # -s / --server: admins
_TIMED = ("mute", "ban")                                      # take a duration
_WITH_REASON = ("kick", "mute", "ban", "delete")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+\Z", re.IGNORECASE)
DURATION_MAX = 10 * 365 * 86400      # the server treats anything longer as "until lifted"


def parse_duration(word: str) -> Optional[int]:
    """``"30s"``, ``"10m"``, ``"2h"``, ``"1d"``, ``"1w"``, ``"1h30m"`` → seconds; None
    if the word is not a duration."""
    if not _DURATION.match(word):
        return None
    return sum(int(n) * _UNITS[u.lower()]
               for n, u in re.findall(r"(\d+)([smhdw])", word, re.IGNORECASE))


def format_duration(seconds: Optional[float]) -> str:
    """Seconds as the largest units that fit, at most two: ``"10m"``, ``"1h30m"``,
    ``"2d"``; "" for None (until lifted)."""
    if seconds is None:
        return ""
    left = int(round(seconds))
    if left <= 0:
        return "0s"
    parts = []
    for unit, size in sorted(_UNITS.items(), key=lambda x: -x[1]):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2:
            break
    return "".join(parts)


def _parse_mod(name: str, words: list[str], rest: str, current: Optional[str], bad) -> Command:
    """A moderation command (or /audit) → Command with ``mod`` = the request's fields."""
    if name == "audit":
        if len(words) > 1:
            return bad("Give one number")
        n = 20
        if words:
            if not words[0].isdigit() or not 1 <= int(words[0]) <= p.PAGE_MAX:
                return bad(f"The number of entries is 1 to {p.PAGE_MAX}, not {words[0][:20]!r}")
            n = int(words[0])
        return Command(name, args=(n,))
    server = False
    room: Optional[str] = None
    while words and (words[0] in ("-s", "--server") or words[0].startswith("#")):
        flag = words.pop(0)
        rest = rest.lstrip()[len(flag):]
        if flag.startswith("#"):
            room, problem = _room_arg(flag)
            if problem:
                return bad(problem)
        elif name not in SERVER_WIDE:
            return bad(f"/{name} acts in a room only; {flag} is for "
                       + ", ".join("/" + c for c in SERVER_WIDE))
        else:
            server = True
    if server and room:
        return bad("Either a room or --server, not both")
    if not server and room is None:
        if not current or not current.startswith("#"):
            return bad("Moderation acts in a room: switch to one (or name it: "
                       f"/{name} #room …)")
        room = current
    fields: dict = {"action": name}
    if room is not None:
        fields["room"] = room
    if name in ("lock", "unlock", "close", "open"):
        if words:
            return bad(f"/{name} takes no arguments but a #room")
        return Command(name, target=room, mod=fields)
    if not words:
        return bad("Say which message (its id)" if name == "delete" else "Say who")
    first = words[0]
    rest = rest.lstrip()[len(first):].strip()
    if name == "delete":
        if not first.isdigit() or int(first) < 1:
            return bad(f"{first[:40]!r} is not a message id (a number)")
        fields["id"] = int(first)
    else:
        who, problem = _name_arg(first)
        if problem:
            return bad(problem)
        fields["target"] = who
    if name in _TIMED and rest:
        word = rest.split()[0]
        seconds = parse_duration(word)
        if seconds is not None:
            if seconds < 1:
                return bad("A duration is at least 1s")
            if seconds > DURATION_MAX:
                return bad("A duration is at most 520w (leave it out: until lifted)")
            fields["duration"] = seconds
            rest = rest[len(word):].strip()
    if rest:
        if name not in _WITH_REASON:
            return bad(f"/{name} takes no reason")
        if len(rest) > p.REASON_MAX:
            return bad(f"A reason is at most {p.REASON_MAX} characters, this one is {len(rest)}")
        fields["reason"] = rest
    return Command(name, args=(fields.get("target", fields.get("id")),), text=fields.get("reason"),
                   target=room, mod=fields)


def mod_summary(fields: dict) -> str:
    """What a moderation request asked, for "done" lines: "muted bob in #lab for 10m"."""
    action = fields.get("action", "?")
    where = f" in {fields['room']}" if fields.get("room") else " on this server"
    if action == "delete":
        return f"removed message {fields.get('id')} from {fields.get('room')}"
    past = MOD_PAST.get(action, action)
    who = f" {fields['target']}" if fields.get("target") else ""
    span = f" for {format_duration(fields['duration'])}" if fields.get("duration") else ""
    if action in ("lock", "unlock", "close", "open"):
        return f"{past} {fields.get('room')}"
    return f"{past}{who}{where}{span}"


MOD_PAST = {"kick": "kicked", "mute": "muted", "unmute": "unmuted", "ban": "banned",
            "unban": "unbanned", "delete": "removed a message", "lock": "locked the topic of",
            "unlock": "unlocked the topic of", "close": "closed", "open": "opened",
            "invite": "invited", "op": "made a moderator:", "deop": "removed a moderator:"}


def until_text(until: Optional[str], ts: Optional[str] = None) -> str:
    """How long a mute or ban lasts, from the frame's ``until`` (and its ``ts``):
    "for 10m" when both are known, else "until 14:10", "" without ``until``."""
    if not until:
        return ""
    end, start = parse_ts(until), parse_ts(ts or "")
    if end is not None and start is not None:
        return f"for {format_duration((end - start).total_seconds())}"
    return f"until {local_when(until)}"


def mod_line(ev, me: str = "") -> str:
    """A ``mod`` frame as a system line (no time, no colour):
    "alice muted bob in #lab for 10m: calm down", "alice removed a message (id 117)"."""
    action, by = ev.action, ev.by
    why = f": {ev.reason}" if ev.reason else ""
    room = ev.room or "the server"
    who = ev.target or "?"
    if action == "delete":
        return f"{by} removed a message (id {ev.message}){why}"
    if action in ("mute", "ban"):
        span = until_text(ev.until, ev.ts)
        return f"{by} {MOD_PAST[action]} {who} in {room}" + (f" {span}" if span else "") + why
    if action in ("kick", "unmute", "unban", "invite"):
        return f"{by} {MOD_PAST[action]} {who} {'to' if action == 'invite' else 'in'} {room}{why}"
    if action == "op":
        return f"{by} made {who} a moderator of {room}{why}"
    if action == "deop":
        return f"{by} took {who}'s moderator role in {room}{why}"
    if action in ("lock", "unlock"):
        return f"{by} {action}ed the topic of {room}{why}"
    if action in ("close", "open"):
        return f"{by} made {room} " + ("invite-only" if action == "close" else "open to all") + why
    return f"{by}: {action} {who} in {room}{why}"


AUDIT_HEADINGS = ("id", "when", "by", "action", "where", "target", "until", "reason")


def audit_table(entries: Iterable[dict], now: Optional[datetime.datetime] = None,
                tz: Optional[datetime.tzinfo] = None) -> list[str]:
    """The ``audit`` answer as aligned text lines, a heading first."""
    rows = [AUDIT_HEADINGS]
    for e in entries:
        if not isinstance(e, dict):
            continue
        rows.append((str(e.get("id", "?")), local_when(str(e.get("ts", "")), now, tz),
                     str(e.get("by") or "-"), str(e.get("action") or "?"),
                     str(e.get("room") or "server"), str(e.get("target") or "-"),
                     local_when(str(e["until"]), now, tz) if e.get("until") else "-",
                     str(e.get("reason") or "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(AUDIT_HEADINGS))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]



# --- accounts ----------------------------------------------------------------------
def password_problem(password: str) -> Optional[str]:
    """Why a new password will not do (the server's rules), or None."""
    if len(password) < PASSWORD_MIN:
        return f"a password needs at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"a password has at most {PASSWORD_MAX} characters"
    if not password.strip():
        return "a password cannot be only spaces"
    return None


# what to tell a person whose hello was refused, by error code
LOGIN_HINTS = {
    p.NAME_REGISTERED: "this name is registered: enter its password (or pick another name)",
    p.AUTH_REQUIRED: "this server is for its members: log in with your password",
    p.LOGIN_FAILED: "wrong name or password",
    p.INSECURE: "this server takes passwords only over TLS: connect with TLS "
                "(--tls, or the \"Secure connection\" box)",
    p.ACCOUNTS_OFF: "this server has no accounts: connect without a password",
    p.BAD_PASSWORD: "that password will not do",
}


def login_hint(code: str, message: str = "") -> str:
    """One sentence for a refused login: the hint for ``code``, else the server's."""
    return LOGIN_HINTS.get(code) or message or code


def guest_label(name: str, guests: Iterable[str]) -> str:
    """``"bob (guest)"`` when ``name`` is among ``guests`` (ignoring case), else the name."""
    g = {x.casefold() for x in guests}
    return f"{name} (guest)" if name.casefold() in g else name


def session_rows(sessions: Iterable[dict], now: Optional[datetime.datetime] = None,
                 tz: Optional[datetime.tzinfo] = None) -> list[tuple[str, ...]]:
    """The ``sessions`` answer as table rows: (id, device, logged in, last seen, state),
    the current one marked "this device", the online ones "online"."""
    rows = []
    for x in sessions:
        if not isinstance(x, dict):
            continue
        state = "this device" if x.get("current") else ("online" if x.get("online") else "")
        rows.append((str(x.get("id", "?")), str(x.get("device") or "-"),
                     local_when(str(x.get("created", "")), now, tz),
                     local_when(str(x.get("seen", "")), now, tz), state))
    return rows


SESSION_HEADINGS = ("id", "device", "logged in", "last seen", "")


def session_table(sessions: Iterable[dict], now: Optional[datetime.datetime] = None,
                  tz: Optional[datetime.tzinfo] = None) -> list[str]:
    """The sessions as aligned text lines, a heading first."""
    rows = [SESSION_HEADINGS] + session_rows(sessions, now, tz)
    widths = [max(len(r[i]) for r in rows) for i in range(len(SESSION_HEADINGS))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


# --- names and colours -------------------------------------------------------------
NAME_COLOURS = 12              # the size of every client's name palette


def name_colour_index(name: str, n: int = NAME_COLOURS) -> int:
    """A stable palette index for ``name`` (ignoring case, the same on every
    run and in every client)."""
    digest = hashlib.blake2s(name.casefold().encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % n


def sorted_users(users: Iterable[str], me: str = "") -> list[str]:
    """Me first, then everyone else alphabetically (ignoring case)."""
    mine = me.casefold()
    return sorted(set(users), key=lambda u: (u.casefold() != mine, u.casefold(), u))


# --- mentions ------------------------------------------------------------------------
def mention_re(me: str) -> Optional["re.Pattern[str]"]:
    """``me`` (or ``@me``) as a word of its own, ignoring case; None without a name."""
    if not me:
        return None
    return re.compile(rf"(?<![\w.-])@?{re.escape(me)}(?![\w-]|\.\w)", re.IGNORECASE)


def mention_spans(text: str, me: str) -> list[tuple[int, int]]:
    rx = mention_re(me)
    return [m.span() for m in rx.finditer(text)] if rx else []


def mentions(text: str, me: str) -> bool:
    """Does ``text`` mention ``me`` by name?"""
    rx = mention_re(me)
    return bool(rx and rx.search(text))


# --- time ----------------------------------------------------------------------------
def parse_ts(ts: str) -> Optional[datetime.datetime]:
    """The server's UTC timestamp ``2026-11-24T15:04:05.123Z`` as an aware datetime."""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(ts, fmt).replace(tzinfo=datetime.timezone.utc)
        except (ValueError, TypeError):
            continue
    return None


def local_time(ts: str, fmt: str = "%H:%M", tz: Optional[datetime.tzinfo] = None) -> str:
    """Server UTC timestamp -> local wall-clock time (``tz`` for tests)."""
    t = parse_ts(ts)
    if t is None:
        if isinstance(ts, str) and len(ts) >= 19 and fmt == "%H:%M:%S":
            return ts[11:19]
        return ts[11:16] if isinstance(ts, str) and len(ts) >= 16 else "--:--"
    return t.astimezone(tz).strftime(fmt)


def local_when(ts: str, now: Optional[datetime.datetime] = None,
               tz: Optional[datetime.tzinfo] = None) -> str:
    """Time of day for today's timestamps, else the date too: "15:04",
    "Mon 24 Nov 15:04", "24 Nov 2025 15:04" (another year)."""
    t = parse_ts(ts)
    if t is None:
        return local_time(ts)
    t = t.astimezone(tz)
    now = (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(tz)
    if t.date() == now.date():
        return t.strftime("%H:%M")
    if t.year == now.year:
        return t.strftime("%a %d %b %H:%M")
    return t.strftime("%d %b %Y %H:%M")


def day_label(day: datetime.date) -> str:
    return day.strftime("%A, %d %B %Y").replace(" 0", " ")


# --- conversations ---------------------------------------------------------------------
def conversation_of(frame, me: str) -> Optional[str]:
    """The conversation key (``#room`` / ``@name``) a message, join, leave or
    topic belongs to."""
    return p.conversation(frame, me)


def event_conversation(ev, me: str) -> Optional[str]:
    """The conversation any server event is about, or None for events about no
    one conversation (welcome, rooms, results, users of the server, ack, error…)."""
    if isinstance(ev, p.HISTORY_FRAMES):
        return p.conversation(ev, me)
    room = getattr(ev, "room", None)
    if isinstance(ev, (p.RoomInfo, p.Presence, p.UserList, p.HistoryPage, p.Unread)):
        if room:
            return room
        peer = getattr(ev, "peer", None)
        return "@" + peer if peer else None
    return None


def same_conv(a: Optional[str], b: Optional[str]) -> bool:
    return a is not None and b is not None and a.casefold() == b.casefold()


def conv_prefix(key: str) -> str:
    """The tag shown before a line of another conversation: ``[#room] ``."""
    return f"[{key}] "


def unread_badge(unread: int, mentions_: int = 0) -> str:
    """"" when nothing is unread, else "3", or "3, 1 mention"."""
    if not unread and not mentions_:
        return ""
    if mentions_:
        return f"{unread}, {mentions_} mention" + ("s" if mentions_ != 1 else "")
    return str(unread)


def describe(conv, current: bool = False) -> str:
    """One line about a ``session.Conversation`` for lists: marker, key, unread,
    members and topic.  ``*`` marks the current one."""
    mark = "*" if current else " "
    parts = [f"{mark} {conv.key}"]
    if conv.unread or conv.mentions:
        parts.append(f"({conv.unread} unread" + (
            f", {conv.mentions} mention" + ("s" if conv.mentions != 1 else "")
            if conv.mentions else "") + ")")
    if conv.kind == "room":
        parts.append(f"{conv.count} member" + ("s" if conv.count != 1 else ""))
        if conv.topic:
            parts.append(f"— {conv.topic}")
    return " ".join(parts)


def unread_summary(convs: Iterable, current: Optional[str] = None) -> str:
    """"unread: #python 3, @bob 1 (1 mention)" for the conversations with
    unread messages (not the current one); "" when there are none."""
    bits = []
    for c in convs:
        if same_conv(c.key, current) or not c.unread:
            continue
        bits.append(f"{c.key} {c.unread}" + (f" ({c.mentions} mention"
                                              + ("s" if c.mentions != 1 else "") + ")"
                                              if c.mentions else ""))
    return ("unread: " + ", ".join(bits)) if bits else ""


@dataclass
class HistoryCursor:
    """Where ``/history`` goes on from in one conversation: the oldest id shown."""
    oldest: dict = field(default_factory=dict)      # conv casefold -> oldest id seen

    def seen(self, key: str, id: int) -> None:
        k = key.casefold()
        if k not in self.oldest or id < self.oldest[k]:
            self.oldest[k] = id

    def before(self, key: str) -> Optional[int]:
        return self.oldest.get(key.casefold())


def config_dir() -> Path:
    """Where the clients keep their settings and known_hosts: $XDG_CONFIG_HOME,
    else %APPDATA% on Windows, else ~/.config; then ``parley``."""
    base = os.environ.get("XDG_CONFIG_HOME")
    if not base and sys.platform == "win32":
        base = os.environ.get("APPDATA")
    if not base:
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "parley"
