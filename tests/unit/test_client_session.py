"""The client Session against a tiny scripted server over a real socket.

``FakeServer`` listens on 127.0.0.1:0; each test accepts the session's
connection and plays the server's side frame by frame (``expect`` a client
frame, ``send`` server frames), so every rule of the session is checked
without the real server: conversations and their order, unread counting,
mentions, read markers, pending messages, rooms requests, dedup by id, the
offline queue and reconnecting.  No sleeps: every wait has a deadline.
"""
from __future__ import annotations

import queue
import selectors
import socket
import threading
import time
from typing import Callable, Optional

import pytest

from parley import protocol as p
from parley.client import session as session_mod
from parley.client.session import (Conversation, ConversationsChanged, OfflineQueueFull,
                                   Session, SessionState, StateChanged)

WAIT = 5.0
LIMITS = {"max_line": 16384, "max_text": 4000, "rate": 1000.0, "burst": 1000,
          "ping_interval": 30.0}
TS = "2026-11-24T15:04:05.123Z"


class FakeConn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        sock.settimeout(WAIT)
        self.decoder = p.FrameDecoder(p.CLIENT_FRAMES)
        self.backlog: list = []

    def send(self, *frames) -> None:
        data = b"".join(p.encode(f) if isinstance(f, p.Event) else p.encode_dict(f)
                        for f in frames)
        self.sock.sendall(data)

    def _read(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            data = b""
        if not data:
            raise EOFError("the client closed the connection")
        self.backlog.extend(self.decoder.feed(data))
        return True

    def expect(self, kind: str, timeout: float = WAIT, **fields):
        """The first client frame of ``kind`` (with ``fields``); earlier frames of
        other kinds stay in the backlog."""
        deadline = time.monotonic() + timeout
        while True:
            for i, f in enumerate(self.backlog):
                if f.type == kind and all(getattr(f, k) == v for k, v in fields.items()):
                    return self.backlog.pop(i)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} {fields} from the client; got {self.backlog}")
            self._read(deadline)

    def nothing(self, kind: str, within: float = 0.3) -> None:
        """No frame of ``kind`` arrives within ``within`` s (a negative check:
        the only bounded wait here, used after a positive one)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert not any(f.type == kind for f in self.backlog), self.backlog
            try:
                self._read(deadline)
            except EOFError:
                break
        assert not any(f.type == kind for f in self.backlog), self.backlog

    def eof(self, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        with pytest.raises(EOFError):
            while time.monotonic() < deadline:
                self._read(deadline)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class FakeServer:
    def __init__(self):
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.conns: list[FakeConn] = []

    def accept(self, timeout: float = WAIT) -> FakeConn:
        self.lsock.settimeout(timeout)
        sock, _ = self.lsock.accept()
        conn = FakeConn(sock)
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.lsock.close()


def room_info(room: str, members: Optional[list[str]] = None, topic: str = "",
              count: Optional[int] = None, label: Optional[str] = None,
              history: Optional[list] = None) -> p.RoomInfo:
    return p.RoomInfo(room=room, count=count if count is not None else len(members or []),
                      topic=topic, members=members, history=history or [], label=label)


def welcome(name: str = "alice", users=("alice", "bob"), rooms=None, last_id: int = 10,
            history=(), caps=(p.CAP_ROOMS,), instance: str = "db1", token: str = "tok"):
    if rooms is None and caps:
        rooms = [room_info("#general", list(users))]
    return p.Welcome(version=1, server="fake/1", name=name, users=list(users), last_id=last_id,
                     token=token, limits=LIMITS, history=list(history),
                     caps=list(caps) if caps else None, instance=instance,
                     rooms=[r.to_dict() for r in rooms] if rooms is not None else None)


def msg(id: int, sender: str, text: str, room: Optional[str] = "#general",
        to: Optional[str] = None, kind: str = "say", label: Optional[str] = None) -> p.Message:
    return p.Message(id=id, ts=TS, sender=sender, text=text, kind=kind,
                     room=None if to else room, to=to, label=label)


class Harness:
    """A session connected to the fake server, with an event log."""

    def __init__(self, server: Optional[FakeServer], port: Optional[int] = None, **kw):
        kw.setdefault("backoff_initial", 0.05)
        kw.setdefault("backoff_max", 0.1)
        self.s = Session("127.0.0.1", port or server.port, kw.pop("name", "alice"),
                         client="tests", **kw)
        self.server = server
        self.seen: list = []

    def start(self) -> FakeConn:
        self.s.start()
        return self.server.accept()

    def wait(self, pred: Callable[[object], bool], what: str = "event",
             timeout: float = WAIT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what}; saw {self.seen[-20:]}")
            try:
                ev = self.s.events.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            self.seen.append(ev)
            if pred(ev):
                return ev

    def wait_type(self, cls, **fields):
        return self.wait(lambda e: isinstance(e, cls) and all(
            getattr(e, k) == v for k, v in fields.items()), f"{cls.__name__} {fields}")

    def changed(self) -> None:
        self.wait(lambda e: isinstance(e, ConversationsChanged), "ConversationsChanged")

    def until(self, cond: Callable[[], bool], what: str) -> None:
        """Read events until ``cond()`` holds (state is updated before events are sent)."""
        deadline = time.monotonic() + WAIT
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}; conversations: {self.s.conversations()}")
            try:
                self.seen.append(self.s.events.get(timeout=0.05))
            except queue.Empty:
                pass

    def close(self) -> None:
        self.s.close()


@pytest.fixture
def server():
    srv = FakeServer()
    yield srv
    srv.close()


@pytest.fixture
def harness(server):
    made: list[Harness] = []

    def make(**kw) -> Harness:
        h = Harness(server, **kw)
        made.append(h)
        return h

    yield make
    for h in made:        # say goodbye like a real server: hang up after the client's bye
        closer = threading.Thread(target=h.close)
        closer.start()
        for conn in server.conns:
            try:
                conn.expect("bye", timeout=2.0)
            except (AssertionError, EOFError, OSError):
                pass
            conn.close()
        closer.join()


def connected(harness, **kw) -> tuple[Harness, FakeConn]:
    """A session that said hello and got ``welcome(**kw)`` plus nothing else."""
    h = harness()
    conn = h.start()
    hello = conn.expect("hello")
    assert hello.caps == [p.CAP_ROOMS]
    conn.send(welcome(**kw))
    h.wait_type(p.Welcome)
    h.until(lambda: h.s.registered.is_set(), "registered")
    return h, conn


# --- the waker ---------------------------------------------------------------------------
class SocketsOnlySelector(selectors.SelectSelector):
    """Windows' select() takes sockets only: refuse anything else."""
    registered: list = []

    def register(self, fileobj, events, data=None):
        assert isinstance(fileobj, socket.socket), f"not a socket: {fileobj!r}"
        SocketsOnlySelector.registered.append(fileobj)
        return super().register(fileobj, events, data)


def test_selectors_only_ever_hold_sockets(server, harness, monkeypatch):
    monkeypatch.setattr(session_mod.selectors, "DefaultSelector", SocketsOnlySelector)
    SocketsOnlySelector.registered = []
    h = harness()
    conn = h.start()
    conn.expect("hello")
    conn.send(welcome())
    h.wait_type(p.Welcome)
    label = h.s.say("through the socket waker")      # a wake-up from another thread
    got = conn.expect("say")
    assert (got.text, got.label) == ("through the socket waker", label)
    conn.send(msg(11, "alice", got.text, label=label), p.Ack(label=label, id=11))
    assert h.s.wait_idle(WAIT)
    conn.close()                                      # reconnect backoff sleeps on the waker
    h.wait_type(StateChanged, state=SessionState.RECONNECTING)
    server.accept().expect("hello")
    assert len(SocketsOnlySelector.registered) >= 3
    assert all(isinstance(s, socket.socket) for s in SocketsOnlySelector.registered)


# --- hello, welcome, conversations ----------------------------------------------------------
def test_hello_asks_for_rooms_and_welcome_sets_caps_and_rooms(harness):
    h, conn = connected(harness, rooms=[
        room_info("#general", ["alice", "bob"]),
        room_info("#python", ["alice"], topic="pip and friends")])
    assert h.s.caps == [p.CAP_ROOMS] and h.s.rooms_enabled
    assert h.s.users == {"alice", "bob"}
    convs = h.s.conversations()
    assert [c.key for c in convs] == ["#general", "#python"]
    assert convs[1] == Conversation(key="#python", kind="room", name="#python",
                                    topic="pip and friends", members=["alice"], count=1,
                                    unread=0, mentions=0, read_id=0, last_id=0)
    # snapshots are copies
    convs[0].members.append("mallory")
    assert h.s.conversation("#GENERAL").members == ["alice", "bob"]
    assert h.s.conversation("#nope") is None
    h.changed()                       # the UIs are told to read the list


def test_general_comes_first_then_rooms_in_join_order_then_dms_by_activity(harness):
    h, conn = connected(harness, rooms=[room_info("#zeta", ["alice"]),
                                        room_info("#general", ["alice", "bob"])])
    h.s.join("#alpha")
    j = conn.expect("join", room="#alpha")
    conn.send(room_info("#Alpha", ["alice"], label=j.label))   # the server's spelling wins
    h.wait_type(p.RoomInfo)
    conn.send(msg(11, "bob", "hi alice", to="alice"),
              msg(12, "carol", "psst", to="alice"),
              msg(13, "bob", "again", to="alice"))
    h.until(lambda: len(h.s.conversations()) == 5, "two DMs")
    assert [c.key for c in h.s.conversations()] == ["#general", "#zeta", "#Alpha", "@bob",
                                                     "@carol"]
    conn.send(msg(14, "carol", "newer", to="alice"))
    h.until(lambda: h.s.conversations()[3].key == "@carol", "carol's DM moves up")
    bob = h.s.conversation("@BOB")
    assert (bob.kind, bob.name, bob.unread, bob.last_id) == ("dm", "bob", 2, 13)
    assert bob.members == ["alice", "bob"]


def test_protocol_one_server_gives_general_only(harness):
    h, conn = connected(harness, caps=(), rooms=None, users=("alice", "bob"))
    assert h.s.caps == [] and not h.s.rooms_enabled
    assert [(c.key, c.members) for c in h.s.conversations()] == [("#general", ["alice", "bob"])]
    conn.send(p.Join(id=11, ts=TS, name="carol"), p.Message(id=12, ts=TS, sender="carol",
                                                            text="hello"))
    h.until(lambda: h.s.conversation("#general").unread == 1, "unread in #general")
    assert h.s.conversation("#general").members == ["alice", "bob", "carol"]
    # rooms and DMs are refused locally, never sent
    label = h.s.say("to python", room="#python")
    err = h.wait_type(p.Error, label=label)
    assert err.code == session_mod.NO_ROOMS
    label = h.s.say("to general", room="#general")
    got = conn.expect("say")
    assert got.room is None and got.label == label    # a protocol-1 server gets no room
    conn.nothing("join")


# --- messages, unread, mentions ---------------------------------------------------------------
def test_unread_counts_others_messages_and_mentions_as_words(harness):
    h, conn = connected(harness, rooms=[room_info("#general", ["alice", "bob"]),
                                        room_info("#python", ["alice", "bob"])])
    conn.send(p.Unread(room="#general", count=2, read_id=5, last_id=10, mentions=1),
              p.Unread(room="#python", count=0, read_id=10, last_id=10))
    h.wait_type(p.Unread, room="#python")
    assert (h.s.conversation("#general").unread, h.s.conversation("#general").mentions) == (2, 1)
    conn.send(msg(11, "bob", "hey alice, look", room="#python"),
              msg(12, "bob", "malice is not a mention", room="#python"),
              msg(13, "bob", "@Alice: you too", room="#python"),
              msg(14, "alice", "my own words", room="#python"),
              msg(15, "bob", "general chatter"))
    h.wait_type(p.Message, id=15)
    py = h.s.conversation("#python")
    assert (py.unread, py.mentions, py.last_id, py.read_id) == (3, 2, 14, 10)
    gen = h.s.conversation("#general")
    assert (gen.unread, gen.mentions, gen.last_id) == (3, 1, 15)


def test_mark_read_updates_at_once_and_sends_only_forward(harness):
    h, conn = connected(harness)
    conn.send(msg(11, "bob", "one"), msg(12, "bob", "two alice"), msg(13, "bob", "three"))
    h.wait_type(p.Message, id=13)
    assert h.s.conversation("#general").unread == 3
    label = h.s.mark_read("#general", 12)
    c = h.s.conversation("#general")
    assert (c.unread, c.mentions, c.read_id) == (1, 0, 12)     # before any answer
    read = conn.expect("read")
    assert (read.room, read.id, read.label) == ("#general", 12, label)
    assert h.s.mark_read("#general", 11) is None                # backwards: nothing sent
    assert h.s.mark_read("#general", 12) is None
    assert h.s.mark_read("#nowhere", 50) is None
    conn.send(p.Unread(room="#general", count=1, read_id=12, last_id=13))
    h.wait_type(p.Unread)
    assert h.s.conversation("#general").unread == 1
    conn.nothing("read")


def test_read_markers_are_coalesced_newest_wins(harness):
    h, conn = connected(harness)
    conn.send(*[msg(i, "bob", f"m{i}") for i in range(11, 31)])
    h.wait_type(p.Message, id=30)
    first = h.s.mark_read("#general", 11)
    assert conn.expect("read").id == 11
    # within the next second: only the newest position goes out, once
    labels = {h.s.mark_read("#general", i) for i in range(12, 31)}
    assert len(labels) == 1 and first not in labels
    read = conn.expect("read")
    assert read.id == 30 and read.label in labels
    conn.nothing("read")
    assert h.s.conversation("#general").unread == 0


def test_unread_from_server_that_lags_behind_a_local_mark_read(harness):
    h, conn = connected(harness)
    conn.send(msg(11, "bob", "a"), msg(12, "bob", "b"))
    h.wait_type(p.Message, id=12)
    h.s.mark_read("#general", 12)
    # a stale unread (from an older marker on another connection) must not bring badges back
    conn.send(p.Unread(room="#general", count=2, read_id=10, last_id=12))
    h.wait_type(p.Unread)
    c = h.s.conversation("#general")
    assert (c.unread, c.read_id) == (0, 12)


def test_own_messages_and_dms_both_ways(harness):
    h, conn = connected(harness)
    label = h.s.send("lunch?", "@Bob")
    assert h.s.conversation("@bob").key == "@Bob"     # opened at once
    got = conn.expect("say")
    assert (got.to, got.room, got.text) == ("Bob", None, "lunch?")
    conn.send(msg(11, "alice", "lunch?", to="Bob"), p.Ack(label=label, id=11),
              msg(12, "Bob", "yes!", to="alice"))
    h.wait_type(p.Message, id=12)
    c = h.s.conversation("@bob")
    assert (c.unread, c.last_id) == (1, 12)          # bob's answer; not my own message
    assert [c.key for c in h.s.conversations()] == ["#general", "@Bob"]
    label = h.s.send("waves", "@bob", kind="me")
    got = conn.expect("me")
    assert (got.to, got.text, got.label) == ("bob", "waves", label)
    with pytest.raises(ValueError):
        h.s.send("x", "bob")
    with pytest.raises(ValueError):
        h.s.say("x", room="#a", to="b")


def test_open_dm_without_a_message(harness):
    h, conn = connected(harness)
    assert h.s.open_dm("carol") == "@carol"
    h.changed()
    assert [c.key for c in h.s.conversations()] == ["#general", "@carol"]


# --- rooms requests ---------------------------------------------------------------------------
def test_join_part_topic_users_rooms_requests_and_their_answers(harness):
    h, conn = connected(harness)
    label = h.s.join("#python")
    j = conn.expect("join")
    assert (j.room, j.label) == ("#python", label)
    conn.send(room_info("#python", ["bob", "alice"], topic="snakes", label=label,
                        history=[msg(9, "bob", "earlier", room="#python").to_dict()]))
    info = h.wait_type(p.RoomInfo)
    assert info.history[0]["text"] == "earlier"
    c = h.s.conversation("#python")
    assert (c.members, c.topic, c.count, c.last_id) == (["alice", "bob"], "snakes", 2, 9)
    assert h.s.wait_idle(WAIT)

    label = h.s.set_topic("#python", "pip and friends")
    t = conn.expect("topic")
    assert (t.room, t.topic, t.label) == ("#python", "pip and friends", label)
    conn.send(p.Topic(id=11, ts=TS, room="#python", topic="pip and friends", by="alice"),
              p.Ack(label=label, id=11))
    h.wait_type(p.Ack, label=label)
    assert h.s.conversation("#python").topic == "pip and friends"

    conn.send(p.Join(id=12, ts=TS, name="carol", room="#python"))
    h.wait_type(p.Join, id=12)
    assert h.s.conversation("#python").members == ["alice", "bob", "carol"]
    assert "carol" in h.s.users
    conn.send(p.Leave(id=13, ts=TS, name="bob", reason=p.PART, room="#python"))
    h.wait_type(p.Leave, id=13)
    assert h.s.conversation("#python").members == ["alice", "carol"]
    assert "bob" in h.s.users                        # parted a room, still online
    assert h.s.conversation("#general").members == ["alice", "bob"]

    label = h.s.request_users("#python")
    u = conn.expect("users")
    assert (u.room, u.label) == ("#python", label)
    conn.send(p.UserList(users=["alice", "carol", "dave"], room="#python", label=label))
    h.wait_type(p.UserList, label=label)
    assert h.s.conversation("#python").count == 3

    label = h.s.list_rooms()
    assert conn.expect("rooms").label == label
    conn.send(p.RoomList(rooms=[{"room": "#general", "topic": "", "count": 2, "joined": True},
                                {"room": "#python", "topic": "new", "count": 3, "joined": True},
                                {"room": "#rust", "topic": "", "count": 0, "joined": False}],
                         label=label))
    h.wait_type(p.RoomList)
    assert [c.key for c in h.s.conversations()] == ["#general", "#python"]
    assert h.s.conversation("#python").topic == "new"

    label = h.s.part("#python")
    pr = conn.expect("part")
    assert (pr.room, pr.label) == ("#python", label)
    assert h.s.conversation("#python") is not None         # until the server agrees
    conn.send(p.Ack(label=label, id=14))
    h.wait_type(p.Ack, label=label)
    assert h.s.conversation("#python") is None
    assert h.s.wait_idle(WAIT)


def test_quit_leave_removes_from_users_and_rooms(harness):
    h, conn = connected(harness, users=("alice", "bob"), rooms=[
        room_info("#general", ["alice", "bob"]), room_info("#python", ["alice", "bob"])])
    conn.send(p.Leave(id=11, ts=TS, name="bob", reason=p.LOST, room="#general"),
              p.Leave(id=12, ts=TS, name="bob", reason=p.LOST, room="#python"))
    h.wait_type(p.Leave, id=12)
    assert h.s.users == {"alice"}
    assert [c.members for c in h.s.conversations()] == [["alice"], ["alice"]]


def test_presence_in_a_big_room(harness):
    h, conn = connected(harness, rooms=[room_info("#general", None, count=500)])
    assert h.s.conversation("#general").members is None
    conn.send(p.Presence(room="#general", count=557, joined=["carol"], joined_count=57))
    h.wait_type(p.Presence)
    c = h.s.conversation("#general")
    assert (c.count, c.members) == (557, None)
    assert "carol" in h.s.users


def test_history_and_search_requests(harness):
    h, conn = connected(harness)
    label = h.s.history("#general", before=40, limit=30)
    q = conn.expect("history")
    assert (q.room, q.peer, q.before, q.after, q.limit, q.label) == (
        "#general", None, 40, None, 30, label)
    page = p.HistoryPage(messages=[msg(3, "bob", "old").to_dict()], more=True,
                         room="#general", label=label)
    conn.send(page)
    assert h.wait_type(p.HistoryPage).messages[0]["text"] == "old"
    label = h.s.history("@bob", after=5)
    q = conn.expect("history")
    assert (q.room, q.peer, q.after, q.limit) == (None, "bob", 5, 50)
    conn.send(p.HistoryPage(messages=[], more=False, peer="bob", label=label))
    label = h.s.search("pip install", conv="#python", limit=10)
    q = conn.expect("search")
    assert (q.query, q.room, q.limit, q.label) == ("pip install", "#python", 10, label)
    conn.send(p.Error(code=p.NOT_MEMBER, message="not in #python", label=label))
    assert h.wait_type(p.Error).label == label
    label = h.s.search("lunch")
    q = conn.expect("search")
    assert (q.query, q.room, q.peer) == ("lunch", None, None)
    conn.send(p.SearchResults(query="lunch", messages=[], label=label))
    h.wait_type(p.SearchResults)
    assert h.s.wait_idle(WAIT)
    with pytest.raises(ValueError):
        h.s.history("general")


# --- pending messages, queue, dedup, reconnect ------------------------------------------------
def test_pending_messages_while_offline_then_delivered(server, harness):
    h = harness(max_queued=3)
    h.s.start()
    conn = server.accept()
    conn.expect("hello")              # no welcome yet: everything waits
    a = h.s.say("one")
    b = h.s.send("two", "#python")
    c = h.s.me("waves", to="bob")
    j = h.s.join("#rust")             # requests do not count toward the message limit
    with pytest.raises(OfflineQueueFull):
        h.s.say("four")
    pend = h.s.pending_messages()
    assert [(lbl, type(e).__name__, e.text) for lbl, e in pend] == [
        (a, "Say", "one"), (b, "Say", "two"), (c, "Me", "waves")]
    assert [lbl for lbl, _ in h.s.pending_messages("#PYTHON")] == [b]
    assert [lbl for lbl, _ in h.s.pending_messages("@bob")] == [c]
    assert [lbl for lbl, _ in h.s.pending_messages("#general")] == [a]
    conn.send(welcome())
    got = [conn.expect(k).label for k in ("say", "say", "me", "join")]
    assert got == [a, b, c, j]
    # in flight: still pending until acknowledged
    assert [lbl for lbl, _ in h.s.pending_messages()] == [a, b, c]
    conn.send(p.Ack(label=a, id=11), p.Ack(label=c, id=12))
    h.until(lambda: [lbl for lbl, _ in h.s.pending_messages()] == [b], "two acked")


def test_catch_up_drops_duplicates_and_messages_that_went_through(server, harness):
    h, conn = connected(harness)
    conn.send(msg(11, "bob", "before"))
    h.wait_type(p.Message, id=11)
    sent = h.s.say("sent just before the drop")
    assert conn.expect("say").label == sent
    lost = h.s.say("never arrived")
    assert conn.expect("say").label == lost
    conn.close()
    h.wait_type(StateChanged, state=SessionState.RECONNECTING)
    conn = server.accept()
    hello = conn.expect("hello")
    assert (hello.last_id, hello.token, hello.instance) == (11, "tok", "db1")
    assert hello.caps == [p.CAP_ROOMS]
    conn.send(welcome(last_id=14, history=[
        msg(11, "bob", "before").to_dict(),                                    # seen already
        msg(12, "alice", "sent just before the drop", label=sent).to_dict(),
        msg(13, "bob", "while away").to_dict()]))
    again = conn.expect("say")
    assert (again.label, again.text) == (lost, "never arrived")             # not `sent`
    conn.send(msg(13, "bob", "while away"), msg(15, "bob", "live"))         # 13 is a duplicate
    h.wait_type(p.Message, id=15)
    texts = [e.text for e in h.seen if isinstance(e, p.Message)]
    assert texts == ["before", "sent just before the drop", "while away", "live"]
    assert h.s.last_id == 15


def test_ids_from_another_database_are_not_dropped(server, harness):
    h, conn = connected(harness, last_id=100)
    conn.send(msg(101, "bob", "old server"))
    h.wait_type(p.Message, id=101)
    h.s.mark_read("#general", 101)
    assert conn.expect("read").id == 101
    conn.close()
    conn = server.accept()
    hello = conn.expect("hello")
    assert (hello.last_id, hello.instance) == (101, "db1")
    conn.send(welcome(last_id=3, instance="db2"))
    conn.send(msg(4, "bob", "new server"))
    assert h.wait_type(p.Message, id=4).text == "new server"
    # the old database's read position does not hide the new one's messages
    c = h.s.conversation("#general")
    assert (c.unread, c.read_id, c.last_id) == (1, 0, 4)
    assert h.s.mark_read("#general", 4) is not None
    assert conn.expect("read").id == 4


def test_out_of_order_ids_across_rooms_are_kept(harness):
    h, conn = connected(harness, rooms=[room_info("#general", ["alice"]),
                                        room_info("#python", ["alice"])])
    conn.send(msg(12, "bob", "twelve"), msg(11, "bob", "eleven", room="#python"),
              msg(12, "bob", "twelve again"))
    conn.send(msg(13, "bob", "end"))
    h.wait_type(p.Message, id=13)
    assert [e.text for e in h.seen if isinstance(e, p.Message)] == ["twelve", "eleven", "end"]


def test_welcome_rooms_replace_local_rooms_on_reconnect(server, harness):
    h, conn = connected(harness, rooms=[room_info("#general", ["alice"]),
                                        room_info("#python", ["alice"])])
    h.s.open_dm("bob")
    conn.close()
    conn = server.accept()
    conn.expect("hello")
    conn.send(welcome(rooms=[room_info("#general", ["alice"])], instance="db2"))
    h.until(lambda: [c.key for c in h.s.conversations()] == ["#general", "@bob"],
            "#python gone, the DM kept")


def test_rate_limited_message_is_sent_again(harness):
    h, conn = connected(harness)
    label = h.s.say("too fast")
    assert conn.expect("say").label == label
    conn.send(p.Error(code=p.RATE_LIMITED, message="slow down", label=label, retry_after=0.05))
    again = conn.expect("say")
    assert again.label == label
    conn.send(p.Ack(label=label, id=11))
    assert h.s.wait_idle(WAIT)
    assert not any(isinstance(e, p.Error) for e in h.seen)


def test_a_throttled_connection_reconnects_no_sooner_than_the_server_said(harness):
    h = harness()                             # backoff 0.05-0.1 s: far shorter than asked
    conn = h.start()
    conn.expect("hello")
    conn.send(p.Error(code=p.THROTTLED, message="wait", retry_after=0.6))
    refused_at = time.monotonic()
    conn.close()
    err = h.wait_type(p.Error, code=p.THROTTLED)          # shown to the user
    assert err.retry_after == 0.6
    retry = h.wait_type(StateChanged, state=SessionState.RECONNECTING)
    assert retry.retry_in == 0.6
    again = h.server.accept()
    assert time.monotonic() - refused_at >= 0.6
    again.expect("hello")
    again.send(welcome())
    h.wait_type(p.Welcome)
    again.close()                             # the wait was used up: back to the short backoff
    retry = h.wait_type(StateChanged, state=SessionState.RECONNECTING)
    assert retry.retry_in <= 0.12


def test_close_sends_queued_read_markers_then_bye(harness):
    h, conn = connected(harness)
    conn.send(msg(11, "bob", "a"), msg(12, "bob", "b"))
    h.wait_type(p.Message, id=12)
    h.s.mark_read("#general", 11)
    assert conn.expect("read").id == 11
    h.s.mark_read("#general", 12)          # within the second: held back …
    h.s.close()
    assert conn.expect("read").id == 12    # … but not lost when leaving
    conn.expect("bye")


# --- against the real server ------------------------------------------------------------------
def test_unread_and_read_positions_survive_a_reconnect_with_the_real_server():
    from parley.server.app import Server
    from parley.server.connection import Limits

    srv = Server("127.0.0.1", 0, Limits(rate=1000, burst=1000), io_threads=1).start()
    port = srv.address[1]
    sessions = []

    def open_session(name: str) -> Harness:
        h = Harness(None, port, name=name)
        sessions.append(h.s.start())
        h.wait_type(p.Welcome)
        return h

    try:
        alice, bob = open_session("alice"), open_session("bob")
        for h in (alice, bob):
            label = h.s.join("#py")
            h.wait_type(p.RoomInfo, label=label)
        bob.s.say("hi alice", room="#py")
        bob.s.say("nothing for you", room="#py")
        bob.s.say("psst", to="alice")
        assert bob.s.wait_idle(WAIT)
        alice.until(lambda: alice.s.conversation("#py").unread == 2
                    and alice.s.conversation("@bob") is not None, "alice's unread")
        py = alice.s.conversation("#py")
        assert (py.unread, py.mentions) == (2, 1)
        assert alice.s.conversation("@bob").unread == 1

        # the server keeps the counts: after a reconnect they are still there
        alice.s.reconnect_now()
        alice.wait_type(StateChanged, state=SessionState.RECONNECTING)
        alice.wait_type(p.Unread, peer="bob")
        assert [(c.key, c.unread, c.mentions) for c in alice.s.conversations()] == [
            ("#general", 0, 0), ("#py", 2, 1), ("@bob", 1, 0)]

        # reading is stored too, and answered with an unread frame
        py = alice.s.conversation("#py")
        alice.s.mark_read("#py", py.last_id)
        assert alice.s.conversation("#py").unread == 0                     # at once
        u = alice.wait_type(p.Unread, room="#py")
        assert (u.count, u.read_id) == (0, py.last_id)
        alice.s.reconnect_now()
        alice.wait_type(StateChanged, state=SessionState.RECONNECTING)
        alice.wait_type(p.Unread, peer="bob")
        assert [(c.key, c.unread) for c in alice.s.conversations()] == [
            ("#general", 0), ("#py", 0), ("@bob", 1)]
    finally:
        for s in sessions:
            s.close()
        srv.stop(0.5)
