"""Remembering the last connection (name, host, port, theme) between runs.

A small JSON file: ``$XDG_CONFIG_HOME/parley/gui.json`` (``~/.config/parley``
when XDG_CONFIG_HOME is unset; ``%APPDATA%\\parley`` on Windows).  Any problem
reading or writing it is ignored: the client then starts with its defaults.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..core import config_dir

FILE_NAME = "gui.json"
KEYS = ("name", "host", "port", "theme", "tls")       # tls: "on" | "off"


def path() -> Path:
    return config_dir() / FILE_NAME


def load() -> dict:
    try:
        with open(path(), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for key in KEYS:
        value = data.get(key)
        if key == "port" and isinstance(value, int) and 0 < value < 65536:
            out[key] = value
        elif key != "port" and isinstance(value, str) and value:
            out[key] = value
    return out


def save(values: dict) -> bool:
    """Write ``values`` (merged over what is stored); False if it could not."""
    data = load()
    data.update({k: v for k, v in values.items() if k in KEYS and v not in (None, "")})
    target = path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gui-", suffix=".json", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, target)
        return True
    except OSError:
        return False
