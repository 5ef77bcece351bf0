"""The web client in a real browser (Debian's Chromium, headless), against a
real Parley server reached through the test bridge (tests/web/bridge.py).

Few tests, each covering a whole story, because a browser is slow to start on
a loaded machine.  Everything is asserted; the screenshots in docs/screenshots/
are taken on the way.
"""
import datetime
import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from rawclient import RawClient
from parley.client.core import name_colour_index

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
INJECTION = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
# The browser logs a refused WebSocket as a console error: expected while the server is down.
NETWORK_NOISE = re.compile(r"WebSocket connection to .* failed|ERR_(CONNECTION_REFUSED|INTERNET_DISCONNECTED)"
                           r"|Failed to load resource")


# --- helpers ------------------------------------------------------------------------------
def login(page, url, name):
    page.goto(url)
    page.fill("#login-name", name)
    page.press("#login-name", "Enter")
    wait_online(page)


def wait_online(page):
    page.wait_for_selector("#app:not([hidden])")
    page.wait_for_selector("#banner", state="hidden")


def texts(page, pending=False):
    """The text of every chat message shown (not joins, not pending ones)."""
    sel = "#messages li.msg" + ("" if pending else ":not(.pending)") + " .text"
    return page.eval_on_selector_all(sel, "els => els.map(e => e.textContent)")


def wait_text(page, text, timeout=10_000):
    page.wait_for_function(
        "t => [...document.querySelectorAll('#messages li.msg:not(.pending) .text')]"
        ".some(e => e.textContent.includes(t))", arg=text, timeout=timeout)


def send(page, text):
    page.fill("#input", text)
    page.press("#input", "Enter")


def no_pending(page):
    page.wait_for_function("() => !document.querySelector('#messages li.pending')")


def expect_message(client, text, **fields):
    """The next message with this text; its other fields must match too."""
    ev = client.expect("message", timeout=10, text=text)
    assert all(getattr(ev, k) == v for k, v in fields.items()), ev
    return ev


# --- 1. the conversation ---------------------------------------------------------------------
def test_two_browsers_and_a_terminal_client_in_one_conversation(web, browser, watch):
    ctx_a = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id="Asia/Kolkata")
    ctx_b = browser.new_context(viewport={"width": 1100, "height": 760})
    alice = watch.page(ctx_a)
    sizes = []
    alice.on("response", lambda r: sizes.append(len(r.body())) if r.url.startswith(web.url) else None)
    login(alice, web.url, "alice")
    first_load = sum(sizes)
    assert 10_000 < first_load < 200_000, first_load        # the whole first load, every file

    bob = watch.page(ctx_b)
    login(bob, web.url, "bob")
    carol = RawClient(web.address)
    carol.hello("carol", rooms=True)

    # one conversation, three clients, one order
    send(alice, "one")
    expect_message(carol, "one", sender="alice")
    carol.send({"type": "say", "text": "two", "label": "c-1"})
    carol.answer("c-1")
    wait_text(bob, "two")
    send(bob, "three")
    expect_message(carol, "three", sender="bob")
    for page in (alice, bob):
        wait_text(page, "three")
        assert [t for t in texts(page) if t in ("one", "two", "three")] == ["one", "two", "three"]
    no_pending(alice)
    no_pending(bob)

    # /me, an action
    send(alice, "/me waves 👋")
    expect_message(carol, "waves 👋", kind="me")
    wait_text(bob, "waves")
    assert bob.locator("#messages li.action").last.inner_text().replace("\n", " ").endswith("* alice waves 👋")

    # HTML and script in a message are text, and nothing runs
    carol.send({"type": "say", "text": INJECTION, "label": "c-2"})
    carol.answer("c-2")
    for page in (alice, bob):
        wait_text(page, "onerror")
        assert texts(page)[-1] == INJECTION
        assert page.locator("#messages img, #messages script").count() == 0
        assert page.evaluate("window.__pwned") is None

    # links: clickable, in a new tab, no opener, no referrer
    carol.send({"type": "say", "text": "docs at https://example.org/a?b=1. ok", "label": "c-3"})
    carol.answer("c-3")
    link = alice.locator('#messages a[href="https://example.org/a?b=1"]')
    link.wait_for()
    assert link.get_attribute("target") == "_blank"
    assert link.get_attribute("rel") == "noopener noreferrer"

    # name colours are those of the other clients (core.name_colour_index)
    names = ["alice", "bob", "carol", "Zed.x", "UPPER_case-9"]
    js = alice.evaluate("names => import('./util.js').then(m => names.map(n => m.nameColourIndex(n)))", names)
    assert js == [name_colour_index(n) for n in names]
    who = alice.locator("#messages li.msg:not(.action) .who", has_text="carol").first
    assert f"nc{name_colour_index('carol')}" in who.get_attribute("class").split()

    # timestamps in the browser's local time (Asia/Kolkata: UTC+5:30)
    t = alice.locator("#messages li.msg time").last
    utc = datetime.datetime.fromisoformat(t.get_attribute("datetime").replace("Z", "+00:00"))
    assert t.inner_text() == utc.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%H:%M")

    # a direct message: a badge in the sidebar, stronger than a plain unread
    carol.send({"type": "say", "text": "psst alice", "to": "alice", "label": "c-4"})
    carol.answer("c-4")
    dm = alice.locator('#dm-list button[data-key="@carol"]')
    dm.wait_for()
    assert dm.locator(".badge.mention").inner_text() == "1"
    assert alice.title() == "(1) Parley"
    dm.click()
    wait_text(alice, "psst alice")
    assert alice.locator("#conv-title").inner_text() == "@carol"
    assert dm.locator(".badge").count() == 0
    send(alice, "hi carol")
    expect_message(carol, "hi carol", to="carol")

    # rooms: /join, members, /topic, a mention elsewhere, /part
    send(alice, "/join #python")
    alice.locator('#room-list button[data-key="#python"][aria-current]').wait_for()
    assert alice.locator("#conv-title").inner_text() == "#python"
    carol.send({"type": "join", "room": "#python", "label": "c-5"})
    carol.expect("room", room="#python")
    alice.locator('#member-list button[data-name="carol"]').wait_for()
    send(alice, "/topic pip and friends")
    alice.wait_for_function("() => document.querySelector('#conv-topic').textContent === 'pip and friends'")
    carol.expect("topic", timeout=10, topic="pip and friends")
    alice.click('#room-list button[data-key="#general"]')
    carol.send({"type": "say", "text": "@alice look at this", "room": "#python", "label": "c-6"})
    carol.answer("c-6")
    badge = alice.locator('#room-list button[data-key="#python"] .badge.mention')
    badge.wait_for()
    assert badge.inner_text() == "1"
    # a plain message elsewhere gives a plain badge
    bob.click("#add-room")
    bob.fill("#room-input", "#python")
    bob.press("#room-input", "Enter")
    bob.locator('#room-list button[data-key="#python"][aria-current]').wait_for()
    bob.click('#room-list button[data-key="#general"]')
    carol.send({"type": "say", "text": "no mention here", "room": "#python", "label": "c-7"})
    carol.answer("c-7")
    bob.locator('#room-list button[data-key="#python"] .badge:not(.mention)').wait_for()

    # search
    alice.fill("#search-input", "three")
    alice.press("#search-input", "Enter")
    result = alice.locator("#result-list button.result")
    result.first.wait_for()
    assert "three" in result.first.inner_text() and "bob" in result.first.inner_text()
    alice.keyboard.press("Escape")
    assert alice.locator("#results").is_hidden()

    # /help is shown locally; an unknown command says so
    send(alice, "/help")
    alice.locator("#messages li.notice", has_text="/join <#room>").wait_for()
    send(alice, "/frobnicate")
    alice.locator("#messages li.notice.error", has_text="Unknown command /frobnicate").wait_for()

    alice.click('#room-list button[data-key="#python"]')
    wait_text(alice, "look at this")
    alice.locator("#messages li.mention").wait_for()
    send(alice, "thanks 🙏 see https://docs.python.org/3/")
    expect_message(carol, "thanks 🙏 see https://docs.python.org/3/", room="#python")
    no_pending(alice)
    SHOTS.mkdir(parents=True, exist_ok=True)
    alice.screenshot(path=str(SHOTS / "web-desktop.png"))

    send(alice, "/part")
    alice.locator('#room-list button[data-key="#python"]').wait_for(state="detached")
    assert alice.locator("#conv-title").inner_text() == "#general"
    carol.expect("leave", timeout=10, name="alice", room="#python")

    # a reload resumes the session: no login, the same name, the history is there
    alice.reload()
    wait_online(alice)
    assert alice.locator("#me").inner_text() == "alice"
    wait_text(alice, "three")
    carol.close()
    ctx_a.close()
    ctx_b.close()
