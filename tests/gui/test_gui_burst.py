"""A burst of 1,000 messages: the window keeps answering and keeps only the scrollback."""
import re
import time

from gui_helpers import ARTIFACTS, press, type_text, wait_joined, wait_until

from parley import protocol as p


def test_a_burst_of_1000_messages_keeps_the_window_responsive(gui, make_server, connect):
    srv = make_server(rate=100000, burst=100000)
    bob = connect("bob", srv=srv)
    app = gui("--port", str(srv.address[1]), "--name", "alice", "--scrollback", "500")
    wait_joined(app)
    root = app.root

    # an independent probe: how late does a 10 ms after() timer fire during the burst?
    gaps = []
    last = [time.perf_counter()]
    running = [True]

    def probe():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now
        if running[0]:
            root.after(10, probe)

    root.after(10, probe)
    keys_seen = []
    app.input.text.bind("<KeyPress-z>", lambda e: keys_seen.append(time.perf_counter()), add="+")
    app.max_gap = 0.0
    app._last_tick = None

    started = time.perf_counter()
    bob.send(b"".join(p.encode(p.Say(text=f"burst {i:04d} " + "lorem ipsum " * (i % 7)))
                      for i in range(1000)))
    # type while the burst is being drawn: the key is handled, not queued for seconds
    wait_until(app, lambda: app.events_handled > 50, what="the burst to start arriving")
    type_text(app.input.text, "z")
    wait_until(app, lambda: "burst 0999" in app.chat.messages_text(), timeout=30,
               what="the last message of the burst")
    took = time.perf_counter() - started
    running[0] = False
    probe_gap = max(gaps)
    line = (f"burst of 1000 messages: drawn in {took * 1000:.0f} ms; longest gap between two "
            f"after() ticks: probe {probe_gap * 1000:.1f} ms, session poll "
            f"{app.max_gap * 1000:.1f} ms; longest poll tick {app.max_tick * 1000:.1f} ms")
    print("\n" + line)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "burst.txt").write_text(line + "\n")

    assert keys_seen and app.input.get() == "z"
    assert probe_gap < 5.0 and app.max_gap < 5.0          # generous: no freeze
    # only the scrollback is kept, the newest ones, in order
    assert app.chat.entry_count <= 500
    numbers = [int(n) for n in re.findall(r"burst (\d{4})", app.chat.messages_text())]
    assert numbers == sorted(numbers) and numbers[-1] == 999 and len(numbers) >= 490
    assert "burst 0000" not in app.chat.messages_text()
    press(app.input.text, "Return")                     # still chatting normally afterwards
    assert bob.expect("message", sender="alice").text == "z"
