// Chart drawing for main.py. Each chart arrives as the JSON of
// site/page_figures.py (for_page): a Plotly figure with no title, legend or colour bar
// (Plotly.react redraws it), and those as plain values that are drawn here as HTML beside it.
// All four charts are redrawn on every update (numbers and charts within 100 ms, issue #4);
// <html data-charts> is "pending" until Plotly.js has loaded and drawn them, then "drawn".
// Only textContent and attributes are set from the data: nothing is parsed as HTML.
const CONFIG = window.kvcalcPlotConfig;   // set by loader.js, which runs first
const SVG = "http://www.w3.org/2000/svg";
const root = document.documentElement;
const pending = new Map();
const drawnLegends = new Map();
const configured = new WeakSet();

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
      for (const [id, json] of [...pending]) {
        pending.delete(id);
        guardedDraw(id, json);
      }
      root.dataset.charts = "drawn";
    }, (err) => console.error("kvcache calculator: " + err.message));
  }
  return plotlyLoading;
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

function draw(id, json) {
  const div = document.getElementById(id);
  if (!div) return;
  const chart = JSON.parse(json);
  drawText(id, chart);
  // The config only on the first draw: given again, Plotly.react rebuilds and compares its
  // whole default config on every call (measured: about 1.5 ms a chart).
  window.Plotly.react(div, chart.figure.data, chart.figure.layout, configured.has(div) ? undefined : CONFIG);
  configured.add(div);
}

function guardedDraw(id, json) {
  try {
    draw(id, json);
  } catch (err) {
    // A draw after Plotly.js loads has no Python caller to report it: show the short sentence.
    console.error("kvcache calculator: chart " + id + ": " + (err && err.stack || err));
    const box = document.getElementById("app-error");
    const text = document.getElementById("app-error-text");
    if (text) text.textContent = "An internal error stopped a chart from updating.";
    if (box) box.hidden = false;
  }
}

window.kvcalcCharts = {
  /** Draw chart JSON (page_figures.for_page) into element `id`, or once Plotly.js is loaded. */
  show(id, json) {
    if (!window.Plotly) {
      pending.set(id, json);
      root.dataset.charts = "pending";
      loadPlotly();
      return;
    }
    pending.delete(id);
    draw(id, json);
    root.dataset.charts = "drawn";
  },
};
