#!/usr/bin/env python3
"""Parley command-line client.  Run: python python_client.py [--host H --port P --name N]."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from parley.client.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
