"""The terminal client.

Three ways to use it:

* interactive (stdin is a terminal): type to chat; incoming messages are
  printed above the input line without garbling it (prompt_toolkit when it is
  installed, otherwise readline with a redraw);
* scripting (stdin is a pipe or file): every input line is sent as a message;
  at the end of input the client waits until the server acknowledged each one,
  then exits (0 if all were accepted);
* ``--listen``: print incoming messages one per line (``--json`` for JSON
  Lines) until interrupted.

All networking is in ``parley.client.session``; this module only renders
events and turns what the user types into session calls.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import queue
import re
import sys
import threading
from typing import Callable, Optional

from .. import __version__
from .. import protocol as p
from .session import (ConnectFailed, NameRefused, OfflineQueueFull, Session, SessionState,
                      StateChanged)

HELP = """Commands:
  /users          who is online
  /me <action>    send an action, shown as "* you <action>"
  /help           this help
  /exit           leave (Ctrl-D works too)
  //text          send a message that starts with "/"
Anything else is sent to everyone."""

TROUBLESHOOTING = """  Is the server running?  Start one with:  python python_server.py
  Check the address:      python python_client.py --host HOST --port PORT
  A firewall may also block the port."""

# 256-colour palette readable on dark and light terminals
NAME_COLOURS = [39, 208, 141, 77, 203, 214, 45, 171, 113, 220, 75, 168]
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def name_colour(name: str) -> int:
    digest = hashlib.blake2s(name.casefold().encode("utf-8"), digest_size=2).digest()
    return NAME_COLOURS[int.from_bytes(digest, "big") % len(NAME_COLOURS)]


def local_time(ts: str) -> str:
    """Server UTC timestamp -> local HH:MM:SS."""
    try:
        t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return ts[11:19]
    return t.replace(tzinfo=datetime.timezone.utc).astimezone().strftime("%H:%M:%S")


class Formatter:
    """Turns events into terminal lines, coloured or not."""

    def __init__(self, me: str = "", colour: bool = True, hints: bool = True):
        self.me = me
        self.colour = colour
        self.hints = hints          # interactive: mention /help
        self.welcomed = False

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def name(self, name: str) -> str:
        bold = "1;" if name.casefold() == self.me.casefold() else ""
        return self._c(f"{bold}38;5;{name_colour(name)}", name)

    def dim(self, text: str) -> str:
        return self._c("2", text)

    def text(self, text: str) -> str:
        text = _UNSAFE.sub("\ufffd", text).replace("\t", "    ")
        lines = text.split("\n")
        body = "\n    ".join(lines)
        if self.me and re.search(rf"(?<![\w.-]){re.escape(self.me)}(?![\w-])", text, re.I):
            body = self._c("1;33", body)          # a mention of me
        return body

    def event(self, ev: object) -> Optional[str]:
        if isinstance(ev, p.Message):
            when = self.dim(local_time(ev.ts))
            if ev.kind == "me":
                return f"{when} * {self.name(ev.sender)} {self.text(ev.text)}"
            return f"{when} {self.name(ev.sender)}: {self.text(ev.text)}"
        if isinstance(ev, p.Join):
            return self.dim(f"{local_time(ev.ts)} → {ev.name} joined")
        if isinstance(ev, p.Leave):
            why = p.LEAVE_REASONS.get(ev.reason, ev.reason)
            return self.dim(f"{local_time(ev.ts)} ← {ev.name} left ({why})")
        if isinstance(ev, p.UserList):
            return self.users(ev.users)
        if isinstance(ev, p.Error):
            return self._c("31", f"! {ev.message} ({ev.code})")
        if isinstance(ev, p.Bye):
            return self._c("33", f"*** server: {ev.message or ev.reason}")
        if isinstance(ev, StateChanged):
            if ev.state is SessionState.RECONNECTING:
                return self._c("33", f"*** connection lost ({ev.detail}); "
                                     f"reconnecting in {ev.retry_in:g} s…")
            if ev.state is SessionState.CONNECTED and ev.detail.startswith("reconnected"):
                return self._c("32", f"*** {ev.detail}")
            return None
        if isinstance(ev, p.Welcome):
            if self.welcomed:               # a reconnect: who is here now
                return self._c("32", "*** ") + self.users(ev.users)
            self.welcomed = True
            hint = self.dim("  Type /help for commands.") if self.hints else ""
            return self._c("32", f"*** connected as {ev.name}. ") + self.users(ev.users) + hint
        return None

    def users(self, users: list[str]) -> str:
        names = sorted(users, key=str.casefold)
        return f"{len(names)} online: " + ", ".join(self.name(n) for n in names)


def json_line(ev: object) -> Optional[str]:
    if isinstance(ev, (p.Message, p.Join, p.Leave, p.Error, p.Bye, p.UserList)):
        return json.dumps(ev.to_dict(), ensure_ascii=False)
    return None


# --- output that never garbles the input line ---------------------------------
PROMPT = "> "


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
    readline redraws the half-typed line with the cursor where it was."""

    def __init__(self, colour: bool):
        self.lock = threading.Lock()
        self.reading = False
        # \001 and \002 tell readline the escape codes take no room on screen
        self.input_prompt = "\001\x1b[1m\002" + PROMPT + "\001\x1b[0m\002" if colour else PROMPT
        self.prompt = "\x1b[1m" + PROMPT + "\x1b[0m" if colour else PROMPT
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
                sys.stdout.write(self.prompt + typed)
                sys.stdout.flush()

    def read(self) -> str:
        # Hold the lock while readline draws the prompt: its pre-input hook runs
        # once the prompt is on screen and only then lets incoming lines through,
        # so they can never cut into the prompt's own escape codes.
        hooked = (self.readline is not None and sys.stdin.isatty() and sys.stdout.isatty())
        self.lock.acquire()
        if hooked:
            self.readline.set_pre_input_hook(self._prompt_shown)
        else:
            self.reading = True
            self.lock.release()
        try:
            return input(self.input_prompt)
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


# --- the client ---# --- the client ---------------------------------------------------------------
def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="parley", description="Parley chat client for the terminal and for scripts.",
        epilog="With stdin not a terminal, each input line is sent as a message and the "
               "client exits once the server has acknowledged them all.")
    ap.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8888, help="server port (default 8888)")
    ap.add_argument("--name", help="your user name (asked for if absent)")
    ap.add_argument("--listen", action="store_true",
                    help="print incoming messages one per line until interrupted")
    ap.add_argument("--json", action="store_true", help="with --listen: print JSON Lines")
    ap.add_argument("--no-color", action="store_true",
                    help="no colours (also when NO_COLOR is set)")
    ap.add_argument("--plain", action="store_true",
                    help="do not use prompt_toolkit even if it is installed")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="scripting: seconds to wait for acknowledgements at the end (default 30)")
    ap.add_argument("--log-level", default="warning",
                    choices=["debug", "info", "warning", "error"], help="default warning")
    ap.add_argument("--version", action="version", version=f"parley {__version__}")
    return ap.parse_args(argv)


class Client:
    def __init__(self, args: argparse.Namespace, interactive: bool):
        self.args = args
        self.interactive = interactive
        self.session: Optional[Session] = None
        self.failed = 0          # messages the server refused
        self.welcome: Optional[p.Welcome] = None

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
        self.session = Session(a.host, a.port, name, client="parley-cli")
        self.session.start()
        while True:
            ev = self.session.events.get()
            if isinstance(ev, ConnectFailed):
                self.err(f"Cannot connect to {ev.host}:{ev.port}: {ev.error}.\n{TROUBLESHOOTING}")
                return 1
            if isinstance(ev, NameRefused):
                if not self.interactive:
                    self.err(f"parley: {ev.message}")
                    self.session.close()
                    return 1
                new = self.ask_name(f"{ev.message}.")
                if new is None:
                    self.session.close()
                    return 1
                self.session.set_name(new)
            elif isinstance(ev, p.Welcome):
                self.welcome = ev               # shown before the history that follows it
                return None
            elif isinstance(ev, p.Error) and ev.code == p.VERSION_UNSUPPORTED:
                self.err(f"parley: {ev.message}")
                return 1
            elif isinstance(ev, StateChanged) and ev.state is SessionState.CLOSED:
                self.err("parley: the connection closed before we could join")
                return 1
            elif isinstance(ev, StateChanged) and ev.state is SessionState.RECONNECTING:
                self.err(f"Connection lost ({ev.detail}); retrying in {ev.retry_in:g} s…")

    # --- modes ---------------------------------------------------------------
    def run_interactive(self) -> int:
        s = self.session
        assert s is not None
        colour = not (self.args.no_color or os.environ.get("NO_COLOR"))
        fmt = Formatter(s.name, colour)
        print(fmt.event(self.welcome), flush=True)
        use_toolkit = not self.args.plain and os.environ.get("TERM") != "dumb"
        if use_toolkit:
            try:
                import prompt_toolkit  # noqa: F401
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
        return 0

    def _render(self, fmt: Formatter, ev: object) -> Optional[str]:
        if isinstance(ev, p.Welcome):
            fmt.me = ev.name
        if isinstance(ev, p.Error) and ev.label is not None:
            self.failed += 1
        return fmt.event(ev)

    def _ready_lines(self, fmt: Formatter, limit: int = 10_000) -> list[str]:
        """Render the events already waiting in the session's queue (up to ``limit``)."""
        lines: list[str] = []
        while len(lines) < limit:
            try:
                ev = self.session.events.get_nowait()
            except queue.Empty:
                break
            line = self._render(fmt, ev)
            if line:
                lines.append(line)
        return lines

    def _plain_loop(self, fmt: Formatter, colour: bool) -> None:
        """readline front end: a printer thread writes above the prompt."""
        s = self.session
        console = PlainConsole(colour)
        stop = threading.Event()

        def printer() -> None:
            while not stop.is_set():
                try:
                    ev = s.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                line = self._render(fmt, ev)
                if line:
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

        prompt = ANSI("\x1b[1m" + PROMPT + "\x1b[0m" if colour else PROMPT)
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
        text = line.rstrip("\n")
        if not text.strip():
            return True
        try:
            if text.startswith("//"):
                s.say(text[1:])
            elif text.startswith("/"):
                cmd, _, rest = text.partition(" ")
                cmd = cmd.lower()
                if cmd in ("/exit", "/quit"):
                    return False
                if cmd == "/help":
                    show(HELP)
                elif cmd in ("/users", "/who"):
                    show(fmt.users(sorted(s.users)))
                elif cmd == "/me":
                    if rest.strip():
                        s.me(rest.strip())
                    else:
                        show("Usage: /me <action>, e.g. /me waves")
                else:
                    show(f"Unknown command {cmd}. Type /help for the list; "
                         f"start with // to send a message beginning with '/'.")
            else:
                s.say(text)
                if not s.connected:
                    show(fmt.dim("(offline: the message will be sent when reconnected)"))
        except OfflineQueueFull as e:
            show(f"! not sent: {e}")
        return True

    def run_script(self) -> int:
        s = self.session
        assert s is not None
        sent = 0
        for raw in sys.stdin:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if line.startswith("/") and not line.startswith("//"):
                cmd, _, rest = line.partition(" ")
                if cmd.lower() in ("/exit", "/quit"):
                    break
                if cmd.lower() == "/me" and rest.strip():
                    self._queue(s.me, rest.strip())
                    sent += 1
                else:
                    self.err(f"parley: skipped unknown command {cmd!r}")
                continue
            self._queue(s.say, line[1:] if line.startswith("//") else line)
            sent += 1
            self._drain_errors()
        ok = s.wait_idle(self.args.timeout)
        self._drain_errors()
        left = s.pending()
        s.close()
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
                ev = self.session.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(ev, p.Error):
                self.failed += 1
                self.err(f"parley: refused: {ev.message} ({ev.code})")
            elif isinstance(ev, StateChanged) and ev.state is SessionState.RECONNECTING:
                self.err(f"parley: connection lost ({ev.detail}); reconnecting")

    def run_listen(self) -> int:
        s = self.session
        assert s is not None
        colour = sys.stdout.isatty() and not (self.args.no_color or os.environ.get("NO_COLOR"))
        fmt = Formatter(s.name, colour, hints=False)
        if not self.args.json:
            print(fmt.event(self.welcome), flush=True)
        try:
            while True:
                ev = s.events.get()
                if isinstance(ev, StateChanged) and ev.state is SessionState.CLOSED:
                    return 1
                line = json_line(ev) if self.args.json else fmt.event(ev)
                if line and not (isinstance(ev, p.Welcome) and self.args.json):
                    print(line, flush=True)
        except KeyboardInterrupt:
            return 0
        except BrokenPipeError:
            return 0
        finally:
            s.close()


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
