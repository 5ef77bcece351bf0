"""The interactive client's rendering rules, without a terminal or a server: which
events become which lines in which conversation."""
from __future__ import annotations

import argparse

from cli_helpers import p
from parley.client.cli import Client, Formatter, json_line
from parley.client.session import Conversation, ConversationsChanged

TS = "2026-11-24T15:04:05.123Z"


class StubSession:
    """The part of Session the renderer reads, with calls recorded."""

    def __init__(self, convs: list[Conversation]):
        self.convs = convs
        self.calls: list[tuple] = []
        self.rooms_enabled = True
        self.users = {"alice", "bob"}
        self.connected = True
        self._n = 0

    def _label(self) -> str:
        self._n += 1
        return f"L{self._n}"

    def conversation(self, key):
        return next((c for c in self.convs if c.key.casefold() == key.casefold()), None)

    def conversations(self):
        return list(self.convs)

    def mark_read(self, conv, id):
        self.calls.append(("read", conv, id))

    def history(self, conv, before=None, after=None, limit=50):
        self.calls.append(("history", conv, before, limit))
        return self._label()

    def join(self, room):
        self.calls.append(("join", room))
        return self._label()

    def send(self, text, conv, kind="say"):
        self.calls.append(("send", conv, kind, text))
        return self._label()

    def open_dm(self, name):
        self.calls.append(("open_dm", name))
        self.convs.append(Conversation(key="@" + name, kind="dm", name=name))
        return "@" + name


def client(convs=None) -> tuple[Client, Formatter, StubSession]:
    s = StubSession(convs if convs is not None else [
        Conversation(key="#general", kind="room", name="#general", members=["alice", "bob"],
                     count=2, last_id=10),
        Conversation(key="#python", kind="room", name="#python", members=["alice"], count=1,
                     unread=2, mentions=1, last_id=12)])
    c = Client(argparse.Namespace(), interactive=True)
    c.session = s
    return c, Formatter("alice", colour=False), s


def msg(id, sender, text, room="#general", to=None):
    return p.Message(id=id, ts=TS, sender=sender, text=text, room=None if to else room, to=to)


def strip_time(line: str) -> str:
    import re
    return re.sub(r"\d\d:\d\d:\d\d ", "", line)


def test_current_conversation_unprefixed_others_prefixed_and_marked_read():
    c, fmt, s = client()
    assert [strip_time(x) for x in c.render(fmt, msg(11, "bob", "here"))] == ["bob: here"]
    assert s.calls == [("read", "#general", 11)]             # on screen: read
    assert [strip_time(x) for x in c.render(fmt, msg(12, "bob", "there", "#python"))] == \
        ["[#python] bob: there"]
    assert [strip_time(x) for x in c.render(fmt, msg(13, "bob", "psst", to="alice"))] == \
        ["[@bob] bob: psst"]
    assert s.calls == [("read", "#general", 11)]             # others stay unread


def test_joins_and_leaves_of_other_rooms_and_my_own_are_not_shown():
    c, fmt, s = client()
    assert c.render(fmt, p.Join(id=11, ts=TS, name="carol", room="#python")) == []
    assert [strip_time(x) for x in c.render(fmt, p.Join(id=12, ts=TS, name="carol",
                                                        room="#general"))] == ["→ carol joined"]
    assert c.render(fmt, p.Leave(id=13, ts=TS, name="alice", reason=p.LOST,
                                 room="#general")) == []
    assert c.render(fmt, p.Join(id=14, ts=TS, name="Alice", room="#general")) == []
    # topics of other rooms are not worth a line either; the current one's are
    assert c.render(fmt, p.Topic(id=15, ts=TS, room="#python", topic="x", by="bob")) == []
    assert [strip_time(x) for x in c.render(fmt, p.Topic(id=16, ts=TS, room="#general",
                                                         topic="hi", by="bob"))] == \
        ["bob set the topic: hi"]


def test_unread_summary_after_unread_of_another_conversation():
    c, fmt, s = client()
    assert c.render(fmt, p.Unread(count=0, room="#general")) == []
    assert c._summary(fmt) == []
    assert c.render(fmt, p.Unread(count=2, mentions=1, room="#python")) == []
    assert c._summary(fmt) == ["*** unread: #python 2 (1 mention) — /switch to read, /rooms for all"]
    assert c._summary(fmt) == []                              # once


def test_join_switches_at_once_and_back_when_refused():
    c, fmt, s = client()
    shown = []
    c.command("/join #rust", shown.append, fmt)
    assert c.prompt() == "#rust> " and s.calls == [("join", "#rust")]
    lines = c.render(fmt, p.Error(code=p.ROOM_INVALID, message="nope", label="L1"))
    assert lines == ["! nope (room_invalid)", "*** back in #general"]
    assert c.prompt() == "#general> "


def test_room_info_answer_takes_the_servers_spelling_and_marks_read():
    c, fmt, s = client()
    c.command("/join #Rust", [].append, fmt)
    s.convs.append(Conversation(key="#rust", kind="room", name="#rust", count=1, last_id=9))
    info = p.RoomInfo(room="#rust", count=1, members=["alice"], label="L1",
                      history=[msg(9, "bob", "earlier", "#rust").to_dict()])
    lines = c.render(fmt, info)
    assert [strip_time(x) for x in lines] == ["*** #rust: 1 here: alice", "bob: earlier"]
    assert c.prompt() == "#rust> "
    assert ("read", "#rust", 9) in s.calls


def test_switch_marks_read_asks_history_and_shows_the_new_marker():
    c, fmt, s = client()
    s.convs[1].read_id = 11
    shown = []
    c.command("/switch #PYTHON", shown.append, fmt)
    assert c.prompt() == "#python> "
    assert shown == ["*** now in #python: 1 here: alice"]
    assert ("history", "#python", None, 20) in s.calls and ("read", "#python", 12) in s.calls
    page = p.HistoryPage(messages=[msg(11, "bob", "seen", "#python").to_dict(),
                                   msg(12, "bob", "new", "#python").to_dict()],
                         more=True, room="#python", label="L1")
    assert [strip_time(x) for x in c.render(fmt, page)] == [
        "--- recent in #python (/history for more) ---", "bob: seen",
        "--- new since you were here ---", "bob: new"]
    # /history goes on before the oldest shown
    c.command("/history 5", shown.append, fmt)
    assert s.calls[-1] == ("history", "#python", 11, 5)


def test_switch_to_a_new_dm_opens_it():
    c, fmt, s = client()
    shown = []
    c.command("/switch @carol", shown.append, fmt)
    assert ("open_dm", "carol") in s.calls and c.prompt() == "@carol> "
    assert shown == ["*** now talking with carol (not online)"]
    c.command("hello", shown.append, fmt)
    assert s.calls[-1] == ("send", "@carol", "say", "hello")


def test_nothing_shown_for_bookkeeping_events():
    c, fmt, s = client()
    assert c.render(fmt, ConversationsChanged()) == []
    assert c.render(fmt, p.Ack(label="x", id=1)) == []
    assert c.render(fmt, p.Presence(room="#python", count=3)) == []


def test_json_line_hides_the_token_and_history():
    w = p.Welcome(version=1, server="s", name="a", users=["a"], last_id=1, token="SECRET",
                  limits={}, history=[{"type": "message"}])
    line = json_line(w)
    assert "SECRET" not in line and '"history"' not in line and '"welcome"' in line
    assert json_line(p.Ping(token="x")) is None
    assert json_line(ConversationsChanged()) is None
