"""Entry point of the Parley desktop client.

    python improved_gui_client.py [--host H] [--port P] [--name N] [--theme dark|light]

This module parses the command line and opens the window (``window.ChatApp``).
It imports Tkinter only once the arguments are parsed, so ``--help`` works on a
machine without Tk or without a display, and a missing display is one clear
line on stderr and exit code 1, not a Tcl traceback.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Optional

from ... import __version__

log = logging.getLogger("parley.gui")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="improved_gui_client.py",
        description="Parley desktop chat client (Tkinter).  Opens a window with a connect "
                    "dialog; with --name it connects straight away.",
        epilog="The last name, server and port you joined with are remembered in "
               "$XDG_CONFIG_HOME/parley/gui.json (~/.config/parley/gui.json).")
    ap.add_argument("--host", help=f"server address (default: last used, else {DEFAULT_HOST})")
    ap.add_argument("--port", type=int, help=f"server port (default: last used, else {DEFAULT_PORT})")
    ap.add_argument("--name", help="your user name; given, the client connects at once")
    ap.add_argument("--tls", action="store_true",
                    help="connect with TLS (the server's --tls-port, 8889 by default); also a "
                         "checkbox in the connect dialog.  A certificate that does not verify "
                         "(self-signed) is shown with its SHA-256 fingerprint and trusted only "
                         "if you say so; it is remembered in known_hosts and refused if it "
                         "ever changes")
    ap.add_argument("--ca", metavar="FILE",
                    help="with TLS: accept only a certificate signed by this CA (PEM)")
    ap.add_argument("--known-hosts", metavar="FILE",
                    help="where trusted fingerprints are kept "
                         "(default ~/.config/parley/known_hosts)")
    ap.add_argument("--theme", choices=["dark", "light"], help="colour theme (default: dark)")
    ap.add_argument("--scrollback", "--max-lines", dest="scrollback", type=int, default=2000,
                    metavar="N", help="messages kept in view per conversation (default 2000)")
    ap.add_argument("--font-size", type=float, default=10.0, metavar="PT",
                    help="base font size in points (default 10)")
    ap.add_argument("--scale", type=float, metavar="F",
                    help="UI scale factor for high-DPI screens (default: from the screen's DPI)")
    ap.add_argument("--emoji", choices=["auto", "native", "text"], default=None,
                    help="how to show emoji: native glyphs, or a readable text stand-in where "
                         "Tk cannot draw them safely (default auto; env PARLEY_EMOJI)")
    ap.add_argument("--log-level", default="warning",
                    choices=["debug", "info", "warning", "error"], help="default warning")
    ap.add_argument("--version", action="version", version=f"parley {__version__}")
    return ap


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.port is None and args.tls:
        args.port = 8889
    if args.port is not None and not 0 < args.port < 65536:
        build_parser().error("--port must be between 1 and 65535")
    if args.scrollback < 50:
        build_parser().error("--scrollback must be at least 50")
    return args


def _dpi_aware() -> None:
    """Crisp text on Windows high-DPI screens (no-op elsewhere)."""
    if sys.platform == "win32":
        try:
            import ctypes
            ctypes.windll.shcore.SetProcessDpiAwareness(1)
        except Exception:
            pass


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        import tkinter as tk
    except ImportError:
        print("parley-gui: Tkinter is not installed (Debian/Ubuntu: sudo apt-get install "
              "python3-tk); the terminal client works without it: python python_client.py",
              file=sys.stderr)
        return 1
    _dpi_aware()
    try:
        root = tk.Tk(className="Parley")
    except tk.TclError as e:
        reason = str(e).strip().rstrip(".") or "no display"
        print(f"parley-gui: cannot open a window ({reason}). Run it in a desktop session, or use "
              "the terminal client: python python_client.py", file=sys.stderr)
        return 1
    from .window import ChatApp
    app = ChatApp(root, args)
    try:
        signal.signal(signal.SIGTERM, lambda *_: root.after(0, app.close))
    except (ValueError, OSError):
        pass
    try:
        root.mainloop()
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    if app.max_gap:
        log.debug("longest gap between two event-loop ticks: %.1f ms", app.max_gap * 1000)
    return app.exit_code


if __name__ == "__main__":
    sys.exit(main())
