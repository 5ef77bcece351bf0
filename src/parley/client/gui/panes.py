"""The panes around the conversation (Tk thread only).

* ``ConversationList``: the sidebar's Rooms and Direct messages, with unread
  badges, drawn on a ``tk.Canvas`` from ``model.sidebar_rows``;
* ``MemberList``: the current room's members (or "1,204 members" and a button
  to load them), a context menu to message or mention someone;
* ``ChatHeader``: the conversation's name and topic (click to edit) and the
  search box;
* ``SearchPanel``: search results; clicking one opens its conversation;
* ``RoomDialog``: join or create a room, with the server's room list.

What each shows is decided in ``model.py`` (pure); these only draw it and
report clicks through callbacks.  Every pane has ``apply_theme``.
"""
from __future__ import annotations

import tkinter as tk
from tkinter import ttk
from typing import Callable, Optional, Sequence

from ... import protocol as p
from . import model, render
from .model import MemberPanel, RoomRow, SearchHit, SidebarRow
from .render import Formatter
from .theme import Theme
from .widgets import avatar_image, circle_image, rounded_image


def _wheel_units(event: tk.Event) -> int:
    if event.num == 4 or getattr(event, "delta", 0) > 0:
        return -2
    return 2


class _ImageCache:
    """PhotoImages by key, dropped when the theme changes."""

    def __init__(self, master: tk.Misc):
        self.master = master
        self.images: dict[tuple, tk.PhotoImage] = {}

    def get(self, key: tuple, make: Callable[[], tk.PhotoImage]) -> tk.PhotoImage:
        img = self.images.get(key)
        if img is None:
            img = self.images[key] = make()
        return img

    def clear(self) -> None:
        self.images.clear()


# --- the sidebar's conversations -----------------------------------------------------------
class _CanvasPane(ttk.Frame):
    """A frame around a canvas list with a context menu and a scrollbar that
    shows only when needed (``_scroll_row``: the grid row of the canvas)."""
    _scroll_row = 0

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._images.clear()
        c = theme.palette
        self.canvas.configure(background=c.sidebar)
        self.menu.configure(background=c.field, foreground=c.text, activebackground=c.accent,
                            activeforeground=c.on_accent, borderwidth=1, relief="solid",
                            font=theme.fonts["body"], activeborderwidth=0)
        self._redraw()

    def _redraw(self) -> None:
        raise NotImplementedError

    def _yscroll(self, first: str, last: str) -> None:
        self.scroll.set(first, last)
        need = float(first) > 0.0 or float(last) < 1.0
        if need != self._scroll_shown:
            self._scroll_shown = need
            if need:
                self.scroll.grid(row=self._scroll_row, column=1, sticky="ns")
            else:
                self.scroll.grid_remove()

    def _wheel(self, event: tk.Event) -> None:
        if self._scroll_shown:
            self.canvas.yview_scroll(_wheel_units(event), "units")


class ConversationList(_CanvasPane):
    """Rooms and direct messages, one row each, with a badge for what is unread.

    ``on_select(key)`` when a row is clicked, ``on_add()`` for the "+" of the
    Rooms header; a row's context menu offers ``on_read(key)`` (mark as read)
    and, for rooms, ``on_leave(key)``."""

    def __init__(self, master: tk.Misc, theme: Theme, on_select: Callable[[str], None],
                 on_add: Callable[[], None], emoji: str = "native",
                 on_read: Optional[Callable[[str], None]] = None,
                 on_leave: Optional[Callable[[str], None]] = None):
        super().__init__(master, style="Sidebar.TFrame")
        self.theme = theme
        self.emoji = emoji
        self.on_select = on_select
        self.on_add = on_add
        self.on_read = on_read
        self.on_leave = on_leave
        self.menu = tk.Menu(self, tearoff=0)
        self.rows: list[SidebarRow] = []
        self._spans: list[tuple[int, int]] = []        # y0, y1 of each row
        self._hover: Optional[int] = None
        self._add_hover = False
        self._images = _ImageCache(self)
        self.canvas = tk.Canvas(self, highlightthickness=0, borderwidth=0, width=1, height=1,
                                cursor="hand2")
        self.scroll = ttk.Scrollbar(self, orient="vertical", command=self.canvas.yview,
                                    style="SlimSidebar.Vertical.TScrollbar")
        self.canvas.configure(yscrollcommand=self._yscroll)
        self.canvas.grid(row=0, column=0, sticky="nsew")
        self.columnconfigure(0, weight=1)
        self.rowconfigure(0, weight=1)
        self._scroll_shown = False
        cv = self.canvas
        for seq in ("<MouseWheel>", "<Button-4>", "<Button-5>"):
            cv.bind(seq, self._wheel)
        cv.bind("<Button-1>", self._click)
        cv.bind("<Button-3>", self._context)
        cv.bind("<Motion>", self._motion)
        cv.bind("<Leave>", lambda e: self._set_hover(None, False))
        cv.bind("<Configure>", lambda e: self._redraw())
        self.apply_theme(theme)

    def set_rows(self, rows: list[SidebarRow]) -> None:
        if rows != self.rows:
            self.rows = rows
            self._redraw()

    # geometry ---------------------------------------------------------------------------
    def _heights(self) -> list[int]:
        px = self.theme.px
        out = []
        for i, r in enumerate(self.rows):
            if r.kind == "header":
                out.append(px(30) if i == 0 else px(44))
            elif r.kind == "hint":
                out.append(px(44))
            else:
                out.append(px(30))
        return out

    def row_index(self, key: str) -> int:
        for i, r in enumerate(self.rows):
            if r.kind in ("room", "dm") and model.same_key(r.key, key):
                return i
        raise KeyError(key)

    def row_center(self, key: str) -> tuple[int, int]:
        """Where a row is on the canvas (window coordinates), for clicks."""
        i = self.row_index(key)
        y0, y1 = self._spans[i]
        self.canvas.yview_moveto(0)
        top = int(self.canvas.canvasy(0))
        return self.theme.px(60), (y0 + y1) // 2 - top

    def add_button_center(self) -> tuple[int, int]:
        y0, y1 = self._spans[0]
        return self.canvas.winfo_width() - self.theme.px(22), (y0 + y1) // 2

    def badge_of(self, key: str) -> str:
        return self.rows[self.row_index(key)].badge

    def level_of(self, key: str) -> str:
        return self.rows[self.row_index(key)].level

    def _index_at(self, y: int) -> Optional[int]:
        cy = self.canvas.canvasy(y)
        for i, (y0, y1) in enumerate(self._spans):
            if y0 <= cy < y1:
                return i
        return None

    def _on_add(self, x: int, i: Optional[int]) -> bool:
        return (i is not None and self.rows[i].kind == "header" and self.rows[i].key == "rooms"
                and x >= self.canvas.winfo_width() - self.theme.px(44))

    # drawing ---------------------------------------------------------------------------
    def _pill(self, width: int, height: int, colour: str) -> tk.PhotoImage:
        bg = self.theme.palette.sidebar
        return self._images.get(("pill", width, height, colour, bg),
                                lambda: rounded_image(self, width, height, height / 2, colour, bg))

    def _row_bg(self, width: int, height: int, colour: str) -> tk.PhotoImage:
        bg = self.theme.palette.sidebar
        r = self.theme.px(6)
        return self._images.get(("row", width, height, colour, bg),
                                lambda: rounded_image(self, width, height, r, colour, bg))

    def _dot(self, size: int, colour: str) -> tk.PhotoImage:
        bg = self.theme.palette.sidebar
        return self._images.get(("dot", size, colour, bg),
                                lambda: circle_image(self, size, colour, bg))

    def _redraw(self) -> None:
        cv = self.canvas
        cv.delete("all")
        c, px, f = self.theme.palette, self.theme.px, self.theme.fonts
        width = max(cv.winfo_width(), px(120))
        inset = px(8)
        y = px(4)
        self._spans = []
        for i, (row, h) in enumerate(zip(self.rows, self._heights())):
            y0, y1 = y, y + h
            self._spans.append((y0, y1))
            y = y1
            mid = y1 - px(15)
            if row.kind == "header":
                cv.create_text(px(18), mid, text=row.label, anchor="w", fill=c.text_faint,
                               font=f["caps"])
                if row.key == "rooms":
                    colour = c.text if self._add_hover else c.text_dim
                    if self._add_hover:
                        cv.create_image(width - px(22), mid, anchor="center",
                                        image=self._row_bg(px(24), px(24), c.row_hover))
                    cv.create_text(width - px(22), mid, text="+", anchor="center", fill=colour,
                                   font=f["heading"], tags=("add",))
                continue
            if row.kind == "hint":
                cv.create_text(px(18), (y0 + y1) // 2, text=row.label, anchor="w",
                               fill=c.text_faint, font=f["small"], width=width - px(30))
                continue
            hh = h - px(2)
            if row.selected or i == self._hover:
                colour = c.row_selected if row.selected else c.row_hover
                cv.create_image(inset, (y0 + y1) // 2, anchor="w",
                                image=self._row_bg(width - 2 * inset, hh, colour))
            strong = row.selected or bool(row.level)
            fg = c.text if strong else c.text_dim
            x = px(20)
            cy = (y0 + y1) // 2
            if row.kind == "room":
                cv.create_text(x, cy, text="#", anchor="w", fill=c.text_faint, font=f["body"])
                x += px(14)
            else:
                dot = px(8)
                colour = c.ok if row.online else c.text_faint
                cv.create_image(x + px(1), cy, anchor="w", image=self._dot(dot, colour))
                if not row.online:
                    cv.create_image(x + px(1) + px(2), cy, anchor="w",
                                    image=self._dot(dot - px(4), c.row_selected if row.selected
                                                    else c.row_hover if i == self._hover
                                                    else c.sidebar))
                x += px(16)
            right = width - inset - px(8)
            if row.badge:
                font = f["smallbold"]
                bw = max(px(20), font.measure(row.badge) + px(12))
                bh = px(18)
                colour = c.accent if row.level == "mention" else c.badge
                tcolour = c.on_accent if row.level == "mention" else c.badge_text
                cv.create_image(right, cy, anchor="e", image=self._pill(bw, bh, colour),
                                tags=("badge", f"badge:{row.key}"))
                cv.create_text(right - bw / 2, cy, text=row.badge, anchor="center",
                               fill=tcolour, font=font)
                right -= bw + px(6)
            label = render.display_text(row.label, self.emoji)
            cv.create_text(x, cy, text=label, anchor="w", fill=fg,
                           font=f["bold"] if strong else f["body"], width=max(1, right - x))
        cv.configure(scrollregion=(0, 0, 1, y + px(8)))

    # interaction -----------------------------------------------------------------------
    def _click(self, event: tk.Event) -> None:
        i = self._index_at(event.y)
        if self._on_add(event.x, i):
            self.on_add()
            return
        if i is not None and self.rows[i].kind in ("room", "dm"):
            self.on_select(self.rows[i].key)

    def _context(self, event: tk.Event) -> None:
        i = self._index_at(event.y)
        if i is None or self.rows[i].kind not in ("room", "dm"):
            return
        self.fill_menu(self.rows[i].key)
        try:
            self.menu.tk_popup(event.x_root, event.y_root)
        finally:
            self.menu.grab_release()

    def fill_menu(self, key: str) -> None:
        row = self.rows[self.row_index(key)]
        m = self.menu
        m.delete(0, "end")
        m.add_command(label="Open", command=lambda: self.on_select(row.key))
        m.add_command(label="Mark as read", state="normal" if row.badge else "disabled",
                      command=lambda: self.on_read and self.on_read(row.key))
        if row.kind == "room":
            m.add_separator()
            m.add_command(label=f"Leave {row.key}",
                          command=lambda: self.on_leave and self.on_leave(row.key))

    def _motion(self, event: tk.Event) -> None:
        i = self._index_at(event.y)
        add = self._on_add(event.x, i)
        if i is not None and self.rows[i].kind not in ("room", "dm"):
            i = None
        self._set_hover(i, add)

    def _set_hover(self, i: Optional[int], add: bool) -> None:
        if i != self._hover or add != self._add_hover:
            self._hover, self._add_hover = i, add
            self._redraw()


# --- members ------------------------------------------------------------------------
class MemberList(_CanvasPane):
    """The members of the current conversation: avatar, name, "you" on mine.

    Only the rows in view are drawn, so a room of thousands scrolls freely.
    ``on_message(name)`` on a double-click or the menu's "Message";
    ``on_mention(name)`` for "Mention"; ``on_load()`` for a big room's button."""
    _scroll_row = 2

    def __init__(self, master: tk.Misc, theme: Theme,
                 on_message: Optional[Callable[[str], None]] = None,
                 on_mention: Optional[Callable[[str], None]] = None,
                 on_load: Optional[Callable[[], None]] = None, emoji: str = "native",
                 on_moderate: Optional[Callable[..., None]] = None):
        super().__init__(master, style="Panel.TFrame")
        self.theme = theme
        self.emoji = emoji
        self.on_message = on_message
        # moderation: ``on_moderate(action, name, duration=None)``; offered when
        # ``can_moderate()`` (a moderator of the room, or a server admin);
        # making moderators when ``can_moderate(owner=True)`` (its owner, an admin)
        self.on_moderate = on_moderate
        self.can_moderate: Callable[..., bool] = lambda owner=False: False
        self.selected: Optional[int] = None      # the row the keyboard is on
        self.on_mention = on_mention
        self.on_load = on_load
        self.names: list[str] = []
        self.me = ""
        self.online = True            # False while disconnected: presence dots go grey
        self.panel = MemberPanel("MEMBERS", [])
        self._images = _ImageCache(self)
        self._drawn: tuple[int, int] = (0, -1)
        px = theme.px
        self.title = ttk.Label(self, text="MEMBERS", style="Caps.TLabel",
                               padding=(px(16), px(14), px(16), px(6)))
        self.title.grid(row=0, column=0, columnspan=2, sticky="ew")
        self.lazy = ttk.Frame(self, style="Panel.TFrame", padding=(px(16), px(4)))
        self.note = ttk.Label(self.lazy, text="", style="PanelNote.TLabel")
        self.note.pack(anchor="w")
        self.load_button = ttk.Button(self.lazy, text="Show members", style="Small.TButton",
                                      command=self._load, cursor="hand2", takefocus=0)
        self.load_button.pack(anchor="w", pady=(px(8), 0))
        self.canvas = tk.Canvas(self, highlightthickness=0, borderwidth=0, width=1, height=1,
                                takefocus=1)
        self.scroll = ttk.Scrollbar(self, orient="vertical", command=self._scrollbar,
                                    style="SlimSidebar.Vertical.TScrollbar")
        self.canvas.configure(yscrollcommand=self._yscroll)
        self.canvas.grid(row=2, column=0, sticky="nsew")
        self.columnconfigure(0, weight=1)
        self.rowconfigure(2, weight=1)
        self._scroll_shown = False
        self.menu = tk.Menu(self, tearoff=0)
        cv = self.canvas
        for seq in ("<MouseWheel>", "<Button-4>", "<Button-5>"):
            cv.bind(seq, self._wheel)
        cv.bind("<Double-Button-1>", self._double)
        cv.bind("<Button-3>", self._context)
        cv.bind("<Button-1>", self._select_click)
        cv.bind("<Up>", lambda e: self._move(-1))
        cv.bind("<Down>", lambda e: self._move(1))
        # the keyboard's Menu key (X11: Menu, Windows: App) and Shift+F10 open the menu
        for seq in ("<KeyPress-Menu>", "<KeyPress-App>", "<Shift-F10>"):
            try:
                cv.bind(seq, self._key_menu)
            except tk.TclError:          # a keysym this Tk does not know
                pass
        cv.bind("<Configure>", lambda e: self._redraw())
        self.apply_theme(theme)

    def _select_click(self, event: tk.Event) -> None:
        self.canvas.focus_set()
        name = self.name_at(event.y)
        self.selected = self.names.index(name) if name is not None else None
        self._redraw()

    def _move(self, step: int) -> str:
        if self.names:
            i = 0 if self.selected is None else self.selected + step
            self.selected = max(0, min(len(self.names) - 1, i))
            self.row_center(self.names[self.selected])
        return "break"

    def _key_menu(self, event: tk.Event = None) -> str:
        """The context menu of the selected row (the first one if none), under it."""
        if not self.names:
            return "break"
        if self.selected is None or self.selected >= len(self.names):
            self.selected = 0
        name = self.names[self.selected]
        x, y = self.row_center(name)
        self.fill_menu(name)
        try:
            self.menu.tk_popup(self.canvas.winfo_rootx() + x, self.canvas.winfo_rooty() + y)
        finally:
            self.menu.grab_release()
        return "break"

    def set_panel(self, panel: MemberPanel, me: str = "") -> None:
        if panel == self.panel and me == self.me:
            return
        self.panel, self.me = panel, me
        self.title.configure(text=panel.title)
        if panel.lazy and not panel.names:
            self.note.configure(text=panel.note)
            self.lazy.grid(row=1, column=0, columnspan=2, sticky="ew")
        else:
            self.lazy.grid_remove()
        if panel.names != self.names:
            self.names = list(panel.names)
            self.selected = None
            self.canvas.yview_moveto(0)
        self._redraw()

    def set_online(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self._redraw()

    @property
    def lazy_shown(self) -> bool:
        return bool(self.lazy.winfo_manager())

    @property
    def row_height(self) -> int:
        return self.theme.px(36)

    def row_center(self, name: str) -> tuple[int, int]:
        i = [n.casefold() for n in self.names].index(name.casefold())
        self.canvas.yview_moveto(i * self.row_height / max(1, self._height()))
        self._redraw()
        top = int(self.canvas.canvasy(0))
        return self.theme.px(60), i * self.row_height + self.row_height // 2 - top

    def _height(self) -> int:
        return max(1, len(self.names) * self.row_height + self.theme.px(8))

    def _avatar(self, index: int) -> tk.PhotoImage:
        c = self.theme.palette
        return self._images.get(
            (index, self.online),
            lambda: avatar_image(self, self.theme.px(28), self.theme.name_colour(index),
                                 c.sidebar, c.ok if self.online else c.text_faint))

    def _visible(self) -> tuple[int, int]:
        row = self.row_height
        top = self.canvas.canvasy(0)
        height = max(self.canvas.winfo_height(), row)
        first = max(0, int(top // row) - 5)
        last = min(len(self.names) - 1, int((top + height) // row) + 5)
        return first, last

    def _redraw(self) -> None:
        cv = self.canvas
        cv.delete("all")
        th, c, px = self.theme, self.theme.palette, self.theme.px
        row = self.row_height
        x0 = px(14)
        d = px(28)
        cv.configure(scrollregion=(0, 0, 1, self._height()))
        first, last = self._drawn = self._visible()
        emoji = self.emoji
        for i in range(first, last + 1):
            name = self.names[i]
            y = i * row + row // 2
            idx = render.name_colour_index(name)
            if i == self.selected:           # the keyboard's row
                cv.create_rectangle(px(4), i * row + 1, cv.winfo_width() - px(4),
                                    (i + 1) * row - 1, fill=c.row_selected, outline="")
            cv.create_image(x0, y, image=self._avatar(idx), anchor="w")
            cv.create_text(x0 + d / 2, y, text=render.initial(name), fill=th.avatar_text(idx),
                           font=th.fonts["avatar"], anchor="center")
            mine = bool(self.me) and name.casefold() == self.me.casefold()
            label = cv.create_text(x0 + d + px(10), y, text=render.display_text(name, emoji),
                                   anchor="w", fill=c.text,
                                   font=th.fonts["bold" if mine else "body"], tags=("name",))
            marks = (["you"] if mine else []) + (
                ["guest"] if name.casefold() in self.panel.guests else [])
            if marks:
                bbox = cv.bbox(label)
                cv.create_text((bbox[2] if bbox else x0 + d + px(60)) + px(6), y,
                               text=" \u00b7 ".join(marks), anchor="w", fill=c.text_faint,
                               font=th.fonts["small"], tags=("mark",))

    def _scrollbar(self, *args) -> None:
        self.canvas.yview(*args)

    def _yscroll(self, first: str, last: str) -> None:
        super()._yscroll(first, last)
        lo, hi = self._visible()        # only the rows in view are drawn: draw the new ones
        if (lo, hi) != self._drawn and (lo < self._drawn[0] or hi > self._drawn[1]):
            self.after_idle(self._redraw)

    def name_at(self, y: int) -> Optional[str]:
        i = int(self.canvas.canvasy(y) // self.row_height)
        return self.names[i] if 0 <= i < len(self.names) else None

    def _double(self, event: tk.Event) -> None:
        name = self.name_at(event.y)
        if name is not None and self.on_message is not None and not self._is_me(name):
            self.on_message(name)

    def _is_me(self, name: str) -> bool:
        return bool(self.me) and name.casefold() == self.me.casefold()

    def _context(self, event: tk.Event) -> None:
        name = self.name_at(event.y)
        if name is None:
            return
        self.fill_menu(name)
        try:
            self.menu.tk_popup(event.x_root, event.y_root)
        finally:
            self.menu.grab_release()

    def fill_menu(self, name: str) -> None:
        m = self.menu
        m.delete(0, "end")
        mine = self._is_me(name)
        m.add_command(label="Message", state="disabled" if mine else "normal",
                      command=lambda: self.on_message and self.on_message(name))
        m.add_command(label="Mention", state="disabled" if mine else "normal",
                      command=lambda: self.on_mention and self.on_mention(name))
        if mine or self.on_moderate is None or not self.can_moderate():
            return
        act = self.on_moderate
        m.add_separator()
        m.add_command(label="Kick\u2026", command=lambda: act("kick", name))
        mute = tk.Menu(m, tearoff=0)
        c = self.theme.palette
        mute.configure(background=c.field, foreground=c.text, activebackground=c.accent,
                       activeforeground=c.on_accent, borderwidth=1, relief="solid",
                       font=self.theme.fonts["body"], activeborderwidth=0)
        for label, seconds in MUTE_CHOICES:
            mute.add_command(label=label + "\u2026",
                             command=lambda s=seconds: act("mute", name, duration=s))
        m.add_cascade(label="Mute", menu=mute)
        m.add_command(label="Unmute", command=lambda: act("unmute", name))
        m.add_command(label="Ban\u2026", command=lambda: act("ban", name))
        m.add_command(label="Unban", command=lambda: act("unban", name))
        m.add_separator()
        if self.can_moderate(owner=True):
            m.add_command(label="Make moderator", command=lambda: act("op", name))
            m.add_command(label="Remove moderator", command=lambda: act("deop", name))
        m.add_command(label="Invite to room", command=lambda: act("invite", name))

    def _load(self) -> None:
        if self.on_load is not None:
            self.on_load()


MUTE_CHOICES = (("For 5 minutes", 300), ("For 1 hour", 3600), ("For 1 day", 86400),
                ("For 1 week", 604800), ("Until unmuted", None))


# --- asking for a reason ---------------------------------------------------------------
class ReasonCard(ttk.Frame):
    """A small card over the window for a moderation action: what it does, and an
    optional reason.  ``show(title, note, on_ok)``; ``on_ok(reason)``."""

    def __init__(self, master: tk.Misc, theme: Theme, on_cancel: Callable[[], None]):
        super().__init__(master, style="Card.TFrame", padding=(theme.px(26), theme.px(22)))
        self.theme = theme
        self.on_cancel = on_cancel
        self.on_ok: Optional[Callable[[str], None]] = None
        px = theme.px
        self.title = ttk.Label(self, text="", style="Title.TLabel")
        self.title.grid(row=0, column=0, sticky="w")
        self.note = ttk.Label(self, text="", style="CardNote.TLabel", wraplength=px(380),
                              justify="left")
        self.note.grid(row=1, column=0, sticky="w", pady=(px(2), px(14)))
        ttk.Label(self, text="REASON (OPTIONAL, SHOWN TO EVERYONE)", style="Field.TLabel").grid(
            row=2, column=0, sticky="w")
        self.var = tk.StringVar(self, "")
        self.entry = ttk.Entry(self, textvariable=self.var, width=44)
        self.entry.grid(row=3, column=0, sticky="ew", pady=(px(4), px(16)))
        buttons = ttk.Frame(self, style="CardInner.TFrame")
        buttons.grid(row=4, column=0, sticky="e")
        self.cancel_button = ttk.Button(buttons, text="Cancel", command=self.cancel,
                                        cursor="hand2")
        self.cancel_button.pack(side="left")
        self.ok_button = ttk.Button(buttons, text="OK", style="Accent.TButton",
                                    command=self.submit, cursor="hand2")
        self.ok_button.pack(side="left", padx=(px(10), 0))
        self.columnconfigure(0, weight=1)
        self.entry.bind("<Return>", lambda e: self.submit())
        self.entry.bind("<KP_Enter>", lambda e: self.submit())
        for w in (self.entry, self):
            w.bind("<Escape>", lambda e: self.cancel())

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme          # (ttk styles follow the theme by themselves)

    def show(self, title: str, note: str, ok: str, on_ok: Callable[[str], None]) -> None:
        self.title.configure(text=title)
        self.note.configure(text=note)
        self.ok_button.configure(text=ok)
        self.on_ok = on_ok
        self.var.set("")
        self.place(relx=0.5, rely=0.4, anchor="center")
        self.lift()
        self.entry.focus_force()

    def hide(self) -> None:
        self.place_forget()

    @property
    def visible(self) -> bool:
        return bool(self.winfo_manager())

    def submit(self) -> None:
        reason = " ".join(self.var.get().split())[:p.REASON_MAX]
        on_ok, self.on_ok = self.on_ok, None
        self.hide()
        if on_ok is not None:
            on_ok(reason)

    def cancel(self) -> None:
        self.on_ok = None
        self.hide()
        self.on_cancel()


# --- the conversation header ----------------------------------------------------------
class ChatHeader(ttk.Frame):
    """``# general  topic…  [Search]``: click the topic to edit it (rooms)."""

    def __init__(self, master: tk.Misc, theme: Theme, on_topic: Callable[[str], None],
                 on_search: Callable[[str], None], emoji: str = "native"):
        super().__init__(master, style="Header.TFrame")
        self.theme = theme
        self.emoji = emoji
        self.on_topic = on_topic
        self.on_search = on_search
        self.current = model.header(None)
        px = theme.px
        self.inner = ttk.Frame(self, style="Header.TFrame", padding=(px(18), px(10), px(12), px(10)))
        self.inner.pack(fill="x")
        self.glyph = ttk.Label(self.inner, text="", style="HeaderGlyph.TLabel")
        self.glyph.grid(row=0, column=0, sticky="w")
        self.title = ttk.Label(self.inner, text="Parley", style="HeaderTitle.TLabel")
        self.title.grid(row=0, column=1, sticky="w", padx=(px(2), px(14)))
        self.topic = ttk.Label(self.inner, text="", style="Topic.TLabel", width=1)
        self.topic.grid(row=0, column=2, sticky="ew")
        self.topic_var = tk.StringVar(self)
        self.topic_entry = ttk.Entry(self.inner, textvariable=self.topic_var, style="Search.TEntry",
                                     font=theme.fonts["small"])
        self.search_var = tk.StringVar(self)
        self.search_box = ttk.Frame(self.inner, style="Header.TFrame")
        self.search_box.grid(row=0, column=3, sticky="e", padx=(px(12), 0))
        self.search = ttk.Entry(self.search_box, textvariable=self.search_var, width=22,
                                style="Search.TEntry", font=theme.fonts["small"])
        self.search.pack()
        self.search_hint = ttk.Label(self.search_box, text="Search messages  (Ctrl+F)",
                                     style="Placeholder.TLabel", font=theme.fonts["small"],
                                     cursor="xterm")
        self.inner.columnconfigure(2, weight=1)
        self.rule = tk.Frame(self, height=1, background=theme.palette.border)
        self.rule.pack(fill="x", side="bottom")
        self.editing = False
        self.topic.bind("<Button-1>", lambda e: self.begin_edit())
        self.topic_entry.bind("<Return>", lambda e: self._commit())
        self.topic_entry.bind("<KP_Enter>", lambda e: self._commit())
        self.topic_entry.bind("<Escape>", lambda e: self.end_edit())
        self.topic_entry.bind("<FocusOut>", lambda e: self.end_edit())
        self.search.bind("<Return>", lambda e: self._search())
        self.search.bind("<KP_Enter>", lambda e: self._search())
        self.search.bind("<Escape>", lambda e: self.search_var.set(""))
        self.search_hint.bind("<Button-1>", lambda e: self.focus_search())
        self.search_var.trace_add("write", lambda *a: self._hint())
        self.search.bind("<FocusIn>", lambda e: self._hint(), add="+")
        self.search.bind("<FocusOut>", lambda e: self._hint(), add="+")
        self.apply_theme(theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.rule.configure(background=theme.palette.border)
        self.topic_entry.configure(font=theme.fonts["small"])
        self.search.configure(font=theme.fonts["small"])
        self.search_hint.configure(font=theme.fonts["small"], style="Placeholder.TLabel")
        self._style_topic()
        self._hint()

    def set(self, h: model.Header) -> None:
        if h == self.current:
            return
        if self.editing:
            self.end_edit()
        self.current = h
        self.glyph.configure(text=h.glyph)
        self.title.configure(text=render.display_text(
            h.title, self.emoji))
        self.topic.configure(text=render.display_text(
            render.shorten(h.subtitle, 200), self.emoji))
        self._style_topic()

    def _style_topic(self) -> None:
        h = self.current
        self.topic.configure(style="TopicHint.TLabel" if h.placeholder else "Topic.TLabel",
                             cursor="hand2" if h.editable else "")

    @property
    def topic_text(self) -> str:
        return str(self.topic.cget("text"))

    # topic editing ----------------------------------------------------------------------
    def begin_edit(self) -> bool:
        if not self.current.editable or self.editing:
            return False
        self.editing = True
        self.topic_var.set("" if self.current.placeholder else self.current.subtitle)
        self.topic.grid_remove()
        self.topic_entry.grid(row=0, column=2, sticky="ew")
        self.topic_entry.focus_force()
        self.topic_entry.icursor("end")
        self.topic_entry.select_range(0, "end")
        return True

    def end_edit(self) -> None:
        if not self.editing:
            return
        self.editing = False
        self.topic_entry.grid_remove()
        self.topic.grid(row=0, column=2, sticky="ew")

    def _commit(self) -> str:
        text = self.topic_var.get().strip()
        self.end_edit()
        if text != ("" if self.current.placeholder else self.current.subtitle):
            self.on_topic(text)
        return "break"

    # search -------------------------------------------------------------------------------
    def focus_search(self) -> None:
        self.search.focus_force()
        self.search.select_range(0, "end")
        self._hint()

    def _search(self) -> str:
        query = self.search_var.get().strip()
        if query:
            self.on_search(query)
        return "break"

    def _hint(self) -> None:
        try:
            focused = self.focus_get() is self.search
        except (KeyError, tk.TclError):
            focused = False
        if self.search_var.get() or focused:
            self.search_hint.place_forget()
        else:
            self.search_hint.place(x=self.theme.px(9), rely=0.5, anchor="w")


# --- search results ----------------------------------------------------------------------
class SearchPanel(ttk.Frame):
    """The results of a search, newest first; click one to open it."""

    def __init__(self, master: tk.Misc, theme: Theme, fmt: Formatter,
                 on_pick: Callable[[SearchHit], None], on_close: Callable[[], None],
                 on_more: Callable[[], None]):
        super().__init__(master, style="Panel.TFrame")
        self.theme = theme
        self.fmt = fmt
        self.on_pick = on_pick
        self.on_more = on_more
        self.hits: list[SearchHit] = []
        self.query = ""
        self.terms: list[str] = []
        self.more = False
        px = theme.px
        top = ttk.Frame(self, style="Panel.TFrame", padding=(px(16), px(10), px(8), 0))
        top.grid(row=0, column=0, columnspan=2, sticky="ew")
        ttk.Label(top, text="SEARCH", style="Caps.TLabel").pack(side="left")
        self.close_button = ttk.Button(top, text="\u2715", style="IconPanel.TButton",
                                       command=on_close, cursor="hand2", takefocus=0)
        self.close_button.pack(side="right")
        self.summary = ttk.Label(self, text="", style="PanelNote.TLabel", wraplength=px(200),
                                 padding=(px(16), px(2), px(16), px(8)), justify="left")
        self.summary.grid(row=1, column=0, columnspan=2, sticky="ew")
        self.text = tk.Text(self, wrap="word", state="disabled", cursor="hand2", undo=False,
                            highlightthickness=0, borderwidth=0, relief="flat", width=24,
                            height=10, takefocus=0)
        self.text.grid(row=2, column=0, sticky="nsew")
        self.scroll = ttk.Scrollbar(self, orient="vertical", command=self.text.yview,
                                    style="SlimSidebar.Vertical.TScrollbar")
        self._scroll_shown = False
        self.text.configure(yscrollcommand=self._yscroll)
        self.more_button = ttk.Button(self, text="Older results", style="Small.TButton",
                                      command=self._more, cursor="hand2", takefocus=0)
        self.columnconfigure(0, weight=1)
        self.rowconfigure(2, weight=1)
        self._hover: Optional[str] = None
        self.text.bind("<Motion>", self._motion)
        self.text.bind("<Leave>", lambda e: self._set_hover(None))
        self.text.bind("<Button-1>", self._click)
        for seq in ("<MouseWheel>", "<Button-4>", "<Button-5>"):
            self.text.bind(seq, lambda e: (self.text.yview_scroll(_wheel_units(e), "units"),
                                           "break")[1])
        self.apply_theme(theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        c, f, px = theme.palette, theme.fonts, theme.px
        t = self.text
        t.configure(background=c.sidebar, foreground=c.text, font=f["body"], padx=px(10),
                    pady=px(2), selectbackground=c.selection, spacing1=0, spacing3=0,
                    inactiveselectbackground=c.selection, selectforeground=c.selection_text)
        tags = {
            "hit": dict(lmargin1=px(6), lmargin2=px(6), rmargin=px(6),
                        lmargincolor=c.sidebar),
            "hkey": dict(font=f["smallbold"], foreground=c.text_dim, spacing1=px(8)),
            "name": dict(font=f["smallbold"]),
            "htime": dict(font=f["small"], foreground=c.text_faint),
            "htext": dict(font=f["body"], foreground=c.text, spacing1=px(2), spacing3=px(8)),
            "hterm": dict(background=c.hit_term, font=f["bold"], foreground=c.text),
            "hover": dict(background=c.row_hover, lmargincolor=c.row_hover),
            "empty": dict(foreground=c.text_faint, font=f["italic"], lmargin1=px(6)),
        }
        for i, colour in enumerate(c.names):
            tags[f"nc{i}"] = dict(foreground=colour)
        for name in ["hit", "hover", "hkey", "name"] + [f"nc{i}" for i in range(len(c.names))] \
                + ["htime", "htext", "hterm", "empty"]:
            t.tag_configure(name, **tags[name])
            t.tag_raise(name)

    def _yscroll(self, first: str, last: str) -> None:
        self.scroll.set(first, last)
        need = float(first) > 0.0 or float(last) < 1.0
        if need != self._scroll_shown:
            self._scroll_shown = need
            if need:
                self.scroll.grid(row=2, column=1, sticky="ns")
            else:
                self.scroll.grid_remove()

    def set_busy(self, query: str) -> None:
        self.query = query
        self.summary.configure(text=f"Searching for \u201c{query}\u201d\u2026")

    def set_results(self, query: str, hits: Sequence[SearchHit], more: bool,
                    append: bool = False) -> None:
        self.query = query
        self.terms = model.query_terms(query)
        if append:
            known = {h.id for h in self.hits}
            hits = [h for h in hits if h.id not in known]
            self.hits += list(hits)
        else:
            self.hits = list(hits)
        self.more = more
        self.summary.configure(text=model.search_summary(query, len(self.hits), more))
        t = self.text
        t.configure(state="normal")
        try:
            if not append:
                t.delete("1.0", "end")
            start = len(self.hits) - len(hits)
            flat: list = []
            for n, hit in enumerate(hits, start):
                for text, tags in self.fmt.search_hit(hit, self.terms, f"r:{n}").segments:
                    flat += [text, tags]
            if flat:
                try:
                    t.insert("end", *flat)
                except tk.TclError:
                    t.insert("end", *[render.display_text(x, "text") if i % 2 == 0 else x
                                      for i, x in enumerate(flat)])
        finally:
            t.configure(state="disabled")
        if more:
            self.more_button.grid(row=3, column=0, columnspan=2, sticky="w",
                                  padx=self.theme.px(16), pady=self.theme.px(8))
        else:
            self.more_button.grid_remove()

    def results_text(self) -> str:
        return self.text.get("1.0", "end-1c")

    def hit_index_at(self, index: str) -> Optional[int]:
        for tag in self.text.tag_names(index):
            if tag.startswith("r:"):
                return int(tag[2:])
        return None

    def hit_center(self, n: int) -> tuple[int, int]:
        """Window coordinates inside result ``n`` (for clicks)."""
        t = self.text
        first = t.tag_ranges(f"r:{n}")[0]
        t.see(first)
        t.update_idletasks()
        x, y, w, h = t.bbox(f"{first}+1c")
        return x + 1, y + h // 2

    def _click(self, event: tk.Event) -> None:
        n = self.hit_index_at(self.text.index(f"@{event.x},{event.y}"))
        if n is not None and 0 <= n < len(self.hits):
            self.on_pick(self.hits[n])

    def _motion(self, event: tk.Event) -> None:
        n = self.hit_index_at(self.text.index(f"@{event.x},{event.y}"))
        self._set_hover(None if n is None else f"r:{n}")

    def _set_hover(self, tag: Optional[str]) -> None:
        if tag == self._hover:
            return
        t = self.text
        t.tag_remove("hover", "1.0", "end")
        self._hover = tag
        if tag is not None:
            r = t.tag_ranges(tag)
            if r:
                t.tag_add("hover", r[0], r[-1])

    def _more(self) -> None:
        if self.more:
            self.on_more()


# --- joining rooms -------------------------------------------------------------------------
class RoomDialog(ttk.Frame):
    """A card over the window: type a room name (created if new) or pick one from
    the server's list.  ``on_join(room)``; ``on_cancel()``."""

    def __init__(self, master: tk.Misc, theme: Theme, on_join: Callable[[str], None],
                 on_cancel: Callable[[], None], emoji: str = "native"):
        super().__init__(master, style="Card.TFrame", padding=(theme.px(26), theme.px(22)))
        self.theme = theme
        self.emoji = emoji
        self.on_join = on_join
        self.on_cancel = on_cancel
        self.rooms: list[dict] = []
        self.rows: list[RoomRow] = []
        self.loaded = False
        px = theme.px
        ttk.Label(self, text="Join or create a room", style="Title.TLabel").grid(
            row=0, column=0, columnspan=2, sticky="w")
        ttk.Label(self, text="Pick a room below, or type a new name to create it.",
                  style="CardNote.TLabel").grid(row=1, column=0, columnspan=2, sticky="w",
                                                pady=(px(2), px(14)))
        ttk.Label(self, text="ROOM", style="Field.TLabel").grid(row=2, column=0, sticky="w")
        self.var = tk.StringVar(self, "#")
        self.entry = ttk.Entry(self, textvariable=self.var, width=36)
        self.entry.grid(row=3, column=0, columnspan=2, sticky="ew", pady=(px(4), px(4)))
        self.message = ttk.Label(self, text="", style="CardNote.TLabel", wraplength=px(360),
                                 justify="left")
        self.message.grid(row=4, column=0, columnspan=2, sticky="w", pady=(0, px(10)))
        ttk.Label(self, text="ROOMS ON THIS SERVER", style="Field.TLabel").grid(
            row=5, column=0, columnspan=2, sticky="w")
        self.list = tk.Text(self, wrap="none", state="disabled", cursor="hand2", undo=False,
                            highlightthickness=1, borderwidth=0, relief="flat", width=44,
                            height=9, takefocus=0)
        self.list.grid(row=6, column=0, columnspan=2, sticky="nsew", pady=(px(4), px(16)))
        buttons = ttk.Frame(self, style="CardInner.TFrame")
        buttons.grid(row=7, column=0, columnspan=2, sticky="e")
        self.cancel_button = ttk.Button(buttons, text="Cancel", command=self.cancel,
                                        cursor="hand2")
        self.cancel_button.pack(side="left")
        self.join_button = ttk.Button(buttons, text="Join", style="Accent.TButton",
                                      command=self.submit, cursor="hand2")
        self.join_button.pack(side="left", padx=(px(10), 0))
        self.columnconfigure(0, weight=1)
        self._hover: Optional[int] = None
        self.entry.bind("<Return>", lambda e: self.submit())
        self.entry.bind("<KP_Enter>", lambda e: self.submit())
        for w in (self.entry, self.list, self):
            w.bind("<Escape>", lambda e: self.cancel())
        self.var.trace_add("write", lambda *a: self._filter())
        self.list.bind("<Button-1>", self._click)
        self.list.bind("<Double-Button-1>", self._double)
        self.list.bind("<Motion>", self._motion)
        self.list.bind("<Leave>", lambda e: self._set_hover(None))
        self.apply_theme(theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        c, f, px = theme.palette, theme.fonts, theme.px
        self.list.configure(background=c.field, foreground=c.text, font=f["body"],
                            padx=px(4), pady=px(4), highlightbackground=c.border,
                            highlightcolor=c.border, selectbackground=c.selection,
                            inactiveselectbackground=c.selection)
        t = self.list
        t.tag_configure("room", font=f["bold"], lmargin1=px(6), spacing1=px(4))
        t.tag_configure("detail", font=f["small"], foreground=c.text_faint)
        t.tag_configure("rtopic", font=f["small"], foreground=c.text_dim, lmargin1=px(6),
                        spacing3=px(4))
        t.tag_configure("hover", background=c.row_hover)
        t.tag_configure("picked", background=c.row_selected)
        t.tag_configure("empty", font=f["italic"], foreground=c.text_faint, lmargin1=px(6))
        t.tag_raise("hover")
        t.tag_raise("picked")

    # showing -----------------------------------------------------------------------------
    def show(self) -> None:
        self.var.set("#")
        self.say("")
        self.loaded = False
        self.rooms = []
        self._filter()
        self.place(relx=0.5, rely=0.45, anchor="center")
        self.lift()
        self.entry.focus_force()
        self.entry.icursor("end")

    def hide(self) -> None:
        self.place_forget()

    @property
    def visible(self) -> bool:
        return bool(self.winfo_manager())

    def set_rooms(self, rooms: list[dict]) -> None:
        self.rooms = list(rooms)
        self.loaded = True
        self._filter()

    def say(self, text: str, level: str = "note") -> None:
        self.message.configure(text=text, style="CardError.TLabel" if level == "error"
                               else "CardNote.TLabel")

    @property
    def message_text(self) -> str:
        return str(self.message.cget("text"))

    def list_text(self) -> str:
        return self.list.get("1.0", "end-1c")

    def _filter(self) -> None:
        typed = self.var.get()
        self.rows = model.room_rows(self.rooms, typed)
        name = typed.strip()
        known = any(r.room.casefold() == ("#" + name.lstrip("#")).casefold() for r in self.rows)
        self.join_button.configure(text="Join" if known or name in ("", "#") else "Create")
        t = self.list
        t.configure(state="normal")
        try:
            t.delete("1.0", "end")
            if not self.loaded:
                t.insert("end", "Loading the rooms\u2026\n", ("empty",))
            elif not self.rows:
                t.insert("end", "No room by that name yet: Create makes it.\n"
                         if self.rooms else "No rooms yet.\n", ("empty",))
            emoji = self.emoji
            for n, row in enumerate(self.rows):
                tag = f"r:{n}"
                t.insert("end", row.room, ("room", tag), "  " + row.detail + "\n",
                         ("room", "detail", tag))
                if row.topic:
                    t.insert("end", render.display_text(render.shorten(row.topic, 60), emoji)
                             + "\n", ("rtopic", tag))
        finally:
            t.configure(state="disabled")

    def _row_at(self, event: tk.Event) -> Optional[int]:
        for tag in self.list.tag_names(self.list.index(f"@{event.x},{event.y}")):
            if tag.startswith("r:"):
                return int(tag[2:])
        return None

    def row_center(self, room: str) -> tuple[int, int]:
        n = [r.room.casefold() for r in self.rows].index(room.casefold())
        t = self.list
        first = t.tag_ranges(f"r:{n}")[0]
        t.see(first)
        t.update_idletasks()
        x, y, w, h = t.bbox(f"{first}+1c")
        return x + 1, y + h // 2

    def _click(self, event: tk.Event) -> None:
        n = self._row_at(event)
        if n is not None:
            self.var.set(self.rows[n].room)
            self.list.tag_remove("picked", "1.0", "end")
            r = self.list.tag_ranges(f"r:{n}") if n < len(self.rows) else ()
            if r:
                self.list.tag_add("picked", r[0], r[-1])
            self.entry.icursor("end")

    def _double(self, event: tk.Event) -> None:
        n = self._row_at(event)
        if n is not None:
            self.var.set(self.rows[n].room)
            self.submit()

    def _motion(self, event: tk.Event) -> None:
        self._set_hover(self._row_at(event))

    def _set_hover(self, n: Optional[int]) -> None:
        if n == self._hover:
            return
        self._hover = n
        t = self.list
        t.tag_remove("hover", "1.0", "end")
        if n is not None:
            r = t.tag_ranges(f"r:{n}")
            if r:
                t.tag_add("hover", r[0], r[-1])

    def submit(self) -> None:
        room, problem = model.room_input(self.var.get())
        if problem:
            self.say(problem, "error")
            self.entry.focus_force()
            return
        self.say(f"Joining {room}\u2026")
        self.on_join(room)

    def cancel(self) -> None:
        self.hide()
        self.on_cancel()
