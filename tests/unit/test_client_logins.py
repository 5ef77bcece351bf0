"""The login tokens the terminal and desktop clients keep between runs."""
import json
import os
import stat
import sys

import pytest

from parley.client.logins import LoginStore


def test_keep_find_and_forget_by_server_and_name(tmp_path):
    path = tmp_path / "cfg" / "logins.json"
    st = LoginStore(str(path))
    assert st.get("127.0.0.1", 8888, "alice") is None          # no file yet
    st.put("127.0.0.1", 8888, "Alice", "tok-a")
    st.put("Example.org", 8889, "alice", "tok-b")
    st.put("::1", 8888, "bob", "tok-c")
    assert st.get("127.0.0.1", 8888, "ALICE") == "tok-a"        # the name in any case
    assert st.get("example.org", 8889, "alice") == "tok-b"     # the host in any case
    assert st.get("127.0.0.1", 8889, "alice") is None          # another port: another server
    assert st.get("::1", 8888, "bob") == "tok-c"
    assert json.loads(path.read_text()) == {
        "127.0.0.1:8888 alice": "tok-a", "example.org:8889 alice": "tok-b",
        "[::1]:8888 bob": "tok-c"}
    st.forget("127.0.0.1", 8888, "alice")
    assert st.get("127.0.0.1", 8888, "alice") is None
    assert st.get("example.org", 8889, "alice") == "tok-b"
    st.forget("127.0.0.1", 8888, "nobody")                     # nothing to forget: fine


@pytest.mark.skipif(sys.platform == "win32", reason="file modes")
def test_only_its_owner_can_read_it(tmp_path):
    path = tmp_path / "logins.json"
    LoginStore(str(path)).put("h", 1, "a", "secret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_damaged_file_is_no_logins_and_is_rewritten(tmp_path):
    path = tmp_path / "logins.json"
    path.write_text("{not json")
    st = LoginStore(str(path))
    assert st.get("h", 1, "a") is None
    st.put("h", 1, "a", "t")
    assert st.get("h", 1, "a") == "t"
    path.write_text('["a list"]')
    assert st.get("h", 1, "a") is None
    path.write_text('{"h:1 a": 5}')                         # not a token
    assert st.get("h", 1, "a") is None
