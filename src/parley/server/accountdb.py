"""Accounts and their logins in SQLite: the SQL in one place.

Two tables (schema v2 of parley.db, created by the store's migration)::

    accounts(key, name, sid, hash, admin, created)
        key      the casefolded name: one account per name in any letter case
        sid      the account's identity everywhere else (memberships, read
                 markers, direct messages): stable, never reused
        hash     accounts.hash_password() text (carries its own parameters)
    logins(token_hash, id, sid, device, created, seen)
        one per device that logged in: only the SHA-256 of its token is kept;
        ``id`` is a short public name for it (to list and revoke it)

Every function takes an open ``sqlite3.Connection`` (autocommit mode) and runs
in its own short transaction: the server calls them on its login workers, off
the I/O threads and beside the store's writer (SQLite's busy timeout orders
the two), and ``parley-server user ...`` calls them from the command line,
also while a server runs.  Times are milliseconds since the epoch.
"""
from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Iterator, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts(
    key TEXT PRIMARY KEY, name TEXT NOT NULL, sid TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL, admin INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logins(
    token_hash BLOB PRIMARY KEY, id TEXT NOT NULL UNIQUE, sid TEXT NOT NULL,
    device TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL DEFAULT 0,
    seen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS logins_sid ON logins(sid);
"""


@dataclass(frozen=True)
class Account:
    key: str
    name: str
    sid: str
    hash: str = ""
    admin: bool = False
    created: int = 0

    def __repr__(self) -> str:          # never the hash, even in a traceback
        return f"Account({self.name!r}, sid={self.sid!r}, admin={self.admin})"


@dataclass(frozen=True)
class Login:
    id: str
    sid: str
    device: str
    created: int
    seen: int


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_login_id() -> str:
    return secrets.token_hex(4)


@contextlib.contextmanager
def _tx(c: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    c.execute("BEGIN IMMEDIATE")
    try:
        yield c
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise
    c.execute("COMMIT")


def _account(row) -> Optional[Account]:
    return Account(row[0], row[1], row[2], row[3], bool(row[4]), row[5]) if row else None


_COLUMNS = "key, name, sid, hash, admin, created"


def get(c: sqlite3.Connection, name: str) -> Optional[Account]:
    """The account that owns ``name`` in any letter case."""
    return _account(c.execute(f"SELECT {_COLUMNS} FROM accounts WHERE key=?",
                              (name.casefold(),)).fetchone())


def by_sid(c: sqlite3.Connection, sid: str) -> Optional[Account]:
    return _account(c.execute(f"SELECT {_COLUMNS} FROM accounts WHERE sid=?",
                              (sid,)).fetchone())


def all_accounts(c: sqlite3.Connection) -> list[Account]:
    return [_account(r) for r in c.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY key")]


def count(c: sqlite3.Connection) -> int:
    return c.execute("SELECT count(*) FROM accounts").fetchone()[0]


def create(c: sqlite3.Connection, name: str, sid: str, hash: str, admin: bool,
           now: int) -> Optional[Account]:
    """Add an account; None if its name (in any case) or its sid is taken."""
    try:
        with _tx(c):
            c.execute(f"INSERT INTO accounts({_COLUMNS}) VALUES (?,?,?,?,?,?)",
                      (name.casefold(), name, sid, hash, int(admin), now))
    except sqlite3.IntegrityError:
        return None
    return Account(name.casefold(), name, sid, hash, admin, now)


def set_hash(c: sqlite3.Connection, sid: str, hash: str) -> bool:
    with _tx(c):
        return c.execute("UPDATE accounts SET hash=? WHERE sid=?", (hash, sid)).rowcount == 1


def set_admin(c: sqlite3.Connection, sid: str, admin: bool) -> bool:
    with _tx(c):
        return c.execute("UPDATE accounts SET admin=? WHERE sid=?",
                         (int(admin), sid)).rowcount == 1


def remove(c: sqlite3.Connection, sid: str) -> list[bytes]:
    """Delete an account and its logins; the token hashes that were revoked.
    (Its messages stay in the history, under its name.)"""
    with _tx(c):
        hashes = [r[0] for r in c.execute("SELECT token_hash FROM logins WHERE sid=?", (sid,))]
        c.execute("DELETE FROM logins WHERE sid=?", (sid,))
        c.execute("DELETE FROM accounts WHERE sid=?", (sid,))
    return hashes


def add_login(c: sqlite3.Connection, th: bytes, sid: str, device: str, now: int) -> Login:
    """Record a login (a device's token, by its hash) for account ``sid``."""
    with _tx(c):
        # a guest session that becomes an account keeps its token: it moves here
        c.execute("DELETE FROM sessions WHERE token_hash=?", (th,))
        for _ in range(8):
            lid = new_login_id()
            try:
                c.execute("INSERT INTO logins(token_hash, id, sid, device, created, seen) "
                          "VALUES (?,?,?,?,?,?)", (th, lid, sid, device, now, now))
                return Login(lid, sid, device, now, now)
            except sqlite3.IntegrityError as e:
                if "logins.id" not in str(e):
                    raise
    raise RuntimeError("could not pick a login id")      # 8 collisions of 32 random bits


def login_by_token_hash(c: sqlite3.Connection, th: bytes) -> Optional[Login]:
    row = c.execute("SELECT id, sid, device, created, seen FROM logins WHERE token_hash=?",
                    (th,)).fetchone()
    return Login(*row) if row else None


def touch(c: sqlite3.Connection, th: bytes, now: int) -> None:
    with _tx(c):
        c.execute("UPDATE logins SET seen=? WHERE token_hash=?", (now, th))


def logins(c: sqlite3.Connection, sid: str) -> list[Login]:
    """An account's logins, the most recently seen first."""
    return [Login(*r) for r in c.execute(
        "SELECT id, sid, device, created, seen FROM logins WHERE sid=? "
        "ORDER BY seen DESC, created DESC, id", (sid,))]


def revoke(c: sqlite3.Connection, sid: str, login_id: Optional[str] = None,
           keep: Optional[str] = None) -> list[bytes]:
    """Delete logins of ``sid``: the one called ``login_id``, or (None) every
    one but ``keep``.  Returns the token hashes deleted."""
    with _tx(c):
        if login_id is not None:
            rows = c.execute("SELECT token_hash FROM logins WHERE sid=? AND id=?",
                             (sid, login_id)).fetchall()
        else:
            rows = c.execute("SELECT token_hash FROM logins WHERE sid=? AND id IS NOT ?",
                             (sid, keep)).fetchall()
        hashes = [r[0] for r in rows]
        c.executemany("DELETE FROM logins WHERE token_hash=?", [(h,) for h in hashes])
    return hashes
