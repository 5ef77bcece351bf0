// Parley web client: state and protocol.  One WebSocket to ws(s)://<this host>/ws,
// one JSON frame per text message (docs/protocol.md).  Rendering lives in ui.js;
// this file decides what happens, ui.js shows it.
import * as ui from "./ui.js";
import { conversationOf, describeMod, deviceName, formatDuration, mentions, parse, HELP, NAME_RE } from "./util.js";

const CLIENT_VERSION = "0.1.0";
const BACKOFF = [1000, 2000, 4000, 8000, 15000];   // reconnect delays (ms), then 15 s each
const PAGE = 50;                                    // history page size

// --- what we remember between visits (localStorage) ------------------------------
const store = {
  get(key) { try { return localStorage.getItem("parley." + key); } catch { return null; } },
  set(key, value) {
    try {
      if (value === null || value === undefined) localStorage.removeItem("parley." + key);
      else localStorage.setItem("parley." + key, String(value));
    } catch { /* private mode: nothing is remembered */ }
  },
};

// --- state ------------------------------------------------------------------------------
/** One conversation: a room ("#python") or a direct message ("@bob"). */
function newConversation(key) {
  return {
    key,
    isRoom: key.startsWith("#"),
    topic: "",
    members: null,          // names (rooms), null until known
    events: new Map(),      // id -> message / join / leave / topic frame
    more: true,             // older history may exist on the server
    loading: false,
    unread: 0,
    mentions: 0,
    readId: 0,
    marker: null,           // the read position when the conversation was opened
    notices: [],            // local lines (help, errors), not from the server
    removed: new Map(),     // id of a removed message -> who removed it (from ``mod`` delete frames)
    gapChecked: false,      // the events between the room frame's last messages were asked for
  };
}

export const state = {
  me: store.get("name") || "",
  token: store.get("token"),
  instance: store.get("instance"),
  lastId: Number(store.get("lastId")) || 0,
  conversations: new Map(),
  current: store.get("current") || "#general",
  pending: new Map(),       // label -> {label, key, kind, text, error}: sent, not yet acknowledged
  online: false,            // welcomed on an open connection
  users: [],
  account: null,            // logged in: {name, admin, session}; null: a guest (or not yet welcomed)
  auth: null,               // the server's --auth: "off", "optional" or "required" (from the welcome)
  guests: new Set(),        // lower-cased names of the guests we know of (welcome, users, room, messages)
  // Rooms we probably moderate (lower-cased): the server does not tell ranks, so
  // this is a guess from what we saw (we created the room, were made a moderator,
  // a moderation of ours went through).  It only decides which buttons to show:
  // the server decides, and answers "forbidden" when the guess is wrong.
  gone: new Set(),          // rooms we were kicked or banned from (their late frames are ignored)
};

// The password of a login in progress: kept in memory for the one hello it is
// sent in, forgotten as soon as the server answers (or the connection fails).
// Never stored: reconnecting and reloading use the login token of the welcome.
let credentials = null;     // {password, register} | null
let helloKind = "guest";    // what the last hello carried: "password", "register", "token" or "guest"
let loggingOut = false;
const lower = (n) => String(n).toLowerCase();

let ws = null;
let attempt = 0;
let retryTimer = null;
let stopped = true;          // true: no automatic reconnect (signed out / name refused)
let lastHeard = Date.now();
let pingInterval = 30;
const requests = new Map();  // label -> callback(frame) for join/part/history/search/users/topic
const labelPrefix = "w" + Math.random().toString(36).slice(2, 8);
let labelCount = 0;
const nextLabel = () => `${labelPrefix}-${++labelCount}`;

/** Messages typed but not yet acknowledged survive a reload (same labels, so
 * the server's catch-up still tells which of them went through). */
function savePending() {
  const keep = [...state.pending.values()].filter((p) => !p.error)
    .map(({ label, key, kind, text }) => ({ label, key, kind, text }));
  store.set("pending", keep.length ? JSON.stringify(keep) : null);
}

function loadPending() {
  try {
    for (const p of JSON.parse(store.get("pending") || "[]")) {
      if (p && typeof p.label === "string" && typeof p.text === "string" && typeof p.key === "string") {
        state.pending.set(p.label, { label: p.label, key: p.key, kind: p.kind === "me" ? "me" : "say",
                                     text: p.text, error: null });
      }
    }
  } catch { store.set("pending", null); }
}

export function conversation(key) {
  let c = state.conversations.get(key);
  if (!c) {
    c = newConversation(key);
    state.conversations.set(key, c);
  }
  return c;
}

// --- one connection per name, across tabs --------------------------------------------
// The server keeps one connection per session: a second tab resuming with the same
// token replaces the first, which would reconnect and replace the second, and so
// on.  So tabs agree: the one connecting last says so, the others step back and
// offer "Use here".
const tabId = Math.random().toString(36).slice(2);
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("parley") : null;
if (tabs) {
  tabs.onmessage = (e) => {
    const m = e.data;
    if (m && m.type === "claim" && m.tab !== tabId && !stopped &&
        typeof m.name === "string" && m.name.toLowerCase() === state.me.toLowerCase()) stepBack();
  };
}

function stepBack() {
  // No reconnecting from now on.  The socket is left open: the other tab's hello
  // takes the session over and the server closes this one quietly (closing it
  // here would tell everyone that we left, then that we came back).
  stopped = true;
  clearTimeout(retryTimer);
  ui.showElsewhere();
}

// --- the connection ------------------------------------------------------------------
function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

// The server allows `rate` frames a second with bursts of `burst` (welcome.limits)
// and disconnects a client that keeps going over.  So frames wait in `outbox` and
// leave at that pace: a long queue typed offline, or many read markers, never flood.
const bucket = { rate: 5, burst: 20, tokens: 18, at: Date.now() };
let outbox = [];
let pumpTimer = null;

function pump() {
  clearTimeout(pumpTimer);
  pumpTimer = null;
  if (!ws || ws.readyState !== WebSocket.OPEN) { outbox = []; return; }
  const now = Date.now();
  bucket.tokens = Math.min(bucket.burst - 2, bucket.tokens + ((now - bucket.at) / 1000) * bucket.rate);
  bucket.at = now;
  while (outbox.length && bucket.tokens >= 1) {
    ws.send(JSON.stringify(outbox.shift()));
    bucket.tokens -= 1;
  }
  if (outbox.length) pumpTimer = setTimeout(pump, Math.ceil(((1 - bucket.tokens) / bucket.rate) * 1000));
}

/** Send a frame (paced; pongs and hellos at once).  False when not connected. */
function send(frame) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  if (frame.type === "pong" || frame.type === "hello" || frame.type === "bye") {
    ws.send(JSON.stringify(frame));
  } else {
    outbox.push(frame);
    if (!pumpTimer) pump();
  }
  return true;
}

function request(frame, callback) {
  const label = nextLabel();
  if (callback) requests.set(label, callback);
  if (!send({ ...frame, label })) {
    requests.delete(label);
    notice(state.current, "Not connected: try again once reconnected.");
  }
}

export function connect() {
  stopped = false;
  if (tabs && state.me) tabs.postMessage({ type: "claim", tab: tabId, name: state.me });
  clearTimeout(retryTimer);
  if (ws) { ws.onclose = null; ws.close(); }
  outbox = [];                  // frames for the old connection (pending messages are resent)
  const sock = new WebSocket(socketUrl());
  ws = sock;
  sock.onopen = () => {
    lastHeard = Date.now();
    const hello = { type: "hello", version: 1, name: state.me, caps: ["rooms"],
                    client: "parley-web", client_version: CLIENT_VERSION };
    if (credentials) {
      // a login: the password (over wss://, or to this machine) instead of a token
      Object.assign(hello, { password: credentials.password, device: deviceName() });
      if (credentials.register) hello.register = true;
      helloKind = credentials.register ? "register" : "password";
    } else if (state.token) {
      Object.assign(hello, { token: state.token, last_id: state.lastId, instance: state.instance });
      helloKind = "token";
    } else {
      helloKind = "guest";
    }
    send(hello);
  };
  sock.onmessage = (msg) => {
    lastHeard = Date.now();
    let frame;
    try { frame = JSON.parse(msg.data); } catch { return; }
    if (frame && typeof frame.type === "string") handle(frame);
  };
  sock.onclose = () => {
    if (ws !== sock) return;
    ws = null;
    const wasOnline = state.online;
    state.online = false;
    for (const [label, cb] of requests) { requests.delete(label); cb({ type: "error", code: "lost" }); }
    if (stopped) return;
    if (credentials && !wasOnline) {          // a login that got no answer: ask again, never retry with it
      credentials = null;
      stopped = true;
      ui.showLogin("Could not reach the server: try again.", state.me, { focus: "password" });
      return;
    }
    scheduleReconnect(wasOnline ? 0 : null);
  };
}

function scheduleReconnect(delay = null, reason = "") {
  clearTimeout(retryTimer);
  const wait = delay ?? BACKOFF[Math.min(attempt, BACKOFF.length - 1)] * (0.8 + Math.random() * 0.4);
  attempt += 1;
  const until = Date.now() + wait;
  ui.showBanner(state, until, reason);
  retryTimer = setTimeout(connect, wait);
}

/** Reconnect now (the network came back, the tab became visible). */
function reconnectSoon() {
  if (!stopped && !ws && state.me) { attempt = 0; connect(); }
}

// A connection that went quiet (a phone that slept) is closed and retried: the
// server pings after ping_interval seconds of silence, so we hear something.
setInterval(() => {
  if (ws && state.online && Date.now() - lastHeard > (2 * pingInterval + 15) * 1000) ws.close();
}, 5000);
addEventListener("online", reconnectSoon);

// --- frames from the server ----------------------------------------------------------
function handle(f) {
  switch (f.type) {
    case "welcome": return onWelcome(f);
    case "message": case "join": case "leave": case "topic": case "mod": return addEvent(f, true);
    case "invited": return onInvited(f);
    case "ack": return onAck(f);
    case "error": return onError(f);
    case "room": return answer(f) || onRoom(f);
    case "unread": return onUnread(f);
    case "users": return answer(f) || onUsers(f);
    case "history": case "results": case "rooms": case "sessions": case "audit": return answer(f);
    case "account": return answer(f) || onAccount(f);
    case "presence": return onPresence(f);
    case "ping": return send({ type: "pong", token: f.token });
    case "bye": return onBye(f);
    default: return undefined;    // forward compatible: unknown frames are ignored
  }
}

function answer(f) {
  const cb = f.label && requests.get(f.label);
  if (!cb) return false;
  requests.delete(f.label);
  cb(f);
  return true;
}

function onWelcome(w) {
  if (w.instance && state.instance && w.instance !== state.instance) {
    // another database: its ids mean something else, start afresh
    state.conversations.clear();
    state.lastId = 0;
  } else if (w.truncated) {
    // the catch-up does not reach back to what we have: drop it rather than
    // show a hole; scrolling up pages back from the catch-up
    for (const c of state.conversations.values()) { c.events.clear(); c.more = true; c.gapChecked = false; }
  }
  credentials = null;            // logged in: the password is forgotten, the token does from now on
  state.me = w.name;
  state.token = w.token || state.token;
  state.account = w.account && typeof w.account.name === "string" ? w.account : null;
  state.auth = typeof w.auth === "string" ? w.auth : null;
  state.guests = new Set((w.guests || []).map(lower));
  state.instance = w.instance || state.instance;
  state.users = w.users || [];
  pingInterval = (w.limits && w.limits.ping_interval) || 30;
  if (w.limits && w.limits.rate > 0 && w.limits.burst > 2) {
    bucket.rate = w.limits.rate;
    bucket.burst = w.limits.burst;
  }
  store.set("name", state.me);
  store.set("token", state.token);
  store.set("instance", state.instance);
  store.set("account", state.account ? "1" : null);     // a login (not a guest): no secret in it
  if (Array.isArray(w.rooms)) {
    const joined = new Set(w.rooms.map((r) => r.room.toLowerCase()));
    for (const key of [...state.conversations.keys()]) {
      if (key.startsWith("#") && !joined.has(key.toLowerCase())) state.conversations.delete(key);
    }
    for (const r of w.rooms) onRoom(r);
  } else {
    conversation("#general");
  }
  for (const ev of w.history || []) {
    // not a room we are in (any more): a kick while we were away is not a reason to bring it back
    if (Array.isArray(w.rooms) && ev.room && !ev.to && !state.conversations.has(ev.room) &&
        ![...state.conversations.keys()].some((k) => lower(k) === lower(ev.room))) continue;
    addEvent(ev, false);
  }
  if (w.truncated) notice(state.current, "You missed more than one catch-up holds: scroll up for older messages.");
  noteId(w.last_id);
  if (!state.conversations.has(state.current)) state.current = "#general";
  state.online = true;
  attempt = 0;
  ui.hideBanner();
  ui.showApp(state);
  ui.renderAll(state);
  // what was typed while offline, in order; labels already seen in the catch-up are gone
  for (const p of state.pending.values()) sendPending(p);
  const c = state.conversations.get(state.current);
  if (c && c.isRoom && c.members === null) requestMembers();
  if (c) fillGap(c);
  markRead();
}

/** A room's frame brings its last few *messages* only: the joins, moderation
 * lines and removals between and after them are asked for once, when the room
 * is first shown (after a reload, memory starts empty; later, the catch-up of
 * each reconnect keeps it whole).  At most a few pages forward. */
function fillGap(c, after = null, pages = 4) {
  if (!c.isRoom || (c.gapChecked && after === null) || !state.online) return;
  let oldest = Infinity;
  for (const id of c.events.keys()) if (id < oldest) oldest = id;
  if (oldest === Infinity) return;     // nothing yet: paging back (loadOlder) covers it
  c.gapChecked = true;
  request({ type: "history", room: c.key, after: after ?? oldest - 1, limit: PAGE }, (f) => {
    if (f.type !== "history") { if (f.code === "lost") c.gapChecked = false; return; }
    const msgs = f.messages || [];
    for (const ev of msgs) addEvent({ ...ev, room: ev.room || c.key }, false);
    if (f.more && msgs.length && pages > 1) fillGap(c, msgs[msgs.length - 1].id, pages - 1);
    if (c.key === state.current) markRead();
  });
}

function noteId(id) {
  if (typeof id === "number" && id > state.lastId) {
    state.lastId = id;
    store.set("lastId", id);
  }
}

/** A message, join, leave or topic: store it in its conversation and show it. */
function addEvent(ev, live) {
  if (typeof ev.id !== "number") return;
  noteId(ev.id);
  const key = conversationOf(ev, state.me);
  if (!ev.to && state.gone.has(lower(key))) return;     // a room we were put out of
  const c = conversation(key);
  if (ev.label && ev.from && ev.from.toLowerCase() === state.me.toLowerCase()) settle(ev.label);
  if (c.events.has(ev.id)) return;
  c.events.set(ev.id, ev);
  if (ev.type === "message" && c.removed.has(ev.id)) markRemoved(ev, c.removed.get(ev.id));
  if (ev.type === "mod" && onMod(c, ev, live)) return;
  if (ev.type === "message" && ev.guest && live) state.guests.add(lower(ev.from));
  if (ev.type === "join" && c.members) {
    if (!c.members.includes(ev.name)) c.members.push(ev.name);
    // a join does not say whether the newcomer is a guest: the member list does
    if (live && key === state.current && state.auth === "optional") refreshMembersSoon();
  } else if (ev.type === "leave" && c.members) {
    c.members = c.members.filter((n) => n !== ev.name);
  } else if (ev.type === "topic") {
    c.topic = ev.topic || "";
  }
  const mine = ev.from && ev.from.toLowerCase() === state.me.toLowerCase();
  const shown = key === state.current && !document.hidden;
  if (ev.type === "message" && !mine && ev.id > c.readId) {
    const mention = !c.isRoom || mentions(ev.text, state.me);
    if (!shown) {
      c.unread += 1;
      if (mention) c.mentions += 1;
    }
    if (live && document.hidden && mention) ui.notify(c, ev);
  }
  if (key === state.current) {
    ui.insertEvent(state, c, ev);
    if (ev.type === "join" || ev.type === "leave") ui.renderMembers(state);
  }
  if (live) {
    ui.renderSidebar(state);
    if (key === state.current) ui.renderHeader(state);
    if (shown) markRead();
  }
}

const isMe = (name) => typeof name === "string" && lower(name) === lower(state.me);

function markRemoved(ev, by) {
  ev.deleted = true;
  ev.text = "";
  if (by) ev.removedBy = by;
}

/** May we moderate in room ``key`` (``owner``: make moderators there)?  Server admins
 * everywhere; else our role in the room, which the server tells in its room frames
 * (and live op/deop frames change).  The server checks every request anyway. */
export function canModerate(key, owner = false) {
  if (!state.account) return false;
  if (state.account.admin) return true;
  const c = key ? state.conversations.get(key) : null;
  const role = c && c.isRoom ? c.role : null;
  return role === "owner" || (role === "mod" && !owner);
}

/** A ``mod`` frame was stored in ``c``: what it changes.  True: already shown
 * (the room is gone: we were kicked or banned from it). */
function onMod(c, ev, live) {
  if (ev.action === "delete" && typeof ev.message === "number") {
    c.removed.set(ev.message, ev.by);
    const m = c.events.get(ev.message);
    if (m && m.type === "message") {
      markRemoved(m, ev.by);
      if (c.key === state.current) ui.replaceEvent(state, c, m);
    }
  }
  if (live && isMe(ev.target) && c.isRoom && (ev.action === "op" || ev.action === "deop")) {
    c.role = ev.action === "op" ? "mod" : null;
    if (state.online) ui.renderAll(state);
  }
  if (live && isMe(ev.target) && c.isRoom && ev.room && (ev.action === "kick" || ev.action === "ban")) {
    putOut(c, ev);
    return true;
  }
  if (live && isMe(ev.target) && ev.action === "mute") {
    ui.composerError(`You are muted in ${c.key}${untilText(ev)} by ${ev.by}${ev.reason ? ": " + ev.reason : ""}.`);
  } else if (live && isMe(ev.target) && ev.action === "unmute") {
    ui.composerError(null);
  }
  return false;
}

function untilText(ev) {
  if (!ev.until) return "";
  const sec = (Date.parse(ev.until) - Date.parse(ev.ts)) / 1000;
  return sec > 0 ? ` for ${formatDuration(Math.round(sec / 60) * 60 || sec)}` : "";
}

/** We were kicked or banned from a room: it leaves the sidebar, with a notice. */
function putOut(c, ev) {
  state.gone.add(lower(c.key));
  state.conversations.delete(c.key);
  const banned = ev.action === "ban";
  const text = `You were ${banned ? "banned from" : "kicked out of"} ${c.key}${banned ? untilText(ev) : ""} ` +
    `by ${ev.by}${ev.reason ? ": " + ev.reason : "."}${banned ? "" : ` You may /join ${c.key} again.`}`;
  if (state.current === c.key || !state.conversations.has(state.current)) {
    state.current = state.conversations.has("#general") ? "#general"
      : [...state.conversations.keys()][0] || "#general";
  }
  switchTo(state.current);
  notice(state.current, text, "error");
  ui.composerError(text);
}

function onInvited(f) {
  if (typeof f.room !== "string") return;
  state.gone.delete(lower(f.room));
  notice(state.current, `${f.by || "A moderator"} invited you to ${f.room}.`, "invite",
         { label: `Join ${f.room}`, run: () => joinRoom(f.room) });
}

/** ``names`` are online; ``guests`` (the frame's list) are the guests among them. */
function noteGuests(names, guests) {
  if (state.auth !== "optional") return;
  for (const n of names || []) state.guests.delete(lower(n));
  for (const n of guests || []) state.guests.add(lower(n));
}

let membersTimer = null;
function refreshMembersSoon() {
  clearTimeout(membersTimer);
  membersTimer = setTimeout(requestMembers, 400);
}

function onRoom(r) {
  state.gone.delete(lower(r.room));
  const c = conversation(r.room);
  c.topic = r.topic || "";
  c.role = r.role || null;                 // ours here: "owner", "mod" or none
  if (Array.isArray(r.members)) {
    c.members = [...r.members];
    noteGuests(r.members, r.guests);
  }
  for (const ev of r.history || []) addEvent({ ...ev, room: ev.room || r.room }, false);
  if (state.online) ui.renderAll(state);
}

function onUnread(u) {
  const key = u.room || (u.with ? "@" + u.with : null);
  if (!key) return;
  const c = conversation(key);
  c.unread = u.count || 0;
  c.mentions = u.mentions || 0;
  c.readId = Math.max(c.readId, u.read_id || 0);
  if (key === state.current && !document.hidden && c.unread) {
    c.marker = c.readId;
    ui.renderAll(state);
    markRead();
  }
  ui.renderSidebar(state);
}

function onUsers(f) {
  noteGuests(f.users, f.guests);
  if (f.room) conversation(f.room).members = [...f.users];
  else state.users = [...f.users];
  ui.renderMembers(state);
}

function onPresence(f) {
  const c = state.conversations.get(f.room);
  if (!c || !c.members) return;
  const set = new Set(c.members);
  for (const n of f.joined || []) set.add(n);
  for (const n of f.left || []) set.delete(n);
  c.members = [...set];
  if (f.room === state.current) ui.renderMembers(state);
}

function onAck(a) {
  if (state.pending.has(a.label)) settle(a.label);
  else answer(a);
}

function onError(e) {
  const p = e.label && state.pending.get(e.label);
  if (p) {
    if (e.code === "rate_limited") {          // try the same label again a little later
      setTimeout(() => sendPending(p), Math.max(250, (e.retry_after || 1) * 1000));
      return;
    }
    p.error = e.message || e.code;
    savePending();
    ui.updatePending(state, p);
    if (MOD_ERRORS.includes(e.code)) ui.composerError(e.message || e.code);
    return;
  }
  if (answer(e)) return;
  if (!state.online) {                        // hello refused
    const kind = helloKind;
    const login = credentials;
    credentials = null;                       // the server answered: the password is forgotten
    if (!login && (e.code === "throttled" || e.code === "too_many_connections" || e.code === "server_full")) {
      scheduleReconnect(Math.max(1000, (e.retry_after || 5) * 1000), e.message);
      return;
    }
    stopped = true;
    if (ws) ws.close();
    const wasAccount = store.get("account") === "1";
    if (kind === "token" && (["name_registered", "auth_required", "login_failed"].includes(e.code) ||
                             (wasAccount && e.code === "name_taken"))) {
      // the login token no longer works (logged out elsewhere, password changed)
      forget();
      ui.hideBanner();
      ui.showLogin("", state.me, { focus: "password", notice: wasAccount
        ? "Your session has ended (logged out from another device, or the password changed): log in again."
        : "Your session has ended: log in again with your password." });
      state.me = "";
      return;
    }
    state.token = null;
    store.set("token", null);
    const [text, focus] = loginError(e, kind);
    ui.hideBanner();
    ui.showLogin(text, state.me, { focus, retryAfter: e.code === "throttled" ? e.retry_after : 0,
                                   register: kind === "register" });
    return;
  }
  notice(state.current, e.message || e.code, "error");
  if (MOD_ERRORS.includes(e.code)) ui.composerError(e.message || e.code);
}

// refusals worth showing next to the message box (not only in the conversation)
const MOD_ERRORS = ["forbidden", "muted", "banned", "invite_only", "no_such_message"];

/** What the login form says about a refused hello, and which field to fix. */
function loginError(e, kind) {
  const name = state.me;
  switch (e.code) {
    case "login_failed": return ["Wrong name or password.", "password"];
    case "name_registered":
      return [`The name “${name}” belongs to an account: enter its password to log in, or pick another name.`, "password"];
    case "auth_required":
      return kind === "register" ? [e.message || "Accounts on this server are made by its admins.", "name"]
        : ["This server is for its members: enter your password (or create an account).", "password"];
    case "insecure":
      return ["Passwords are only sent over a secure connection: open this page with https:// " +
              "(the server's TLS port), or join as a guest without a password.", "password"];
    case "throttled": {
      const s = Math.max(1, Math.ceil(e.retry_after || 1));
      return [`Too many failed logins: wait ${s} s and try again.`, "password"];
    }
    case "bad_password": return [kind === "register" ? "Passwords need 8 characters or more (at most 1024)."
      : (e.message || "That password is not accepted."), "password"];
    case "banned": return [e.message || "You are banned from this server.", "name"];
    case "accounts_off":
      return ["This server has no accounts: leave the password empty to join as a guest.", "password"];
    case "name_taken":
      return [kind === "register" ? `The name “${name}” is taken: log in if it is yours, or pick another name.`
        : kind === "guest" && state.auth !== "off"
          ? `The name “${name}” is taken: pick another, or if it is your account, enter its password.`
          : e.message || `The name “${name}” is taken: pick another.`, "name"];
    default: return [e.message || "That name was refused.", "name"];
  }
}

function onAccount(a) {
  if (typeof a.name !== "string") return;
  state.account = { name: a.name, admin: !!a.admin, session: a.session || null };
  state.me = a.name;
  store.set("name", a.name);
  store.set("account", "1");
  state.guests.delete(lower(a.name));
  ui.showApp(state);
  ui.renderMembers(state);
  ui.renderAccount(state);
}

function onBye(b) {
  if (b.reason === "revoked") {
    const name = state.me;
    endSession(loggingOut ? "You are logged out." :
      "This session was logged out (from another device, or the password changed). Log in again.", name);
    return;
  }
  if (b.reason === "kicked" || b.reason === "banned") {
    // put out of the server: no reconnecting by ourselves (a ban would refuse every try)
    stopped = true;
    clearTimeout(retryTimer);
    state.online = false;
    ui.hideBanner();
    ui.showLogin("", state.me, { notice: (b.reason === "banned"
      ? "You are banned from this server" : "You were kicked from this server") +
      (b.message ? ` (${b.message})` : "") + (b.reason === "banned" ? "." : ". You may join again.") });
    return;
  }
  if (b.reason === "flood" || b.reason === "protocol") attempt = BACKOFF.length - 1;
  ui.showBanner(state, Date.now(), b.message || b.reason);
}

// --- what the user does -------------------------------------------------------------
/** The login form: a name, and a password (none: a guest), or a new account. */
export function login(name, password = "", register = false) {
  name = name.trim().replace(/^@/, "");
  if (!NAME_RE.test(name)) {
    ui.showLogin("Names are 1–32 letters, digits, '_', '-' or '.', without spaces.", name, { focus: "name" });
    return;
  }
  if (name.toLowerCase() !== state.me.toLowerCase()) forget();   // a different person
  if (password) {
    credentials = { password, register };
    state.token = null;                  // a login makes a new session (and token)
    store.set("token", null);
  } else {
    credentials = null;
  }
  state.me = name;
  attempt = 0;
  ui.setLoginBusy(password ? (register ? "Creating the account…" : "Logging in…") : "Joining…");
  connect();
}

/** Forget this browser's session: token, position, conversations, queue. */
function forget() {
  for (const k of ["name", "token", "instance", "lastId", "current", "pending", "account", "mod"]) store.set(k, null);
  state.gone.clear();
  state.token = state.instance = null;
  state.lastId = 0;
  state.account = null;
  state.guests.clear();
  state.conversations.clear();
  state.pending.clear();
  state.current = "#general";
}

/** Back to the login form with ``message``; ``name`` stays in the form. */
function endSession(message, name = "", sayBye = false) {
  stopped = true;
  loggingOut = false;
  clearTimeout(retryTimer);
  if (sayBye) send({ type: "bye" });
  if (ws) { const s = ws; ws = null; s.onclose = null; s.close(); }
  state.online = false;
  requests.clear();
  forget();
  state.me = "";
  ui.hideBanner();
  ui.closeAccount();
  ui.showLogin("", name, { notice: message });
}

/** Log out: an account's session is revoked on the server (its token then
 * works nowhere); a guest says bye.  Either way this browser forgets it. */
export function logOut() {
  const name = state.me;
  if (state.account && state.account.session && state.online) {
    loggingOut = true;
    request({ type: "revoke", session: state.account.session }, (f) => {
      if (f.type === "error" && f.code !== "lost") {
        loggingOut = false;
        ui.accountMessage(f.message || f.code, true);
        return;
      }
      endSession("You are logged out.", name);
    });
    return;
  }
  endSession(state.account ? "Logged out on this browser. (Offline: the session stays in your list " +
    "until you log it out from another device.)" : "", state.account ? name : "", true);
}

export const signOut = logOut;

// --- the account menu ----------------------------------------------------------------------
const accountErrors = {
  login_failed: "The current password is wrong.",
  bad_password: "Passwords need 8 characters or more (at most 1024).",
  insecure: "Passwords are only sent over a secure connection: open this page with https://.",
  accounts_off: "This server has no accounts.",
  name_taken: "Someone registered this name already.",
  auth_required: "Accounts on this server are made by its admins.",
  lost: "Not connected: try again once reconnected.",
};
const accountError = (f) => f.code === "throttled"
  ? `Too many tries: wait ${Math.max(1, Math.ceil(f.retry_after || 1))} s.`
  : accountErrors[f.code] || f.message || f.code;

/** A guest registers the name it has (and stays connected). */
export function registerName(password, done) {
  if (!state.online) { done(accountErrors.lost); return; }
  request({ type: "register", password }, (f) => {
    if (f.type === "error") { done(accountError(f)); return; }
    if (f.type === "account") onAccount(f);
    done(null);
  });
}

export function listSessions(done) {
  if (!state.online) { done(null, accountErrors.lost); return; }
  request({ type: "sessions" }, (f) => {
    if (f.type === "error") done(null, accountError(f));
    else done(Array.isArray(f.sessions) ? f.sessions : [], null);
  });
}

/** Log out one session (``id``), or every other one (``id`` null). */
export function revoke(id, done) {
  if (id && state.account && id === state.account.session) { logOut(); return; }
  request(id ? { type: "revoke", session: id } : { type: "revoke", others: true }, (f) => {
    done(f.type === "error" ? accountError(f) : null);
  });
}

export function changePassword(old, password, done) {
  if (!state.online) { done(accountErrors.lost); return; }
  request({ type: "password", old, new: password }, (f) => done(f.type === "error" ? accountError(f) : null));
}

export function switchTo(key) {
  if (key.startsWith("@")) {
    const existing = [...state.conversations.keys()].find((k) => k.toLowerCase() === key.toLowerCase());
    key = existing || key;
  }
  const c = conversation(key);
  // a "new" line above what arrived since you last read it
  if (key !== state.current) { c.marker = c.unread > 0 ? c.readId : null; ui.composerError(null); }
  state.current = key;
  store.set("current", key);
  ui.renderAll(state);
  if (c.events.size === 0 && c.more) loadOlder();
  else fillGap(c);
  if (c.isRoom && c.members === null) requestMembers();   // a big room leaves them out
  markRead();
}

/** Tell the server the current conversation is read up to its newest event. */
export function markRead() {
  const c = state.conversations.get(state.current);
  if (!c || document.hidden) return;
  let newest = 0;
  for (const id of c.events.keys()) if (id > newest) newest = id;
  c.unread = 0;
  c.mentions = 0;
  if (newest > c.readId && state.online) {
    c.readId = newest;
    sendReadSoon(c);
  }
  ui.renderSidebar(state);
}

// Read markers go out at most once a second per conversation (a busy room would
// otherwise cost one frame per message received).
const readTimers = new Map();
function sendReadSoon(c) {
  if (readTimers.has(c.key)) return;
  readTimers.set(c.key, setTimeout(() => {
    readTimers.delete(c.key);
    if (state.online) {
      send(c.isRoom ? { type: "read", room: c.key, id: c.readId } : { type: "read", with: c.key.slice(1), id: c.readId });
    }
  }, 1000));
}

/** Page back: the 50 events older than the oldest one shown. */
export function loadOlder(then) {
  const c = state.conversations.get(state.current);
  if (!c || c.loading || !c.more || !state.online) return false;
  c.loading = true;
  const frame = { type: "history", limit: PAGE };
  if (c.isRoom) frame.room = c.key; else frame.with = c.key.slice(1);
  const ids = [...c.events.keys()];
  if (ids.length) frame.before = Math.min(...ids);
  ui.renderHeader(state);
  request(frame, (f) => {
    c.loading = false;
    if (f.type === "error") {
      if (f.code !== "lost") c.more = false;
      ui.renderHeader(state);
      return;
    }
    c.more = !!f.more;
    const anchor = ui.scrollAnchor();
    for (const ev of f.messages || []) {
      addEvent(c.isRoom ? { ...ev, room: ev.room || c.key } : ev, false);
    }
    ui.restoreScroll(anchor);
    ui.renderHeader(state);
    if (then) then();
  });
  return true;
}

/** Open a conversation at one of its messages (a search result), loading older
 *  pages until it is there (at most REVEAL_PAGES of them). */
const REVEAL_PAGES = 40;
export function reveal(key, id) {
  switchTo(key);
  const c = state.conversations.get(state.current);
  let pages = 0;
  const step = () => {
    if (state.conversations.get(state.current) !== c) return;   // the user went elsewhere
    if (c.events.has(id)) { ui.showEvent(id); return; }
    if (c.loading) { setTimeout(step, 100); return; }
    if (!c.more || pages >= REVEAL_PAGES || !loadOlder(step)) {
      ui.composerError("That message is further back than the history loaded here; scroll up to find it.");
      return;
    }
    pages += 1;
  };
  step();
}

function sendPending(p) {
  const frame = { type: p.kind, text: p.text, label: p.label };
  if (p.key.startsWith("@")) frame.to = p.key.slice(1); else frame.room = p.key;
  if (state.online) send(frame);
}

/** A message that was refused: send it again (same label), or forget it. */
export function retry(label) {
  const p = state.pending.get(label);
  if (!p) return;
  p.error = null;
  savePending();
  ui.updatePending(state, p);
  sendPending(p);
}

export function discard(label) {
  const p = state.pending.get(label);
  if (!p) return;
  state.pending.delete(label);
  savePending();
  ui.removePending(p);
  // a direct message that never started: no conversation to keep
  const c = state.conversations.get(p.key);
  if (c && !c.isRoom && c.events.size === 0 && ![...state.pending.values()].some((q) => q.key === p.key)) {
    state.conversations.delete(p.key);
    if (state.current === p.key) switchTo("#general");
    else ui.renderSidebar(state);
  }
}

function settle(label) {
  const p = state.pending.get(label);
  if (!p) return;
  state.pending.delete(label);
  savePending();
  ui.removePending(p);
  ui.composerError(null);
}

function say(key, text, kind = "say") {
  const p = { label: nextLabel(), key, kind, text, error: null };
  state.pending.set(p.label, p);
  savePending();
  if (key === state.current) ui.addPending(state, p);
  sendPending(p);
}

export function notice(key, text, cls = "", action = null) {
  const c = conversation(key);
  let after = 0;            // shown after the newest event of the conversation
  for (const id of c.events.keys()) if (id > after) after = id;
  const n = { text, cls, key: after + 0.5, action };
  c.notices.push(n);
  if (key === state.current) ui.addNotice(n);
}

/** A line typed in the composer: a message or a slash command. */
export function submit(line) {
  const cmd = parse(line, state.current);
  if (cmd.error) { notice(state.current, cmd.error, "error"); return; }
  switch (cmd.name) {
    case "empty": return;
    case "say": return say(state.current, cmd.text);
    case "me": return say(state.current, cmd.text, "me");
    case "help": HELP.forEach((l) => notice(state.current, l)); return;
    case "register": case "sessions": case "password":
      if (cmd.text) notice(state.current, "Type passwords in the form that opens, never in the message box.", "error");
      ui.openAccount(state, cmd.name);
      return;
    case "logout": return logOut();
    case "join": return joinRoom(cmd.target);
    case "part": return partRoom(cmd.target);
    case "msg":
      switchTo(cmd.target);
      if (cmd.text) say(state.current, cmd.text);
      return;
    case "switch": return switchTo(cmd.target);
    case "topic":
      if (cmd.text === null) {
        const t = conversation(cmd.target).topic;
        notice(cmd.target, t ? `Topic: ${t}` : "No topic set (/topic text sets it).");
        return;
      }
      request({ type: "topic", room: cmd.target, topic: cmd.text }, (f) => {
        if (f.type === "error") notice(cmd.target, f.message || f.code, "error");
      });
      return;
    case "search": return search(cmd.text);
    case "kick": case "mute": case "unmute": case "ban": case "unban": case "invite": case "op": case "deop": {
      const frame = { action: cmd.name, room: cmd.target, target: cmd.who };
      if (cmd.duration) frame.duration = cmd.duration;
      if (cmd.reason) frame.reason = cmd.reason;
      return moderate(frame);
    }
    case "lock": case "unlock": case "close": case "open":
      return moderate({ action: cmd.name, room: cmd.target });
    case "delete": {
      const c = conversation(state.current);
      if (!c.isRoom) { notice(c.key, "Messages are removed in rooms only.", "error"); return; }
      let id = cmd.id;
      if (id === null) {            // your last message here
        const mine = [...c.events.values()].filter((ev) => ev.type === "message" && isMe(ev.from) && !ev.deleted);
        if (!mine.length) { notice(c.key, "No message of yours here to remove (/delete ID removes another).", "error"); return; }
        id = Math.max(...mine.map((ev) => ev.id));
      }
      return moderate({ action: "delete", room: c.key, id });
    }
    case "audit": return audit();
    case "rooms": {
      const here = state.current;
      listRooms((rooms) => {
        notice(here, `${rooms.length} room(s):`);
        for (const r of rooms) {
          notice(here, `${r.room}${r.joined ? " (joined)" : ""} · ${r.count} online${r.topic ? " · " + r.topic : ""}`);
        }
      });
      return;
    }
    case "users": {
      const c = conversation(state.current);
      const frame = c.isRoom ? { type: "users", room: c.key } : { type: "users" };
      request(frame, (f) => {
        if (f.type === "error") return notice(c.key, f.message || f.code, "error");
        onUsers(f);
        notice(c.key, `${f.users.length} here: ${f.users.join(", ")}`);
      });
      return;
    }
    default: return;
  }
}

export function joinRoom(room) {
  const existing = [...state.conversations.keys()].find((k) => k.toLowerCase() === room.toLowerCase());
  if (existing) { switchTo(existing); return; }
  request({ type: "join", room }, (f) => {
    if (f.type === "error") {
      notice(state.current, f.message || f.code, "error");
      if (MOD_ERRORS.includes(f.code)) ui.composerError(f.message || f.code);
      return;
    }
    onRoom(f);                     // (with our role there: the owner if we created it)
    switchTo(f.room);
  });
}

/** A ``mod`` request ({action, room, target, id, duration, reason}); ``done(error)``
 * if given (the dialog shows the error), else a refusal is shown by the input. */
export function moderate(frame, done = null) {
  if (!state.online) {
    const text = "Not connected: try again once reconnected.";
    if (done) done(text); else ui.composerError(text);
    return;
  }
  request({ type: "mod", ...frame }, (f) => {
    if (f.type === "error") {
      const text = f.code === "lost" ? "Not connected: try again once reconnected." : f.message || f.code;
      if (done) done(text);
      else { notice(state.current, text, "error"); ui.composerError(text); }
      return;
    }
    ui.composerError(null);
    if (done) done(null);
  });
}

/** Server admins: the moderation log, in the side panel (``before``: an older page). */
export function audit(before = null) {
  const frame = { type: "audit", limit: 50 };
  if (before) frame.before = before;
  if (!before) ui.showAudit(null);
  request(frame, (f) => {
    if (f.type === "error") ui.showAudit([], false, f.code === "forbidden"
      ? "Only server admins read the audit log." : f.message || f.code, !!before);
    else ui.showAudit(Array.isArray(f.entries) ? f.entries : [], !!f.more, null, !!before);
  });
}

export function partRoom(room) {
  request({ type: "part", room }, (f) => {
    if (f.type === "error") { notice(state.current, f.message || f.code, "error"); return; }
    const key = [...state.conversations.keys()].find((k) => k.toLowerCase() === room.toLowerCase());
    if (key) state.conversations.delete(key);
    if (!state.conversations.has(state.current)) {
      state.current = state.conversations.has("#general") ? "#general" : [...state.conversations.keys()][0] || "#general";
    }
    switchTo(state.current);
  });
}

export function search(query) {
  ui.showResults(state, query, null);
  request({ type: "search", query, limit: 30 }, (f) => {
    if (f.type === "error") ui.showResults(state, query, [], f.message || f.code);
    else ui.showResults(state, query, f.messages || []);
  });
}

/** The rooms on the server (for suggestions): callback(list of {room, topic, count}). */
export function listRooms(callback) {
  if (state.online) request({ type: "rooms" }, (f) => { if (f.type === "rooms") callback(f.rooms || []); });
}

export function requestMembers() {
  const c = state.conversations.get(state.current);
  if (c && c.isRoom && state.online) request({ type: "users", room: c.key }, (f) => { if (f.type === "users") onUsers(f); });
}

// --- start ------------------------------------------------------------------------------
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) { markRead(); ui.renderSidebar(state); reconnectSoon(); }
});

loadPending();
ui.init(state, { connect, listRooms, retry, discard, login, signOut, logOut, switchTo, reveal, submit, loadOlder,
                 joinRoom, partRoom, search, requestMembers, registerName, listSessions, revoke, changePassword,
                 moderate, canModerate, audit });
if (state.me) {
  ui.showApp(state);             // the shell at once, "reconnecting" until welcomed
  ui.renderAll(state);
  ui.showBanner(state, Date.now(), "");
  connect();
} else {
  ui.showLogin("", "");
}

if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("sw.js").catch(() => { /* no offline shell: fine */ });
}
