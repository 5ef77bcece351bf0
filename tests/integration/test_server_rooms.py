"""Rooms, direct messages, history, search and unread over real sockets."""
import time

import pytest

from parley import protocol as p


def chat(c, text, **kw):
    """Say something and return (message id, the ack) once acknowledged."""
    ack = c.request(dict({"type": "say", "text": text}, **kw), "ack")
    assert ack.type == "ack", ack
    return ack.id


def test_welcome_lists_general_and_caps(connect):
    a = connect()
    w = a.hello("alice", rooms=True)
    assert w.caps == [p.CAP_ROOMS]
    assert [r["room"] for r in w.rooms] == ["#general"]
    assert w.rooms[0]["members"] == ["alice"]
    unread = a.expect("unread", room="#general")
    assert unread.count == 0


def test_join_create_talk_and_leave_a_room(connect):
    a, b, c = connect(), connect(), connect()
    a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    c.hello("carol", rooms=True)
    info = a.request({"type": "join", "room": "#Python"}, "room")
    assert (info.room, info.count, info.members) == ("#Python", 1, ["alice"])
    info = b.request({"type": "join", "room": "#python"}, "room")      # any case
    assert info.room == "#Python" and sorted(info.members) == ["alice", "bob"]
    join = a.expect("join", name="bob", room="#Python")
    assert join.id > 0
    mid = chat(a, "hello python people", room="#python")
    got = b.expect("message", id=mid)
    assert (got.room, got.sender, got.text) == ("#Python", "alice", "hello python people")
    # carol is not in #Python: she sees none of it
    assert [f for f in c.frames(0.3) if getattr(f, "room", None) == "#Python"] == []
    # bob leaves: alice sees why
    ack = b.request({"type": "part", "room": "#Python"}, "ack")
    assert ack.type == "ack"
    leave = a.expect("leave", name="bob", room="#Python")
    assert leave.reason == p.PART
    err = b.request({"type": "say", "text": "still here?", "room": "#Python"}, "ack")
    assert err.code == p.NOT_MEMBER


def test_room_errors(connect):
    a = connect()
    a.hello("alice", rooms=True)
    assert a.request({"type": "join", "room": "python"}, "room").code == p.ROOM_INVALID
    assert a.request({"type": "join", "room": "#" + "x" * 33}, "room").code == p.ROOM_INVALID
    assert a.request({"type": "say", "text": "x", "room": "#nowhere"}, "ack").code == p.NO_SUCH_ROOM
    assert a.request({"type": "say", "text": "x", "to": "nobody"}, "ack").code == p.NO_SUCH_USER
    assert a.request({"type": "say", "text": "x", "to": "a", "room": "#general"},
                     "ack").code == p.BAD_REQUEST
    assert a.request({"type": "history", "room": "#general", "limit": 201},
                     "history").code == p.BAD_REQUEST
    assert a.request({"type": "history", "room": "#general", "limit": 0},
                     "history").code == p.BAD_REQUEST
    assert a.request({"type": "topic", "room": "#general", "topic": "t" * 301},
                     "ack").code == p.TOPIC_TOO_LONG
    # still usable
    assert chat(a, "fine") > 0


def test_rooms_list_and_topic(connect):
    a, b = connect(), connect()
    a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    a.request({"type": "join", "room": "#py"}, "room")
    ack = a.request({"type": "topic", "room": "#py", "topic": "pip and friends"}, "ack")
    topic = a.expect("topic")
    assert (topic.room, topic.topic, topic.by, topic.id) == ("#py", "pip and friends", "alice", ack.id)
    rooms = b.request({"type": "rooms"}, "rooms").rooms
    assert rooms == [{"room": "#general", "topic": "", "count": 2, "joined": True},
                     {"room": "#py", "topic": "pip and friends", "count": 1, "joined": False}]
    info = b.request({"type": "join", "room": "#py"}, "room")
    assert info.topic == "pip and friends"


def test_direct_messages_reach_both_and_nobody_else(connect):
    a, b, c = connect(), connect(), connect()
    a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    c.hello("carol", rooms=True)
    mid = chat(a, "lunch?", to="BOB")
    mine = a.expect("message", id=mid)
    theirs = b.expect("message", id=mid)
    assert (theirs.sender, theirs.to, theirs.room, theirs.text) == ("alice", "bob", None, "lunch?")
    assert mine.to == "bob"
    assert [f for f in c.frames(0.3) if f.type == "message"] == []


def test_protocol_1_client_sees_general_only_and_gets_no_dms(connect):
    old, new = connect(), connect()
    old.hello("old")
    new.hello("new", rooms=True)
    new.request({"type": "join", "room": "#py"}, "room")
    chat(new, "in py", room="#py")
    mid = chat(new, "in general")
    got = old.expect("message", id=mid)
    assert got.text == "in general"
    assert new.request({"type": "say", "text": "psst", "to": "old"}, "ack").code == p.DM_UNSUPPORTED
    new.request({"type": "topic", "room": "#general", "topic": "hello"}, "ack")
    frames = old.frames(0.4)
    assert not [f for f in frames if f.type in ("topic", "presence")]   # frames it never knew
    assert not [f for f in frames if getattr(f, "text", None) == "in py"]


def test_history_paging_both_ways(connect):
    a = connect()
    a.hello("alice", rooms=True)
    ids = [chat(a, f"m{i}") for i in range(7)]
    page = a.request({"type": "history", "room": "#general", "limit": 3}, "history")
    assert [m["text"] for m in page.messages] == ["m4", "m5", "m6"] and page.more
    page = a.request({"type": "history", "room": "#general", "before": ids[4], "limit": 3},
                     "history")
    assert [m["text"] for m in page.messages] == ["m1", "m2", "m3"] and page.more
    page = a.request({"type": "history", "room": "#general", "after": ids[4], "limit": 3},
                     "history")
    assert [m["text"] for m in page.messages] == ["m5", "m6"] and not page.more


def test_search_scoped_to_what_you_may_read(connect):
    a, b = connect(), connect()
    a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    a.request({"type": "join", "room": "#secret"}, "room")
    chat(a, "the walrus plan", room="#secret")
    chat(a, "walrus in general")
    res = b.request({"type": "search", "query": "walrus"}, "results")
    assert [m["text"] for m in res.messages] == ["walrus in general"]
    res = a.request({"type": "search", "query": "walrus"}, "results")
    assert [m["text"] for m in res.messages] == ["walrus in general", "the walrus plan"]
    bad = a.request({"type": "search", "query": "\"unbalanced"}, "results")
    assert bad.type in ("results", "error")       # quoted as words, or a clear bad_query
    if bad.type == "error":
        assert bad.code == p.BAD_QUERY


def test_dm_history_belongs_to_the_session_not_the_name(connect, server):
    a, b = connect(), connect()
    wa = a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    chat(b, "secret for alice", to="alice")
    page = a.request({"type": "history", "with": "bob"}, "history")
    assert [m["text"] for m in page.messages] == ["secret for alice"]
    a.send({"type": "bye"})
    assert a.wait_closed()
    b.expect("leave", name="alice")
    imposter = connect()
    imposter.hello("alice", rooms=True)
    page = imposter.request({"type": "history", "with": "bob"}, "history")
    assert page.messages == []
    res = imposter.request({"type": "search", "query": "secret"}, "results")
    assert res.messages == []
    imposter.send({"type": "bye"})
    assert imposter.wait_closed()
    b.expect("leave", name="alice")
    # the real alice comes back with her token: her DMs are there
    back = connect()
    w = back.hello("alice", rooms=True, token=wa.token)
    page = back.request({"type": "history", "with": "bob"}, "history")
    assert [m["text"] for m in page.messages] == ["secret for alice"]


def test_unread_survives_and_read_marker_syncs(connect):
    a, b = connect(), connect()
    wa = a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    a.request({"type": "join", "room": "#py"}, "room")
    b.request({"type": "join", "room": "#py"}, "room")
    a.send({"type": "bye"})
    assert a.wait_closed()
    ids = [chat(b, f"hey alice {i}" if i == 0 else f"note {i}", room="#py") for i in range(3)]
    back = connect()
    back.hello("alice", rooms=True, token=wa.token)
    rooms = [r["room"] for r in back.welcome.rooms] if hasattr(back, "welcome") else None
    unread = back.expect("unread", room="#py")
    assert (unread.count, unread.mentions) == (3, 1)
    assert unread.last_id >= ids[-1]
    back.send({"type": "read", "room": "#py", "id": ids[1]})
    after = back.expect("unread", room="#py")
    assert (after.count, after.read_id) == (1, ids[1])


def test_message_comes_before_its_ack(connect):
    a = connect()
    a.hello("alice", rooms=True)
    a.send({"type": "say", "text": "order", "label": "L1"})
    msg, ack = a.expect_sequence("message", "ack")
    assert ack.label == "L1" and ack.id == msg.id


def test_acks_still_arrive_after_bye(connect):
    a, b = connect(), connect()
    a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    for i in range(10):
        a.send({"type": "say", "text": f"m{i}", "label": f"L{i}"})
    a.send({"type": "bye"})
    acks = []
    while not a.eof:
        acks += [f.label for f in a.frames(0.2) if f.type == "ack"]
    assert acks == [f"L{i}" for i in range(10)]
    texts = []
    for _ in range(10):
        texts.append(b.expect("message").text)
    assert texts == [f"m{i}" for i in range(10)]


def test_resent_label_is_not_stored_twice(connect):
    a, b = connect(), connect()
    a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    a.send({"type": "say", "text": "once", "label": "same"})
    first = a.expect("ack", label="same")
    a.send({"type": "say", "text": "once", "label": "same"})
    again = a.expect("ack", label="same")
    assert again.id == first.id
    msgs = [f for f in b.frames(0.4) if f.type == "message"]
    assert [m.text for m in msgs] == ["once"]


def test_big_room_presence_is_coalesced(make_server, connect):
    srv = make_server(presence_limit=3)
    watcher = connect(srv=srv)
    watcher.hello("watcher", rooms=True)
    others = []
    for i in range(6):
        c = connect(srv=srv)
        c.hello(f"user{i}", rooms=True)
        others.append(c)
    frames = watcher.frames(1.5)
    joins = [f.name for f in frames if f.type == "join"]
    presence = [f for f in frames if f.type == "presence"]
    assert joins == ["user0", "user1"]          # up to 3 members: one by one
    assert presence and presence[-1].count == 7
    assert sum(f.joined_count for f in presence) == 4
    assert presence[0].joined[:2] == ["user2", "user3"]


def test_one_send_is_in_id_order_across_rooms_and_dms(make_server, connect):
    """A client resumes from the highest id it saw: so ids must never arrive out
    of order, or a cut in the middle of a send would lose the lower ones."""
    srv = make_server(rate=1000, burst=1000)
    a, b = connect(srv=srv), connect(srv=srv)
    a.hello("alice", rooms=True)
    b.hello("bob", rooms=True)
    for room in ("#r1", "#r2", "#r3"):
        a.request({"type": "join", "room": room}, "room")
        b.request({"type": "join", "room": room}, "room")
    a.frames(0.3)
    # hold bob's I/O thread's view still by sending everything in one go from alice
    burst = []
    for i in range(60):
        target = [{"room": "#r1"}, {"room": "#r2"}, {"room": "#r3"}, {"to": "bob"},
                  {"room": "#general"}][i % 5]
        burst.append(p.encode_dict(dict({"type": "say", "text": f"m{i}", "label": f"L{i}"},
                                        **target)))
    a.send(b"".join(burst))
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 60 and not b.eof and time.monotonic() < deadline:
        got += [f for f in b.frames(0.2) if f.type == "message"]
    ids = [f.id for f in got]
    assert len(ids) == 60 and ids == sorted(ids)
    # and the sender sees each of its messages before that message's ack
    seen, acked = set(), []
    for f in a.frames(0.5):
        if f.type == "message":
            seen.add(f.id)
        elif f.type == "ack":
            assert f.id in seen, f"ack {f.label} came before its message"
            acked.append(f.label)
    assert len(acked) == 60
