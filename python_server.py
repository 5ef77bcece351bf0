#!/usr/bin/env python3
"""Parley chat server.  Run: python python_server.py [--port 8888]  (see --help)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from parley.server.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
