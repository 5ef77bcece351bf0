"""Parley's desktop client (Tkinter + ttk).

``app`` wires the window to a network session, ``widgets`` holds the window's
parts, ``theme`` the palettes and ttk styles, ``render`` the pure formatting
rules (tested without a display) and ``settings`` the remembered connection.
Run it with ``python improved_gui_client.py`` or ``python -m parley.client.gui``.
"""


def main(argv=None) -> int:
    from .app import main as _main
    return _main(argv)
