// Parley web client: rendering and input.  Everything a user sees is built with
// DOM nodes and textContent -- never innerHTML with anything from the network --
// so a message can never inject markup or script.  app.js owns the state; this
// file shows it and forwards what the user does to the ``actions`` it is given.
import { dayLabel, describeMod, localDateTime, localTime, mentions, nameColourIndex, segments } from "./util.js";

const $ = (id) => document.getElementById(id);
let actions = null;
let state = null;
let bannerTimer = null;
let narrow = matchMedia("(max-width: 720px)");

/** A new element with a class and text (text is always set as text). */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function nameNode(name, cls = "who") {
  return el("span", `${cls} nc${nameColourIndex(name)}`, name);
}

/** Message text as nodes: plain text, links (new tab, no referrer), mentions.
 * ``links`` false: links as plain text (inside a button, say). */
function textNodes(text, me, links = true) {
  const frag = document.createDocumentFragment();
  for (const s of segments(text, me)) {
    if (s.kind === "link" && links) {
      const a = el("a", "link", s.text);
      a.href = s.href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      frag.append(a);
    } else if (s.kind === "mention") {
      frag.append(el("mark", "mention-word", s.text));
    } else {
      frag.append(document.createTextNode(s.text));
    }
  }
  return frag;
}

// --- login and the shell --------------------------------------------------------------
let registerMode = false;
let loginWait = null;          // the countdown of a throttled login

/** "Log in" and "Create an account" are one form: the second asks for the password twice. */
function setRegisterMode(on) {
  registerMode = on;
  $("confirm-row").hidden = !on;
  $("login-password").autocomplete = on ? "new-password" : "current-password";
  $("password-hint").textContent = on ? "(8 characters or more)" : "(empty: join as a guest)";
  $("login-intro").textContent = on ? "Create an account: your name is kept for you, on every device."
    : "Log in, or leave the password empty to join as a guest.";
  $("login-mode").textContent = on ? "I have an account: log in" : "Create an account";
  $("login-mode").setAttribute("aria-expanded", String(on));
  updateLoginButton();
}

function updateLoginButton() {
  if ($("login-submit").dataset.busy) return;
  $("login-submit").textContent = registerMode ? "Create account"
    : $("login-password").value ? "Log in" : "Join as a guest";
}

function markInvalid(field) {
  for (const id of ["login-name", "login-password", "login-confirm"]) {
    if (id === field) $(id).setAttribute("aria-invalid", "true"); else $(id).removeAttribute("aria-invalid");
  }
}

/** The login form, with an ``error`` (about a field: opts.focus = "name" or
 *  "password") or a ``notice`` (you were logged out…), ``name`` filled in. */
export function showLogin(error, name, opts = {}) {
  $("app").hidden = true;
  $("login").hidden = false;
  closeAccount();
  setLoginBusy(null);
  if (opts.register !== undefined) setRegisterMode(!!opts.register);
  $("login-error").textContent = error || "";
  $("login-notice").textContent = opts.notice || "";
  $("login-notice").hidden = !opts.notice;
  if (name !== undefined) $("login-name").value = name;
  $("login-password").value = "";            // never left in the page once answered
  $("login-confirm").value = "";
  updateLoginButton();
  const field = error ? (opts.focus === "password" ? "login-password" : "login-name") : null;
  markInvalid(field);
  clearInterval(loginWait);
  if (opts.retryAfter > 0) {                 // throttled: the button waits too
    const until = Date.now() + opts.retryAfter * 1000;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) { clearInterval(loginWait); setLoginBusy(null); return; }
      $("login-error").textContent = `Too many failed logins: wait ${left} s and try again.`;
      setLoginBusy(`Wait ${left} s`);
    };
    tick();
    loginWait = setInterval(tick, 1000);
  }
  const focus = field || (opts.focus === "password" || (name && !error) ? "login-password" : "login-name");
  $(focus === "login-password" && !name ? "login-name" : focus).focus();
}

/** The submit button while the server checks a login (``text``), or ready (null). */
export function setLoginBusy(text) {
  const b = $("login-submit");
  if (text) { b.dataset.busy = "1"; b.disabled = true; b.textContent = text; }
  else { delete b.dataset.busy; b.disabled = false; updateLoginButton(); }
}

export function showApp(st) {
  $("login").hidden = true;
  $("app").hidden = false;
  $("login-password").value = "";
  $("login-confirm").value = "";
  setLoginBusy(null);
  $("me").textContent = st.me;
  $("me").className = `me nc${nameColourIndex(st.me)}`;
  renderAccount(st);
}

const isGuest = (st) => !st.account && (st.auth === "optional" || st.auth === "required");

// --- the account menu ---------------------------------------------------------------------
/** "Logged in as alice" or "guest", in the sidebar and in the account dialog. */
export function renderAccount(st) {
  const guest = isGuest(st);
  $("me").classList.toggle("guest", guest);
  $("me").title = guest ? `${st.me} (guest)` : st.account ? `${st.me} (logged in)` : st.me;
  $("account-btn").textContent = guest ? "Guest: register" : "Account";
  $("account-btn").setAttribute("aria-label", guest ? `You are a guest (${st.me}): account` : `Account of ${st.me}`);
  const status = $("account-status");
  if (st.account) {
    status.replaceChildren("Logged in as ", nameNode(st.account.name, "account-name"),
                           st.account.admin ? " (admin)" : "");
  } else if (st.auth === "off") {
    status.replaceChildren("This server has no accounts: you chat as ", nameNode(st.me, "account-name"), ".");
  } else {
    status.replaceChildren("You are a guest: ", nameNode(st.me, "account-name"),
                           " is yours until you leave. Register it to keep it.");
  }
  $("register-form").hidden = !guest;
  $("register-name").value = st.me;
  $("password-name").value = st.me;
  $("sessions-section").hidden = !st.account;
  $("password-section").hidden = !st.account;
}

export function accountMessage(text, error = false) {
  const m = $("account-msg");
  m.textContent = text || "";
  m.classList.toggle("error", !!error);
}

export function closeAccount() {
  if ($("account").open) $("account").close();
}

/** The account dialog; ``section``: "register", "sessions", "password" (a slash command). */
export function openAccount(st, section = "") {
  renderAccount(st);
  accountMessage("");
  for (const id of ["register-error", "password-error"]) $(id).textContent = "";
  if (!$("account").open) $("account").showModal();
  if (st.account) loadSessions();
  if (section === "password" && st.account) {
    $("password-section").open = true;
    $("password-old").focus();
  } else if (section === "register" && !$("register-form").hidden) {
    $("register-password").focus();
  } else if (section === "sessions" && st.account) {
    $("sessions-refresh").focus();
  } else if ((section === "register" || section === "sessions" || section === "password") && !st.account) {
    accountMessage(st.auth === "off" ? "This server has no accounts." :
      section === "register" ? "" : "Guests have no sessions or password: register your name first.", true);
    (!$("register-form").hidden ? $("register-password") : $("account-close")).focus();
  }
}

function loadSessions() {
  const list = $("session-list");
  list.setAttribute("aria-busy", "true");
  if (!list.children.length) list.replaceChildren(el("li", "dim", "Loading…"));
  actions.listSessions((sessions, error) => {
    list.removeAttribute("aria-busy");
    if (error) { list.replaceChildren(el("li", "error", error)); return; }
    renderSessions(sessions);
  });
}

function renderSessions(sessions) {
  const sorted = [...sessions].sort((a, b) => (b.current === true) - (a.current === true));
  $("revoke-others").hidden = !sorted.some((x) => !x.current);
  $("session-list").replaceChildren(...sorted.map((x) => {
    const li = el("li", "session");
    li.dataset.id = String(x.id);
    if (x.current) li.classList.add("current");
    const info = el("div", "session-info");
    const head = el("div", "session-device", x.device || "Unnamed device");
    if (x.current) head.append(" ", el("span", "tag this", "this device"));
    if (x.online) head.append(" ", el("span", "tag online", "online"));
    const seen = el("div", "session-seen dim");
    seen.append(x.online ? "Active " : "Last seen ", timeNode(x.seen));
    if (x.created) seen.append(" · logged in ", timeNode(x.created));
    info.append(head, seen);
    const b = el("button", "text-btn danger revoke", x.current ? "Log out" : "Revoke");
    b.type = "button";
    b.dataset.id = String(x.id);
    b.setAttribute("aria-label", x.current ? "Log out this device"
      : `Log out ${x.device || "unnamed device"}, last seen ${localDateTime(x.seen)}`);
    li.append(info, b);
    return li;
  }));
}

/** "Today 09:12", "Yesterday 18:40", "Mon 23 Nov 2026 08:00" (the full date and time as its tooltip). */
function timeNode(ts) {
  const t = el("time", "", `${dayLabel(ts)} ${localTime(ts)}`.trim());
  t.dateTime = ts || "";
  t.title = localDateTime(ts);
  return t;
}

export function showBanner(st, until, reason) {
  const banner = $("banner");
  banner.hidden = false;
  document.body.classList.add("offline");
  const tick = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    banner.textContent = `Reconnecting…${left ? ` next try in ${left} s` : ""}` +
      (reason ? ` (${reason})` : "") +
      (st.pending.size ? ` · ${st.pending.size} message(s) will be sent once back` : "");
  };
  tick();
  clearInterval(bannerTimer);
  bannerTimer = setInterval(tick, 1000);
  updatePlaceholder();
}

/** This name is connected in another tab: offer to take it over here. */
export function showElsewhere() {
  clearInterval(bannerTimer);
  const banner = $("banner");
  const use = el("button", "banner-btn", "Use here");
  use.type = "button";
  use.id = "use-here";
  use.addEventListener("click", () => actions.connect());
  banner.replaceChildren("Parley is open in another tab or window. ", use);
  banner.hidden = false;
  document.body.classList.add("offline");
  updatePlaceholder();
}

export function hideBanner() {
  clearInterval(bannerTimer);
  $("banner").hidden = true;
  document.body.classList.remove("offline");
  updatePlaceholder();
}

function updatePlaceholder() {
  if (!state) return;
  const offline = document.body.classList.contains("offline");
  $("input").placeholder = `Message ${state.current}${offline ? " (sent when reconnected)" : ""}`;
}

// --- sidebar --------------------------------------------------------------------------
export function renderSidebar(st) {
  const keys = [...st.conversations.keys()];
  const rooms = keys.filter((k) => k.startsWith("#"))
    .sort((a, b) => (b.toLowerCase() === "#general") - (a.toLowerCase() === "#general") || a.localeCompare(b));
  const dms = keys.filter((k) => k.startsWith("@")).sort((a, b) => a.localeCompare(b));
  fillList($("room-list"), rooms, st);
  fillList($("dm-list"), dms, st);
  updateTitle(st);
}

function fillList(list, keys, st) {
  list.replaceChildren(...keys.map((key) => {
    const c = st.conversations.get(key);
    const li = el("li");
    const b = el("button", "conv");
    b.type = "button";
    b.dataset.key = key;
    if (key === st.current) b.setAttribute("aria-current", "page");
    const label = key.startsWith("@") ? nameNode(key.slice(1), "conv-name") : el("span", "conv-name", key);
    b.append(label);
    if (c.unread > 0 && key !== st.current) {
      b.classList.add("has-unread");
      const badge = el("span", c.mentions ? "badge mention" : "badge", String(c.unread));
      badge.setAttribute("aria-label", `${c.unread} unread${c.mentions ? `, ${c.mentions} mentioning you` : ""}`);
      b.append(badge);
    }
    li.append(b);
    return li;
  }));
}

function updateTitle(st) {
  let unread = 0;
  let mention = false;
  for (const c of st.conversations.values()) {
    if (c.key === st.current && !document.hidden) continue;
    unread += c.unread;
    mention = mention || c.mentions > 0 || (c.unread > 0 && !c.isRoom);
  }
  document.title = unread ? `(${unread}) Parley` : "Parley";
  if (navigator.setAppBadge) {                          // the installed app's icon
    (unread ? navigator.setAppBadge(unread) : navigator.clearAppBadge()).catch(() => {});
  }
  const fav = $("favicon");
  const icon = unread ? badgeIcon(unread, mention) : "icon.svg";
  if (fav.getAttribute("href") !== icon) fav.setAttribute("href", icon);
}

/** The app icon with the unread count on it (red for mentions and DMs), as a
 *  data: URL (the page's Content-Security-Policy allows data: images). */
export function badgeIcon(count, mention) {
  const text = count > 99 ? "99+" : String(count);
  const size = text.length > 2 ? 15 : text.length > 1 ? 19 : 22;
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">' +
    '<rect width="64" height="64" rx="14" fill="#6d8dff"/>' +
    '<path d="M14 18a6 6 0 0 1 6-6h24a6 6 0 0 1 6 6v18a6 6 0 0 1-6 6H28l-9 8v-8h1a6 6 0 0 1-6-6z" fill="#fff"/>' +
    `<circle cx="44" cy="20" r="19" fill="${mention ? "#ff3b52" : "#f2b84b"}" stroke="#16181d" stroke-width="2"/>` +
    `<text x="44" y="20" dy="0.35em" text-anchor="middle" font-family="sans-serif" font-weight="700" ` +
    `font-size="${size}" fill="${mention ? "#fff" : "#16181d"}">${text}</text></svg>`;
  return "data:image/svg+xml," + encodeURIComponent(svg);
}

// --- the conversation ------------------------------------------------------------------
export function renderHeader(st) {
  const c = st.conversations.get(st.current);
  $("conv-title").textContent = st.current;
  $("conv-topic").textContent = c && c.topic ? c.topic : "";
  $("conv-topic").title = c && c.topic ? c.topic : "";
  const top = $("log-top");
  if (!c) top.textContent = "";
  else if (c.loading) top.textContent = "Loading older messages…";
  else if (!c.more) top.textContent = `This is the beginning of ${c.key}.`;
  else top.textContent = "Scroll up for older messages.";
  updatePlaceholder();
}

function eventNode(ev, st, c) {
  const me = st.me;
  const li = el("li", "line");
  li.dataset.key = String(ev.id);
  li.dataset.day = dayLabel(ev.ts);
  const t = el("time", "ts", localTime(ev.ts));
  t.dateTime = ev.ts || "";
  t.title = localDateTime(ev.ts);
  li.append(t);
  if (ev.type === "message") {
    const mine = ev.from.toLowerCase() === me.toLowerCase();
    li.classList.add("msg");
    if (ev.guest) li.classList.add("guest");
    if (mine) li.classList.add("own");
    else if (mentions(ev.text, me)) li.classList.add("mention");
    const body = el("span", "text");
    if (ev.kind === "me") {
      li.classList.add("action");
      li.append(el("span", "who star", "*"));
      body.append(nameNode(ev.from, "actor"), " ");
    } else {
      li.append(nameNode(ev.from));
    }
    if (ev.guest) (body.querySelector(".actor") || li.querySelector(".who")).title = `${ev.from} is a guest (no account)`;
    if (ev.deleted) {
      li.classList.add("removed");
      li.classList.remove("mention");
      body.append(el("span", "removed-text", ev.removedBy && ev.removedBy.toLowerCase() !== ev.from.toLowerCase()
        ? `message removed by ${ev.removedBy}` : "message removed"));
    } else {
      body.append(textNodes(ev.text, me));
    }
    li.append(body);
    // its action (shown on hover or focus; on a touch screen, once the message is tapped)
    if (!ev.deleted && c && c.isRoom && (mine || actions.canModerate(c.key))) {
      const b = el("button", "msg-act remove", "Remove");
      b.type = "button";
      b.dataset.id = String(ev.id);
      b.title = "Remove this message";
      b.setAttribute("aria-label", `Remove this message of ${ev.from}`);
      li.classList.add("can-remove");
      li.append(b);
    }
  } else if (ev.type === "mod") {
    li.classList.add("event", "mod");
    li.append(el("span", "who star", "⚑"));
    const body = el("span", "text");
    const [verb, target, tail] = describeMod(ev);
    body.append(nameNode(ev.by || "?", "actor"), verb);
    if (target) body.append(nameNode(target, "actor"));
    if (tail) body.append(tail);
    if (ev.reason) body.append(": ", el("span", "reason", ev.reason));    // text, never markup
    li.append(body);
  } else {
    li.classList.add("event");
    li.append(el("span", "who star", "•"));
    const body = el("span", "text");
    if (ev.type === "join") body.append(nameNode(ev.name, "actor"), " joined");
    else if (ev.type === "leave") {
      body.append(nameNode(ev.name, "actor"), ` left${ev.reason ? ` (${ev.reason})` : ""}`);
      if (ev.reason === "kicked" || ev.reason === "banned") li.hidden = true;   // the ``mod`` line says it
    }
    else if (ev.type === "topic") {
      body.append(nameNode(ev.by || "?", "actor"), ev.topic ? " set the topic: " : " cleared the topic");
      if (ev.topic) body.append(textNodes(ev.topic, me));
    }
    li.append(body);
  }
  return li;
}

function newMarker() {
  const li = el("li", "new-marker");
  li.setAttribute("role", "separator");
  li.append(el("span", "", "New"));
  return li;
}

function noticeNode(n) {
  const li = el("li", `line notice ${n.cls || ""}`);
  li.dataset.key = String(n.key);
  const text = el("span", "text", n.text);
  if (n.action) {
    const b = el("button", "msg-act notice-btn", n.action.label);
    b.type = "button";
    b.addEventListener("click", () => n.action.run());
    text.append(" ", b);
  }
  li.append(el("span", "ts"), el("span", "who star", "–"), text);
  return li;
}

function pendingNode(st, p) {
  const li = el("li", "line msg own pending");
  li.dataset.label = p.label;
  li.append(el("span", "ts", p.error ? "!" : "…"));
  const body = el("span", "text");
  if (p.kind === "me") {
    li.classList.add("action");
    li.append(el("span", "who star", "*"));
    body.append(nameNode(st.me, "actor"), " ");
  } else {
    li.append(nameNode(st.me));
  }
  body.append(textNodes(p.text, st.me));
  body.append(el("span", "status", p.error ? ` not sent: ${p.error}` : " sending…"));
  if (p.error) {
    for (const [cls, label] of [["retry", "Retry"], ["discard", "Discard"]]) {
      const b = el("button", `pending-btn ${cls}`, label);
      b.type = "button";
      body.append(" ", b);
    }
  }
  li.append(body);
  if (p.error) li.classList.add("failed");
  return li;
}

const list = () => $("messages");
const log = () => $("log");
const atBottom = () => log().scrollHeight - log().scrollTop - log().clientHeight < 40;
const scrollDown = () => { log().scrollTop = log().scrollHeight; };

/** Put ``node`` in the list by its numeric data-key, before any pending line. */
function place(node) {
  const key = Number(node.dataset.key);
  let after = list().lastElementChild;
  while (after && (after.dataset.label || Number(after.dataset.key) > key)) after = after.previousElementSibling;
  if (after) after.after(node); else list().prepend(node);
}

export function insertEvent(st, c, ev) {
  const bottom = atBottom();
  const node = eventNode(ev, st, c);
  const old = list().querySelector(`li[data-key="${CSS.escape(String(ev.id))}"]`);
  if (old) { old.replaceWith(node); return; }
  place(node);
  const prev = node.previousElementSibling;
  if (!prev || prev.dataset.day !== node.dataset.day) markDays();
  if (bottom) scrollDown();
  else if (ev.type === "message" && !node.nextElementSibling?.dataset.key) $("jump").hidden = false;
}

/** A "Today" / "Yesterday" / date line before the first event of each day. */
function markDays() {
  let day = null;
  for (const li of [...list().children]) {
    if (li.classList.contains("day")) { li.remove(); continue; }
    if (!li.dataset.day || li.dataset.day === day) continue;
    day = li.dataset.day;
    const sep = el("li", "day");
    sep.setAttribute("role", "separator");
    sep.append(el("span", "", day));
    li.before(sep);
  }
}

/** Show ``ev`` again where it is (a message that was removed). */
export function replaceEvent(st, c, ev) {
  const old = list().querySelector(`li[data-key="${CSS.escape(String(ev.id))}"]`);
  if (old) old.replaceWith(eventNode(ev, st, c));
}

/** A refusal next to the message box (muted, forbidden, banned…); null clears it. */
export function composerError(text) {
  const e = $("composer-error");
  $("composer-error-text").textContent = text || "";
  e.hidden = !text;
}

export function addNotice(n) {
  const bottom = atBottom();
  place(noticeNode(n));
  if (bottom) scrollDown();
}

export function addPending(st, p) {
  list().append(pendingNode(st, p));
  scrollDown();
}

export function updatePending(st, p) {
  const old = list().querySelector(`li[data-label="${CSS.escape(p.label)}"]`);
  if (old) old.replaceWith(pendingNode(st, p));
}

export function removePending(p) {
  const old = list().querySelector(`li[data-label="${CSS.escape(p.label)}"]`);
  if (old) old.remove();
  if (state && !state.online) showBanner(state, Date.now(), "");
}

export function scrollAnchor() {
  return { height: log().scrollHeight, top: log().scrollTop, bottom: atBottom() };
}

export function restoreScroll(a) {
  markDays();
  if (a.bottom && a.top === 0 && a.height <= log().clientHeight) scrollDown();
  else log().scrollTop = log().scrollHeight - (a.height - a.top);
  fillIfShort();
}

/** Older history while the log does not fill the view yet. */
function fillIfShort() {
  const c = state.conversations.get(state.current);
  if (c && c.more && !c.loading && log().scrollHeight <= log().clientHeight + 10) {
    setTimeout(() => actions.loadOlder(), 0);
  }
}

/** Redraw everything for the current conversation. */
export function renderAll(st) {
  const c = st.conversations.get(st.current);
  renderSidebar(st);
  renderHeader(st);
  renderMembers(st);
  const nodes = [];
  if (c) {
    const evs = [...c.events.values()].sort((a, b) => a.id - b.id);
    const lines = [...evs.map((ev) => [ev.id, () => eventNode(ev, st, c)]),
                   ...c.notices.map((n) => [n.key, () => noticeNode(n)])];
    if (c.marker !== null && evs.some((ev) => ev.id > c.marker)) lines.push([c.marker + 0.25, newMarker]);
    lines.sort((a, b) => a[0] - b[0]);
    for (const [, make] of lines) nodes.push(make());
  }
  for (const p of st.pending.values()) if (p.key === st.current) nodes.push(pendingNode(st, p));
  list().replaceChildren(...nodes);
  markDays();
  scrollDown();
  $("jump").hidden = true;
  fillIfShort();
}

export function renderMembers(st) {
  const c = st.conversations.get(st.current);
  const names = c && c.isRoom ? (c.members || []) : c ? [st.me, c.key.slice(1)] : [];
  const me = st.me.toLowerCase();
  const sorted = [...new Set(names)].sort((a, b) =>
    (a.toLowerCase() !== me) - (b.toLowerCase() !== me) || a.toLowerCase().localeCompare(b.toLowerCase()));
  $("members-h").textContent = `Members (${sorted.length})`;
  const menu = document.querySelector("#member-list .member-actions");     // kept open across a refresh
  const openFor = menu ? menu.previousElementSibling.dataset.menuFor : null;
  const focused = menu && menu.contains(document.activeElement) ? document.activeElement.className : null;
  $("member-list").replaceChildren(...sorted.map((name) => {
    const li = el("li");
    const b = el("button", "member");
    b.type = "button";
    b.dataset.name = name;
    const guest = st.guests.has(name.toLowerCase()) || (name.toLowerCase() === me && isGuest(st));
    b.title = (name.toLowerCase() === me ? "you" : `Message ${name}`) + (guest ? " (guest)" : "");
    b.append(el("span", `avatar bg${nameColourIndex(name)}`, name.slice(0, 1).toUpperCase()), nameNode(name, "member-name"));
    if (guest) {
      b.classList.add("guest");
      b.append(el("span", "tag guest-tag", "guest"));
    }
    li.className = "member-row";
    li.append(b);
    // an account may moderate (the server decides): a menu per member, keyboard reachable
    if (c && c.isRoom && st.account && name.toLowerCase() !== me) {
      const m = el("button", "icon-btn member-menu", "⋯");
      m.type = "button";
      m.dataset.menuFor = name;
      m.setAttribute("aria-label", `Actions for ${name}`);
      m.setAttribute("aria-haspopup", "menu");
      m.setAttribute("aria-expanded", "false");
      m.title = `Actions for ${name}`;
      li.append(m);
    }
    return li;
  }));
  const again = openFor && [...document.querySelectorAll("#member-list .member-menu")]
    .find((b) => b.dataset.menuFor === openFor);
  if (again) {
    openMemberMenu(again, false);
    if (focused) again.nextElementSibling.querySelector(`[class="${CSS.escape(focused)}"]`)?.focus();
  }
}

// --- moderation: the member menu, the confirm dialog, the audit log --------------------------
const MOD_VERBS = { kick: "Kick", mute: "Mute", ban: "Ban", delete: "Remove" };

function closeMemberMenu(focusBack = false) {
  const open = document.querySelector("#member-list .member-actions");
  if (!open) return;
  const btn = open.previousElementSibling;
  open.remove();
  if (btn) {
    btn.setAttribute("aria-expanded", "false");
    if (focusBack) btn.focus();
  }
}

function openMemberMenu(btn, focus = true) {
  const name = btn.dataset.menuFor;
  const wasOpen = btn.getAttribute("aria-expanded") === "true";
  closeMemberMenu();
  if (wasOpen) return;
  const menu = el("div", "member-actions");
  menu.setAttribute("role", "menu");
  menu.setAttribute("aria-label", `Actions for ${name}`);
  const item = (text, cls, run) => {
    const b = el("button", `menu-item ${cls}`, text);
    b.type = "button";
    b.setAttribute("role", "menuitem");
    b.addEventListener("click", () => { closeMemberMenu(); run(); });
    menu.append(b);
  };
  item(`Message ${name}`, "dm", () => actions.switchTo("@" + name));
  if (actions.canModerate(state.current)) {     // a moderator here, or a server admin
    for (const action of ["kick", "mute", "ban"]) {
      item(`${MOD_VERBS[action]} ${name}…`, `danger ${action}`, () => openModDialog({ action, room: state.current, target: name }));
    }
  }
  menu.addEventListener("keydown", (e) => {
    const items = [...menu.querySelectorAll(".menu-item")];
    const i = items.indexOf(document.activeElement);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      items[(i + (e.key === "ArrowDown" ? 1 : -1) + items.length) % items.length].focus();
    } else if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      closeMemberMenu(true);
    }
  });
  btn.after(menu);
  btn.setAttribute("aria-expanded", "true");
  if (focus) menu.querySelector(".menu-item").focus();
}

let modFrame = null;        // the request the dialog confirms

/** Ask for a reason (and how long) before a kick, mute, ban or removal. */
export function openModDialog(frame) {
  modFrame = frame;
  const verb = MOD_VERBS[frame.action] || frame.action;
  $("mod-h").textContent = frame.action === "delete" ? "Remove this message?" : `${verb} ${frame.target}`;
  $("mod-what").textContent = {
    kick: `${frame.target} is put out of ${frame.room} (and may come back).`,
    mute: `${frame.target} cannot speak in ${frame.room}.`,
    ban: `${frame.target} is put out of ${frame.room} and cannot come back.`,
    delete: `It is removed for everyone in ${frame.room}, and from the history.`,
  }[frame.action] || "";
  $("mod-duration-row").hidden = frame.action !== "mute" && frame.action !== "ban";
  $("mod-duration").value = frame.action === "ban" ? "86400" : "600";
  $("mod-reason").value = "";
  $("mod-error").textContent = "";
  $("mod-submit").textContent = verb;
  $("mod-submit").disabled = false;
  $("mod").showModal();
  $(frame.action === "delete" ? "mod-submit" : "mod-reason").focus();
}

function submitModDialog() {
  if (!modFrame) return;
  const frame = { ...modFrame };
  const reason = $("mod-reason").value.trim();
  if (reason) frame.reason = reason;
  if (!$("mod-duration-row").hidden && $("mod-duration").value) frame.duration = Number($("mod-duration").value);
  $("mod-submit").disabled = true;
  actions.moderate(frame, (error) => {
    $("mod-submit").disabled = false;
    if (error) { $("mod-error").textContent = error; return; }
    modFrame = null;
    $("mod").close();
    $("input").focus();
  });
}

/** The audit log (server admins) in the side panel: null while it loads;
 *  ``append``: an older page below the ones shown. */
export function showAudit(entries, more = false, error = null, append = false) {
  $("results").hidden = false;
  $("results").dataset.mode = "audit";
  $("results-h").textContent = "Audit log";
  const out = $("result-list");
  out.querySelector(".audit-more")?.remove();
  if (entries === null) { out.replaceChildren(el("li", "dim", "Loading…")); return; }
  if (error) { (append ? out.append.bind(out) : out.replaceChildren.bind(out))(el("li", "error", error)); return; }
  const items = entries.map((x) => {
    const li = el("li", "audit-entry");
    li.dataset.id = String(x.id);
    const head = el("div", "result-head");
    head.append(timeNode(x.ts), " ", x.room ? el("span", "result-conv", x.room) : el("span", "dim", "server-wide"));
    const line = el("div", "audit-line");
    line.append(nameNode(x.by || "?", "actor"), ` ${x.action}`);
    if (x.target) line.append(" ", nameNode(String(x.target), "actor"));
    if (x.until) line.append(" until ", timeNode(x.until));
    if (x.reason) line.append(": ", el("span", "reason", x.reason));
    li.append(head, line);
    return li;
  });
  if (!append) out.replaceChildren(...(items.length ? items : [el("li", "dim", "No moderation yet.")]));
  else out.append(...items);
  if (more && entries.length) {
    const li = el("li", "audit-more");
    const b = el("button", "text-btn small", "Older");
    b.type = "button";
    b.addEventListener("click", () => actions.audit(entries[entries.length - 1].id));
    li.append(b);
    out.append(li);
  }
}

// --- search -------------------------------------------------------------------------------
export function showResults(st, query, messages, error) {
  $("results").hidden = false;
  delete $("results").dataset.mode;
  $("results-h").textContent = `Search: ${query}`;
  const list = $("result-list");
  if (messages === null) { list.replaceChildren(el("li", "dim", "Searching…")); return; }
  if (error) { list.replaceChildren(el("li", "error", error)); return; }
  if (!messages.length) { list.replaceChildren(el("li", "dim", "Nothing found.")); return; }
  list.replaceChildren(...messages.map((ev) => {
    const li = el("li");
    const b = el("button", "result");
    b.type = "button";
    const key = ev.to ? "@" + (ev.from.toLowerCase() === st.me.toLowerCase() ? ev.to : ev.from) : ev.room || "#general";
    b.dataset.key = key;
    b.dataset.id = String(ev.id);
    const head = el("span", "result-head");
    head.append(el("span", "result-conv", key), " ", nameNode(ev.from), " ",
                el("time", "ts", localDateTime(ev.ts)));
    const body = el("span", "result-text");
    body.append(textNodes(ev.text, st.me, false));
    b.append(head, body);
    li.append(b);
    return li;
  }));
}

/** Scroll to a shown event and make it flash (a search result). */
export function showEvent(id) {
  const li = list().querySelector(`li[data-key="${CSS.escape(id)}"]`);
  if (!li) return;
  li.scrollIntoView({ block: "center" });
  li.classList.add("flash");
  setTimeout(() => li.classList.remove("flash"), 2500);
}

// --- notifications ------------------------------------------------------------------------
export function notify(c, ev) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const title = c.isRoom ? `${ev.from} in ${c.key}` : `${ev.from} (direct message)`;
  const options = { body: (ev.kind === "me" ? `* ${ev.from} ` : "") + ev.text,
                    tag: c.key, icon: "icon-192.png", data: { key: c.key } };
  try {
    const n = new Notification(title, options);
    n.onclick = () => { window.focus(); actions.switchTo(c.key); n.close(); };
  } catch {
    // Android allows notifications only from the service worker (sw.js opens the
    // conversation when one is tapped)
    navigator.serviceWorker?.ready.then((reg) => reg.showNotification(title, options)).catch(() => {});
  }
}

function updateNotifyState() {
  const s = $("notify-state");
  if (!("Notification" in window)) { s.textContent = "not supported here"; $("notify-btn").disabled = true; return; }
  s.textContent = { granted: "on: mentions and direct messages while the tab is hidden",
                    denied: "blocked in the browser's site settings", default: "" }[Notification.permission] || "";
  $("notify-btn").hidden = Notification.permission !== "default";
}

// --- theme and accent --------------------------------------------------------------------
const systemDark = matchMedia("(prefers-color-scheme: dark)");

// theme and accent are remembered in localStorage (when the browser allows it)
function pref(key) {
  try { return localStorage.getItem("parley." + key); } catch { return null; }
}
function setPref(key, value) {
  try {
    if (value === null) localStorage.removeItem("parley." + key);
    else localStorage.setItem("parley." + key, value);
  } catch { /* not remembered */ }
}

function applyTheme() {
  const choice = pref("theme") || "dark";
  const theme = choice === "system" ? (systemDark.matches ? "dark" : "light") : choice;
  document.documentElement.dataset.theme = theme;
  const accent = pref("accent");
  if (accent && /^#[0-9a-f]{6}$/i.test(accent)) document.documentElement.style.setProperty("--accent", accent);
  else document.documentElement.style.removeProperty("--accent");
  const bg = getComputedStyle(document.documentElement).getPropertyValue("--surface").trim();
  document.querySelector('meta[name="theme-color"]').content = bg || "#1f2229";
  for (const r of document.querySelectorAll('input[name="theme"]')) r.checked = r.value === choice;
  $("accent").value = accent || getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#6d8dff";
}

// --- drawers (phone) ---------------------------------------------------------------------
function setDrawer(open) {
  const app = $("app");
  app.classList.toggle("drawer-open", open);
  $("menu-btn").setAttribute("aria-expanded", String(open));
  $("scrim").hidden = !open;
  document.querySelector(".main").inert = open;     // keyboard and screen reader stay in the drawer
  if (open) (document.querySelector(".conv[aria-current]") || document.querySelector(".conv"))?.focus();
}

function setMembers(open) {
  $("members").hidden = !open;
  $("members-btn").setAttribute("aria-expanded", String(open));
  if (open) actions.requestMembers();
}

/** Tab after the start of a name completes it ("ca" -> "carol: " at the start of
 * the line, "carol " elsewhere).  Nothing to complete: Tab moves focus as usual. */
function completeName(input) {
  const at = input.selectionStart;
  if (at !== input.selectionEnd) return false;
  const before = input.value.slice(0, at);
  const word = /@?[A-Za-z0-9_.-]+$/.exec(before);
  if (!word) return false;
  const prefix = word[0].replace(/^@/, "").toLowerCase();
  const c = state.conversations.get(state.current);
  const names = [...(c && c.members ? c.members : []), ...(c && !c.isRoom ? [c.key.slice(1)] : []), ...state.users];
  const match = names.find((n) => n.toLowerCase().startsWith(prefix) && n.toLowerCase() !== state.me.toLowerCase());
  if (!match) return false;
  const start = at - word[0].length;
  const name = (word[0].startsWith("@") ? "@" : "") + match;
  const tail = start === 0 ? ": " : " ";
  input.value = before.slice(0, start) + name + tail + input.value.slice(at);
  const caret = start + name.length + tail.length;
  input.setSelectionRange(caret, caret);
  return true;
}

// --- wiring ----------------------------------------------------------------------------------
export function init(st, acts) {
  state = st;
  actions = acts;
  applyTheme();
  systemDark.addEventListener("change", applyTheme);
  updateNotifyState();
  if (!narrow.matches && matchMedia("(min-width: 1100px)").matches) setMembers(true);

  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if ($("login-submit").disabled) return;
    $("login-error").textContent = "";
    $("login-notice").hidden = true;
    markInvalid(null);
    const password = $("login-password").value;
    if (registerMode) {
      const problem = !password ? "Choose a password for your account (8 characters or more)."
        : password.length < 8 ? "Passwords need 8 characters or more."
        : password !== $("login-confirm").value ? "The two passwords differ." : "";
      if (problem) {
        $("login-error").textContent = problem;
        const field = password && password.length >= 8 ? "login-confirm" : "login-password";
        markInvalid(field);
        $(field).focus();
        return;
      }
    }
    actions.login($("login-name").value, password, registerMode);
  });
  $("login-password").addEventListener("input", updateLoginButton);
  $("login-mode").addEventListener("click", () => {
    setRegisterMode(!registerMode);
    $("login-error").textContent = "";
    markInvalid(null);
    $($("login-name").value ? "login-password" : "login-name").focus();
  });
  setRegisterMode(false);

  // the account dialog
  $("account-btn").addEventListener("click", () => openAccount(state));
  $("account-close").addEventListener("click", () => closeAccount());
  $("logout").addEventListener("click", () => actions.logOut());
  $("sessions-refresh").addEventListener("click", () => loadSessions());
  $("session-list").addEventListener("click", (e) => {
    const b = e.target.closest("button.revoke");
    if (!b) return;
    b.disabled = true;
    actions.revoke(b.dataset.id, (error) => {
      if (error) { b.disabled = false; accountMessage(error, true); return; }
      accountMessage("That session is logged out.");
      loadSessions();
    });
  });
  $("revoke-others").addEventListener("click", () => {
    actions.revoke(null, (error) => {
      if (error) { accountMessage(error, true); return; }
      accountMessage("Every other session is logged out.");
      loadSessions();
    });
  });
  $("register-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const pw = $("register-password").value;
    const problem = pw.length < 8 ? "Passwords need 8 characters or more."
      : pw !== $("register-confirm").value ? "The two passwords differ." : "";
    $("register-error").textContent = problem;
    if (problem) { $(pw.length < 8 ? "register-password" : "register-confirm").focus(); return; }
    actions.registerName(pw, (error) => {
      $("register-password").value = "";
      $("register-confirm").value = "";
      if (error) { $("register-error").textContent = error; $("register-password").focus(); return; }
      renderAccount(state);
      accountMessage(`Registered: “${state.me}” is yours. Log in with it on your other devices.`);
      loadSessions();
      $("account-close").focus();
    });
  });
  $("password-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const old = $("password-old").value;
    const pw = $("password-new").value;
    const problem = !old ? "Type your current password." : pw.length < 8 ? "Passwords need 8 characters or more."
      : pw !== $("password-confirm").value ? "The two new passwords differ." : "";
    $("password-error").textContent = problem;
    if (problem) return;
    actions.changePassword(old, pw, (error) => {
      for (const id of ["password-old", "password-new", "password-confirm"]) $(id).value = "";
      if (error) { $("password-error").textContent = error; $("password-old").focus(); return; }
      $("password-section").open = false;
      accountMessage("Password changed. Your other sessions are logged out.");
      loadSessions();
    });
  });

  const input = $("input");
  const grow = () => { input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight, 160) + "px"; };
  const send = () => {
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    grow();
    actions.submit(text);
  };
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); input.focus(); });
  input.addEventListener("input", grow);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
    else if (e.key === "Tab" && !e.shiftKey && completeName(input)) e.preventDefault();
  });
  // Alt+Up / Alt+Down: the previous / next conversation of the sidebar
  document.addEventListener("keydown", (e) => {
    if (!e.altKey || (e.key !== "ArrowUp" && e.key !== "ArrowDown") || $("app").hidden) return;
    const keys = [...document.querySelectorAll("#sidebar button.conv")].map((b) => b.dataset.key);
    if (keys.length < 2) return;
    const i = keys.indexOf(state.current);
    e.preventDefault();
    actions.switchTo(keys[(i + (e.key === "ArrowDown" ? 1 : -1) + keys.length) % keys.length]);
  });

  const onConv = (e) => {
    const b = e.target.closest("button.conv");
    if (!b) return;
    actions.switchTo(b.dataset.key);
    if (narrow.matches) { setDrawer(false); input.focus(); }
  };
  $("room-list").addEventListener("click", onConv);
  $("dm-list").addEventListener("click", onConv);

  const inlineForm = (btn, form, field, go) => {
    $(btn).addEventListener("click", () => { $(form).hidden = !$(form).hidden; if (!$(form).hidden) $(field).focus(); });
    $(form).addEventListener("submit", (e) => {
      e.preventDefault();
      const v = $(field).value.trim();
      if (!v) return;
      $(field).value = "";
      $(form).hidden = true;
      go(v);
      if (narrow.matches) setDrawer(false);
    });
    $(field).addEventListener("keydown", (e) => { if (e.key === "Escape") { e.stopPropagation(); $(form).hidden = true; $(btn).focus(); } });
  };
  inlineForm("add-room", "room-form", "room-input", (v) => actions.submit(`/join ${v}`));
  $("add-room").addEventListener("click", () => {     // suggest the rooms that exist
    if (!$("room-form").hidden) actions.listRooms((rooms) => $("room-names").replaceChildren(
      ...rooms.map((r) => { const o = el("option"); o.value = r.room; o.label = r.topic || `${r.count} online`; return o; })));
  });
  inlineForm("add-dm", "dm-form", "dm-input", (v) => actions.submit(`/msg ${v}`));

  $("member-list").addEventListener("click", (e) => {
    const m = e.target.closest("button.member-menu");
    if (m) { openMemberMenu(m); return; }
    const b = e.target.closest("button.member");
    if (!b || b.dataset.name.toLowerCase() === state.me.toLowerCase()) return;
    actions.switchTo("@" + b.dataset.name);
    if (narrow.matches) setMembers(false);
  });

  $("menu-btn").addEventListener("click", () => setDrawer(!$("app").classList.contains("drawer-open")));
  $("scrim").addEventListener("click", () => setDrawer(false));
  $("members-btn").addEventListener("click", () => setMembers($("members").hidden));
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    if ($("app").classList.contains("drawer-open")) { setDrawer(false); $("menu-btn").focus(); }
    else if (!$("results").hidden) { $("results").hidden = true; input.focus(); }
    else if (narrow.matches && !$("members").hidden) { setMembers(false); $("members-btn").focus(); }
  });

  $("mod-form").addEventListener("submit", (e) => { e.preventDefault(); submitModDialog(); });
  $("mod-cancel").addEventListener("click", () => { modFrame = null; $("mod").close(); });
  $("composer-error-close").addEventListener("click", () => { composerError(null); input.focus(); });
  document.addEventListener("click", (e) => {           // a click elsewhere closes the member menu
    if (!e.target.closest(".member-actions, .member-menu")) closeMemberMenu();
  });

  const touch = matchMedia("(hover: none)");
  $("messages").addEventListener("click", (e) => {      // Remove a message (yours, or as a moderator)
    const r = e.target.closest("button.remove");
    if (r) { openModDialog({ action: "delete", room: state.current, id: Number(r.dataset.id) }); return; }
    const line = touch.matches && !e.target.closest("a, button") && e.target.closest("li.can-remove");
    if (!line) return;
    for (const other of list().querySelectorAll("li.picked")) if (other !== line) other.classList.remove("picked");
    line.classList.toggle("picked");
  });
  $("messages").addEventListener("click", (e) => {      // Retry / Discard a message not sent
    const b = e.target.closest("button.pending-btn");
    const li = b && b.closest("li[data-label]");
    if (!li) return;
    if (b.classList.contains("retry")) actions.retry(li.dataset.label);
    else actions.discard(li.dataset.label);
  });
  $("log").addEventListener("scroll", () => {
    if ($("log").scrollTop < 80) actions.loadOlder();
    if (atBottom()) $("jump").hidden = true;
  }, { passive: true });
  $("jump").addEventListener("click", () => { scrollDown(); $("jump").hidden = true; input.focus(); });

  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("search-input").value.trim();
    if (q) actions.search(q);
  });
  $("results-close").addEventListener("click", () => { $("results").hidden = true; input.focus(); });
  $("result-list").addEventListener("click", (e) => {
    const b = e.target.closest("button.result");
    if (!b) return;
    $("results").hidden = true;
    actions.reveal(b.dataset.key, Number(b.dataset.id));
  });

  $("settings-btn").addEventListener("click", () => { updateNotifyState(); $("settings").showModal(); });
  for (const r of document.querySelectorAll('input[name="theme"]')) {
    r.addEventListener("change", () => { setPref("theme", r.value); applyTheme(); });
  }
  $("accent").addEventListener("input", () => { setPref("accent", $("accent").value); applyTheme(); });
  $("accent-reset").addEventListener("click", () => { setPref("accent", null); applyTheme(); });
  $("notify-btn").addEventListener("click", async () => {
    try { await Notification.requestPermission(); } catch { /* old browsers */ }
    updateNotifyState();
  });
  $("signout").addEventListener("click", () => { $("settings").close(); actions.signOut(); });

  // keep the composer above the on-screen keyboard where dvh is not enough
  if (window.visualViewport) {
    const fit = () => {
      if (Math.abs(visualViewport.scale - 1) > 0.01) return;      // pinch-zoomed: leave the layout
      document.documentElement.style.setProperty("--vvh", `${visualViewport.height}px`);
    };
    visualViewport.addEventListener("resize", fit);
    fit();
  }
  narrow.addEventListener("change", () => setDrawer(false));
  // a notification tapped while the service worker showed it
  navigator.serviceWorker?.addEventListener("message", (e) => {
    if (e.data && e.data.type === "open" && typeof e.data.key === "string") actions.switchTo(e.data.key);
  });
}
