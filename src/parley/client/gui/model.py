"""The window's state as plain data: no Tk, no sockets, no clock reads.

What the sidebar, the conversation header, the member list, the room dialog
and the search panel show is decided here from the session's conversations
(``Session.conversations()``: objects with ``key``, ``kind``, ``topic``,
``members``, ``count``, ``unread``, ``mentions``, ``read_id``, ``last_id``),
so it is tested without a display (tests/unit/test_gui_render.py):

* ``badge`` / ``sidebar_rows``: the Rooms and Direct messages sections;
* ``header`` / ``member_panel``: the conversation's title, topic and members;
* ``split_page`` / ``HistoryPager``: older history merged above what is shown;
* ``first_unread``: where the "new since you were here" line goes;
* ``search_hits`` / ``query_terms``: the search panel;
* ``room_input`` / ``room_rows``: the "join or create a room" dialog.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from ... import protocol as p
from ..core import same_conv as same_key, sorted_users

BADGE_MAX = 99                 # a badge shows "99+" beyond this


# --- conversation keys -----------------------------------------------------------
def is_room(key: str) -> bool:
    return key.startswith("#")


def is_dm(key: str) -> bool:
    return key.startswith("@")


def dm_key(name: str) -> str:
    return "@" + name


def label_of(key: str) -> str:
    """``#general`` -> ``general``, ``@bob`` -> ``bob``."""
    return key[1:] if key[:1] in ("#", "@") else key


def count_text(n: int) -> str:
    return f"{BADGE_MAX}+" if n > BADGE_MAX else str(n)


def thousands(n: int) -> str:
    return f"{n:,}"


def plural(n: int, word: str) -> str:
    return f"{thousands(n)} {word}{'' if n == 1 else 's'}"


# --- the sidebar -----------------------------------------------------------------
def badge(unread: int, mentions: int = 0) -> tuple[str, str]:
    """(text, level) of a conversation's badge: level "" (none), "unread" or
    "mention" (the stronger badge).  The number is the unread count."""
    unread = max(unread or 0, mentions or 0)
    if unread <= 0:
        return "", ""
    return count_text(unread), ("mention" if mentions and mentions > 0 else "unread")


@dataclass(frozen=True)
class SidebarRow:
    kind: str                  # header | room | dm | hint
    key: str                   # conversation key ("rooms" / "dms" for headers)
    label: str                 # what is shown ("general", "bob", "ROOMS")
    badge: str = ""            # "3", "99+" or ""
    level: str = ""            # "" | unread | mention
    selected: bool = False
    online: Optional[bool] = None   # DMs: is the other person online?


ROOMS_HEADER = "ROOMS"
DMS_HEADER = "DIRECT MESSAGES"
DM_HINT = "Double-click a member to message them"


def sidebar_rows(conversations: Iterable[Any], current: Optional[str],
                 online: Optional[Iterable[str]] = None,
                 extra_dms: Iterable[str] = ()) -> list[SidebarRow]:
    """The sidebar, top to bottom: the Rooms header and rooms (alphabetical), the
    Direct messages header and conversations (most recent first).

    ``extra_dms`` are DM keys opened in this window that the session does not
    know yet (nothing sent so far).  The conversation being looked at has no
    badge: it is being read."""
    online_set = {u.casefold() for u in online} if online is not None else None
    rooms, dms, seen = [], [], set()
    for c in conversations:
        seen.add(c.key.casefold())
        (rooms if is_room(c.key) else dms).append(c)
    rows = [SidebarRow("header", "rooms", ROOMS_HEADER)]
    for c in sorted(rooms, key=lambda c: (c.key.casefold(), c.key)):
        sel = same_key(c.key, current)
        text, level = ("", "") if sel else badge(c.unread, c.mentions)
        rows.append(SidebarRow("room", c.key, label_of(c.key), text, level, sel))
    rows.append(SidebarRow("header", "dms", DMS_HEADER))
    items: list[tuple[int, str, int, int]] = [
        (c.last_id or 0, c.key, c.unread, c.mentions) for c in dms]
    for key in extra_dms:
        if key.casefold() not in seen:
            seen.add(key.casefold())
            items.append((0, key, 0, 0))
    items.sort(key=lambda t: (-t[0], t[1].casefold()))
    for _last, key, unread, mentions in items:
        sel = same_key(key, current)
        text, level = ("", "") if sel else badge(unread, mentions)
        who = label_of(key)
        on = None if online_set is None else who.casefold() in online_set
        rows.append(SidebarRow("dm", key, who, text, level, sel, on))
    if not items:
        rows.append(SidebarRow("hint", "", DM_HINT))
    return rows


def total_unread(conversations: Iterable[Any], current: Optional[str] = None) -> tuple[int, int]:
    """(unread, mentions) over every conversation but the one being read: the title bar."""
    unread = mentions = 0
    for c in conversations:
        if not same_key(c.key, current):
            unread += max(0, c.unread or 0)
            mentions += max(0, c.mentions or 0)
    return unread, mentions


def window_title(me: str, where: str, unread: int, mentions: int) -> str:
    prefix = f"({count_text(unread)}{'!' if mentions else ''}) " if unread else ""
    return f"{prefix}Parley \u2014 {me} @ {where}"


# --- the conversation header and the member list ---------------------------------------
@dataclass(frozen=True)
class Header:
    glyph: str                 # "#" or "@"
    title: str                 # "general" / "bob"
    subtitle: str              # the topic, or a hint
    placeholder: bool          # subtitle is a hint (shown dimmer), not a topic
    editable: bool             # clicking the subtitle edits the topic


def header(key: Optional[str], conv: Any = None,
           online: Optional[Iterable[str]] = None) -> Header:
    if not key:
        return Header("", "Parley", "Not connected", True, False)
    if is_room(key):
        topic = (getattr(conv, "topic", "") or "").strip()
        if topic:
            return Header("#", label_of(key), " ".join(topic.split()), False, True)
        return Header("#", label_of(key), "Add a topic", True, True)
    who = label_of(key)
    if online is None:
        state = ""
    else:
        state = " \u00b7 online" if who.casefold() in {u.casefold() for u in online} \
            else " \u00b7 offline"
    return Header("@", who, f"Direct message{state}", True, False)


@dataclass(frozen=True)
class MemberPanel:
    title: str                 # "MEMBERS — 3"
    names: list[str]           # shown, me first
    lazy: bool = False         # a big room: the list is loaded on request
    note: str = ""             # "1,204 members" for a big room
    guests: frozenset = frozenset()   # casefolded names shown with a "guest" mark


def member_panel(key: Optional[str], conv: Any, me: str,
                 guests: Iterable[str] = ()) -> MemberPanel:
    if not key:
        return MemberPanel("MEMBERS", [])
    marks = frozenset(g.casefold() for g in guests)
    if is_dm(key):
        names = sorted_users([me, label_of(key)], me)
        return MemberPanel("IN THIS CONVERSATION", names,
                           guests=frozenset(n.casefold() for n in names) & marks)
    members = getattr(conv, "members", None) if conv is not None else None
    count = getattr(conv, "count", None) if conv is not None else None
    if members is None:
        n = count or 0
        return MemberPanel(f"MEMBERS \u2014 {thousands(n)}", [], True, plural(n, "member"))
    names = sorted_users(members, me)
    return MemberPanel(f"MEMBERS \u2014 {thousands(len(names))}", names,
                       guests=frozenset(n.casefold() for n in names) & marks)


# --- history ------------------------------------------------------------------------
def events_from_frames(frames: Iterable[dict]) -> list[p.Event]:
    """History dicts (a page, search results, a room's recent messages) as typed
    events, oldest first, one per id; anything malformed is skipped."""
    out: dict[int, p.Event] = {}
    for frame in frames:
        try:
            ev = p.event_from_dict(frame, p.SERVER_FRAMES)
        except p.ProtocolError:
            continue
        if isinstance(ev, p.HISTORY_FRAMES):
            out.setdefault(ev.id, ev)
    return [out[i] for i in sorted(out)]


def split_page(events: Sequence[Any], oldest: Optional[int],
               newest: Optional[int]) -> tuple[list, list]:
    """A page of history against what is shown (ids ``oldest``..``newest``):
    (older ones to insert above, newer ones to add below), each oldest first.
    What falls inside the shown range is already there (or a gap the live
    stream has filled) and is dropped.  Nothing with an id shown yet: all of it
    is "older" (it goes above local lines such as the welcome)."""
    ordered = sorted({e.id: e for e in events}.values(), key=lambda e: e.id)
    if oldest is None or newest is None:
        return ordered, []
    return ([e for e in ordered if e.id < oldest], [e for e in ordered if e.id > newest])


class HistoryPager:
    """Which conversations are loading older history, and which have no more.

    ``want(key)`` says whether to ask now (one request per conversation at a
    time, none once the beginning was reached); ``asked(key, label)`` records
    the request; ``answered(label, more)`` its answer, returning the key."""

    def __init__(self) -> None:
        self.loading: dict[str, str] = {}      # key (casefolded) -> label
        self.done: set[str] = set()            # reached the beginning

    def want(self, key: str) -> bool:
        k = key.casefold()
        return k not in self.loading and k not in self.done

    def asked(self, key: str, label: str) -> None:
        self.loading[key.casefold()] = label

    def is_loading(self, key: str) -> bool:
        return key.casefold() in self.loading

    def at_beginning(self, key: str) -> bool:
        return key.casefold() in self.done

    def answered(self, label: Optional[str], more: bool, added: int = 1) -> Optional[str]:
        """A page (or an error) answered ``label``; ``added`` older items were new.
        A page that added nothing counts as the beginning, so a server that keeps
        answering the same page cannot make the window ask forever."""
        for k, lab in list(self.loading.items()):
            if lab == label:
                del self.loading[k]
                if not more or added <= 0:
                    self.done.add(k)
                return k
        return None

    def failed(self, label: Optional[str]) -> Optional[str]:
        for k, lab in list(self.loading.items()):
            if lab == label:
                del self.loading[k]
                self.done.add(k)       # do not hammer a server that says no
                return k
        return None

    def forget(self, key: str) -> None:
        """Older history is available again (trimmed from the view, or reconnected)."""
        k = key.casefold()
        self.done.discard(k)
        self.loading.pop(k, None)

    def reset(self) -> None:
        self.loading.clear()
        self.done.clear()


def first_unread(items: Sequence[tuple[Optional[int], bool, bool]], read_id: int) -> Optional[int]:
    """Where the "new since you were here" line goes: the index of the first item
    ``(id, own, counts)`` newer than ``read_id`` that is someone else's message
    (``counts``: a message, not a join or a local line).  None: nothing unread."""
    for i, (mid, own, counts) in enumerate(items):
        if mid is not None and counts and not own and mid > read_id:
            return i
    return None


# --- search -------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchHit:
    key: str                   # the conversation: "#python" / "@bob"
    id: int
    sender: str
    ts: str
    text: str
    kind: str = "say"


def search_hits(messages: Iterable[dict], me: str) -> list[SearchHit]:
    """Search results (newest first, as the server sends them) as rows."""
    hits = []
    seen = set()
    for frame in messages:
        try:
            ev = p.event_from_dict(frame, p.SERVER_FRAMES)
        except p.ProtocolError:
            continue
        if not isinstance(ev, p.Message) or ev.id in seen:
            continue
        seen.add(ev.id)
        key = p.conversation(ev, me) or p.GENERAL
        hits.append(SearchHit(key, ev.id, ev.sender, ev.ts, ev.text, ev.kind))
    return hits


_FTS_WORD = re.compile(r'"([^"]+)"|([^\s"()]+)')
_FTS_OPERATORS = {"AND", "OR", "NOT", "NEAR"}


def query_terms(query: str) -> list[str]:
    """The words of a full-text query to highlight in results: phrases in quotes
    stay whole, operators (AND OR NOT NEAR) and ``-``/``*`` marks are dropped."""
    terms = []
    for m in _FTS_WORD.finditer(query):
        phrase, word = m.groups()
        if phrase:
            t = " ".join(phrase.split())
        else:
            if word in _FTS_OPERATORS:
                continue
            t = word.strip("*^-+:")
        if t and t.casefold() not in {x.casefold() for x in terms}:
            terms.append(t)
    return terms


def term_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) spans of ``terms`` in ``text`` at word starts,
    ignoring case (``deploy`` matches "Deploying", as a prefix search would)."""
    spans: list[tuple[int, int]] = []
    for t in sorted(terms, key=len, reverse=True):
        for m in re.finditer(r"(?<!\w)" + re.escape(t), text, re.IGNORECASE):
            s, e = m.span()
            if not any(s < b and a < e for a, b in spans):
                spans.append((s, e))
    return sorted(spans)


def search_summary(query: str, hits: int, more: bool) -> str:
    if hits == 0:
        return f"No messages match \u201c{query}\u201d."
    return f"{plural(hits, 'result')}{'+' if more else ''} for \u201c{query}\u201d"


# --- the room dialog ------------------------------------------------------------------
def room_input(text: str) -> tuple[str, Optional[str]]:
    """What was typed in the room dialog -> (room, problem).  The ``#`` is added
    when left out; ``problem`` is a sentence (None if the name is fine)."""
    name = text.strip()
    if name and not name.startswith("#"):
        name = "#" + name
    problem = p.validate_room(name)
    if problem is not None:
        return name, f"That room name won\u2019t work: {problem}."
    return name, None


@dataclass(frozen=True)
class RoomRow:
    room: str
    topic: str
    count: int
    joined: bool

    @property
    def detail(self) -> str:
        who = plural(self.count, "member") + " online" if self.count else "nobody online"
        return who + (" \u00b7 joined" if self.joined else "")


def room_rows(rooms: Iterable[dict], filter_text: str = "") -> list[RoomRow]:
    """The rooms list of the dialog: those matching what was typed (ignoring case
    and the ``#``), busiest first, then by name."""
    needle = filter_text.strip().lstrip("#").casefold()
    out = []
    for r in rooms:
        name = r.get("room")
        if not isinstance(name, str) or p.validate_room(name) is not None:
            continue
        if needle and needle not in name.casefold():
            continue
        count = r.get("count") if isinstance(r.get("count"), int) else 0
        topic = r.get("topic") if isinstance(r.get("topic"), str) else ""
        out.append(RoomRow(name, " ".join(topic.split()), max(0, count), bool(r.get("joined"))))
    out.sort(key=lambda r: (-r.count, r.room.casefold()))
    return out


def topic_problem(topic: str) -> Optional[str]:
    if len(topic) > p.TOPIC_MAX:
        return f"A topic is at most {p.TOPIC_MAX} characters (this one is {len(topic)})."
    return None
