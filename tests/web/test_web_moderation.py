"""Moderation in the web client (docs/protocol.md, "Moderation"), in a real
browser against a real server on 127.0.0.1.  alice (an account) creates #lab,
so she owns it; bob is a guest.  From the member list's menu alice mutes and
kicks bob; bob's page says so next to its message box and #lab leaves its
sidebar.  Removed messages show as removed in both pages and after a reload.
/audit lists the actions for an admin (root).  On a phone: a ban, a closed
room, an invitation with a Join button.  A reloaded page shows no leave/join
to the others (the server holds a lost connection).  A server-wide ban ends on
the login form, without reconnecting.  Screenshots in tests/web/artifacts/.
"""
import json

import pytest

from conftest import Web
from rawclient import RawClient
from parley.server.accounts import hash_password
from parley.server.store import Store
from test_web_accounts import fill_login, log_in
from test_web_client import INJECTION, SHOTS, login, send, texts, wait_online, wait_text

ALICE_PW = "correct horse 1"
ROOT_PW = "root's long passphrase"


@pytest.fixture
def mod_web(tmp_path):
    """A server whose database holds the account alice and the admin root."""
    db = str(tmp_path / "parley.db")
    store = Store(db).open()
    store.create_account("alice", "sid-alice-0001", hash_password(ALICE_PW))
    store.create_account("root", "sid-root-00001", hash_password(ROOT_PW), admin=True)
    store.close()
    w = Web(db)
    yield w
    w.close()


def mod_lines(page):
    """The text of every moderation line shown."""
    return page.eval_on_selector_all("#messages li.mod .text", "els => els.map(e => e.textContent)")


def wait_mod(page, text, timeout=10_000):
    page.wait_for_function(
        "t => [...document.querySelectorAll('#messages li.mod .text')].some(e => e.textContent.includes(t))",
        arg=text, timeout=timeout)


def rooms_in_sidebar(page):
    return page.eval_on_selector_all("#room-list button.conv", "els => els.map(e => e.dataset.key)")


def join(page, room):
    send(page, f"/join {room}")
    page.wait_for_function("r => document.querySelector('#conv-title').textContent === r", arg=room)


def member_action(page, name, action):
    """Open the member menu of ``name`` and pick kick, mute or ban (the dialog opens)."""
    page.locator(f'#member-list button.member-menu[data-menu-for="{name}"]').click()
    page.locator(f"#member-list .member-actions .menu-item.{action}").click()
    page.locator("#mod[open]").wait_for()


def removed(page, text_before):
    """Is the message that said ``text_before`` shown as removed (and its text gone)?"""
    return page.evaluate("t => !document.querySelector('#messages').textContent.includes(t) && "
                         "document.querySelectorAll('#messages li.msg.removed').length", text_before)


# --- 1. an owner mutes and kicks a guest, messages removed, the audit log ---------------------
def test_owner_mutes_kicks_removes_and_admin_reads_the_audit_log(mod_web, browser, watch):
    actx = browser.new_context(viewport={"width": 1280, "height": 800})
    alice = watch.page(actx)
    log_in(alice, mod_web.url, "alice", ALICE_PW)
    join(alice, "#lab")                       # nobody was in it: she created it, she owns it
    bctx = browser.new_context(viewport={"width": 1100, "height": 760})
    bob = watch.page(bctx)
    login(bob, mod_web.url, "bob")
    join(bob, "#lab")
    send(bob, "hello there")
    send(bob, "oops, a typo")
    wait_text(alice, "oops, a typo")

    # bob removes his own last message (/delete), alice removes the other one (its Remove button)
    send(bob, "/delete")
    alice.wait_for_function("() => document.querySelectorAll('#messages li.msg.removed').length === 1")
    assert "oops, a typo" not in texts(alice)
    hello = alice.locator("#messages li.msg", has_text="hello there")
    hello.hover()
    hello.locator("button.remove").click()
    alice.locator("#mod[open]").wait_for()
    assert alice.inner_text("#mod-h") == "Remove this message?"
    alice.click("#mod-submit")
    alice.locator("#mod").wait_for(state="hidden")
    for page in (alice, bob):
        page.wait_for_function("() => document.querySelectorAll('#messages li.msg.removed').length === 2")
        assert removed(page, "hello there") and removed(page, "oops, a typo")
        wait_mod(page, "alice removed a message")
    assert alice.locator("#messages li.removed", has_text="message removed by alice").count() == 1
    # bob may remove his own messages, not others': he sees no Remove button on alice's
    send(alice, "owner here")
    wait_text(bob, "owner here")
    assert bob.locator("#messages li.msg", has_text="owner here").locator("button.remove").count() == 0
    assert alice.locator("#messages li.msg", has_text="owner here").locator("button.remove").count() == 1

    # the member list's menu (keyboard: it opens with Enter, arrows move, Escape closes)
    menu_btn = alice.locator('#member-list button.member-menu[data-menu-for="bob"]')
    assert menu_btn.get_attribute("aria-haspopup") == "menu"
    assert alice.locator('#member-list button.member-menu[data-menu-for="alice"]').count() == 0
    menu_btn.focus()
    alice.keyboard.press("Enter")
    alice.locator("#member-list .member-actions[role=menu]").wait_for()
    assert menu_btn.get_attribute("aria-expanded") == "true"
    alice.keyboard.press("ArrowDown")
    assert alice.evaluate("document.activeElement.textContent") == "Kick bob…"
    alice.keyboard.press("Escape")
    assert alice.locator("#member-list .member-actions").count() == 0
    assert alice.evaluate("document.activeElement.dataset.menuFor") == "bob"

    # mute for 10 minutes, with a reason that looks like HTML (shown as text)
    member_action(alice, "bob", "mute")
    assert alice.input_value("#mod-duration") == "600"
    alice.fill("#mod-reason", "<b>calm</b> down")
    alice.screenshot(path=str(SHOTS / "web-mod-dialog.png"))
    alice.click("#mod-submit")
    for page in (alice, bob):
        wait_mod(page, "alice muted bob for 10 min: <b>calm</b> down")
        assert page.locator("#messages li.mod b").count() == 0
    bob.locator("#composer-error", has_text="muted").wait_for()
    send(bob, "am I muted?")
    bob.locator("#messages li.failed", has_text="am I muted?").wait_for()
    bob.locator("#composer-error-text", has_text="you are muted in #lab").wait_for()
    bob.screenshot(path=str(SHOTS / "web-mod-muted.png"))

    # reload: the removed messages stay removed (history says deleted), the lines are back
    alice.reload()
    wait_online(alice)
    alice.wait_for_function("() => document.querySelectorAll('#messages li.msg.removed').length === 2")
    assert removed(alice, "hello there") and removed(alice, "oops, a typo")
    wait_mod(alice, "alice muted bob for 10 min")
    assert len([t for t in mod_lines(alice) if "removed a message" in t]) == 2    # deduplicated by id

    # the kick: bob is told, #lab leaves his sidebar; the HTML of the reason stays text
    member_action(alice, "bob", "kick")
    assert alice.locator("#mod-duration-row").is_hidden()
    alice.fill("#mod-reason", INJECTION)
    alice.click("#mod-submit")
    wait_mod(alice, f"alice kicked bob: {INJECTION}")
    bob.wait_for_function("() => ![...document.querySelectorAll('#room-list button.conv')]"
                          ".some(b => b.dataset.key === '#lab')")
    assert rooms_in_sidebar(bob) == ["#general"]
    assert bob.inner_text("#conv-title") == "#general"
    bob.locator("#messages li.notice.error", has_text="You were kicked out of #lab by alice").wait_for()
    assert INJECTION in bob.inner_text("#composer-error-text")
    # the others see one line for it (its leave is not shown twice)
    alice.locator('#member-list button.member[data-name="bob"]').wait_for(state="detached")
    assert alice.locator("#messages li.event:not([hidden])", has_text="bob left").count() == 0
    assert alice.evaluate("window.__pwned") is None and bob.evaluate("window.__pwned") is None
    bob.screenshot(path=str(SHOTS / "web-mod-kicked.png"))
    alice.screenshot(path=str(SHOTS / "web-moderation.png"))

    # /audit: not for alice; root (an admin) reads every action, newest first
    send(alice, "/audit")
    alice.locator("#result-list li.error", has_text="Only server admins").wait_for()
    rctx = browser.new_context(viewport={"width": 1280, "height": 800})
    root = watch.page(rctx)
    log_in(root, mod_web.url, "root", ROOT_PW)
    send(root, "/help")
    root.locator("#messages li.notice", has_text="/mute <name> [10m|2h|1d] [reason]").wait_for()
    send(root, "/audit")
    root.locator("#results li.audit-entry").nth(3).wait_for()
    assert root.text_content("#results-h") == "Audit log"
    entries = root.eval_on_selector_all("#results li.audit-entry .audit-line", "els => els.map(e => e.textContent)")
    assert entries[0] == f"alice kick bob: {INJECTION}", entries
    assert entries[1].startswith("alice mute bob until ") and entries[1].endswith(": <b>calm</b> down"), entries
    assert [e.split(":")[0] for e in entries[2:4]] == ["alice delete", "bob delete"], entries
    assert root.evaluate("window.__pwned") is None
    root.screenshot(path=str(SHOTS / "web-mod-audit.png"))
    for c in (actx, bctx, rctx):
        c.close()


# --- 2. on a phone: a ban, a closed room, an invitation ------------------------------------------
def test_phone_ban_invite_only_and_invitation(mod_web, browser, watch):
    pctx = browser.new_context(**browser.devices["Pixel 7"])
    alice = watch.page(pctx)
    log_in(alice, mod_web.url, "alice", ALICE_PW)
    join(alice, "#lab")
    bctx = browser.new_context(viewport={"width": 1000, "height": 700})
    bob = watch.page(bctx)
    login(bob, mod_web.url, "bob")
    join(bob, "#lab")
    send(bob, "hi from bob")
    wait_text(alice, "hi from bob")

    alice.click("#members-btn")
    alice.locator('#member-list button.member-menu[data-menu-for="bob"]').wait_for()
    alice.locator('#member-list button.member-menu[data-menu-for="bob"]').click()
    alice.locator("#member-list .member-actions").wait_for()
    small = alice.eval_on_selector_all(
        "#member-list .member-menu, #member-list .menu-item",
        "els => els.filter(e => e.getBoundingClientRect().height < 36).length")
    assert small == 0
    alice.screenshot(path=str(SHOTS / "web-mod-phone-menu.png"))
    alice.locator("#member-list .member-actions .menu-item.ban").click()
    alice.locator("#mod[open]").wait_for()
    assert alice.input_value("#mod-duration") == "86400"
    alice.fill("#mod-reason", "spam")
    box = alice.locator("#mod").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= alice.viewport_size["width"]
    alice.screenshot(path=str(SHOTS / "web-mod-phone-dialog.png"))
    alice.click("#mod-submit")
    wait_mod(alice, "alice banned bob for 1 day: spam")
    bob.locator("#messages li.notice.error", has_text="You were banned from #lab for 1 day by alice: spam").wait_for()
    assert rooms_in_sidebar(bob) == ["#general"]

    # coming back is refused, next to the message box
    send(bob, "/join #lab")
    bob.locator("#composer-error-text", has_text="you are banned from #lab").wait_for()
    assert rooms_in_sidebar(bob) == ["#general"]

    # lifted, but the room is now invite-only
    alice.click("#members-btn")                    # closes the panel
    send(alice, "/unban bob")
    wait_mod(alice, "alice unbanned bob")
    send(alice, "/close")
    wait_mod(alice, "alice made the room invite-only")
    send(bob, "/join #lab")
    bob.locator("#composer-error-text", has_text="invite-only").wait_for()

    # an invitation: a notice with a button that joins
    send(alice, "/invite bob")
    wait_mod(alice, "alice invited bob")
    join_btn = bob.locator("#messages li.notice.invite button", has_text="Join #lab")
    join_btn.wait_for()
    assert "alice invited you to #lab" in bob.inner_text("#messages li.notice.invite")
    join_btn.click()
    bob.wait_for_function("() => document.querySelector('#conv-title').textContent === '#lab'")
    assert "#lab" in rooms_in_sidebar(bob)
    send(bob, "back in")
    wait_text(alice, "back in")
    alice.screenshot(path=str(SHOTS / "web-mod-phone.png"))
    # refused for a guest: the server says forbidden, shown by the input
    send(bob, "/lock")
    bob.locator("#composer-error-text", has_text="only #lab's moderators may lock").wait_for()
    bob.locator("#messages li.notice.error", has_text="only #lab's moderators may lock").wait_for()
    bob.click("#composer-error-close")
    assert bob.locator("#composer-error").is_hidden()
    pctx.close()
    bctx.close()


# --- 3. a reload shows no leave/join to the others ------------------------------------------------
def test_a_reload_shows_no_leave_and_join(web, browser, watch):
    cctx = browser.new_context(viewport={"width": 1100, "height": 700})
    carol = watch.page(cctx)
    login(carol, web.url, "carol")
    dctx = browser.new_context(viewport={"width": 1100, "height": 700})
    dave = watch.page(dctx)
    login(dave, web.url, "dave")
    dave.locator('#messages li.event', has_text="dave joined").wait_for()
    send(carol, "before the reload")
    wait_text(dave, "before the reload")
    carol.reload()
    wait_online(carol)
    send(carol, "after the reload")
    wait_text(dave, "after the reload")             # anything about the reload came before it
    # what dave saw since he came in (carol's join before that is history)
    events = dave.evaluate("""() => {
        const lines = [...document.querySelectorAll('#messages li.line[data-key]')];
        const since = lines.findIndex(li => li.textContent.includes('dave joined'));
        return lines.slice(since + 1).filter(li => li.classList.contains('event'))
                    .map(li => li.querySelector('.text').textContent);
    }""")
    assert not [e for e in events if e.startswith("carol")], events
    assert dave.locator('#member-list button.member[data-name="carol"]').count() == 1
    cctx.close()
    dctx.close()


# --- 4. banned from the server: the login form says so, no reconnecting ---------------------------
def test_server_wide_ban_ends_on_the_login_form_without_reconnecting(mod_web, browser, watch):
    ctx = browser.new_context(viewport={"width": 1000, "height": 700})
    bob = watch.page(ctx)
    sockets = []
    bob.on("websocket", lambda ws: sockets.append(ws))
    login(bob, mod_web.url, "bob")
    root = RawClient(mod_web.address)
    root.hello("root", rooms=True, password=ROOT_PW)
    ans = root.request({"type": "mod", "action": "ban", "target": "bob", "reason": "enough"}, "ack")
    assert ans.type == "ack", ans
    bob.locator("#login:not([hidden])").wait_for()
    bob.locator("#login-notice", has_text="You are banned from this server").wait_for()
    assert "enough" in bob.inner_text("#login-notice")
    bob.screenshot(path=str(SHOTS / "web-mod-banned.png"))
    bob.wait_for_timeout(2500)                      # a reconnect would have started by now
    assert len(sockets) == 1
    assert bob.locator("#banner").is_hidden()
    root.close()
    ctx.close()


# --- the member menu offers moderation by role (the server tells it in room frames) -----------
CAROL_PW = "carol's passphrase"


@pytest.fixture
def role_web(tmp_path):
    db = str(tmp_path / "parley.db")
    store = Store(db).open()
    store.create_account("alice", "sid-alice-0001", hash_password(ALICE_PW))
    store.create_account("carol", "sid-carol-0001", hash_password(CAROL_PW))
    store.close()
    w = Web(db)
    yield w
    w.close()


def menu_items(page, name):
    page.locator(f'#member-list button.member-menu[data-menu-for="{name}"]').click()
    page.locator("#member-list .member-actions").wait_for()
    items = page.eval_on_selector_all("#member-list .member-actions .menu-item",
                                      "els => els.map(e => e.textContent)")
    page.keyboard.press("Escape")
    return items


def test_member_menu_offers_moderation_by_role(role_web, browser, watch):
    actx = browser.new_context(viewport={"width": 1280, "height": 800})
    alice = watch.page(actx)
    log_in(alice, role_web.url, "alice", ALICE_PW)
    join(alice, "#lab")                                   # she owns it
    cctx = browser.new_context(viewport={"width": 1280, "height": 800})
    carol = watch.page(cctx)
    log_in(carol, role_web.url, "carol", CAROL_PW)
    join(carol, "#lab")
    carol.locator('#member-list button.member-menu[data-menu-for="alice"]').wait_for()
    assert menu_items(carol, "alice") == ["Message alice"]          # an account, not a moderator
    alice.locator('#member-list button.member-menu[data-menu-for="carol"]').wait_for()
    assert menu_items(alice, "carol") == ["Message carol", "Kick carol…", "Mute carol…",
                                          "Ban carol…"]               # the owner
    send(alice, "/op carol")
    wait_mod(carol, "carol")
    assert menu_items(carol, "alice") == ["Message alice", "Kick alice…", "Mute alice…",
                                          "Ban alice…"]
    carol.reload()                                        # the welcome says it again
    wait_online(carol)
    carol.locator('#member-list button.member-menu[data-menu-for="alice"]').wait_for()
    assert carol.evaluate("document.querySelector('#conv-title').textContent") == "#lab"
    assert menu_items(carol, "alice")[1:] == ["Kick alice…", "Mute alice…", "Ban alice…"]
    # in #general (no owner; carol is nobody's moderator there) only Message
    send(carol, "/join #general")
    carol.wait_for_function("() => document.querySelector('#conv-title').textContent === '#general'")
    carol.locator('#member-list button.member-menu[data-menu-for="alice"]').wait_for()
    assert menu_items(carol, "alice") == ["Message alice"]
