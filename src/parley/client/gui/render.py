"""What the GUI shows, as plain data: no Tk, no sockets, no clock reads.

Everything a person reads in the conversation view is built here as a list of
``(text, tags)`` segments; ``widgets.ChatView`` inserts them into a Tk ``Text``
in one call and ``theme.py`` gives each tag its look.  The rules that decide
*what* is shown live here so they can be tested without a display
(tests/unit/test_gui_render.py):

* ``Formatter``: protocol events -> ``Entry`` (time gutter, colour-coded names,
  grouping of consecutive messages, /me actions, join/leave notices, own
  messages, mentions, URLs, multi-line text, emoji fallback);
* ``find_urls``: links in a message;
* ``InputHistory``: Up/Down recall of sent lines;
* ``ScrollFollow``: the auto-scroll rule and the "new messages" indicator;
* ``status_text``: the status bar sentence.
"""
from __future__ import annotations

import datetime
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from ... import protocol as p
# the one name colour, time format and mention rule of every client (parley.client.core)
from ..core import (day_label, local_time, mention_re, mention_spans, mod_line,
                    name_colour_index, parse_ts, sorted_users)
from .model import SearchHit, term_spans

Segment = tuple[str, tuple[str, ...]]

GROUP_WINDOW = 5 * 60          # seconds: consecutive messages closer than this share a header
MARKER_TEXT = "new since you were here"
REMOVED_TEXT = "message removed"     # a message a moderator (or its author) removed


# --- names and colours ---------------------------------------------------------
def name_tag(name: str) -> str:
    return f"nc{name_colour_index(name)}"


def initial(name: str) -> str:
    """The letter shown in a user's avatar."""
    for ch in name:
        if ch.isalnum():
            return ch.upper()
    return (name[:1] or "?").upper()


# --- text ----------------------------------------------------------------------
URL_RE = re.compile(
    r"""(?i)\b(?:https?://|ftp://|www\.)[^\s<>"'`]+""")
_TRAILING = ".,;:!?'\"*"
_PAIRS = {")": "(", "]": "[", "}": "{", ">": "<"}
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_INVISIBLE_JOINERS = re.compile("[\u200d\ufe0e\ufe0f]")


def find_urls(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of URLs, without trailing punctuation or an unmatched ')'."""
    spans = []
    for m in URL_RE.finditer(text):
        start, end = m.span()
        while end > start:
            ch = text[end - 1]
            if ch in _TRAILING:
                end -= 1
            elif ch in _PAIRS and text.count(_PAIRS[ch], start, end) < text.count(ch, start, end):
                end -= 1
            else:
                break
        if end - start > len("www."):
            spans.append((start, end))
    return spans


def url_target(url: str) -> str:
    """The address to open for a URL as shown (``www.x`` -> ``https://www.x``)."""
    return url if "://" in url else "https://" + url


def non_bmp(text: str) -> bool:
    return any(ord(ch) > 0xFFFF for ch in text)


def emoji_fallback(ch: str) -> str:
    """A visible, readable stand-in for a character Tk cannot draw safely."""
    try:
        return "\u2039" + unicodedata.name(ch).lower() + "\u203a"     # ‹grinning face›
    except ValueError:
        return f"\u2039U+{ord(ch):04X}\u203a"


def display_text(text: str, emoji: str = "native") -> str:
    """Make text safe to hand to Tk.

    Control characters become U+FFFD, tabs four spaces, lone surrogates U+FFFD.
    With ``emoji="text"`` every character outside the Basic Multilingual Plane
    (emoji, math letters, …) becomes a readable stand-in, for systems where Tk
    would crash drawing it (X11 with a colour emoji font)."""
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    text = _CONTROL.sub("\ufffd", text)
    text = _LONE_SURROGATE.sub("\ufffd", text)
    if emoji == "text" and non_bmp(text):
        text = _INVISIBLE_JOINERS.sub("", text)
        text = "".join(emoji_fallback(ch) if ord(ch) > 0xFFFF else ch for ch in text)
    return text


def outgoing_text(text: str) -> str:
    """Text from a Tk widget as it goes on the wire: surrogate pairs joined,
    lone surrogates replaced, trailing blank lines and whitespace removed."""
    if _LONE_SURROGATE.search(text):
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        text = _LONE_SURROGATE.sub("\ufffd", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines)


def shorten(text: str, limit: int = 40) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "\u2026"


# --- entries -------------------------------------------------------------------
@dataclass
class Entry:
    """One item of the conversation: segments ending with a newline."""
    segments: list[Segment]
    kind: str                      # message | action | notice | info | error | pending | divider | marker | hit
    id: Optional[int] = None       # server id, for messages and notices
    own: bool = False
    mention: bool = False
    day: Optional[datetime.date] = None    # the local day of a timestamped entry

    @property
    def text(self) -> str:
        return "".join(t for t, _ in self.segments)

    @property
    def lines(self) -> int:
        return self.text.count("\n")

    def tagged(self, tag: str) -> str:
        """The text of segments that carry ``tag`` (handy in tests)."""
        return "".join(t for t, tags in self.segments if tag in tags)


class Formatter:
    """Turns events into entries.  Stateful only for grouping and day dividers.

    Layout: a time gutter (``time`` tag, then a tab to the gutter stop) and the
    text, with wrapped and continuation lines aligned after the gutter.  The
    first message of a run from one sender gets a header line with the name.

    Tags: ``hdr`` header line; ``name`` + ``ncN`` coloured names (``myname`` on
    mine); ``b1`` first line of an item, ``b2`` its further lines; ``own`` /
    ``mention`` bands; ``mword`` my name inside a message; ``url``; ``action``
    (/me, italics); ``notice`` (join/leave, dimmed); ``info`` / ``error``
    (local lines); ``pending`` / ``pnote`` (not yet acknowledged); ``divider``.
    """

    def __init__(self, me: str = "", emoji: str = "native",
                 tz: Optional[datetime.tzinfo] = None, group_window: float = GROUP_WINDOW):
        self.me = me
        self.emoji = emoji
        self.tz = tz
        self.group_window = group_window
        self._last_sender: Optional[str] = None
        self._last_time: Optional[datetime.datetime] = None
        self._last_day: Optional[datetime.date] = None

    # grouping ------------------------------------------------------------------
    def break_group(self) -> None:
        self._last_sender = None

    def _starts_group(self, sender: str, when: Optional[datetime.datetime]) -> bool:
        key = sender.casefold()
        same = (key == self._last_sender and when is not None and self._last_time is not None
                and 0 <= (when - self._last_time).total_seconds() <= self.group_window)
        self._last_sender = key
        self._last_time = when
        return not same

    def _day_divider(self, when: Optional[datetime.datetime]) -> list[Segment]:
        if when is None:
            return []
        day = when.astimezone(self.tz).date()
        previous, self._last_day = self._last_day, day
        if previous is None or previous == day:
            return []
        self.break_group()
        return [(day_label(day) + "\n", ("divider",))]

    def is_me(self, name: str) -> bool:
        return bool(self.me) and name.casefold() == self.me.casefold()

    # body text -------------------------------------------------------------------
    def body(self, text: str, base: tuple[str, ...], first: tuple[str, ...] = ("b1",),
             rest: tuple[str, ...] = ("b2",), mentions: bool = True) -> list[Segment]:
        """Text split into lines, URLs and mentions of me, each line ending in "\\n"."""
        out: list[Segment] = []
        text = display_text(text, self.emoji)
        rx = mention_re(self.me) if mentions else None
        for i, line in enumerate(text.split("\n")):
            line_tags = base + (first if i == 0 else rest)
            marks: list[tuple[int, int, str]] = [(s, e, "url") for s, e in find_urls(line)]
            if rx is not None:
                for m in rx.finditer(line):
                    if not any(s < m.end() and m.start() < e for s, e, _ in marks):
                        marks.append((m.start(), m.end(), "mword"))
            marks.sort()
            pos = 0
            for s, e, tag in marks:
                if s > pos:
                    out.append((line[pos:s], line_tags))
                out.append((line[s:e], line_tags + (tag,)))
                pos = e
            if pos < len(line):
                out.append((line[pos:], line_tags))
            out.append(("\n", line_tags))
        return out

    def _gutter(self, ts: str, tags: tuple[str, ...]) -> list[Segment]:
        return [(local_time(ts, tz=self.tz), tags + ("time",)), ("\t", tags)]

    # events ------------------------------------------------------------------------
    def message(self, ev: p.Message) -> Entry:
        when = parse_ts(ev.ts)
        segs = self._day_divider(when)
        own = self.is_me(ev.sender)
        mention = not own and bool(mention_spans(ev.text, self.me))
        band: tuple[str, ...] = ("own",) if own else ("mention",) if mention else ()
        sender = display_text(ev.sender, self.emoji)
        name_tags = ("name", name_tag(ev.sender)) + (("myname",) if own else ())
        if ev.deleted:
            self.break_group()
            self._last_time = when
            segs += self._gutter(ev.ts, ("b1",))
            segs.append((sender, ("b1", "removed", "nname")))
            segs.append((f" · {REMOVED_TEXT}\n", ("b1", "removed")))
            return Entry(segs, "removed", ev.id, own, False, self._local_day(when))
        if ev.kind == "me":
            self.break_group()
            self._last_time = when
            segs += self._gutter(ev.ts, band + ("b1", "action"))
            segs.append((sender, band + ("b1", "action") + name_tags))
            segs.append((" ", band + ("b1", "action")))
            segs += self.body(ev.text, band + ("action",), first=("b1",), rest=("b2",),
                              mentions=not own)
            return Entry(segs, "action", ev.id, own, mention, self._local_day(when))
        if self._starts_group(ev.sender, when):
            segs.append((sender, ("hdr",) + name_tags))
            if own:
                segs.append(("  you", ("hdr", "badge")))
            segs.append(("\n", ("hdr",)))
        segs += self._gutter(ev.ts, band + ("b1",))
        segs += self.body(ev.text, band, mentions=not own)
        return Entry(segs, "message", ev.id, own, mention, self._local_day(when))

    def _local_day(self, when: Optional[datetime.datetime]) -> Optional[datetime.date]:
        return when.astimezone(self.tz).date() if when is not None else None

    def join(self, ev: p.Join) -> Entry:
        when = parse_ts(ev.ts)
        segs = self._day_divider(when)
        self.break_group()
        who = display_text(ev.name, self.emoji)
        segs += self._gutter(ev.ts, ("b1", "notice"))
        segs += [("\u2192 ", ("b1", "notice", "arrow")), (who, ("b1", "notice", "nname")),
                 (" joined\n", ("b1", "notice"))]
        return Entry(segs, "notice", ev.id, day=self._local_day(when))

    def leave(self, ev: p.Leave) -> Entry:
        when = parse_ts(ev.ts)
        segs = self._day_divider(when)
        self.break_group()
        who = display_text(ev.name, self.emoji)
        why = p.LEAVE_REASONS.get(ev.reason, ev.reason)
        segs += self._gutter(ev.ts, ("b1", "notice"))
        segs += [("\u2190 ", ("b1", "notice", "arrow")), (who, ("b1", "notice", "nname")),
                 (f" left ({why})\n", ("b1", "notice"))]
        return Entry(segs, "notice", ev.id, day=self._local_day(when))

    def topic(self, ev: p.Topic) -> Entry:
        """A room's topic changed: a dimmed notice with the new topic."""
        when = parse_ts(ev.ts)
        segs = self._day_divider(when)
        self.break_group()
        who = display_text(ev.by, self.emoji)
        segs += self._gutter(ev.ts, ("b1", "notice"))
        segs.append((who, ("b1", "notice", "nname")))
        topic = " ".join(ev.topic.split())
        if topic:
            segs.append((" set the topic: ", ("b1", "notice")))
            segs += self.body(topic, ("notice", "topic"), mentions=False)
        else:
            segs.append((" cleared the topic\n", ("b1", "notice")))
        return Entry(segs, "notice", ev.id, day=self._local_day(when))

    def moderation(self, ev: p.Moderation) -> Entry:
        """A moderation action: a system line ("alice muted bob in #lab for 10m: …")."""
        when = parse_ts(ev.ts)
        segs = self._day_divider(when)
        self.break_group()
        segs += self._gutter(ev.ts, ("b1", "system"))
        segs.append(("\u2691 ", ("b1", "system", "arrow")))
        segs += self.body(mod_line(ev, self.me), ("system",), mentions=False)
        return Entry(segs, "notice", ev.id, day=self._local_day(when))

    def presence(self, ev: p.Presence) -> Entry:
        """Joins and leaves of a big room, coalesced: one dimmed line."""
        self.break_group()
        parts = []
        for names, count, verb in ((ev.joined, ev.joined_count, "joined"),
                                   (ev.left, ev.left_count, "left")):
            count = max(count, len(names))
            if not count:
                continue
            shown = [display_text(n, self.emoji) for n in names[:3]]
            others = count - len(shown)
            if others > 0:
                who = ", ".join(shown) + (f" and {others:,} other{'s' if others != 1 else ''}"
                                          if shown else f"{others:,} people")
            elif len(shown) > 1:
                who = ", ".join(shown[:-1]) + " and " + shown[-1]
            else:
                who = shown[0] if shown else ""
            parts.append(("\u2192 " if verb == "joined" else "\u2190 ") + f"{who} {verb}")
        parts.append(f"{ev.count:,} member{'s' if ev.count != 1 else ''}")
        return Entry([("\t", ("b1", "notice")),
                      (" \u00b7 ".join(parts) + "\n", ("b1", "notice"))], "notice")

    def marker(self) -> Entry:
        """The "new since you were here" line, above the first unread message."""
        self.break_group()
        return Entry([("\n", ("rulegap",)), ("\n", ("rule",)),
                      (MARKER_TEXT + "\n", ("markerlabel",))], "marker")

    def beginning(self, key: str) -> Entry:
        """The top of a conversation whose whole history is shown."""
        if key.startswith("@"):
            what = f"your conversation with {display_text(key[1:], self.emoji)}"
        else:
            what = display_text(key, self.emoji)
        return Entry([(f"This is the beginning of {what}.\n", ("beginning",))], "divider")

    def day(self, ev: object) -> Optional[datetime.date]:
        """The local day an event belongs to (None without a timestamp)."""
        when = parse_ts(getattr(ev, "ts", "") or "")
        return when.astimezone(self.tz).date() if when else None

    def day_divider(self, day: datetime.date) -> Entry:
        self.break_group()
        return Entry([(day_label(day) + "\n", ("divider",))], "divider")

    def event(self, ev: object) -> Optional[Entry]:
        """Any event that belongs in a conversation -> its entry (None for others)."""
        if isinstance(ev, p.Message):
            return self.message(ev)
        if isinstance(ev, p.Join):
            return self.join(ev)
        if isinstance(ev, p.Leave):
            return self.leave(ev)
        if isinstance(ev, p.Topic):
            return self.topic(ev)
        if isinstance(ev, p.Moderation):
            return self.moderation(ev)
        if isinstance(ev, p.Presence):
            return self.presence(ev)
        return None

    def search_hit(self, hit: "SearchHit", terms: Sequence[str], tag: str) -> Entry:
        """A search result: where, who and when on one line, the text below with
        the searched words highlighted; every segment carries ``tag`` (clickable)."""
        base = (tag, "hit")
        when = local_time(hit.ts, "%d %b %H:%M", self.tz).lstrip("0")
        segs: list[Segment] = [
            (display_text(hit.key, self.emoji), base + ("hkey",)),
            ("  ", base),
            (display_text(hit.sender, self.emoji), base + ("name", name_tag(hit.sender))),
            ("  " + when + "\n", base + ("htime",)),
        ]
        text = display_text(shorten(hit.text, 160), self.emoji)
        if hit.kind == "me":
            text = f"* {display_text(hit.sender, self.emoji)} {text}"
        pos = 0
        for s, e in term_spans(text, terms):
            if s > pos:
                segs.append((text[pos:s], base + ("htext",)))
            segs.append((text[s:e], base + ("htext", "hterm")))
            pos = e
        segs.append((text[pos:] + "\n", base + ("htext",)))
        return Entry(segs, "hit", hit.id)

    def info(self, text: str, style: str = "info") -> Entry:
        """A local line (help, /users, connection notes); ``style`` info|error|system."""
        self.break_group()
        segs: list[Segment] = [("\t", ("b1", style))]
        segs += self.body(text, (style,), mentions=False)
        return Entry(segs, "error" if style == "error" else "info")

    def users(self, users: Iterable[str], room: Optional[str] = None) -> Entry:
        """The /users answer: "3 online: alice, bob, carol" with coloured names
        (with ``room``: "2 in #python: …")."""
        self.break_group()
        names = sorted_users(users, self.me)
        where = f"in {room}" if room else "online"
        segs: list[Segment] = [("\t", ("b1", "info")),
                               (f"{len(names)} {where}: ", ("b1", "info"))]
        for i, n in enumerate(names):
            if i:
                segs.append((", ", ("b1", "info")))
            segs.append((display_text(n, self.emoji), ("b1", "info", "name", name_tag(n))))
        segs.append(("\n", ("b1", "info")))
        return Entry(segs, "info")

    def pending(self, label: str, kind: str, text: str, note: str) -> Entry:
        """A message of mine the server has not acknowledged yet (greyed)."""
        tags = ("pending", "p:" + label)
        segs: list[Segment] = [("\u2022\u2022\u2022", tags + ("b1", "time")), ("\t", tags + ("b1",))]
        if kind == "me":
            segs.append((display_text(self.me, self.emoji) + " ", tags + ("b1", "action")))
        body = self.body(text, tags + (("action",) if kind == "me" else ()), mentions=False)
        body.insert(len(body) - 1, ("  " + note, body[-1][1] + ("pnote",)))
        return Entry(segs + body, "pending")

    def refused(self, kind: str, text: str, reason: str) -> Entry:
        self.break_group()
        what = ("/me " if kind == "me" else "") + shorten(text)
        return Entry([("\t", ("b1", "error")),
                      (f"\u2715 Not sent: \u201c{display_text(what, self.emoji)}\u201d \u2014 {reason}\n",
                       ("b1", "error"))], "error")


# --- the input line -------------------------------------------------------------
class InputHistory:
    """Up/Down recall of sent lines, keeping the unsent draft."""

    def __init__(self, limit: int = 200):
        self.items: list[str] = []
        self.limit = limit
        self.pos: Optional[int] = None      # index into items while browsing
        self.draft = ""

    def add(self, line: str) -> None:
        if line and (not self.items or self.items[-1] != line):
            self.items.append(line)
            del self.items[:-self.limit]
        self.pos = None
        self.draft = ""

    def up(self, current: str) -> Optional[str]:
        if not self.items:
            return None
        if self.pos is None:
            self.draft = current
            self.pos = len(self.items) - 1
        elif self.pos > 0:
            self.pos -= 1
        else:
            return None
        return self.items[self.pos]

    def down(self) -> Optional[str]:
        if self.pos is None:
            return None
        if self.pos < len(self.items) - 1:
            self.pos += 1
            return self.items[self.pos]
        self.pos = None
        return self.draft

    @property
    def browsing(self) -> bool:
        return self.pos is not None


# --- scrolling --------------------------------------------------------------------
class ScrollFollow:
    """Auto-scroll to new messages unless the user has scrolled up.

    ``view_moved(at_bottom)`` after anything that moves the view; ``added(n)``
    when n entries arrive -- True means "scroll to the end now", otherwise they
    are counted as unread and ``indicator`` says so until the view is back at
    the bottom (``view_moved(True)``) or ``jump()`` is called."""

    def __init__(self) -> None:
        self.following = True
        self.unread = 0

    def view_moved(self, at_bottom: bool) -> None:
        self.following = at_bottom
        if at_bottom:
            self.unread = 0

    def added(self, n: int = 1) -> bool:
        if self.following:
            return True
        self.unread += n
        return False

    def jump(self) -> None:
        self.following = True
        self.unread = 0

    @property
    def indicator(self) -> Optional[str]:
        if self.following or not self.unread:
            return None
        return f"\u2193  {self.unread} new message{'s' if self.unread != 1 else ''}"


def at_bottom(first: float, last: float, eps: float = 1e-3) -> bool:
    return last >= 1.0 - eps


# --- the status bar -----------------------------------------------------------------
def status_text(state: str, host: str, port: int, name: str = "", detail: str = "",
                retry_left: Optional[float] = None, pending: int = 0) -> tuple[str, str]:
    """(sentence, level) for the status bar; level is ok | warn | error | idle.

    ``state`` is a SessionState value (connecting, connected, reconnecting, closed)
    or "idle" before the first connection."""
    where = f"{host}:{port}"
    waiting = f" \u00b7 {pending} message{'s' if pending != 1 else ''} waiting to be sent" if pending else ""
    if state == "connected":
        return f"Connected to {where} as {name}", "ok"
    if state == "connecting":
        return f"Connecting to {where}\u2026", "warn"
    if state == "reconnecting":
        why = f"Connection lost: {detail}" if detail else "Connection lost"
        if retry_left is not None and retry_left > 0.5:
            when = f"Reconnecting in {int(retry_left + 0.5)} s\u2026"
        else:
            when = "Reconnecting\u2026"
        return f"{why} \u00b7 {when}{waiting}", "warn"
    if state == "closed":
        return f"Disconnected: {detail or 'closed'}{waiting}", "error"
    return "Not connected", "idle"


def validate_port(text: str) -> Optional[str]:
    """None if ``text`` is a usable TCP port, else a sentence."""
    try:
        port = int(text.strip())
    except ValueError:
        return "The port must be a number, e.g. 8888."
    if not 1 <= port <= 65535:
        return "The port must be between 1 and 65535."
    return None


def validate_host(text: str) -> Optional[str]:
    host = text.strip()
    if not host:
        return "Enter the server\u2019s address, e.g. 127.0.0.1."
    if any(ch.isspace() for ch in host):
        return "The server address cannot contain spaces."
    return None


def explain_name(name: str) -> Optional[str]:
    """A friendly sentence if ``name`` breaks the server's name rules."""
    problem = p.validate_name(name)
    if problem is None:
        return None
    return f"That name won\u2019t work: {problem}. ({p.NAME_RULES}.)"


def refused_name(name: str, code: str, message: str) -> str:
    if code == p.NAME_TAKEN:
        return f"\u201c{name}\u201d is already taken on this server. Please choose another name."
    if code == p.NAME_REGISTERED:
        return (f"The name \u201c{name}\u201d is registered: enter its password (or pick "
                "another name).")
    if code == p.LOGIN_FAILED:
        return "Wrong name or password. Check both and try again."
    if code == p.INSECURE:
        return ("This server takes passwords only over an encrypted connection: tick "
                "\u201cSecure connection (TLS)\u201d (port 8889), or leave the password empty "
                "to join as a guest.")
    if code == p.AUTH_REQUIRED:
        return f"This server is for its members: enter the password of \u201c{name}\u201d."
    if code == p.ACCOUNTS_OFF:
        return "This server has no accounts: leave the password empty."
    if code == p.BAD_PASSWORD:
        return f"That password will not do: {message}."
    return f"The server refused \u201c{name}\u201d: {message}"
