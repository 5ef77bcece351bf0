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

    def __init__(self, me: str = "", colour: bool = True):
        self.me = me
        self.colour = colour

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
            return self._c("32", f"*** connected as {ev.name}. ") + self.users(ev.users) + \
                self.dim("  Type /help for commands.")
        return None

    def users(self, users: list[str]) -> str:
        names = sorted(users, key=str.casefold)
        return f"{len(names)} online: " + ", ".join(self.name(n) for n in names)


def json_line(ev: object) -> Optional[str]:
    if isinstance(ev, (p.Message, p.Join, p.Leave, p.Error, p.Bye, p.UserList)):
        return json.dumps(ev.to_dict(), ensure_ascii=False)
    return None


# --- output that never garbles the input line ---------------------------------
class PlainConsole:
    """input() with readline; incoming lines are printed above the prompt and the
    half-typed line is redrawn (the classic readline trick)."""

    def __init__(self, prompt: str):
        self.prompt = prompt
        self.lock = threading.Lock()
        try:
            import readline
            self.readline = readline
        except ImportError:    # pragma: no cover - Windows without pyreadline
            self.readline = None

    def print(self, line: str) -> None:
        with self.lock:
            typed = self.readline.get_line_buffer() if self.readline else ""
            sys.stdout.write("\r\x1b[K" + line + "\n" + self.prompt + typed)
            sys.stdout.flush()

    def read(self) -> str:
        return input(self.prompt)

    def run(self, loop: Callable[[], None]) -> None:
        loop()


class ToolkitConsole:
    """prompt_toolkit: a real line editor, and patch_stdout keeps the prompt intact."""

    def __init__(self, prompt: str):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.formatted_text import ANSI
        from prompt_toolkit.history import InMemoryHistory
        self.prompt = ANSI(prompt)
        self.session = PromptSession(history=InMemoryHistory())

    def print(self, line: str) -> None:
        print(line, flush=True)

    def read(self) -> str:
        return self.session.prompt(self.prompt)

    def run(self, loop: Callable[[], None]) -> None:
        from prompt_toolkit.patch_stdout import patch_stdout
        with patch_stdout(raw=True):
            loop()


def make_console(prompt: str, plain: bool):
    if not plain and os.environ.get("TERM") != "dumb":
        try:
            return ToolkitConsole(prompt)
        except Exception:   # not installed, or no usable terminal
            pass
    return PlainConsole(prompt)


# --- the client ---------------------------------------------------------------
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
                self.session.events.put(ev)     # let the renderer show it
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
        console = make_console(fmt._c("1", "> ") if colour else "> ", self.args.plain)
        stop = threading.Event()

        def printer() -> None:
            while not stop.is_set():
                try:
                    ev = s.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if isinstance(ev, p.Welcome):
                    fmt.me = ev.name
                if isinstance(ev, p.Error) and ev.label is not None:
                    self.failed += 1
                line = fmt.event(ev)
                if line:
                    console.print(line)

        threading.Thread(target=printer, name="parley-printer", daemon=True).start()

        def loop() -> None:
            while True:
                try:
                    line = console.read()
                except EOFError:
                    return
                except KeyboardInterrupt:
                    return
                if not self.command(line, console.print, fmt):
                    return

        try:
            console.run(loop)
        finally:
            stop.set()
            s.close()
        print("Bye.")
        return 0

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
        fmt = Formatter(s.name, colour)
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
