"""The web client in a real browser (Debian's Chromium, headless), against a
real Parley server reached through the test bridge (tests/web/bridge.py).

Few tests, each covering a whole story, because a browser is slow to start on
a loaded machine.  Everything is asserted; screenshots are taken on the way
(into tests/web/artifacts/; docs/screenshots/ holds copies that were looked at).
"""
import datetime
import os
import re
import urllib.parse
from pathlib import Path
from zoneinfo import ZoneInfo

from rawclient import RawClient
from parley.client.core import name_colour_index
from parley.client.core import parse as core_parse

ROOT = Path(__file__).resolve().parents[2]
# screenshots of each run (git-ignored); the ones in docs/screenshots/ are copies
# of a run that was looked at, refreshed by hand: PARLEY_SHOTS=docs/screenshots
SHOTS = ROOT / os.environ.get("PARLEY_SHOTS", "tests/web/artifacts")
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
    # even everything the service worker keeps (every file of the client) is under 200 KB
    assert sum(f.stat().st_size for f in (ROOT / "src" / "parley" / "web").iterdir()) < 200_000

    bob = watch.page(ctx_b)
    bob.goto(web.url)
    bob.fill("#login-name", "ALICE")                      # taken, ignoring case
    bob.press("#login-name", "Enter")
    bob.locator("#login-error", has_text="taken").wait_for()
    assert bob.locator("#app").is_hidden()
    bob.fill("#login-name", "bob")
    bob.press("#login-name", "Enter")
    wait_online(bob)
    assert alice.locator("#messages li.day").first.inner_text() == "Today"
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
    # the same command parser as the other clients (core.parse)
    lines = ["/join python", "/join #Py.thon", "/part", "/part #x", "/msg bob hi there", "/msg @bob",
             "/me waves", "/topic -", "/topic new topic", "/topic", "//slash", "hello", "/frob",
             "/w @bob", '/search "a b"', "/leave", "/dm bob yo", "/rooms", "/help"]
    js = alice.evaluate("""lines => import('./util.js').then(m => lines.map(l => {
        const c = m.parse(l, '#general'); return [c.name, c.target ?? null, c.text ?? null]; }))""", lines)
    py = []
    for line in lines:
        c = core_parse(line, current="#general")
        py.append([c.name, c.target, c.text])
    assert js == py
    days = alice.evaluate("""() => import('./util.js').then(m => [
        m.dayLabel(new Date().toISOString()), m.dayLabel(new Date(Date.now() - 86400e3).toISOString()),
        m.dayLabel('2026-03-02T12:00:00.000Z', new Date('2026-11-25T12:00:00Z'))])""")
    assert days[:2] == ["Today", "Yesterday"] and "2026" in days[2] and "Mar" in days[2], days
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
    SHOTS.mkdir(parents=True, exist_ok=True)
    alice.screenshot(path=str(SHOTS / "web-desktop.png"))
    # a plain message elsewhere gives a plain badge
    bob.click("#add-room")
    bob.wait_for_function("() => [...document.querySelectorAll('#room-names option')].some(o => o.value === '#python')")
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
    alice.fill("#search-input", "psst")                 # a result elsewhere: opens it, shows it
    alice.press("#search-input", "Enter")
    result.first.wait_for()
    alice.wait_for_function("() => document.querySelector('#result-list button.result')?.dataset.key === '@carol'")
    result.first.click()
    assert alice.locator("#conv-title").inner_text() == "@carol"
    alice.locator("#messages li.flash", has_text="psst alice").wait_for()
    alice.click('#room-list button[data-key="#general"]')

    # /help is shown locally; an unknown command says so
    send(alice, "/help")
    alice.locator("#messages li.notice", has_text="/join <#room>").wait_for()
    send(alice, "/rooms")
    alice.locator("#messages li.notice", has_text="#python (joined)").wait_for()
    send(alice, "/frobnicate")
    alice.locator("#messages li.notice.error", has_text="Unknown command /frobnicate").wait_for()

    alice.click('#room-list button[data-key="#python"]')
    wait_text(alice, "look at this")
    alice.locator("#messages li.mention").wait_for()
    # a "New" line above what came since alice last looked at #python
    after_marker = alice.locator("#messages li.new-marker + li")
    assert "look at this" in after_marker.inner_text()
    send(alice, "thanks 🙏 see https://docs.python.org/3/")
    expect_message(carol, "thanks 🙏 see https://docs.python.org/3/", room="#python")
    no_pending(alice)

    send(alice, "/part")
    alice.locator('#room-list button[data-key="#python"]').wait_for(state="detached")
    assert alice.locator("#conv-title").inner_text() == "#general"
    carol.expect("leave", timeout=10, name="alice", room="#python")

    # a message the server refuses says why; Retry sends it again, Discard forgets it
    send(alice, "/msg dave are you there?")
    failed = alice.locator("#messages li.failed")
    failed.wait_for()
    assert "not sent" in failed.inner_text() and "dave" in failed.inner_text()
    dave = RawClient(web.address)
    dave.hello("dave", rooms=True)
    failed.locator("button.retry").click()
    expect_message(dave, "are you there?", sender="alice")
    no_pending(alice)
    dave.close()
    send(alice, "/msg nobody hello?")
    failed.wait_for()
    failed.locator("button.discard").click()
    assert alice.locator("#messages li.pending").count() == 0
    assert alice.locator('#dm-list button[data-key="@nobody"]').count() == 0   # nothing left there

    # a reload resumes the session: no login, the same name, the history is there
    alice.reload()
    wait_online(alice)
    assert alice.locator("#me").inner_text() == "alice"
    wait_text(alice, "three")
    carol.close()
    ctx_a.close()
    ctx_b.close()


# --- 2. the phone ----------------------------------------------------------------------------
def test_phone_drawer_input_touch_targets_and_theme(web, browser, watch):
    ctx = browser.new_context(**browser.devices["Pixel 7"])
    pat = watch.page(ctx)
    login(pat, web.url, "pat")
    carol = RawClient(web.address)
    carol.hello("carol", rooms=True)
    for text in ("morning all ☀️", "anyone tried the new build?", "pat: yes, works on my phone 📱"):
        carol.send({"type": "say", "text": text, "label": text[:8]})
    wait_text(pat, "works on my phone")
    send(pat, "same here, from the bus 🚌")
    expect_message(carol, "same here, from the bus 🚌", sender="pat")
    no_pending(pat)

    vw, vh = pat.viewport_size["width"], pat.viewport_size["height"]
    assert vw < 420
    # the sidebar is a drawer, closed; the composer is at the bottom, on screen
    assert pat.locator("#sidebar").is_hidden()
    box = pat.locator("#input").bounding_box()
    assert box["y"] + box["height"] <= vh and box["y"] > vh * 0.75, box
    assert pat.evaluate("document.documentElement.scrollWidth") <= vw     # nothing sticks out sideways
    SHOTS.mkdir(parents=True, exist_ok=True)
    pat.screenshot(path=str(SHOTS / "web-phone.png"))

    # installable: a manifest (standalone, theme colour, PNG and SVG icons that load)
    manifest = pat.evaluate("""async () => {
        const href = document.querySelector('link[rel=manifest]').href;
        const m = await (await fetch(href)).json();
        const icons = await Promise.all(m.icons.map(async (i) => {
            const r = await fetch(new URL(i.src, href));
            return [i.sizes, r.status, r.headers.get('content-type')];
        }));
        return { display: m.display, theme: m.theme_color, name: m.name, icons };
    }""")
    assert manifest["display"] == "standalone" and manifest["name"] == "Parley" and manifest["theme"]
    assert ["192x192", 200, "image/png"] in manifest["icons"] and ["512x512", 200, "image/png"] in manifest["icons"]
    assert ["any", 200, "image/svg+xml"] in manifest["icons"]

    # every visible button is a comfortable touch target
    def small_targets():
        return pat.eval_on_selector_all(
            "button, input, textarea",
            "els => els.filter(e => e.offsetParent !== null).map(e => [e.id || e.className, "
            "e.getBoundingClientRect().width, e.getBoundingClientRect().height])"
            ".filter(([, w, h]) => w < 44 || h < 44)")
    assert small_targets() == []

    # the menu button opens the drawer; Escape closes it and gives focus back
    menu = pat.locator("#menu-btn")
    menu.click()
    pat.locator("#sidebar").wait_for(state="visible")
    assert menu.get_attribute("aria-expanded") == "true"
    assert small_targets() == []
    assert pat.evaluate("document.querySelector('.main').inert")          # Tab stays in the drawer
    pat.keyboard.press("Escape")
    pat.locator("#sidebar").wait_for(state="hidden")
    assert menu.get_attribute("aria-expanded") == "false"
    assert pat.evaluate("document.activeElement.id") == "menu-btn"
    assert not pat.evaluate("document.querySelector('.main').inert")
    # the scrim closes it too, and picking a conversation closes it
    menu.click()
    pat.locator("#scrim").click(position={"x": vw - 10, "y": vh // 2})
    pat.locator("#sidebar").wait_for(state="hidden")
    menu.click()
    pat.click("#add-room")
    pat.fill("#room-input", "bus")
    pat.press("#room-input", "Enter")
    pat.locator("#sidebar").wait_for(state="hidden")
    pat.wait_for_function("() => document.querySelector('#conv-title').textContent === '#bus'")
    menu.click()
    pat.locator("#sidebar").wait_for(state="visible")
    pat.wait_for_timeout(300)                           # the slide-in transition
    pat.screenshot(path=str(SHOTS / "web-phone-drawer.png"))
    pat.click('#room-list button[data-key="#general"]')
    pat.locator("#sidebar").wait_for(state="hidden")
    assert pat.locator("#conv-title").inner_text() == "#general"

    # light theme and an accent colour, remembered across a reload
    menu.click()
    pat.click("#settings-btn")
    pat.check('input[name="theme"][value="light"]')
    pat.fill("#accent", "#e0457b")
    pat.click("#settings button[value=close]")
    assert pat.evaluate("document.documentElement.dataset.theme") == "light"
    pat.reload()
    wait_online(pat)
    assert pat.evaluate("document.documentElement.dataset.theme") == "light"
    bg = pat.evaluate("getComputedStyle(document.querySelector('#send')).backgroundColor")
    assert bg == "rgb(224, 69, 123)", bg
    surface = pat.evaluate("getComputedStyle(document.querySelector('.main')).backgroundColor")
    assert surface == "rgb(255, 255, 255)", surface
    pat.screenshot(path=str(SHOTS / "web-phone-light.png"))
    carol.close()
    ctx.close()


# --- 3. reconnecting --------------------------------------------------------------------------
class Line:
    """The page's WebSockets, under the test's control (a Playwright route in the
    browser, so it works whoever serves /ws): ``refuse`` new ones, go ``deaf``
    (the server's frames are dropped on the way to the page), ``cut()`` them."""

    def __init__(self, page):
        self.refuse = False
        self.deaf = False
        self.open = []
        page.route_web_socket(re.compile(r"/ws$"), self._route)

    def _route(self, ws):
        if self.refuse:
            ws.close()
            return
        server = ws.connect_to_server()
        self.open.append((ws, server))
        if self.deaf:
            server.on_message(lambda message: None)

    def go_deaf(self):
        self.deaf = True
        for _, server in self.open:
            server.on_message(lambda message: None)

    def cut(self):
        for ws, server in self.open:
            ws.close()
            server.close()
        self.open = []


def test_reconnect_after_server_restart_catches_up_and_sends_queued_once(web, browser, watch):
    watch.allow(NETWORK_NOISE)
    ctx = browser.new_context(viewport={"width": 1000, "height": 700})
    alice = watch.page(ctx)
    line = Line(alice)
    login(alice, web.url, "alice")
    carol = RawClient(web.address)
    carol.hello("carol", rooms=True)
    send(alice, "before the restart")
    expect_message(carol, "before the restart")
    no_pending(alice)

    # 1. a message the server stores whose ack never reaches the browser
    line.go_deaf()
    send(alice, "acked but not heard")
    expect_message(carol, "acked but not heard", sender="alice")
    alice.wait_for_timeout(300)
    assert texts(alice, pending=True)[-1].startswith("acked but not heard")
    assert alice.locator("#messages li.pending").count() == 1

    # 2. the server goes away (and the page cannot reconnect for now)
    line.refuse = True
    web.stop_server()
    line.cut()
    carol.close()
    alice.locator("#banner", has_text="Reconnecting").wait_for()
    send(alice, "typed while offline")
    assert alice.locator("#messages li.pending").count() == 2

    # 3. it comes back with its history, on the same address; someone speaks
    web.start_server()
    line.deaf = False
    dave = RawClient(web.address)
    dave.hello("dave", rooms=True)
    dave.send({"type": "say", "text": "you missed this", "label": "d-1"})
    dave.answer("d-1")
    line.refuse = False

    # 4. alice is back by herself: caught up, the queue sent exactly once
    wait_online(alice)
    wait_text(alice, "you missed this")
    expect_message(dave, "typed while offline", sender="alice")
    no_pending(alice)
    shown = texts(alice)
    for text in ("before the restart", "acked but not heard", "typed while offline", "you missed this"):
        assert shown.count(text) == 1, (text, shown)
    assert shown.index("you missed this") < shown.index("typed while offline")
    again = [ev.text for ev in dave.frames(1.0) if ev.type == "message"]
    assert "acked but not heard" not in again and "typed while offline" not in again, again
    history = dave.request({"type": "history", "room": "#general", "limit": 50}, "history")
    stored = [m["text"] for m in history.messages if m["type"] == "message"]
    assert stored.count("acked but not heard") == 1 and stored.count("typed while offline") == 1, stored
    dave.close()
    ctx.close()


# --- 4. history ----------------------------------------------------------------------------
def test_history_loads_as_you_scroll_up(web, browser, watch):
    carol = RawClient(web.address)
    carol.hello("carol", rooms=True)
    for i in range(1, 131):
        carol.send({"type": "say", "text": f"line {i}", "label": f"h{i}"})
    for i in range(1, 131):
        carol.answer(f"h{i}")
    ctx = browser.new_context(viewport={"width": 1000, "height": 700})
    alice = watch.page(ctx)
    login(alice, web.url, "alice")
    wait_text(alice, "line 130")
    assert "line 1" not in texts(alice)               # a newcomer gets the last few
    for _ in range(20):
        if "line 1" in texts(alice):
            break
        alice.eval_on_selector("#log", "e => e.scrollTop = 0")
        alice.wait_for_timeout(300)
    shown = [t for t in texts(alice) if t.startswith("line ")]
    assert shown == [f"line {i}" for i in range(1, 131)]
    alice.locator("#log-top", has_text="beginning of #general").wait_for()
    # scrolled up, a new message does not pull the view down: a button offers it
    assert alice.locator("#jump").is_hidden()
    top = alice.eval_on_selector("#log", "e => e.scrollTop")
    carol.send({"type": "say", "text": "fresh one", "label": "f-1"})
    carol.answer("f-1")
    alice.locator("#jump").wait_for()
    assert alice.eval_on_selector("#log", "e => e.scrollTop") == top
    alice.click("#jump")
    alice.wait_for_function("() => { const l = document.querySelector('#log'); "
                            "return l.scrollHeight - l.scrollTop - l.clientHeight < 40; }")
    assert alice.locator("#jump").is_hidden()
    carol.close()
    ctx.close()


# --- 5. notifications, accessibility, the offline shell --------------------------------
# The tab's visibility and the Notification API, under the test's control: headless
# Chromium has no visible desktop to hide a tab from or show a notification on.
HIDDEN_TAB = """
window.__hidden = false;
window.__notes = [];
Object.defineProperty(Document.prototype, "hidden", { get: () => window.__hidden, configurable: true });
window.Notification = class {
  constructor(title, options) {
    if (window.__android) throw new TypeError("Illegal constructor");   // as on Android
    window.__notes.push([title, options && options.body]);
  }
  close() {}
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
};
"""


def test_notifications_title_accessibility_and_offline_shell(web, browser, watch):
    watch.allow(NETWORK_NOISE)
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script(HIDDEN_TAB)
    alice = watch.page(ctx)
    login(alice, web.url, "alice")
    carol = RawClient(web.address)
    carol.hello("carol", rooms=True)

    # ARIA: the log is a polite live region, the sidebar a navigation with lists
    log = alice.locator("#log")
    assert log.get_attribute("role") == "log" and log.get_attribute("aria-live") == "polite"
    assert alice.locator("nav#sidebar[aria-label] ul.conv-list").count() == 2
    # keyboard: Tab from the top reaches the sidebar first, with a visible focus ring
    alice.evaluate("document.activeElement.blur()")
    alice.keyboard.press("Tab")
    assert alice.evaluate("document.activeElement.id") == "add-room"
    assert alice.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    alice.keyboard.press("Enter")                       # opens the "join a room" field
    assert alice.evaluate("document.activeElement.id") == "room-input"
    alice.keyboard.press("Escape")
    assert alice.evaluate("document.activeElement.id") == "add-room"

    # the tab is visible: a mention shows, nothing pops up
    carol.send({"type": "say", "text": "alice: seen this?", "label": "v-1"})
    carol.answer("v-1")
    wait_text(alice, "seen this?")
    assert alice.evaluate("window.__notes") == []
    # the tab is hidden: a mention and a DM notify, a plain message only counts
    alice.evaluate("window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'))")
    for frame in ({"text": "lunch anyone?"}, {"text": "alice, are you there?"},
                  {"text": "just between us", "to": "alice"}):
        carol.send({"type": "say", "label": frame["text"][:6], **frame})
        carol.answer(frame["text"][:6])
    alice.wait_for_function("() => window.__notes.length >= 2")
    alice.wait_for_timeout(300)
    assert alice.evaluate("window.__notes") == [["carol in #general", "alice, are you there?"],
                                                ["carol (direct message)", "just between us"]]
    assert alice.title() == "(3) Parley"
    fav = urllib.parse.unquote(alice.locator("#favicon").get_attribute("href"))
    assert fav.startswith("data:image/svg+xml,<svg")
    assert ">3</text>" in fav and 'fill="#ff3b52"' in fav        # the count, red: a mention
    # the icon is drawn: the browser loads it as an image (and the CSP lets it)
    drawn = alice.evaluate("""(src) => new Promise(ok => { const i = new Image();
        i.onload = () => ok(i.naturalWidth > 0); i.onerror = () => ok(false); i.src = src; })""",
                           alice.locator("#favicon").get_attribute("href"))
    assert drawn
    # back to the tab: #general is read, the DM still waits
    alice.evaluate("window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'))")
    alice.wait_for_function("() => document.title === '(1) Parley'")
    alice.locator('#dm-list button[data-key="@carol"] .badge.mention').wait_for()

    # where a page may not make notifications itself (Android), the service worker shows them
    ctx.grant_permissions(["notifications"])
    assert alice.evaluate("navigator.serviceWorker.ready.then(r => !!r.active)")
    alice.evaluate("window.__android = true; window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'))")
    carol.send({"type": "say", "text": "on your phone?", "to": "alice", "label": "and-1"})
    carol.answer("and-1")
    shown = []
    for _ in range(50):
        shown = alice.evaluate("""() => navigator.serviceWorker.ready.then(r => r.getNotifications())
            .then(ns => ns.map(n => [n.title, n.body]))""")
        if shown:
            break
        alice.wait_for_timeout(100)
    assert shown == [["carol (direct message)", "on your phone?"]]
    alice.evaluate("window.__android = false; window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'))")

    # Alt+Down / Alt+Up walk the conversations; Tab completes a name
    alice.focus("#input")
    alice.keyboard.press("Alt+ArrowDown")
    alice.wait_for_function("() => document.querySelector('#conv-title').textContent === '@carol'")
    alice.keyboard.press("Alt+ArrowUp")
    alice.wait_for_function("() => document.querySelector('#conv-title').textContent === '#general'")
    alice.keyboard.type("ca")
    alice.keyboard.press("Tab")
    assert alice.input_value("#input") == "carol: "
    alice.keyboard.type("ok @car")
    alice.keyboard.press("Tab")
    assert alice.input_value("#input") == "carol: ok @carol "
    alice.fill("#input", "")

    # the service worker keeps the shell: with no network it opens, "reconnecting"
    assert alice.evaluate("navigator.serviceWorker.ready.then(r => !!r.active)")
    alice.wait_for_function("() => !!navigator.serviceWorker.controller")
    ctx.set_offline(True)
    alice.reload()
    alice.locator("#app").wait_for(state="visible")
    alice.locator("#banner", has_text="Reconnecting").wait_for()
    assert alice.locator("#me").inner_text() == "alice"
    send(alice, "written offline")
    assert alice.locator("#messages li.pending").count() == 1
    alice.reload()                                      # still offline: the queue is kept
    alice.locator("#messages li.pending", has_text="written offline").wait_for()
    ctx.set_offline(False)
    wait_online(alice)
    expect_message(carol, "written offline", sender="alice")
    no_pending(alice)
    assert texts(alice).count("written offline") == 1
    assert not [ev for ev in carol.frames(0.5) if ev.type == "message" and ev.text == "written offline"]
    carol.close()
    ctx.close()


# --- 6. two tabs, one name -------------------------------------------------------------------
def test_a_second_tab_takes_over_and_the_first_steps_back(web, browser, watch):
    ctx = browser.new_context(viewport={"width": 1000, "height": 700})
    welcomes = {"first": 0, "second": 0}

    def count(page, name):
        page.on("websocket", lambda ws: ws.on(
            "framereceived", lambda f: welcomes.__setitem__(name, welcomes[name] + 1)
            if '"type":"welcome"' in str(f) else None))

    first = watch.page(ctx)
    count(first, "first")
    login(first, web.url, "alice")
    second = watch.page(ctx)                       # same browser profile: same name and token
    count(second, "second")
    second.goto(web.url)
    wait_online(second)
    first.locator("#banner", has_text="open in another tab").wait_for()
    second.wait_for_timeout(1500)                  # no ping-pong between the two
    assert welcomes == {"first": 1, "second": 1}, welcomes
    assert second.locator("#banner").is_hidden()

    carol = RawClient(web.address)
    carol.hello("carol", rooms=True)
    send(second, "from the second tab")
    expect_message(carol, "from the second tab", sender="alice")

    first.click("#use-here")                       # take it back
    wait_online(first)
    second.locator("#banner", has_text="open in another tab").wait_for()
    wait_text(first, "from the second tab")        # caught up on what the other tab did
    send(first, "back in the first")
    expect_message(carol, "back in the first", sender="alice")
    assert [ev for ev in carol.frames(0.5) if ev.type in ("join", "leave")] == []   # quietly
    carol.close()
    ctx.close()


# --- 7. the rate limit ---------------------------------------------------------------------
def test_a_long_queue_goes_out_at_the_servers_pace_without_a_kick(strict_web, browser, watch):
    carol = RawClient(strict_web.address)
    carol.hello("carol", rooms=True)
    dave = RawClient(strict_web.address)
    dave.hello("dave", rooms=True)
    ctx = browser.new_context(viewport={"width": 1200, "height": 700})
    alice = watch.page(ctx)
    login(alice, strict_web.url, "alice")
    # a big room comes without its member list: the client asks for it
    alice.wait_for_function("() => document.querySelectorAll('#member-list button').length === 3")
    for i in range(40):                      # typed faster than 5 a second, twice the burst
        send(alice, f"quick {i}")
    got = [expect_message(carol, f"quick {i}", sender="alice").text for i in range(40)]
    assert got == [f"quick {i}" for i in range(40)]
    no_pending(alice)
    assert alice.locator("#banner").is_hidden()
    assert alice.locator("#messages li.notice.error").count() == 0
    carol.close()
    dave.close()
    ctx.close()


# --- 8. https:// and wss:// on the TLS port ---------------------------------------------
def test_https_page_speaks_wss_on_the_tls_port(tls_server, browser, watch):
    # the browser will not run a service worker from a certificate it was told to
    # ignore (our test CA); with a trusted certificate it does
    watch.allow(re.compile("SSL certificate error occurred when fetching the script"))
    ctx = browser.new_context(ignore_https_errors=True)
    page = watch.page(ctx)
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    login(page, f"https://127.0.0.1:{tls_server.tls_address[1]}/", "secure")
    assert sockets and all(u.startswith("wss://127.0.0.1:") and u.endswith("/ws") for u in sockets), sockets
    plain = RawClient(tls_server.address)
    plain.hello("plain", rooms=True)
    send(page, "over wss 🔒")
    expect_message(plain, "over wss 🔒", sender="secure")
    plain.close()
    ctx.close()


# --- a search result far back in the history ---------------------------------------------
def test_a_search_result_far_back_is_loaded_and_shown(web, browser, watch):
    talker = RawClient(web.address)
    try:
        talker.hello("talker", rooms=True)
        talker.send(b"".join(
            (f'{{"type":"say","text":"{"needle in the hay" if i == 3 else f"hay {i}"}",'
             f'"label":"h{i}"}}\n').encode() for i in range(180)))
        talker.answer("h179", timeout=15)
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = watch.page(ctx)
        login(page, web.url, "seeker")
        wait_text(page, "hay 179")
        # the needle is 176 messages back: pages of 50 are not loaded yet
        assert page.locator("#messages li", has_text="needle in the hay").count() == 0
        page.fill("#search-input", "needle")
        page.press("#search-input", "Enter")
        page.locator("#result-list button.result", has_text="needle in the hay").click()
        shown = page.locator("#messages li.flash", has_text="needle in the hay")
        shown.wait_for(timeout=15_000)
        box = shown.bounding_box()
        view = page.locator("#messages").bounding_box()
        assert view["y"] <= box["y"] <= view["y"] + view["height"]     # scrolled into view
        ctx.close()
    finally:
        talker.close()
