"""The hub: who is online, the message history, and fan-out.  No sockets.

Fan-out is a shared, append-only ``BroadcastLog`` of encoded frames.  A chat
message is encoded once and appended once; every connection keeps a cursor
into the log and its I/O thread later sends "everything from my cursor to the
end" in one system call.  Appending is O(1) whatever the number of users, and
the lock is held only to change or snapshot state, never during socket I/O.
"""
from __future__ import annotations

import collections
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from .. import __version__
from .. import protocol as p

log = logging.getLogger("parley.hub")


class Member(Protocol):
    """What the hub needs from a connection (see connection.Connection)."""
    name: Optional[str]
    token: Optional[str]
    cursor: Optional[int]
    peer: str

    def push(self, frame: bytes, pos: int) -> None: ...
    def replaced(self) -> None: ...


class BroadcastLog:
    """Append-only list of encoded frames with absolute positions.

    ``frames[i - base]`` is frame number ``i``.  The front is trimmed once the
    log holds more than ``2 * keep_bytes``: a reader further behind than
    ``keep_bytes`` has exceeded its outbox bound and is disconnected anyway.
    Not locked itself: the hub's lock guards it.
    """

    def __init__(self, keep_bytes: int):
        self.keep_bytes = keep_bytes
        self.frames: list[bytes] = []
        self.ends: list[int] = []     # ends[i - base]: total bytes up to and including frame i
        self.base = 0
        self.base_offset = 0          # total bytes before frame ``base``
        self.total = 0

    @property
    def end(self) -> int:
        return self.base + len(self.frames)

    def append(self, frame: bytes) -> None:
        self.frames.append(frame)
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
            del self.ends[:lo]
            self.base += lo

    def offset(self, pos: int) -> int:
        """Total bytes before frame ``pos`` (pos >= base)."""
        return self.base_offset if pos == self.base else self.ends[pos - self.base - 1]

    def lag(self, pos: int) -> Optional[int]:
        """Bytes from ``pos`` to the end, or None if ``pos`` was trimmed away."""
        if pos < self.base:
            return None
        return self.total - self.offset(pos)

    def slice(self, start: int, stop: int) -> bytes:
        return b"".join(self.frames[start - self.base:stop - self.base])


@dataclass
class HistoryEntry:
    id: int
    frame: dict
    sender: Optional[str]       # casefolded name of the author (messages only)
    label: Optional[str]


class Hub:
    """Shared state of one chat server.  Every public method is thread-safe."""

    def __init__(self, *, history: int = 500, join_history: int = 20,
                 outbox_bytes: int = 1 << 20, limits: Optional[dict] = None,
                 clock: Callable[[], float] = time.time):
        self.lock = threading.Lock()
        self.log = BroadcastLog(outbox_bytes)
        self.history: collections.deque[HistoryEntry] = collections.deque(maxlen=history)
        self.join_history = join_history
        self.limits = dict(limits or {})
        self.clock = clock
        self.members: dict[str, Member] = {}      # casefolded name -> member
        self._names_json = ""                      # '"alice","bob"' kept incrementally
        self.last_id = 0
        self.instance = secrets.token_hex(6)         # ids restart with a new instance
        # the welcome's fields that never change, encoded once
        self._welcome_fixed = '"version":%d,"server":%s,"instance":"%s","limits":%s' % (
            p.PROTOCOL_VERSION, json.dumps(f"parley/{__version__}"), self.instance,
            json.dumps(self.limits, separators=(",", ":")))
        self.on_append: Callable[[], None] = lambda: None   # wakes the I/O threads

    # --- helpers (call with the lock held) -------------------------------
    def _stamp(self) -> tuple[int, str]:
        self.last_id += 1
        return self.last_id, p.format_ts(int(self.clock() * 1000))

    def _publish(self, frame: dict, sender: Optional[str] = None,
                 label: Optional[str] = None) -> None:
        self.log.append(p.encode_dict(frame))
        self.history.append(HistoryEntry(frame["id"], frame, sender, label))

    def _rebuild_names(self) -> None:
        self._names_json = ",".join(json.dumps(m.name, ensure_ascii=False)
                                    for m in self.members.values())

    # --- registration --------------------------------------------------------
    def register(self, member: Member, hello: p.Hello) -> Optional[p.Error]:
        """Add ``member`` as ``hello.name``; push its welcome.  Error if refused."""
        if hello.version != p.PROTOCOL_VERSION:
            return p.Error(p.VERSION_UNSUPPORTED,
                           f"this server speaks protocol version {p.PROTOCOL_VERSION}, "
                           f"not {hello.version}")
        problem = p.validate_name(hello.name)
        if problem:
            return p.Error(p.NAME_INVALID, f"{problem} ({p.NAME_RULES})")
        key = hello.name.casefold()
        resumed = False
        with self.lock:
            old = self.members.get(key)
            if old is not None:
                if hello.token and old.token and secrets.compare_digest(hello.token, old.token):
                    resumed = True          # same user back on a new connection
                    name = old.name         # keeps its spelling (and its place in the list)
                    old.name = None
                    old.replaced()
                else:
                    return p.Error(p.NAME_TAKEN, f"the name {hello.name!r} is taken; try another")
            else:
                name = hello.name
            member.name = name
            member.token = hello.token if resumed else secrets.token_urlsafe(16)
            last_id = hello.last_id
            if last_id is not None and hello.instance not in (None, self.instance):
                last_id = 0                 # ids from before a restart: send all we have
            history, truncated = self._catch_up(last_id, key)
            if not resumed:
                # join notice before the cursor: everyone else sees it, the joiner
                # learns the user list from its welcome instead.
                jid, ts = self._stamp()
                self._publish({"type": "join", "id": jid, "ts": ts, "name": name})
                # the user list as JSON, grown in place: O(1) per join at 10,000 users
                quoted = json.dumps(name, ensure_ascii=False)
                self._names_json = f"{self._names_json},{quoted}" if self._names_json else quoted
            self.members[key] = member
            welcome = ('{"type":"welcome",%s,"name":%s,"users":[%s],"last_id":%d,"token":%s,'
                       '"history":%s%s}\n' % (
                           self._welcome_fixed, json.dumps(name, ensure_ascii=False),
                           self._names_json, self.last_id, json.dumps(member.token),
                           json.dumps(history, ensure_ascii=False, separators=(",", ":")),
                           ',"truncated":true' if truncated else ""))
            member.cursor = self.log.end
            member.push(welcome.encode("utf-8"), self.log.end)
        log.info("%s %s %s", member.peer, name, "resumed" if resumed else "joined")
        if not resumed:
            self.on_append()
        return None

    def _catch_up(self, last_id: Optional[int], key: str) -> tuple[list[dict], bool]:
        if last_id is None:   # a newcomer sees the last few chat messages
            recent = [e for e in self.history if e.sender is not None]
            return [e.frame for e in recent[-self.join_history:]] if self.join_history else [], False
        missed = []
        for e in self.history:
            if e.id > last_id:
                if e.label is not None and e.sender == key:
                    missed.append(dict(e.frame, label=e.label))
                else:
                    missed.append(e.frame)
        oldest = self.history[0].id if self.history else self.last_id + 1
        truncated = last_id < self.last_id and oldest > last_id + 1
        return missed, truncated

    def leave(self, member: Member, reason: str) -> None:
        """Remove ``member`` (if registered) and tell everyone why."""
        name = member.name
        if name is None:
            return
        with self.lock:
            key = name.casefold()
            if self.members.get(key) is not member:
                return
            del self.members[key]
            member.name = None
            self._rebuild_names()
            lid, ts = self._stamp()
            self._publish({"type": "leave", "id": lid, "ts": ts, "name": name, "reason": reason})
        log.info("%s %s left (%s)", member.peer, name, reason)
        self.on_append()

    # --- chat ----------------------------------------------------------------
    def say(self, member: Member, text: str, kind: str = "say",
            label: Optional[str] = None) -> int:
        """Broadcast a chat message from ``member``; returns its id."""
        with self.lock:
            name = member.name
            if name is None:
                return 0
            mid, ts = self._stamp()
            frame = {"type": "message", "id": mid, "ts": ts, "from": name,
                     "text": text, "kind": kind}
            self._publish(frame, name.casefold(), label)
            if label is not None:
                member.push(p.encode(p.Ack(label=label, id=mid)), self.log.end)
        self.on_append()
        return mid

    def users(self) -> list[str]:
        with self.lock:
            return [m.name for m in self.members.values() if m.name]

    @property
    def count(self) -> int:
        return len(self.members)
