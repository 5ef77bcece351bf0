"""The Parley window's building blocks (Tk thread only).

* ``ChatView``: one conversation, a read-only ``tk.Text`` fed with the
  segments built by ``render.Formatter``; batches, trimming, pending lines,
  older history inserted above without moving the view, the unread line,
  auto-scroll with a "new messages" indicator, links, copy and a context menu.
* ``MessageInput``: the growing input box (Enter sends, Shift+Enter new line,
  Up/Down recall) with a placeholder and the Send button.
* ``StatusBar``: a coloured dot and a sentence.
* ``ConnectCard``: the connect dialog, shown over the window until joined.

The panes around the conversation (sidebar, members, header, search, room
dialog) are in ``panes.py``.  No widget touches the network; ``window.ChatApp``
wires them to a session.
"""
from __future__ import annotations

import collections
import threading
import tkinter as tk
import webbrowser
from tkinter import ttk
from typing import Callable, NamedTuple, Optional, Sequence

from . import render
from .model import first_unread
from .render import Entry, ScrollFollow
from .theme import Theme, mix


def discs_image(master: tk.Misc, size: int, background: str,
                discs: Sequence[tuple[float, float, float, str]]) -> tk.PhotoImage:
    """Anti-aliased discs ``(cx, cy, radius, colour)`` painted in order on ``background``
    (Tk canvases draw jagged ovals; a photo image can blend the edges)."""
    img = tk.PhotoImage(master=master, width=size, height=size)
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            colour = background
            for cx, cy, r, c in discs:
                d = ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2) ** 0.5
                cover = r - d + 0.5
                if cover > 0:
                    colour = mix(colour, c, min(1.0, cover))
            row.append(colour)
        rows.append("{" + " ".join(row) + "}")
    img.put(" ".join(rows))
    return img


def rounded_image(master: tk.Misc, width: int, height: int, radius: float, colour: str,
                  background: str) -> tk.PhotoImage:
    """An anti-aliased rounded rectangle of ``colour`` on ``background`` (badges, rows)."""
    img = tk.PhotoImage(master=master, width=width, height=height)
    hw, hh = width / 2, height / 2
    r = min(radius, hw, hh)
    rows = []
    for y in range(height):
        row = []
        qy = abs(y + 0.5 - hh) - (hh - r)
        for x in range(width):
            qx = abs(x + 0.5 - hw) - (hw - r)
            outside = (max(qx, 0.0) ** 2 + max(qy, 0.0) ** 2) ** 0.5
            d = outside + min(max(qx, qy), 0.0) - r
            cover = 0.5 - d
            if cover >= 1:
                row.append(colour)
            elif cover <= 0:
                row.append(background)
            else:
                row.append(mix(background, colour, cover))
        rows.append("{" + " ".join(row) + "}")
    img.put(" ".join(rows))
    return img


def circle_image(master: tk.Misc, size: int, colour: str, background: str) -> tk.PhotoImage:
    """An anti-aliased disc of ``colour`` on ``background``."""
    return discs_image(master, size, background, [(size / 2, size / 2, size / 2, colour)])


def avatar_image(master: tk.Misc, size: int, colour: str, background: str,
                 online: str) -> tk.PhotoImage:
    """A round avatar with a presence dot (ringed in the background colour)."""
    r = size / 2
    dot = max(2.5, size * 0.115)
    ring = dot + max(1.5, size * 0.06)
    c = size - ring
    return discs_image(master, size, background,
                       [(r, r, r, colour), (c, c, ring, background), (c, c, dot, online)])


# --- the conversation ---------------------------------------------------------------
class Shown(NamedTuple):
    """What the view knows of an entry it shows."""
    id: Optional[int]
    lines: int
    kind: str
    own: bool

    @classmethod
    def of(cls, e: Entry) -> "Shown":
        return cls(e.id, e.lines, e.kind, e.own)


class ChatView(ttk.Frame):
    """Read-only rich text: entries appended in batches, the oldest trimmed."""

    NAV_KEYS = ("<Prior>", "<Next>", "<Control-Home>", "<Control-End>", "<Up>", "<Down>",
                "<Home>", "<End>")

    def __init__(self, master: tk.Misc, theme: Theme, max_entries: int = 2000,
                 on_type: Optional[Callable[[str], None]] = None,
                 on_top: Optional[Callable[[], None]] = None):
        super().__init__(master, style="Chat.TFrame")
        self.theme = theme
        self.max_entries = max(1, max_entries)
        self.on_type = on_type
        self.on_top = on_top            # the view reached the top: load older history
        # "Remove message" in the context menu of a message: ``on_remove(id)``, offered
        # where ``can_remove(shown)`` says so (mine, or any when I may moderate)
        self.on_remove: Optional[Callable[[int], None]] = None
        self.can_remove: Callable[[Shown], bool] = lambda shown: False
        self.follow = ScrollFollow()
        # what is shown, in order: one Shown per entry (its id, lines, kind, own)
        self.items: collections.deque[Shown] = collections.deque()
        self.ids: set[int] = set()
        self._top_pending = False
        self.text = tk.Text(self, wrap="word", state="disabled", cursor="xterm", undo=False,
                            takefocus=1, exportselection=True, highlightthickness=0,
                            borderwidth=0, relief="flat", width=40, height=10)
        self.scroll = ttk.Scrollbar(self, orient="vertical", style="Slim.Vertical.TScrollbar",
                                    command=self._scrollbar)
        self.text.configure(yscrollcommand=self._yscroll)
        self.text.grid(row=0, column=0, sticky="nsew")
        self.scroll.grid(row=0, column=1, sticky="ns", padx=(0, theme.px(3)), pady=theme.px(4))
        self.columnconfigure(0, weight=1)
        self.rowconfigure(0, weight=1)
        self.text.mark_set("msgs_end", "1.0")
        self.text.mark_gravity("msgs_end", "right")
        self.indicator = ttk.Button(self, style="Pill.TButton", command=self.jump_to_end,
                                    takefocus=0, cursor="hand2")
        self._indicator_shown = False
        self._check_pending = False
        self._scroll_idle = True
        self.menu = tk.Menu(self, tearoff=0)
        self._bind()
        self.apply_theme(theme)

    # look ----------------------------------------------------------------------
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        c, f, px = theme.palette, theme.fonts, theme.px
        gutter = f["time"].measure("00:00") + px(14)
        self.gutter = gutter
        t = self.text
        t.configure(background=c.surface, foreground=c.text, insertbackground=c.text,
                    selectbackground=c.selection, selectforeground=c.selection_text,
                    inactiveselectbackground=c.selection, font=f["body"],
                    padx=px(18), pady=px(10), spacing1=px(1), spacing3=px(1),
                    tabs=(gutter,), tabstyle="tabular")
        tags = {
            "b1": dict(lmargin1=0, lmargin2=gutter, spacing1=px(3)),
            "b2": dict(lmargin1=gutter, lmargin2=gutter),
            "hdr": dict(lmargin1=gutter, spacing1=px(12), font=f["bold"]),
            "time": dict(foreground=c.text_faint, font=f["time"]),
            "badge": dict(foreground=c.text_faint, font=f["small"]),
            "own": dict(background=c.own_band, lmargincolor=c.own_band),
            "mention": dict(background=c.mention_band, lmargincolor=c.mention_band),
            "action": dict(font=f["italic"], foreground=c.text),
            "notice": dict(foreground=c.text_faint, font=f["small"]),
            "arrow": dict(foreground=c.text_faint),
            "nname": dict(foreground=c.text_dim, font=f["smallbold"]),
            "info": dict(foreground=c.text_dim),
            "system": dict(foreground=c.text_dim, font=f["italic"]),
            "removed": dict(foreground=c.text_faint, font=f["italic"]),
            "error": dict(foreground=c.error),
            "divider": dict(justify="center", foreground=c.text_faint, font=f["caps"],
                            spacing1=px(14), spacing3=px(4)),
            "name": dict(font=f["bold"]),
            "myname": dict(),
            "mword": dict(foreground=c.mention_word, font=f["bold"]),
            "url": dict(foreground=c.url, underline=True),
            "pending": dict(foreground=c.text_faint),
            "pnote": dict(foreground=c.text_faint, font=f["small"]),
            "topic": dict(foreground=c.text_dim, font=f["italic"]),
            # the unread line: a gap, a 2-pixel line across, the words under it on the right
            "rulegap": dict(font=theme.rule_font, spacing1=px(8), spacing3=0),
            "rule": dict(background=c.marker, lmargincolor=c.marker, font=theme.rule_font,
                         spacing1=0, spacing3=0),
            "markerlabel": dict(foreground=c.marker, font=f["caps"], justify="right",
                                spacing1=px(2), spacing3=px(6)),
            "beginning": dict(justify="center", foreground=c.text_faint, font=f["italic"],
                              spacing1=px(10), spacing3=px(10)),
            "flash": dict(background=c.selection, lmargincolor=c.selection),
        }
        for i, colour in enumerate(c.names):
            tags[f"nc{i}"] = dict(foreground=colour)
        # creation order is priority order: colours and links beat the base styles,
        # "pending" greys out everything, the selection is always visible.
        order = ["b1", "b2", "hdr", "own", "mention", "info", "system", "error", "action",
                 "notice", "arrow", "nname", "removed", "divider", "time", "badge", "name",
                 "topic",
                 "rulegap", "rule", "markerlabel", "beginning"]
        order += [f"nc{i}" for i in range(len(c.names))]
        order += ["myname", "mword", "url", "pending", "pnote", "flash"]
        for name in order:
            t.tag_configure(name, **tags[name])
            t.tag_raise(name)
        t.tag_raise("sel")
        self.scroll.configure(style="Idle.Vertical.TScrollbar" if self._scroll_idle
                              else "Slim.Vertical.TScrollbar")
        self.menu.configure(background=c.field, foreground=c.text, activebackground=c.accent,
                            activeforeground=c.on_accent, borderwidth=1, relief="solid",
                            font=f["body"], activeborderwidth=0)
        self._place_indicator()

    # content ---------------------------------------------------------------------
    @staticmethod
    def _flat(entries: Sequence[Entry]) -> list:
        flat: list = []
        for e in entries:
            for text, tags in e.segments:
                flat.append(text)
                flat.append(tags)
        return flat

    def _insert(self, index: str, flat: list) -> None:
        try:
            self.text.insert(index, *flat)
        except tk.TclError:       # a character this Tk cannot take: show a stand-in
            safe = []
            for i in range(0, len(flat), 2):
                safe += [render.display_text(flat[i], "text"), flat[i + 1]]
            self.text.insert(index, *safe)

    def append(self, entries: Sequence[Entry]) -> None:
        """Add entries at the end of the conversation (before pending lines).
        While the view follows the end, the oldest beyond ``max_entries`` go."""
        if not entries:
            return
        t = self.text
        t.configure(state="normal")
        try:
            self._insert("msgs_end", self._flat(entries))
            for e in entries:
                self.items.append(Shown.of(e))
                if e.id is not None:
                    self.ids.add(e.id)
            if self.follow.following:
                self._trim()
        finally:
            t.configure(state="disabled")
        if self.follow.added(sum(1 for e in entries if e.kind != "marker")):
            t.see("end")
        self._place_indicator()

    def _trim(self) -> None:
        extra = len(self.items) - self.max_entries
        if extra <= 0:
            return
        lines = 0
        for _ in range(extra):
            item = self.items.popleft()
            lines += item.lines
            self.ids.discard(item.id)
        self.text.delete("1.0", f"{lines + 1}.0")
        self.trimmed = True

    trimmed = False           # older entries were dropped: history can be loaded again

    def prepend(self, entries: Sequence[Entry]) -> None:
        """Insert older entries above everything, keeping what is on screen where it is."""
        if not entries:
            return
        t = self.text
        following = self.follow.following and self.at_bottom()
        top = t.index("@0,0")
        info = t.dlineinfo(top)
        added = sum(e.lines for e in entries)
        t.configure(state="normal")
        try:
            self._insert("1.0", self._flat(entries))
        finally:
            t.configure(state="disabled")
        for e in reversed(entries):
            self.items.appendleft(Shown.of(e))
            if e.id is not None:
                self.ids.add(e.id)
        if following:
            t.see("end")
            return
        line, col = top.split(".")
        t.yview(f"{int(line) + added}.{col}")
        if info is not None:          # the top line was partly scrolled out: keep that too
            shift = int(t.cget("pady")) - info[1]
            if shift > 0:
                t.yview_scroll(shift, "pixels")

    def _line_of(self, position: int) -> int:
        """The text line where the entry at ``position`` in ``items`` starts."""
        line = 1
        for i, item in enumerate(self.items):
            if i == position:
                break
            line += item.lines
        return line

    def show_marker(self, read_id: int, entry: Entry) -> bool:
        """Put the "new since you were here" line above the first message newer
        than ``read_id`` (not mine) and bring it into view; False if none."""
        self.remove_marker()
        pos = first_unread([(i.id, i.own, i.kind in ("message", "action")) for i in self.items],
                           read_id)
        if pos is None:
            return False
        line = self._line_of(pos)
        t = self.text
        t.configure(state="normal")
        try:
            self._insert(f"{line}.0", self._flat([entry]))
        finally:
            t.configure(state="disabled")
        self.items.insert(pos, Shown.of(entry))
        t.mark_set("unread_marker", f"{line}.0")
        t.mark_gravity("unread_marker", "left")
        t.see("end")
        t.see(f"{max(1, line - 2)}.0")        # the marker and what follows, from the top
        self.after_idle(self._moved)
        return True

    def remove_marker(self) -> None:
        for pos, item in enumerate(self.items):
            if item.kind == "marker":
                line = self._line_of(pos)
                t = self.text
                t.configure(state="normal")
                try:
                    t.delete(f"{line}.0", f"{line + item.lines}.0")
                finally:
                    t.configure(state="disabled")
                del self.items[pos]
                break
        try:
            self.text.mark_unset("unread_marker")
        except tk.TclError:
            pass

    @property
    def marker_shown(self) -> bool:
        return any(item.kind == "marker" for item in self.items)

    def marker_position(self) -> Optional[int]:
        """How many entries with an id come before the marker (None: no marker)."""
        n = 0
        for item in self.items:
            if item.kind == "marker":
                return n
            if item.id is not None:
                n += 1
        return None

    @property
    def oldest_id(self) -> Optional[int]:
        for item in self.items:
            if item.id is not None:
                return item.id
        return None

    @property
    def newest_id(self) -> Optional[int]:
        for item in reversed(self.items):
            if item.id is not None:
                return item.id
        return None

    def entry_ids(self) -> list[int]:
        return [i.id for i in self.items if i.id is not None]

    def show_id(self, mid: int) -> bool:
        """Scroll to the entry with id ``mid`` and flash it; False if not shown."""
        for pos, item in enumerate(self.items):
            if item.id == mid:
                line = self._line_of(pos)
                t = self.text
                t.tag_remove("flash", "1.0", "end")
                t.tag_add("flash", f"{line}.0", f"{line + item.lines}.0")
                t.see(f"{line + item.lines}.0")
                t.see(f"{line}.0")
                self.after(1600, lambda: self._unflash())
                self._moved()
                return True
        return False

    def position_at(self, index: str) -> Optional[int]:
        """The position in ``items`` of the entry shown at text ``index``."""
        want = int(self.text.index(index).split(".")[0])
        line = 1
        for pos, item in enumerate(self.items):
            if line <= want < line + item.lines:
                return pos
            line += item.lines
        return None

    def message_at(self, index: str) -> Optional[Shown]:
        """The message (or /me action) shown at text ``index``, or None."""
        pos = self.position_at(index)
        if pos is None:
            return None
        item = self.items[pos]
        return item if item.kind in ("message", "action") and item.id is not None else None

    def mark_removed(self, mid: int) -> bool:
        """Redraw message ``mid`` as removed (its header line, if any, stays); False
        if it is not shown (or is removed already)."""
        t = self.text
        for pos, item in enumerate(self.items):
            if item.id != mid or item.kind not in ("message", "action"):
                continue
            line = self._line_of(pos)
            end = line + item.lines
            body = line
            while body < end - 1 and {"hdr", "divider"} & set(t.tag_names(f"{body}.0")):
                body += 1
            tab = t.search("\t", f"{body}.0", f"{body}.end")
            start = t.index(f"{tab}+1c") if tab else f"{body}.0"
            t.configure(state="normal")
            try:
                t.delete(start, f"{end}.0")
                t.insert(start, render.REMOVED_TEXT + "\n", ("b1", "removed"))
            finally:
                t.configure(state="disabled")
            self.items[pos] = item._replace(lines=body - line + 1, kind="removed")
            return True
        return False

    def _unflash(self) -> None:
        try:
            self.text.tag_remove("flash", "1.0", "end")
        except tk.TclError:
            pass

    def set_pending(self, entries: Sequence[Entry]) -> None:
        """Replace the pending lines (kept after every message)."""
        t = self.text
        t.configure(state="normal")
        try:
            t.delete("msgs_end", "end-1c")
            if entries:
                flat: list = []
                for e in entries:
                    for text, tags in e.segments:
                        flat += [text, tags]
                t.mark_gravity("msgs_end", "left")
                try:
                    t.insert("end-1c", *flat)
                except tk.TclError:
                    t.insert("end-1c", *[render.display_text(x, "text") if i % 2 == 0 else x
                                         for i, x in enumerate(flat)])
                finally:
                    t.mark_gravity("msgs_end", "right")
        finally:
            t.configure(state="disabled")
        if self.follow.following:
            t.see("end")

    @property
    def entry_count(self) -> int:
        return len(self.items)

    def content(self) -> str:
        """Everything shown (messages and pending lines), as text."""
        return self.text.get("1.0", "end-1c")

    def messages_text(self) -> str:
        return self.text.get("1.0", "msgs_end")

    def pending_text(self) -> str:
        return self.text.get("msgs_end", "end-1c")

    def tagged_text(self, tag: str) -> list[str]:
        r = self.text.tag_ranges(tag)
        return [self.text.get(r[i], r[i + 1]) for i in range(0, len(r), 2)]

    # scrolling -----------------------------------------------------------------------
    def at_bottom(self) -> bool:
        """True when the last line is fully visible."""
        t = self.text
        info = t.dlineinfo("end-1c")
        if info is None:
            return False
        _x, y, _w, h, _b = info
        return y + h <= t.winfo_height() + 2

    def _scrollbar(self, *args) -> None:
        self.text.yview(*args)
        self._moved()

    def _yscroll(self, first: str, last: str) -> None:
        self.scroll.set(first, last)
        idle = float(first) <= 0.0 and float(last) >= 1.0
        if idle != self._scroll_idle:      # hide the thumb (not the bar: no re-wrap loops)
            self._scroll_idle = idle
            self.scroll.configure(style="Idle.Vertical.TScrollbar" if idle
                                  else "Slim.Vertical.TScrollbar")
        if not self.follow.following and not self._check_pending:
            self._check_pending = True
            self.after_idle(self._check_bottom)
        if float(first) <= 0.0 and self.on_top is not None and not self._top_pending:
            self._top_pending = True
            self.after_idle(self._reached_top)

    def _reached_top(self) -> None:
        self._top_pending = False
        try:
            if self.winfo_ismapped() and float(self.text.yview()[0]) <= 0.0:
                self.on_top()
        except tk.TclError:
            pass

    def _moved(self, _event=None) -> None:
        if not self._check_pending:
            self._check_pending = True
            self.after_idle(self._check_bottom)

    def _check_bottom(self) -> None:
        self._check_pending = False
        try:
            was = self.follow.following
            self.follow.view_moved(self.at_bottom())
            if was != self.follow.following or self._indicator_shown:
                self._place_indicator()
        except tk.TclError:       # destroyed meanwhile
            pass

    def jump_to_end(self) -> None:
        self.follow.jump()
        self.text.see("end")
        self._place_indicator()

    def _place_indicator(self) -> None:
        label = self.follow.indicator
        if label is None:
            if self._indicator_shown:
                self.indicator.place_forget()
                self._indicator_shown = False
            return
        self.indicator.configure(text=label)
        if not self._indicator_shown:
            self.indicator.place(relx=0.5, rely=1.0, anchor="s", y=-self.theme.px(14))
            self.indicator.lift()
            self._indicator_shown = True

    @property
    def indicator_text(self) -> Optional[str]:
        return self.indicator.cget("text") if self._indicator_shown else None

    # interaction -------------------------------------------------------------------------
    def _bind(self) -> None:
        t = self.text
        for seq in ("<MouseWheel>", "<Button-4>", "<Button-5>", "<B1-Motion>",
                    "<ButtonRelease-1>") + self.NAV_KEYS:
            t.bind(seq, self._moved, add="+")
        t.bind("<Configure>", self._moved, add="+")
        t.bind("<Button-1>", lambda e: t.focus_set(), add="+")
        t.bind("<Key>", self._key)
        t.bind("<Button-3>", self._context_menu)
        t.bind("<Button-2>", self._context_menu_mac)
        t.tag_bind("url", "<Enter>", lambda e: t.configure(cursor="hand2"))
        t.tag_bind("url", "<Leave>", lambda e: t.configure(cursor="xterm"))
        t.tag_bind("url", "<Control-Button-1>", self._open_url_event)

    def _key(self, event: tk.Event) -> Optional[str]:
        """Typing while the conversation has focus goes to the input box."""
        ctrl = event.state & 0x4
        alt = event.state & 0x8 or event.state & 0x80
        if (event.char and event.char.isprintable() and not ctrl and not alt
                and self.on_type is not None):
            self.on_type(event.char)
            return "break"
        return None

    def url_at(self, index: str) -> Optional[str]:
        t = self.text
        if "url" not in t.tag_names(index):
            return None
        rng = t.tag_prevrange("url", f"{index}+1c")
        if not rng:
            return None
        return t.get(*rng)

    def _open_url_event(self, event: tk.Event) -> str:
        url = self.url_at(self.text.index(f"@{event.x},{event.y}"))
        if url:
            self.open_url(url)
        return "break"

    @staticmethod
    def open_url(url: str) -> None:
        threading.Thread(target=webbrowser.open, args=(render.url_target(url),),
                         daemon=True).start()

    def copy(self, text: Optional[str] = None) -> None:
        if text is None:
            try:
                text = self.text.get("sel.first", "sel.last")
            except tk.TclError:
                return
        self.clipboard_clear()
        self.clipboard_append(text)

    def _context_menu_mac(self, event: tk.Event) -> None:
        if self.tk.call("tk", "windowingsystem") == "aqua":
            self._context_menu(event)

    def _context_menu(self, event: tk.Event) -> None:
        t = self.text
        index = t.index(f"@{event.x},{event.y}")
        url = self.url_at(index)
        m = self.menu
        m.delete(0, "end")
        has_sel = bool(t.tag_ranges("sel"))
        m.add_command(label="Copy", command=self.copy,
                      state="normal" if has_sel else "disabled")
        if url:
            m.add_command(label="Copy link", command=lambda: self.copy(url))
            m.add_command(label="Open link in browser", command=lambda: self.open_url(url))
        m.add_command(label="Select all", command=lambda: t.tag_add("sel", "1.0", "end-1c"))
        item = self.message_at(index)
        if item is not None and self.on_remove is not None and self.can_remove(item):
            m.add_separator()
            m.add_command(label="Remove message\u2026",
                          command=lambda mid=item.id: self.on_remove(mid))
        m.add_separator()
        m.add_command(label="Jump to latest", command=self.jump_to_end)
        try:
            m.tk_popup(event.x_root, event.y_root)
        finally:
            m.grab_release()


# --- typing -------------------------------------------------------------------------------
class MessageInput(ttk.Frame):
    """A growing multi-line input with a placeholder, history and a Send button.

    ``on_submit(text)`` returns True when the text was taken (the box is then
    cleared and the line remembered for Up), False to leave it for editing."""

    MAX_LINES = 6

    def __init__(self, master: tk.Misc, theme: Theme, on_submit: Callable[[str], bool],
                 placeholder: str = "Message everyone"):
        super().__init__(master, style="Composer.TFrame")
        self.theme = theme
        self.on_submit = on_submit
        self.history = render.InputHistory()
        self.box = tk.Frame(self, highlightthickness=1, borderwidth=0)
        self.text = tk.Text(self.box, height=1, wrap="word", undo=True, maxundo=100,
                            highlightthickness=0, borderwidth=0, relief="flat", width=20)
        self.text.grid(row=0, column=0, sticky="nsew")
        self.placeholder = ttk.Label(self.box, text=placeholder, style="Placeholder.TLabel",
                                     cursor="xterm")
        self.send_button = ttk.Button(self.box, text="Send", style="Accent.TButton", width=-6,
                                      command=self.submit, takefocus=0, cursor="hand2")
        self.send_button.grid(row=0, column=1, sticky="se", padx=theme.px(5), pady=theme.px(5))
        self.box.columnconfigure(0, weight=1)
        self.box.rowconfigure(0, weight=1)
        self.box.grid(row=0, column=0, sticky="ew")
        self.columnconfigure(0, weight=1)
        self._height = 1
        self._enabled = True
        t = self.text
        t.bind("<Return>", self._return)
        t.bind("<KP_Enter>", self._return)
        t.bind("<Shift-Return>", self._newline)
        t.bind("<Shift-KP_Enter>", self._newline)
        t.bind("<Up>", self._up)
        t.bind("<Down>", self._down)
        t.bind("<<Modified>>", self._modified)
        t.bind("<FocusIn>", lambda e: self._focus_ring(True), add="+")
        t.bind("<FocusOut>", lambda e: self._focus_ring(False), add="+")
        t.bind("<Configure>", lambda e: self._resize(), add="+")
        self.placeholder.bind("<Button-1>", lambda e: t.focus_set())
        self.apply_theme(theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        c, px = theme.palette, theme.px
        self.text.configure(background=c.field, foreground=c.text, insertbackground=c.text,
                            selectbackground=c.selection, selectforeground=c.selection_text,
                            inactiveselectbackground=c.selection, font=theme.fonts["body"],
                            padx=px(12), pady=px(9), insertwidth=max(1, px(1.5)),
                            spacing1=px(1), spacing3=px(1))
        self.box.configure(background=c.field)
        self.send_button.configure(padding=(px(16), px(4)))
        self._focus_ring(self.focus_get() is self.text)
        self._placeholder()

    def _focus_ring(self, focused: bool) -> None:
        c = self.theme.palette
        colour = c.accent if focused else c.border
        self.box.configure(highlightbackground=colour, highlightcolor=colour)

    # content -----------------------------------------------------------------------
    def get(self) -> str:
        return self.text.get("1.0", "end-1c")

    def set(self, value: str) -> None:
        self.text.delete("1.0", "end")
        self.text.insert("1.0", value)
        self.text.mark_set("insert", "end-1c")
        self.text.see("insert")
        self._changed()

    def insert(self, value: str) -> None:
        self.text.insert("insert", value)
        self.text.see("insert")
        self._changed()

    def focus(self) -> None:
        self.text.focus_set()

    def set_placeholder(self, text: str) -> None:
        if self.placeholder.cget("text") != text:
            self.placeholder.configure(text=text)

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        self.text.configure(state="normal" if enabled else "disabled")
        self.send_button.state(["!disabled"] if enabled else ["disabled"])

    def submit(self) -> None:
        if not self._enabled:
            return
        raw = self.get()
        if not raw.strip():
            return
        if self.on_submit(raw):
            self.history.add(raw.rstrip("\n"))
            self.text.delete("1.0", "end")
            self.text.edit_reset()
            self._changed()
        self.text.focus_set()

    # keys ----------------------------------------------------------------------------
    def _return(self, _event=None) -> str:
        self.submit()
        return "break"

    def _newline(self, _event=None) -> str:
        self.text.insert("insert", "\n")
        self.text.see("insert")
        self._changed()
        return "break"

    def _on_first_line(self) -> bool:
        return self.text.count("1.0", "insert", "displaylines") in (None, 0, (0,))

    def _on_last_line(self) -> bool:
        n = self.text.count("insert", "end-1c", "displaylines")
        return n in (None, 0, (0,))

    def _up(self, _event=None) -> Optional[str]:
        if not self._on_first_line():
            return None
        line = self.history.up(self.get())
        if line is not None:
            self.set(line)
        return "break"

    def _down(self, _event=None) -> Optional[str]:
        if not self.history.browsing or not self._on_last_line():
            return None
        line = self.history.down()
        if line is not None:
            self.set(line)
        return "break"

    def _modified(self, _event=None) -> None:
        if self.text.edit_modified():
            self.text.edit_modified(False)
            self._changed()

    def _changed(self) -> None:
        self._placeholder()
        self.after_idle(self._resize)

    def _placeholder(self) -> None:
        if self.get():
            self.placeholder.place_forget()
        else:
            px = self.theme.px
            self.placeholder.configure(font=self.theme.fonts["body"])
            self.placeholder.place(x=px(13), rely=0.5, anchor="w")

    def _resize(self) -> None:
        try:
            n = self.text.count("1.0", "end-1c", "displaylines")
        except tk.TclError:
            return
        if isinstance(n, tuple):
            n = n[0]
        lines = max(1, min(self.MAX_LINES, (n or 0) + 1))
        if self.get().endswith("\n") and n is not None:
            lines = max(1, min(self.MAX_LINES, n + 1))
        if lines != self._height:
            self._height = lines
            self.text.configure(height=lines)
        self.text.see("insert")


# --- status ------------------------------------------------------------------------------
class Padlock(tk.Canvas):
    """A small closed padlock, drawn (the emoji is outside the BMP: Tk 8.6 cannot
    always draw it, see DESIGN.md)."""

    def __init__(self, master: tk.Misc, theme: Theme):
        self.px = theme.px
        super().__init__(master, width=theme.px(12), height=theme.px(14), highlightthickness=0,
                         borderwidth=0)
        self.apply_theme(theme)

    def apply_theme(self, theme: Theme) -> None:
        px = theme.px
        c = theme.palette.ok
        self.delete("all")
        self.configure(background=theme.palette.window)
        w = max(2, px(2))
        self.create_arc(px(2.5), px(1), px(9.5), px(9), start=0, extent=180, style="arc",
                        outline=c, width=w)
        self.create_line(px(2.5), px(5), px(2.5), px(7), fill=c, width=w)
        self.create_line(px(9.5), px(5), px(9.5), px(7), fill=c, width=w)
        self.create_rectangle(px(1), px(6.5), px(11), px(13.5), fill=c, outline=c)


class StatusBar(ttk.Frame):
    """A coloured dot and a sentence on the left (and a padlock with the server's
    certificate fingerprint over TLS); the theme switch on the right."""

    def __init__(self, master: tk.Misc, theme: Theme,
                 on_theme: Optional[Callable[[], None]] = None):
        super().__init__(master, style="Status.TFrame", padding=(theme.px(12), theme.px(4)))
        self.dot = ttk.Label(self, text="\u25cf", style="Dotidle.TLabel")
        self.label = ttk.Label(self, text="Not connected", style="Status.TLabel")
        self.right = ttk.Label(self, text="", style="Status.TLabel")
        self.theme_button = ttk.Button(self, style="Link.TButton", takefocus=0, cursor="hand2",
                                       command=on_theme or (lambda: None))
        self.lock = Padlock(self, theme)
        self.lock_label = ttk.Label(self, text="", style="Status.TLabel")
        self.dot.pack(side="left")
        self.label.pack(side="left", padx=(theme.px(4), 0))
        self.theme_button.pack(side="right")
        self.right.pack(side="right", padx=(0, theme.px(8)))
        self.level = "idle"
        self.theme = theme
        self.apply_theme(theme)

    def set_lock(self, text: Optional[str]) -> None:
        """Show the padlock and ``text`` (TLS version, fingerprint); None hides them."""
        if text is None:
            if self.lock.winfo_manager():
                self.lock.pack_forget()
                self.lock_label.pack_forget()
            return
        if self.lock_label.cget("text") != text:
            self.lock_label.configure(text=text)
        if not self.lock.winfo_manager():
            self.lock.pack(side="left", padx=(self.theme.px(14), self.theme.px(4)))
            self.lock_label.pack(side="left")

    @property
    def locked(self) -> bool:
        return bool(self.lock.winfo_manager())

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.lock.apply_theme(theme)
        other = "Light" if theme.palette.name == "dark" else "Dark"
        icon = "\u2600" if other == "Light" else "\u263e"
        self.theme_button.configure(text=f"{icon}  {other} theme")

    def set(self, text: str, level: str) -> None:
        if self.label.cget("text") != text:
            self.label.configure(text=text)
        if level != self.level:
            self.level = level
            self.dot.configure(style=f"Dot{level}.TLabel")

    def set_right(self, text: str) -> None:
        if self.right.cget("text") != text:
            self.right.configure(text=text)

    @property
    def text(self) -> str:
        return str(self.label.cget("text"))


# --- the connect dialog ----------------------------------------------------------------------
class BrandMark(tk.Canvas):
    """The round accent logo with a "P"."""

    def __init__(self, master: tk.Misc, theme: Theme, size: int, background: str):
        super().__init__(master, width=size, height=size, highlightthickness=0, borderwidth=0,
                         background=background)
        self.size = size
        self.apply_theme(theme, background)

    def apply_theme(self, theme: Theme, background: str) -> None:
        self.delete("all")
        self.configure(background=background)
        self._img = circle_image(self, self.size, theme.palette.accent, background)
        self.create_image(0, 0, image=self._img, anchor="nw")
        self.create_text(self.size / 2, self.size / 2, text="P", fill=theme.palette.on_accent,
                         font=theme.fonts["heading"] if self.size < 40 else theme.fonts["title"])


class ConnectCard(ttk.Frame):
    """Username, server and port, shown over the window until the server welcomes us.

    Stays open (with the reason) when the name is taken or invalid or the
    server cannot be reached, so the user can change something and try again."""

    def __init__(self, master: tk.Misc, theme: Theme,
                 on_connect: Callable[[str, str, str], None], on_quit: Callable[[], None],
                 name: str = "", host: str = "127.0.0.1", port: str = "8888", tls: bool = False):
        super().__init__(master, style="Backdrop.TFrame")
        self.theme = theme
        self.level = "note"
        self.on_connect = on_connect
        self.on_quit = on_quit
        px = theme.px
        card = self.card = ttk.Frame(self, style="Card.TFrame", padding=(px(32), px(28)))
        card.place(relx=0.5, rely=0.46, anchor="center")
        head = ttk.Frame(card, style="CardInner.TFrame")
        head.grid(row=0, column=0, columnspan=2, sticky="w", pady=(0, px(18)))
        self.logo = BrandMark(head, theme, px(44), theme.palette.sidebar)
        self.logo.grid(row=0, column=0, rowspan=2, padx=(0, px(14)))
        ttk.Label(head, text="Join Parley", style="Title.TLabel").grid(row=0, column=1, sticky="w")
        ttk.Label(head, text="Pick a name and the server to chat on.",
                  style="CardNote.TLabel").grid(row=1, column=1, sticky="w")

        self.name_var = tk.StringVar(self, name)
        self.host_var = tk.StringVar(self, host)
        self.port_var = tk.StringVar(self, port)
        ttk.Label(card, text="USERNAME", style="Field.TLabel").grid(
            row=1, column=0, columnspan=2, sticky="w")
        self.name_entry = ttk.Entry(card, textvariable=self.name_var, width=34)
        self.name_entry.grid(row=2, column=0, columnspan=2, sticky="ew", pady=(px(4), px(12)))
        # accounts: a password logs in (empty: a guest); the box makes the account
        pw_head = ttk.Frame(card, style="CardInner.TFrame")
        pw_head.grid(row=3, column=0, columnspan=2, sticky="ew")
        ttk.Label(pw_head, text="PASSWORD", style="Field.TLabel").pack(side="left")
        ttk.Label(pw_head, text="optional — empty joins as a guest",
                  style="CardNote.TLabel").pack(side="right")
        self.password_var = tk.StringVar(self, "")
        self.password_entry = ttk.Entry(card, textvariable=self.password_var, width=34,
                                        show="•")
        self.password_entry.grid(row=4, column=0, columnspan=2, sticky="ew",
                                 pady=(px(4), px(4)))
        self.register_var = tk.BooleanVar(self, False)
        self.register_check = ttk.Checkbutton(card, text="Create an account with this name",
                                              variable=self.register_var,
                                              style="Card.TCheckbutton", takefocus=1,
                                              cursor="hand2")
        self.register_check.grid(row=5, column=0, columnspan=2, sticky="w", pady=(0, px(12)))
        ttk.Label(card, text="SERVER", style="Field.TLabel").grid(row=6, column=0, sticky="w")
        ttk.Label(card, text="PORT", style="Field.TLabel").grid(row=6, column=1, sticky="w",
                                                               padx=(px(10), 0))
        self.host_entry = ttk.Entry(card, textvariable=self.host_var, width=24)
        self.host_entry.grid(row=7, column=0, sticky="ew", pady=(px(4), px(8)))
        self.port_entry = ttk.Entry(card, textvariable=self.port_var, width=7)
        self.port_entry.grid(row=7, column=1, sticky="ew", padx=(px(10), 0), pady=(px(4), px(8)))
        self.tls_var = tk.BooleanVar(self, tls)
        self.tls_check = ttk.Checkbutton(card, text="Secure connection (TLS)",
                                         variable=self.tls_var, style="Card.TCheckbutton",
                                         takefocus=1, cursor="hand2")
        self.tls_check.grid(row=8, column=0, columnspan=2, sticky="w", pady=(0, px(6)))
        self.message = ttk.Label(card, text="", style="CardNote.TLabel", wraplength=px(340),
                                 justify="left")
        self.message.grid(row=9, column=0, columnspan=2, sticky="w", pady=(px(2), px(14)))
        # trust on first use: the fingerprint and two buttons, shown when asked
        self.trust_box = ttk.Frame(card, style="CardInner.TFrame")
        self.trust_fp = ttk.Label(self.trust_box, text="", style="CardNote.TLabel",
                                  wraplength=px(340), justify="left", font="TkFixedFont")
        self.trust_fp.pack(anchor="w", pady=(0, px(10)))
        trust_buttons = ttk.Frame(self.trust_box, style="CardInner.TFrame")
        trust_buttons.pack(anchor="e")
        self.distrust_button = ttk.Button(trust_buttons, text="Don\u2019t trust", cursor="hand2",
                                          command=lambda: self.answer_trust(False))
        self.distrust_button.pack(side="left")
        self.trust_button = ttk.Button(trust_buttons, text="Trust this server",
                                       style="Accent.TButton", cursor="hand2",
                                       command=lambda: self.answer_trust(True))
        self.trust_button.pack(side="left", padx=(px(10), 0))
        self.on_trust: Optional[Callable[[bool], None]] = None
        buttons = ttk.Frame(card, style="CardInner.TFrame")
        buttons.grid(row=11, column=0, columnspan=2, sticky="e")
        self.buttons = buttons
        self.quit_button = ttk.Button(buttons, text="Quit", command=self.on_quit, cursor="hand2")
        self.quit_button.pack(side="left")
        self.connect_button = ttk.Button(buttons, text="Connect", style="Accent.TButton",
                                         command=self.submit, cursor="hand2")
        self.connect_button.pack(side="left", padx=(px(10), 0))
        card.columnconfigure(0, weight=1)
        for w in (self.name_entry, self.password_entry, self.host_entry, self.port_entry):
            w.bind("<Return>", lambda e: self.submit())
            w.bind("<KP_Enter>", lambda e: self.submit())
        self.apply_theme(theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        style = ttk.Style(self)
        style.configure("CardInner.TFrame", background=theme.palette.sidebar)
        style.configure("Card.TCheckbutton", background=theme.palette.sidebar,
                        foreground=theme.palette.text)
        style.map("Card.TCheckbutton", background=[("active", theme.palette.sidebar)])
        self.logo.apply_theme(theme, theme.palette.sidebar)

    # trust on first use
    def ask_trust(self, host: str, port: int, fingerprint: str, reason: str,
                  on_answer: Callable[[bool], None]) -> None:
        """Show the certificate's fingerprint and ask whether to trust it."""
        self.show()
        self.on_trust = on_answer
        why = f" ({reason})" if reason else ""
        self.say(f"The certificate of {host}:{port} is not signed by an authority this "
                 f"computer knows{why}.  Trust it only if its fingerprint is the one the "
                 f"server printed at start:", "note")
        groups = fingerprint.split(":")
        rows = [":".join(groups[i:i + 8]) for i in range(0, len(groups), 8)]
        self.trust_fp.configure(text="SHA-256\n" + ":\n".join(rows))
        self.trust_box.grid(row=10, column=0, columnspan=2, sticky="ew",
                            pady=(0, self.theme.px(14)))
        self.buttons.grid_remove()
        self.trust_button.focus_force()

    @property
    def asking_trust(self) -> bool:
        return bool(self.trust_box.winfo_manager())

    def answer_trust(self, yes: bool) -> None:
        self.trust_box.grid_remove()
        self.buttons.grid()
        callback, self.on_trust = self.on_trust, None
        if callback is not None:
            callback(yes)

    def submit(self) -> None:
        self.on_connect(self.name_var.get().strip(), self.host_var.get().strip(),
                        self.port_var.get().strip())

    def show(self) -> None:
        self.place(x=0, y=0, relwidth=1, relheight=1)
        self.lift()

    def hide(self) -> None:
        self.place_forget()

    @property
    def visible(self) -> bool:
        return bool(self.winfo_manager())

    def say(self, text: str, level: str = "note") -> None:
        """Show a line under the fields: level note | error."""
        if level == "error" and not text.startswith("\u26a0"):
            text = "\u26a0  " + text
        self.message.configure(text=text,
                               style="CardError.TLabel" if level == "error" else "CardNote.TLabel")
        self.level = level

    def take_password(self) -> tuple[Optional[str], bool]:
        """(the password typed, or None for a guest; create the account?).  The field
        is cleared: the window keeps no password."""
        password = self.password_var.get()
        self.password_var.set("")
        if not password:
            return None, False
        return password, bool(self.register_var.get())

    def focus_password(self) -> None:
        self.password_entry.focus_force()

    def focus_name(self, select: bool = True) -> None:
        self.name_entry.focus_force()
        if select:
            self.name_entry.select_range(0, "end")
            self.name_entry.icursor("end")

    def focus_first_empty(self) -> None:
        for var, entry in ((self.name_var, self.name_entry), (self.host_var, self.host_entry),
                           (self.port_var, self.port_entry)):
            if not var.get().strip():
                entry.focus_force()
                return
        self.connect_button.focus_force()
