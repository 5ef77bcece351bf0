// Parley service worker: keeps the app shell so the page opens without the
// server (then shows "Reconnecting…").  Network first, so an updated server
// serves updated files; the cache is only the fallback.  The chat itself goes
// over the WebSocket and is never cached.
const CACHE = "parley-shell-v3";
const SHELL = ["./", "index.html", "style.css", "app.js", "ui.js", "util.js",
               "manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin || url.pathname.endsWith("/ws")) return;
  event.respondWith(
    fetch(req).then((res) => {
      if (res.ok) {
        const copy = res.clone();
        caches.open(CACHE).then((c) => c.put(req, copy));
      }
      return res;
    }).catch(() => caches.match(req, { ignoreSearch: true })
      .then((hit) => hit || (req.mode === "navigate" ? caches.match("index.html") : Response.error()))),
  );
});

// A notification shown by the page through this worker (Android): tapping it
// brings the app forward on that conversation.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const key = event.notification.data && event.notification.data.key;
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((wins) => {
    const win = wins[0];
    if (!win) return self.clients.openWindow("./");
    if (key) win.postMessage({ type: "open", key });
    return win.focus();
  }));
});
