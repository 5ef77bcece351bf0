#!/usr/bin/env python3
"""Parley desktop client (Tkinter).  Run: python improved_gui_client.py [--host H --port P]."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from parley.client.gui.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
