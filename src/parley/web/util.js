// Small pure helpers shared by the rest of the web client: name colours (the
// same as the terminal and desktop clients), local time, mentions, links and
// the slash-command parser.  No DOM, no network: easy to test on its own.

// --- name colours ---------------------------------------------------------------
// Python (src/parley/client/core.py):
//   blake2s(name.casefold().encode(), digest_size=4) read big-endian, modulo 12.
// BLAKE2s (RFC 7693) is not in the browser's crypto API, so here it is, small.
const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
            0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];
const rotr = (x, n) => (x >>> n) | (x << (32 - n));

function compress(h, block, t, last) {
  const m = new Uint32Array(16);
  for (let i = 0; i < 16; i++) {
    m[i] = block[4 * i] | (block[4 * i + 1] << 8) | (block[4 * i + 2] << 16) | (block[4 * i + 3] << 24);
  }
  const v = new Uint32Array(16);
  for (let i = 0; i < 8; i++) { v[i] = h[i]; v[i + 8] = IV[i]; }
  v[12] ^= t;                       // low word of the byte counter (names are short)
  if (last) v[14] = ~v[14];
  const G = (a, b, c, d, x, y) => {
    v[a] = v[a] + v[b] + x; v[d] = rotr(v[d] ^ v[a], 16);
    v[c] = v[c] + v[d];     v[b] = rotr(v[b] ^ v[c], 12);
    v[a] = v[a] + v[b] + y; v[d] = rotr(v[d] ^ v[a], 8);
    v[c] = v[c] + v[d];     v[b] = rotr(v[b] ^ v[c], 7);
  };
  for (let r = 0; r < 10; r++) {
    const s = SIGMA[r];
    G(0, 4, 8, 12, m[s[0]], m[s[1]]);  G(1, 5, 9, 13, m[s[2]], m[s[3]]);
    G(2, 6, 10, 14, m[s[4]], m[s[5]]); G(3, 7, 11, 15, m[s[6]], m[s[7]]);
    G(0, 5, 10, 15, m[s[8]], m[s[9]]); G(1, 6, 11, 12, m[s[10]], m[s[11]]);
    G(2, 7, 8, 13, m[s[12]], m[s[13]]); G(3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/** BLAKE2s of ``bytes`` (a Uint8Array), ``outlen`` bytes long, unkeyed. */
export function blake2s(bytes, outlen = 32) {
  const h = Uint32Array.from(IV);
  h[0] ^= 0x01010000 ^ outlen;
  let t = 0;
  let pos = 0;
  do {
    const block = new Uint8Array(64);
    const n = Math.min(64, bytes.length - pos);
    block.set(bytes.subarray(pos, pos + n));
    pos += n;
    t += n;
    compress(h, block, t, pos >= bytes.length);
  } while (pos < bytes.length);
  const out = new Uint8Array(outlen);
  for (let i = 0; i < outlen; i++) out[i] = (h[i >> 2] >>> (8 * (i & 3))) & 0xff;
  return out;
}

export const NAME_COLOURS = 12;   // the size of every client's name palette

/** A stable palette index for ``name``, ignoring case (names are ASCII). */
export function nameColourIndex(name, n = NAME_COLOURS) {
  const d = blake2s(new TextEncoder().encode(name.toLowerCase()), 4);
  return (((d[0] << 24) >>> 0) + (d[1] << 16) + (d[2] << 8) + d[3]) % n;
}

// --- time ---------------------------------------------------------------------------
/** Server UTC timestamp -> local "HH:MM". */
export function localTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

/** Server UTC timestamp -> a full local date and time (for a tooltip). */
export function localDateTime(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}

/** The local day of a timestamp: "Today", "Yesterday" or e.g. "Mon 23 Nov 2026". */
export function dayLabel(ts, now = new Date()) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return "";
  const start = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((start(now) - start(d)) / 86400000);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  return d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short", year: "numeric" });
}

// --- mentions -----------------------------------------------------------------------
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** ``me`` (or ``@me``) as a word of its own, ignoring case (as core.mention_re). */
export function mentionRe(me) {
  if (!me) return null;
  return new RegExp(`(?<![\\w.-])@?${escapeRe(me)}(?![\\w-]|\\.\\w)`, "gi");
}

export function mentions(text, me) {
  const rx = mentionRe(me);
  return rx ? rx.test(text) : false;
}

// --- links and text segments -----------------------------------------------------
const URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;

/** Split ``text`` into segments {kind: "text"|"link"|"mention", text, href?}.
 * The caller turns each into a DOM node (never HTML). */
export function segments(text, me) {
  const spans = [];
  for (const m of text.matchAll(URL_RE)) {
    let url = m[0];           // trailing punctuation is not part of the link; ")" only if unbalanced
    const count = (c) => url.split(c).length - 1;
    while (/[.,;:!?\]}]$/.test(url) || (url.endsWith(")") && count(")") > count("("))) url = url.slice(0, -1);
    spans.push({ start: m.index, end: m.index + url.length, kind: "link", href: url });
  }
  const rx = mentionRe(me);
  if (rx) {
    for (const m of text.matchAll(rx)) {
      const s = m.index, e = s + m[0].length;
      if (!spans.some((x) => s < x.end && e > x.start)) spans.push({ start: s, end: e, kind: "mention" });
    }
  }
  spans.sort((a, b) => a.start - b.start);
  const out = [];
  let at = 0;
  for (const sp of spans) {
    if (sp.start > at) out.push({ kind: "text", text: text.slice(at, sp.start) });
    out.push({ kind: sp.kind, text: text.slice(sp.start, sp.end), href: sp.href });
    at = sp.end;
  }
  if (at < text.length) out.push({ kind: "text", text: text.slice(at) });
  return out;
}

// --- conversations --------------------------------------------------------------
/** The conversation an event belongs to: "#room" or "@name". */
export function conversationOf(ev, me) {
  if (ev.to) {
    const other = ev.from && ev.from.toLowerCase() !== me.toLowerCase() ? ev.from : ev.to;
    return "@" + other;
  }
  return ev.room || "#general";
}

export const NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
export const ROOM_RE = /^#[A-Za-z0-9_.-]{1,32}$/;

// --- slash commands (a subset of core.parse, same names and aliases) ------------
export const COMMANDS = [
  ["join", "<#room>", "join a room (created if new) and switch to it", []],
  ["part", "[#room]", "leave a room (default: the current one)", ["leave"]],
  ["rooms", "", "list the rooms, their topics and how many are online", ["list"]],
  ["topic", "[text]", "show the room's topic, or set it ('/topic -' clears it)", []],
  ["msg", "<name> [text]", "send a direct message; without text, switch to it", ["query", "dm"]],
  ["switch", "<#room|@name>", "change the current conversation", ["go", "w"]],
  ["search", "<words>", "search the messages you may read (\"a phrase\", pre*)", []],
  ["users", "", "who is in this room", ["who", "names"]],
  ["me", "<action>", "send an action, shown as \"* you <action>\"", []],
  ["kick", "<name> [reason]", "moderators: put someone out of this room (they may come back)", []],
  ["mute", "<name> [10m|2h|1d] [reason]", "moderators: silence someone in this room (default: until /unmute)", []],
  ["unmute", "<name>", "moderators: let someone speak again", []],
  ["ban", "<name> [10m|2h|1d] [reason]", "moderators: put someone out of this room for good (or for a while)", []],
  ["unban", "<name>", "moderators: lift a ban", []],
  ["delete", "[id]", "remove a message (yours, or any if you moderate); default: your last one here", ["remove"]],
  ["lock", "", "moderators: only moderators may set the topic (/unlock undoes it)", []],
  ["unlock", "", "moderators: anyone may set the topic again", []],
  ["close", "", "moderators: make this room invite-only (/open undoes it)", []],
  ["open", "", "moderators: anyone may join this room again", []],
  ["invite", "<name>", "moderators: invite someone to this (invite-only) room", []],
  ["op", "<name>", "the room's owner: make an account a moderator here", []],
  ["deop", "<name>", "the room's owner: take moderation away from someone", []],
  ["audit", "", "server admins: the log of moderation actions", []],
  ["register", "", "keep your name: make it an account (asks for a password)", []],
  ["sessions", "", "the devices logged in to your account; log them out", []],
  ["password", "", "change your password", []],
  ["logout", "", "log out (an account's session ends on the server too)", ["signout"]],
  ["help", "", "this help", ["?"]],
];
const BY_NAME = new Map();
for (const c of COMMANDS) for (const a of [c[0], ...c[3]]) BY_NAME.set(a, c);

export const HELP = [
  "Commands:",
  ...COMMANDS.map(([n, args, help, al]) =>
    `/${n}${args ? " " + args : ""} — ${help}${al.length ? "; also " + al.map((a) => "/" + a).join(", ") : ""}`),
  "//text — send a message that starts with \"/\"",
  "Anything else is sent to the current conversation.",
];

const roomArg = (w) => {
  const room = w.startsWith("#") ? w : "#" + w;
  return ROOM_RE.test(room) ? [room, null] : [null, `Not a room name: ${w.slice(0, 40)}`];
};
const nameArg = (w) => {
  const name = w.startsWith("@") ? w.slice(1) : w;
  return NAME_RE.test(name) ? [name, null] : [null, `Not a name: ${w.slice(0, 40)}`];
};

/** Parse a typed line: {name, target?, text?, error?}.  ``name`` is "say",
 * "empty" or a command's canonical name. */
export function parse(line, current) {
  if (!line.trim()) return { name: "empty" };
  if (!line.startsWith("/") || line.startsWith("//")) {
    return { name: "say", text: line.startsWith("//") ? line.slice(1) : line, target: current };
  }
  const m = /^\/(\S+)\s*([\s\S]*)$/.exec(line);
  const word = m[1].toLowerCase();
  const rest = m[2];
  const words = rest.split(/\s+/).filter(Boolean);
  const spec = BY_NAME.get(word);
  if (!spec) return { name: "unknown", error: `Unknown command /${word.slice(0, 30)} (try /help)` };
  const name = spec[0];
  const usage = `Usage: /${name}${spec[1] ? " " + spec[1] : ""} — ${spec[2]}`;
  const bad = (msg) => ({ name, error: msg ? `${msg}. ${usage}` : usage });
  switch (name) {
    case "join": {
      if (words.length !== 1) return bad("Name one room");
      const [room, problem] = roomArg(words[0]);
      return problem ? bad(problem) : { name, target: room };
    }
    case "part": {
      if (words.length > 1) return bad("Name one room");
      if (!words.length) {
        return current && current.startsWith("#") ? { name, target: current } : bad("Not in a room");
      }
      const [room, problem] = roomArg(words[0]);
      return problem ? bad(problem) : { name, target: room };
    }
    case "topic": {
      if (!current || !current.startsWith("#")) return bad("Topics belong to rooms");
      const t = rest.trim();
      return { name, target: current, text: t === "" ? null : t === "-" ? "" : t };
    }
    case "msg": {
      if (!words.length) return bad("Say to whom");
      const [who, problem] = nameArg(words[0]);
      if (problem) return bad(problem);
      const body = rest.trim().slice(words[0].length).trim();
      return { name, target: "@" + who, text: body };
    }
    case "switch": {
      if (words.length !== 1) return bad("Name one conversation");
      const w = words[0];
      if (w.startsWith("@")) {
        const [who, problem] = nameArg(w);
        return problem ? bad(problem) : { name, target: "@" + who };
      }
      const [room, problem] = roomArg(w);
      return problem ? bad(problem) : { name, target: room };
    }
    case "search":
      return rest.trim() ? { name, text: rest.trim() } : bad("Search for what");
    case "me":
      return rest.trim() ? { name, text: rest.trim(), target: current } : bad("Do what");
    case "kick": case "mute": case "ban": case "unmute": case "unban": case "invite": case "op": case "deop": {
      if (!current || !current.startsWith("#")) return bad("Moderation acts in a room: switch to it first");
      if (!words.length) return bad("Name someone");
      const [who, problem] = nameArg(words[0]);
      if (problem) return bad(problem);
      let tail = words.slice(1);
      let duration = null;
      if ((name === "mute" || name === "ban") && tail.length) {
        const d = parseDuration(tail[0]);
        if (d !== null) { duration = d; tail = tail.slice(1); }
      }
      const takesReason = name === "kick" || name === "mute" || name === "ban";
      if (!takesReason && tail.length) return bad("Only a name");
      const skip = words.length - tail.length;     // the reason keeps its own spacing
      const reason = tail.length ? rest.replace(new RegExp(`^\\s*(\\S+\\s+){${skip}}`), "").trim() : "";
      return { name, target: current, who, duration, reason };
    }
    case "lock": case "unlock": case "close": case "open":
      if (!current || !current.startsWith("#")) return bad("Moderation acts in a room: switch to it first");
      return words.length ? bad("No arguments") : { name, target: current };
    case "delete": {
      if (words.length > 1 || (words.length && !/^\d+$/.test(words[0]))) return bad("A message id, or nothing");
      return { name, target: current, id: words.length ? Number(words[0]) : null };
    }
    case "register": case "sessions": case "password":
      // passwords are typed in a form, never on the command line (text: a warning)
      return { name, text: rest.trim() ? "ignored" : null };
    default:                                    // help, rooms, users, logout
      return { name };
  }
}

// --- durations -------------------------------------------------------------------------
const UNITS = { s: 1, m: 60, min: 60, h: 3600, d: 86400, w: 604800 };

/** "10m", "2h", "1d", "30s", "1w" (or "90" minutes) -> seconds; null if not a duration. */
export function parseDuration(w) {
  const m = /^(\d{1,6})(s|m|min|h|d|w)?$/i.exec(w);
  if (!m) return null;
  const n = Number(m[1]) * UNITS[(m[2] || "m").toLowerCase()];
  return n > 0 ? n : null;
}

/** Seconds -> "30 s", "10 min", "90 min", "2 h", "1 day", "3 days", "2 weeks". */
export function formatDuration(sec) {
  const plural = (n, unit) => `${n} ${unit}${n === 1 ? "" : "s"}`;
  if (sec < 60) return `${Math.round(sec)} s`;
  if (sec < 3600 || (sec < 3 * 3600 && sec % 3600)) return `${Math.round(sec / 60)} min`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h`;
  if (sec % 604800) return plural(Math.round(sec / 86400), "day");
  return plural(sec / 604800, "week");
}

/** What a ``mod`` frame says, as parts: [actor, words, target?, words, reason?].
 * Returned as plain strings (the caller makes text nodes of them). */
export function describeMod(ev) {
  const t = ev.target || "?";
  let span = "";
  if (ev.until && ev.ts) {
    const sec = (Date.parse(ev.until) - Date.parse(ev.ts)) / 1000;
    if (sec > 0) span = ` for ${formatDuration(Math.round(sec / 60) * 60 || sec)}`;
  }
  const where = ev.room ? "" : " from the server";
  switch (ev.action) {
    case "kick": return [" kicked ", t, where];
    case "mute": return [" muted ", t, span + (ev.room ? "" : " everywhere")];
    case "unmute": return [" unmuted ", t, ""];
    case "ban": return [" banned ", t, span + where];
    case "unban": return [" unbanned ", t, ""];
    case "delete": return [" removed a message", null, ""];
    case "lock": return [" locked the topic", null, ""];
    case "unlock": return [" unlocked the topic", null, ""];
    case "close": return [" made the room invite-only", null, ""];
    case "open": return [" opened the room to everyone", null, ""];
    case "invite": return [" invited ", t, ""];
    case "op": return [" made ", t, " a moderator"];
    case "deop": return [" took moderation away from ", t, ""];
    default: return [` did ${String(ev.action).slice(0, 20)} to `, t, ""];
  }
}

// --- the device a login is from (named in the session list) ---------------------------
/** "Firefox on Android", "Chrome on Linux"… from a user agent string (at most 64 characters). */
export function deviceName(ua = (typeof navigator !== "undefined" ? navigator.userAgent : "")) {
  const browser = /Edg\//.test(ua) ? "Edge" : /OPR\//.test(ua) ? "Opera" : /Firefox\//.test(ua) ? "Firefox"
    : /Chrom(e|ium)\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : "Browser";
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad|iPod/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows"
    : /Macintosh|Mac OS X/.test(ua) ? "macOS" : /CrOS/.test(ua) ? "ChromeOS" : /Linux/.test(ua) ? "Linux" : "";
  return `${browser}${os ? " on " + os : ""}`.slice(0, 64);
}
