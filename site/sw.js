// Service worker: serve the built site from a versioned cache so it works offline.
// build.py fills in VERSION (a hash of every built file) and FILES (every file but this one).
// A new build installs beside the old one, takes over at once and deletes the old cache; the
// pages it takes over show a notice with a reload button (loader.js).
const VERSION = "__VERSION__";
const FILES = __FILES__;
const SCOPE = new URL(self.registration.scope).pathname;
const PREFIX = `kvcalc:${SCOPE}:`;
const CACHE = PREFIX + VERSION;

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(FILES.map((f) => new Request(f, { cache: "reload" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

// The page asks which build this worker serves, to offer a reload after a new deploy
// (loader.js); the answer goes to the port it sends.
self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "version" && event.ports[0]) {
    event.ports[0].postMessage({ version: VERSION });
  }
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const url = new URL(request.url);
    url.hash = "";
    const hit = await cache.match(url.href, { ignoreSearch: true });
    if (hit) return hit;
    try {
      return await fetch(request);
    } catch (err) {
      if (request.mode === "navigate") {
        const page = await cache.match("./");
        if (page) return page;
      }
      throw err;
    }
  })());
});
