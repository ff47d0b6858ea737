// Chart drawing for main.py: Plotly.react on the charts in view at once, the others when
// they scroll into view or the browser is idle, so an input event is not held up by charts
// nobody can see. <html data-charts> is "pending" while some chart is behind, else "drawn".
const CONFIG = {
  responsive: true,
  displaylogo: false,
  modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"],
};
const root = document.documentElement;
const visible = new Set();
const pending = new Map();
let idleHandle = null;

// Plotly.js (1.5 MB) is preloaded by index.html but only run once the first results are
// on screen, so that parsing it does not compete with Python's start-up.
let plotlyLoading = null;
function loadPlotly() {
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = new URL("./vendor/plotly/plotly-cartesian.min.js", document.baseURI).href;
      script.onload = resolve;
      script.onerror = () => reject(new Error("Plotly.js could not be loaded"));
      document.head.appendChild(script);
    });
    plotlyLoading.then(() => {
      for (const id of [...pending.keys()]) if (visible.has(id)) flush(id);
      if (pending.size && idleHandle === null) idleHandle = whenIdle(drawOneWhenIdle);
    }, (err) => console.error("kvcache calculator: " + err.message));
  }
  return plotlyLoading;
}

function draw(id, json) {
  const div = document.getElementById(id);
  if (!div) return;
  const figure = JSON.parse(json);
  window.Plotly.react(div, figure.data, figure.layout, CONFIG);
}

function flush(id) {
  if (!pending.has(id) || !window.Plotly) return;
  const json = pending.get(id);
  pending.delete(id);
  if (pending.size === 0) root.dataset.charts = "drawn";
  try {
    draw(id, json);
  } catch (err) {
    // A deferred draw has no Python caller to report it: show the same short sentence.
    console.error("kvcache calculator: chart " + id + ": " + (err && err.stack || err));
    const box = document.getElementById("app-error");
    const text = document.getElementById("app-error-text");
    if (text) text.textContent = "An internal error stopped a chart from updating.";
    if (box) box.hidden = false;
  }
}

function whenIdle(callback) {
  return "requestIdleCallback" in window
    ? window.requestIdleCallback(callback, { timeout: 500 })
    : window.setTimeout(callback, 50);
}

function drawOneWhenIdle(deadline) {
  idleHandle = null;
  // at least one chart per idle period, more while the period lasts
  do {
    const next = pending.keys().next();
    if (next.done || !window.Plotly) return;
    flush(next.value);
  } while (pending.size && deadline && deadline.timeRemaining && deadline.timeRemaining() > 20);
  if (pending.size) idleHandle = whenIdle(drawOneWhenIdle);
}

const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (entry.isIntersecting) {
          visible.add(entry.target.id);
          flush(entry.target.id);
        } else {
          visible.delete(entry.target.id);
        }
      }
    }, { rootMargin: "200px 0px" })
  : null;

function observeAll() {
  for (const div of document.querySelectorAll(".plot")) observer && observer.observe(div);
}
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", observeAll);
} else {
  observeAll();
}

window.kvcalcCharts = {
  /** Draw figure JSON into element `id`: now if `force` or in view, else later. */
  show(id, json, force) {
    if (!window.Plotly) {
      pending.set(id, json);
      root.dataset.charts = "pending";
      loadPlotly();
      return;
    }
    if (force || !observer || visible.has(id)) {
      pending.delete(id);
      draw(id, json);
    } else {
      pending.set(id, json);
      if (idleHandle === null) idleHandle = whenIdle(drawOneWhenIdle);
    }
    root.dataset.charts = pending.size ? "pending" : "drawn";
  },
};
