"""The login tokens a desktop client keeps between runs, so that reopening it
does not ask for the password again (the web client keeps its token in the
browser's storage; this is the same for the terminal and desktop clients).

One file, ``logins.json`` in the client's config directory
(``~/.config/parley``; ``%APPDATA%\\parley`` on Windows), readable by its owner
only (mode 0600 where the system has modes), mapping ``host:port`` and the
casefolded account name to the token the server gave at login::

    {"127.0.0.1:8888 alice": "q3N…"}

A token is as good as the password for this one device until it is revoked
(``/logout``, ``/revoke``, a password change, or the server's ``user revoke``),
so the file is written atomically and never logged.  Guests are not kept (a
guest's name is free again once it leaves).
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Optional

from .core import config_dir


def default_path() -> str:
    return str(config_dir() / "logins.json")


def _key(host: str, port: int, name: str) -> str:
    host = host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port} {name.casefold()}"


class LoginStore:
    """Tokens by server and account name.  Every call reads or rewrites the file:
    two clients of one user (a terminal and a desktop) share it."""

    _lock = threading.Lock()

    def __init__(self, path: Optional[str] = None):
        self.path = path or default_path()

    def _read(self) -> dict[str, str]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError, UnicodeDecodeError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}

    def get(self, host: str, port: int, name: str) -> Optional[str]:
        return self._read().get(_key(host, port, name))

    def put(self, host: str, port: int, name: str, token: Optional[str]) -> None:
        """Keep ``token`` (None: forget it).  OSError if the file cannot be written."""
        key = _key(host, port, name)
        with self._lock:
            entries = self._read()
            if token is None:
                if key not in entries:
                    return
                del entries[key]
            else:
                if entries.get(key) == token:
                    return
                entries[key] = token
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".logins-", dir=target.parent)
            try:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, 0o600)            # (mkstemp makes it 0600 already)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(entries, f, indent=1, sort_keys=True)
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise

    def forget(self, host: str, port: int, name: str) -> None:
        self.put(host, port, name, None)
