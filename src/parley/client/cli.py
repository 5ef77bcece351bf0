"""The terminal client.

Three ways to use it:

* interactive (stdin is a terminal): you are in one conversation at a time
  (a room ``#general`` or a direct conversation ``@bob``), shown in the prompt
  (``#general> ``); what you type goes there.  Lines of other conversations are
  printed with a ``[#room]`` / ``[@bob]`` prefix.  /switch changes the
  conversation, /help lists the commands.  Incoming lines are printed above
  the input line without garbling it (prompt_toolkit when it is installed,
  otherwise readline with a redraw);
* scripting (stdin is a pipe or file): every input line is sent as a message
  (to #general, ``--room #x`` or ``--to NAME``); at the end of input the client
  waits until the server acknowledged each one, then exits (0 if all were
  accepted);
* ``--listen``: print what happens, one line per event (``--json``: every
  frame as JSON Lines) in every conversation (``--all``, the default) or one
  (``--room #x``, joined if needed; ``--to NAME``) until interrupted.

All networking is in ``parley.client.session`` and all parsing in
``parley.client.core``; this module only renders events and turns what the
user types into session calls.
"""
from __future__ import annotations

import argparse
import collections
import getpass
import json
import logging
import os
import queue
import re
import socket
import sys
import threading
import time
from typing import Callable, Optional

from .. import __version__
from .. import protocol as p
from . import core
from .logins import LoginStore
from .session import (AccountChanged, ConnectFailed, ConversationsChanged, LoggedOut,
                      MessageRemoved, RemovedFromRoom,
                      NameRefused, OfflineQueueFull, Session, SessionState, StateChanged)
from .tls import TlsOptions, TlsRefused, TrustQuestion

HELP = core.HELP
REFUSED = (p.THROTTLED, p.TOO_MANY_CONNECTIONS, p.SERVER_FULL)   # a connection turned away
EXIT_LOGIN = 3          # the server refused the login (or logged this device out)
LOGIN_TRIES = 3         # interactive: wrong passwords before giving up

TRUNCATED_NOTE = ("you missed more than the server sends in one catch-up: the oldest of it "
                  "is not shown (/history shows older messages)")

TROUBLESHOOTING = """  Is the server running?  Start one with:  python python_server.py
  Check the address:      python python_client.py --host HOST --port PORT
  A firewall may also block the port."""

# 256-colour palette readable on dark and light terminals, indexed by core.name_colour_index
NAME_COLOURS = [39, 208, 141, 77, 203, 214, 45, 171, 113, 220, 75, 168]
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
TIME = "%H:%M:%S"


def name_colour(name: str) -> int:
    return NAME_COLOURS[core.name_colour_index(name, len(NAME_COLOURS))]


def local_time(ts: str) -> str:
    """Server UTC timestamp -> local HH:MM:SS."""
    return core.local_time(ts, TIME)


class Formatter:
    """Turns events into terminal lines, coloured or not.  ``current`` is the
    conversation on screen: lines of others get a ``[#room]`` prefix."""

    def __init__(self, me: str = "", colour: bool = True, hints: bool = True,
                 current: Optional[str] = p.GENERAL,
                 is_guest: Callable[[str], bool] = lambda name: False,
                 marks_guests: Callable[[], bool] = lambda: False,
                 is_removed: Callable[[int], bool] = lambda id: False):
        self.me = me
        self.is_removed = is_removed   # was this message id removed by a moderator?
        self.is_guest = is_guest     # is this name a guest (no account owns it)?
        self.marks_guests = marks_guests   # worth marking (someone online has an account)?
        self.colour = colour
        self.hints = hints          # interactive: mention /help
        self.welcomed = False
        self.current = current

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def name(self, name: str) -> str:
        bold = "1;" if name.casefold() == self.me.casefold() else ""
        return self._c(f"{bold}38;5;{name_colour(name)}", name)

    def who(self, name: str, guest: Optional[bool] = None) -> str:
        """A name, with a dim "(guest)" after it for a guest."""
        if guest is None:
            guest = self.is_guest(name)
        mark = guest and self.marks_guests()
        return self.name(name) + (self.dim(" (guest)") if mark else "")

    def dim(self, text: str) -> str:
        return self._c("2", text)

    def error(self, text: str) -> str:
        return self._c("31", f"! {text}")

    def notice(self, text: str) -> str:
        return self._c("32", f"*** {text}")

    def text(self, text: str) -> str:
        text = _UNSAFE.sub("\ufffd", text).replace("\t", "    ")
        body = "\n    ".join(text.split("\n"))
        if core.mentions(text, self.me):
            body = self._c("1;33", body)          # a mention of me
        return body

    def prefix(self, conv: Optional[str]) -> str:
        if conv is None or core.same_conv(conv, self.current):
            return ""
        return self._c("36", core.conv_prefix(conv).rstrip()) + " "

    def message(self, ev: p.Message, when: Optional[str] = None, conv: Optional[str] = "") -> str:
        if conv == "":
            conv = p.conversation(ev, self.me)
        when = self.dim(when if when is not None else local_time(ev.ts))
        who = self.who(ev.sender, True) if ev.guest else self.name(ev.sender)
        if ev.deleted or self.is_removed(ev.id):
            return f"{self.prefix(conv)}{when} {who}: " + self.dim("[message removed]")
        if ev.kind == "me":
            return f"{self.prefix(conv)}{when} * {who} {self.text(ev.text)}"
        return f"{self.prefix(conv)}{when} {who}: {self.text(ev.text)}"

    def history_frame(self, ev: p.Event) -> Optional[str]:
        """A message, join, leave or topic (live or from a history page)."""
        if isinstance(ev, p.Message):
            return self.message(ev)
        conv = p.conversation(ev, self.me)
        if isinstance(ev, p.Join):
            return self.prefix(conv) + self.dim(f"{local_time(ev.ts)} → {ev.name} joined")
        if isinstance(ev, p.Leave):
            why = p.LEAVE_REASONS.get(ev.reason, ev.reason)
            return self.prefix(conv) + self.dim(f"{local_time(ev.ts)} ← {ev.name} left ({why})")
        if isinstance(ev, p.Topic):
            what = f"set the topic: {ev.topic}" if ev.topic else "cleared the topic"
            return self.prefix(conv) + self.dim(f"{local_time(ev.ts)} ") + \
                f"{self.name(ev.by)} {self.text(what)}"
        if isinstance(ev, p.Moderation):
            return self.prefix(conv) + self.dim(f"{local_time(ev.ts)} ") + \
                self._c("35", "* " + self.text(core.mod_line(ev, self.me)))
        return None

    def event(self, ev: object) -> Optional[str]:
        if isinstance(ev, p.HISTORY_FRAMES):
            return self.history_frame(ev)
        if isinstance(ev, p.UserList):
            if ev.room:
                return self.prefix(ev.room) + self.users(ev.users, f"in {ev.room}")
            return self.users(ev.users)
        if isinstance(ev, p.Presence):
            bits = []
            if ev.joined_count:
                bits.append(f"→ {ev.joined_count} joined ({', '.join(ev.joined)}"
                            + ("…" if ev.joined_count > len(ev.joined) else "") + ")")
            if ev.left_count:
                bits.append(f"← {ev.left_count} left ({', '.join(ev.left)}"
                            + ("…" if ev.left_count > len(ev.left) else "") + ")")
            return self.prefix(ev.room) + self.dim(
                "; ".join(bits + [f"{ev.count} in {ev.room}"]))
        if isinstance(ev, p.Error):
            return self.error(f"{ev.message} ({ev.code})")
        if isinstance(ev, TlsRefused):
            return self.error(f"*** {ev.message}")
        if isinstance(ev, p.Bye) and ev.reason == p.BANNED:
            return self.error(f"*** {ev.message or 'banned from this server'}.  Not "
                              "reconnecting; /exit to leave")
        if isinstance(ev, p.Bye):
            return self._c("33", f"*** server: {ev.message or ev.reason}")
        if isinstance(ev, LoggedOut):
            return self.error(f"*** logged out: {ev.message}.  Your messages are no longer "
                              "sent; /exit, then log in again (--login)")
        if isinstance(ev, p.AccountInfo):
            return self.notice(f"the name {ev.name} is yours now: log in with --login "
                               "and your password next time")
        if isinstance(ev, p.AuditLog):
            n = len(ev.entries)
            return "\n".join([self.notice(f"the last {n} moderation action"
                                          f"{'s' if n != 1 else ''}"
                                          + (" (more with /audit N)" if ev.more else "") + ":")]
                             + ["  " + ln for ln in core.audit_table(ev.entries)])
        if isinstance(ev, p.Invited):
            return self.notice(f"{ev.by} invited you to {ev.room}: /join {ev.room}")
        if isinstance(ev, RemovedFromRoom):
            what = "kicked you from" if ev.action == "kick" else "banned you from"
            return self.error(f"{ev.by} {what} {ev.room}" + (f": {ev.reason}" if ev.reason else ""))
        if isinstance(ev, p.SessionList):
            lines = core.session_table(ev.sessions)
            return "\n".join([self.notice(f"{len(ev.sessions)} session"
                                          f"{'s' if len(ev.sessions) != 1 else ''}:")]
                             + ["  " + ln for ln in lines]
                             + [self.dim("  /revoke ID logs one out; /revoke --others all "
                                         "but this one")])
        if isinstance(ev, StateChanged):
            if ev.state is SessionState.RECONNECTING:
                return self._c("33", f"*** connection lost ({ev.detail}); "
                                     f"reconnecting in {ev.retry_in:g} s…")
            if ev.state is SessionState.CONNECTED and ev.detail.startswith("reconnected"):
                return self._c("32", f"*** {ev.detail}")
            return None
        if isinstance(ev, p.Welcome):
            if self.welcomed:               # a reconnect: who is here now
                line = self._c("32", "*** ") + self.users(ev.users)
                if ev.truncated:
                    line += "\n" + self._c("33", f"*** {TRUNCATED_NOTE}")
                return line
            self.welcomed = True
            hint = self.dim("  Type /help for commands.") if self.hints else ""
            rooms = [r.get("room") for r in (ev.rooms or []) if isinstance(r.get("room"), str)]
            where = f" You are in {', '.join(rooms)}." if len(rooms) > 1 else ""
            how = ""
            if ev.account:
                how = " (logged in)"
            elif ev.auth == p.AUTH_OPTIONAL and self.marks_guests():
                how = " (as a guest: /register keeps the name)" if self.hints else " (guest)"
            return (self._c("32", f"*** connected as {ev.name}{how}. ") + self.users(ev.users)
                    + where + hint)
        return None

    def users(self, users: list[str], where: str = "online") -> str:
        names = sorted(users, key=str.casefold)
        return f"{len(names)} {where}: " + ", ".join(self.who(n) for n in names)

    def room_info(self, ev: p.RoomInfo) -> str:
        who = (self.users(ev.members, "here") if ev.members is not None
               else f"{ev.count} here")
        topic = f" — topic: {self.text(ev.topic)}" if ev.topic else ""
        return self.prefix(ev.room) + self.notice(f"{ev.room}: ") + who + topic


def json_line(ev: object) -> Optional[str]:
    """A server frame as one JSON line (the welcome without its secret token and
    without its history, which follows as separate lines)."""
    if not isinstance(ev, p.Event) or isinstance(ev, (p.Ping, p.Pong)):
        return None
    d = ev.to_dict()
    if isinstance(ev, p.Welcome):
        d.pop("token", None)
        d.pop("history", None)
    return json.dumps(d, ensure_ascii=False)


class Asked:
    """What we asked the server, by label, so its answer can be shown in context.

    The answer is handled on another thread, and may come back before the
    asking thread has written down what it asked: ``ask`` holds the lock while
    sending and recording, and ``pop`` waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked: dict[str, tuple] = {}

    def ask(self, send: Callable[[], str], what: tuple) -> str:
        with self._lock:
            label = send()
            self._asked[label] = what
        return label

    def pop(self, label: Optional[str], default=None):
        with self._lock:
            return self._asked.pop(label, default)


# --- output that never garbles the input line ---------------------------------
def _readline_redisplay():
    """readline's own redraw (prompt, buffer and cursor where readline has it),
    or None where it cannot be reached."""
    try:
        import ctypes
        import readline
        lib = ctypes.CDLL(readline.__file__)
        fn = lib.rl_forced_update_display
        fn.restype = ctypes.c_int
        return fn
    except (ImportError, OSError, AttributeError, TypeError):
        return None


class PlainConsole:
    """input() with readline.  An incoming line is printed above the prompt and
    readline redraws the half-typed line with the cursor where it was.
    ``prompt()`` gives the prompt text (it shows the current conversation)."""

    def __init__(self, colour: bool, prompt: Callable[[], str]):
        self.lock = threading.Lock()
        self.reading = False
        self.colour = colour
        self.prompt_text = prompt
        self.shown = prompt()        # the prompt of the input() in progress
        try:
            import readline
            self.readline = readline
        except ImportError:    # pragma: no cover - Windows without pyreadline
            self.readline = None
        self.redisplay = _readline_redisplay() if self.readline else None

    def print(self, line: str) -> None:
        with self.lock:
            if not self.reading:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                return
            sys.stdout.write("\r\x1b[K" + line + "\n")
            sys.stdout.flush()
            if self.redisplay is not None:
                self.redisplay()
            else:
                typed = self.readline.get_line_buffer() if self.readline else ""
                shown = "\x1b[1m" + self.shown + "\x1b[0m" if self.colour else self.shown
                sys.stdout.write(shown + typed)
                sys.stdout.flush()

    def read(self) -> str:
        # Hold the lock while readline draws the prompt: its pre-input hook runs
        # once the prompt is on screen and only then lets incoming lines through,
        # so they can never cut into the prompt's own escape codes.
        self.shown = self.prompt_text()
        # \001 and \002 tell readline the escape codes take no room on screen
        prompt = "\001\x1b[1m\002" + self.shown + "\001\x1b[0m\002" if self.colour else self.shown
        hooked = (self.readline is not None and sys.stdin.isatty() and sys.stdout.isatty())
        self.lock.acquire()
        if hooked:
            self.readline.set_pre_input_hook(self._prompt_shown)
        else:
            self.reading = True
            self.lock.release()
        try:
            return input(prompt)
        finally:
            if hooked:
                self.readline.set_pre_input_hook(None)
                if not self.reading:        # input() ended before the hook ran
                    self.lock.release()
            with self.lock:
                self.reading = False

    def _prompt_shown(self) -> None:
        self.reading = True
        self.lock.release()


# --- the client ---------------------------------------------------------------
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="parley", description="Parley chat client for the terminal and for scripts.",
        epilog="With stdin not a terminal, each input line is sent as a message (to #general, "
               "--room or --to) and the client exits once the server has acknowledged them "
               "all: 0 if every line was accepted, 1 if not (or not within --timeout).")
    ap.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=None,
                    help="server port (default 8888; 8889 with --tls)")
    ap.add_argument("--name", help="your user name (asked for if absent)")
    acc = ap.add_argument_group(
        "accounts", "Without a password you are a guest (when the server allows guests). "
                    "Logged in, the client keeps the login token the server gives this "
                    "device and reconnects with it; the password is never stored or sent again.")
    acc.add_argument("--login", action="store_true",
                     help="log in to the account NAME: asks for its password (no echo)")
    acc.add_argument("--no-keep-login", action="store_true",
                     help="do not keep the login token on this computer (by default it is "
                          "kept in the config directory, so the next start needs no password; "
                          "/logout forgets it)")
    acc.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (scripts; the "
                          "other lines are the messages)")
    acc.add_argument("--register", action="store_true",
                     help="make the account NAME (asks for a new password twice, or "
                          "--password-stdin)")
    acc.add_argument("--device", metavar="LABEL",
                     help="this login's name in /sessions (default: terminal on HOSTNAME)")
    tls = ap.add_argument_group(
        "TLS", "A certificate that does not verify (self-signed) is trusted on first use: its "
               "SHA-256 fingerprint is shown (interactive: you are asked) and remembered in "
               "~/.config/parley/known_hosts; if it ever changes the client refuses to connect.")
    tls.add_argument("--tls", action="store_true",
                     help="connect with TLS (the server's --tls-port, 8889 by default; "
                          "--port then defaults to 8889)")
    tls.add_argument("--ca", metavar="FILE",
                     help="with --tls: accept only a certificate signed by this CA (PEM), "
                          "instead of the system's CAs or trust on first use")
    tls.add_argument("--trust-on-first-use", action="store_true",
                     help="with --tls, not interactive: trust a server's certificate seen for "
                          "the first time without asking (scripts refuse it otherwise)")
    tls.add_argument("--known-hosts", metavar="FILE",
                     help="where trusted fingerprints are kept "
                          "(default ~/.config/parley/known_hosts)")
    target = ap.add_mutually_exclusive_group()
    target.add_argument("--room", metavar="ROOM",
                        help="scripting: send every line to this room (joined if needed); "
                             "--listen: follow only this room; interactive: start in it. "
                             "The '#' may be left out (a shell takes #... for a comment)")
    target.add_argument("--to", metavar="NAME",
                        help="scripting: send every line to NAME as a direct message; "
                             "--listen: follow only the conversation with NAME")
    target.add_argument("--all", action="store_true",
                        help="--listen: follow every conversation you are in (the default)")
    ap.add_argument("--listen", action="store_true",
                    help="print incoming messages one per line until interrupted")
    ap.add_argument("--json", action="store_true",
                    help="with --listen: print every frame as JSON Lines")
    ap.add_argument("--no-color", action="store_true",
                    help="no colours (also when NO_COLOR is set)")
    ap.add_argument("--plain", action="store_true",
                    help="do not use prompt_toolkit even if it is installed")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="scripting: seconds to wait for acknowledgements at the end (default 30)")
    ap.add_argument("--log-level", default="warning",
                    choices=["debug", "info", "warning", "error"], help="default warning")
    ap.add_argument("--version", action="version", version=f"parley {__version__}")
    args = ap.parse_args(argv)
    if args.port is None:
        args.port = 8889 if args.tls else 8888
    if (args.ca or args.trust_on_first_use or args.known_hosts) and not args.tls:
        ap.error("--ca, --trust-on-first-use and --known-hosts go with --tls")
    if args.room is not None:
        room = args.room if args.room.startswith("#") else "#" + args.room
        problem = p.validate_room(room)
        if problem:
            ap.error(f"--room {args.room}: {problem} ({p.ROOM_RULES})")
        args.room = room
    if args.to is not None:
        problem = p.validate_name(args.to.lstrip("@"))
        if problem:
            ap.error(f"--to {args.to}: {problem}")
        args.to = args.to.lstrip("@")
    if args.all and not args.listen:
        ap.error("--all goes with --listen")
    if args.password_stdin and sys.stdin.isatty():
        ap.error("--password-stdin reads a pipe: echo … | parley --password-stdin "
                 "(at a terminal, use --login)")
    if args.register or args.password_stdin:
        args.login = True
    return args


class Client:
    def __init__(self, args: argparse.Namespace, interactive: bool):
        self.args = args
        self.interactive = interactive
        self.session: Optional[Session] = None
        self.failed = 0          # messages the server refused
        self.welcome: Optional[p.Welcome] = None
        self.current = p.GENERAL                     # the conversation on screen
        self.asked = Asked()                         # label -> what we asked, to show the answer
        self.cursor = core.HistoryCursor()           # /history goes on from here
        self.unread_due = False                      # an unread summary is owed
        self.backlog: collections.deque = collections.deque()   # events read ahead
        self.exit_code = 0
        self.logging_out = False                     # /logout sent: the bye that follows is ours
        self.ask_secret: Callable[[str], str] = getpass.getpass   # no echo

    def read_password(self, confirm: bool = False, prompt: str = "Password: ") -> Optional[str]:
        """Interactive: a password typed without echo (twice with ``confirm``, and
        checked against the rules); None if the user gives up (Ctrl-C, Ctrl-D, empty)."""
        while True:
            try:
                first = self.ask_secret(prompt)
                if not first:
                    return None
                if not confirm:
                    return first
                problem = core.password_problem(first)
                if problem:
                    print(f"That password won't do: {problem}.", flush=True)
                    continue
                if self.ask_secret("Again, to be sure: ") == first:
                    return first
                print("The two passwords differ; once more.", flush=True)
            except (EOFError, KeyboardInterrupt):
                print()
                return None

    def err(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def ask_name(self, reason: str = "") -> Optional[str]:
        if reason:
            print(reason)
        while True:
            try:
                name = input("Username: ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                return None
            problem = p.validate_name(name)
            if problem is None:
                return name
            print(f"That name won't do: {problem}. ({p.NAME_RULES})")

    def connect(self, name: str) -> Optional[int]:
        """Start the session and wait for the welcome; an exit code on failure."""
        a = self.args
        tls = None
        if a.tls:
            trust = "ask" if self.interactive else ("yes" if a.trust_on_first_use else "no")
            tls = TlsOptions(ca=a.ca, known_hosts=a.known_hosts, trust=trust)
        password = None
        if a.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                self.err("parley: --password-stdin: the first line of stdin is empty")
                return 2
        elif a.login and self.interactive:
            password = self.read_password(confirm=a.register,
                                          prompt=("New password" if a.register else "Password")
                                          + f" for {name}: ")
            if password is None:
                return 1
        elif a.login:
            self.err("parley: --login asks for the password at a terminal; scripts use "
                     "--password-stdin")
            return 2
        if a.register and password is not None and core.password_problem(password):
            self.err(f"parley: --register: {core.password_problem(password)}")
            return 2
        device = a.device or f"terminal on {socket.gethostname()}"[:p.DEVICE_MAX]
        self.session = Session(a.host, a.port, name, client="parley-cli", tls=tls,
                               password=password, register=a.register, device=device,
                               logins=None if a.no_keep_login else LoginStore())
        del password
        self.session.start()
        tries = 0
        while True:
            ev = self.session.events.get()
            if isinstance(ev, ConnectFailed):
                self.err(f"Cannot connect to {ev.host}:{ev.port}: {ev.error}.\n{TROUBLESHOOTING}")
                return 1
            if isinstance(ev, TrustQuestion):
                self.session.trust(self.ask_trust(ev))
                continue
            if isinstance(ev, TlsRefused):
                self.err(f"parley: {ev.message}")
                if not ev.changed and not ev.expected and a.tls and not a.ca \
                        and not self.interactive:
                    self.err("  Check the fingerprint with the server's operator (the server "
                             "prints it at start), then run once with --trust-on-first-use.")
                self.session.close()
                return 1
            if isinstance(ev, NameRefused) and ev.code not in (p.NAME_TAKEN, p.NAME_INVALID):
                code = self._login_refused(ev, tries)
                tries += 1
                if code is not None:
                    self.session.close()
                    return code
            elif isinstance(ev, NameRefused):
                if not self.interactive:
                    self.err(f"parley: {ev.message}")
                    self.session.close()
                    return 1
                new = self.ask_name(f"{ev.message}.")
                if new is None:
                    self.session.close()
                    return 1
                self.session.set_name(new)
            elif isinstance(ev, LoggedOut):
                self.err(f"parley: logged out: {ev.message}")
                self.session.close()
                return EXIT_LOGIN
            elif isinstance(ev, p.Welcome):
                self.welcome = ev               # shown before the history that follows it
                info = self.session.tls_info
                if info is not None and self.interactive:
                    how = {"ca": "verified", "known_hosts": "trusted before (known_hosts)",
                           "first use": "trusted on first use"}.get(info.verified_by, "")
                    print(f"*** TLS ({info.version}), certificate {how}; SHA-256 fingerprint\n"
                          f"    {info.fingerprint}", flush=True)
                return None
            elif isinstance(ev, p.Error) and ev.code in (p.VERSION_UNSUPPORTED, p.TLS_REQUIRED,
                                                         p.BANNED):
                self.err(f"parley: {ev.message}")
                return 1
            elif isinstance(ev, p.Error) and ev.code == p.THROTTLED and self.session.token is None \
                    and a.login:
                # too many failed logins: the session says hello again after the wait
                if not self.interactive:
                    self.err(f"parley: login refused: {ev.message} ({ev.code})")
                    self.session.close()
                    return EXIT_LOGIN
                print(f"{ev.message}; trying again then…", flush=True)
            elif isinstance(ev, p.Error) and ev.code in REFUSED:
                # turned away before hello (too many connections, throttled, full)
                self.err(f"parley: the server refused the connection: {ev.message} ({ev.code})")
                if not self.interactive and not a.listen:
                    self.session.close()        # a script fails now rather than hang
                    return 1
            elif isinstance(ev, StateChanged) and ev.state is SessionState.CLOSED:
                self.err("parley: the connection closed before we could join")
                return 1
            elif isinstance(ev, StateChanged) and ev.state is SessionState.RECONNECTING:
                self.err(f"Connection lost ({ev.detail}); retrying in {ev.retry_in:g} s…")

    def _login_refused(self, ev: NameRefused, tries: int) -> Optional[int]:
        """The server refused a login (or wants one): ask again (interactive) or give
        the exit code.  Never shows the password."""
        hint = core.login_hint(ev.code, ev.message)
        fixable = ev.code in (p.NAME_REGISTERED, p.AUTH_REQUIRED, p.LOGIN_FAILED, p.BAD_PASSWORD)
        if not self.interactive or not fixable:
            why = ev.message or hint
            if ev.code == p.INSECURE:
                why += " (--tls)"
            elif ev.code == p.NAME_REGISTERED and not self.args.login:
                why += " (--login, or --password-stdin)"
            self.err(f"parley: login refused: {why} ({ev.code})")
            return EXIT_LOGIN
        if ev.code == p.LOGIN_FAILED and tries + 1 >= LOGIN_TRIES:
            self.err(f"parley: login refused: {hint} ({ev.code}), {LOGIN_TRIES} times")
            return EXIT_LOGIN
        register = ev.code == p.BAD_PASSWORD and self.args.register
        print(f"{hint[0].upper()}{hint[1:]}." if ev.code != p.BAD_PASSWORD
              else f"{ev.message}.", flush=True)
        if ev.code == p.NAME_REGISTERED:
            print("(an empty password picks another name)", flush=True)
        password = self.read_password(confirm=register,
                                      prompt=f"{'New password' if register else 'Password'} "
                                             f"for {ev.name}: ")
        if password is None:
            if ev.code != p.NAME_REGISTERED:
                return 1
            new = self.ask_name()
            if new is None:
                return 1
            self.session.set_name(new)
            return None
        self.session.set_name(ev.name, password=password, register=register)
        return None

    def ask_trust(self, q: TrustQuestion) -> bool:
        """Interactive: may we trust a certificate we have never seen?"""
        print(f"The certificate of {q.host}:{q.port} is not signed by a known authority"
              f"{' (' + q.reason + ')' if q.reason else ''}.\n"
              f"Its SHA-256 fingerprint is:\n  {q.fingerprint}\n"
              f"Compare it with the one the server printed at start.", flush=True)
        while True:
            try:
                answer = input("Trust it and remember it for this server? [y/N] ").strip().lower()
            except (EOFError, KeyboardInterrupt):
                print()
                return False
            if answer in ("y", "yes"):
                return True
            if answer in ("", "n", "no"):
                return False

    def next_event(self, timeout: Optional[float] = None):
        """The next session event: first those read ahead by ``join_and_wait``."""
        if self.backlog:
            return self.backlog.popleft()
        if timeout == 0:
            return self.session.events.get_nowait()
        return self.session.events.get(timeout=timeout)

    def join_and_wait(self, room: str) -> Optional[str]:
        """Scripting and --listen: join ``room`` unless already in it; None when
        in, else why not.  Events read meanwhile are kept, in order, for later."""
        s = self.session
        if s.conversation(room) is not None:
            return None
        if not s.rooms_enabled:
            return "this server has no rooms (only #general)"
        label = s.join(room)
        deadline = time.monotonic() + self.args.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"no answer to joining {room} within {self.args.timeout:g} s"
            try:
                ev = s.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if isinstance(ev, p.Error) and ev.label == label:
                return f"{ev.message} ({ev.code})"
            self.backlog.append(ev)
            if isinstance(ev, p.RoomInfo) and ev.label == label:
                return None
            if isinstance(ev, StateChanged) and ev.state is SessionState.CLOSED:
                return "the connection closed"

    # --- rendering -------------------------------------------------------------
    def prompt(self) -> str:
        return f"{self.current}> "

    def render(self, fmt: Formatter, ev: object) -> list[str]:
        """Lines to show for one session event (interactive mode)."""
        s = self.session
        fmt.current = self.current
        if isinstance(ev, p.Welcome):
            fmt.me = ev.name
            if self.welcome is not None and ev.instance != self.welcome.instance:
                self.cursor = core.HistoryCursor()      # another database: other ids
            self.welcome = ev
        if isinstance(ev, p.Error) and ev.label is not None:
            self.failed += 1
            asked = self.asked.pop(ev.label, None)
            if asked and asked[0] == "join" and core.same_conv(self.current, asked[1]):
                self.current = asked[2]          # could not join: back to where we were
                return [fmt.error(f"{ev.message} ({ev.code})"),
                        fmt.notice(f"back in {self.current}")]
        if isinstance(ev, p.HISTORY_FRAMES):
            conv = p.conversation(ev, fmt.me)
            if isinstance(ev, (p.Join, p.Leave)) and ev.name.casefold() == fmt.me.casefold() \
                    and getattr(ev, "reason", None) != p.PART:
                return []          # my own coming and going (a reconnect's catch-up)
            if core.same_conv(conv, self.current):
                self.cursor.seen(conv, ev.id)
                s.mark_read(conv, ev.id)
            elif not isinstance(ev, p.Message):
                return []          # joins, leaves, topics of other rooms: not worth a line
            return [fmt.history_frame(ev)]
        if isinstance(ev, p.RoomInfo):
            return self._room_info(fmt, ev)
        if isinstance(ev, p.HistoryPage):
            return self._history_page(fmt, ev)
        if isinstance(ev, p.SearchResults):
            return self._results(fmt, ev)
        if isinstance(ev, p.RoomList):
            return self._rooms(fmt, ev)
        if isinstance(ev, p.Unread):
            conv = core.event_conversation(ev, fmt.me)
            if ev.count and not core.same_conv(conv, self.current):
                self.unread_due = True
            return []
        if isinstance(ev, p.Presence) and not core.same_conv(ev.room, self.current):
            return []
        if isinstance(ev, p.Ack):
            asked = self.asked.pop(ev.label, None)
            return [self._acked(fmt, asked)] if asked else []
        if isinstance(ev, p.SessionList):
            self.asked.pop(ev.label, None)
        if isinstance(ev, p.AccountInfo):
            self.asked.pop(ev.label, None)
            if ev.label is None:             # registered from another connection
                return [fmt.notice(f"the name {ev.name} is an account now")]
        if isinstance(ev, LoggedOut):
            if self.logging_out:             # /logout: that is what we asked for
                return []
            self.exit_code = EXIT_LOGIN
        if isinstance(ev, (ConversationsChanged, AccountChanged, MessageRemoved)):
            return []                # (a removal is shown by its mod frame's line)
        if isinstance(ev, p.AuditLog):
            self.asked.pop(ev.label, None)
        if isinstance(ev, RemovedFromRoom) and core.same_conv(ev.room, self.current):
            others = [c.key for c in s.conversations()]
            self.current = fmt.current = others[0] if others else p.GENERAL
            return [fmt.event(ev), fmt.notice(f"now in {self.current}")]
        if isinstance(ev, TrustQuestion):       # a reconnect to a certificate never seen
            s.trust(False)                      # (known_hosts edited meanwhile): no prompt here
            return [fmt.error(f"*** the certificate of {ev.host}:{ev.port} is new "
                              f"(SHA-256 {ev.fingerprint}); not trusted without asking: "
                              "restart the client to be asked")]
        line = fmt.event(ev)
        return [line] if line else []

    @staticmethod
    def _acked(fmt: Formatter, asked: tuple) -> str:
        what = asked[0]
        if what == "password":
            return fmt.notice("password changed; your other sessions were logged out")
        if what == "revoke" and asked[1] is None:
            return fmt.notice("your other sessions were logged out")
        if what == "revoke":
            return fmt.notice(f"session {asked[1]} was logged out")
        if what == "mod":
            return fmt.notice("done: " + core.mod_summary(asked[1]))
        return fmt.notice("done")

    def _room_info(self, fmt: Formatter, ev: p.RoomInfo) -> list[str]:
        asked = self.asked.pop(ev.label, None) if ev.label else None
        lines = []
        if asked is None and ev.label is None:
            lines.append(fmt.notice(f"you joined {ev.room} (on another connection)"))
            return lines
        if asked and core.same_conv(self.current, asked[1]):
            self.current = ev.room                     # the server's spelling
            fmt.current = ev.room
        lines.append(fmt.room_info(ev))
        newest = 0
        for d in ev.history:
            try:
                frame = p.event_from_dict(d, p.SERVER_FRAMES)
            except p.ProtocolError:
                continue
            line = fmt.history_frame(frame)
            if line:
                lines.append(line)
                self.cursor.seen(ev.room, frame.id)
                newest = max(newest, frame.id)
        conv = self.session.conversation(ev.room)
        if conv is not None and core.same_conv(ev.room, self.current):
            self.session.mark_read(ev.room, max(newest, conv.last_id))
        return lines

    def _history_page(self, fmt: Formatter, ev: p.HistoryPage) -> list[str]:
        asked = self.asked.pop(ev.label, None) if ev.label else None
        conv = ev.room or ("@" + ev.peer if ev.peer else "?")
        why = asked[0] if asked else "history"
        read_id = asked[2] if asked and why == "switch" else None
        frames = []
        for d in ev.messages:
            try:
                frames.append(p.event_from_dict(d, p.SERVER_FRAMES))
            except p.ProtocolError:
                continue
        frames = [f for f in frames if isinstance(f, p.HISTORY_FRAMES)]
        lines = []
        if not frames:
            if why == "switch":
                return [fmt.dim(f"--- no messages in {conv} yet ---")]
            return [fmt.dim(f"--- nothing older in {conv} ---")]
        if not ev.more:
            lines.append(fmt.dim(f"--- the beginning of {conv} ---"))
        elif why == "history":
            lines.append(fmt.dim(f"--- {len(frames)} earlier in {conv} (/history for more) ---"))
        else:
            lines.append(fmt.dim(f"--- recent in {conv} (/history for more) ---"))
        marked = False
        for f in frames:
            if read_id is not None and not marked and f.id > read_id and \
                    not (isinstance(f, p.Message) and fmt.me.casefold() == f.sender.casefold()):
                lines.append(fmt._c("33", "--- new since you were here ---"))
                marked = True
            line = fmt.history_frame(f)
            if line:
                lines.append(line)
            self.cursor.seen(conv, f.id)
        if why == "history":
            lines.append(fmt.dim(f"--- end of the earlier messages in {conv} ---"))
        return lines

    def _results(self, fmt: Formatter, ev: p.SearchResults) -> list[str]:
        self.asked.pop(ev.label, None)
        n = len(ev.messages)
        lines = [fmt.notice(f"{n} result{'s' if n != 1 else ''} for {ev.query!r}"
                            + (" (the newest; narrow the search for older ones)"
                               if ev.more else ""))]
        saved, fmt.current = fmt.current, None        # every result shows its conversation
        try:
            for d in ev.messages:
                try:
                    m = p.event_from_dict(d, p.SERVER_FRAMES)
                except p.ProtocolError:
                    continue
                if isinstance(m, p.Message):
                    lines.append("  " + fmt.message(m, core.local_when(m.ts)))
        finally:
            fmt.current = saved
        return lines

    def _rooms(self, fmt: Formatter, ev: p.RoomList) -> list[str]:
        self.asked.pop(ev.label, None)
        s = self.session
        lines = [fmt.notice(f"{len(ev.rooms)} room{'s' if len(ev.rooms) != 1 else ''}:")]
        for r in ev.rooms:
            name = r.get("room", "?")
            conv = s.conversation(name) if isinstance(name, str) else None
            mark = "*" if core.same_conv(name, self.current) else " "
            bits = [f" {mark} {name}", f"{r.get('count', 0)} online"]
            if conv is not None and (conv.unread or conv.mentions):
                bits.append(f"{conv.unread} unread" + (
                    f", {conv.mentions} mention{'s' if conv.mentions != 1 else ''}"
                    if conv.mentions else ""))
            bits.append("joined" if r.get("joined") else "not joined")
            line = ", ".join(bits[1:])
            line = f"{bits[0]}  ({line})"
            if r.get("topic"):
                line += f" — {r['topic']}"
            lines.append(line)
        dms = [c for c in s.conversations() if c.kind == "dm"]
        if dms:
            lines.append(fmt.notice("direct messages:"))
            lines.extend(core.describe(c, core.same_conv(c.key, self.current)) for c in dms)
        return lines

    def _summary(self, fmt: Formatter) -> list[str]:
        if not self.unread_due:
            return []
        self.unread_due = False
        text = core.unread_summary(self.session.conversations(), self.current)
        return [fmt._c("33", f"*** {text} — /switch to read, /rooms for all")] if text else []

    # --- modes ---------------------------------------------------------------
    def run_interactive(self) -> int:
        s = self.session
        assert s is not None
        colour = not (self.args.no_color or os.environ.get("NO_COLOR"))
        fmt = Formatter(s.name, colour, is_guest=s.is_guest,
                        marks_guests=lambda: s.marks_guests, is_removed=s.is_removed)
        print(fmt.event(self.welcome), flush=True)
        start = self.args.room or ("@" + self.args.to if self.args.to else None)
        if start:
            self.command(f"/switch {start}" if s.conversation(start) or start[0] == "@"
                         else f"/join {start}", lambda line: print(line, flush=True), fmt)
        use_toolkit = not self.args.plain and os.environ.get("TERM") != "dumb"
        if use_toolkit:
            try:
                import prompt_toolkit  # noqa: F401  (installed?)
            except ImportError:
                use_toolkit = False
        try:
            if use_toolkit:
                import asyncio
                asyncio.run(self._toolkit_loop(fmt, colour))
            else:
                self._plain_loop(fmt, colour)
        finally:
            s.close()
        print("Bye.")
        return self.exit_code

    def _ready_lines(self, fmt: Formatter, limit: int = 10_000) -> list[str]:
        """Render the events already waiting in the session's queue (up to ``limit``)."""
        lines: list[str] = []
        while len(lines) < limit:
            try:
                ev = self.session.events.get_nowait()
            except queue.Empty:
                lines.extend(self._summary(fmt))
                break
            lines.extend(self.render(fmt, ev))
        return lines

    def _plain_loop(self, fmt: Formatter, colour: bool) -> None:
        """readline front end: a printer thread writes above the prompt."""
        s = self.session
        console = PlainConsole(colour, self.prompt)
        stop = threading.Event()

        def ask_secret(prompt: str) -> str:
            with console.lock:           # nothing is printed over a password prompt
                return getpass.getpass(prompt)
        self.ask_secret = ask_secret

        def printer() -> None:
            while not stop.is_set():
                try:
                    ev = s.events.get(timeout=0.2)
                except queue.Empty:
                    for line in self._summary(fmt):
                        console.print(line)
                    continue
                for line in self.render(fmt, ev):
                    console.print(line)
                if s.events.empty():
                    for line in self._summary(fmt):
                        console.print(line)

        for line in self._ready_lines(fmt):   # the recent history, before the first prompt
            console.print(line)
        threading.Thread(target=printer, name="parley-printer", daemon=True).start()
        try:
            while True:
                try:
                    line = console.read()
                except (EOFError, KeyboardInterrupt):
                    print()
                    return
                if not self.command(line, console.print, fmt):
                    return
        finally:
            stop.set()

    async def _toolkit_loop(self, fmt: Formatter, colour: bool) -> None:
        """prompt_toolkit front end: one asyncio loop runs the prompt and prints
        incoming lines through run_in_terminal, which hides the prompt, prints,
        and draws it again with what was typed: nothing runs in another thread."""
        import asyncio

        from prompt_toolkit import PromptSession
        from prompt_toolkit.application import run_in_terminal
        from prompt_toolkit.formatted_text import ANSI
        from prompt_toolkit.history import InMemoryHistory

        def prompt():
            return ANSI("\x1b[1m" + self.prompt() + "\x1b[0m" if colour else self.prompt())

        ps: PromptSession = PromptSession(history=InMemoryHistory())

        def write(text: str) -> None:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

        async def printer() -> None:
            while True:
                lines = self._ready_lines(fmt, limit=200)
                if lines:
                    await run_in_terminal(lambda text="\n".join(lines): write(text))
                else:
                    await asyncio.sleep(0.03)

        task = asyncio.ensure_future(printer())
        try:
            while True:
                try:
                    line = await ps.prompt_async(prompt)
                except (EOFError, KeyboardInterrupt):
                    return
                if not self.command(line, write, fmt):
                    return
        finally:
            task.cancel()

    def command(self, line: str, show: Callable[[str], None], fmt: Formatter) -> bool:
        """Act on one typed line; False to leave."""
        s = self.session
        assert s is not None
        cmd = core.parse(line, self.current)
        if cmd.error:
            show(fmt.error(cmd.error))
            return True
        name = cmd.name
        try:
            if name == "empty":
                pass
            elif name == "exit":
                return False
            elif name == "help":
                show(HELP)
            elif name in ("say", "me"):
                s.send(cmd.text, cmd.target, kind=name)
                if not s.connected:
                    show(fmt.dim("(offline: the message will be sent when reconnected)"))
            elif name == "msg":
                if cmd.text:
                    s.say(cmd.text, to=cmd.args[0])
                    if not s.connected:
                        show(fmt.dim("(offline: the message will be sent when reconnected)"))
                else:
                    self.switch(cmd.target, show, fmt)
            elif name == "switch":
                self.switch(cmd.target, show, fmt)
            elif name == "join":
                if not self._rooms_ok(show, fmt):
                    return True
                self.asked.ask(lambda: s.join(cmd.target), ("join", cmd.target, self.current))
                self.current = cmd.target            # the prompt follows at once
            elif name == "part":
                if not self._rooms_ok(show, fmt):
                    return True
                s.part(cmd.target)
                if core.same_conv(cmd.target, self.current):
                    others = [c.key for c in s.conversations()
                              if not core.same_conv(c.key, cmd.target)]
                    self.current = others[0] if others else p.GENERAL
                    show(fmt.notice(f"left {cmd.target}; now in {self.current}"))
                else:
                    show(fmt.notice(f"left {cmd.target}"))
            elif name == "rooms":
                if not s.rooms_enabled:
                    show(fmt.notice(f"this server has one room: {p.GENERAL}"))
                    return True
                self.asked.ask(s.list_rooms, ("rooms",))
            elif name == "topic":
                if cmd.text is None:
                    conv = s.conversation(cmd.target)
                    topic = conv.topic if conv is not None else ""
                    show(fmt.notice(f"{cmd.target} topic: {topic}" if topic
                                    else f"{cmd.target} has no topic; /topic <text> sets it"))
                elif self._rooms_ok(show, fmt):
                    s.set_topic(cmd.target, cmd.text)
            elif name == "users":
                if cmd.target is None:
                    show(fmt.users(sorted(s.users)))
                elif self._rooms_ok(show, fmt):
                    s.request_users(cmd.target)
            elif name == "history":
                if not self._rooms_ok(show, fmt):
                    return True
                before = self.cursor.before(cmd.target)
                self.asked.ask(lambda: s.history(cmd.target, before=before, limit=cmd.args[0]),
                               ("history", cmd.target, None))
            elif name == "search":
                if not self._rooms_ok(show, fmt):
                    return True
                self.asked.ask(lambda: s.search(cmd.text), ("search",))
            elif name in ("register", "password", "sessions", "revoke", "logout"):
                return self._account_command(cmd, show, fmt)
            elif cmd.mod is not None:
                if not self._rooms_ok(show, fmt):
                    return True
                self.asked.ask(lambda: s.moderate(**cmd.mod), ("mod", cmd.mod))
            elif name == "audit":
                self.asked.ask(lambda: s.audit(limit=cmd.args[0]), ("audit",))
        except OfflineQueueFull as e:
            show(fmt.error(f"not sent: {e}"))
        return True

    def _account_command(self, cmd: core.Command, show: Callable[[str], None],
                         fmt: Formatter) -> bool:
        """/register, /password, /sessions, /revoke, /logout.  False to leave."""
        s = self.session
        name = cmd.name
        if s.logged_out:
            show(fmt.error("logged out: /exit, then log in again"))
            return True
        if name == "logout":
            if not s.is_account:
                show(fmt.notice("guests have no login to forget; leaving"))
                return False
            if not s.connected:
                show(fmt.error("not connected: the server cannot log this device out now"))
                return True
            self.logging_out = True
            s.revoke(s.session_id)
            s.wait_idle(5.0)             # the ack (then the server closes the connection)
            show(fmt.notice("logged out; this device's login is forgotten"))
            return False
        if name == "register":
            if s.is_account:
                show(fmt.notice(f"you are logged in to the account {s.name} already"))
                return True
            if s.auth == p.AUTH_OFF:
                show(fmt.error("this server has no accounts"))
                return True
            show(fmt.dim(f"Choose a password for {s.name} ({core.PASSWORD_MIN} characters or "
                         "more; it is not shown as you type)."))
            password = self.read_password(confirm=True, prompt="New password: ")
            if password is None:
                show(fmt.dim("not registered"))
                return True
            self.asked.ask(lambda: s.register(password), ("register",))
            return True
        if not s.is_account:
            show(fmt.error("guests have no password or sessions: /register keeps your name "
                           "as an account"))
            return True
        if name == "sessions":
            self.asked.ask(s.list_sessions, ("sessions",))
        elif name == "revoke":
            sid = cmd.args[0]
            self.asked.ask(lambda: s.revoke(sid, others=sid is None), ("revoke", sid))
        elif name == "password":
            old = self.read_password(prompt="Current password: ")
            if old is None:
                show(fmt.dim("password not changed"))
                return True
            new = self.read_password(confirm=True, prompt="New password: ")
            if new is None:
                show(fmt.dim("password not changed"))
                return True
            self.asked.ask(lambda: s.change_password(old, new), ("password",))
        return True

    def _rooms_ok(self, show: Callable[[str], None], fmt: Formatter) -> bool:
        if self.session.rooms_enabled:
            return True
        show(fmt.error("this server does not support rooms, direct messages, history or search"))
        return False

    def switch(self, target: str, show: Callable[[str], None], fmt: Formatter) -> None:
        """Make ``target`` the current conversation: mark it read, show its recent history."""
        s = self.session
        conv = s.conversation(target)
        if conv is None and target.startswith("#"):
            show(fmt.error(f"you are not in {target}; /join {target} joins it"))
            return
        if conv is None:
            if not self._rooms_ok(show, fmt):
                return
            s.open_dm(target[1:])
            conv = s.conversation(target)
        self.current = conv.key
        fmt.current = conv.key
        if conv.kind == "room":
            who = f"{conv.count} here" if conv.members is None else \
                fmt.users(conv.members, "here")
            topic = f" — topic: {fmt.text(conv.topic)}" if conv.topic else ""
            show(fmt.notice(f"now in {conv.key}: ") + who + topic)
        else:
            online = "online" if conv.name.casefold() in {u.casefold() for u in s.users} \
                else "not online"
            show(fmt.notice(f"now talking with {fmt.name(conv.name)} ({online})"))
        if s.rooms_enabled:
            self.asked.ask(lambda: s.history(conv.key, limit=core.HISTORY_DEFAULT),
                           ("switch", conv.key, conv.read_id))
        if conv.last_id:
            s.mark_read(conv.key, conv.last_id)

    # --- scripting -------------------------------------------------------------------------
    def run_script(self) -> int:
        s = self.session
        assert s is not None
        target = p.GENERAL
        if self.args.room:
            problem = self.join_and_wait(self.args.room)
            if problem:
                self.err(f"parley: cannot join {self.args.room}: {problem}")
                s.close()
                return 1
            conv = s.conversation(self.args.room)
            target = conv.key if conv else self.args.room
        elif self.args.to:
            target = "@" + self.args.to
        sent = 0
        for raw in sys.stdin:
            line = raw.rstrip("\r\n")
            cmd = core.parse(line, target)
            if cmd.name == "empty":
                continue
            if cmd.name == "exit":
                break
            if cmd.error and cmd.name == "unknown":
                self.err(f"parley: skipped unknown command {line.split()[0]!r}")
                continue
            if cmd.error:
                self.err(f"parley: skipped: {cmd.error}")
                continue
            if cmd.name in ("say", "me") or (cmd.name == "msg" and cmd.text):
                conv = cmd.target
                self._queue(lambda text, c=conv, k=("me" if cmd.name == "me" else "say"):
                            s.send(text, c, kind=k), cmd.text)
                sent += 1
            elif cmd.name in ("join", "switch") and cmd.target.startswith("#"):
                problem = self.join_and_wait(cmd.target)
                if problem:
                    self.err(f"parley: cannot join {cmd.target}: {problem}")
                    self.failed += 1
                else:
                    target = cmd.target
            elif cmd.name in ("msg", "switch"):
                target = cmd.target
            elif cmd.mod is not None:
                s.moderate(**cmd.mod)          # acknowledged like a message (or refused)
                sent += 1
            elif cmd.name == "audit":
                s.audit(limit=cmd.args[0])
            else:
                self.err(f"parley: skipped {line.split()[0]!r} (interactive only)")
                continue
            self._drain_errors()
        ok = s.wait_idle(self.args.timeout)
        self._drain_errors()
        left = s.pending()
        s.close()
        if self.exit_code:
            return self.exit_code
        if not ok or left:
            self.err(f"parley: {left} of {sent} messages were not acknowledged in time")
            return 1
        return 1 if self.failed else 0

    def _queue(self, send: Callable[[str], str], text: str) -> None:
        while True:
            try:
                send(text)
                return
            except OfflineQueueFull:
                self.session.wait_idle(1.0)       # back-pressure: wait for room

    def _drain_errors(self) -> None:
        while True:
            try:
                ev = self.next_event(0)
            except queue.Empty:
                return
            if isinstance(ev, p.Error):
                self.failed += 1
                self.err(f"parley: refused: {ev.message} ({ev.code})")
            elif isinstance(ev, p.AuditLog):
                for line in core.audit_table(ev.entries):
                    print(line, flush=True)
            elif isinstance(ev, StateChanged) and ev.state is SessionState.RECONNECTING:
                self.err(f"parley: connection lost ({ev.detail}); reconnecting")
            elif isinstance(ev, LoggedOut):
                self.err(f"parley: logged out: {ev.message}")
                self.exit_code = EXIT_LOGIN

    # --- listening -------------------------------------------------------------------------
    def run_listen(self) -> int:
        s = self.session
        assert s is not None
        a = self.args
        colour = sys.stdout.isatty() and not (a.no_color or os.environ.get("NO_COLOR"))
        follow = a.room or ("@" + a.to if a.to else None)       # None: everything
        fmt = Formatter(s.name, colour, hints=False, current=follow or p.GENERAL,
                        is_guest=s.is_guest, marks_guests=lambda: s.marks_guests,
                        is_removed=s.is_removed)
        try:
            if a.json:
                print(json_line(self.welcome), flush=True)
            else:
                print(fmt.event(self.welcome), flush=True)
            if a.room:
                problem = self.join_and_wait(a.room)
                if problem:
                    self.err(f"parley: cannot join {a.room}: {problem}")
                    return 1
                conv = s.conversation(a.room)
                follow = fmt.current = conv.key if conv else a.room
            while True:
                ev = self.next_event()
                if isinstance(ev, LoggedOut):
                    self.err(f"parley: logged out: {ev.message}")
                    return EXIT_LOGIN
                if isinstance(ev, StateChanged) and ev.state is SessionState.CLOSED:
                    return 1
                if isinstance(ev, p.Welcome):
                    self.welcome = ev
                if follow is not None:
                    conv = core.event_conversation(ev, fmt.me)
                    if conv is not None and not core.same_conv(conv, follow):
                        continue
                if a.json:
                    line = json_line(ev)
                else:
                    line = self._listen_text(fmt, ev)
                if line:
                    print(line, flush=True)
        except KeyboardInterrupt:
            return 0
        except BrokenPipeError:
            return 0
        finally:
            s.close()

    def _listen_text(self, fmt: Formatter, ev: object) -> Optional[str]:
        if isinstance(ev, p.RoomInfo):
            return fmt.room_info(ev)
        if isinstance(ev, p.Topic):
            return fmt.history_frame(ev)
        if isinstance(ev, (p.Unread, p.Ack, p.RoomList, p.HistoryPage, p.SearchResults,
                           ConversationsChanged, AccountChanged)):
            return None
        return fmt.event(ev)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    interactive = sys.stdin.isatty() and not args.listen
    client = Client(args, interactive)
    name = args.name
    if name is None:
        if args.listen:
            name = "listener-" + os.urandom(2).hex()
        elif interactive:
            name = client.ask_name()
            if name is None:
                return 1
        else:
            client.err("parley: --name is required when stdin is not a terminal")
            return 2
    code = client.connect(name)
    if code is not None:
        return code
    try:
        if args.listen:
            return client.run_listen()
        if interactive:
            return client.run_interactive()
        return client.run_script()
    except KeyboardInterrupt:
        client.session.close()
        return 130


if __name__ == "__main__":
    sys.exit(main())
