"""The GUI's rendering rules, without a display (parley.client.gui.render),
plus the entry point's behaviour when there is no display at all."""
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parley import protocol as p
from parley.client.core import NAME_COLOURS
from parley.client.gui import render as r
from parley.client.gui.render import Formatter, InputHistory, ScrollFollow

ROOT = Path(__file__).resolve().parents[2]
UTC = datetime.timezone.utc
PLUS2 = datetime.timezone(datetime.timedelta(hours=2))


def msg(sender, text, mid=1, ts="2026-11-24T15:04:05.123Z", kind="say", label=None):
    return p.Message(id=mid, ts=ts, sender=sender, text=text, kind=kind, label=label)


def tags_of(entry, fragment):
    """The tags of the first segment containing ``fragment``."""
    for text, tags in entry.segments:
        if fragment in text:
            return tags
    raise AssertionError(f"{fragment!r} not in {entry.segments}")


# --- one core for every client -------------------------------------------------------
def test_the_gui_uses_the_client_core_for_colours_time_and_mentions():
    from parley.client import core
    assert r.name_colour_index is core.name_colour_index
    assert r.local_time is core.local_time and r.parse_ts is core.parse_ts
    assert r.mention_spans is core.mention_spans
    assert not hasattr(r, "parse_input") and not hasattr(r, "HELP")
    f = Formatter(me="alice", tz=PLUS2)
    e = f.message(msg("bob", "hi alice", ts="2026-11-24T23:30:00.000Z"))
    assert core.local_time("2026-11-24T23:30:00.000Z", tz=PLUS2) == "01:30" in e.text
    assert r.name_tag("bob") == f"nc{core.name_colour_index('bob')}"


# --- colours ------------------------------------------------------------------------
def test_name_colours_spread_over_the_palette():
    used = {r.name_colour_index(f"user{i}") for i in range(200)}
    assert len(used) == NAME_COLOURS


def test_every_name_colour_is_readable_on_its_backgrounds():
    from parley.client.gui.theme import DARK, LIGHT, contrast
    for pal in (DARK, LIGHT):
        assert len(pal.names) == NAME_COLOURS
        for colour in pal.names:
            for bg in (pal.surface, pal.own_band, pal.mention_band, pal.sidebar):
                assert contrast(colour, bg) >= 4.5, (pal.name, colour, bg)
        for fg, bg in ((pal.text, pal.surface), (pal.text_dim, pal.surface),
                       (pal.url, pal.surface), (pal.mention_word, pal.mention_band),
                       (pal.error, pal.surface), (pal.on_accent, pal.accent)):
            assert contrast(fg, bg) >= 3.0, (pal.name, fg, bg)


# --- URLs and mentions ---------------------------------------------------------------
@pytest.mark.parametrize("text, urls", [
    ("see https://example.com/a?b=1#c now", ["https://example.com/a?b=1#c"]),
    ("(https://en.wikipedia.org/wiki/Tk_(toolkit))", ["https://en.wikipedia.org/wiki/Tk_(toolkit)"]),
    ("(see http://x.org/page).", ["http://x.org/page"]),
    ("two: www.python.org, ftp://files.example.net/x!", ["www.python.org", "ftp://files.example.net/x"]),
    ("no url here, just www. and http", []),
    ("quote \"https://q.example/x\" end", ["https://q.example/x"]),
])
def test_find_urls(text, urls):
    assert [text[s:e] for s, e in r.find_urls(text)] == urls


def test_url_target_adds_a_scheme():
    assert r.url_target("www.python.org") == "https://www.python.org"
    assert r.url_target("http://a.b") == "http://a.b"


@pytest.mark.parametrize("text, hits", [
    ("hi alice!", ["alice"]),
    ("@Alice look", ["@Alice"]),
    ("alice_2 and malice and alice.txt and alice-b", []),   # other names, not me
    ("thanks, alice.", ["alice"]),
    ("ALICE: and alice", ["ALICE", "alice"]),
    ("nobody", []),
])
def test_mention_spans(text, hits):
    assert [text[s:e] for s, e in r.mention_spans(text, "alice")] == hits


# --- formatting ------------------------------------------------------------------------
def test_a_message_gets_a_header_time_and_coloured_name():
    f = Formatter(me="alice", tz=UTC)
    e = f.message(msg("bob", "hello there"))
    assert e.text == "bob\n15:04\thello there\n"
    assert "name" in tags_of(e, "bob") and r.name_tag("bob") in tags_of(e, "bob")
    assert "hdr" in tags_of(e, "bob")
    assert "time" in tags_of(e, "15:04")
    assert not e.own and not e.mention and e.kind == "message" and e.id == 1


def test_consecutive_messages_from_one_sender_share_a_header():
    f = Formatter(tz=UTC)
    a = f.message(msg("bob", "one", 1, "2026-11-24T15:04:05.000Z"))
    b = f.message(msg("BOB", "two", 2, "2026-11-24T15:05:00.000Z"))
    c = f.message(msg("carol", "three", 3, "2026-11-24T15:05:01.000Z"))
    d = f.message(msg("carol", "much later", 4, "2026-11-24T15:30:00.000Z"))
    assert a.tagged("hdr") and not b.tagged("hdr")
    assert c.tagged("hdr").startswith("carol")
    assert d.tagged("hdr").startswith("carol")       # more than 5 minutes later


def test_a_notice_breaks_the_group():
    f = Formatter(tz=UTC)
    f.message(msg("bob", "one", 1))
    f.join(p.Join(id=2, ts="2026-11-24T15:04:06.000Z", name="carol"))
    assert f.message(msg("bob", "two", 3)).tagged("hdr")


def test_own_messages_are_marked():
    f = Formatter(me="Alice", tz=UTC)
    e = f.message(msg("alice", "mine"))
    assert e.own
    assert "own" in tags_of(e, "mine") and "myname" in tags_of(e, "alice")
    assert "you" in e.tagged("badge")


def test_a_mention_of_me_is_highlighted():
    f = Formatter(me="alice", tz=UTC)
    e = f.message(msg("bob", "ping @alice: the build is green"))
    assert e.mention
    assert e.tagged("mword") == "@alice"
    assert "mention" in tags_of(e, "the build")
    # my own message naming me is not a mention
    assert not f.message(msg("alice", "alice here", 2)).mention


def test_me_actions_are_italic_with_the_name():
    f = Formatter(tz=UTC)
    e = f.message(msg("dave", "waves", kind="me"))
    assert e.kind == "action"
    assert e.text == "15:04\tdave waves\n"
    assert "action" in tags_of(e, "waves")
    assert "name" in tags_of(e, "dave")


def test_join_and_leave_notices_are_dimmed_and_leave_shows_the_reason():
    f = Formatter(tz=UTC)
    j = f.join(p.Join(id=5, ts="2026-11-24T15:04:05.000Z", name="carol"))
    lv = f.leave(p.Leave(id=6, ts="2026-11-24T15:04:05.000Z", name="carol", reason="lost"))
    assert j.text == "15:04\t\u2192 carol joined\n" and j.kind == "notice" and j.id == 5
    assert all("notice" in tags for _, tags in j.segments)
    assert lv.text == "15:04\t\u2190 carol left (connection lost)\n"
    odd = f.leave(p.Leave(id=7, ts="2026-11-24T15:04:05.000Z", name="x", reason="kicked-by-op"))
    assert "(kicked-by-op)" in odd.text


def test_multi_line_messages_keep_their_lines_aligned():
    f = Formatter(tz=UTC)
    e = f.message(msg("bob", "line one\nline two\n\nline four"))
    assert e.text == "bob\n15:04\tline one\nline two\n\nline four\n"
    assert "b1" in tags_of(e, "line one") and "b2" in tags_of(e, "line two")
    assert e.lines == 5


def test_urls_are_tagged_inside_message_text():
    f = Formatter(me="alice", tz=UTC)
    e = f.message(msg("bob", "docs at https://example.com/x, alice"))
    assert e.tagged("url") == "https://example.com/x"
    assert e.tagged("mword") == "alice"


def test_a_new_day_gets_a_divider():
    f = Formatter(tz=UTC)
    f.message(msg("bob", "late", 1, "2026-11-24T23:59:00.000Z"))
    e = f.message(msg("bob", "early", 2, "2026-11-25T00:01:00.000Z"))
    assert e.tagged("divider") == "Wednesday, 25 November 2026\n"
    assert e.tagged("hdr")          # the divider starts a new group


def test_control_characters_and_tabs_are_made_safe():
    f = Formatter(tz=UTC)
    e = f.message(msg("bob", "a\tb\x07c"))
    assert "a    b\ufffdc" in e.text


def test_emoji_pass_through_natively_and_have_a_visible_text_fallback():
    text = "party \U0001F389 ok \U0001F44D\U0001F3FD \u2764\ufe0f"
    assert r.display_text(text, "native") == text
    fallback = r.display_text(text, "text")
    assert "\u2039party popper\u203a" in fallback
    assert all(ord(ch) <= 0xFFFF for ch in fallback)
    assert "\u2764" in fallback                       # BMP symbols stay
    f = Formatter(emoji="text", tz=UTC)
    e = f.message(msg("bob", "\U0001F600"))
    assert "\u2039grinning face\u203a" in e.text


def test_outgoing_text_joins_surrogate_pairs_and_trims():
    assert r.outgoing_text("\ud83d\ude00 hi  \n\n") == "\U0001F600 hi"
    assert r.outgoing_text("lone \ud800") == "lone \ufffd"
    assert r.outgoing_text("\n\n  a\r\nb  \n") == "  a\nb"


def test_pending_and_refused_entries():
    f = Formatter(me="alice", tz=UTC)
    e = f.pending("x-1", "say", "on its way\nline 2", "sending\u2026")
    assert e.kind == "pending"
    assert all("p:x-1" in tags and "pending" in tags for _, tags in e.segments)
    assert e.text.endswith("line 2  sending\u2026\n")
    assert e.tagged("pnote") == "  sending\u2026"
    me = f.pending("x-2", "me", "waves", "queued")
    assert "alice waves" in me.text
    ref = f.refused("say", "x" * 100, "message contains control characters")
    assert ref.kind == "error" and "Not sent" in ref.text and "\u2026" in ref.text


def test_users_line_lists_me_first():
    f = Formatter(me="carol", tz=UTC)
    e = f.users({"bob", "Alice", "carol"})
    assert e.text == "\t3 online: carol, Alice, bob\n"
    assert r.sorted_users(["b", "a", "Me"], "me") == ["Me", "a", "b"]


def test_initial():
    assert r.initial("alice") == "A"
    assert r.initial("_x") == "X"
    assert r.initial("..") == "."


# --- the input line ------------------------------------------------------------------
def test_input_history_recalls_lines_and_keeps_the_draft():
    h = InputHistory()
    assert h.up("draft") is None
    h.add("one")
    h.add("two")
    h.add("two")                 # no duplicates in a row
    assert h.up("my draft") == "two"
    assert h.up("two") == "one"
    assert h.up("one") is None   # the oldest: stay
    assert h.down() == "two"
    assert h.down() == "my draft"
    assert not h.browsing
    assert h.down() is None


# --- scrolling ---------------------------------------------------------------------------
def test_scroll_follow_rule():
    s = ScrollFollow()
    assert s.added(3) is True and s.indicator is None     # at the bottom: follow
    s.view_moved(at_bottom=False)                        # the user scrolled up
    assert s.added(1) is False and s.added(2) is False
    assert s.indicator == "\u2193  3 new messages"
    s.view_moved(at_bottom=False)
    assert s.unread == 3
    s.view_moved(at_bottom=True)                         # scrolled back down
    assert s.following and s.indicator is None and s.added(1)
    s.view_moved(False)
    s.added(1)
    assert s.indicator == "\u2193  1 new message"
    s.jump()                                             # clicked the indicator
    assert s.following and s.unread == 0


def test_at_bottom():
    assert r.at_bottom(0.0, 1.0) and r.at_bottom(0.5, 0.9995)
    assert not r.at_bottom(0.2, 0.8)


# --- status bar ---------------------------------------------------------------------------
def test_status_text():
    assert r.status_text("connected", "h", 1, "alice") == ("Connected to h:1 as alice", "ok")
    text, level = r.status_text("reconnecting", "h", 1, "alice", "Connection refused", 2.6)
    assert text == "Connection lost: Connection refused \u00b7 Reconnecting in 3 s\u2026"
    assert level == "warn"
    text, _ = r.status_text("reconnecting", "h", 1, "alice", "", 0.1, pending=2)
    assert text == "Connection lost \u00b7 Reconnecting\u2026 \u00b7 2 messages waiting to be sent"
    assert r.status_text("closed", "h", 1, detail="server gone") == (
        "Disconnected: server gone", "error")
    assert r.status_text("connecting", "h", 1)[0] == "Connecting to h:1\u2026"
    assert r.status_text("idle", "h", 1) == ("Not connected", "idle")


def test_dialog_validation_sentences():
    assert r.explain_name("alice") is None
    assert "letters" in r.explain_name("al ice")
    assert "at most 32" in r.explain_name("x" * 40)
    assert "required" in r.explain_name("")
    assert r.explain_name("\U0001F600bob") is not None
    assert r.validate_port("8888") is None
    assert r.validate_port("http") and r.validate_port("70000")
    assert r.validate_host("") and r.validate_host("a b") and r.validate_host("::1") is None
    assert "taken" in r.refused_name("bob", p.NAME_TAKEN, "the name 'bob' is taken")


# --- the entry point without a display ----------------------------------------------------
def _run(*args, env_drop=("DISPLAY", "WAYLAND_DISPLAY")):
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    return subprocess.run([sys.executable, str(ROOT / "improved_gui_client.py"), *args],
                          capture_output=True, text=True, timeout=30, env=env)


def test_help_works_without_a_display():
    res = _run("--help")
    assert res.returncode == 0
    for flag in ("--host", "--port", "--name", "--theme", "--scrollback"):
        assert flag in res.stdout


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="X11 only")
def test_no_display_is_a_one_line_error_not_a_traceback():
    res = _run("--name", "alice")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open a window" in lines[0], res.stderr


# --- the window's model: sidebar, header, members, history, search, room dialog ------------
from dataclasses import dataclass as _dataclass  # noqa: E402

from parley.client.gui import model as m  # noqa: E402


@_dataclass
class Conv:
    key: str
    unread: int = 0
    mentions: int = 0
    last_id: int = 0
    read_id: int = 0
    topic: str = ""
    members: "list | None" = None
    count: int = 0

    @property
    def kind(self):
        return "room" if self.key.startswith("#") else "dm"


def test_badges_count_unread_and_are_stronger_with_mentions():
    assert m.badge(0, 0) == ("", "")
    assert m.badge(3, 0) == ("3", "unread")
    assert m.badge(3, 1) == ("3", "mention")
    assert m.badge(0, 2) == ("2", "mention")        # never fewer than the mentions
    assert m.badge(100, 0) == ("99+", "unread")
    assert m.badge(99, 0) == ("99", "unread")


def test_sidebar_has_rooms_then_direct_messages_with_badges():
    convs = [Conv("#python", unread=4, last_id=30), Conv("#general", unread=2, mentions=1),
             Conv("@carol", unread=1, last_id=20), Conv("@Bob", last_id=50),
             Conv("#Art", last_id=90)]
    rows = m.sidebar_rows(convs, current="#general", online=["bob"])
    assert [(r.kind, r.label) for r in rows] == [
        ("header", "ROOMS"), ("room", "Art"), ("room", "general"), ("room", "python"),
        ("header", "DIRECT MESSAGES"), ("dm", "Bob"), ("dm", "carol")]
    by_key = {r.key: r for r in rows}
    assert by_key["#python"].badge == "4" and by_key["#python"].level == "unread"
    # the conversation being read shows no badge, and is the selected row
    assert by_key["#general"].selected and by_key["#general"].badge == ""
    assert by_key["@carol"].badge == "1" and by_key["@carol"].online is False
    assert by_key["@Bob"].online is True and by_key["@Bob"].badge == ""


def test_sidebar_lists_a_new_dm_and_a_hint_when_there_are_none():
    rows = m.sidebar_rows([Conv("#general")], current="@dave", extra_dms=["@dave", "@DAVE"])
    assert [(r.kind, r.key, r.selected) for r in rows[-1:]] == [("dm", "@dave", True)]
    assert len([r for r in rows if r.kind == "dm"]) == 1
    rows = m.sidebar_rows([Conv("#general")], current="#general")
    assert rows[-1].kind == "hint" and rows[-2].label == m.DMS_HEADER
    # an extra DM the session already knows is not listed twice
    rows = m.sidebar_rows([Conv("@dave", last_id=3)], None, extra_dms=["@Dave"])
    assert [r.key for r in rows if r.kind == "dm"] == ["@dave"]


def test_window_title_counts_what_is_unread_elsewhere():
    convs = [Conv("#a", unread=2), Conv("#b", unread=5, mentions=1), Conv("@c", unread=1)]
    assert m.total_unread(convs, current="#b") == (3, 0)
    assert m.total_unread(convs) == (8, 1)
    assert m.window_title("alice", "h:1", 3, 0) == "(3) Parley \u2014 alice @ h:1"
    assert m.window_title("alice", "h:1", 8, 1) == "(8!) Parley \u2014 alice @ h:1"
    assert m.window_title("alice", "h:1", 0, 0) == "Parley \u2014 alice @ h:1"


def test_header_shows_the_topic_or_a_hint():
    h = m.header("#python", Conv("#python", topic="pip  and\nfriends"))
    assert (h.glyph, h.title, h.subtitle, h.placeholder, h.editable) == (
        "#", "python", "pip and friends", False, True)
    h = m.header("#python", Conv("#python"))
    assert h.subtitle == "Add a topic" and h.placeholder and h.editable
    h = m.header("@bob", None, online=["BOB"])
    assert (h.glyph, h.title, h.subtitle, h.editable) == ("@", "bob", "Direct message \u00b7 online", False)
    assert m.header("@bob", None, online=[]).subtitle.endswith("offline")
    assert m.header(None).title == "Parley"


def test_member_panel_lists_members_or_offers_to_load_a_big_room():
    panel = m.member_panel("#py", Conv("#py", members=["zed", "alice", "Bob"], count=3), "alice")
    assert panel.names == ["alice", "Bob", "zed"] and panel.title == "MEMBERS \u2014 3"
    assert not panel.lazy
    big = m.member_panel("#general", Conv("#general", members=None, count=1204), "alice")
    assert big.lazy and big.names == [] and big.note == "1,204 members"
    assert big.title == "MEMBERS \u2014 1,204"
    dm = m.member_panel("@bob", None, "alice")
    assert dm.names == ["alice", "bob"] and not dm.lazy


def _ev(i, sender="bob", text=None, room="#general"):
    return p.Message(id=i, ts="2026-11-24T15:04:05.000Z", sender=sender,
                     text=text or f"m{i}", room=room)


def test_split_page_puts_older_above_and_newer_below_without_duplicates():
    page = [_ev(5), _ev(3), _ev(4), _ev(10), _ev(12), _ev(3)]
    older, newer = m.split_page(page, oldest=8, newest=11)
    assert [e.id for e in older] == [3, 4, 5]          # oldest first, deduplicated
    assert [e.id for e in newer] == [12]               # 10 is inside what is shown
    older, newer = m.split_page(page, None, None)          # above the local lines
    assert [e.id for e in older] == [3, 4, 5, 10, 12] and newer == []


def test_events_from_frames_skips_garbage_and_orders_by_id():
    frames = [{"type": "message", "id": 7, "ts": "t", "from": "bob", "text": "b"},
              {"type": "join", "id": 3, "ts": "t", "name": "carol", "room": "#x"},
              {"type": "message", "id": "bad"}, {"nonsense": 1},
              {"type": "topic", "id": 5, "ts": "t", "room": "#x", "topic": "t", "by": "bob"},
              {"type": "ack", "label": "x"},
              {"type": "message", "id": 7, "ts": "t", "from": "bob", "text": "dup"}]
    evs = m.events_from_frames(frames)
    assert [(type(e).__name__, e.id) for e in evs] == [("Join", 3), ("Topic", 5), ("Message", 7)]
    assert evs[-1].text == "b"


def test_history_pager_asks_once_at_a_time_and_stops_at_the_beginning():
    pg = m.HistoryPager()
    assert pg.want("#a")
    pg.asked("#a", "L1")
    assert not pg.want("#A") and pg.is_loading("#a")
    assert pg.want("#b")
    assert pg.answered("L1", more=True, added=50) == "#a"
    assert pg.want("#a")
    pg.asked("#a", "L2")
    assert pg.answered("L2", more=False, added=10) == "#a"
    assert not pg.want("#a") and pg.at_beginning("#a")
    pg.forget("#a")                                   # trimmed: older history again
    assert pg.want("#a")
    pg.asked("#a", "L3")
    assert pg.answered("L3", more=True, added=0) == "#a"   # a page with nothing new: stop
    assert not pg.want("#a")
    pg.asked("#b", "L4")
    assert pg.failed("L4") == "#b" and not pg.want("#b")
    assert pg.answered("unknown", more=True) is None
    pg.reset()
    assert pg.want("#a") and pg.want("#b")


def test_first_unread_skips_my_messages_and_notices():
    items = [(10, False, True), (11, True, True), (12, False, False), (13, False, True),
             (None, False, False)]
    assert m.first_unread(items, read_id=10) == 3
    assert m.first_unread(items, read_id=9) == 0
    assert m.first_unread(items, read_id=13) is None
    assert m.first_unread([], 0) is None


def test_search_hits_name_their_conversation():
    msgs = [{"type": "message", "id": 9, "ts": "2026-11-24T15:04:05.000Z", "from": "bob",
             "text": "pip install", "room": "#python"},
            {"type": "message", "id": 8, "ts": "2026-11-24T15:04:05.000Z", "from": "alice",
             "text": "pip?", "to": "bob"},
            {"type": "message", "id": 7, "ts": "2026-11-24T15:04:05.000Z", "from": "carol",
             "text": "pip!", "to": "alice"},
            {"type": "message", "id": 6, "ts": "t", "from": "old", "text": "pip"},
            {"type": "message", "id": 9, "ts": "t", "from": "bob", "text": "dup"},
            {"type": "join", "id": 5, "ts": "t", "name": "x"}, {"bad": True}]
    hits = m.search_hits(msgs, "Alice")
    assert [(h.key, h.id, h.sender) for h in hits] == [
        ("#python", 9, "bob"), ("@bob", 8, "alice"), ("@carol", 7, "carol"),
        ("#general", 6, "old")]


@pytest.mark.parametrize("query, terms", [
    ("pip install", ["pip", "install"]),
    ('"pip install" OR conda', ["pip install", "conda"]),
    ("deploy* NOT staging", ["deploy", "staging"]),
    ("Pip pip", ["Pip"]),
    ("AND", []),
])
def test_query_terms(query, terms):
    assert m.query_terms(query) == terms


def test_term_spans_highlight_word_starts_without_overlap():
    text = "Deploying: the deploy went out; redeploy tomorrow"
    assert [text[s:e] for s, e in m.term_spans(text, ["deploy"])] == ["Deploy", "deploy"]
    assert m.term_spans("pip install pip", ["pip install", "pip"]) == [(0, 11), (12, 15)]


def test_search_summary():
    assert m.search_summary("pip", 0, False) == "No messages match \u201cpip\u201d."
    assert m.search_summary("pip", 1, False) == "1 result for \u201cpip\u201d"
    assert m.search_summary("pip", 50, True) == "50 results+ for \u201cpip\u201d"


@pytest.mark.parametrize("typed, room, ok", [
    ("python", "#python", True),
    ("  #python ", "#python", True),
    ("#", "#", False),
    ("", "", False),
    ("py thon", "#py thon", False),
    ("#" + "x" * 33, "#" + "x" * 33, False),
])
def test_room_input_adds_the_hash_and_validates(typed, room, ok):
    name, problem = m.room_input(typed)
    assert name == room
    assert (problem is None) == ok
    if not ok:
        assert problem.startswith("That room name won\u2019t work")


def test_room_rows_filter_and_sort_busiest_first():
    rooms = [{"room": "#general", "topic": "", "count": 12, "joined": True},
             {"room": "#python", "topic": "pip  and friends", "count": 2, "joined": False},
             {"room": "#random", "topic": "", "count": 0, "joined": False},
             {"room": "bad name", "count": 3}, {"room": "#pyqt", "count": 2}]
    rows = m.room_rows(rooms)
    assert [r.room for r in rows] == ["#general", "#pyqt", "#python", "#random"]
    assert rows[0].detail == "12 members online \u00b7 joined"
    assert rows[-1].detail == "nobody online"
    assert [r.room for r in m.room_rows(rooms, "#PY")] == ["#pyqt", "#python"]
    assert m.room_rows(rooms, "py")[1].topic == "pip and friends"


def test_topic_problem():
    assert m.topic_problem("x" * p.TOPIC_MAX) is None
    assert "at most" in m.topic_problem("x" * (p.TOPIC_MAX + 1))


def test_topic_changes_are_notices():
    f = Formatter(tz=UTC)
    e = f.topic(p.Topic(id=4, ts="2026-11-24T15:04:05.000Z", room="#py", topic="pip\nand friends",
                        by="bob"))
    assert e.text == "15:04\tbob set the topic: pip and friends\n" and e.id == 4
    assert e.kind == "notice" and "topic" in tags_of(e, "pip and friends")
    e = f.topic(p.Topic(id=5, ts="2026-11-24T15:04:05.000Z", room="#py", topic="", by="bob"))
    assert e.text == "15:04\tbob cleared the topic\n"


def test_presence_summaries_in_big_rooms():
    f = Formatter(tz=UTC)
    e = f.presence(p.Presence(room="#general", count=1204, joined=["carol", "dave", "erin"],
                              left=["bob"], joined_count=57, left_count=1))
    assert e.text == ("\t\u2192 carol, dave, erin and 54 others joined \u00b7 \u2190 bob left"
                      " \u00b7 1,204 members\n")
    e = f.presence(p.Presence(room="#g", count=101, joined=["a", "b"], joined_count=2))
    assert e.text == "\t\u2192 a and b joined \u00b7 101 members\n"
    e = f.presence(p.Presence(room="#g", count=1, left_count=3))
    assert e.text == "\t\u2190 3 people left \u00b7 1 member\n"
    assert all("notice" in tags for _, tags in e.segments)


def test_event_dispatches_and_ignores_what_is_not_a_conversation_line():
    f = Formatter(tz=UTC)
    assert f.event(msg("bob", "hi")).kind == "message"
    assert f.event(p.Join(id=2, ts="2026-11-24T15:04:05.000Z", name="x")).kind == "notice"
    assert f.event(p.Ack(label="x")) is None


def test_marker_beginning_and_day_divider_entries():
    f = Formatter(tz=UTC)
    mk = f.marker()
    assert mk.kind == "marker" and r.MARKER_TEXT in mk.text and mk.lines == 3
    assert mk.tagged("markerlabel") == r.MARKER_TEXT + "\n"
    assert f.beginning("#python").text == "This is the beginning of #python.\n"
    assert f.beginning("@bob").text == "This is the beginning of your conversation with bob.\n"
    day = f.day(msg("bob", "x", ts="2026-11-25T00:01:00.000Z"))
    assert day == datetime.date(2026, 11, 25)
    assert f.day_divider(day).text == "Wednesday, 25 November 2026\n"
    assert f.day(p.Presence(room="#g", count=1)) is None


def test_a_search_hit_shows_where_who_when_and_highlights_the_words():
    f = Formatter(tz=UTC)
    hit = m.SearchHit("#python", 9, "bob", "2026-11-04T15:04:05.000Z",
                      "use pip install -e .\nthen Pip again")
    e = f.search_hit(hit, ["pip"], "r:0")
    assert e.text == "#python  bob  4 Nov 15:04\nuse pip install -e . then Pip again\n"
    assert all("r:0" in tags for _, tags in e.segments)
    assert [t for t, tags in e.segments if "hterm" in tags] == ["pip", "Pip"]
    assert r.name_tag("bob") in tags_of(e, "bob")
    act = f.search_hit(m.SearchHit("@bob", 3, "bob", "2026-11-04T15:04:05.000Z", "waves",
                                   "me"), [], "r:1")
    assert "* bob waves" in act.text
