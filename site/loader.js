// Loading progress before Python is ready, touched-field tracking, and the service worker.
// Plain module script: no Python needed, runs as soon as the HTML is parsed.
const SIZES = __SIZES__;  // bytes of the runtime files, filled in by build.py
const STAGES = [
  ["pyodide.asm.wasm", "Downloading the Python runtime…"],
  ["python_stdlib.zip", "Downloading Python's standard library…"],
  ["kvcache_calculator.zip", "Starting Python…"],
];
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
// parsed as HTML.
// history.replaceState waits on the browser process (measured: 1-5 ms, 10-30 ms with the CPU
// throttled 4x), so it runs once the page is idle (after the charts in view; within 1 s);
// kvcalcWrite.flush() runs it at once (before the link is copied).
let pendingUrl = null;
function applyUrl() {
  if (pendingUrl !== null && pendingUrl !== location.href) history.replaceState(null, "", pendingUrl);
  pendingUrl = null;
}
window.kvcalcWrite = (json) => {
  for (const [id, what, value] of JSON.parse(json)) {
    const el = id === ":root" ? root : document.getElementById(id);
    if (!el) continue;
    if (what === "text") {
      el.textContent = value;
    } else if (what === "hidden") {
      el.hidden = Boolean(value);
    } else if (what === "items") {
      el.replaceChildren(...value.map((text) => {
        const li = document.createElement("li");
        li.textContent = text;
        return li;
      }));
    } else if (what === "link") {
      const url = location.href.split("#")[0] + (value ? "#" + value : "");
      if (pendingUrl === null) {
        if ("requestIdleCallback" in window) requestIdleCallback(applyUrl, { timeout: 1000 });
        else setTimeout(applyUrl, 200);
      }
      pendingUrl = url;
      el.value = url;
    } else if (what.startsWith("class:")) {
      el.classList.toggle(what.slice(6), Boolean(value));
    } else if (value === null) {
      el.removeAttribute(what);
    } else {
      el.setAttribute(what, String(value));
    }
  }
};
window.kvcalcWrite.flush = applyUrl;

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
const started = performance.now();
const done = new Set();
const total = Object.values(SIZES).reduce((a, b) => a + b, 0) || 1;

function bar() { return document.getElementById("load-progress"); }
function text() { return document.getElementById("load-text"); }

function update() {
  if (root.dataset.state !== "loading") return;
  let loaded = 0;
  for (const name of done) loaded += SIZES[name] || 0;
  const fraction = Math.min(0.95, loaded / total);
  const b = bar();
  if (b) b.value = Math.round(fraction * 100);
  let message = "Loading the page…";
  if (done.has("pyodide.mjs")) message = STAGES[0][1];
  if (done.has("pyodide.asm.wasm")) message = STAGES[1][1];
  if (done.has("pyodide.asm.wasm") && done.has("python_stdlib.zip")) message = "Starting Python…";
  if (done.has("kvcache_calculator.zip")) message = "Loading the calculator…";
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const t = text();
  if (t) t.textContent = `${message} (${Math.round(fraction * 100)}%, ${seconds} s)`;
}

function record(entries) {
  for (const entry of entries) {
    const name = entry.name.split("?")[0].split("/").pop();
    if (name in SIZES) done.add(name);
  }
  update();
}

if ("PerformanceObserver" in window) {
  try {
    new PerformanceObserver((list) => record(list.getEntries()))
      .observe({ type: "resource", buffered: true });
  } catch (_) { /* old browsers: the static text stays */ }
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
// first visit's downloads are not slowed down by it.
function registerServiceWorker() {
  if (!("serviceWorker" in navigator) || !window.isSecureContext) return;
  navigator.serviceWorker.register("./sw.js", { scope: "./" }).catch((err) => {
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
