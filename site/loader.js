// Loading progress before Python is ready, touched-field tracking, the service worker and its
// new-version notice. Plain module script: no Python needed, runs as soon as the HTML is parsed.
const SIZES = __SIZES__;  // bytes of the runtime files, filled in by build.py
const root = document.documentElement;

// The Plotly.js config of both pages' charts (charts.js and lab.py): zoom, pan and reset only.
// Plotly.js 4 would otherwise add a "Share chart" button that uploads the chart to Plotly
// Cloud, and 7 tab stops per chart.
window.kvcalcPlotConfig = Object.freeze({
  responsive: true,
  displaylogo: false,
  showSendToCloud: false,
  plotlyServerURL: "",
  modeBarButtons: [["zoom2d", "pan2d", "resetScale2d"]],
});

// main.py's changes to the page for one update, applied in one call: each access from Python
// to the DOM crosses into JavaScript, and an update makes about a hundred. `json` is a list of
// [element id (":root" for <html>), what, value]; what is "text" (textContent), "hidden",
// "items" (a list's <li> texts), "link" (the URL's fragment: the element's value shows the new
// URL at once, the address bar when the page is idle), "class:NAME" (toggled) or an
// attribute's name (null removes it). Only text and attribute values are set: nothing is
// parsed as HTML. A value the element already has is not set again (each set invalidates the
// element's style, layout or paint for the next frame).
// history.replaceState waits on the browser process (measured: 1-5 ms; 10-110 ms with the CPU
// throttled 4x, a task of its own that lands between two keys), so it runs once edits pause:
// URL_QUIET_MS after the last one, when the page is idle. kvcalcWrite.flush() runs it at once
// (before the link is copied, a reload); leaving the page runs it too.
const URL_QUIET_MS = 1000;
let pendingUrl = null;
let urlTimer = 0;
function applyUrl() {
  clearTimeout(urlTimer);
  if (pendingUrl !== null && pendingUrl !== location.href) history.replaceState(null, "", pendingUrl);
  pendingUrl = null;
}
function applyUrlWhenIdle() {
  if ("requestIdleCallback" in window) requestIdleCallback(applyUrl, { timeout: 1000 });
  else applyUrl();
}
window.addEventListener("pagehide", applyUrl);
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") applyUrl(); });
window.kvcalcWrite = (json) => {
  for (const [id, what, value] of JSON.parse(json)) {
    const el = id === ":root" ? root : document.getElementById(id);
    if (!el) continue;
    if (what === "text") {
      if (el.textContent !== value) el.textContent = value;
    } else if (what === "hidden") {
      if (el.hidden !== Boolean(value)) el.hidden = Boolean(value);
    } else if (what === "items") {
      const items = el.children;
      if (items.length === value.length && value.every((text, i) => items[i].textContent === text)) continue;
      el.replaceChildren(...value.map((text) => {
        const li = document.createElement("li");
        li.textContent = text;
        return li;
      }));
    } else if (what === "link") {
      const url = location.href.split("#")[0] + (value ? "#" + value : "");
      clearTimeout(urlTimer);   // a later edit restarts the wait: no history call while typing
      urlTimer = setTimeout(applyUrlWhenIdle, URL_QUIET_MS);
      pendingUrl = url;
      el.value = url;
    } else if (what.startsWith("class:")) {
      el.classList.toggle(what.slice(6), Boolean(value));
    } else if (value === null) {
      el.removeAttribute(what);
    } else if (el.getAttribute(what) !== String(value)) {
      el.setAttribute(what, String(value));
    }
  }
};
window.kvcalcWrite.flush = applyUrl;
// A form's fields as one JSON string of {name: value} (main.py's read_form): one string crosses
// into Python, where a JS object would be converted entry by entry.
window.kvcalcFormJson = (id) => JSON.stringify(Object.fromEntries(new FormData(document.getElementById(id))));
// The same, in the next animation frame (an edit's numbers, main.py): the task that computed
// them ends first, and the frame's style and layout follow the writes in their own task
// (issue 14: no task over 50 ms while typing). Writes queued before the frame are applied in
// order.
const frameWrites = [];
window.kvcalcWrite.nextFrame = (json) => {
  frameWrites.push(json);
  if (frameWrites.length === 1) {
    requestAnimationFrame(() => { for (const queued of frameWrites.splice(0)) window.kvcalcWrite(queued); });
  }
};

// PyScript watches the whole document for new <script type="py"> elements and py-*
// attributes with MutationObservers (polyscript and its py-editor plugin), so every node
// and attribute Plotly.js writes on a redraw is queued and searched (an XPath query per added
// element): about 7 ms of each live update, measured. These pages add no Python scripts or
// py-* attributes once Python has started (main.py and lab.py use addEventListener), so the
// document-wide observers are stopped then. This script runs before PyScript's core.js.
const documentObservers = [];
const observe = MutationObserver.prototype.observe;
MutationObserver.prototype.observe = function (target, options) {
  if (target === document && options && options.subtree) documentObservers.push(this);
  return observe.call(this, target, options);
};
function stopDocumentObservers() {
  MutationObserver.prototype.observe = observe;
  for (const o of documentObservers.splice(0)) o.disconnect();
  root.dataset.observers = "stopped";
}
// ---------------------------------------------------------------------------- progress
// The real stages of a start, each seen as it happens (issue 12), not bytes alone:
//   download  the runtime's files (Resource Timing: the bytes of the files done);
//   compile   Pyodide's WebAssembly, from WebAssembly.instantiate(Streaming) to its module
//             (wrapped below; this script runs before Pyodide's);
//   python    the interpreter's start and the page's own files (PyScript's py:progress
//             events "Loaded Pyodide", then "Loaded files");
//   import    the calculator's modules (from "Loaded files"; main.py's performance marks
//             kvcalc:main-start and kvcalc:imported, seen after the fact), then the first
//             result (<html data-state="ready">). main.py imports and computes in one task,
//             so the bar cannot move during it: it shows this stage while it runs.
// Each stage owns a share of the bar, sized from its typical part of a start on the measuring
// machine (benchmarks/bench_page.py); within a stage the bar moves with the bytes (download)
// or with the time spent against that stage's typical time, never past the stage's end.
const STAGES = {
  download: { step: 1, from: 0, to: 30, typical_s: 0.6, text: "downloading the Python runtime" },
  compile: { step: 2, from: 30, to: 45, typical_s: 0.6, text: "compiling the Python runtime" },
  python: { step: 3, from: 45, to: 70, typical_s: 1.0, text: "starting Python" },
  import: { step: 4, from: 70, to: 95, typical_s: 0.8, text: "loading the calculator" },
  result: { step: 5, from: 95, to: 99, typical_s: 0.2, text: "computing the first result" },
};
const STEPS = Object.keys(STAGES).length;
const started = performance.now();
const done = new Set();
const total = Object.values(SIZES).reduce((a, b) => a + b, 0) || 1;
let stage = "download";
let stageStarted = started;
root.dataset.loadStage = stage;

function enter(name) {
  if (STAGES[name].step <= STAGES[stage].step) return;   // stages only move forward
  stage = name;
  stageStarted = performance.now();
  root.dataset.loadStage = name;
  update();
}

for (const method of ["instantiateStreaming", "instantiate"]) {
  const original = WebAssembly[method];
  if (typeof original !== "function") continue;
  WebAssembly[method] = function (...args) {
    enter("compile");
    const result = original.apply(this, args);
    Promise.resolve(result).then(() => enter("python"), () => {});
    return result;
  };
}
addEventListener("py:progress", (event) => {
  if (event.detail === "Loaded Pyodide") enter("python");
  // the page's files are in: main.py's imports come next, in one task that blocks painting,
  // so the stage is shown now
  if (event.detail === "Loaded files") enter("import");
});
function onMark(name) {
  if (name === "kvcalc:main-start") enter("import");
  if (name === "kvcalc:imported") enter("result");
}

function bar() { return document.getElementById("load-progress"); }
function text() { return document.getElementById("load-text"); }

function update() {
  if (root.dataset.state !== "loading") return;
  const s = STAGES[stage];
  let within = 1 - Math.exp(-(performance.now() - stageStarted) / 1000 / s.typical_s);
  if (stage === "download") {
    let loaded = 0;
    for (const name of done) loaded += SIZES[name] || 0;
    within = Math.max(loaded / total, Math.min(within, 0.5));
  }
  const percent = Math.round(s.from + (s.to - s.from) * Math.min(within, 0.95));
  const b = bar();
  if (b) b.value = percent;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const t = text();
  if (t) t.textContent = `Starting the calculator, step ${s.step} of ${STEPS}: ${s.text}… (${percent} %, ${seconds} s)`;
}

function record(entries) {
  for (const entry of entries) {
    if (entry.entryType === "mark") {
      onMark(entry.name);
      continue;
    }
    const name = entry.name.split("?")[0].split("/").pop();
    if (name in SIZES) done.add(name);
  }
  update();
}

if ("PerformanceObserver" in window) {
  for (const type of ["resource", "mark"]) {
    try {
      new PerformanceObserver((list) => record(list.getEntries())).observe({ type, buffered: true });
    } catch (_) { /* old browsers: the static text stays */ }
  }
}
const timer = setInterval(() => {
  if (root.dataset.state !== "loading") { clearInterval(timer); return; }
  update();
}, 250);

// Fields edited before Python is ready are kept: main.py reads data-touched at start-up.
document.addEventListener("input", (event) => {
  if (root.dataset.state === "loading" && event.target.name) {
    event.target.dataset.touched = "1";
  }
}, true);

// Offline support: a service worker caches the built files once the page is ready, so the
// first visit's downloads are not slowed down by it. A page served from an older build's cache
// learns of a new deploy when the new worker has cached every file and taken control of it
// (sw.js: skipWaiting, clients.claim): it asks the worker for its version and, when that is
// not this page's build (<html data-build>), offers to reload (issue 12: the old build must not
// show silently).
function showUpdateNotice() {
  if (document.getElementById("update-notice")) return;
  const box = document.createElement("div");
  box.id = "update-notice";
  box.className = "notice";
  box.setAttribute("role", "status");
  const p = document.createElement("p");
  const strong = document.createElement("strong");
  strong.textContent = "A new version of this page is ready.";
  p.append(strong, " Reload to use it; the scenario in the link is kept. ");
  const reload = document.createElement("button");
  reload.type = "button";
  reload.id = "update-reload";
  reload.textContent = "Reload";
  reload.addEventListener("click", () => {
    if (window.kvcalcWrite) window.kvcalcWrite.flush();   // the address bar has the last edit
    location.reload();
  });
  const later = document.createElement("button");
  later.type = "button";
  later.className = "secondary";
  later.textContent = "Later";
  later.addEventListener("click", () => box.remove());
  p.append(reload, " ", later);
  box.append(p);
  const header = document.querySelector("header.top");
  if (header) header.after(box); else document.body.prepend(box);
  root.dataset.update = "ready";
}
function checkVersion(worker) {
  if (!worker || !root.dataset.build) return;
  const channel = new MessageChannel();
  channel.port1.onmessage = (event) => {
    const version = event.data && event.data.version;
    if (version && version !== root.dataset.build) showUpdateNotice();
  };
  worker.postMessage({ type: "version" }, [channel.port2]);
}
const workers = "serviceWorker" in navigator && window.isSecureContext ? navigator.serviceWorker : null;
if (workers) {
  workers.addEventListener("controllerchange", () => checkVersion(workers.controller));
}
function registerServiceWorker() {
  if (!workers) return;
  workers.register("./sw.js", { scope: "./" }).then((registration) => {
    checkVersion(workers.controller);   // a new worker may have taken over while loading
    // a tab left open: look for a new deploy when it is shown again
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") registration.update().catch(() => {});
    });
  }).catch((err) => {
    console.warn("service worker not registered:", err && err.message);
  });
}
const observer = new MutationObserver(() => {
  if (root.dataset.state !== "loading") {
    observer.disconnect();
    stopDocumentObservers();
    const b = bar();
    if (b) b.value = 100;
    registerServiceWorker();
  }
});
observer.observe(root, { attributes: true, attributeFilter: ["data-state"] });

// Show a shared link's values in the form at once, before Python has checked them (it
// rewrites every field with the validated scenario when it starts). Values only, never HTML.
function prefillFromLink() {
  const form = document.getElementById("scenario");
  if (!form || !location.hash) return;
  let params;
  try {
    params = new URLSearchParams(location.hash.slice(1));
  } catch (_) {
    return;
  }
  for (const [key, text] of params) {
    const el = form.elements.namedItem(key);
    if (el && "value" in el && el.type !== "file" && text.length <= 200) el.value = text;
  }
}
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", prefillFromLink);
} else {
  prefillFromLink();
}
