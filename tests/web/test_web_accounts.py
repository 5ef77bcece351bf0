"""Accounts in the web client (docs/protocol.md, "Accounts"), in a real browser
against a real server on 127.0.0.1 (loopback: passwords are accepted over
plain http there).  Log in, a wrong password, a guest asked for the password
of a registered name, registering (a new account, and a guest keeping its
name), reloads that use the token and never the password, the session list
from two browsers, revoking one (that page goes back to the login form), a
password change, logging out, guests marked.  Screenshots of the login form
(desktop and Pixel 7) and of the sessions panel go to tests/web/artifacts/.
"""
import json
import re
from pathlib import Path

import pytest

from conftest import Web
from rawclient import RawClient
from parley.server.accounts import hash_password
from parley.server.store import Store
from test_web_client import SHOTS, expect_message, send, texts, wait_online, wait_text

ROOT = Path(__file__).resolve().parents[2]
ALICE_PW = "correct horse 1"
DAVE_PW = "dave's passphrase"


@pytest.fixture
def acct_web(tmp_path):
    """A server whose database already holds the accounts alice and dave."""
    db = str(tmp_path / "parley.db")
    store = Store(db).open()
    store.create_account("alice", "sid-alice-0001", hash_password(ALICE_PW))
    store.create_account("dave", "sid-dave-00001", hash_password(DAVE_PW))
    store.close()
    w = Web(db)
    yield w
    w.close()


def fill_login(page, name, password="", confirm=None):
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    if confirm is not None:
        page.fill("#login-confirm", confirm)
    page.click("#login-submit")


def log_in(page, url, name, password):
    page.goto(url)
    fill_login(page, name, password)
    wait_online(page)


def sent_frames(page):
    """Every frame the page sends on its WebSockets (appended as they go)."""
    frames = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: frames.append(str(f))))
    return frames


def stored_everywhere(page):
    """Everything this origin keeps: localStorage, sessionStorage, the service worker's cache."""
    return page.evaluate("""async () => {
        const out = [];
        for (const s of [localStorage, sessionStorage])
            for (let i = 0; i < s.length; i++) out.push(s.key(i) + '=' + s.getItem(s.key(i)));
        if (self.caches) for (const name of await caches.keys()) {
            const c = await caches.open(name);
            for (const req of await c.keys()) out.push(req.url + ' ' + await (await c.match(req)).text());
        }
        return out.join('\\n');
    }""")


def token(page):
    return page.evaluate("localStorage.getItem('parley.token')")


def open_sessions(page):
    page.click("#account-btn")
    page.locator("#account[open]").wait_for()
    page.locator("#session-list li.session").first.wait_for()


# --- 1. log in, a wrong password, a guest asked for the password, reload --------------------
def test_log_in_wrong_password_registered_name_and_reload_without_the_password(acct_web, browser, watch):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = watch.page(ctx)
    frames = sent_frames(page)
    page.goto(acct_web.url)
    # what password managers need: a username field and a current-password field in one form
    assert page.get_attribute("#login-name", "autocomplete") == "username"
    assert page.get_attribute("#login-password", "autocomplete") == "current-password"
    assert page.get_attribute("#login-password", "type") == "password"
    assert page.locator("#login-form #login-name + label + #login-password").count() == 1
    assert page.locator("#login-submit").inner_text() == "Join as a guest"
    page.fill("#login-password", "x")
    assert page.locator("#login-submit").inner_text() == "Log in"
    page.fill("#login-password", "")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "web-login.png"))

    # a wrong password: said in the form, the password field emptied and focused
    fill_login(page, "alice", "not her password")
    page.locator("#login-error", has_text="Wrong name or password").wait_for()
    assert page.locator("#app").is_hidden()
    assert page.input_value("#login-password") == ""
    assert page.evaluate("document.activeElement.id") == "login-password"
    assert page.get_attribute("#login-password", "aria-invalid") == "true"
    assert token(page) is None

    # no password for a registered name: asked for it
    fill_login(page, "alice")
    page.locator("#login-error", has_text="belongs to an account").wait_for()
    assert "enter its password" in page.inner_text("#login-error")
    page.screenshot(path=str(SHOTS / "web-login-error.png"))
    assert page.evaluate("document.activeElement.id") == "login-password"
    assert page.locator("#app").is_hidden()

    # the right one: in, logged in (not a guest), a login token kept, the password nowhere
    fill_login(page, "alice", ALICE_PW)
    wait_online(page)
    assert page.inner_text("#me") == "alice"
    assert "guest" not in page.get_attribute("#me", "class").split()
    assert page.input_value("#login-password") == ""
    hellos = [json.loads(f) for f in frames if '"hello"' in f]
    assert hellos[-1]["password"] == ALICE_PW and hellos[-1]["device"].startswith("Chrome")
    tok = token(page)
    assert tok
    kept = stored_everywhere(page)
    assert ALICE_PW not in kept and "not her password" not in kept
    carol = RawClient(acct_web.address)
    carol.hello("carol", rooms=True)
    send(page, "logged in, from a browser")
    ev = expect_message(carol, "logged in, from a browser", sender="alice")
    assert not getattr(ev, "guest", None)

    # reload: back in with the token, never the password
    frames.clear()
    page.reload()
    wait_online(page)
    assert page.inner_text("#me") == "alice"
    hello = [json.loads(f) for f in frames if '"hello"' in f][-1]
    assert hello.get("token") == tok and "password" not in hello
    assert not any(ALICE_PW in f for f in frames)
    page.click("#account-btn")
    page.locator("#account-status", has_text="Logged in as alice").wait_for()
    page.click("#account-close")
    wait_text(page, "logged in, from a browser")

    # the login form on a phone
    phone = watch.page(browser.new_context(**browser.devices["Pixel 7"]))
    phone.goto(acct_web.url)
    phone.locator("#login-name").wait_for()
    box = phone.locator("#login-form").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= phone.viewport_size["width"]
    assert phone.evaluate("document.documentElement.scrollWidth") <= phone.viewport_size["width"]
    small = phone.eval_on_selector_all(
        "#login-form button, #login-form input",
        "els => els.filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 44).map(e => e.id)")
    assert small == []
    phone.screenshot(path=str(SHOTS / "web-login-phone.png"))
    phone.context.close()
    carol.close()
    ctx.close()


# --- 2. registering: a new account, and a guest keeping its name; guests marked -------------
def test_register_an_account_and_a_guest_registers_its_name(acct_web, browser, watch):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    bob = watch.page(ctx)
    bob.goto(acct_web.url)
    bob.click("#login-mode")
    assert bob.get_attribute("#login-password", "autocomplete") == "new-password"
    assert bob.get_attribute("#login-confirm", "autocomplete") == "new-password"
    assert bob.locator("#login-submit").inner_text() == "Create account"
    fill_login(bob, "bob", "short", "short")
    bob.locator("#login-error", has_text="8 characters").wait_for()
    fill_login(bob, "bob", "bob's long password", "bob's long passwort")
    bob.locator("#login-error", has_text="differ").wait_for()
    assert bob.evaluate("document.activeElement.id") == "login-confirm"
    fill_login(bob, "alice", "bob's long password", "bob's long password")   # someone has it
    bob.locator("#login-error", has_text="taken").wait_for()
    fill_login(bob, "bob", "bob's long password", "bob's long password")
    wait_online(bob)
    assert "guest" not in bob.get_attribute("#me", "class").split()
    assert "bob's long password" not in stored_everywhere(bob)

    # a guest: marked in the sidebar, in the member list and on its live messages
    ctx2 = browser.new_context(viewport={"width": 1280, "height": 800})
    erin = watch.page(ctx2)
    erin.goto(acct_web.url)
    fill_login(erin, "erin")
    wait_online(erin)
    assert "guest" in erin.get_attribute("#me", "class").split()
    assert erin.inner_text("#account-btn") == "Guest: register"
    erin_in_bob = bob.locator('#member-list button[data-name="erin"]')
    erin_in_bob.wait_for()
    bob.wait_for_function("() => document.querySelector('#member-list button[data-name=\"erin\"]')"
                          ".classList.contains('guest')")
    assert "guest" in erin_in_bob.get_attribute("title")
    assert "guest" not in bob.get_attribute('#member-list button[data-name="bob"]', "class").split()
    send(erin, "hello from a guest")
    wait_text(bob, "hello from a guest")
    line = bob.locator("#messages li.msg", has_text="hello from a guest")
    assert "guest" in line.get_attribute("class").split()
    assert "guest" in line.locator(".who").get_attribute("title")
    assert texts(bob)[-1] == "hello from a guest"              # the mark is not part of the text
    send(erin, "/me waves")                                      # an action: the name is in the text
    wait_text(bob, "erin waves")
    action = bob.locator("#messages li.msg.action", has_text="erin waves")
    assert "guest" in action.get_attribute("class").split()
    assert "guest" in action.locator(".actor").get_attribute("title")
    assert texts(bob)[-1] == "erin waves"
    send(bob, "hello from an account")
    wait_text(erin, "hello from an account")
    assert "guest" not in erin.locator("#messages li.msg", has_text="hello from an account").get_attribute("class").split()
    bob.screenshot(path=str(SHOTS / "web-guest-marked.png"))

    # the guest keeps its name: /register opens the form (the password never in the message box)
    send(erin, "/register")
    erin.locator("#account[open]").wait_for()
    assert erin.evaluate("document.activeElement.id") == "register-password"
    assert erin.get_attribute("#register-password", "autocomplete") == "new-password"
    erin.fill("#register-password", "erin's new secret")
    erin.fill("#register-confirm", "erin's new secret")
    erin.click("#register-form button[type=submit]")
    erin.locator("#account-msg", has_text="Registered").wait_for()
    erin.locator("#account-status", has_text="Logged in as erin").wait_for()
    erin.locator("#session-list li.session.current").wait_for()
    assert "guest" not in erin.get_attribute("#me", "class").split()
    assert "erin's new secret" not in stored_everywhere(erin)
    erin.keyboard.press("Escape")
    erin.reload()                                  # its token is now the login token of this device
    wait_online(erin)
    assert "guest" not in erin.get_attribute("#me", "class").split()
    # another browser now needs erin's password
    ctx3 = browser.new_context()
    other = watch.page(ctx3)
    other.goto(acct_web.url)
    fill_login(other, "erin")
    # (name_taken while erin is online, or name_registered: either way it asks for her password)
    other.locator("#login-error", has_text="enter its password").wait_for()
    fill_login(other, "erin", "erin's new secret")
    wait_online(other)
    for c in (ctx, ctx2, ctx3):
        c.close()


# --- 3. sessions from two browsers, revoke, change the password, log out ----------------------
def test_sessions_revoke_password_change_and_log_out(acct_web, browser, watch):
    desk_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    desk = watch.page(desk_ctx)
    phone_ctx = browser.new_context(**browser.devices["Pixel 7"])
    phone = watch.page(phone_ctx)
    log_in(desk, acct_web.url, "dave", DAVE_PW)
    phone_ctx.add_init_script("localStorage.setItem('parley.theme', 'light')")
    log_in(phone, acct_web.url, "dave", DAVE_PW)

    # on the phone (light theme): the account dialog fits the screen; the account menu is
    # in the drawer
    phone.click("#menu-btn")
    open_sessions(phone)
    phone.wait_for_function("() => document.querySelectorAll('#session-list li.session').length === 2")
    box = phone.locator("#account").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= phone.viewport_size["width"], box
    assert phone.evaluate("document.documentElement.dataset.theme") == "light"
    phone.screenshot(path=str(SHOTS / "web-sessions-phone-light.png"))
    phone.keyboard.press("Escape")

    # two sessions, this one first and marked, both online; each with a button
    open_sessions(desk)
    desk.wait_for_function("() => document.querySelectorAll('#session-list li.session').length === 2")
    rows = desk.locator("#session-list li.session")
    assert "this device" in rows.nth(0).inner_text() and "online" in rows.nth(0).inner_text()
    assert "online" in rows.nth(1).inner_text() and "Chrome" in rows.nth(1).inner_text()
    assert "Active Today" in rows.nth(1).inner_text()
    assert rows.nth(1).locator("button.revoke").get_attribute("aria-label").startswith("Log out Chrome")
    desk.screenshot(path=str(SHOTS / "web-sessions.png"))
    phone_token = token(phone)

    # revoking the phone's session sends that page back to the login form (told by the
    # server's bye "revoked", not by a failed reconnect), its token forgotten
    phone_frames = sent_frames(phone)
    rows.nth(1).locator("button.revoke").click()
    phone.locator("#login:not([hidden])").wait_for()
    phone.locator("#login-notice", has_text="This session was logged out").wait_for()
    phone.wait_for_timeout(500)
    assert not [f for f in phone_frames if '"hello"' in f]     # no reconnect with the dead token
    assert phone.input_value("#login-name") == "dave"
    assert token(phone) is None
    phone.screenshot(path=str(SHOTS / "web-login-revoked-phone.png"))
    desk.wait_for_function("() => document.querySelectorAll('#session-list li.session').length === 1")
    phone.reload()                                  # stays out: no token
    phone.locator("#login:not([hidden])").wait_for()
    phone.wait_for_timeout(300)
    assert phone.locator("#app").is_hidden()
    # a revoked token (as a browser that was closed while it was revoked still has it)
    # does not work either: the form says so, and the token is forgotten
    phone.evaluate("t => { localStorage.setItem('parley.name', 'dave'); localStorage.setItem('parley.token', t);"
                   " localStorage.setItem('parley.account', '1'); }", phone_token)
    phone.reload()
    phone.locator("#login-notice", has_text="session has ended").wait_for()
    assert token(phone) is None

    # the phone logs in again; "log out other sessions" from the desktop
    fill_login(phone, "dave", DAVE_PW)
    wait_online(phone)
    desk.click("#sessions-refresh")
    desk.wait_for_function("() => document.querySelectorAll('#session-list li.session').length === 2")
    desk.click("#revoke-others")
    phone.locator("#login-notice", has_text="This session was logged out").wait_for()
    desk.wait_for_function("() => document.querySelectorAll('#session-list li.session').length === 1")
    desk.keyboard.press("Escape")

    # change the password: the wrong old one is said; the right one works, other sessions end
    log_in(phone, acct_web.url, "dave", DAVE_PW)
    send(desk, "/password")
    desk.locator("#account[open]").wait_for()
    assert desk.evaluate("document.activeElement.id") == "password-old"
    assert desk.get_attribute("#password-old", "autocomplete") == "current-password"
    assert desk.get_attribute("#password-new", "autocomplete") == "new-password"
    desk.fill("#password-old", "wrong old one")
    desk.fill("#password-new", "a new passphrase")
    desk.fill("#password-confirm", "a new passphrase")
    desk.click("#password-form button[type=submit]")
    desk.locator("#password-error", has_text="current password is wrong").wait_for()
    desk.fill("#password-old", DAVE_PW)
    desk.fill("#password-new", "a new passphrase")
    desk.fill("#password-confirm", "a new passphrase")
    desk.click("#password-form button[type=submit]")
    desk.locator("#account-msg", has_text="Password changed").wait_for()
    phone.locator("#login-notice", has_text="logged out").wait_for()
    assert "a new passphrase" not in stored_everywhere(desk)
    desk.keyboard.press("Escape")

    # /logout: the session ends on the server, the token is forgotten, a reload stays out
    desk_token = token(desk)
    send(desk, "/logout")
    desk.locator("#login-notice", has_text="You are logged out").wait_for()
    assert token(desk) is None
    desk.reload()
    desk.locator("#login:not([hidden])").wait_for()
    raw = RawClient(acct_web.address)
    raw.send({"type": "hello", "version": 1, "name": "dave", "caps": ["rooms"], "token": desk_token})
    assert raw.expect("error", timeout=10).code in ("name_registered", "login_failed")   # that token is dead
    raw.close()
    # and the new password logs in
    fill_login(desk, "dave", "a new passphrase")
    wait_online(desk)
    desk_ctx.close()
    phone_ctx.close()


# --- 4. what the form says to errors a loopback server never gives -----------------------------
def test_insecure_and_throttled_logins_are_explained_in_the_form(acct_web, browser, watch):
    ctx = browser.new_context(viewport={"width": 1000, "height": 700})
    page = watch.page(ctx)
    answers = []

    def route(ws):
        server = ws.connect_to_server()

        def from_page(message):
            frame = json.loads(message)
            if frame.get("type") == "hello" and "password" in frame and answers:
                ws.send(json.dumps(answers.pop(0)))
            else:
                server.send(message)
        ws.on_message(from_page)

    page.route_web_socket(re.compile(r"/ws$"), route)
    page.goto(acct_web.url)
    answers.append({"type": "error", "code": "insecure", "message": "this server takes passwords only over TLS"})
    fill_login(page, "alice", "whatever123")
    page.locator("#login-error", has_text="https://").wait_for()
    answers.append({"type": "error", "code": "throttled", "message": "too many failed logins: try again in 3 s",
                    "retry_after": 3.0})
    fill_login(page, "alice", "whatever123")
    page.locator("#login-error", has_text=re.compile(r"wait [23] s")).wait_for()
    assert page.locator("#login-submit").is_disabled()
    page.wait_for_function("() => !document.querySelector('#login-submit').disabled", timeout=6000)
    assert page.inner_text("#login-submit") == "Log in" or page.inner_text("#login-submit") == "Join as a guest"
    answers.append({"type": "error", "code": "auth_required", "message": "members only"})
    fill_login(page, "alice", "whatever123")
    page.locator("#login-error", has_text="for its members").wait_for()
    fill_login(page, "alice", ALICE_PW)           # no more made-up answers: the real server
    wait_online(page)
    ctx.close()
