// Charts for main.py, drawn after the numbers (issue #14). An edit draws its numbers at once
// (main.py) and calls invalidate(): the charts it changes are marked stale and the later work
// is scheduled, once the numbers' frame is painted, as a series of short tasks, for each
// stale item near the viewport, those in view first, then in page order:
//   - the suggestions, when the scenario changed (main.py's render_suggestions: one task);
//   - a chart: its data computed by main.py's chart_json (only that chart's) in one task,
//     drawn with Plotly.react in the next (not redrawn when the data are the same). The charts
//     in view go together: all computed in one task, all drawn in the next, so that no frame
//     is rendered between them (each such frame laid out and painted the page again, and the
//     charts in view were on screen one after another: issue 14's "charts in view" target).
// Items farther away stay stale, at no cost, until they scroll near (an IntersectionObserver).
// Edits: the form's input events are only recorded here; main.py evaluates the form in a
// separate task (a MessageChannel message), keystrokes that arrive before it runs coalesced
// into one evaluation, and its numbers are written in the next animation frame
// (kvcalcWrite.nextFrame, loader.js): the key press, the evaluation and the frame's layout are
// three tasks, none of them long (issue 14: no task over 50 ms while typing).
// While the user types into a text or number field (input events less than typingPauseMs
// apart), no item is drawn, in view or not: a chart's Plotly.js redraw is one task of
// 15-25 ms, 60-100 ms with the CPU throttled 4x, and one between two keys makes the next key
// wait for it. The items in view are drawn once typing pauses, or at once when the field's
// change event says the value is committed (Enter, leaving the field, its arrows); a select,
// a checkbox or a slider is not typing. Items near but not in view also wait until QUIET_MS
// after the last edit of any kind. Before Python has started, the build's charts
// (prerendered) are drawn in idle time (requestIdleCallback), so that Python's start comes first.
// A newer edit starts the series again: work not yet started for an older edit is never
// started, and a chart computed for it is dropped instead of drawn.
// Each chart arrives as the JSON of site/page_figures.py (for_page): a Plotly figure with no
// title, legend or colour bar, and those as plain values that are drawn here as HTML beside it.
// State for tests and benchmarks: each .plot and #suggestions has data-state "stale" or "drawn"; <html
// data-charts> is "pending" while a chart near the viewport is stale, else "drawn";
// kvcalcCharts.counts counts the charts computed, drawn and dropped, and the time spent;
// counts.steps is the last steps' [what, start, ms] (performance.now()), for the benchmark.
// Only textContent and attributes are set from the data: nothing is parsed as HTML.
const CONFIG = window.kvcalcPlotConfig;   // set by loader.js, which runs first
const SVG = "http://www.w3.org/2000/svg";
const NAMES = ["hit_vs_memory", "sensitivity", "tornado", "heatmap", "memory"];
// "Near": within half a viewport above or below it, so that a chart is usually drawn before
// it scrolls in.
const NEAR_MARGIN = "50% 0px";
// Items near but not in view wait this long after the last edit (a slow typist's keys are
// 200-300 ms apart).
const QUIET_MS = 400;
// Typing: keys less than this apart; no item is drawn until it has passed since the last one
// (kvcalcCharts.typingPauseMs: tests on a busy machine set a longer one).
let typingPauseMs = 250;
const root = document.documentElement;
const drawnLegends = new Map();
const configured = new WeakSet();
// computed/drawn/dropped charts, and the milliseconds spent computing (Python) and drawing;
// edits evaluated (one per evaluation task) and the milliseconds of those tasks, later parts run (<html data-later> is "pending"
// while some are queued) and charts drawn, by name
const counts = { computed: 0, drawn: 0, dropped: 0, compute_ms: 0, draw_ms: 0, evaluated: 0, evaluate_ms: 0, later: 0,
                 drawn_by_name: {}, steps: [] };
function logStep(what, t0) {
  counts.steps.push([what, Math.round(t0 * 10) / 10, Math.round((performance.now() - t0) * 10) / 10]);
  if (counts.steps.length > 400) counts.steps.splice(0, 200);
}

// Plotly.js (1.5 MB) is preloaded by index.html but only run when the first chart is drawn,
// so that parsing it does not compete with Python's start-up and the first numbers.
let plotlyLoading = null;
function loadPlotly() {
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = new URL("./vendor/plotly/plotly-cartesian.min.js", document.baseURI).href;
      script.onload = () => { memoizeArrayAttributes(window.Plotly); resolve(); };
      script.onerror = () => reject(new Error("Plotly.js could not be loaded"));
      document.head.appendChild(script);
    });
    plotlyLoading.catch((err) => console.error("kvcache calculator: " + err.message));
  }
  return plotlyLoading;
}

// Plotly.js (4.x) runs PlotSchema.findArrayAttributes on every trace of every redraw (in its
// doCalcdata), which crawls the trace type's whole attribute schema for the attributes that may
// hold data arrays: 10-20 % of a redraw here (measured in Chromium with the CPU throttled 4x:
// 52 -> 44 ms for the hit-rate chart). Its answer depends only on the trace's type (its module)
// and on which of its attributes hold arrays, so it is kept per module under the list of the
// trace's array-valued paths; anything else (no module) goes to Plotly.js's own function.
const isArrayLike = (v) => Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
function arrayPaths(value, prefix, out, depth) {
  for (const key of Object.keys(value)) {
    if (key[0] === "_") continue;            // Plotly.js's private keys are not attributes
    const v = value[key];
    if (isArrayLike(v)) {
      out.push(prefix + key);
      if (depth < 4) {
        v.forEach((item, i) => {
          if (item && typeof item === "object" && !isArrayLike(item)) arrayPaths(item, `${prefix}${key}[${i}].`, out, depth + 1);
        });
      }
    } else if (v && typeof v === "object" && depth < 4) {
      arrayPaths(v, prefix + key + ".", out, depth + 1);
    }
  }
  return out;
}
function memoizeArrayAttributes(Plotly) {
  const schema = Plotly && Plotly.PlotSchema;
  if (!schema || typeof schema.findArrayAttributes !== "function" || schema.findArrayAttributes.memoized) return;
  const original = schema.findArrayAttributes;
  const byModule = new WeakMap();
  const memoized = function (trace) {
    const module = trace && trace._module;
    if (!module || typeof module !== "object") return original.call(this, trace);
    if (!byModule.has(module)) byModule.set(module, new Map());
    const known = byModule.get(module);
    const key = arrayPaths(trace, "", [], 0).join("\n");
    if (!known.has(key)) known.set(key, original.call(this, trace));
    return known.get(key).slice();
  };
  memoized.memoized = true;
  memoized.original = original;     // for tests/browser/test_page_updates.py
  schema.findArrayAttributes = memoized;
}

function svgElement(name, attributes) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, String(value));
  return el;
}

const DASHES = { dot: "2 3", dash: "6 4", longdash: "10 4", dashdot: "6 3 2 3", longdashdot: "10 3 2 3" };

/** A 28 x 14 px picture of a legend entry: a line, a marker or a bar. */
function swatch(entry) {
  const svg = svgElement("svg", { width: 28, height: 14, viewBox: "0 0 28 14", "aria-hidden": "true" });
  if (entry.kind === "bar") {
    svg.appendChild(svgElement("rect", { x: 6, y: 2, width: 16, height: 10, fill: entry.color }));
  } else if (entry.kind === "marker") {
    const outline = { stroke: entry.outline || entry.color, "stroke-width": 1 };
    if (entry.symbol === "diamond") {
      svg.appendChild(svgElement("polygon", { points: "14,1 20,7 14,13 8,7", fill: entry.color, ...outline }));
    } else if (entry.symbol === "x") {
      svg.appendChild(svgElement("path", { d: "M9 2 L19 12 M19 2 L9 12", stroke: entry.outline || entry.color,
                                           "stroke-width": 3 }));
    } else {
      svg.appendChild(svgElement("circle", { cx: 14, cy: 7, r: 5, fill: entry.color, ...outline }));
    }
  } else {
    const line = { x1: 1, y1: 7, x2: 27, y2: 7, stroke: entry.color, "stroke-width": entry.width || 2 };
    if (DASHES[entry.dash]) line["stroke-dasharray"] = DASHES[entry.dash];
    svg.appendChild(svgElement("line", line));
  }
  return svg;
}

function colorbarItem(bar) {
  const li = document.createElement("li");
  li.className = "colorbar";
  const title = document.createElement("span");
  title.textContent = bar.title;
  const gradient = document.createElement("span");
  gradient.className = "gradient";
  gradient.style.background = "linear-gradient(to right, "
    + bar.stops.map(([at, color]) => `${color} ${(100 * at).toFixed(2)}%`).join(", ") + ")";
  gradient.setAttribute("aria-hidden", "true");
  const scale = document.createElement("span");
  scale.className = "scale";
  for (let i = 0; i <= 4; i++) {
    const tick = document.createElement("span");
    tick.textContent = String(Math.round(bar.min + (bar.max - bar.min) * i / 4));
    scale.appendChild(tick);
  }
  li.append(title, gradient, scale);
  return li;
}

/** Title, note, legend and colour bar as HTML, rebuilt only when they changed. */
function drawText(id, chart) {
  const head = document.getElementById(id + "-head");
  const headText = (chart.title || "") + "\n" + (chart.note || "");
  if (head && head.dataset.text !== headText) {
    head.dataset.text = headText;
    const title = document.createElement("strong");
    title.textContent = chart.title || "";
    const note = document.createElement("span");
    note.className = "chart-note";
    note.textContent = chart.note || "";
    head.replaceChildren(title, note);
  }
  const legend = document.getElementById(id + "-legend");
  const key = JSON.stringify([chart.legend, chart.colorbar]);
  if (legend && drawnLegends.get(id) !== key) {
    drawnLegends.set(id, key);
    const items = (chart.legend || []).map((entry) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = entry.name;
      li.append(swatch(entry), name);
      return li;
    });
    if (chart.colorbar) items.push(colorbarItem(chart.colorbar));
    legend.replaceChildren(...items);
    legend.hidden = items.length === 0;
  }
}

/** The chart's numbers as a table in its <details> (the text alternative of the drawing). */
function drawTable(id, table) {
  const box = document.getElementById(id + "-table");
  if (!box || !table) return;
  const el = document.createElement("table");
  if (table.columns.length) {
    const head = el.createTHead().insertRow();
    for (const text of table.columns) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = text;
      head.appendChild(th);
    }
    const body = el.createTBody();
    for (const row of table.rows) {
      const tr = body.insertRow();
      row.forEach((text, i) => {
        const cell = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) cell.scope = "row";
        cell.textContent = text;
        tr.appendChild(cell);
      });
    }
  }
  const notes = table.notes.map((text) => {
    const p = document.createElement("p");
    p.textContent = text;
    return p;
  });
  box.replaceChildren(...(table.columns.length ? [el] : []), ...notes);
}

// The tables (in closed <details> until opened) are built after the charts are on screen: a
// table is a few hundred elements (2-3 ms a chart, 4x that on a slow phone), not needed for
// the frame that shows the charts. Each chart's latest table is built in the first task after
// that frame.
const tablesDue = new Map();
let tablesQueued = false;
function drawTablesLater() {
  if (tablesQueued || !tablesDue.size) return;
  tablesQueued = true;
  requestAnimationFrame(() => setTimeout(() => {
    tablesQueued = false;
    const t0 = performance.now();
    for (const [id, table] of tablesDue) drawTable(id, table);
    tablesDue.clear();
    logStep("tables", t0);
  }, 0));
}

function draw(id, json) {
  const div = document.getElementById(id);
  if (!div) return;
  const chart = JSON.parse(json);
  drawText(id, chart);
  tablesDue.set(id, chart.table);
  // A chart with nothing to show (the model does not fit; an input not set) is a sentence,
  // not empty axes.
  const blank = document.getElementById(id + "-blank");
  const figure = div.closest("figure");
  if (blank) {
    blank.textContent = chart.blank || "";
    blank.hidden = !chart.blank;
  }
  // kept in the layout (no height), so that the observers still see it come near the viewport
  div.classList.toggle("plot-blank", Boolean(chart.blank));
  if (figure) {
    figure.classList.toggle("blank", Boolean(chart.blank));
    for (const b of figure.querySelectorAll(".chart-tools button")) b.disabled = Boolean(chart.blank);
  }
  if (chart.blank) return;
  // The config only on the first draw: given again, Plotly.react rebuilds and compares its
  // whole default config on every call (measured: about 1.5 ms a chart).
  const t0 = performance.now();
  window.Plotly.react(div, chart.figure.data, chart.figure.layout, configured.has(div) ? undefined : CONFIG);
  logStep("react " + id, t0);
  configured.add(div);
}

function reportError(what, err) {
  // A draw has no Python caller to report it: log it, show the short sentence.
  console.error("kvcache calculator: " + what + ": " + (err && err.stack || err));
  const box = document.getElementById("app-error");
  const text = document.getElementById("app-error-text");
  if (text) text.textContent = "An internal error stopped a chart from updating.";
  if (box) box.hidden = false;
}

// ---------------------------------------------------------------------------- the schedule

// What is drawn after the numbers, in page order: the suggestions (drawn by main.py in one
// task) and the charts (computed in one task, drawn in the next).
const SUGGESTIONS = "suggestions";
const ITEMS = [SUGGESTIONS, ...NAMES];
let chartSource = null;      // main.py: (name) => chart JSON for the last valid edit
let suggestionSource = null; // main.py: () => draws the suggestions
let version = 0;             // bumped by every invalidate()
const wanted = new Map(ITEMS.map((n) => [n, 0]));   // the version each item must show
const shown = new Map(ITEMS.map((n) => [n, -1]));   // the version it shows
const lastJson = new Map();  // each chart's last drawing: the same again is not redrawn
let computed = [];           // [{name, version, json}]: computed, to be drawn in the next task
// Elements near the viewport and in view, by id. An item is near when one of its elements is:
// the suggestions also fill the "what would fit" options at the top of the results.
const nearIds = new Set();
const viewIds = new Set();
const EXTRA_TARGETS = { [SUGGESTIONS]: ["fit-notice"] };
function targets(name) { return [element(name).id, ...(EXTRA_TARGETS[name] || [])]; }
const near = { has: (name) => targets(name).some((id) => nearIds.has(id)) };
const inView = { has: (name) => targets(name).some((id) => viewIds.has(id)) };
let run = 0;                 // the current series of tasks; an older series stops
let running = false;
let lastEdit = -Infinity;    // performance.now() of the last edit's invalidate()
let lastKey = -Infinity;     // performance.now() of the last key typed into a field (0: committed)
let connected = false;       // chartSource is main.py's (else the build's, or none)

function element(name) {
  return document.getElementById(name === SUGGESTIONS ? name : "chart-" + name);
}
function stale(name) { return shown.get(name) !== wanted.get(name); }
function pending() { return ITEMS.some((n) => near.has(n) && stale(n)); }

function markState() {
  root.dataset.charts = NAMES.some((n) => near.has(n) && stale(n)) ? "pending" : "drawn";
}

function markShown(name, v) {
  shown.set(name, v);
  if (!stale(name)) element(name).dataset.state = "drawn";
}

// The next task: after the next painted frame (requestAnimationFrame, then a task), or as soon
// as possible (a message: no timer clamping between the steps of a series).
const channel = new MessageChannel();
let queued = null;
channel.port1.onmessage = () => { const f = queued; queued = null; if (f) f(); };
function nextTask(f) { queued = f; channel.port2.postMessage(null); }
function afterPaint(f) { requestAnimationFrame(() => setTimeout(f, 0)); }
// Before Python is ready, in idle time: Pyodide's start runs first.
function whenIdle(f) {
  if ("requestIdleCallback" in window) requestIdleCallback(f, { timeout: 2000 }); else setTimeout(f, 50);
}

function start(waitForPaint) {
  const id = ++run;
  running = true;
  const go = () => { if (id === run) step(id); };
  if (!connected) afterPaint(() => whenIdle(go));
  else if (waitForPaint) afterPaint(go); else nextTask(go);
}

/** While typing, every item waits; items near the viewport but not in view wait longer (see
 *  the top of this file). */
function waiting(name) {
  const now = performance.now();
  return connected && (now - lastKey < typingPauseMs || (!inView.has(name) && now - lastEdit < QUIET_MS));
}

/** When the next waiting item may be drawn. */
function waitEnds() {
  const now = performance.now();
  const ends = [lastKey + typingPauseMs, lastEdit + QUIET_MS].filter((t) => t > now);
  return ends.length ? Math.min(...ends) : now;
}

/** The stale item near the viewport to draw next: a chart just computed, then the items in
 *  view, then the others, each in page order. */
function nextItem() {
  const candidates = ITEMS.filter((n) => near.has(n) && stale(n) && !waiting(n));
  const ready = computed.find((c) => candidates.includes(c.name));
  if (ready) return ready.name;
  return candidates.find((n) => inView.has(n)) || candidates[0] || null;
}

/** The charts computed with chart `name`, to be drawn together in the next task: every stale
 *  chart in view when `name` is in view (one redraw of the page, no frame between them),
 *  else `name` alone. */
function batchFor(name) {
  if (!connected || !inView.has(name)) return [name];
  return NAMES.filter((n) => n === name || (inView.has(n) && near.has(n) && stale(n) && !waiting(n)));
}

function compute(name) {
  const t0 = performance.now();
  const json = chartSource ? chartSource(name) : null;
  counts.compute_ms += performance.now() - t0;
  counts.computed++;
  logStep("compute " + name, t0);
  if (!json) {               // nothing to draw (an error main.py has reported)
    markShown(name, wanted.get(name));
    return null;
  }
  return { name, version: wanted.get(name), json };
}

function drawComputed(done) {
  const name = done.name;
  markShown(name, done.version);   // also after an error: the next edit tries again
  if (done.json === lastJson.get(name)) return;
  lastJson.set(name, done.json);
  try {
    const t0 = performance.now();
    draw("chart-" + name, done.json);
    counts.draw_ms += performance.now() - t0;
    counts.drawn++;
    counts.drawn_by_name[name] = (counts.drawn_by_name[name] || 0) + 1;
    logStep("draw " + name, t0);
  } catch (err) {
    lastJson.delete(name);
    reportError("chart chart-" + name, err);
  }
}

function step(id) {
  const go = () => { if (id === run) step(id); };
  const more = () => (connected ? nextTask(go) : whenIdle(go));
  const name = nextItem();
  // computed for an older edit, scrolled away or waiting again: not drawn
  const keep = computed.filter((c) => c.version === wanted.get(c.name) && near.has(c.name) && !waiting(c.name));
  counts.dropped += computed.length - keep.length;
  computed = keep;
  if (!name) {
    running = false;
    markState();
    // near items left waiting for the typing to pause
    if (connected && pending()) setTimeout(go, Math.max(0, waitEnds() - performance.now()));
    return;
  }
  if (name === SUGGESTIONS) {
    const v = wanted.get(name);
    const t0 = performance.now();
    if (suggestionSource) suggestionSource();
    logStep("suggestions", t0);
    markShown(name, v);
    more();
    return;
  }
  if (!computed.length) {
    computed = batchFor(name).map(compute).filter(Boolean);
    more();
    return;
  }
  if (!window.Plotly) {
    loadPlotly().then(() => { if (id === run) step(id); }, () => { running = false; });
    return;
  }
  const batch = computed;
  computed = [];
  batch.forEach(drawComputed);
  drawTablesLater();
  markState();
  more();
}

const nearObserver = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (e.isIntersecting) nearIds.add(e.target.id); else nearIds.delete(e.target.id);
  }
  markState();
  if (chartSource && !running && pending()) start(false);
}, { rootMargin: NEAR_MARGIN });
const viewObserver = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (e.isIntersecting) viewIds.add(e.target.id); else viewIds.delete(e.target.id);
  }
  if (chartSource && !running && pending()) start(false);   // in view: drawn without waiting
});
for (const name of ITEMS) {
  const el = element(name);
  if (!el) continue;
  el.dataset.state = "stale";
  nearObserver.observe(el);
  viewObserver.observe(el);
}
for (const id of Object.values(EXTRA_TARGETS).flat()) {
  const el = document.getElementById(id);
  if (el) { nearObserver.observe(el); viewObserver.observe(el); }
}

// ---------------------------------------------------------------------------- edits

// Fields whose input events are keys typed (the others: select, checkbox, radio, range, file).
const NOT_TYPED = new Set(["checkbox", "radio", "range", "file", "color", "button", "submit", "reset"]);
function isTyped(el) {
  return el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && !NOT_TYPED.has(el.type));
}
// Controls inside the form that are not scenario fields (main.py handles them itself).
const NOT_EDITS = new Set(["share-url", "import-text", "import-file", "show-classic"]);
let editSource = null;       // main.py: (names) => evaluates the form, names the fields changed
const editedNames = new Set();
let editsRequested = 0;
let editsEvaluated = 0;
let editQueued = false;
const editChannel = new MessageChannel();
editChannel.port1.onmessage = () => {
  editQueued = false;
  const names = [...editedNames].join(" ");
  editedNames.clear();
  const upTo = editsRequested;
  const t0 = performance.now();
  try {
    counts.evaluated++;
    editSource(names);
  } finally {
    counts.evaluate_ms += performance.now() - t0;
    logStep("evaluate", t0);
    // after the numbers' frame writes (kvcalcWrite.nextFrame, queued first): for tests and
    // benchmarks/bench_page.py, <html data-edit> and a "kvcalc:numbers" event
    requestAnimationFrame(() => {
      editsEvaluated = upTo;
      if (editsEvaluated === editsRequested) root.dataset.edit = "done";
      document.dispatchEvent(new Event("kvcalc:numbers"));
    });
  }
};

// An edit's parts that its numbers do not need (main.py's LATER_PARTS: the announcement, the
// sensitivity selector, the measured comparison): queued by main.py when it has computed the
// numbers, each run in a task of its own after the numbers' frame, and dropped by a newer edit
// (its evaluation queues them again).
let laterSource = null;      // main.py: (name) => updates that part for the last valid edit
let laterParts = [];
const laterChannel = new MessageChannel();
laterChannel.port1.onmessage = () => {
  const name = laterParts.shift();
  if (name === undefined) return;
  if (laterParts.length) laterChannel.port2.postMessage(null);
  counts.later++;
  const t0 = performance.now();
  try {
    laterSource(name);
  } finally {
    logStep("later " + name, t0);
    if (!laterParts.length) root.dataset.later = "done";
  }
};
function queueLater(names) {
  const first = !laterParts.length;
  laterParts = names.split(" ").filter(Boolean);
  root.dataset.later = laterParts.length ? "pending" : "done";
  if (first && laterParts.length) requestAnimationFrame(() => laterChannel.port2.postMessage(null));
}

function onEdit(event) {
  const el = event.target;
  if (!el || NOT_EDITS.has(el.id) || !editSource) return;
  if (event.type === "input" && laterParts.length) {   // a newer edit: the older one's parts are dropped
    laterParts = [];
    root.dataset.later = "done";
  }
  if (event.type === "change") {
    // a value committed (Enter, leaving the field, a select): what waited for typing to pause
    // is drawn now, after its numbers
    if (lastKey !== -Infinity) {
      lastKey = -Infinity;
      if (!running && pending()) start(true);
    }
    return;
  }
  lastKey = isTyped(el) ? performance.now() : -Infinity;
  if (el.name) editedNames.add(el.name);
  editsRequested++;
  root.dataset.edit = "pending";
  if (!editQueued) {          // keys typed before the evaluation runs are evaluated with it
    editQueued = true;
    editChannel.port2.postMessage(null);
  }
}

// ---------------------------------------------------------------------------- announcements, downloads

// The only live region of the results: the headline, read politely once typing pauses (an
// <output> per result would be read on every keystroke).
const ANNOUNCE_AFTER_MS = 1000;
let announceTimer = 0;
window.kvcalcAnnounce = (text) => {
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    const el = document.getElementById("announce");
    if (el && el.textContent !== text) el.textContent = text;
  }, ANNOUNCE_AFTER_MS);
};

/** Save `text` as a file named `name` (made here: nothing is sent anywhere). */
function saveUrl(name, url) {
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
}
window.kvcalcDownload = (name, type, text) => {
  const url = URL.createObjectURL(new Blob([text], { type }));
  saveUrl(name, url);
  setTimeout(() => URL.revokeObjectURL(url), 0);
};

/** A chart as PNG or SVG, with its title and legend drawn by Plotly (on the page they are
 *  HTML beside it). */
async function downloadChart(name, format) {
  const div = document.getElementById("chart-" + name);
  if (!div || !div.data || !window.Plotly) return;
  const head = document.getElementById("chart-" + name + "-head");
  const title = head ? (head.dataset.text || "").trim().replace("\n", " — ") : "";
  const layout = { ...div.layout, title: { text: title, x: 0.02, xanchor: "left", font: { size: 14 } },
                   showlegend: true, legend: { orientation: "h", y: -0.25 },
                   margin: { ...(div.layout.margin || {}), t: 50, b: 110 } };
  const data = div.data.map((t) => (t.type === "heatmap" ? { ...t, showscale: true } : t));
  const url = await window.Plotly.toImage({ data, layout }, { format, width: 900, height: 560 });
  saveUrl(`kvcache-${name}.${format}`, url);
}
document.addEventListener("click", (event) => {
  const button = event.target.closest && event.target.closest(".chart-tools button[data-chart]");
  if (!button) return;
  downloadChart(button.dataset.chart, button.dataset.format).catch((err) => reportError("download", err));
});

window.kvcalcCharts = {
  counts,
  get typingPauseMs() { return typingPauseMs; },
  set typingPauseMs(ms) { typingPauseMs = ms; },
  /** main.py's callbacks: chart(name) returns a chart's JSON (page_figures.for_page) for the
   *  last valid edit, computed when called; suggestions() draws the suggestions. */
  connect(chart, suggestions, edit, later) {
    chartSource = chart;
    suggestionSource = suggestions;
    laterSource = later;
    connected = true;
    if (edit && !editSource) {
      editSource = edit;
      const form = document.getElementById("scenario");
      form.addEventListener("input", onEdit);
      form.addEventListener("change", onEdit);
    }
  },
  /** An edit's later parts (space-separated names for main.py's later callback): each in a
   *  task of its own after the next frame; a newer edit drops those not run yet. */
  later(names) { if (laterSource) queueLater(names); },
  /** Before Python has started (site/prerender.js): draw the charts from the build's JSON,
   *  chart(name) (null: not drawn). main.py's equal JSON later is not drawn again. */
  prerendered(chart) {
    if (connected) return;
    chartSource = chart;
    this.invalidate("", false);
  },
  /** Before Python has started: the charts drawn are not the scenario's any more (an edit,
   *  another link): remove them until main.py draws the scenario's. */
  forget() {
    if (connected) return;
    chartSource = null;
    run++;
    running = false;
    computed = [];
    tablesDue.clear();
    for (const name of NAMES) {
      const div = element(name);
      if (div && window.Plotly && lastJson.has(name)) window.Plotly.purge(div);
      lastJson.delete(name);
      drawnLegends.delete("chart-" + name);
      const head = document.getElementById(`chart-${name}-head`);
      if (head) { head.replaceChildren(); delete head.dataset.text; }
      const legend = document.getElementById(`chart-${name}-legend`);
      if (legend) { legend.replaceChildren(); legend.hidden = true; }
      shown.set(name, -1);
      if (div) div.dataset.state = "stale";
    }
    markState();
  },
  /** Charts `names` (space-separated; all when empty) are out of date, and the suggestions
   *  too when `suggestions`: draw them in later tasks, after the next painted frame. */
  invalidate(names, suggestions) {
    version++;
    if (connected) lastEdit = performance.now();
    for (const name of [...(names ? names.split(" ") : NAMES), ...(suggestions ? [SUGGESTIONS] : [])]) {
      if (!wanted.has(name)) continue;
      wanted.set(name, version);
      const el = element(name);
      if (el) el.dataset.state = "stale";
    }
    markState();
    start(true);
  },
};
