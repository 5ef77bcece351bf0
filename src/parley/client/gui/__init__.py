"""Parley's desktop client (Tkinter + ttk).

``app`` parses the command line, ``window`` wires the window to a network
session, ``widgets`` and ``panes`` hold the window's parts, ``theme`` the
palettes and ttk styles, ``render`` (entries) and ``model`` (sidebar, header,
members, history paging, search, room dialog) the pure rules tested without a
display, and ``settings`` the remembered connection.
Run it with ``python improved_gui_client.py`` or ``python -m parley.client.gui``.
"""


def main(argv=None) -> int:
    from .app import main as _main
    return _main(argv)
