"""The Parley window: wiring between the widgets and a network session.

The Tk thread never touches a socket.  ``parley.client.session.Session`` runs
the connection in its own thread and hands events over through a queue, which
``ChatApp._poll`` drains with ``after()`` every few milliseconds, a bounded
batch per tick, so a burst of messages never freezes the window.  What is
shown is decided in ``render.py`` (pure, unit-tested); the widgets are in
``widgets.py`` and the look in ``theme.py``.
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import queue
import threading
import time
import tkinter as tk
import tkinter.font as tkfont
from dataclasses import dataclass
from tkinter import ttk
from typing import Any, Optional

from ... import __version__
from ... import protocol as p
from ..session import ConnectFailed, NameRefused, OfflineQueueFull, Session, StateChanged
from . import settings
from . import theme as themes
from .render import (HELP, Formatter, explain_name, parse_input, refused_name, status_text,
                     validate_host, validate_port)
from .widgets import (BrandMark, ChatView, ConnectCard, MessageInput, StatusBar, UserList,
                      circle_image)

from .app import DEFAULT_HOST, DEFAULT_PORT

log = logging.getLogger("parley.gui")


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


@dataclass
class Pending:
    """A message of mine the server has not confirmed yet."""
    kind: str            # say | me
    text: str
    acked: bool = False


class ChatApp:
    """The window and its conversation with one server."""

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
        self.fmt = Formatter(emoji=self.emoji)

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
        self.users: set[str] = set()
        self.users_dirty = True
        self.replayed: set[int] = set()   # ids replayed by a welcome: users already current
        self.pending: "collections.OrderedDict[str, Pending]" = collections.OrderedDict()
        self.pending_dirty = False
        self.limits: dict = {}

        # responsiveness figures (read by tests and --log-level debug)
        self.ticks = 0
        self.max_gap = 0.0
        self.max_tick = 0.0
        self._last_tick: Optional[float] = None
        self.events_handled = 0

        root.title("Parley")
        root.minsize(self.theme.px(640), self.theme.px(420))
        width = min(self.theme.px(1040), max(640, root.winfo_screenwidth() - 40))
        height = min(self.theme.px(680), max(420, root.winfo_screenheight() - 60))
        root.geometry(f"{width}x{height}")
        self._build(name)
        root.protocol("WM_DELETE_WINDOW", self.close)
        root.bind_all("<Control-q>", lambda e: self.close())
        root.bind_all("<Control-l>", lambda e: self.input.focus())
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

        # sidebar: brand, server, who is online
        side = self.sidebar = ttk.Frame(main, style="Sidebar.TFrame", width=px(230))
        side.grid(row=0, column=0, sticky="nsw")
        side.grid_propagate(False)
        side.columnconfigure(0, weight=1)
        side.rowconfigure(3, weight=1)
        brand = ttk.Frame(side, style="Sidebar.TFrame", padding=(px(16), px(16), px(16), px(8)))
        brand.grid(row=0, column=0, sticky="ew")
        self.brand_mark = BrandMark(brand, th, px(32), th.palette.sidebar)
        self.brand_mark.grid(row=0, column=0, rowspan=2, padx=(0, px(10)))
        ttk.Label(brand, text="Parley", style="Brand.TLabel").grid(row=0, column=1, sticky="w")
        self.server_label = ttk.Label(brand, text=f"{self.host}:{self.port}",
                                      style="SidebarDim.TLabel")
        self.server_label.grid(row=1, column=1, sticky="w")
        self.side_rule = tk.Frame(side, height=1, background=th.palette.border)
        self.side_rule.grid(row=1, column=0, sticky="ew", padx=px(16), pady=(px(8), px(10)))
        self.online_label = ttk.Label(side, text="ONLINE \u2014 0", style="Caps.TLabel",
                                      padding=(px(16), px(2), px(16), px(4)))
        self.online_label.grid(row=2, column=0, sticky="ew")
        self.userlist = UserList(side, th, on_pick=self._mention)
        self.userlist.grid(row=3, column=0, sticky="nsew")

        self.divider = tk.Frame(main, width=1, background=th.palette.border)
        self.divider.grid(row=0, column=1, sticky="ns")

        # the conversation and the input
        chat = self.chat_frame = ttk.Frame(main, style="Chat.TFrame")
        chat.grid(row=0, column=2, sticky="nsew")
        chat.columnconfigure(0, weight=1)
        chat.rowconfigure(0, weight=1)
        self.chat = ChatView(chat, th, max_entries=self.args.scrollback,
                             on_type=self._type_into_input)
        self.chat.grid(row=0, column=0, sticky="nsew")
        self.input = MessageInput(chat, th, on_submit=self.submit,
                                  placeholder="Message everyone \u00b7 /help for commands")
        self.input.grid(row=1, column=0, sticky="ew", padx=px(18), pady=(px(6), px(16)))

        self.status_rule = tk.Frame(main, height=1, background=th.palette.border)
        self.status_rule.grid(row=1, column=0, columnspan=3, sticky="ew")
        self.status = StatusBar(main, th, on_theme=self.toggle_theme)
        self.status.grid(row=2, column=0, columnspan=3, sticky="ew")
        self.status.set_right(f"Parley {__version__}")

        self.card = ConnectCard(root, th, on_connect=self.connect, on_quit=self.close,
                                name=name, host=self.host, port=str(self.port))
        self.input.set_enabled(False)

    def set_theme(self, name: str) -> None:
        """Switch between the dark and the light theme while running."""
        self.theme = themes.build(self.root, name, self.args.font_size)
        th = self.theme
        for w in (self.chat, self.userlist, self.input, self.card, self.status):
            w.apply_theme(th)
        self.brand_mark.apply_theme(th, th.palette.sidebar)
        for rule in (self.side_rule, self.divider, self.status_rule):
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
        if (self.session is not None and self.awaiting_name and same_place
                and self.session.state.value != "closed"):
            self.awaiting_name = False
            self.session.set_name(name)
            self.card.say(f"Joining as \u201c{name}\u201d\u2026")
            return
        self._start_session(name, host, port)

    def _start_session(self, name: str, host: str, port: int) -> None:
        self._drop_session()
        self.host, self.port = host, port
        self.server_label.configure(text=f"{host}:{port}")
        self.joined = False
        self.awaiting_name = False
        self.state, self.detail, self.retry_at = "connecting", "", None
        self.card.say(f"Connecting to {host}:{port}\u2026")
        opts = dict(client="parley-gui", retry_first=True)
        opts.update(self.session_options)
        self.session = Session(host, port, name, **opts)
        self.session.start()
        self._refresh_status()

    def _drop_session(self) -> None:
        old, self.session = self.session, None
        if old is not None:
            # close() waits for the session thread; never block the window for that
            threading.Thread(target=old.close, name="parley-close", daemon=True).start()
        self.chat.append(self._give_up_pending("you switched to another connection"))

    def _give_up_pending(self, reason: str) -> list:
        """Messages that will never be sent are shown as not sent, never just dropped."""
        entries = [self.fmt.refused(item.kind, item.text, reason)
                   for item in self.pending.values() if not item.acked]
        self.pending.clear()
        self.pending_dirty = True
        return entries

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
        batch: list = []
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
                self._handle(ev, batch)
            else:
                more = True
        if batch:
            self.chat.append(batch)
        if self.users_dirty:
            self.users_dirty = False
            self.userlist.set_users(self.users, self.me)
            self.online_label.configure(text=f"ONLINE \u2014 {len(self.users)}")
        if self.pending_dirty:
            self.pending_dirty = False
            self._render_pending()
        self._refresh_status()
        return more

    def _handle(self, ev: Any, batch: list) -> None:
        fmt = self.fmt
        if isinstance(ev, p.Message):
            if self.me and ev.sender.casefold() == self.me.casefold():
                self._settle_own(ev)
            batch.append(fmt.message(ev))
        elif isinstance(ev, p.Join):
            if ev.id not in self.replayed:
                self.users.add(ev.name)
                self.users_dirty = True
            batch.append(fmt.join(ev))
        elif isinstance(ev, p.Leave):
            if ev.id not in self.replayed:
                self.users = {u for u in self.users if u.casefold() != ev.name.casefold()}
                self.users_dirty = True
            batch.append(fmt.leave(ev))
        elif isinstance(ev, StateChanged):
            self._state_changed(ev, batch)
        elif isinstance(ev, p.Welcome):
            self._welcome(ev, batch)
        elif isinstance(ev, p.UserList):
            self.users = set(ev.users)
            self.users_dirty = True
        elif isinstance(ev, p.Ack):
            item = self.pending.get(ev.label)
            if item is not None:
                item.acked = True
                self.pending_dirty = True
        elif isinstance(ev, p.Error):
            item = self.pending.pop(ev.label, None) if ev.label else None
            if item is not None:
                self.pending_dirty = True
                batch.append(fmt.refused(item.kind, item.text, ev.message))
                if not self.input.get().strip():
                    self.input.set(("/me " if item.kind == "me" else "") + item.text)
            else:
                batch.append(fmt.info(f"\u2715 {ev.message} ({ev.code})", "error"))
                if not self.joined:          # e.g. version_unsupported, at hello time
                    self.card.show()
                    self.card.say(f"The server refused the connection: {ev.message}.", "error")
        elif isinstance(ev, p.Bye):
            why = ev.message or p.LEAVE_REASONS.get(ev.reason or "", ev.reason) or "no reason given"
            batch.append(fmt.info(f"The server closed the connection: {why}.", "system"))
            self.bye_shown = True
        elif isinstance(ev, NameRefused):
            self._name_refused(ev)
        elif isinstance(ev, ConnectFailed):
            self.state, self.detail = "closed", ev.error
            self.card.show()
            self.card.say(f"Cannot connect to {ev.host}:{ev.port}: {ev.error}.", "error")

    def _settle_own(self, ev: p.Message) -> None:
        """My message came back from the server: its pending line goes."""
        if ev.label and ev.label in self.pending:
            del self.pending[ev.label]
            self.pending_dirty = True
            return
        for label, item in self.pending.items():
            if item.kind == ev.kind and item.text == ev.text:
                del self.pending[label]
                self.pending_dirty = True
                return

    def _state_changed(self, ev: Any, batch: list) -> None:
        state = ev.state.value
        self.state, self.detail = state, ev.detail
        self.retry_at = (time.monotonic() + ev.retry_in) if ev.retry_in is not None else None
        if state == "reconnecting":
            if not self.joined:
                if not self.awaiting_name:
                    wait = (f" Retrying in {max(1, round(ev.retry_in))} s\u2026"
                            if ev.retry_in else "")
                    self.card.say(f"Cannot reach {self.host}:{self.port} ({ev.detail}).{wait} "
                                  "Check the address, or start a server with "
                                  "\u201cpython python_server.py\u201d.", "error")
            elif not self.outage:
                self.outage = True
                self.userlist.set_online(False)
                lost = "" if self.bye_shown else f"Connection lost ({ev.detail}). "
                batch.append(self.fmt.info(
                    f"{lost}Reconnecting\u2026 messages you send meanwhile are delivered once "
                    "the connection is back.", "system"))
            self.bye_shown = False
            self.pending_dirty = True
        elif state == "closed" and not self.closed:
            if self.joined:
                batch.append(self.fmt.info(f"Disconnected: {ev.detail}.", "error"))
            elif self.card.level != "error":
                self.card.say(f"Disconnected: {ev.detail}.", "error")
            batch.extend(self._give_up_pending("the connection is closed"))
            self.input.set_enabled(True)
            self.pending_dirty = True
        elif state == "connected":
            self.pending_dirty = True

    def _welcome(self, w: p.Welcome, batch: list) -> None:
        first = not self.joined
        self.joined = True
        self.awaiting_name = False
        self.me = w.name
        self.fmt.me = w.name
        self.limits = dict(w.limits or {})
        self.users = set(w.users)
        self.users_dirty = True
        self.replayed = {h["id"] for h in w.history if isinstance(h.get("id"), int)}
        self.root.title(f"Parley \u2014 {w.name} @ {self.host}:{self.port}")
        if self.card.visible:
            self.card.hide()
        self.input.set_enabled(True)
        self.userlist.set_online(True)
        if first:
            settings.save({"name": w.name, "host": self.host, "port": self.port,
                           "theme": self.theme.palette.name})
            others = len(w.users) - 1
            company = ("Nobody else is here yet." if others <= 0 else
                       f"{others} other{'s are' if others != 1 else ' is'} online.")
            batch.append(self.fmt.info(
                f"Welcome, {w.name}! You are connected to {self.host}:{self.port}. {company} "
                "Type /help for commands.", "system"))
            self.input.focus()
        elif self.outage:
            batch.append(self.fmt.info(f"Reconnected to {self.host}:{self.port}.", "system"))
        self.outage = False
        self.pending_dirty = True

    def _name_refused(self, ev: Any) -> None:
        self.awaiting_name = True
        self.joined = False
        self.card.show()
        self.card.say(refused_name(ev.name, ev.code, ev.message), "error")
        self.card.name_var.set(ev.name)
        self.card.focus_name()
        self.input.set_enabled(False)

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

    # --- sending ------------------------------------------------------------------------
    def _render_pending(self) -> None:
        if self.state == "connected":
            note = "sending\u2026"
        else:
            note = "waiting for the connection"
        entries = [self.fmt.pending(label, item.kind, item.text,
                                    "sent" if item.acked else note)
                   for label, item in self.pending.items()]
        self.chat.set_pending(entries)

    def submit(self, raw: str) -> bool:
        """The input box's Enter: True if the text was used (the box is cleared)."""
        cmd = parse_input(raw)
        fmt = self.fmt
        if cmd.action == "empty":
            return False
        if cmd.action == "exit":
            self.root.after_idle(self.close)
            return True
        if cmd.action == "help":
            self.chat.jump_to_end()
            self.chat.append([fmt.info("\n".join(HELP))])
            return True
        if cmd.action == "users":
            self.chat.jump_to_end()
            self.chat.append([fmt.users(self.users)])
            return True
        if cmd.action in ("unknown", "usage"):
            self.chat.jump_to_end()
            self.chat.append([fmt.info(cmd.text, "error")])
            return cmd.action == "unknown"
        limit = int(self.limits.get("max_text", 4000) or 4000)
        if len(cmd.text) > limit:
            self.chat.append([fmt.info(f"That message is {len(cmd.text)} characters long; the "
                                       f"server accepts at most {limit}. Shorten it and send "
                                       "again.", "error")])
            return False
        if self.session is None:
            self.chat.append([fmt.info("Not connected to a server.", "error")])
            return False
        try:
            if cmd.action == "me":
                label = self.session.me(cmd.text)
            else:
                label = self.session.say(cmd.text)
        except OfflineQueueFull as e:
            self.chat.append([fmt.info(f"Not sent: {e}.", "error")])
            return False
        self.pending[label] = Pending(cmd.action if cmd.action == "me" else "say", cmd.text)
        self.chat.jump_to_end()
        self._render_pending()
        self._refresh_status()
        return True

    def _page(self, pages: int) -> str:
        self.chat.text.yview_scroll(pages, "pages")
        self.chat._moved()
        return "break"

    def _type_into_input(self, char: str) -> None:
        if self.input._enabled:
            self.input.focus()
            self.input.insert(char)

    def _mention(self, name: str) -> None:
        if self.input._enabled and name.casefold() != self.me.casefold():
            self.input.focus()
            self.input.insert(f"@{name} ")

    # --- leaving --------------------------------------------------------------------------
    def close(self) -> None:
        """Window closed, /exit or Quit: say goodbye to the server and go."""
        if self.closed:
            return
        self.closed = True
        try:
            self.root.after_cancel(self._poll_id)
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
