"""Moderation: roles, sanctions, invites and room settings, sans-IO.

Who may do what (the hub asks ``Rules``; it never touches a socket or a disk):

    rank 3  a server admin (an account with admin set: parley-server user admin NAME on)
    rank 2  the owner of a room (the account that created it)
    rank 1  a moderator of a room (made by its owner or an admin: ``op``)
    rank 0  everyone else

- In a room, ranks 1+ may kick, mute, unmute, ban, unban, delete messages,
  lock/unlock the topic, close/open the room (invite-only) and invite; ranks
  2+ may op/deop.  Anyone may delete their own message.
- Server-wide (no room): admins only, for kick, mute, unmute, ban and unban.
- Nobody acts on someone of equal or higher rank (a moderator cannot kick the
  owner; an admin cannot be banned by anyone but... nobody: admins are equal).

Sanctions are kept per ``who``: ``sid:<session or account id>`` and, for a
guest, also ``addr:<IP address>`` (a guest has no account to ban: its address
is what comes back).  ``room`` '' is server-wide.  A sanction has an end
(``until``, ms since the epoch) or none (until lifted).

Everything is stored in parley.db (schema v3, tables below) by the store's
writer thread (``Write(op="exec")``: the statements ``*_sql`` return), so it
survives a restart; the audit table records every action with who, what,
whom, why and until when, for admins to read (``audit`` request).
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Iterable, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS room_settings(
    room TEXT PRIMARY KEY, topic_locked INTEGER NOT NULL DEFAULT 0,
    invite_only INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS room_roles(
    room TEXT NOT NULL, sid TEXT NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY(room, sid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invites(
    room TEXT NOT NULL, key TEXT NOT NULL, by TEXT NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY(room, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sanctions(
    kind TEXT NOT NULL, room TEXT NOT NULL, who TEXT NOT NULL, name TEXT NOT NULL,
    until INTEGER, by TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL, PRIMARY KEY(kind, room, who)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit(
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    room TEXT, target TEXT, reason TEXT, until INTEGER);
"""

ADMIN, OWNER, MODERATOR, MEMBER = 3, 2, 1, 0
ROLE_RANK = {"owner": OWNER, "mod": MODERATOR}
TARGETED = ("kick", "mute", "unmute", "ban", "unban", "invite", "op", "deop")
SERVER_WIDE = ("kick", "mute", "unmute", "ban", "unban")
NEEDS_OWNER = ("op", "deop")
MUTE, BAN = "mute", "ban"
DURATION_MAX = 10 * 365 * 86400          # seconds: longer is "until lifted"


@dataclass
class Sanction:
    kind: str            # mute | ban
    room: str            # room key, '' for server-wide
    who: str             # sid:<id> | addr:<ip>
    name: str            # the user's name when it was given (to lift it by name)
    until: Optional[int]  # ms since the epoch; None: until lifted
    by: str
    reason: str = ""

    def active(self, now_ms: int) -> bool:
        return self.until is None or now_ms < self.until


def fmt_until(until: Optional[int]) -> Optional[str]:
    if until is None:
        return None
    from ..protocol import format_ts
    return format_ts(until)


def describe(s: Sanction, where: str) -> str:
    """'you are muted in #lab until 2026-11-25 14:00 UTC (by alice: spam)'."""
    what = "muted" if s.kind == MUTE else "banned"
    until = (" until " + fmt_until(s.until)[:16].replace("T", " ") + " UTC"
             if s.until is not None else "")
    why = f" (by {s.by}" + (f": {s.reason})" if s.reason else ")")
    return f"you are {what} {where}{until}{why}"


@dataclass
class Rules:
    """Roles, sanctions, invites and room settings in memory (the hub's lock
    guards it).  The clock is passed in."""
    roles: dict = field(default_factory=dict)         # (room, sid) -> "owner" | "mod"
    locked: set = field(default_factory=set)          # room keys with a locked topic
    closed: set = field(default_factory=set)          # invite-only room keys
    invites: set = field(default_factory=set)         # (room, casefolded name)
    sanctions: dict = field(default_factory=dict)     # (kind, room, who) -> Sanction

    # --- questions -------------------------------------------------------------
    def rank(self, room: Optional[str], sid: str, admin: bool) -> int:
        if admin:
            return ADMIN
        if room is None:
            return MEMBER
        return ROLE_RANK.get(self.roles.get((room, sid)), MEMBER)

    def find(self, kind: str, room: str, whos: Iterable[str], now_ms: int) -> Optional[Sanction]:
        """The sanction of ``kind`` that applies in ``room`` (or server-wide)
        to any of ``whos``; expired ones are dropped on the way."""
        for scope in (room, "") if room else ("",):
            for who in whos:
                s = self.sanctions.get((kind, scope, who))
                if s is None:
                    continue
                if s.active(now_ms):
                    return s
                del self.sanctions[(kind, scope, who)]
        return None

    def by_name(self, kind: str, room: str, name: str) -> list[Sanction]:
        key = name.casefold()
        return [s for (k, r, _), s in self.sanctions.items()
                if k == kind and r == room and s.name.casefold() == key]

    def owner(self, room: str) -> Optional[str]:
        for (r, sid), role in self.roles.items():
            if r == room and role == "owner":
                return sid
        return None

    # --- changes: each returns the SQL (statement, params) that stores it ------------
    def set_role(self, room: str, sid: str, role: Optional[str]) -> tuple:
        if role is None:
            self.roles.pop((room, sid), None)
            return ("DELETE FROM room_roles WHERE room=? AND sid=?", (room, sid))
        self.roles[(room, sid)] = role
        return ("INSERT INTO room_roles(room, sid, role) VALUES (?,?,?) "  # pragma: no mutate
                "ON CONFLICT(room, sid) DO UPDATE SET role=excluded.role", (room, sid, role))

    def set_flags(self, room: str, locked: Optional[bool] = None,
                  closed: Optional[bool] = None) -> tuple:
        if locked is not None:
            (self.locked.add if locked else self.locked.discard)(room)
        if closed is not None:
            (self.closed.add if closed else self.closed.discard)(room)
        return ("INSERT INTO room_settings(room, topic_locked, invite_only) VALUES (?,?,?) "  # pragma: no mutate
                "ON CONFLICT(room) DO UPDATE SET topic_locked=excluded.topic_locked, "  # pragma: no mutate
                "invite_only=excluded.invite_only",  # pragma: no mutate
                (room, int(room in self.locked), int(room in self.closed)))

    def invite(self, room: str, name: str, by: str, now_ms: int) -> tuple:
        self.invites.add((room, name.casefold()))
        return ("INSERT INTO invites(room, key, by, created) VALUES (?,?,?,?) "  # pragma: no mutate
                "ON CONFLICT(room, key) DO NOTHING", (room, name.casefold(), by, now_ms))

    def uninvite(self, room: str, name: str) -> Optional[tuple]:
        if (room, name.casefold()) not in self.invites:
            return None
        self.invites.discard((room, name.casefold()))
        return ("DELETE FROM invites WHERE room=? AND key=?", (room, name.casefold()))

    def add(self, s: Sanction, now_ms: int) -> tuple:
        self.sanctions[(s.kind, s.room, s.who)] = s
        return ("INSERT INTO sanctions(kind, room, who, name, until, by, reason, created) "  # pragma: no mutate
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(kind, room, who) DO UPDATE SET "  # pragma: no mutate
                "name=excluded.name, until=excluded.until, by=excluded.by, "  # pragma: no mutate
                "reason=excluded.reason, created=excluded.created",  # pragma: no mutate
                (s.kind, s.room, s.who, s.name, s.until, s.by, s.reason, now_ms))

    def lift(self, s: Sanction) -> tuple:
        self.sanctions.pop((s.kind, s.room, s.who), None)
        return ("DELETE FROM sanctions WHERE kind=? AND room=? AND who=?",  # pragma: no mutate
                (s.kind, s.room, s.who))


def audit_sql(ts: int, actor: str, action: str, room: Optional[str], target: Optional[str],
              reason: str, until: Optional[int]) -> tuple:
    return ("INSERT INTO audit(ts, actor, action, room, target, reason, until) "  # pragma: no mutate
            "VALUES (?,?,?,?,?,?,?)", (ts, actor, action, room, target, reason, until))


# --- the store's side -------------------------------------------------------------
def load(c: sqlite3.Connection, now_ms: int) -> Rules:
    """The rules as stored (sanctions that have ended are left out)."""
    r = Rules()
    for room, sid, role in c.execute("SELECT room, sid, role FROM room_roles"):  # pragma: no mutate
        r.roles[(room, sid)] = role
    for room, locked, closed in c.execute(
            "SELECT room, topic_locked, invite_only FROM room_settings"):  # pragma: no mutate
        if locked:
            r.locked.add(room)
        if closed:
            r.closed.add(room)
    r.invites = {(room, key) for room, key in c.execute("SELECT room, key FROM invites")}  # pragma: no mutate
    for row in c.execute("SELECT kind, room, who, name, until, by, reason FROM sanctions "  # pragma: no mutate
                         "WHERE until IS NULL OR until > ?", (now_ms,)):  # pragma: no mutate
        s = Sanction(*row)
        r.sanctions[(s.kind, s.room, s.who)] = s
    return r


def audit_entries(c: sqlite3.Connection, before: Optional[int], limit: int,
                  names: dict) -> tuple[list[dict], bool]:
    from ..protocol import format_ts
    rows = c.execute(
        "SELECT id, ts, actor, action, room, target, reason, until FROM audit "  # pragma: no mutate
        + ("WHERE id < ? " if before is not None else "") + "ORDER BY id DESC LIMIT ?",  # pragma: no mutate
        ((before,) if before is not None else ()) + (limit + 1,)).fetchall()
    out = []
    for id_, ts, actor, action, room, target, reason, until in rows[:limit]:
        d = {"id": id_, "ts": format_ts(ts), "by": actor, "action": action}
        if room:
            d["room"] = names.get(room, room)
        if target:
            d["target"] = target
        if reason:
            d["reason"] = reason
        if until is not None:
            d["until"] = format_ts(until)
        out.append(d)
    return out, len(rows) > limit


def event_text(action: str, reason: str, until: Optional[int],
               message: Optional[int]) -> str:
    """What a stored ``mod`` event keeps in events.text."""
    d: dict = {"action": action}
    if reason:
        d["reason"] = reason
    if until is not None:
        d["until"] = until
    if message is not None:
        d["message"] = message
    return json.dumps(d, separators=(",", ":"))


def frame(id_: int, ts: str, room: Optional[str], by: str, target: Optional[str],
          text: Optional[str]) -> dict:
    """A stored ``mod`` event in wire form (key order as protocol.Moderation)."""
    try:
        d = json.loads(text or "{}")
    except ValueError:
        d = {}
    out: dict = {"type": "mod", "id": id_, "ts": ts, "action": d.get("action", "?"), "by": by}
    if room is not None:
        out["room"] = room
    if target:
        out["target"] = target
    if d.get("reason"):
        out["reason"] = d["reason"]
    if d.get("until") is not None:
        out["until"] = fmt_until(d["until"])
    if d.get("message") is not None:
        out["message"] = d["message"]
    return out
