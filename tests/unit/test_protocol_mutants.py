"""The wire protocol: boundaries, validation and decoder cases that mutation
testing showed the other tests did not pin down (see docs/testing.md)."""
import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Optional

import pytest

from parley import protocol as p


def frame_of_size(n: int) -> bytes:
    """A valid ping line of exactly ``n`` bytes (no newline)."""
    head, tail = b'{"type":"ping","token":"', b'"}'
    return head + b"t" * (n - len(head) - len(tail)) + tail


# --- line length: exactly max_line is accepted, one more is not --------------------------
@pytest.mark.parametrize("split", [False, True])
def test_a_line_of_exactly_max_line_bytes_is_a_frame(split):
    d = p.FrameDecoder(p.CLIENT_FRAMES, max_line=100)
    line = frame_of_size(100)
    if split:                      # the whole line waits in the buffer before its newline
        assert d.feed(line) == []
        out = d.feed(b"\n")
    else:
        out = d.feed(line + b"\n")
    assert out == [p.Ping(token="t" * (100 - 26))]


def test_a_trailing_carriage_return_does_not_count_against_max_line():
    d = p.FrameDecoder(p.CLIENT_FRAMES, max_line=100)
    assert d.feed(frame_of_size(100) + b"\r\n") == [p.Ping(token="t" * 74)]


def test_one_byte_over_max_line_is_line_too_long_and_says_the_limit():
    for data in (frame_of_size(101) + b"\n", frame_of_size(101)):
        d = p.FrameDecoder(p.CLIENT_FRAMES, max_line=100)
        [err] = d.feed(data)
        assert err.code == p.LINE_TOO_LONG and "100" in err.message


def test_the_default_max_line_is_the_servers_default_limit():
    from parley.server.session import Limits
    d = p.FrameDecoder(p.CLIENT_FRAMES)
    n = Limits().max_line
    assert d.feed(frame_of_size(n) + b"\n") == [p.Ping(token="t" * (n - 26))]
    [err] = d.feed(frame_of_size(n + 1) + b"\n")
    assert err.code == p.LINE_TOO_LONG


def test_blank_lines_at_the_start_of_the_buffer_do_not_stall_the_stream():
    d = p.FrameDecoder(p.CLIENT_FRAMES)
    assert d.feed(b"\n\n{\"type\":\"ping\"}\n") == [p.Ping()]
    assert d.feed(b"\n") == []
    assert d.feed(b"{\"type\":\"pong\"}\n") == [p.Pong()]


def test_truncated_line_at_close_has_a_sentence():
    d = p.FrameDecoder(p.CLIENT_FRAMES)
    d.feed(b'{"type":"pi')
    [err] = d.close()
    assert err.code == p.TRUNCATED and err.message


# --- decode errors: a code and a sentence, never a huge echo -----------------------------
@pytest.mark.parametrize("line,code", [
    (b"\xff\xfe", p.BAD_UTF8), (b"{nope", p.BAD_JSON), (b"[1]", p.BAD_FRAME),
    (b'{"type":7}', p.BAD_FRAME), (b'{"type":"say"}', p.BAD_FIELD),
    (b'{"type":"say","text":5}', p.BAD_FIELD), (b'{"type":"dance"}', p.UNKNOWN_TYPE)])
def test_every_decode_error_has_its_code_and_a_sentence(line, code):
    with pytest.raises(p.ProtocolError) as e:
        p.decode_line(line, p.CLIENT_FRAMES)
    assert e.value.code == code
    assert isinstance(e.value.message, str) and len(e.value.message) > 10
    assert str(e.value) == f"{code}: {e.value.message}"


def test_field_errors_name_the_field_and_the_frame():
    with pytest.raises(p.ProtocolError) as e:
        p.decode_line(b'{"type":"say"}', p.CLIENT_FRAMES)
    assert "'text'" in e.value.message and "'say'" in e.value.message
    with pytest.raises(p.ProtocolError) as e:
        p.decode_line(b'{"type":"join","room":1}', p.CLIENT_FRAMES)
    assert "'room'" in e.value.message and "'join'" in e.value.message


def test_an_unknown_type_is_echoed_at_most_40_characters():
    with pytest.raises(p.ProtocolError) as e:
        p.decode_line(b'{"type":"' + b"z" * 500 + b'"}', p.CLIENT_FRAMES)
    assert "z" * 40 in e.value.message and "z" * 41 not in e.value.message


# --- field types --------------------------------------------------------------------------
@pytest.mark.parametrize("retry_after", ["soon", True, [1]])
def test_a_float_field_takes_only_numbers(retry_after):
    with pytest.raises(p.ProtocolError) as e:
        p.event_from_dict({"type": "error", "code": "x", "message": "m",
                           "retry_after": retry_after}, p.SERVER_FRAMES)
    assert e.value.code == p.BAD_FIELD


def test_a_float_field_takes_ints_and_floats():
    for v in (2, 0.5):
        ev = p.event_from_dict({"type": "error", "code": "x", "message": "m",
                                "retry_after": v}, p.SERVER_FRAMES)
        assert ev.retry_after == v


def test_a_list_field_is_not_satisfied_by_a_string():
    with pytest.raises(p.ProtocolError) as e:
        p.event_from_dict({"type": "users", "users": "alice"}, p.SERVER_FRAMES)
    assert e.value.code == p.BAD_FIELD


def test_a_new_frame_is_validated_from_its_declaration():
    """Declaring a frame is all it takes: required fields, defaults, wire names
    (``from``/``with``) and types all come from the dataclass."""
    @dataclass
    class Poke(p.Event):
        type: ClassVar[str] = "poke"
        sender: str = p._wire("from")                # required, sent as "from"
        count: int = 0
        peer: Optional[str] = p._wire("with", None)  # optional, sent as "with"
        tags: list = dataclasses.field(default_factory=list)

    reg = {"poke": Poke}
    ev = p.event_from_dict({"type": "poke", "from": "bob", "with": "amy"}, reg)
    assert (ev.sender, ev.peer, ev.count, ev.tags) == ("bob", "amy", 0, [])
    assert ev.to_dict() == {"type": "poke", "from": "bob", "count": 0, "with": "amy", "tags": []}
    assert p.event_from_dict({"type": "poke", "from": "bob"}, reg).peer is None
    for missing in ({"type": "poke"}, {"type": "poke", "sender": "bob"}):
        with pytest.raises(p.ProtocolError) as e:
            p.event_from_dict(missing, reg)
        assert e.value.code == p.BAD_FIELD and "'from'" in e.value.message
    with pytest.raises(p.ProtocolError):
        p.event_from_dict({"type": "poke", "from": "bob", "count": "2"}, reg)


def test_an_unsupported_field_type_is_a_programming_error_that_names_it():
    @dataclass
    class Odd(p.Event):
        type: ClassVar[str] = "odd"
        things: set

    with pytest.raises(TypeError, match="set"):
        p.event_from_dict({"type": "odd", "things": [1]}, {"odd": Odd})


# --- encoding -----------------------------------------------------------------------------
def test_encode_writes_utf8_not_ascii_escapes():
    line = p.encode(p.Say(text="héllo ✓"))
    assert line == '{"type":"say","text":"héllo ✓"}\n'.encode("utf-8")


# --- ProtocolError as a value ----------------------------------------------------------------
def test_protocol_errors_compare_and_hash_by_code_and_message():
    a, b = p.ProtocolError("c", "m"), p.ProtocolError("c", "m")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != p.ProtocolError("c", "other") and a != p.ProtocolError("d", "m")
    assert len({a, p.ProtocolError("c", "other")}) == 2
    assert hash(a) != hash(p.ProtocolError("c", "other"))
    assert a != ("c", "m") and a.message == "m" and str(a) == "c: m"


# --- names, rooms, conversations --------------------------------------------------------------
def test_room_name_length_boundary():
    assert p.validate_room("#" + "a" * p.ROOM_MAX) is None
    assert p.validate_room("#" + "a" * (p.ROOM_MAX + 1)) is not None


@pytest.mark.parametrize("value", [5, None, "", ["#a"]])
def test_a_room_that_is_not_a_string_is_refused_not_raised(value):
    assert p.validate_room(value) == "a room name is required"


@pytest.mark.parametrize("value", [5, None, ""])
def test_a_name_that_is_not_a_string_is_refused_not_raised(value):
    assert p.validate_name(value) == "a name is required"


def test_conversation_of_wire_dicts():
    assert p.conversation({"type": "message", "id": 1, "from": "bob", "text": "x"}) == p.GENERAL
    assert p.conversation({"type": "join", "id": 1, "name": "bob"}) == p.GENERAL
    assert p.conversation({"type": "leave", "id": 1, "name": "bob"}) == p.GENERAL
    assert p.conversation({"type": "ack", "label": "x"}) is None
    assert p.conversation({"type": "message", "room": "#py"}) == "#py"
    assert p.conversation({"type": "message", "from": "bob", "to": "amy"}, me="amy") == "@bob"
    assert p.conversation({"type": "message", "from": "amy", "to": "bob"}, me="AMY") == "@bob"


def test_conversation_of_events():
    m = p.Message(id=1, ts="t", sender="bob", text="x")
    assert p.conversation(m) == p.GENERAL
    assert p.conversation(p.Leave(id=2, ts="t", name="bob")) == p.GENERAL
    assert p.conversation(p.Message(id=1, ts="t", sender="bob", text="x", to="amy"), "amy") == "@bob"


def test_a_direct_message_without_sender_and_without_me_belongs_to_its_recipient():
    assert p.conversation({"type": "message", "to": "bob"}) == "@bob"


def test_a_frame_class_is_inspected_once_not_on_every_line():
    """Validation reads each class's fields and type hints once (decoding runs
    for every line the server receives)."""
    spec = p._spec(p.Say)
    assert p._spec(p.Say) is spec
    p.decode_line(b'{"type":"say","text":"hi"}', p.CLIENT_FRAMES)
    assert p._spec(p.Say) is spec
    assert spec["text"] == ("text", str, True) and spec["room"][2] is False

    @dataclass
    class Nudge(p.Event):
        type: ClassVar[str] = "nudge"
        to: str

    first = p._spec(Nudge)
    assert first == {"to": ("to", str, True)} and p._spec(Nudge) is first


# --- field checks made once per class; labels kept on decode errors ------------------
WELCOME = {"type": "welcome", "version": 1, "server": "s", "name": "amy", "users": ["amy"],
           "last_id": 0, "token": "t", "limits": {}}


@pytest.mark.parametrize("field, value, ok", [
    ("truncated", True, True), ("truncated", False, True), ("truncated", "yes", False),
    ("truncated", 1, False), ("users", [], True), ("users", ["a", "b"], True),
    ("users", "amy", False), ("users", ["a", 1], False), ("users", [None], False),
    ("limits", [], False), ("history", [{"id": 1}], True), ("history", [1], False),
    ("caps", ["rooms"], True), ("caps", "rooms", False)])
def test_bool_list_and_dict_fields_are_checked(field, value, ok):
    frame = dict(WELCOME, **{field: value})
    if ok:
        assert getattr(p.event_from_dict(frame, p.SERVER_FRAMES), field) == value
    else:
        with pytest.raises(p.ProtocolError) as e:
            p.event_from_dict(frame, p.SERVER_FRAMES)
        assert e.value.code == p.BAD_FIELD and f"'{field}'" in e.value.message


def test_a_bare_list_field_takes_any_list_and_only_a_list():
    @dataclass
    class Tagged(p.Event):
        type: ClassVar[str] = "tagged"
        tags: list = dataclasses.field(default_factory=list)

    reg = {"tagged": Tagged}
    assert p.event_from_dict({"type": "tagged", "tags": [1, "x", None]}, reg).tags == [1, "x", None]
    with pytest.raises(p.ProtocolError):
        p.event_from_dict({"type": "tagged", "tags": "x"}, reg)


def test_each_class_gets_its_checks_once():
    plan = p._plan(p.Say)
    assert p._PLANS[p.Say] is plan and p._plan(p.Say) is plan
    assert [(key, name, required) for key, name, _ok, required in plan] == [
        (key, name, required) for key, (name, _hint, required) in p._spec(p.Say).items()]
    assert p._plan(p.Me) is not plan


@pytest.mark.parametrize("line, code", [
    (b'{"type":5,"label":"L1"}', p.BAD_FRAME),
    (b'{"label":"L1"}', p.BAD_FRAME),
    (b'{"type":"dance","label":"L1"}', p.UNKNOWN_TYPE),
    (b'{"type":"say","label":"L1"}', p.BAD_FIELD),
    (b'{"type":"say","text":5,"label":"L1"}', p.BAD_FIELD)])
def test_a_decode_error_keeps_the_frames_label(line, code):
    with pytest.raises(p.ProtocolError) as e:
        p.decode_line(line, p.CLIENT_FRAMES)
    assert (e.value.code, e.value.label) == (code, "L1")


@pytest.mark.parametrize("label", [b'5', b'["L1"]', b'null', b'"\\ud800"'])
def test_a_label_that_is_no_label_is_not_echoed(label):
    with pytest.raises(p.ProtocolError) as e:
        p.decode_line(b'{"type":"say","text":5,"label":' + label + b'}', p.CLIENT_FRAMES)
    assert e.value.code == p.BAD_FIELD and e.value.label is None


def test_a_protocol_error_without_a_label_has_none():
    assert p.ProtocolError(p.BAD_JSON, "x").label is None
    assert p.ProtocolError(p.BAD_JSON, "x", "L").label == "L"


@pytest.mark.parametrize("hint, good, bad", [
    (bool, [True, False], [1, 0, "true", None]),
    (list, [[], [1, "x"]], ["x", {}, None]),
    (dict, [{}, {"a": 1}], [[], "x"]),
    (str, ["", "é", "☃"], [1, b"x", "\ud800", None]),
    (int, [0, 7], [-1, 1.5, True, "1"]),
    (float, [0, 1.5, -2], [True, "1.5", None]),
    (list[str], [[], ["a", "b"]], [["a", 1], [None], "ab", ("a",)]),
    (list[dict], [[{}], []], [[[]], [1]]),
    (Optional[int], [3], ["3", -1])])
def test_a_checker_accepts_what_its_hint_allows_and_nothing_else(hint, good, bad):
    """(Checkers are made once per class and cached: tested here directly.)"""
    ok = p._checker(hint)
    assert [ok(v) for v in good] == [True] * len(good)
    assert [ok(v) for v in bad] == [False] * len(bad)


def test_a_checker_for_an_unsupported_hint_is_a_programming_error():
    with pytest.raises(TypeError, match="set"):
        p._checker(set)
