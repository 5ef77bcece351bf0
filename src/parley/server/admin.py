"""``parley-server user ...``: accounts from the command line.

    parley-server user add alice --admin      # asks for the password twice
    parley-server user list
    parley-server user passwd alice           # a new password; logs out her sessions
    parley-server user admin alice off
    parley-server user sessions alice
    parley-server user revoke alice 3f2a9c1e  # or --all
    parley-server user remove alice

It works on the server's database (``--data-dir``/``--db`` as for the server),
also while the server runs: SQLite orders the writes.  A change reaches a
running server at the next login: a removed account or a revoked session can
no longer log in or reconnect, but a connection that is open stays until it
ends.  ``--password-stdin`` reads the password from the first line of stdin
(scripts).  Passwords are never printed or logged.
"""
from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sqlite3
import sys
import time
from typing import Optional

from .. import protocol as p
from . import accountdb
from . import accounts as acc
from .store import BUSY_TIMEOUT_MS, SCHEMA_VERSION, Store, StoreError, default_data_dir


class AdminError(Exception):
    """Something to tell the operator (one line); exit status 1."""


def _db_path(args: argparse.Namespace) -> str:
    if args.db is not None:
        if args.db == ":memory:":
            raise AdminError("--db :memory: has no accounts to manage (it is thrown away)")
        return args.db
    return os.path.join(args.data_dir or default_data_dir(), "parley.db")


def connect(path: str) -> sqlite3.Connection:
    """A connection to the database at ``path``, created or migrated first if
    needed (which a running server has always done already)."""
    version = -1
    if os.path.exists(path):
        with sqlite3.connect(path) as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        try:
            Store(path).open().close()
        except StoreError as e:
            raise AdminError(str(e)) from None
    c = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    c.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return c


def _read_password(args: argparse.Namespace, name: str) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise AdminError("no terminal to ask for a password: use --password-stdin")
        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass("Again: ") != password:
            raise AdminError("the two passwords differ; nothing changed")
    problem = acc.password_problem(password)
    if problem:
        raise AdminError(problem)
    return password


def _account(c: sqlite3.Connection, name: str) -> accountdb.Account:
    account = accountdb.get(c, name)
    if account is None:
        raise AdminError(f"there is no account {name!r}")
    return account


def _ts(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000)) if ms else "-"


def _now() -> int:
    return int(time.time() * 1000)


def cmd_add(c: sqlite3.Connection, args: argparse.Namespace) -> str:
    problem = p.validate_name(args.name)
    if problem:
        raise AdminError(f"{problem} ({p.NAME_RULES})")
    if accountdb.get(c, args.name) is not None:
        raise AdminError(f"the name {args.name!r} has an account already")
    password = _read_password(args, args.name)
    # a guest who used this name keeps its history under its own session: the
    # account starts afresh
    account = accountdb.create(c, args.name, secrets.token_hex(8), acc.hash_password(password),
                               args.admin, _now())
    if account is None:
        raise AdminError(f"the name {args.name!r} has an account already")
    return f"added {account.name}" + (" (admin)" if account.admin else "")


def cmd_remove(c: sqlite3.Connection, args: argparse.Namespace) -> str:
    account = _account(c, args.name)
    revoked = accountdb.remove(c, account.sid)
    return (f"removed {account.name} and its {len(revoked)} session(s); its messages stay "
            f"in the history")


def cmd_passwd(c: sqlite3.Connection, args: argparse.Namespace) -> str:
    account = _account(c, args.name)
    password = _read_password(args, account.name)
    accountdb.set_hash(c, account.sid, acc.hash_password(password))
    revoked = accountdb.revoke(c, account.sid)
    return f"new password for {account.name}; {len(revoked)} session(s) logged out"


def cmd_admin(c: sqlite3.Connection, args: argparse.Namespace) -> str:
    account = _account(c, args.name)
    accountdb.set_admin(c, account.sid, args.state == "on")
    return f"{account.name} is {'an admin' if args.state == 'on' else 'no longer an admin'}"


def cmd_list(c: sqlite3.Connection, args: argparse.Namespace) -> str:
    rows = accountdb.all_accounts(c)
    if not rows:
        return "no accounts yet (add one with: parley-server user add NAME --admin)"
    lines = [f"{'name':<20} {'admin':<6} {'sessions':>8}  created"]
    for a in rows:
        n = len(accountdb.logins(c, a.sid))
        lines.append(f"{a.name:<20} {'yes' if a.admin else '':<6} {n:>8}  {_ts(a.created)}")
    return "\n".join(lines)


def cmd_sessions(c: sqlite3.Connection, args: argparse.Namespace) -> str:
    account = _account(c, args.name)
    rows = accountdb.logins(c, account.sid)
    if not rows:
        return f"{account.name} has no sessions"
    lines = [f"{'id':<9} {'device':<24} {'last seen':<17} logged in"]
    for x in rows:
        lines.append(f"{x.id:<9} {(x.device or '-')[:24]:<24} {_ts(x.seen):<17} {_ts(x.created)}")
    return "\n".join(lines)


def cmd_revoke(c: sqlite3.Connection, args: argparse.Namespace) -> str:
    account = _account(c, args.name)
    if args.all == (args.id is not None):
        raise AdminError("give a session id (see `user sessions`) or --all")
    revoked = accountdb.revoke(c, account.sid, args.id)
    if args.id is not None and not revoked:
        raise AdminError(f"{account.name} has no session {args.id}")
    return f"logged out {len(revoked)} session(s) of {account.name}"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="parley-server user", description="Manage Parley accounts (also while the "
        "server runs; changes apply at the next login).")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=None,
                        help=f"the server's data directory (default {default_data_dir()})")
    common.add_argument("--db", default=None, help="the database file (instead of --data-dir)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn, help: str, password: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(fn=fn)
        if password:
            sp.add_argument("--password-stdin", action="store_true",
                            help="read the password from the first line of stdin")
        return sp

    sp = add("add", cmd_add, "add an account (asks for its password)", password=True)
    sp.add_argument("name")
    sp.add_argument("--admin", action="store_true", help="a server admin")
    add("remove", cmd_remove, "remove an account and log out its sessions").add_argument("name")
    add("passwd", cmd_passwd, "set a new password (logs out every session)",
        password=True).add_argument("name")
    sp = add("admin", cmd_admin, "make an account a server admin, or not")
    sp.add_argument("name")
    sp.add_argument("state", choices=("on", "off"))
    add("list", cmd_list, "list the accounts")
    add("sessions", cmd_sessions, "list an account's sessions").add_argument("name")
    sp = add("revoke", cmd_revoke, "log out a session of an account (or --all)")
    sp.add_argument("name")
    sp.add_argument("id", nargs="?", default=None)
    sp.add_argument("--all", action="store_true")
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        c = connect(_db_path(args))
        try:
            print(args.fn(c, args))
        finally:
            c.close()
    except AdminError as e:
        print(f"parley-server user {args.command}: {e}", file=sys.stderr)
        return 1
    except sqlite3.Error as e:
        print(f"parley-server user {args.command}: the database failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    return 0
