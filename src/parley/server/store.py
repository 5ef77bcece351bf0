"""Parley's durable history: SQLite (stdlib ``sqlite3``), one writer thread, group commit.

    store = Store(os.path.join(default_data_dir(), DB_NAME))
    store.open()                        # StoreError with a one-line reason if it cannot
    store.start(on_commit)              # the writer thread
    store.submit(Write(op="event", kind="say", room="#general", sender="alice",
                       sender_sid=sid, text="hi", label="c1-1", ctx=anything))
    # ... on the writer thread, once committed:  on_commit([that write, ...], None)
    #     with write.id and write.ts set; or on_commit(batch, "database or disk is full")
    frames, more = store.history(sid, room="#general", before=100, limit=50)
    store.close()

Writes
    Every change goes through ``submit`` (thread-safe, a queue, never blocks on
    I/O).  The writer thread takes everything queued (up to ``batch_max``;
    fewer than that, a power of two of them), runs it in ONE transaction,
    commits, then calls ``on_commit(batch, None)`` on its own thread.  A batch
    of only messages, joins and leaves is one multi-row INSERT, which SQLite
    commits as its own transaction: under load each SQLite call costs the
    writer a wait for the GIL, so fewer calls is what makes it fast.  The writer gives each event its ``id`` (one sequence,
    strictly increasing, taken from ``MAX(id)`` at open so it never repeats
    after a crash) and its ``ts`` (ms, never going backwards).

    Failures: if the transaction fails (disk full, I/O error, read-only...),
    nothing of the batch is stored, every write gets ``id = None`` and
    ``error``, and ``on_commit(batch, "one-line reason")`` is called; the store
    keeps serving later batches.  If ONE write breaks a constraint (e.g. a
    session whose token hash belongs to another session), only that write
    fails (``write.id`` None, ``write.error`` set): SQLite undoes just that
    statement, the rest of the batch is committed and ``error`` is None.

    WAL with ``synchronous=NORMAL``: a committed transaction survives the
    process being killed (kill -9), not necessarily a power cut.

Reads
    From any thread, on a connection of that thread's own (read-only use).
    Reads return plain dicts in wire form (docs/protocol.md), built exactly as
    ``parley.protocol``'s typed events serialise.  Reads that run several
    queries do so in one read transaction (one consistent snapshot).

Costs (figures: benchmarks/store_bench.py)
    Commits do not fsync (WAL + NORMAL); a checkpointer thread copies the WAL
    back about once a second.  Full-text search is an FTS5 index in its own
    file (``parley-search.db``), kept by an indexer thread that follows the
    committed events (what INDEX_DELAY of commits brings, in one transaction):
    its tokenizing and segment merging never hold up a commit, and it rebuilds
    itself if lost or damaged.  A search first waits
    (at most SEARCH_WAIT) until the index covers what was committed, so a
    message that was acknowledged is found.  Searches in a few rooms are kept
    to them by FTS5 itself (``scope`` tokens), so a common word in a small
    room stays cheap however big the history.

Files
    ``<data dir>/parley.db`` (+ ``-wal``, ``-shm``), ``parley-search.db``
    (the search index, derived from parley.db) and ``parley.db.lock``,
    which an open store holds locked so a second server on the same data
    directory fails at once.  ``":memory:"`` keeps nothing after close: a
    database in a private temporary directory, removed at close (see
    ``_connect_memory`` for why not SQLite's in-memory modes).
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import queue
import re
import secrets
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from . import accountdb
from . import moderation

from ..protocol import format_ts

try:                                    # POSIX
    import fcntl
except ImportError:                     # pragma: no cover - Windows
    fcntl = None                        # type: ignore[assignment]
try:                                    # Windows
    import msvcrt
except ImportError:
    msvcrt = None                       # type: ignore[assignment]

log = logging.getLogger("parley.store")

DB_NAME = "parley.db"
MEMORY = ":memory:"
UNREAD_CAP = 999            # unread counts stop at this (so counting stays cheap)
BUSY_TIMEOUT_MS = 5000
CHECKPOINT_EVERY = 1.0     # s: a background thread checkpoints the WAL this often (if written)
WAL_AUTOCHECKPOINT = 10000  # pages: past this the writer checkpoints itself (a safety net)
MAX_PARAMS = 500            # room keys bound in one statement (old SQLite allows 999)
KINDS = ("say", "me", "join", "leave", "topic", "mod")
CHAT = ("say", "me")
OPS = ("event", "room", "topic_set", "member_add", "member_remove", "session", "read",
       "barrier", "exec")


_INSERT_EVENT = ("INSERT INTO events(id, ts, kind, room, sender, sender_sid, target, "
                 "target_sid, text, label) VALUES ")
_EVENT_ROW = "(?,?,?,?,?,?,?,?,?,?)"
_ROWS_MAX = 1024          # most rows in one INSERT (a power of two)
_ROWS_OLD_SQLITE = 64     # 640 bound values: under the 999 of SQLite builds before 3.32


def _rows_per_insert(conn: sqlite3.Connection) -> int:
    """The largest power of two, at most _ROWS_MAX, of event rows that one INSERT
    may bind on ``conn`` (ten values a row)."""
    if hasattr(conn, "getlimit"):                   # Python 3.11+
        params = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    else:
        params = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    rows = _ROWS_MAX
    while rows > 1 and rows * 10 > params:
        rows //= 2
    return rows


def _chunk_sizes(n: int, most: int) -> list[int]:
    """Split ``n`` rows into INSERTs of power-of-two sizes, largest first: a
    batch of any size is written with few statements (each one hands the GIL
    back and forth), and there are only log2(most)+1 different statements, so
    all of them stay in the connection's statement cache."""
    sizes = []
    while n > 0:
        size = min(most, 1 << (n.bit_length() - 1))
        sizes.append(size)
        n -= size
    return sizes


class StoreError(Exception):
    """The store cannot be used: the message is one human line."""


class BadQuery(ValueError):
    """A search the full-text engine cannot parse (a one-line message)."""


@dataclass(eq=False)
class Write:
    """One change for the writer thread.  ``op`` and the fields it uses:

    - ``"event"``: kind (say|me|join|leave|topic), room (key; None for a DM),
      sender, sender_sid, target + target_sid (a DM), text (message, topic or
      leave reason), label.  The writer sets ``id`` and ``ts`` (ms).  A
      ``topic`` event also sets the room's topic (same transaction).
    - ``"room"``: room (key), name (as created, e.g. ``#Python``); kept if it exists.
    - ``"topic_set"``: room, text (the topic).
    - ``"member_add"`` / ``"member_remove"``: sid, room.
    - ``"session"``: sid, name, token_hash (sha256 of the token); an existing
      sid gets its name and last-seen time updated.
    - ``"read"``: sid, conv (room key, or ``@`` + casefolded peer), read_id
      (never moves back).
    - ``"barrier"``: nothing stored; it comes back in ``on_commit`` after
      everything submitted before it.
    - ``"exec"``: text (one SQL statement), params: a change of moderation.py's
      tables (roles, sanctions, invites, audit) in the writer's order.

    ``ctx`` is yours, returned untouched.  After the commit: ``id``/``ts`` set
    for a stored event; ``id`` None and ``error`` (one line) if not stored.
    """
    op: str
    kind: Optional[str] = None
    room: Optional[str] = None
    sender: Optional[str] = None
    sender_sid: Optional[str] = None
    target: Optional[str] = None
    target_sid: Optional[str] = None
    text: Optional[str] = None
    label: Optional[str] = None
    ctx: Any = None
    sid: Optional[str] = None
    name: Optional[str] = None
    token_hash: Optional[bytes] = None
    conv: Optional[str] = None
    read_id: Optional[int] = None
    params: Optional[tuple] = None
    id: Optional[int] = None
    ts: Optional[int] = None
    error: Optional[str] = None


OnCommit = Callable[[list, Optional[str]], None]


# --- places and names -------------------------------------------------------------
def default_data_dir() -> str:
    """Where Parley keeps its data for this user, by platform convention."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, "Parley")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "Parley")
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(home, ".local", "share")
    return os.path.join(base, "parley")


def room_key(name: str) -> str:
    """``#Python`` -> ``#python``: how rooms are keyed (and their read-marker conv)."""
    return name.casefold()


def peer_conv(name: str) -> str:
    """The read-marker conversation key of a direct conversation with ``name``."""
    return "@" + name.casefold()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# --- schema -----------------------------------------------------------------------
# v1.  events.room / memberships.room / reads.conv hold room KEYS (casefolded,
# with the '#'); the display name is rooms.name.  Indexes are partial so each
# row pays only for the index it needs: room rows for (room, id), DM rows for
# the two direction indexes keyed by session and peer name.
_V1_TABLES = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms(
    key TEXT PRIMARY KEY, name TEXT NOT NULL, topic TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions(
    sid TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash BLOB UNIQUE,
    created INTEGER NOT NULL DEFAULT 0, seen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS memberships(
    sid TEXT NOT NULL, room TEXT NOT NULL, PRIMARY KEY(sid, room)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, room TEXT,
    sender TEXT NOT NULL, sender_sid TEXT, target TEXT, target_sid TEXT,
    text TEXT, label TEXT);
CREATE TABLE IF NOT EXISTS reads(
    sid TEXT NOT NULL, conv TEXT NOT NULL, read_id INTEGER NOT NULL,
    PRIMARY KEY(sid, conv)) WITHOUT ROWID;
"""
_V1_INDEXES = """
CREATE INDEX IF NOT EXISTS events_room ON events(room) WHERE room IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_dm_out ON events(sender_sid, lower(target)) WHERE room IS NULL;
CREATE INDEX IF NOT EXISTS events_dm_in ON events(target_sid, lower(sender)) WHERE room IS NULL;
"""
# Full text lives in a SEPARATE database file, ``parley-search.db`` beside
# ``parley.db``: an index derived from events, kept by an indexer thread with
# its own connection.  SQLite has one write lock per database, and FTS5 does
# real work when it writes (it tokenizes, and merges its segments: single merge
# steps of 25-50 ms of CPU at a million messages, measured); in the events
# database that work would hold up the commits that acknowledge messages.  In
# its own file it never does.  The index says how far it got (meta
# ``indexed_upto``, an event id), so after a crash, a lost or a damaged file it
# simply catches up from ``events``; searches wait (briefly) until it covers
# what was committed when they started.
#
# The table is a contentless FTS5 table (the text is in events) with two
# columns: ``text``, and ``scope``: who may read the row, as tokens --
# ``r<hex of the room key>`` for a room message, ``u<hex of the session id>``
# for each of a DM's two sessions.  A search in a few rooms asks FTS5 for
# ``text : (query) AND scope : (r.. OR u..)``, an intersection of doclists,
# instead of walking every match of a common word to find the few in a small
# room (at 1M messages: 20-100 ms -> < 1 ms).  No per-row size table
# (columnsize=0): results are ordered by id, never ranked.  FTS5's own
# "automerge" (merging inside every write) is off: the indexer merges in small
# steps when it has nothing to index.
SEARCH_SCHEMA_VERSION = 1
_SEARCH_TABLES = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(text, scope, content='',
    columnsize=0, tokenize='unicode61 remove_diacritics 2');
"""


def _scope_sql(t: str) -> str:
    return (f"CASE WHEN {t}.room IS NOT NULL THEN 'r' || hex({t}.room) ELSE "
            f"trim(coalesce('u' || hex({t}.sender_sid), '') || ' ' || "
            f"coalesce('u' || hex({t}.target_sid), '')) END")


# the indexer: the messages with lo < id <= hi, from the events database (attached as ev)
_INDEX_RANGE = (f"INSERT INTO events_fts(rowid, text, scope) SELECT e.id, e.text, {_scope_sql('e')} "
                "FROM ev.events e WHERE e.id > ? AND e.id <= ? AND e.kind IN ('say', 'me') "
                "AND e.text IS NOT NULL")
INDEX_CHUNK = 20000        # event ids indexed in one transaction (~50 ms of work)
MERGE_PAGES = 4            # FTS5 merge work in one step of the indexer (pages)
INDEX_DELAY = 0.1          # s the indexer gathers commits before indexing them in one go
SEARCH_WAIT = 2.0          # s a search waits for the index to cover what was committed
SCOPE_TERMS = 8            # scopes up to this many rooms (+ DMs) are searched by token
_LEGACY_FTS = ("events_fts_ai", "events_fts_ad", "events_fts_au")   # early v1: FTS in parley.db
_V0_EVENT_COLUMNS = {"id", "ts", "kind", "room", "sender", "sender_sid", "target", "text"}


def _tables(conn: sqlite3.Connection) -> set:
    return {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Nothing, or version 0 -> version 1.

    Version 0 (the first history store) had events without ``target_sid`` and
    ``label``, no read markers and no full-text index: a direct message named
    its recipient only.  Moving up, a DM's ``target_sid`` is filled in when
    exactly one stored session had the recipient's name; otherwise it stays
    NULL and the DM belongs to its sender's session only (privacy first).
    The search index (parley-search.db) catches up by itself."""
    if "events" in _tables(conn):
        cols = {r[1] for r in conn.execute("PRAGMA table_info(events)")}
        if "target_sid" not in cols:
            conn.execute("ALTER TABLE events ADD COLUMN target_sid TEXT")  # pragma: no mutate
        if "label" not in cols:
            conn.execute("ALTER TABLE events ADD COLUMN label TEXT")  # pragma: no mutate
        conn.execute("DROP INDEX IF EXISTS events_by_room")  # pragma: no mutate -- v0's (room, id)
        if "sessions" in _tables(conn):
            conn.execute("""
                UPDATE events SET target_sid =
                    (SELECT s.sid FROM sessions s WHERE lower(s.name) = lower(events.target))
                WHERE room IS NULL AND target IS NOT NULL AND target_sid IS NULL
                  AND (SELECT count(*) FROM sessions s
                       WHERE lower(s.name) = lower(events.target)) = 1""")
    for stmt in _split(_V1_TABLES + _V1_INDEXES):
        conn.execute(stmt)


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Version 1 -> 2: accounts and their logins (see accountdb.py)."""
    for stmt in _split(accountdb.SCHEMA):
        conn.execute(stmt)


def _migrate_v3(conn: sqlite3.Connection) -> None:
    """Version 2 -> 3: moderation (see moderation.py)."""
    for stmt in _split(moderation.SCHEMA):
        conn.execute(stmt)


# MIGRATIONS[i] takes a database from user_version i to i + 1.  Add new ones at
# the end; never change a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_v1, _migrate_v2, _migrate_v3]
SCHEMA_VERSION = len(MIGRATIONS)


def _split(script: str) -> list[str]:
    """Split a DDL script into statements (triggers keep their inner ';')."""
    out, cur = [], []
    for line in script.strip().splitlines():
        cur.append(line)
        text = "\n".join(cur).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            out.append(text)
            cur = []
    return out


def fts5_available(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.parley_fts5_probe USING fts5(x)")  # pragma: no mutate
        conn.execute("DROP TABLE temp.parley_fts5_probe")  # pragma: no mutate
        return True
    except sqlite3.OperationalError:
        return False


# --- reads: rows to wire frames -----------------------------------------------------
_COLS = "id, ts, kind, room, sender, target, text, label, sender_sid"
_ECOLS = "e.id, e.ts, e.kind, e.room, e.sender, e.target, e.text, e.label, e.sender_sid"
_FTS_QUERY_ERRORS = ("fts5:", "no such column", "unknown special query", "unterminated string",
                     "parser stack overflow", "malformed MATCH")
_BAREWORD = re.compile(r"\^?[\w\x1a\x80-\U0010ffff]+\*?")   # FTS5 bareword (+ ^ and prefix *)
_OPERATORS = {"AND", "OR", "NOT"}
_NEAR = re.compile(r"NEAR(/\d+)?")


def _requote(query: str) -> str:
    """Keep FTS5 structure (quoted phrases, parentheses, AND/OR/NOT/NEAR) and
    quote every other word that is not a valid bareword, so that what people
    type ("don't", "c++", "what?", "http://x") searches for its words."""
    out: list[str] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            out.append(ch)
            i += 1
        elif ch == '"':
            j = i + 1
            while True:             # the closing quote ("" inside is an escaped quote)
                j = query.find('"', j)
                if j < 0 or query[j + 1:j + 2] != '"':
                    break
                j += 2
            if j < 0:               # unterminated: take the rest as a phrase
                out.append('"' + query[i + 1:].replace('"', '""') + '"')
                break
            out.append(query[i:j + 1])
            i = j + 1
        else:
            j = i
            while j < n and not query[j].isspace() and query[j] not in '()"':
                j += 1
            word = query[i:j]
            if word in _OPERATORS or _NEAR.fullmatch(word) or _BAREWORD.fullmatch(word):
                out.append(word)
            else:
                out.append('"' + word + '"')      # (a word holds no '"')
            i = j
    return " ".join(out)


def _mention_re(name: str) -> "re.Pattern[str]":
    # a name is [A-Za-z0-9_.-]: "bob" is in "@bob," and "bob." but not in "bobby" or "bob.smith"
    return re.compile(r"(?<![A-Za-z0-9_.\-])" + re.escape(name) +
                      r"(?![A-Za-z0-9_\-])(?!\.[A-Za-z0-9_\-])", re.IGNORECASE)


def _like_pattern(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class Store:
    """Parley's history in SQLite.  See the module docstring.

    ``path``: the database file (its directory is created and locked), or
    ``":memory:"``.  ``clock``: seconds since the epoch (event timestamps).
    ``batch_max``: most writes in one transaction.  ``batch_wait``: if > 0 and
    the writer finds only a few writes queued, it waits up to that long for
    more before committing.  Off by default: benchmarks/store_bench.py measured
    no throughput gain (the queue fills by itself while a commit runs) and
    twice the ack latency at a steady 2,000 messages/s."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time,
                 batch_max: int = 1024, batch_wait: float = 0.0):
        self.memory = path == MEMORY
        self.path = path if self.memory else os.path.abspath(path)
        self.clock = clock
        self.batch_max = max(1, batch_max)
        self.batch_wait = batch_wait
        self._rows_per_insert = _ROWS_OLD_SQLITE
        self._inserts: dict[int, str] = {}
        self.instance = ""
        self.last_id = 0
        self.opened = False
        self.fts = False                    # full-text search with FTS5 (else LIKE)
        self._uri = ""
        self._wconn: Optional[sqlite3.Connection] = None
        self._lock_fd: Optional[int] = None
        self._tmpdir: Optional[str] = None
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._checkpointer: Optional[threading.Thread] = None
        self._ckpt_stop = threading.Event()
        self._commits = 0                   # transactions committed (for the checkpointer)
        self._sconn: Optional[sqlite3.Connection] = None    # the indexer's (search index)
        self._indexer: Optional[threading.Thread] = None
        self._index_wake = threading.Event()     # something was committed (or stop)
        self._index_now = threading.Event()      # a search waits: index without delay
        self._index_stop = False
        self._index_cv = threading.Condition()
        self._indexed = 0                   # the index covers events up to this id
        self._index_ok = True               # the last indexing attempt worked
        self._merging = False               # the index may have segments to merge
        self._on_commit: Optional[OnCommit] = None
        self._closed = False
        self._last_ts = 0
        self._local = threading.local()
        self._readers: dict[threading.Thread, sqlite3.Connection] = {}
        self._readers_lock = threading.Lock()
        self._names: dict[str, str] = {}        # room key -> display name (never changes)
        self._like_logged = False

    def __repr__(self) -> str:
        return f"Store({self.path!r}, last_id={self.last_id})"

    def __enter__(self) -> "Store":
        if not self.opened:
            self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def data_dir(self) -> Optional[str]:
        return None if self.memory else os.path.dirname(self.path)

    # --- open / close --------------------------------------------------------------
    def open(self) -> "Store":
        """Create or migrate the database and lock the data directory.
        Raises StoreError (one line) if the store cannot be used."""
        if self.opened:
            return self
        if self._closed:
            raise StoreError("this store was closed; make a new one")
        if not self.memory:
            self._uri = self.path
            self._lock_dir()
        try:
            if self.memory:
                self._wconn = self._connect_memory()
            else:
                self._wconn = self._connect()
            self._prepare(self._wconn)
            self._rows_per_insert = _rows_per_insert(self._wconn)
            if self.fts:
                self._open_search()
        except sqlite3.Error as e:
            self._abort_open()
            raise StoreError(self._describe(e)) from None
        except StoreError:
            self._abort_open()
            raise
        except OSError as e:                # e.g. no temporary directory for ":memory:"
            self._abort_open()
            raise StoreError(f"cannot open {self.path}: {e.strerror or e}") from None
        self.opened = True
        if self.fts:
            self._indexer = threading.Thread(target=self._index_loop, name="parley-store-index",
                                             daemon=True)
            self._indexer.start()
        log.info("history in %s: schema v%d, last id %d, search %s", self.path,
                 SCHEMA_VERSION, self.last_id, "FTS5" if self.fts else "LIKE (no FTS5)")
        return self

    def _connect(self, path: Optional[str] = None) -> sqlite3.Connection:
        conn = sqlite3.connect(path or self._uri, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    def _connect_memory(self) -> sqlite3.Connection:
        """``":memory:"``: a database file in a private temporary directory (WAL,
        no fsync), removed at close, so that readers on other threads have their
        own connections with snapshot reads as with a real file.  SQLite's own
        in-memory modes were measured worse: a shared-cache ``mode=memory``
        database lets readers see half-written FTS pages or fail with "table is
        locked", and the memdb VFS blocks every reader for the whole of each
        write transaction (readers starved under a steady write load)."""
        self._tmpdir = tempfile.mkdtemp(prefix="parley-memory-")
        self._uri = os.path.join(self._tmpdir, DB_NAME)
        conn = self._connect()
        conn.execute("PRAGMA journal_mode=WAL")  # pragma: no mutate
        conn.execute("PRAGMA synchronous=OFF")  # pragma: no mutate -- thrown away at close anyway
        return conn

    def _prepare(self, c: sqlite3.Connection) -> None:
        if not self.memory:
            mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot use {self.path}: WAL journal not available ({mode})")
            c.execute("PRAGMA synchronous=NORMAL")  # pragma: no mutate
            c.execute("PRAGMA journal_size_limit=67108864")  # pragma: no mutate
            # checkpoints (the only fsyncs with synchronous=NORMAL) run on the
            # checkpointer thread, off the ack path; this is only a backstop
            c.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer Parley (schema version {version}; this "
                f"one knows up to {SCHEMA_VERSION}): upgrade Parley or use another data directory")
        if version == 0:
            tables = _tables(c) - {"sqlite_sequence"}
            if "events" in tables:
                cols = {r[1] for r in c.execute("PRAGMA table_info(events)")}
                if not _V0_EVENT_COLUMNS <= cols:
                    raise StoreError(f"{self.path} is not a Parley database "
                                     f"(its events table is not Parley's)")
            elif tables:
                raise StoreError(f"{self.path} is not a Parley database (it has other tables: "
                                 f"{', '.join(sorted(tables)[:5])})")
        for v in range(version, SCHEMA_VERSION):
            c.execute("BEGIN IMMEDIATE")  # pragma: no mutate
            try:
                MIGRATIONS[v](c)
                c.execute(f"PRAGMA user_version={v + 1}")
                c.execute("COMMIT")  # pragma: no mutate
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")  # pragma: no mutate
                raise
            if version:
                log.info("%s: migrated the schema from v%d to v%d", self.path, v, v + 1)
        now = int(self.clock() * 1000)
        c.execute("BEGIN IMMEDIATE")  # pragma: no mutate
        try:
            row = c.execute("SELECT value FROM meta WHERE key='instance'").fetchone()
            if row is None or not re.fullmatch(r"[0-9a-f]{12}", row[0] or ""):
                self.instance = secrets.token_hex(6)
                c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('instance', ?)",  # pragma: no mutate
                          (self.instance,))
            else:
                self.instance = row[0]
            # a write at every open: a read-only file or a full disk fails here, not later
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('opened', ?)", (str(now),))  # pragma: no mutate
            c.execute("INSERT INTO rooms(key, name, topic, created) VALUES ('#general', "  # pragma: no mutate
                      "'#general', '', ?) ON CONFLICT(key) DO NOTHING",  # pragma: no mutate
                      (now,))
            self.fts = fts5_available(c)
            self._drop_legacy_fts(c)
            c.execute("COMMIT")  # pragma: no mutate
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")  # pragma: no mutate
            raise
        self.last_id = c.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
        self._last_ts = c.execute(
            "SELECT coalesce(max(ts), 0) FROM events WHERE id = ?", (self.last_id,)).fetchone()[0]
        self._names = dict(c.execute("SELECT key, name FROM rooms"))

    def _drop_legacy_fts(self, c: sqlite3.Connection) -> None:
        """(in a transaction) An early v1 kept the index in parley.db, updated by
        triggers: drop them (with FTS5 missing they would fail every insert)."""
        for t in _LEGACY_FTS:
            c.execute(f"DROP TRIGGER IF EXISTS {t}")
        if self.fts and "events_fts" in _tables(c):
            c.execute("DROP TABLE events_fts")  # pragma: no mutate
        if not self.fts:
            log.warning("this SQLite (%s) has no FTS5: search uses LIKE on words",
                        sqlite3.sqlite_version)

    @property
    def search_path(self) -> str:
        """The search index's file: ``parley-search.db`` beside ``parley.db``."""
        root, ext = os.path.splitext(self._uri if self.memory else self.path)
        return f"{root}-search{ext or '.db'}"

    def _open_search(self) -> None:
        """Open (or make, or remake) the search index for the indexer thread.
        It is derived data: a damaged or foreign file is rebuilt, not an error."""
        for attempt in (1, 2):
            conn = None
            try:
                conn = self._connect(self.search_path)
                conn.execute("PRAGMA journal_mode=WAL")  # pragma: no mutate
                conn.execute("PRAGMA synchronous=NORMAL")  # pragma: no mutate
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                row = None
                if version == SEARCH_SCHEMA_VERSION:
                    row = conn.execute("SELECT value FROM meta WHERE key='instance'").fetchone()
                if row is None or row[0] != self.instance:       # new, old or another's
                    if version or row is not None:
                        log.warning("%s belongs to another database or version: rebuilding it",
                                    self.search_path)
                    conn.execute("BEGIN IMMEDIATE")  # pragma: no mutate
                    conn.execute("DROP TABLE IF EXISTS events_fts")  # pragma: no mutate
                    conn.execute("DROP TABLE IF EXISTS meta")  # pragma: no mutate
                    for stmt in _split(_SEARCH_TABLES):
                        conn.execute(stmt)
                    conn.execute("INSERT INTO events_fts(events_fts, rank) VALUES ('automerge', 0)")  # pragma: no mutate
                    conn.execute("INSERT INTO meta(key, value) VALUES ('instance', ?)",  # pragma: no mutate
                                 (self.instance,))
                    conn.execute("INSERT INTO meta(key, value) VALUES ('indexed_upto', '0')")  # pragma: no mutate
                    conn.execute(f"PRAGMA user_version={SEARCH_SCHEMA_VERSION}")
                    conn.execute("COMMIT")  # pragma: no mutate
                upto = int(conn.execute(
                    "SELECT value FROM meta WHERE key='indexed_upto'").fetchone()[0])
                if upto > self.last_id:       # ahead of the events: not ours after all
                    raise sqlite3.DatabaseError("index is ahead of the history")
                conn.execute("ATTACH DATABASE ? AS ev", (self._uri,))  # pragma: no mutate
            except sqlite3.DatabaseError as e:
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                msg = str(e).lower()
                damaged = any(k in msg for k in ("not a database", "malformed", "corrupt",
                                                 "ahead of", "no such table", "no such column"))
                if attempt == 2 or not damaged:
                    raise
                log.warning("%s is damaged (%s): rebuilding it", self.search_path, _one_line(e))
                for ext in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.search_path + ext)
                continue
            self._sconn = conn
            self._indexed = upto
            if upto < self.last_id:
                log.info("search index: %d events to catch up on", self.last_id - upto)
            return

    def _describe(self, e: sqlite3.Error) -> str:
        msg = _one_line(e)
        low = msg.lower()
        where = self.path
        if "not a database" in low or "malformed" in low or "corrupt" in low:
            return f"{where} is not a Parley database or is damaged: {msg}"
        if "readonly" in low or "read-only" in low:
            return f"cannot write to {where}: the file or its directory is read-only ({msg})"
        if "disk is full" in low:               # SQLite says "database or disk is full"
            return f"cannot write to {where}: the disk is full"
        if "locked" in low or "busy" in low:
            return f"{where} is locked by another program ({msg})"
        return f"cannot open {where}: {msg}"

    def _lock_dir(self) -> None:
        d = os.path.dirname(self.path)
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the data directory {d}: "
                             f"{(e.strerror or str(e)).lower()}") from None
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot write to the data directory {d}: "
                             f"{(e.strerror or str(e)).lower()}") from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif msvcrt is not None:                             # pragma: no cover, no mutate block (Windows)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError, ValueError, IndexError):   # (empty: not written yet)
                pid = int(os.pread(fd, 32, 0).split()[0]) if hasattr(os, "pread") else 0
                holder = f" by process {pid}" if pid else ""
            os.close(fd)
            raise StoreError(f"another Parley server is using {d} (lock held{holder})") from None
        if fcntl is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock_dir(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            elif msvcrt is not None:                             # pragma: no cover, no mutate block (Windows)
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _abort_open(self) -> None:
        # (the search connection is set last, when nothing can fail any more)
        if self._wconn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._wconn.close()
            self._wconn = None
        self._unlock_dir()
        self._remove_tmpdir()

    def close(self) -> None:
        """Commit what is queued, stop the writer, close everything, unlock."""
        if self._closed:
            return
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("Store.close() called from on_commit (the writer thread)")
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        elif self.opened:                    # never started: still commit what was queued
            self.commit_queued()
        if self._checkpointer is not None:
            self._ckpt_stop.set()
            self._checkpointer.join()
            self._checkpointer = None
        if self._indexer is not None:
            self._index_stop = True
            self._index_now.set()
            self._index_wake.set()
            self._indexer.join()
            self._indexer = None
        with self._readers_lock:
            readers, self._readers = list(self._readers.values()), {}
        for c in readers:
            with contextlib.suppress(sqlite3.Error):
                c.close()
        if self._sconn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._sconn.close()
            self._sconn = None
        if self._wconn is not None:
            if not self.memory:
                with contextlib.suppress(sqlite3.Error):
                    self._wconn.execute("PRAGMA optimize")  # pragma: no mutate
            with contextlib.suppress(sqlite3.Error):
                self._wconn.close()
            self._wconn = None
        self._unlock_dir()
        self._remove_tmpdir()
        self.opened = False

    def _remove_tmpdir(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def commit_queued(self) -> None:
        """Commit what is queued now, on the calling thread, in transactions of
        up to ``batch_max`` writes: for a store whose writer was never started
        (``close`` does it; tests drive the store this way, without threads).
        Only writes can be queued then: flushes and the stop come with the writer."""
        if self._thread is not None:
            raise RuntimeError("the store's writer is running: it commits what is queued")
        if not self.opened:
            raise StoreError("the store is closed" if self._closed else "the store is not open")
        batch = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for i in range(0, len(batch), self.batch_max):
            self._commit(batch[i:i + self.batch_max])

    # --- writes ----------------------------------------------------------------------
    def start(self, on_commit: Optional[OnCommit] = None) -> None:
        """Start the writer thread; ``on_commit(batch, error)`` runs on it after each
        transaction."""
        if not self.opened:
            raise StoreError("open the store before starting it")
        if self._thread is not None:
            raise RuntimeError("the store's writer is already running")
        self._on_commit = on_commit
        self._thread = threading.Thread(target=self._run, name="parley-store-writer",
                                        daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop,
                                              name="parley-store-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database about once a second, on its own
        connection: the fsync this needs never delays a commit (an ack).  PASSIVE:
        it never waits for the writer or the readers."""
        try:
            conn = self._connect()
        except sqlite3.Error as e:
            log.warning("no background checkpoints (%s): the writer does them", _one_line(e))
            return
        seen = self._commits
        try:
            while not self._ckpt_stop.wait(CHECKPOINT_EVERY):
                if self._commits == seen:
                    continue
                seen = self._commits
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # pragma: no mutate
                except sqlite3.Error as e:
                    log.warning("checkpoint failed: %s", _one_line(e))
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # --- the search index (its own file, its own thread) -----------------------------
    def _index_loop(self) -> None:
        """Index what the writer committed (it wakes us), then merge the index's
        segments a little at a time while there is nothing to index."""
        self._merging = True
        while True:
            self._index_wake.wait(1.0)
            if self._index_wake.is_set() and not self._index_now.is_set():
                # gather what the next commits bring: at a steady few thousand
                # messages a second, one index transaction per commit would cost
                # more than the commits themselves (and make segments to merge)
                self._index_now.wait(INDEX_DELAY)
            if self._index_stop:
                return
            self._index_wake.clear()
            self._index_now.clear()
            try:
                if self._indexed < self.last_id:
                    self._index_to(self.last_id)
                    self._merging = True
                while self._merging and not self._index_wake.is_set() and not self._index_stop:
                    self._merging = self._merge_step()
                self._index_ok = True
            except sqlite3.Error as e:
                if self._index_ok:
                    log.error("could not update the search index %s: %s (will retry)",
                              self.search_path, _one_line(e))
                self._index_ok = False
                with self._index_cv:
                    self._index_cv.notify_all()    # searches stop waiting for it

    def _index_to(self, target: int) -> None:
        c = self._sconn
        assert c is not None
        while self._indexed < target and not self._index_stop:
            lo = self._indexed
            hi = min(target, lo + INDEX_CHUNK)
            c.execute("BEGIN")  # pragma: no mutate -- deferred: the write lock of the search file only
            try:
                c.execute(_INDEX_RANGE, (lo, hi))
                c.execute("UPDATE meta SET value=? WHERE key='indexed_upto'", (str(hi),))
                c.execute("COMMIT")  # pragma: no mutate
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")  # pragma: no mutate
                raise
            with self._index_cv:
                self._indexed = hi
                self._index_cv.notify_all()

    def _merge_step(self) -> bool:
        """MERGE_PAGES of FTS5 segment merging; False when nothing is left to merge."""
        c = self._sconn
        assert c is not None
        before = c.total_changes
        c.execute("BEGIN")  # pragma: no mutate
        try:
            c.execute("INSERT INTO events_fts(events_fts, rank) VALUES ('merge', ?)",  # pragma: no mutate
                      (MERGE_PAGES,))
            c.execute("COMMIT")  # pragma: no mutate
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")  # pragma: no mutate
            raise
        return c.total_changes - before >= 2      # FTS5: a delta < 2 means no work done

    def _wait_indexed(self, upto: int, timeout: float) -> bool:
        """Wait until the search index covers events up to ``upto``."""
        if self._indexer is None:
            return self._indexed >= upto
        self._index_now.set()
        self._index_wake.set()
        with self._index_cv:
            return self._index_cv.wait_for(
                lambda: self._indexed >= upto or not self._index_ok or self._index_stop,
                timeout) and self._indexed >= upto

    def submit(self, write: Write, check: bool = True) -> None:
        """Queue ``write`` for the writer (thread-safe, never blocks on I/O).
        A malformed write raises ValueError at once (``check=False``: the caller
        built it from validated fields, as the hub's chat path does)."""
        if self._closed:
            raise StoreError("the store is closed")
        if check:
            _check(write)
        self._queue.put(write)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until everything submitted before this call is committed (its
        on_commit has run) and in the search index.  False on timeout, or if
        the writer was never started while writes wait for it."""
        if self._closed:
            return False
        if self._thread is not None and threading.current_thread() is self._thread:
            raise RuntimeError("Store.flush() called from on_commit would wait for itself")
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._thread is not None:
            f = _Flush()
            self._queue.put(f)
            if not f.done.wait(timeout):
                return False
        elif not self._queue.empty():
            return False
        if self.fts:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return self._wait_indexed(self.last_id, 3600.0 if left is None else left)
        return True

    def _run(self) -> None:
        q = self._queue
        stopping = False
        while not stopping:
            batch: list[Any] = [q.get()]
            # up to batch_max; if fewer are queued, a power of two of them: a batch
            # of only messages is then one statement, its own transaction (_commit)
            take = 1 + q.qsize()
            take = self.batch_max if take >= self.batch_max else 1 << (take.bit_length() - 1)
            while len(batch) < take:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            if self.batch_wait > 0 and len(batch) < self.batch_max // 4:
                deadline = time.monotonic() + self.batch_wait
                while len(batch) < self.batch_max:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        batch.append(q.get(timeout=left))
                    except queue.Empty:
                        break
            writes, flushes = [], []
            for item in batch:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, _Flush):
                    flushes.append(item)
                else:
                    writes.append(item)
            if stopping:            # commit everything still queued, then stop
                while True:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(item, _Flush):
                        flushes.append(item)
                    elif item is not _STOP:
                        writes.append(item)
            for i in range(0, len(writes), self.batch_max):
                self._commit(writes[i:i + self.batch_max])
            for f in flushes:
                f.done.set()

    def _insert_sql(self, rows: int) -> str:
        sql = self._inserts.get(rows)
        if sql is None:
            sql = self._inserts[rows] = _INSERT_EVENT + ",".join([_EVENT_ROW] * rows)
        return sql

    def _one_statement(self, writes: list, nid: int, ts: int) -> Optional[bool]:
        """A batch of only chat messages, joins and leaves, as many as one INSERT
        takes with a cached statement (a power of two): inserted by one statement
        without BEGIN and COMMIT (SQLite makes it its own transaction).  Every
        execute hands the GIL back and forth, and under load getting it back
        costs more than the statement: this is one call where there were three.
        Returns whether it stored chat messages (for the search index), or None
        (nothing written) if the batch is not like that or a row is refused:
        the general path then finds which."""
        n = len(writes)
        if n > self._rows_per_insert or n & (n - 1):
            return None
        rows: list = []
        for i, w in enumerate(writes):
            if not (w.op == "event" and w.kind != "topic"):   # (a topic updates its room)
                return None
            rows += (nid + i, ts, w.kind, w.room, w.sender, w.sender_sid, w.target,
                     w.target_sid, w.text, w.label)
        try:
            self._wconn.execute(self._insert_sql(n), rows)
        except (sqlite3.IntegrityError, sqlite3.InterfaceError):
            return None
        for i, w in enumerate(writes):
            w.id, w.ts = nid + i, ts
        return any(w.kind in CHAT for w in writes)

    def _commit(self, writes: list) -> None:
        """One transaction for ``writes``; then tell on_commit."""
        if not writes:
            return
        c = self._wconn
        assert c is not None
        ts = max(int(self.clock() * 1000), self._last_ts)
        nid = self.last_id + 1
        error: Optional[str] = None
        names: list = []
        chat = False                        # messages for the search index
        try:
            one = self._one_statement(writes, nid, ts)
            if one is not None:
                nid, chat = nid + len(writes), one
            elif any(w.op != "barrier" for w in writes):
                c.execute("BEGIN IMMEDIATE")  # pragma: no mutate
                ex = c.execute
                events: list = []           # (write, row): inserted many rows per statement

                def insert_events() -> None:
                    # many rows per statement: each execute hands the GIL back and
                    # forth, and under load getting it back costs more than SQLite's work
                    i = 0
                    for size in _chunk_sizes(len(events), self._rows_per_insert):
                        chunk = events[i:i + size]
                        i += size
                        try:
                            ex(self._insert_sql(size), [x for _, row in chunk for x in row])
                        except (sqlite3.IntegrityError, sqlite3.InterfaceError):
                            for w, row in chunk:      # find the one that failed
                                try:
                                    ex(_INSERT_EVENT + _EVENT_ROW, row)
                                except (sqlite3.IntegrityError, sqlite3.InterfaceError) as e:
                                    w.id, w.ts, w.error = None, None, _one_line(e)
                    events.clear()

                for w in writes:
                    op = w.op
                    if op != "event" and events:
                        insert_events()
                    try:
                        if op == "event":
                            kind = w.kind
                            events.append((w, (nid, ts, kind, w.room, w.sender, w.sender_sid,
                                               w.target, w.target_sid, w.text, w.label)))
                            w.id, w.ts = nid, ts
                            if kind == "say" or kind == "me":
                                chat = True
                            elif kind == "topic" and w.room is not None:
                                ex("UPDATE rooms SET topic=? WHERE key=?", (w.text or "", w.room))
                            nid += 1
                        elif op == "read":
                            ex("INSERT INTO reads(sid, conv, read_id) VALUES (?,?,?) "  # pragma: no mutate
                               "ON CONFLICT(sid, conv) DO UPDATE SET "  # pragma: no mutate
                               "read_id = max(read_id, excluded.read_id)",  # pragma: no mutate
                               (w.sid, w.conv, w.read_id))
                        elif op == "member_add":
                            ex("INSERT INTO memberships(sid, room) VALUES (?,?) "  # pragma: no mutate
                               "ON CONFLICT DO NOTHING",  # pragma: no mutate
                               (w.sid, w.room))
                        elif op == "member_remove":
                            ex("DELETE FROM memberships WHERE sid=? AND room=?", (w.sid, w.room))  # pragma: no mutate
                        elif op == "session":
                            ex("INSERT INTO sessions(sid, name, token_hash, created, seen) "  # pragma: no mutate
                               "VALUES (?,?,?,?,?) ON CONFLICT(sid) DO UPDATE SET "  # pragma: no mutate
                               "name=excluded.name, seen=excluded.seen",  # pragma: no mutate
                               (w.sid, w.name, w.token_hash, ts, ts))
                        elif op == "room":
                            ex("INSERT INTO rooms(key, name, topic, created) VALUES (?,?,'',?) "  # pragma: no mutate
                               "ON CONFLICT(key) DO NOTHING",  # pragma: no mutate
                               (w.room, w.name, ts))
                            names.append((w.room, w.name))
                        elif op == "topic_set":
                            if ex("UPDATE rooms SET topic=? WHERE key=?",
                                  (w.text or "", w.room)).rowcount == 0:
                                w.error = f"no room {w.room}"
                        elif op == "exec":
                            ex(w.text, w.params or ())
                    except (sqlite3.IntegrityError, sqlite3.InterfaceError) as e:
                        # only this statement is undone; the transaction goes on
                        w.id, w.error = None, _one_line(e)
                if events:
                    insert_events()
                c.execute("COMMIT")  # pragma: no mutate
        except Exception as e:
            error = _one_line(e) if isinstance(e, sqlite3.Error) else f"internal error: {e!r}"
            if not isinstance(e, sqlite3.Error):
                log.exception("store writer: unexpected error")
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")  # pragma: no mutate
            for w in writes:
                if w.op != "barrier":
                    w.id, w.error = None, error
            log.error("could not store %d writes: %s", len(writes), error)
        else:
            self.last_id = nid - 1
            self._last_ts = ts
            self._commits += 1
            for key, name in names:
                self._names.setdefault(key, name)
            if chat:
                self._index_wake.set()
        cb = self._on_commit
        if cb is not None:
            try:
                cb(writes, error)
            except Exception:
                log.exception("store: on_commit failed")

    # --- reads -------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        if not self.opened:
            raise StoreError("the store is closed" if self._closed else "the store is not open")
        c = getattr(self._local, "conn", None)
        if c is not None:
            return c
        try:
            c = self._connect()
            if self.fts:
                c.execute("ATTACH DATABASE ? AS s", (self.search_path,))  # pragma: no mutate
        except sqlite3.Error as e:
            raise StoreError(self._describe(e)) from None
        me = threading.current_thread()
        with self._readers_lock:
            for t in [t for t in self._readers if not t.is_alive()]:
                with contextlib.suppress(sqlite3.Error):
                    self._readers.pop(t).close()
            self._readers[me] = c
        self._local.conn = c
        return c

    @contextlib.contextmanager
    def _reading(self, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        c = self._reader()
        try:
            if snapshot:
                c.execute("BEGIN")
            yield c
        except sqlite3.Error as e:
            raise StoreError(f"cannot read {self.path}: {_one_line(e)}") from None
        finally:
            if snapshot and c.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("COMMIT")

    def _name(self, c: sqlite3.Connection, key: str) -> str:
        name = self._names.get(key)
        if name is None:
            row = c.execute("SELECT name FROM rooms WHERE key=?", (key,)).fetchone()
            if row is None:
                return key
            name = self._names[key] = row[0]
        return name

    def _frame(self, c: sqlite3.Connection, r: Sequence, me: Optional[str] = None) -> dict:
        """A stored row in wire form (key order as parley.protocol serialises it)."""
        id_, ts, kind, room, sender, target, text, label, ssid = r
        if kind in CHAT:
            d = {"type": "message", "id": id_, "ts": format_ts(ts), "from": sender,
                 "text": text or "", "kind": kind}
            if label is not None and me is not None and ssid == me:
                d["label"] = label
            if room is not None:
                d["room"] = self._name(c, room)
            else:
                d["to"] = target
            if text is None:                 # removed by a moderator
                d["deleted"] = True
            return d
        if kind == "mod":
            return moderation.frame(id_, format_ts(ts), self._name(c, room) if room else None,
                                           sender, target, text)
        if kind == "topic":
            return {"type": "topic", "id": id_, "ts": format_ts(ts),
                    "room": self._name(c, room) if room else "", "topic": text or "",
                    "by": sender}
        d = {"type": kind, "id": id_, "ts": format_ts(ts), "name": sender}
        if kind == "leave":
            d["reason"] = text or "quit"
        if room is not None:
            d["room"] = self._name(c, room)
        return d

    def frame(self, w: Write) -> dict:
        """The wire form of a committed event write (as the reads return it)."""
        if w.op != "event" or w.id is None:
            raise ValueError("only a stored event has a frame")
        with self._reading() as c:
            return self._frame(c, (w.id, w.ts, w.kind, w.room, w.sender, w.target, w.text,
                                   None, w.sender_sid))

    def rooms(self) -> list[tuple[str, str, str]]:
        """Every room: (key, name, topic), by key."""
        with self._reading() as c:
            return [tuple(r) for r in c.execute("SELECT key, name, topic FROM rooms ORDER BY key")]

    def room(self, key: str) -> Optional[tuple[str, str]]:
        with self._reading() as c:
            row = c.execute("SELECT name, topic FROM rooms WHERE key=?", (key,)).fetchone()
            return tuple(row) if row else None

    def session_by_token_hash(self, h: bytes) -> Optional[tuple[str, str]]:
        with self._reading() as c:
            row = c.execute("SELECT sid, name FROM sessions WHERE token_hash=?", (h,)).fetchone()
            return tuple(row) if row else None

    def memberships(self, sid: str) -> list[str]:
        with self._reading() as c:
            return [r[0] for r in c.execute(
                "SELECT room FROM memberships WHERE sid=? ORDER BY room", (sid,))]

    def read_position(self, sid: str, conv: str) -> int:
        with self._reading() as c:
            row = c.execute("SELECT read_id FROM reads WHERE sid=? AND conv=?",
                            (sid, conv)).fetchone()
            return row[0] if row else 0

    def _rows(self, c: sqlite3.Connection, wheres: list, *, lo: Optional[int],
              hi: Optional[int], newest: bool, limit: int) -> tuple[list, bool]:
        """Rows of the union of ``wheres`` ((sql, params) over events) with
        lo < id < hi: the newest ``limit`` (``newest``) or the oldest, oldest
        first, and whether more rows matched.  Each part runs in index order and
        the parts are merged lazily, so only about ``limit`` rows are read."""
        bounds, extra = "", []
        if lo is not None:
            bounds += " AND id > ?"
            extra.append(lo)
        if hi is not None:
            bounds += " AND id < ?"
            extra.append(hi)
        order = "DESC" if newest else "ASC"
        cursors = [c.execute(f"SELECT {_COLS} FROM events WHERE {sql}{bounds} "
                             f"ORDER BY id {order} LIMIT ?", (*params, *extra, limit + 1))
                   for sql, params in wheres]
        if len(cursors) == 1:
            rows = cursors[0].fetchall()
        else:
            merged = heapq.merge(*cursors, key=(lambda r: -r[0]) if newest else (lambda r: r[0]))
            rows, last = [], None
            for r in merged:
                if r[0] != last:            # a DM to oneself is in both directions
                    rows.append(r)
                    last = r[0]
                    if len(rows) > limit:
                        break
        more = len(rows) > limit
        rows = rows[:limit]
        if newest:
            rows.reverse()
        return rows, more

    @staticmethod
    def _dm_wheres(sid: str, peer: Optional[str] = None) -> list:
        if peer is None:
            return [("room IS NULL AND sender_sid = ?", (sid,)),
                    ("room IS NULL AND target_sid = ?", (sid,))]
        return [("room IS NULL AND sender_sid = ? AND lower(target) = ?", (sid, peer)),
                ("room IS NULL AND target_sid = ? AND lower(sender) = ?", (sid, peer))]

    def recent(self, room_key: str, n: int) -> list[dict]:
        """The last ``n`` events of a room, oldest first."""
        if n <= 0:
            return []
        with self._reading() as c:
            rows, _ = self._rows(c, [("room = ?", (room_key,))], lo=None, hi=None,
                                 newest=True, limit=n)
            return [self._frame(c, r) for r in rows]

    def since(self, last_id: int, room_keys: Sequence[str], sid: Optional[str],
              limit: int) -> tuple[list[dict], bool]:
        """Every event after ``last_id`` in ``room_keys`` and ``sid``'s DMs: the
        newest ``limit`` of them, oldest first, and whether there were more.
        ``label`` is on the messages ``sid`` sent (so a client knows they went through)."""
        wheres = [("room = ?", (k,)) for k in dict.fromkeys(room_keys)]
        if sid:
            wheres += self._dm_wheres(sid)
        if not wheres or limit <= 0:
            return [], False
        with self._reading(snapshot=True) as c:
            rows, more = self._rows(c, wheres, lo=last_id, hi=None, newest=True, limit=limit)
            return [self._frame(c, r, sid) for r in rows], more

    def history(self, sid: Optional[str], *, room: Optional[str] = None,
                peer: Optional[str] = None, before: Optional[int] = None,
                after: Optional[int] = None, limit: int = 50) -> tuple[list[dict], bool]:
        """A page of a room's history (``room`` key) or of ``sid``'s direct
        conversation with ``peer`` (casefolded name): the ``limit`` newest
        before ``before``, the oldest after ``after``, or the newest.  Oldest
        first; ``more`` if rows remain beyond the page in its direction."""
        if (room is None) == (peer is None):
            raise ValueError("history needs exactly one of room and peer")
        if before is not None and after is not None:
            raise ValueError("history takes before or after, not both")
        if limit <= 0:
            return [], False
        if room is not None:
            wheres = [("room = ?", (room,))]
        elif sid:
            wheres = self._dm_wheres(sid, peer.casefold())
        else:
            return [], False
        with self._reading(snapshot=len(wheres) > 1) as c:
            rows, more = self._rows(c, wheres, lo=after, hi=before, newest=after is None,
                                    limit=limit)
            return [self._frame(c, r) for r in rows], more

    # --- search ------------------------------------------------------------------------
    def search(self, sid: Optional[str], query: str, room_keys: Sequence[str], *,
               room: Optional[str] = None, peer: Optional[str] = None,
               before: Optional[int] = None, limit: int = 50) -> tuple[list[dict], bool]:
        """Full-text search over the messages (say/me) of ``room_keys`` and
        ``sid``'s DMs, or of one ``room`` (which must be in room_keys) or one
        DM ``peer``.  Newest first; ``more`` if older matches remain (ask again
        with ``before`` = the last id).  FTS5 syntax works (words, "a phrase",
        prefix*, a OR b, NOT, NEAR); words that are not valid syntax ("don't",
        "c++") are searched as words.  Raises BadQuery if it cannot be parsed."""
        if not query or not query.strip():
            raise BadQuery("search for at least one word")
        if limit <= 0:
            return [], False
        scopes = self._scopes(sid, room_keys, room, peer)
        if not scopes:
            return [], False
        if self.fts and not self._wait_indexed(self.last_id, SEARCH_WAIT):
            log.warning("searching an index that is behind (%d of %d)", self._indexed,
                        self.last_id)
        with self._reading(snapshot=True) as c:
            if self.fts:
                terms = self._scope_terms(sid, room_keys, room, peer)
                rows = self._fts_rows(c, query, scopes, terms, before, limit)
            else:
                rows = self._like_rows(c, query, scopes, before, limit)
            more = len(rows) > limit
            return [self._frame(c, r) for r in rows[:limit]], more

    def _scopes(self, sid: Optional[str], room_keys: Sequence[str], room: Optional[str],
                peer: Optional[str]) -> list:
        """WHERE clauses (over ``e``) that together are what may be searched."""
        if peer is not None:
            if not sid:
                return []
            p = peer.casefold()
            return [("e.room IS NULL AND ((e.sender_sid = ? AND lower(e.target) = ?) OR "
                     "(e.target_sid = ? AND lower(e.sender) = ?))", (sid, p, sid, p))]
        if room is not None:
            return [("e.room = ?", (room,))] if room in set(room_keys) else []
        keys = list(dict.fromkeys(room_keys))
        scopes = []
        for i in range(0, len(keys), MAX_PARAMS):
            part = keys[i:i + MAX_PARAMS]
            scopes.append((f"e.room IN ({','.join('?' * len(part))})", tuple(part)))
        if sid:
            dms = ("e.room IS NULL AND (e.sender_sid = ? OR e.target_sid = ?)", (sid, sid))
            if len(scopes) == 1:    # the usual case: one statement, one pass over the index
                scopes = [(f"({scopes[0][0]} OR {dms[0]})", scopes[0][1] + dms[1])]
            else:
                scopes.append(dms)
        return scopes

    @staticmethod
    def _scope_terms(sid: Optional[str], room_keys: Sequence[str], room: Optional[str],
                     peer: Optional[str]) -> Optional[list]:
        """The ``scope`` tokens of what may be searched, if few enough to let
        FTS5 intersect them with the query (else None: filter in SQL only)."""
        if peer is not None:
            return ["u" + sid.encode().hex()] if sid else None
        if room is not None:
            return ["r" + room.encode().hex()]
        terms = ["r" + k.encode().hex() for k in dict.fromkeys(room_keys)]
        if sid:
            terms.append("u" + sid.encode().hex())
        return terms if len(terms) <= SCOPE_TERMS else None

    def _fts_rows(self, c: sqlite3.Connection, query: str, scopes: list,
                  terms: Optional[list], before: Optional[int], limit: int) -> list:
        """Matches newest first, at most limit + 1.  With ``terms`` FTS5 itself
        keeps to the scope; the SQL scope is checked on each row either way."""
        bound = " AND s.events_fts.rowid < ?" if before is not None else ""
        in_scope = f" AND scope : ({' OR '.join(terms)})" if terms else ""

        def run(q: str) -> list:
            m = f"text : ({q}){in_scope}"
            cursors = []
            for sql, params in scopes:
                args = (m, *((before,) if before is not None else ()), *params, limit + 1)
                cursors.append(c.execute(
                    f"SELECT {_ECOLS} FROM s.events_fts CROSS JOIN main.events e "
                    f"ON e.id = s.events_fts.rowid WHERE events_fts MATCH ?{bound} AND {sql} "
                    f"AND e.text IS NOT NULL "
                    f"ORDER BY s.events_fts.rowid DESC LIMIT ?", args))
            if len(cursors) == 1:
                return cursors[0].fetchall()
            return _newest_first(cursors, limit + 1)

        try:
            return run(query)
        except sqlite3.OperationalError as e:
            if not _is_query_error(e):
                raise
            first: sqlite3.Error = e
        fixed = _requote(query)
        if fixed and fixed != query:
            try:
                return run(fixed)
            except sqlite3.OperationalError as e:
                if not _is_query_error(e):
                    raise
        try:                        # say what is wrong with the query as typed
            c.execute("SELECT rowid FROM s.events_fts WHERE events_fts MATCH ? LIMIT 1",  # pragma: no mutate
                      (query,)).fetchall()
        except sqlite3.OperationalError as e:
            if _is_query_error(e):
                first = e
        raise BadQuery(f"cannot understand the search: {_fts_message(first)}")

    def _like_rows(self, c: sqlite3.Connection, query: str, scopes: list,
                   before: Optional[int], limit: int) -> list:
        """Search without FTS5: every word (operators and quotes ignored) as a
        case-insensitive substring.  Slow on big histories, but it works."""
        if not self._like_logged:
            self._like_logged = True
            log.warning("search without FTS5 (SQLite %s): using LIKE on words",
                        sqlite3.sqlite_version)
        words = [w for w in re.findall(r"[\w']+", query) if w not in _OPERATORS]
        if not words:
            raise BadQuery("search for at least one word")
        cond = " AND ".join(["e.text LIKE ? ESCAPE '\\'"] * len(words))
        pats = tuple(_like_pattern(w) for w in words)
        bound = " AND e.id < ?" if before is not None else ""
        cursors = [c.execute(
            f"SELECT {_ECOLS} FROM events e WHERE e.kind IN ('say', 'me') AND {cond}{bound} "
            f"AND {sql} ORDER BY e.id DESC LIMIT ?",
            (*pats, *((before,) if before is not None else ()), *params, limit + 1))
            for sql, params in scopes]
        return _newest_first(cursors, limit + 1)

    # --- unread ------------------------------------------------------------------------
    def unread(self, sid: str, name: str, room_keys: Sequence[str]) -> list[dict]:
        """One ``unread`` frame per conversation: each room of ``room_keys`` (in
        that order), then each direct conversation of ``sid`` (by newest first).
        ``count``: messages after the read marker not sent by ``sid`` (at most
        UNREAD_CAP); ``mentions``: those naming ``name`` as a word;
        ``last_id``: the conversation's newest event."""
        mention = _mention_re(name)
        pat = _like_pattern(name)
        out = []
        with self._reading(snapshot=True) as c:
            reads = dict(c.execute("SELECT conv, read_id FROM reads WHERE sid=?", (sid,)))  # pragma: no mutate
            for key in dict.fromkeys(room_keys):
                read_id = reads.get(key, 0)
                last = c.execute("SELECT coalesce(max(id), 0) FROM events WHERE room = ?",  # pragma: no mutate
                                 (key,)).fetchone()[0]
                count = mentions = 0
                if last > read_id:
                    count, mentions = self._count(
                        c, "room = ? AND id > ? AND kind IN ('say', 'me') AND sender_sid IS NOT ?",  # pragma: no mutate
                        (key, read_id, sid), pat, mention)
                out.append({"type": "unread", "count": count, "read_id": read_id,
                            "last_id": last, "mentions": mentions, "room": self._name(c, key)})
            peers: dict[str, list] = {}     # casefolded peer -> [shown name, last id]
            for low, shown, last in itertools.chain(
                    c.execute("SELECT lower(target), target, max(id) FROM events "  # pragma: no mutate
                              "WHERE room IS NULL AND sender_sid = ? GROUP BY lower(target)",  # pragma: no mutate
                              (sid,)),
                    c.execute("SELECT lower(sender), sender, max(id) FROM events "  # pragma: no mutate
                              "WHERE room IS NULL AND target_sid = ? GROUP BY lower(sender)",  # pragma: no mutate
                              (sid,))):
                if low is None:
                    continue
                cur = peers.get(low)
                if cur is None or last > cur[1]:
                    peers[low] = [shown, last]
            for low, (shown, last) in sorted(peers.items(), key=lambda kv: -kv[1][1]):
                read_id = reads.get("@" + low, 0)
                count = mentions = 0
                if last > read_id:
                    count, mentions = self._count(
                        c, "room IS NULL AND target_sid = ? AND lower(sender) = ? AND id > ? "  # pragma: no mutate
                           "AND kind IN ('say', 'me') AND sender_sid IS NOT ?",  # pragma: no mutate
                        (sid, low, read_id, sid), pat, mention)
                out.append({"type": "unread", "count": count, "read_id": read_id,
                            "last_id": last, "mentions": mentions, "with": shown})
        return out

    @staticmethod
    def _count(c: sqlite3.Connection, where: str, params: tuple, pat: str,
               mention: "re.Pattern[str]") -> tuple[int, int]:
        sub = f"SELECT text FROM events WHERE {where} LIMIT {UNREAD_CAP}"
        count, maybe = c.execute(
            f"SELECT count(*), coalesce(sum(text LIKE ? ESCAPE '\\'), 0) FROM ({sub})",
            (pat, *params)).fetchone()
        mentions = 0
        if maybe:
            mentions = sum(1 for (t,) in c.execute(
                f"SELECT text FROM ({sub}) WHERE text LIKE ? ESCAPE '\\'", (*params, pat))
                if t and mention.search(t))
        return count, mentions


    # --- accounts (see accountdb.py) -------------------------------------------------
    # Reads and the few account writes run on the calling thread's own connection
    # (the server's login workers, never an I/O thread), each write in its own
    # short transaction beside the writer thread's.
    def account(self, name: str) -> Optional[accountdb.Account]:
        with self._reading() as c:
            return accountdb.get(c, name)

    def account_by_sid(self, sid: str) -> Optional[accountdb.Account]:
        with self._reading() as c:
            return accountdb.by_sid(c, sid)

    def accounts(self) -> list[accountdb.Account]:
        with self._reading() as c:
            return accountdb.all_accounts(c)

    def login_by_token_hash(self, th: bytes) -> Optional[accountdb.Login]:
        with self._reading() as c:
            return accountdb.login_by_token_hash(c, th)

    def logins(self, sid: str) -> list[accountdb.Login]:
        with self._reading() as c:
            return accountdb.logins(c, sid)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def create_account(self, name: str, sid: str, hash: str,
                       admin: bool = False) -> Optional[accountdb.Account]:
        """None if the name is taken (in any letter case)."""
        with self._reading() as c:
            return accountdb.create(c, name, sid, hash, admin, self._now_ms())

    def set_password_hash(self, sid: str, hash: str) -> bool:
        with self._reading() as c:
            return accountdb.set_hash(c, sid, hash)

    def add_login(self, th: bytes, sid: str, device: str) -> accountdb.Login:
        with self._reading() as c:
            return accountdb.add_login(c, th, sid, device, self._now_ms())

    def touch_login(self, th: bytes) -> None:
        with self._reading() as c:
            accountdb.touch(c, th, self._now_ms())

    def waiting_dms(self, sid: str, limit: int) -> list[dict]:
        """The direct messages to ``sid`` after its read marker of each
        conversation (what waited for it while it was away): the newest
        ``limit``, oldest first."""
        if limit <= 0:
            return []
        with self._reading(snapshot=True) as c:
            rows = c.execute(
                "SELECT e.id, e.ts, e.kind, e.room, e.sender, e.target, e.text, e.label, "
                "e.sender_sid FROM events e WHERE e.room IS NULL AND e.target_sid = ? "
                "AND e.sender_sid IS NOT ? AND e.id > coalesce((SELECT r.read_id FROM reads r "
                "WHERE r.sid = ? AND r.conv = '@' || lower(e.sender)), 0) "
                "ORDER BY e.id DESC LIMIT ?", (sid, sid, sid, limit)).fetchall()
            return [self._frame(c, r, sid) for r in reversed(rows)]

    def waiting_mentions(self, sid: str, name: str, room_keys: Sequence[str],
                         limit: int) -> list[dict]:
        """Messages in ``room_keys`` after ``sid``'s read marker of each room
        that mention ``name`` (as a word), not sent by ``sid``: the newest
        ``limit``, oldest first (what waited for an account while it was away)."""
        if limit <= 0 or not room_keys:
            return []
        mention, pat = _mention_re(name), _like_pattern(name)
        out = []
        with self._reading(snapshot=True) as c:
            for key in dict.fromkeys(room_keys):
                rows = c.execute(
                    f"SELECT {_ECOLS} FROM events e WHERE e.room = ? AND e.kind IN ('say', 'me') "
                    "AND e.sender_sid IS NOT ? AND e.text LIKE ? ESCAPE '\\' AND e.id > "
                    "coalesce((SELECT r.read_id FROM reads r WHERE r.sid = ? AND r.conv = ?), 0) "
                    "ORDER BY e.id DESC LIMIT ?", (key, sid, pat, sid, key, limit * 4)).fetchall()
                out += [r for r in rows if r[6] and mention.search(r[6])]
            out.sort(key=lambda r: r[0])
            return [self._frame(c, r, sid) for r in out[-limit:]]

    # --- moderation (see moderation.py) ------------------------------------------------
    def moderation_rules(self) -> "moderation.Rules":
        with self._reading(snapshot=True) as c:
            return moderation.load(c, self._now_ms())

    def audit(self, before: Optional[int], limit: int) -> tuple[list[dict], bool]:
        with self._reading() as c:
            return moderation.audit_entries(c, before, limit, self._names)

    def event_info(self, id_: int) -> Optional[tuple]:
        """(room key, kind, sender, sender_sid, removed) of an event, or None."""
        with self._reading() as c:
            row = c.execute("SELECT room, kind, sender, sender_sid, text IS NULL FROM events "
                            "WHERE id=?", (id_,)).fetchone()
            return (row[0], row[1], row[2], row[3], bool(row[4])) if row else None

    def revoke_logins(self, sid: str, login_id: Optional[str] = None,
                      keep: Optional[str] = None) -> list[bytes]:
        with self._reading() as c:
            return accountdb.revoke(c, sid, login_id, keep)


def _newest_first(cursors: list, n: int) -> list:
    """Merge result cursors that are each newest first (by id, column 0) into
    one list of at most ``n`` rows, each id once (a row may match two scopes)."""
    out, last = [], None
    for r in heapq.merge(*cursors, key=lambda r: -r[0]):
        if r[0] != last:
            out.append(r)
            last = r[0]
            if len(out) >= n:
                break
    return out


def _is_query_error(e: sqlite3.Error) -> bool:
    msg = str(e)
    return any(m in msg for m in _FTS_QUERY_ERRORS)


def _fts_message(e: sqlite3.Error) -> str:
    msg = _one_line(e)
    if msg.startswith("fts5: "):
        msg = msg[6:]
    if msg == 'syntax error near ""':
        msg = "it ends too early (an operator or '(' without what follows)"
    return msg


def _check(w: Write) -> None:
    """Reject a malformed write at submit time (a programming error)."""
    op = w.op

    def need(*fields: str) -> None:
        for f in fields:
            if not isinstance(getattr(w, f), str):
                raise ValueError(f"a {op!r} write needs {f} (a str), got {getattr(w, f)!r}")

    if op == "event":
        if w.kind not in KINDS:
            raise ValueError(f"an event's kind is one of {KINDS}, not {w.kind!r}")
        need("sender")
        if w.room is None:
            if w.kind not in CHAT:
                raise ValueError(f"a {w.kind} event needs a room")
            need("target")
        else:
            need("room")
        if w.text is not None and not isinstance(w.text, str):
            raise ValueError("an event's text is a str")
    elif op == "room":
        need("room", "name")
    elif op == "topic_set":
        need("room")
    elif op in ("member_add", "member_remove"):
        need("sid", "room")
    elif op == "session":
        need("sid", "name")
        if w.token_hash is not None and not isinstance(w.token_hash, (bytes, bytearray)):
            raise ValueError("a session's token_hash is bytes")
    elif op == "exec":
        need("text")
    elif op == "read":
        need("sid", "conv")
        if not isinstance(w.read_id, int) or w.read_id < 0:
            raise ValueError(f"a read write needs read_id (an int >= 0), got {w.read_id!r}")
    elif op != "barrier":
        raise ValueError(f"unknown write op {op!r} (one of {OPS})")
