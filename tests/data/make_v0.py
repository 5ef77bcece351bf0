"""Make tests/data/parley-v0.db: a history database in schema version 0.

Version 0 is the first history store (before read markers, labels and
search): events name a DM's recipient but not its session, there is no
full-text index and ``PRAGMA user_version`` is 0.  tests/unit/test_store.py
opens a copy and checks that the store migrates it to the current schema,
keeping every row and id.  The file is committed; run this only to remake it:

    python3 tests/data/make_v0.py
"""
import hashlib
import os
import sqlite3

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "parley-v0.db")

SCHEMA_V0 = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE rooms(key TEXT PRIMARY KEY, name TEXT NOT NULL, topic TEXT NOT NULL DEFAULT '',
                   created INTEGER NOT NULL);
CREATE TABLE sessions(sid TEXT PRIMARY KEY, name TEXT NOT NULL, token_hash BLOB UNIQUE,
                      created INTEGER NOT NULL, seen INTEGER NOT NULL);
CREATE TABLE memberships(sid TEXT NOT NULL, room TEXT NOT NULL,
                         PRIMARY KEY(sid, room)) WITHOUT ROWID;
CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, room TEXT,
                    sender TEXT NOT NULL, sender_sid TEXT, target TEXT, text TEXT);
CREATE INDEX events_by_room ON events(room, id);
"""

T0 = 1_795_000_000_000          # 2026-11-18T11:06:40.000Z


def th(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


SESSIONS = [("5a11ce00000000a1", "alice", th("alice-token")),
            ("b0b0000000000002", "bob", th("bob-token")),
            ("ca401000000000c1", "carol", th("carol-token-1")),   # two sessions named carol:
            ("ca402000000000c2", "Carol", th("carol-token-2"))]   # a DM to carol is ambiguous
A, B, C1, C2 = (s[0] for s in SESSIONS)

# (id, kind, room, sender, sender_sid, target, text) -- ids have a gap (107)
EVENTS = [
    (100, "join", "#general", "alice", A, None, None),
    (101, "join", "#general", "bob", B, None, None),
    (102, "say", "#general", "alice", A, None, "hello bob, welcome to parley"),
    (103, "me", "#general", "bob", B, None, "waves at everyone"),
    (104, "join", "#python", "alice", A, None, None),
    (105, "topic", "#python", "alice", A, None, "pip and friends"),
    (106, "say", "#python", "alice", A, None, "pip install parley works"),
    (108, "say", None, "bob", B, "alice", "secret lunch plans"),
    (109, "say", None, "alice", A, "carol", "for carol only"),
    (110, "leave", "#general", "bob", B, None, "quit"),
]


def main() -> None:
    if os.path.exists(PATH):
        os.remove(PATH)
    db = sqlite3.connect(PATH, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.executescript(SCHEMA_V0)
    db.execute("BEGIN")
    db.execute("INSERT INTO meta VALUES ('instance', 'a1b2c3d4e5f6')")
    db.executemany("INSERT INTO rooms VALUES (?,?,?,?)",
                   [("#general", "#general", "", T0), ("#python", "#Python", "pip and friends", T0)])
    db.executemany("INSERT INTO sessions VALUES (?,?,?,?,?)",
                   [(sid, name, h, T0, T0) for sid, name, h in SESSIONS])
    db.executemany("INSERT INTO memberships VALUES (?,?)",
                   [(A, "#general"), (A, "#python"), (B, "#general"), (C1, "#general")])
    db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)",
                   [(i, T0 + (i - 100) * 1000, k, r, s, ss, t, x)
                    for i, k, r, s, ss, t, x in EVENTS])
    db.execute("COMMIT")
    db.execute("VACUUM")
    db.close()
    print(f"wrote {PATH} ({os.path.getsize(PATH)} bytes)")


if __name__ == "__main__":
    main()
