"""The client core: one command parser, one help text, one colour, one clock."""
from __future__ import annotations

import datetime

import pytest

from parley import protocol as p
from parley.client import core
from parley.client.core import Command, parse
from parley.client.session import Conversation

GEN = "#general"

# (line, current conversation, expected Command)
OK = [
    ("hello", GEN, Command("say", text="hello", target=GEN)),
    ("hello", "@bob", Command("say", text="hello", target="@bob")),
    ("  spaced  ", GEN, Command("say", text="  spaced  ", target=GEN)),
    ("multi\nline", GEN, Command("say", text="multi\nline", target=GEN)),
    ("//etc/passwd", GEN, Command("say", text="/etc/passwd", target=GEN)),
    ("// two", GEN, Command("say", text="/ two", target=GEN)),
    ("hi\r\n", GEN, Command("say", text="hi", target=GEN)),
    ("", GEN, Command("empty")),
    ("   \n", GEN, Command("empty")),
    ("/me waves", GEN, Command("me", text="waves", target=GEN)),
    ("/ME  waves slowly ", "@bob", Command("me", text="waves slowly", target="@bob")),
    ("/me\nwaves", GEN, Command("me", text="waves", target=GEN)),
    ("/join #python", GEN, Command("join", args=("#python",), target="#python")),
    ("/join python", GEN, Command("join", args=("#python",), target="#python")),
    ("/JOIN #Py.thon-3_x", GEN, Command("join", args=("#Py.thon-3_x",), target="#Py.thon-3_x")),
    ("/part", "#python", Command("part", target="#python")),
    ("/part #rust", GEN, Command("part", args=("#rust",), target="#rust")),
    ("/leave rust", GEN, Command("part", args=("#rust",), target="#rust")),
    ("/rooms", GEN, Command("rooms")),
    ("/list", "@bob", Command("rooms")),
    ("/topic", "#python", Command("topic", target="#python")),
    ("/topic pip and friends ", "#python", Command("topic", text="pip and friends",
                                                   target="#python")),
    ("/topic -", "#python", Command("topic", text="", target="#python")),
    ("/msg bob lunch?", GEN, Command("msg", args=("bob",), text="lunch?", target="@bob")),
    ("/msg @Bob  lunch at  noon ", GEN, Command("msg", args=("Bob",), text="lunch at  noon",
                                                target="@Bob")),
    ("/msg carol", GEN, Command("msg", args=("carol",), text="", target="@carol")),
    ("/query carol hi", GEN, Command("msg", args=("carol",), text="hi", target="@carol")),
    ("/switch #rust", GEN, Command("switch", args=("#rust",), target="#rust")),
    ("/switch @bob", GEN, Command("switch", args=("@bob",), target="@bob")),
    ("/go #general", "@bob", Command("switch", args=(GEN,), target=GEN)),
    ("/w @carol", GEN, Command("switch", args=("@carol",), target="@carol")),
    ("/history", GEN, Command("history", args=(core.HISTORY_DEFAULT,), target=GEN)),
    ("/history 5", "@bob", Command("history", args=(5,), target="@bob")),
    (f"/history {p.PAGE_MAX}", GEN, Command("history", args=(p.PAGE_MAX,), target=GEN)),
    ("/search pip install", GEN, Command("search", text="pip install")),
    ('/search "a phrase" OR pre*', GEN, Command("search", text='"a phrase" OR pre*')),
    ("/users", GEN, Command("users")),
    ("/who", GEN, Command("users")),
    ("/users #python", GEN, Command("users", args=("#python",), target="#python")),
    ("/help", GEN, Command("help")),
    ("/?", GEN, Command("help")),
    ("/exit", GEN, Command("exit")),
    ("/QUIT", GEN, Command("exit")),
]


@pytest.mark.parametrize("line,current,expected", OK, ids=[repr(c[0]) for c in OK])
def test_parse(line, current, expected):
    assert parse(line, current) == expected


# (line, current, fragments the error must contain)
ERRORS = [
    ("/frobnicate now", GEN, ["Unknown command /frobnicate", "/help", "//"]),
    ("/", GEN, ["Unknown command /", "/help"]),
    ("/me", GEN, ["Usage: /me <action>", "e.g. /me waves"]),
    ("/me   ", GEN, ["Usage: /me"]),
    ("/join", GEN, ["one room", "Usage: /join <#room>"]),
    ("/join #a #b", GEN, ["one room"]),
    ("/join #no spaces", GEN, ["one room"]),
    ("/join #bad!name", GEN, ["not a room name", "letters, digits"]),
    ("/join #" + "x" * 33, GEN, ["not a room name", "at most 32"]),
    ("/part", "@bob", ["not in a room", "Usage: /part"]),
    ("/part", None, ["not in a room"]),
    ("/part #a #b", GEN, ["one room"]),
    ("/topic hi", "@bob", ["no topic"]),
    ("/topic " + "t" * (p.TOPIC_MAX + 1), GEN, ["at most 300"]),
    ("/msg", GEN, ["to whom", "Usage: /msg <name> [text]"]),
    ("/msg bad!name hi", GEN, ["not a user name"]),
    ("/msg " + "n" * 33 + " hi", GEN, ["not a user name", "at most 32"]),
    ("/switch", GEN, ["one conversation", "Usage: /switch"]),
    ("/switch general", GEN, ["#room", "@name"]),
    ("/switch #a #b", GEN, ["one conversation"]),
    ("/switch @no!", GEN, ["not a user name"]),
    ("/switch #", GEN, ["not a room name"]),
    ("/history x", GEN, ["1 to 200", "'x'"]),
    ("/history 0", GEN, ["1 to 200"]),
    (f"/history {p.PAGE_MAX + 1}", GEN, ["1 to 200"]),
    ("/history -3", GEN, ["1 to 200"]),
    ("/history 1 2", GEN, ["one number"]),
    ("/history", None, ["No conversation"]),
    ("/search", GEN, ["for what", "Usage: /search <words>"]),
    ("/search    ", GEN, ["for what"]),
    ("/users #a #b", GEN, ["one room"]),
    ("/users #b@d", GEN, ["not a room name"]),
]


@pytest.mark.parametrize("line,current,fragments", ERRORS, ids=[repr(c[0]) for c in ERRORS])
def test_parse_errors(line, current, fragments):
    cmd = parse(line, current)
    assert cmd.error, cmd
    for f in fragments:
        assert f in cmd.error, (f, cmd.error)
    # an error carries nothing to act on
    assert cmd.target is None and cmd.text is None and cmd.args == ()


def test_every_command_and_alias_is_parsed_and_in_the_help():
    for spec in core.COMMANDS:
        assert f"/{spec.name}" in core.HELP
        for alias in spec.aliases:
            assert f"/{alias}" in core.HELP
            # an alias parses like its command (with arguments where needed)
    samples = {"join": "#x", "part": "#x", "msg": "bob hi", "switch": "#x", "search": "w",
               "me": "waves", "topic": "t", "users": "#x", "history": "3",
               "revoke": "3f2a9c1e", "kick": "bob", "mute": "bob 5m", "unmute": "bob",
               "ban": "bob", "unban": "bob", "delete": "7", "invite": "bob", "op": "bob",
               "deop": "bob"}
    for spec in core.COMMANDS:
        for word in (spec.name, *spec.aliases):
            cmd = parse(f"/{word} {samples.get(spec.name, '')}".rstrip(), "#here")
            assert cmd.name == spec.name and cmd.error is None, (word, cmd)


def test_help_is_one_table():
    lines = core.HELP.splitlines()
    assert lines[0] == "Commands:"
    rows = [line for line in lines if line.startswith("  /")]
    assert len(rows) == len(core.COMMANDS) + 1           # and //text
    assert rows[-1].startswith("  //text")
    # descriptions line up in one column
    starts = {len(r) - len(r[2:].split("  ", 1)[1].lstrip()) for r in rows}
    assert len(starts) == 1, rows
    assert core.usage("switch").startswith("Usage: /switch <#room|@name>")


def test_conv_arg():
    assert core.conv_arg("#x") == ("#x", None)
    assert core.conv_arg("@bob") == ("@bob", None)
    assert core.conv_arg("bob")[0] is None
    assert core.conv_arg("@")[0] is None


# --- colours, mentions, time ----------------------------------------------------------------
def test_name_colour_is_stable_case_insensitive_and_spread():
    assert core.name_colour_index("alice") == core.name_colour_index("ALICE")
    # fixed values: the same in every client and on every run (blake2s, 4 bytes)
    assert [core.name_colour_index(n) for n in ("alice", "bob", "carol", "dave")] == \
        [_reference(n) for n in ("alice", "bob", "carol", "dave")]
    seen = {core.name_colour_index(f"user{i}") for i in range(200)}
    assert seen == set(range(core.NAME_COLOURS))
    assert all(0 <= core.name_colour_index(f"u{i}", 5) < 5 for i in range(50))


def _reference(name: str) -> int:
    import hashlib
    return int.from_bytes(hashlib.blake2s(name.casefold().encode(), digest_size=4).digest(),
                          "big") % 12


@pytest.mark.parametrize("text,me,hit", [
    ("hi alice", "alice", True),
    ("ALICE: look", "alice", True),
    ("@alice see this", "alice", True),
    ("thanks alice.", "alice", True),
    ("malice", "alice", False),
    ("alice_b is here", "alice", False),
    ("alice-b is here", "alice", False),
    ("alice.b is here", "alice", False),
    ("x.alice", "alice", False),
    ("dr.who was here", "dr.who", True),
    ("drXwho was here", "dr.who", False),      # the dot is not a wildcard
    ("anything", "", False),
])
def test_mentions(text, me, hit):
    assert core.mentions(text, me) is hit
    assert bool(core.mention_spans(text, me)) is hit


def test_local_time_and_parse_ts():
    utc = datetime.timezone.utc
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    ts = "2026-11-24T15:04:05.123Z"
    assert core.parse_ts(ts) == datetime.datetime(2026, 11, 24, 15, 4, 5, 123000, tzinfo=utc)
    assert core.parse_ts("2026-11-24T15:04:05Z").second == 5
    assert core.parse_ts("nonsense") is None
    assert core.local_time(ts, tz=utc) == "15:04"
    assert core.local_time(ts, "%H:%M:%S", tz=plus2) == "17:04:05"
    assert core.local_time("2026-11-24T15:04:05.1234567Z", "%H:%M:%S") == "15:04:05"
    assert core.local_time("bad") == "--:--"


def test_local_when():
    utc = datetime.timezone.utc
    now = datetime.datetime(2026, 11, 24, 18, 0, tzinfo=utc)
    assert core.local_when("2026-11-24T15:04:05.000Z", now, utc) == "15:04"
    assert core.local_when("2026-11-23T15:04:05.000Z", now, utc) == "Mon 23 Nov 15:04"
    assert core.local_when("2025-01-02T03:04:05.000Z", now, utc) == "02 Jan 2025 03:04"


def test_sorted_users_puts_me_first():
    assert core.sorted_users(["carol", "Bob", "alice", "bob2"], me="carol") == \
        ["carol", "alice", "Bob", "bob2"]


# --- conversation display ---------------------------------------------------------------
def conv(key, **kw):
    kind = "dm" if key.startswith("@") else "room"
    return Conversation(key=key, kind=kind, name=key if kind == "room" else key[1:], **kw)


def test_describe_and_unread_summary():
    py = conv("#python", topic="pip", count=2, unread=3, mentions=1)
    gen = conv("#general", count=1)
    bob = conv("@bob", unread=1)
    assert core.describe(py) == "  #python (3 unread, 1 mention) 2 members — pip"
    assert core.describe(gen, current=True) == "* #general 1 member"
    assert core.describe(bob) == "  @bob (1 unread)"
    assert core.unread_summary([gen, py, bob]) == "unread: #python 3 (1 mention), @bob 1"
    assert core.unread_summary([gen, py, bob], current="#PYTHON") == "unread: @bob 1"
    assert core.unread_summary([gen]) == ""
    assert core.conv_prefix("@bob") == "[@bob] "
    assert core.same_conv("#A", "#a") and not core.same_conv("#a", None)


def test_history_cursor_keeps_the_oldest_id_per_conversation():
    cur = core.HistoryCursor()
    assert cur.before("#a") is None
    for i in (50, 40, 45):
        cur.seen("#A", i)
    cur.seen("@bob", 7)
    assert (cur.before("#a"), cur.before("@BOB")) == (40, 7)


def test_event_conversation():
    ec = core.event_conversation
    assert ec(p.Message(id=1, ts="", sender="bob", text="x", room="#py"), "me") == "#py"
    assert ec(p.Message(id=1, ts="", sender="bob", text="x", to="me"), "me") == "@bob"
    assert ec(p.Message(id=1, ts="", sender="me", text="x", to="bob"), "ME") == "@bob"
    assert ec(p.Join(id=1, ts="", name="bob"), "me") == GEN          # protocol 1
    assert ec(p.Topic(id=1, ts="", room="#py", topic="t", by="bob"), "me") == "#py"
    assert ec(p.RoomInfo(room="#py", count=1), "me") == "#py"
    assert ec(p.Presence(room="#big", count=900), "me") == "#big"
    assert ec(p.Unread(count=1, peer="bob"), "me") == "@bob"
    assert ec(p.HistoryPage(messages=[], more=False, peer="bob"), "me") == "@bob"
    assert ec(p.UserList(users=[], room="#py"), "me") == "#py"
    assert ec(p.UserList(users=[]), "me") is None
    assert ec(p.RoomList(rooms=[]), "me") is None
    assert ec(p.Error(code="x", message="y"), "me") is None
