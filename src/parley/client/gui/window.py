"""The Parley window: wiring between the panes and a network session.

The Tk thread never touches a socket.  ``parley.client.session.Session`` runs
the connection in its own thread and hands events over through a queue, which
``ChatApp._poll`` drains with ``after()`` every few milliseconds, a bounded
batch per tick, so a burst of messages never freezes the window.

The session owns the state (conversations with their topic, members and
unread counts; who is online; messages not yet acknowledged); the window
reads it when told it changed and keeps only what it shows: one ``ChatView``
(a Tk text) per conversation, so switching is instant.  What is shown is
decided in ``model.py`` and ``render.py`` (pure, unit-tested); typed lines go
through the one command parser of ``parley.client.core``.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import socket
import threading
import time
import tkinter as tk
import tkinter.font as tkfont
from dataclasses import dataclass
from tkinter import ttk
from typing import Any, Optional

from ... import __version__
from ... import protocol as p
from .. import core
from ..logins import LoginStore
from ..session import (AccountChanged, ConnectFailed, ConversationsChanged, LoggedOut,
                       MessageRemoved, RemovedFromRoom,
                       NameRefused, OfflineQueueFull,
                       Session, StateChanged)
from ..tls import TlsOptions, TlsRefused, TrustQuestion, short_fingerprint
from . import model
from . import settings
from .account import PasswordCard, SessionsCard
from . import theme as themes
from .model import HistoryPager, SearchHit
from .panes import (ChatHeader, ConversationList, MemberList, ReasonCard, RoomDialog,
                    SearchPanel)
from .render import Entry, Formatter, explain_name, refused_name, status_text, validate_host, \
    validate_port
from .widgets import BrandMark, ChatView, ConnectCard, MessageInput, StatusBar, circle_image

from .app import DEFAULT_HOST, DEFAULT_PORT

log = logging.getLogger("parley.gui")

PAGE = 50                 # messages per history page while scrolling up
SEEK_PAGE = p.PAGE_MAX    # per page while looking for a search result
FILL = 40                 # a conversation opened with fewer entries loads a page at once
GUI_HELP = ("Enter sends, Shift+Enter starts a new line, Up recalls what you sent. "
            "Ctrl+F searches, Alt+Up/Down changes conversation, Ctrl+N joins a room.")


def emoji_mode(root: tk.Misc, requested: Optional[str]) -> str:
    """native: hand emoji to Tk; text: readable stand-ins.

    Tk 8.6 on X11 dies with "BadLength (RenderAddGlyphs)" when fontconfig picks a
    colour bitmap emoji font; a monochrome one (Symbola) is fine.  Auto mode
    chooses text stand-ins on X11 when a colour emoji font is installed."""
    requested = requested or os.environ.get("PARLEY_EMOJI", "auto")
    if requested in ("native", "text"):
        return requested
    try:
        if root.tk.call("tk", "windowingsystem") != "x11":
            return "native"
        families = {f.casefold() for f in tkfont.families(root)}
    except tk.TclError:
        return "text"
    colour = ("color emoji", "colour emoji", "twemoji", "joypixels", "emojione", "blobmoji")
    if any(any(c in f for c in colour) for f in families):
        return "text"
    return "native"


TRUNCATED_NOTE = ("You missed more than the server sends in one catch-up: the oldest of it "
                  "is not shown here. Scroll up (or /history) to load it.")


@dataclass
class Sent:
    """A message sent from this window, until it is shown as a message or refused:
    enough to say which one the server refused, and to keep it on screen (dimmed)
    between the server's ack and its copy of the message, whichever comes first."""
    key: str
    kind: str                  # say | me
    text: str
    id: Optional[int] = None   # from the ack
    echoed: bool = False       # the server's copy is shown


def pending_key(ev: Any) -> str:
    """The conversation a pending Say/Me goes to."""
    if getattr(ev, "to", None):
        return "@" + ev.to
    return getattr(ev, "room", None) or p.GENERAL


class ChatApp:
    """The window and its conversations with one server."""

    POLL_MS = 30           # how often the session queue is drained
    TICK_EVENTS = 400      # at most this many events per tick ...
    TICK_BUDGET = 0.030    # ... and at most this long, then the window gets a turn

    def __init__(self, root: Any, args: argparse.Namespace,
                 session_options: Optional[dict] = None):
        self.root = root
        self.args = args
        self.session_options = dict(session_options or {})
        self.settings = settings.load()
        self.exit_code = 0
        self.closed = False
        self.errors: list[BaseException] = []       # exceptions in Tk callbacks
        root.report_callback_exception = self._report_exception

        if args.scale:
            root.tk.call("tk", "scaling", args.scale * 96 / 72)
        theme_name = args.theme or self.settings.get("theme") or "dark"
        self.theme = themes.build(root, theme_name, args.font_size)
        self.emoji = emoji_mode(root, args.emoji)

        self.host = args.host or self.settings.get("host") or DEFAULT_HOST
        self.port = args.port or self.settings.get("port") or DEFAULT_PORT
        name = args.name or self.settings.get("name") or ""

        # connection state
        self.session: Any = None
        self.me = ""
        self.state = "idle"
        self.detail = ""
        self.retry_at: Optional[float] = None
        self.joined = False           # this session has been welcomed at least once
        self.awaiting_name = False    # the server refused the name; waiting for another
        self.outage = False           # a "connection lost" line is shown
        self.bye_shown = False        # the server said why it is closing the connection
        self.refusal: Optional[str] = None   # why the server turned the connection away
        self.limits: dict = {}
        self.instance: Optional[str] = None         # the database the ids belong to

        # what the window shows (the session owns the rest)
        self.current: Optional[str] = None          # the conversation on screen
        self.views: dict[str, ChatView] = {}        # casefolded key -> its view
        self.pager = HistoryPager()
        self.history_labels: dict[str, str] = {}    # label -> key (older history)
        self.marker_for: dict[str, int] = {}        # key -> read_id: show the unread line
        self.seek: dict[str, int] = {}              # key -> id of a search result to reach
        self.reveal: set[str] = set()               # keys: show the next older page (/history)
        self.sent: dict[str, Sent] = {}             # label -> a message sent from here
        self.pending_keys: set[str] = set()         # views showing pending lines
        self.join_labels: dict[str, str] = {}       # label -> room (joins from this window)
        self.part_labels: dict[str, str] = {}
        self.rooms_label: Optional[str] = None      # the room dialog's list request
        self.users_labels: dict[str, Optional[str]] = {}   # /users answers to print
        self.mod_labels: dict[str, dict] = {}       # label -> a moderation request's fields
        self.search_label: Optional[str] = None
        self.search_query = ""
        self.search_append = False
        self.members_requested: set[str] = set()
        self.sidebar_dirty = self.pending_dirty = self.panes_dirty = True
        self._read_after: Optional[str] = None
        self._batch: dict[str, list[Entry]] = {}     # entries of this tick, per view
        self._batch_keys: dict[str, str] = {}
        self._batch_ids: set[int] = set()
        self._welcome_line: Optional[str] = None     # shown once the welcome's history is in

        # responsiveness figures (read by tests and --log-level debug)
        self.ticks = 0
        self.max_gap = 0.0
        self.max_tick = 0.0
        self._last_tick: Optional[float] = None
        self.events_handled = 0

        root.title("Parley")
        root.minsize(self.theme.px(820), self.theme.px(460))
        width = min(self.theme.px(1120), max(820, root.winfo_screenwidth() - 40))
        height = min(self.theme.px(700), max(460, root.winfo_screenheight() - 60))
        root.geometry(f"{width}x{height}")
        self._build(name)
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.bind_all("<Control-q>", lambda e: self.close())
        root.bind_all("<Control-l>", lambda e: self.input.focus())
        root.bind_all("<Control-f>", lambda e: self._ctrl_f())
        root.bind_all("<Control-n>", lambda e: self._ctrl_n())
        root.bind_all("<Alt-Up>", lambda e: self.cycle(-1))
        root.bind_all("<Alt-Down>", lambda e: self.cycle(1))
        root.bind("<FocusIn>", lambda e: self._schedule_read(), add="+")
        for key, pages in (("<Prior>", -1), ("<Next>", 1)):     # page the conversation from the input
            self.input.text.bind(key, lambda e, n=pages: self._page(n))
        self._poll_id = root.after(self.POLL_MS, self._poll)
        self.card.show()
        if args.name:
            root.after_idle(self.card.submit)
        else:
            root.after_idle(self.card.focus_first_empty)

    # --- layout ---------------------------------------------------------------------
    def _build(self, name: str) -> None:
        th = self.theme
        px = th.px
        root = self.root
        self._icon = None
        try:
            self._icon = circle_image(root, 64, th.palette.accent, th.palette.window)
            root.iconphoto(True, self._icon)
        except tk.TclError:
            pass

        main = self.main = ttk.Frame(root, style="App.TFrame")
        main.pack(fill="both", expand=True)
        main.columnconfigure(2, weight=1)
        main.rowconfigure(0, weight=1)

        # left: brand, server, rooms and direct messages
        side = self.sidebar = ttk.Frame(main, style="Sidebar.TFrame", width=px(230))
        side.grid(row=0, column=0, sticky="nsw")
        side.grid_propagate(False)
        side.columnconfigure(0, weight=1)
        side.rowconfigure(2, weight=1)
        brand = ttk.Frame(side, style="Sidebar.TFrame", padding=(px(16), px(16), px(16), px(8)))
        brand.grid(row=0, column=0, sticky="ew")
        self.brand_mark = BrandMark(brand, th, px(32), th.palette.sidebar)
        self.brand_mark.grid(row=0, column=0, rowspan=2, padx=(0, px(10)))
        ttk.Label(brand, text="Parley", style="Brand.TLabel").grid(row=0, column=1, sticky="w")
        self.server_label = ttk.Label(brand, text=f"{self.host}:{self.port}",
                                      style="SidebarDim.TLabel")
        self.server_label.grid(row=1, column=1, sticky="w")
        # who you are on this server (an account or a guest); a click opens the account menu
        self.account_label = ttk.Label(brand, text="", style="SidebarDim.TLabel",
                                       cursor="hand2")
        self.account_label.grid(row=2, column=0, columnspan=2, sticky="w", pady=(px(6), 0))
        self.account_label.bind("<Button-1>", lambda e: self.account_menu_popup(e))
        self.account_menu = tk.Menu(root, tearoff=0)
        self.side_rule = tk.Frame(side, height=1, background=th.palette.border)
        self.side_rule.grid(row=1, column=0, sticky="ew", padx=px(16), pady=(px(8), px(4)))
        self.convlist = ConversationList(side, th, on_select=self.switch,
                                         on_add=self.open_room_dialog, emoji=self.emoji,
                                         on_read=self.mark_all_read, on_leave=self.part_room)
        self.convlist.grid(row=2, column=0, sticky="nsew")

        self.divider = tk.Frame(main, width=1, background=th.palette.border)
        self.divider.grid(row=0, column=1, sticky="ns")

        # middle: the conversation's header, its view, the input
        chat = self.chat_frame = ttk.Frame(main, style="Chat.TFrame")
        chat.grid(row=0, column=2, sticky="nsew")
        chat.columnconfigure(0, weight=1)
        chat.rowconfigure(1, weight=1)
        self.header = ChatHeader(chat, th, on_topic=self.set_topic, on_search=self.search,
                                 emoji=self.emoji)
        self.header.grid(row=0, column=0, sticky="ew")
        self.stack = ttk.Frame(chat, style="Chat.TFrame")
        self.stack.grid(row=1, column=0, sticky="nsew")
        self.stack.columnconfigure(0, weight=1)
        self.stack.rowconfigure(0, weight=1)
        self.lobby = self._new_view(None)          # before the first welcome
        self.lobby.grid(row=0, column=0, sticky="nsew")
        self.input = MessageInput(chat, th, on_submit=self.submit,
                                  placeholder="Message #general \u00b7 /help for commands")
        self.input.grid(row=2, column=0, sticky="ew", padx=px(18), pady=(px(6), px(16)))

        # right: the members, or search results
        self.divider2 = tk.Frame(main, width=1, background=th.palette.border)
        self.divider2.grid(row=0, column=3, sticky="ns")
        right = self.right = ttk.Frame(main, style="Panel.TFrame", width=px(220))
        right.grid(row=0, column=4, sticky="nse")
        right.grid_propagate(False)
        right.columnconfigure(0, weight=1)
        right.rowconfigure(0, weight=1)
        self.members = MemberList(right, th, on_message=self.open_dm, on_mention=self._mention,
                                  on_load=self.load_members, emoji=self.emoji,
                                  on_moderate=self.moderate_user)
        self.members.can_moderate = self.may_moderate
        self.members.grid(row=0, column=0, sticky="nsew")
        self.results = SearchPanel(right, th, Formatter(emoji=self.emoji), on_pick=self.open_hit,
                                   on_close=self.close_search, on_more=self.more_results)

        self.status_rule = tk.Frame(main, height=1, background=th.palette.border)
        self.status_rule.grid(row=1, column=0, columnspan=5, sticky="ew")
        self.status = StatusBar(main, th, on_theme=self.toggle_theme)
        self.status.grid(row=2, column=0, columnspan=5, sticky="ew")
        self.status.set_right(f"Parley {__version__}")

        self.dialog = RoomDialog(root, th, on_join=self.join_room, on_cancel=self._dialog_closed,
                                 emoji=self.emoji)
        self.password_card = PasswordCard(root, th, on_submit=self._password_submitted,
                                          on_cancel=self._dialog_closed)
        self.sessions_card = SessionsCard(root, th, on_revoke=self.revoke,
                                          on_refresh=self.load_sessions,
                                          on_cancel=self._dialog_closed)
        self.reason_card = ReasonCard(root, th, on_cancel=self._dialog_closed)
        self.account_labels: dict[str, tuple] = {}    # label -> what an account request was
        tls = bool(getattr(self.args, "tls", False)) or (
            self.settings.get("tls") == "on" and not self.args.port)
        self.card = ConnectCard(root, th, on_connect=self.connect, on_quit=self.close,
                                name=name, host=self.host, port=str(self.port), tls=tls)
        self.input.set_enabled(False)

    def _new_view(self, key: Optional[str]) -> ChatView:
        view = ChatView(self.stack, self.theme, max_entries=self.args.scrollback,
                        on_type=self._type_into_input,
                        on_top=(lambda k=key: self.load_older(k)) if key else None)
        view.key = key
        view.fmt = Formatter(me=self.me, emoji=self.emoji)
        view.on_remove = self.remove_message
        view.can_remove = lambda shown: shown.own or self.may_moderate()
        view.first_day = None
        view.beginning_shown = False
        return view

    @property
    def chat(self) -> ChatView:
        """The conversation view on screen."""
        if self.current is not None:
            view = self.views.get(self.current.casefold())
            if view is not None:
                return view
        return self.lobby

    def view(self, key: str) -> ChatView:
        """The view of conversation ``key`` (made on first use, not shown)."""
        k = key.casefold()
        view = self.views.get(k)
        if view is None:
            view = self.views[k] = self._new_view(key)
        return view

    def set_theme(self, name: str) -> None:
        """Switch between the dark and the light theme while running: every pane."""
        self.theme = themes.build(self.root, name, self.args.font_size)
        th = self.theme
        panes = [self.lobby, *self.views.values(), self.convlist, self.members, self.results,
                 self.header, self.input, self.card, self.dialog, self.status,
                 self.password_card, self.sessions_card, self.reason_card]
        for w in panes:
            w.apply_theme(th)
        self.brand_mark.apply_theme(th, th.palette.sidebar)
        for rule in (self.side_rule, self.divider, self.divider2, self.status_rule):
            rule.configure(background=th.palette.border)
        self.root.configure(background=th.palette.window)

    def toggle_theme(self) -> None:
        name = "light" if self.theme.palette.name == "dark" else "dark"
        self.set_theme(name)
        settings.save({"theme": name})

    # --- connecting ---------------------------------------------------------------------
    def connect(self, name: str, host: str, port_text: str) -> None:
        """The connect dialog's button: start (or redirect) the session."""
        problem = explain_name(name) or validate_host(host) or validate_port(port_text)
        if problem:
            self.card.say(problem, "error")
            if explain_name(name):
                self.card.focus_name()
            return
        port = int(port_text)
        same_place = (host, port) == (self.host, self.port)
        password, register = self.card.take_password()
        if (self.session is not None and self.awaiting_name and same_place
                and self.session.state.value != "closed"):
            self.awaiting_name = False
            self.session.set_name(name, password=password, register=register)
            self.card.say(f"Logging in as \u201c{name}\u201d\u2026" if password
                          else f"Joining as \u201c{name}\u201d\u2026")
            return
        self._start_session(name, host, port, password, register)

    @property
    def use_tls(self) -> bool:
        return bool(self.card.tls_var.get())

    def _start_session(self, name: str, host: str, port: int, password: Optional[str] = None,
                       register: bool = False) -> None:
        self._drop_session()
        self.host, self.port = host, port
        self.server_label.configure(text=f"{host}:{port}")
        self.joined = False
        self.awaiting_name = False
        self.instance = None
        self.state, self.detail, self.retry_at = "connecting", "", None
        self.card.say(f"Connecting to {host}:{port}\u2026")
        opts = dict(client="parley-gui", retry_first=True, password=password,
                    register=register,
                    device=f"desktop on {socket.gethostname()}"[:p.DEVICE_MAX])
        if self.use_tls:
            opts["tls"] = TlsOptions(ca=getattr(self.args, "ca", None),
                                     known_hosts=getattr(self.args, "known_hosts", None))
        opts["logins"] = LoginStore()      # a login is kept: the next start needs no password
        opts.update(self.session_options)
        self.session = Session(host, port, name, **opts)
        self.session.start()
        self._refresh_status()

    def _drop_session(self) -> None:
        old, self.session = self.session, None
        if old is not None:
            # close() waits for the session thread; never block the window for that
            threading.Thread(target=old.close, name="parley-close", daemon=True).start()
        refused = self._give_up_pending("you switched to another connection")
        for view in self.views.values():
            view.destroy()
        self.views.clear()
        self.lobby.append(refused)
        self.current = None
        self.lobby.grid(row=0, column=0, sticky="nsew")
        self.pager.reset()
        self.history_labels.clear()
        self.sidebar_dirty = self.panes_dirty = True

    def _give_up_pending(self, reason: str, show: bool = False) -> list[Entry]:
        """Messages that will never be sent are shown as not sent, never just dropped:
        in their conversations (``show``), else returned."""
        out = []
        for label, item in list(self.sent.items()):
            if item.id is not None or item.echoed:
                continue                       # it went through
            entry = self.lobby.fmt.refused(item.kind, item.text, reason)
            if show:
                self._append(item.key, [entry])
            else:
                out.append(entry)
        self.sent.clear()
        self.pending_keys.clear()
        for view in self.views.values():
            view.set_pending([])
        return out

    # --- the event pump ------------------------------------------------------------------
    def _poll(self) -> None:
        if self.closed:
            return
        now = time.perf_counter()
        if self._last_tick is not None:
            self.max_gap = max(self.max_gap, now - self._last_tick)
        self._last_tick = now
        self.ticks += 1
        more = False
        try:
            more = self._drain(now)
        finally:
            took = time.perf_counter() - now
            self.max_tick = max(self.max_tick, took)
            if not self.closed:
                self._poll_id = self.root.after(1 if more else self.POLL_MS, self._poll)

    def _drain(self, start: float) -> bool:
        """Handle a bounded batch of session events; True if more are waiting."""
        session = self.session
        more = False
        if session is not None:
            for n in range(self.TICK_EVENTS):
                if n % 25 == 24 and time.perf_counter() - start > self.TICK_BUDGET:
                    more = True
                    break
                try:
                    ev = session.events.get_nowait()
                except queue.Empty:
                    break
                self.events_handled += 1
                self._handle(ev)
            else:
                more = True
        if self._welcome_line and not more and self.current is not None:
            self._line(self.current, [self.chat.fmt.info(self._welcome_line, "system")])
            self._welcome_line = None
        self._flush_batch()
        if self.sidebar_dirty or self.panes_dirty:
            self._refresh_panes()
        if self.pending_dirty:
            self.pending_dirty = False
            self._render_pending()
        self._refresh_status()
        return more

    def _line(self, key: Optional[str], entries: list) -> None:
        """Queue entries for a conversation's view (None: the one on screen)."""
        if key is None:
            key = self.current
        if key is None:
            self.lobby.append(entries)
            return
        self._batch.setdefault(key.casefold(), []).extend(entries)
        self._batch_keys[key.casefold()] = key

    def _flush_batch(self) -> None:
        batch, self._batch = self._batch, {}
        keys, self._batch_keys = self._batch_keys, {}
        self._batch_ids.clear()
        for k, entries in batch.items():
            self._append(keys[k], entries)
            if self.current is not None and k == self.current.casefold():
                self._schedule_read()

    def _append(self, key: str, entries: list[Entry]) -> None:
        view = self.view(key)
        if view.first_day is None:
            view.first_day = next((e.day for e in entries if e.day is not None), None)
        view.append(entries)

    def info(self, text: str, style: str = "info", key: Optional[str] = None) -> None:
        """A local line in a conversation (the current one by default), shown now."""
        view = self.view(key) if key else self.chat
        view.append([view.fmt.info(text, style)])

    def _handle(self, ev: Any) -> None:
        me = self.me
        if isinstance(ev, p.HISTORY_FRAMES):
            key = p.conversation(ev, me) or p.GENERAL
            view = self.view(key)
            if ev.id in view.ids or ev.id in self._batch_ids:
                return
            self._batch_ids.add(ev.id)
            self._line(key, [view.fmt.event(ev)])
            if isinstance(ev, p.Message) and core.same_conv(ev.sender, me):
                self._echoed(ev, key)
            if isinstance(ev, (p.Join, p.Leave, p.Topic)):
                self.panes_dirty = True
            self.sidebar_dirty = True
        elif isinstance(ev, ConversationsChanged):
            self.sidebar_dirty = self.panes_dirty = True
        elif isinstance(ev, AccountChanged):
            self.panes_dirty = True
            self._refresh_account()
        elif isinstance(ev, p.AccountInfo):
            self.account_labels.pop(ev.label, None)
            if self.password_card.visible:
                self.password_card.hide()
            self.info(f"The name {ev.name} is yours now: log in with its password next time.",
                      "system")
            self._refresh_account()
        elif isinstance(ev, p.SessionList):
            self.account_labels.pop(ev.label, None)
            self.sessions_card.set_sessions(ev.sessions)
        elif isinstance(ev, LoggedOut):
            self._logged_out(ev)
        elif isinstance(ev, MessageRemoved):
            self._flush_batch()              # (it may still be waiting to be drawn)
            view = self.views.get(ev.conv.casefold())
            if view is not None:
                view.mark_removed(ev.id)
        elif isinstance(ev, RemovedFromRoom):
            self._flush_batch()
            self.sidebar_dirty = self.panes_dirty = True
            self._refresh_panes()            # (out of the room on screen: to another)
            what = "kicked you from" if ev.action == "kick" else "banned you from"
            self.info(f"\u2715 {ev.by} {what} {ev.room}" + (f": {ev.reason}" if ev.reason
                                                            else "."), "error")
        elif isinstance(ev, p.Invited):
            self.info(f"{ev.by} invited you to {ev.room}: /join {ev.room} (or +) to go in.",
                      "system")
        elif isinstance(ev, p.AuditLog):
            self.mod_labels.pop(ev.label, None)
            self.chat.jump_to_end()
            self.info("The latest moderation actions:\n" + "\n".join(
                "  " + ln for ln in core.audit_table(ev.entries)))
        elif isinstance(ev, p.Presence):
            view = self.view(ev.room)
            self._line(ev.room, [view.fmt.presence(ev)])
            self.panes_dirty = True
        elif isinstance(ev, p.Unread):
            key = ev.room or ("@" + ev.peer if ev.peer else None)
            self.sidebar_dirty = True
            if (key and ev.count > 0 and core.same_conv(key, self.current)
                    and not self.chat.marker_shown):
                self.marker_for[key.casefold()] = ev.read_id
                self._try_marker(key)
        elif isinstance(ev, p.RoomInfo):
            self._room_info(ev)
        elif isinstance(ev, p.HistoryPage):
            self._history_page(ev)
        elif isinstance(ev, p.SearchResults):
            if ev.label is not None and ev.label == self.search_label:
                self.search_label = None
                hits = model.search_hits(ev.messages, me)
                self.results.set_results(self.search_query, hits, ev.more,
                                         append=self.search_append)
        elif isinstance(ev, p.RoomList):
            if self.dialog.visible:
                self.dialog.set_rooms(ev.rooms)
        elif isinstance(ev, p.UserList):
            self.panes_dirty = True
            if ev.label in self.users_labels:
                key = self.users_labels.pop(ev.label)
                view = self.view(key) if key else self.chat
                self._line(key, [view.fmt.users(ev.users, ev.room)])
        elif isinstance(ev, p.Ack):
            self.pending_dirty = True
            item = self.sent.get(ev.label)
            if item is not None:
                if item.echoed or ev.id is None or ev.id in self.view(item.key).ids:
                    del self.sent[ev.label]
                else:
                    item.id = ev.id            # shown dimmed until its copy arrives
            if ev.label in self.account_labels:
                self._account_acked(self.account_labels.pop(ev.label))
            self.mod_labels.pop(ev.label, None)      # (its mod frame says what happened)
            if ev.label in self.part_labels:
                room = self.part_labels.pop(ev.label)
                self.sidebar_dirty = self.panes_dirty = True
                self.info(f"You left {room}.", "system", key=None)
        elif isinstance(ev, p.Error):
            self._error(ev)
        elif isinstance(ev, StateChanged):
            self._state_changed(ev)
        elif isinstance(ev, p.Welcome):
            self._welcome(ev)
        elif isinstance(ev, p.Bye):
            why = ev.message or p.LEAVE_REASONS.get(ev.reason or "", ev.reason) or "no reason given"
            self._line(None, [self.chat.fmt.info(f"The server closed the connection: {why}.",
                                                 "system")])
            self.bye_shown = True
        elif isinstance(ev, NameRefused):
            self._name_refused(ev)
        elif isinstance(ev, ConnectFailed):
            self.state, self.detail = "closed", ev.error
            self.card.show()
            self.card.say(f"Cannot connect to {ev.host}:{ev.port}: {ev.error}.", "error")
        elif isinstance(ev, TrustQuestion):
            session = self.session
            self.card.ask_trust(ev.host, ev.port, ev.fingerprint, ev.reason,
                                lambda yes: session.trust(yes))
        elif isinstance(ev, TlsRefused):
            self.state, self.detail = "closed", "certificate refused"
            if self.card.asking_trust:
                self.card.answer_trust(False)
            self.card.show()
            self.card.say(ev.message, "error")

    def _error(self, ev: p.Error) -> None:
        label = ev.label
        if label in self.sent:
            item = self.sent.pop(label)
            key, kind, text = item.key, item.kind, item.text
            self.pending_dirty = True
            self._line(key, [self.view(key).fmt.refused(kind, text, ev.message)])
            if core.same_conv(key, self.current) and not self.input.get().strip():
                self.input.set(("/me " if kind == "me" else "") + text)
            return
        if label in self.history_labels:
            key = self.history_labels.pop(label)
            self.pager.failed(label)
            self.seek.pop(key.casefold(), None)
            self._line(key, [self.view(key).fmt.info(
                f"Older messages could not be loaded: {ev.message}.", "error")])
            return
        if label is not None and label == self.search_label:
            self.search_label = None
            self.results.summary.configure(text=f"The search failed: {ev.message}.")
            return
        if label in self.join_labels:
            room = self.join_labels.pop(label)
            if self.dialog.visible:
                self.dialog.say(f"Cannot join {room}: {ev.message}.", "error")
            else:
                self._line(None, [self.chat.fmt.info(f"\u2715 Cannot join {room}: {ev.message}",
                                                     "error")])
            return
        if label in self.part_labels:
            room = self.part_labels.pop(label)
            self.sidebar_dirty = self.panes_dirty = True
            self._line(None, [self.chat.fmt.info(f"\u2715 Cannot leave {room}: {ev.message}",
                                                 "error")])
            return
        if label in self.account_labels:
            what = self.account_labels.pop(label)
            text = core.login_hint(ev.code, ev.message) if ev.code in (
                p.LOGIN_FAILED, p.INSECURE) else ev.message
            if what[0] == "password" and ev.code == p.LOGIN_FAILED:
                text = "That is not your current password."
            card = self.sessions_card if what[0] in ("revoke", "sessions") else self.password_card
            if card.visible:
                card.say(f"{text[0].upper()}{text[1:]}.".replace("..", "."), "error")
            else:
                self._line(None, [self.chat.fmt.info(f"\u2715 {ev.message} ({ev.code})",
                                                     "error")])
            return
        if label == self.rooms_label and self.dialog.visible:
            self.dialog.say(f"The room list is not available: {ev.message}.", "error")
            self.dialog.set_rooms([])
            return
        self.users_labels.pop(label, None)
        if label in self.mod_labels:
            what = core.mod_summary(self.mod_labels.pop(label))
            self._line(None, [self.chat.fmt.info(f"\u2715 Not done ({what}): {ev.message}",
                                                 "error")])
            return
        self._line(None, [self.chat.fmt.info(f"\u2715 {ev.message} ({ev.code})", "error")])
        if not self.joined:          # e.g. version_unsupported, at hello time
            self.card.show()
            self.card.say(f"The server refused the connection: {ev.message}.", "error")
            self.refusal = ev.message      # kept for the "retrying" line that follows

    def _state_changed(self, ev: Any) -> None:
        state = ev.state.value
        self.state, self.detail = state, ev.detail
        self.retry_at = (time.monotonic() + ev.retry_in) if ev.retry_in is not None else None
        if state == "reconnecting":
            if not self.joined:
                if not self.awaiting_name and self.refusal:
                    wait = f" Retrying in {max(1, round(ev.retry_in or 0))} s\u2026"
                    self.card.say(f"The server refused the connection: {self.refusal}.{wait}",
                                  "error")
                    self.refusal = None
                elif not self.awaiting_name:
                    wait = (f" Retrying in {max(1, round(ev.retry_in))} s\u2026"
                            if ev.retry_in else "")
                    self.card.say(f"Cannot reach {self.host}:{self.port} ({ev.detail}).{wait} "
                                  "Check the address, or start a server with "
                                  "\u201cpython python_server.py\u201d.", "error")
            elif not self.outage:
                self.outage = True
                self.members.set_online(False)
                lost = "" if self.bye_shown else f"Connection lost ({ev.detail}). "
                self._line(None, [self.chat.fmt.info(
                    f"{lost}Reconnecting\u2026 messages you send meanwhile are delivered once "
                    "the connection is back.", "system")])
            self.bye_shown = False
            self.pending_dirty = True
        elif state == "closed" and not self.closed:
            if self.joined:
                self._line(None, [self.chat.fmt.info(f"Disconnected: {ev.detail}.", "error")])
            elif self.card.level != "error":
                self.card.say(f"Disconnected: {ev.detail}.", "error")
            self._give_up_pending("the connection is closed", show=True)
            self.input.set_enabled(True)
            self.pending_dirty = True
        elif state == "connected":
            self.pending_dirty = True

    def _forget_history(self) -> None:
        """The server's ids now belong to another database: what is shown is cleared
        (the same ids will mean other messages), then loaded again."""
        self._flush_batch()
        for view in self.views.values():
            view.destroy()
        self.views.clear()
        self.current = None
        self.pager.reset()
        self.history_labels.clear()
        self.marker_for.clear()
        self.seek.clear()
        for item in self.sent.values():
            item.id = None

    def _welcome(self, w: p.Welcome) -> None:
        fresh = self.instance is not None and w.instance != self.instance
        self.instance = w.instance
        if fresh:
            self._forget_history()
        first = not self.joined
        self.joined = True
        self.awaiting_name = False
        self.me = w.name
        for view in (self.lobby, *self.views.values()):
            view.fmt.me = w.name
        self.results.fmt.me = w.name
        self.limits = dict(w.limits or {})
        if self.card.visible:
            self.card.hide()
        self.input.set_enabled(True)
        self.members.set_online(True)
        self.root.after_idle(self._refresh_account)
        self.sidebar_dirty = self.panes_dirty = self.pending_dirty = True
        convs = self.session.conversations() if self.session is not None else []
        if self.current is None or not any(core.same_conv(c.key, self.current) for c in convs):
            keys = [c.key for c in convs]
            general = next((k for k in keys if core.same_conv(k, p.GENERAL)), None)
            target = general or (keys[0] if keys else None)
            if target is not None:
                self.switch(target, focus=first)
        if first:
            settings.save({"name": w.name, "host": self.host, "port": self.port,
                           "theme": self.theme.palette.name,
                           "tls": "on" if self.use_tls else "off"})
            others = len(w.users) - 1
            company = ("Nobody else is here yet." if others <= 0 else
                       f"{others} other{'s are' if others != 1 else ' is'} online.")
            info = self.session.tls_info if self.session is not None else None
            secure = ""
            if info is not None:
                how = {"ca": "verified by a certificate authority",
                       "known_hosts": "the one you trusted before",
                       "first use": "trusted by you just now"}.get(info.verified_by, "")
                secure = (f" The connection is encrypted ({info.version}); the server\u2019s "
                          f"certificate is {how}, SHA-256 {info.fingerprint}.")
            self._welcome_line = (f"Welcome, {w.name}! You are connected to {self.host}:"
                                  f"{self.port}.{secure} {company} Type /help for commands.")
            self.input.focus()
        elif fresh:
            self.info(f"Reconnected to {self.host}:{self.port}. The server\u2019s history "
                      "starts afresh (another database): what was shown before is cleared.",
                      "system")
        elif self.outage:
            self.info(f"Reconnected to {self.host}:{self.port}.", "system")
        if w.truncated and not fresh:
            self.info(TRUNCATED_NOTE, "system")
        self.outage = False

    def _name_refused(self, ev: Any) -> None:
        self.awaiting_name = True
        self.joined = False
        self.card.show()
        self.card.say(refused_name(ev.name, ev.code, ev.message), "error")
        self.card.name_var.set(ev.name)
        if ev.code in (p.NAME_REGISTERED, p.AUTH_REQUIRED, p.LOGIN_FAILED, p.BAD_PASSWORD):
            self.card.focus_password()
        else:
            self.card.focus_name()
        self.input.set_enabled(False)

    # --- accounts ---------------------------------------------------------------------
    def _logged_out(self, ev: LoggedOut) -> None:
        """The login of this device was revoked: back to the connect card."""
        self.awaiting_name = False
        self._line(None, [self.chat.fmt.info(f"You were logged out: {ev.message}.", "error")])
        for card in (self.password_card, self.sessions_card):
            card.hide()
        self.card.show()
        self.card.say(f"You were logged out ({ev.message}). Enter your password to log in "
                      "again.", "error")
        self.card.focus_password()
        self.input.set_enabled(False)
        self.joined = False
        self._refresh_account()

    def _refresh_account(self) -> None:
        s = self.session
        if s is None or not self.joined:
            text = ""
        elif s.is_account:
            text = f"\u25cf {self.me} \u00b7 account \u25be"
        elif s.auth == p.AUTH_OFF:
            text = ""
        else:
            text = f"\u25cb {self.me} \u00b7 guest \u25be"
        self.account_label.configure(text=text)

    def account_menu_popup(self, event: Any = None) -> None:
        """The account menu under the name in the sidebar."""
        menu = self.account_menu
        menu.delete(0, "end")
        s = self.session
        if s is None or not self.joined:
            return
        if s.is_account:
            menu.add_command(label="Sessions\u2026", command=self.open_sessions)
            menu.add_command(label="Change password\u2026",
                             command=lambda: self.open_password("change"))
            menu.add_separator()
            menu.add_command(label="Log out", command=self.logout)
        else:
            menu.add_command(label="Register this name\u2026",
                             command=lambda: self.open_password("register"))
        if event is not None:
            menu.tk_popup(event.x_root, event.y_root)

    def open_password(self, mode: str) -> None:
        self.dialog.hide()
        self.sessions_card.hide()
        self.password_card.show(mode, self.me)

    def open_sessions(self) -> None:
        self.dialog.hide()
        self.password_card.hide()
        self.sessions_card.show()

    def load_sessions(self) -> None:
        if self.session is not None and self.joined:
            self.account_labels[self.session.list_sessions()] = ("sessions",)

    def _password_submitted(self, mode: str, old: Optional[str], new: str) -> None:
        s = self.session
        if s is None or not self.joined:
            self.password_card.say("Not connected to a server.", "error")
            return
        if mode == "register":
            self.account_labels[s.register(new)] = ("register",)
        else:
            self.account_labels[s.change_password(old or "", new)] = ("password",)

    def revoke(self, session_id: Optional[str]) -> None:
        """Log out one session (None: every other one)."""
        s = self.session
        if s is None or not self.joined:
            return
        label = s.revoke(session_id, others=session_id is None)
        self.account_labels[label] = ("revoke", session_id)

    def logout(self) -> None:
        """Log this device out (its login token is revoked), back to the connect card."""
        s = self.session
        if s is None or not s.is_account or not s.session_id:
            return
        self.account_labels[s.revoke(s.session_id)] = ("logout",)

    def _account_acked(self, what: tuple) -> None:
        if what[0] == "password":
            self.password_card.hide()
            self.info("Your password was changed; your other sessions were logged out.",
                      "system")
        elif what[0] == "revoke":
            self.sessions_card.say("Logged out." if what[1] else
                                   "Your other sessions were logged out.")
            self.load_sessions()

    # --- rooms ------------------------------------------------------------------------
    def _room_info(self, ev: p.RoomInfo) -> None:
        self._flush_batch()            # what came before it is in the views first
        self.sidebar_dirty = self.panes_dirty = True
        view = self.view(ev.room)
        events = model.events_from_frames(ev.history)
        if events:
            self._merge(ev.room, events, more=True, from_pager=False)
        if ev.label in self.join_labels:
            self.join_labels.pop(ev.label)
            if self.dialog.visible:
                self.dialog.hide()
            self.switch(ev.room)
        elif view is self.chat:
            self.panes_dirty = True

    def open_room_dialog(self) -> None:
        if not self.joined or self.session is None:
            return
        self.dialog.show()
        try:
            self.rooms_label = self.session.list_rooms()
        except OfflineQueueFull as e:
            self.dialog.say(f"The room list is not available: {e}.", "error")
            self.dialog.set_rooms([])

    def _dialog_closed(self) -> None:
        self.input.focus()

    def join_room(self, room: str) -> None:
        """Join (or create) ``room``; already in it: just go there."""
        session = self.session
        if session is None:
            return
        if session.conversation(room) is not None:
            self.dialog.hide()
            self.switch(session.conversation(room).key)
            return
        try:
            self.join_labels[session.join(room)] = room
        except OfflineQueueFull as e:
            self.dialog.say(f"Cannot join now: {e}.", "error")

    def part_room(self, room: str) -> None:
        if self.session is None:
            return
        self.part_labels[self.session.part(room)] = room

    def set_topic(self, text: str) -> None:
        key = self.current
        if self.session is None or key is None or not model.is_room(key):
            return
        problem = model.topic_problem(text)
        if problem:
            self.info(problem, "error")
            return
        try:
            self.session.set_topic(key, text)
        except OfflineQueueFull as e:
            self.info(f"The topic was not changed: {e}.", "error")

    def load_members(self) -> None:
        key = self.current
        if self.session is None or key is None or not model.is_room(key):
            return
        self.members_requested.add(key.casefold())
        self.members.note.configure(text="Loading the members\u2026")
        self.session.request_users(key)

    # --- direct messages ----------------------------------------------------------------
    def open_dm(self, name: str) -> None:
        """Start (or go back to) the direct conversation with ``name``."""
        if self.session is None or core.same_conv(name, self.me):
            return
        key = self.session.open_dm(name)
        self.sidebar_dirty = True
        self.switch(key)

    # --- switching ----------------------------------------------------------------------
    def switch(self, key: str, focus: bool = True) -> None:
        """Show conversation ``key``: its view, header, members; mark it read."""
        session = self.session
        conv = session.conversation(key) if session is not None else None
        if conv is not None:
            key = conv.key                       # the server's spelling
        old = self.current
        if old is not None and not core.same_conv(old, key):
            self._mark_read(old)                 # what was on screen has been seen
            oldview = self.views.get(old.casefold())
            if oldview is not None:
                oldview.remove_marker()
                oldview.grid_remove()
            self.marker_for.pop(old.casefold(), None)
        self.lobby.grid_remove()
        self.current = key
        view = self.view(key)
        view.grid(row=0, column=0, sticky="nsew")
        if conv is not None and conv.unread > 0 and not core.same_conv(old, key):
            self.marker_for[key.casefold()] = conv.read_id
            self._try_marker(key)
        self.input.set_placeholder(("Message " + key if model.is_room(key)
                                    else f"Message {model.label_of(key)}")
                                   + " \u00b7 /help for commands")
        self.sidebar_dirty = self.panes_dirty = self.pending_dirty = True
        self._refresh_panes()
        if view.entry_count < FILL:
            self.load_older(key)
        self._schedule_read()
        if focus and self.input._enabled:
            self.input.focus()

    def cycle(self, step: int) -> str:
        """Alt+Up / Alt+Down: the previous / next conversation of the sidebar."""
        keys = [r.key for r in self.convlist.rows if r.kind in ("room", "dm")]
        if keys:
            try:
                i = [k.casefold() for k in keys].index((self.current or "").casefold())
            except ValueError:
                i = -1 if step > 0 else 0
            self.switch(keys[(i + step) % len(keys)])
        return "break"

    def _try_marker(self, key: str) -> None:
        read_id = self.marker_for.get(key.casefold())
        if read_id is None or not core.same_conv(key, self.current):
            return
        view = self.view(key)
        if view.show_marker(read_id, view.fmt.marker()):
            self.marker_for.pop(key.casefold(), None)

    # --- reading --------------------------------------------------------------------
    def window_focused(self) -> bool:
        try:
            return self.root.focus_get() is not None
        except (KeyError, tk.TclError):      # focus in a menu or a dialog of Tk's own
            return True

    def _schedule_read(self) -> None:
        if self._read_after is None and not self.closed:
            self._read_after = self.root.after(150, self._mark_read)

    def _mark_read(self, key: Optional[str] = None) -> None:
        """The conversation on screen (or ``key``) is read up to its newest entry,
        if the window has the focus (a person is looking at it)."""
        if key is None:
            self._read_after = None
            key = self.current
        session = self.session
        if key is None or session is None or not self.joined or not self.window_focused():
            return
        newest = self.view(key).newest_id
        conv = session.conversation(key)
        if newest is not None and conv is not None and newest > conv.read_id:
            session.mark_read(key, newest)

    def mark_all_read(self, key: str) -> None:
        """The sidebar's "Mark as read": everything in ``key``, shown or not."""
        conv = self.session.conversation(key) if self.session is not None else None
        if conv is not None and conv.last_id > conv.read_id:
            self.session.mark_read(conv.key, conv.last_id)
            self.sidebar_dirty = True

    # --- history ------------------------------------------------------------------------
    def load_older(self, key: Optional[str], limit: int = PAGE, force: bool = False) -> bool:
        """Ask for the page before the oldest entry shown (the view reached its top)."""
        session = self.session
        if key is None or session is None or not self.joined:
            return False
        if session.conversation(key) is None and not model.is_dm(key):
            return False
        view = self.view(key)
        if view.trimmed:
            view.trimmed = False
            self.pager.forget(key)
        if force and self.pager.at_beginning(key):
            self.pager.forget(key)
        if not self.pager.want(key):
            return False
        try:
            label = session.history(key, before=view.oldest_id, limit=limit)
        except (OfflineQueueFull, ValueError):
            return False
        self.pager.asked(key, label)
        self.history_labels[label] = key
        return True

    def _history_page(self, ev: p.HistoryPage) -> None:
        self._flush_batch()            # what came before it is in the views first
        key = self.history_labels.pop(ev.label, None) if ev.label else None
        if key is None:
            key = ev.room or ("@" + ev.peer if ev.peer else None)
            if key is None:
                return
        events = model.events_from_frames(ev.messages)
        added = self._merge(key, events, ev.more, from_pager=True)
        self.pager.answered(ev.label, ev.more, added)
        view = self.view(key)
        if self.pager.at_beginning(key) and not view.beginning_shown and not view.trimmed:
            view.beginning_shown = True
            view.prepend([view.fmt.beginning(key)])
        self._try_marker(key)
        if key.casefold() in self.reveal:
            self.reveal.discard(key.casefold())
            view.text.yview_moveto(0.0)
            view._moved()
        target = self.seek.get(key.casefold())
        if target is not None:
            if view.show_id(target):
                del self.seek[key.casefold()]
            elif not self.load_older(key, SEEK_PAGE):
                del self.seek[key.casefold()]
        elif core.same_conv(key, self.current):
            self._schedule_read()
            # the view still fits on screen: keep filling it
            self.root.after_idle(lambda: view.winfo_exists() and view._yscroll(
                *map(str, view.text.yview())))

    def _merge(self, key: str, events: list, more: bool, from_pager: bool) -> int:
        """Put history events into a view: older ones above (keeping the view
        still), newer ones below.  Returns how many older ones were new."""
        view = self.view(key)
        events = [e for e in events if e.id not in view.ids]
        older, newer = model.split_page(events, view.oldest_id, view.newest_id)
        if older:
            fmt = Formatter(me=self.me, emoji=self.emoji)
            entries = [fmt.event(ev) for ev in older]
            last_day = entries[-1].day
            if last_day is not None and view.first_day is not None and last_day != view.first_day:
                entries.append(fmt.day_divider(view.first_day))
            view.prepend(entries)
            view.first_day = next((e.day for e in entries if e.day is not None), view.first_day)
        if newer:
            self._append(key, [view.fmt.event(ev) for ev in newer])
        return len(older)

    # --- search -------------------------------------------------------------------------
    def _ctrl_f(self) -> str:
        self.header.focus_search()
        return "break"

    def _ctrl_n(self) -> str:
        self.open_room_dialog()
        return "break"

    def search(self, query: str, before: Optional[int] = None) -> None:
        if self.session is None or not self.joined:
            return
        try:
            label = self.session.search(query, before=before, limit=50)
        except OfflineQueueFull as e:
            self.info(f"Cannot search now: {e}.", "error")
            return
        self.search_label = label
        self.search_query = query
        self.search_append = before is not None
        if not self.results.winfo_manager():
            self.members.grid_remove()
            self.results.grid(row=0, column=0, sticky="nsew")
        if before is None:
            self.results.set_results(query, [], False)
            self.results.set_busy(query)
        if self.header.search_var.get().strip() != query:
            self.header.search_var.set(query)

    def more_results(self) -> None:
        if self.results.hits:
            self.search(self.results.query, before=self.results.hits[-1].id)

    def close_search(self) -> None:
        self.search_label = None
        self.results.grid_remove()
        self.members.grid(row=0, column=0, sticky="nsew")
        self.header.search_var.set("")
        self.input.focus()

    @property
    def search_open(self) -> bool:
        return bool(self.results.winfo_manager())

    def open_hit(self, hit: SearchHit) -> None:
        """A search result was clicked: go to its conversation and show it."""
        if self.session is None:
            return
        key = hit.key
        if model.is_dm(key):
            key = self.session.open_dm(model.label_of(key))
        elif self.session.conversation(key) is None:
            self.info(f"You are not in {key} any more; /join {key} to read it.", "error")
            return
        self.switch(key, focus=False)
        view = self.view(key)
        if not view.show_id(hit.id):
            self.seek[key.casefold()] = hit.id
            if not self.pager.is_loading(key) and not self.load_older(key, SEEK_PAGE):
                self.seek.pop(key.casefold(), None)

    # --- the panes ----------------------------------------------------------------------
    def _refresh_panes(self) -> None:
        session = self.session
        convs = session.conversations() if session is not None else []
        online = session.users if session is not None else set()
        if self.current is not None and self.joined and session is not None \
                and session.conversation(self.current) is None and model.is_room(self.current):
            # left (here or on another connection): go back to a room we are in
            left = self.current
            self.current = None
            view = self.views.pop(left.casefold(), None)
            if view is not None:
                view.destroy()
            self.pager.forget(left)
            rooms = [c.key for c in convs if c.kind == "room"]
            if rooms:
                self.switch(rooms[0], focus=False)
                return
            self.lobby.grid(row=0, column=0, sticky="nsew")
            self.lobby.append([self.lobby.fmt.info(
                "You are not in any room now. Join one with + or /join #room.", "system")])
            self.sidebar_dirty = self.panes_dirty = True
        if self.sidebar_dirty:
            self.sidebar_dirty = False
            self.convlist.set_rows(model.sidebar_rows(convs, self.current, online))
            if self.joined:          # the views of rooms left (elsewhere too) go
                keep = {c.key.casefold() for c in convs}
                for k in [k for k in self.views if k not in keep and model.is_room(k)
                          and not core.same_conv(k, self.current)]:
                    self.views.pop(k).destroy()
                    self.pager.forget(k)
            # the conversation on screen counts too while the person is elsewhere
            unread, mentions = model.total_unread(
                convs, self.current if self.window_focused() else None)
            if self.joined:
                self.root.title(model.window_title(self.me, f"{self.host}:{self.port}",
                                                   unread, mentions))
        if self.panes_dirty:
            self.panes_dirty = False
            key = self.current
            conv = session.conversation(key) if session is not None and key else None
            self.header.set(model.header(key, conv, online))
            guests = session.guests if session is not None and session.marks_guests else ()
            panel = model.member_panel(key, conv, self.me, guests)
            self.members.set_panel(panel, self.me)
            if panel.lazy and key and key.casefold() in self.members_requested:
                self.members.note.configure(text="Loading the members\u2026")

    # --- the status bar -----------------------------------------------------------------
    def _refresh_status(self) -> None:
        left = None
        if self.retry_at is not None:
            left = max(0.0, self.retry_at - time.monotonic())
        waiting = len(self.pending) if self.state != "connected" else 0
        text, level = status_text(self.state, self.host, self.port, self.me, self.detail,
                                  left, waiting)
        if self.state == "connecting" and self.awaiting_name:
            text, level = "The server refused the name; choose another", "warn"
        self.status.set(text, level)
        info = self.session.tls_info if self.session is not None else None
        if info is not None and self.state == "connected":
            how = {"ca": "verified", "known_hosts": "trusted", "first use": "trusted"}.get(
                info.verified_by, "")
            self.status.set_lock(f"{info.version} \u00b7 {how} \u00b7 SHA-256 "
                                 f"{short_fingerprint(info.fingerprint)}")
        else:
            self.status.set_lock(None)

    # --- sending ------------------------------------------------------------------------
    def _echoed(self, ev: p.Message, key: str) -> None:
        """The server's copy of a message of mine is shown: its pending line goes."""
        self.pending_dirty = True
        if ev.label and ev.label in self.sent:
            del self.sent[ev.label]
            return
        for label, item in self.sent.items():
            if item.id == ev.id:
                del self.sent[label]
                return
        for item in self.sent.values():     # the copy came before the ack: match it
            if (not item.echoed and item.id is None and item.kind == ev.kind
                    and item.text == ev.text and core.same_conv(item.key, key)):
                item.echoed = True
                return

    def _pending_entries(self) -> list[tuple[str, str, str, str, str]]:
        """(label, key, kind, text, note) of every message not shown as sent yet,
        in the order they were sent: the session's queue (sending / waiting for
        the connection), and those it has answered but the window not shown yet."""
        session = self.session
        queued = dict(session.pending_messages()) if session is not None else {}
        note = "sending\u2026" if self.state == "connected" else "waiting for the connection"
        out = []
        for label, item in self.sent.items():
            if not item.echoed:
                out.append((label, item.key, item.kind, item.text,
                            note if label in queued else "sent"))
        for label, ev in queued.items():
            if label not in self.sent:
                kind = "me" if isinstance(ev, p.Me) else "say"
                out.append((label, pending_key(ev), kind, ev.text, note))
        return out

    def _render_pending(self) -> None:
        """Show each conversation's unacknowledged messages, dimmed, at its end."""
        per_view: dict[str, list[Entry]] = {}
        for label, key, kind, text, note in self._pending_entries():
            view = self.view(key)
            per_view.setdefault(key.casefold(), []).append(
                view.fmt.pending(label, kind, text, note))
        for k in self.pending_keys | set(per_view):
            view = self.views.get(k)
            if view is not None:
                view.set_pending(per_view.get(k, []))
        self.pending_keys = set(per_view)

    def submit(self, raw: str) -> bool:
        """The input box's Enter: True if the text was used (the box is cleared)."""
        from .render import outgoing_text
        cmd = core.parse(outgoing_text(raw), self.current)
        name = cmd.name
        if name == "empty":
            return False
        if cmd.error:
            self.chat.jump_to_end()
            self.info(cmd.error, "error")
            return name == "unknown"
        if name == "exit":
            self.root.after_idle(self.close)
            return True
        if name == "help":
            self.chat.jump_to_end()
            self.info(core.HELP + "\n" + GUI_HELP)
            return True
        if self.session is None or not self.joined:
            self.info("Not connected to a server.", "error")
            return False
        session = self.session
        try:
            if name in ("say", "me", "msg"):
                return self._send(cmd)
            if name == "join":
                self.join_room(cmd.target)
            elif name == "part":
                self.part_room(cmd.target)
            elif name == "rooms":
                self.open_room_dialog()
            elif name == "topic":
                if cmd.text is None:
                    conv = session.conversation(cmd.target)
                    topic = conv.topic if conv is not None and conv.topic else ""
                    self.info(f"The topic of {cmd.target}: {topic}" if topic
                              else f"{cmd.target} has no topic. /topic <text> sets one.")
                else:
                    self.set_topic(cmd.text)
            elif name == "switch":
                target = cmd.target
                if model.is_dm(target):
                    self.open_dm(model.label_of(target))
                elif session.conversation(target) is None:
                    self.info(f"You are not in {target}. /join {target} to join it.", "error")
                    return False
                else:
                    self.switch(target)
            elif name == "history":
                n = cmd.args[0] if cmd.args else core.HISTORY_DEFAULT
                if self.load_older(self.current, limit=n, force=True):
                    self.reveal.add(self.current.casefold())    # scroll up to them
                else:
                    if self.pager.is_loading(self.current or ""):
                        self.info("Older messages are on their way\u2026")
                    else:
                        self.info("Nothing older to load here.")
            elif name == "search":
                self.search(cmd.text)
            elif name in ("register", "password", "sessions", "revoke", "logout"):
                return self._account_command(cmd)
            elif cmd.mod is not None:
                self.send_mod(cmd.mod)
            elif name == "audit":
                self.mod_labels[session.audit(limit=cmd.args[0])] = {"action": "audit"}
            elif name == "users":
                if cmd.target:
                    self.users_labels[session.request_users(cmd.target)] = None
                else:
                    self.chat.jump_to_end()
                    self.chat.append([self.chat.fmt.users(session.users)])
            else:                                     # pragma: no cover - a new command
                self.info(f"/{name} is not available in this window.", "error")
                return False
        except OfflineQueueFull as e:
            self.info(f"Not sent: {e}.", "error")
            return False
        return True

    # --- moderation ----------------------------------------------------------------------
    def may_moderate(self, owner: bool = False) -> bool:
        """Offer moderation here?  In a room where I am a moderator (with ``owner``:
        its owner), or anywhere as a server admin; the server checks anyway."""
        s = self.session
        return bool(s is not None and self.current and model.is_room(self.current)
                    and s.may_moderate(self.current, owner=owner))

    def send_mod(self, fields: dict) -> Optional[str]:
        if self.session is None:
            return None
        label = self.session.moderate(**fields)
        self.mod_labels[label] = dict(fields)
        return label

    def moderate_user(self, action: str, name: str, duration: Optional[int] = None) -> None:
        """From the member list's menu: kick, mute and ban ask for a reason first."""
        room = self.current
        if room is None or not model.is_room(room):
            return
        fields: dict = {"action": action, "room": room, "target": name}
        if duration is not None:
            fields["duration"] = duration
        if action not in ("kick", "mute", "ban"):
            self.send_mod(fields)
            return
        span = f" for {core.format_duration(duration)}" if duration else ""
        titles = {"kick": f"Kick {name} from {room}", "mute": f"Mute {name} in {room}{span}",
                  "ban": f"Ban {name} from {room}"}
        notes = {"kick": f"{name} leaves the room now and may join it again.",
                 "mute": f"{name} stays in the room but cannot speak"
                         + (f" for {core.format_duration(duration)}." if duration
                            else " until unmuted."),
                 "ban": f"{name} leaves the room and cannot join it again until unbanned."}

        def ok(reason: str) -> None:
            if reason:
                fields["reason"] = reason
            self.send_mod(fields)
        self.reason_card.show(titles[action], notes[action], action.capitalize(), ok)

    def remove_message(self, mid: int) -> None:
        """From a message's menu: remove it (a reason is asked, and optional)."""
        room = self.current
        if room is None or not model.is_room(room):
            self.info("Only messages of rooms can be removed.", "error")
            return

        def ok(reason: str) -> None:
            fields = {"action": "delete", "room": room, "id": mid}
            if reason:
                fields["reason"] = reason
            self.send_mod(fields)
        self.reason_card.show("Remove this message?",
                              f"It disappears for everyone in {room} and from the history.",
                              "Remove", ok)

    def _account_command(self, cmd: Any) -> bool:
        s = self.session
        if cmd.name == "register":
            if s.is_account:
                self.info(f"You are logged in to the account {self.me} already.")
            else:
                self.open_password("register")
            return True
        if not s.is_account:
            self.info("Guests have no password or sessions: /register keeps your name as an "
                      "account.", "error")
            return True
        if cmd.name == "password":
            self.open_password("change")
        elif cmd.name == "sessions":
            self.open_sessions()
        elif cmd.name == "revoke":
            self.revoke(cmd.args[0])
        elif cmd.name == "logout":
            self.logout()
        return True

    def _send(self, cmd: Any) -> bool:
        session = self.session
        if cmd.name == "msg":
            self.open_dm(cmd.args[0])
            if not cmd.text:
                return True
            kind, text, key = "say", cmd.text, cmd.target
        else:
            kind, text, key = cmd.name, cmd.text or "", cmd.target
        if key is None:
            self.info("Pick a conversation first.", "error")
            return False
        limit = int(self.limits.get("max_text", 4000) or 4000)
        if len(text) > limit:
            self.info(f"That message is {len(text)} characters long; the server accepts at "
                      f"most {limit}. Shorten it and send again.", "error")
            return False
        try:
            label = session.send(text, key, kind)
        except OfflineQueueFull as e:
            self.info(f"Not sent: {e}.", "error")
            return False
        except ValueError as e:
            self.info(f"Not sent: {e}.", "error")
            return False
        self.sent[label] = Sent(key, kind, text)
        self.view(key).jump_to_end()
        self._render_pending()
        self._refresh_status()
        return True

    @property
    def pending(self) -> dict[str, tuple[str, str, str]]:
        """Messages shown dimmed, not yet confirmed: label -> (conversation, kind, text)."""
        return {label: (key, kind, text)
                for label, key, kind, text, _note in self._pending_entries()}

    def _page(self, pages: int) -> str:
        self.chat.text.yview_scroll(pages, "pages")
        self.chat._moved()
        return "break"

    def _type_into_input(self, char: str) -> None:
        if self.input._enabled:
            self.input.focus()
            self.input.insert(char)

    def _mention(self, name: str) -> None:
        if self.input._enabled and not core.same_conv(name, self.me):
            self.input.focus()
            self.input.insert(f"@{name} ")

    # --- leaving --------------------------------------------------------------------------
    def close(self) -> None:
        """Window closed, /exit or Quit: say goodbye to the server and go."""
        if self.closed:
            return
        self.closed = True
        for after_id in (self._poll_id, self._read_after):
            try:
                if after_id is not None:
                    self.root.after_cancel(after_id)
            except Exception:
                pass
        session, self.session = self.session, None
        try:
            self.root.withdraw()
        except tk.TclError:
            pass
        if session is not None:
            session.close(timeout=2.0)
        try:
            self.root.destroy()
        except tk.TclError:
            pass

    def _report_exception(self, exc_type, exc, tb) -> None:
        self.errors.append(exc)
        log.error("error in the window", exc_info=(exc_type, exc, tb))
