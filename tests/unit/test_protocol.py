"""The sans-IO protocol core: no sockets, every edge case."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from parley import protocol as p


def feed_all(decoder, chunks):
    out = []
    for c in chunks:
        out.extend(decoder.feed(c))
    return out


def test_roundtrip_simple_message():
    ev = p.Message(id=7, ts="2026-11-24T15:04:05.123Z", sender="bob", text="hi ☕", kind="say")
    wire = p.encode(ev)
    assert wire.endswith(b"\n") and b"\n" not in wire[:-1]
    assert json.loads(wire)["from"] == "bob"
    (back,) = p.FrameDecoder(p.SERVER_FRAMES).feed(wire)
    assert back == ev


def test_optional_fields_are_omitted_on_the_wire():
    assert json.loads(p.encode(p.Say(text="x"))) == {"type": "say", "text": "x"}


def test_partial_lines_across_feeds():
    d = p.FrameDecoder(p.CLIENT_FRAMES)
    wire = p.encode(p.Say(text="hello", label="a")) + p.encode(p.Ping(token="t"))
    events = feed_all(d, [wire[i:i + 1] for i in range(len(wire))])
    assert events == [p.Say(text="hello", label="a"), p.Ping(token="t")]


@pytest.mark.parametrize("line, code", [
    (b"\xff\xfe\n", p.BAD_UTF8),
    (b"{nope\n", p.BAD_JSON),
    (b"[1,2]\n", p.BAD_FRAME),
    (b'{"text":"no type"}\n', p.BAD_FRAME),
    (b'{"type":5}\n', p.BAD_FRAME),
    (b'{"type":"dance"}\n', p.UNKNOWN_TYPE),
    (b'{"type":"say"}\n', p.BAD_FIELD),
    (b'{"type":"say","text":5}\n', p.BAD_FIELD),
    (b'{"type":"hello","version":true,"name":"a"}\n', p.BAD_FIELD),
    (b'{"type":"hello","version":-1,"name":"a"}\n', p.BAD_FIELD),
    (b'{"type":"say","text":"\\ud800"}\n', p.BAD_FIELD),      # lone surrogate
    (b'{"type":"say","text":"x","label":[1]}\n', p.BAD_FIELD),
    (b'[' * 100000 + b'\n', p.BAD_JSON),                      # deep nesting
])
def test_bad_lines_give_stable_codes_and_stream_continues(line, code):
    d = p.FrameDecoder(p.CLIENT_FRAMES, max_line=1 << 20)
    out = d.feed(line + p.encode(p.Say(text="after")))
    assert isinstance(out[0], p.ProtocolError) and out[0].code == code
    assert out[1] == p.Say(text="after")


def test_unknown_fields_are_ignored():
    (ev,) = p.FrameDecoder(p.CLIENT_FRAMES).feed(b'{"type":"say","text":"x","colour":"red"}\n')
    assert ev == p.Say(text="x")


def test_crlf_and_blank_lines_are_accepted():
    d = p.FrameDecoder(p.CLIENT_FRAMES)
    assert d.feed(b'\r\n\n{"type":"ping"}\r\n') == [p.Ping()]


def test_overlong_line_reported_once_then_skipped_to_newline():
    d = p.FrameDecoder(p.CLIENT_FRAMES, max_line=100)
    out = d.feed(b"x" * 150)
    assert [e.code for e in out] == [p.LINE_TOO_LONG]
    assert d.buffered == 0                      # memory stays bounded
    assert d.feed(b"y" * 5000) == []            # still the same line
    out = d.feed(b"zz\n" + p.encode(p.Ping()))
    assert out == [p.Ping()]


def test_overlong_complete_line_in_one_chunk():
    d = p.FrameDecoder(p.CLIENT_FRAMES, max_line=20)
    out = d.feed(b'{"type":"say","text":"far too long"}\n{"type":"ping"}\n')
    assert out[0].code == p.LINE_TOO_LONG and out[1] == p.Ping()


def test_close_reports_a_truncated_line():
    d = p.FrameDecoder(p.CLIENT_FRAMES)
    d.feed(b'{"type":"sa')
    assert [e.code for e in d.close()] == [p.TRUNCATED]
    assert d.close() == []


def test_direction_matters():
    # a client may not send a server frame
    (err,) = p.FrameDecoder(p.CLIENT_FRAMES).feed(p.encode(p.Ack(label="x")))
    assert err.code == p.UNKNOWN_TYPE


@pytest.mark.parametrize("name, ok", [
    ("alice", True), ("a", True), ("A_b-c.9", True), ("x" * 32, True),
    ("", False), ("x" * 33, False), ("with space", False), ("tab\t", False),
    ("émile", False), ("😀", False), ("a\nb", False), (None, False),
])
def test_name_rules(name, ok):
    assert (p.validate_name(name) is None) is ok


def test_text_rules():
    assert p.text_problem("hi", 10) is None
    assert p.text_problem("line1\nline2\tx", 100) is None
    assert p.text_problem("   ", 10)[0] == p.EMPTY_TEXT
    assert p.text_problem("x" * 11, 10)[0] == p.TEXT_TOO_LONG
    assert p.text_problem("bell\x07", 10)[0] == p.BAD_TEXT
    assert p.text_problem("\x1b[2J", 10)[0] == p.BAD_TEXT


def test_format_ts():
    assert p.format_ts(1_795_000_000_123) == "2026-11-18T11:06:40.123Z"


# --- property-based ----------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=10))
def test_arbitrary_bytes_never_raise(data, cuts):
    d = p.FrameDecoder(p.CLIENT_FRAMES, max_line=512)
    points = sorted(set(c for c in cuts if c <= len(data)))
    chunks = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    for item in feed_all(d, chunks) + d.close():
        assert isinstance(item, (p.Event, p.ProtocolError))
    assert d.buffered <= 512


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "text", "name", "version", "label", "token",
                                        "last_id", "caps", "reason", "x"]),
                       json_values | st.sampled_from(["say", "hello", "me", "users", "ping", "bye"]),
                       max_size=6))
def test_arbitrary_json_objects_never_raise(obj):
    d = p.FrameDecoder(p.CLIENT_FRAMES)
    for item in d.feed(json.dumps(obj).encode() + b"\n"):
        assert isinstance(item, (p.Event, p.ProtocolError))
        if isinstance(item, p.Event):     # valid events re-encode and decode equal
            assert d.feed(p.encode(item)) == [item]


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
labels = st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
ids = st.integers(0, 2**53)
names = st.from_regex(p.NAME_RE, fullmatch=True)
client_events = st.one_of(
    st.builds(p.Hello, version=st.integers(0, 5), name=texts, client=st.none() | texts,
              client_version=st.none() | texts, last_id=st.none() | ids,
              token=st.none() | texts, caps=st.none() | st.lists(texts, max_size=3)),
    st.builds(p.Say, text=texts, label=labels),
    st.builds(p.Me, text=texts, label=labels),
    st.builds(p.UsersRequest, label=labels),
    st.builds(p.Ping, token=st.none() | texts),
    st.builds(p.Pong, token=st.none() | texts),
    st.builds(p.Bye, reason=st.none() | texts, message=st.none() | texts),
)
server_events = st.one_of(
    st.builds(p.Message, id=ids, ts=texts, sender=names, text=texts,
              kind=st.sampled_from(["say", "me"]), label=labels),
    st.builds(p.Join, id=ids, ts=texts, name=names),
    st.builds(p.Leave, id=ids, ts=texts, name=names, reason=st.sampled_from(list(p.LEAVE_REASONS))),
    st.builds(p.UserList, users=st.lists(names, max_size=5), label=labels),
    st.builds(p.Ack, label=texts, id=st.none() | ids),
    st.builds(p.Error, code=texts, message=texts, label=labels,
              retry_after=st.none() | st.floats(0, 100)),
    st.builds(p.Welcome, version=st.integers(0, 5), server=texts, name=names,
              users=st.lists(names, max_size=5), last_id=ids, token=texts,
              limits=st.dictionaries(texts, st.integers(), max_size=3),
              history=st.lists(st.dictionaries(texts, texts, max_size=3), max_size=3),
              truncated=st.none() | st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(client_events, min_size=1, max_size=8), st.integers(1, 64))
def test_client_events_roundtrip_through_any_split(events, step):
    wire = b"".join(p.encode(e) for e in events)
    d = p.FrameDecoder(p.CLIENT_FRAMES, max_line=1 << 20)
    assert feed_all(d, [wire[i:i + step] for i in range(0, len(wire), step)]) == events


@settings(max_examples=300, deadline=None)
@given(st.lists(server_events, min_size=1, max_size=5))
def test_server_events_roundtrip(events):
    wire = b"".join(p.encode(e) for e in events)
    assert p.FrameDecoder(p.SERVER_FRAMES, max_line=1 << 20).feed(wire) == events
