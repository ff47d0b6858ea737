// Numbers before Python has loaded (issue 12). build.py wrote the default scenario's numbers,
// suggestions and charts into this page (by the same core: kvcache_calculator.present.page_numbers),
// and the numbers of every preset link into #prerender-data. A page shows them only for the
// scenario they are for: the default page (no fragment), or a link whose fragment is in the
// table, as written; any other link (one key changed, an invalid fragment) and any edit made
// before Python is ready show placeholders until Python computes them: never another
// scenario's numbers.
// A classic script in <head>, run before the body is parsed: the static numbers are hidden by
// style.css while <html data-numbers="checking">, and shown at first paint only when the link
// has no fragment. <html data-numbers> then says what the numbers are: "prerendered" (the
// build's, for this scenario), "pending" (placeholders) or "python" (main.py's, set by its
// render; this script does nothing more then).
(() => {
  const root = document.documentElement;
  const fragment = () => location.hash.replace(/^#/, "");
  if (fragment() === "") root.dataset.numbers = "prerendered";
  let data = null;
  let defaultSuggestions = null;

  function read() {
    if (data === null) {
      const blob = document.getElementById("prerender-data");
      try {
        data = blob ? JSON.parse(blob.textContent) : {};
      } catch (_) {
        data = {};
      }
    }
    return data;
  }
  function pythonHasTakenOver() {
    return root.dataset.numbers === "python" || root.dataset.state !== "loading";
  }
  // Charts drawn from the build's data (charts.js) while the settings are the default ones.
  function chartSource(name) {
    const key = document.getElementById("sensitivity-key");
    const classic = document.getElementById("show-classic");
    if ((key && key.value !== data.sensitivity_key) || (classic && classic.checked)) return null;
    return (data.charts || {})[name] || null;
  }

  function placeholders() {
    window.kvcalcWrite(JSON.stringify(read().placeholder || []));
    root.dataset.numbers = "pending";
    if (window.kvcalcCharts) window.kvcalcCharts.forget();
  }

  /** Show the build's numbers for the link's scenario, or placeholders when it has none. */
  function show() {
    if (pythonHasTakenOver()) return;
    const { fields = [], rows = {}, links = {} } = read();
    const key = links[fragment()];
    if (key === undefined || !(key in rows)) {
      placeholders();
      return;
    }
    window.kvcalcWrite(JSON.stringify(rows[key].map(([i, value]) => [...fields[i], value])));
    const charts = window.kvcalcCharts;
    const suggestions = document.getElementById("suggestions");
    if (key === "") {
      if (suggestions && defaultSuggestions) suggestions.replaceChildren(...defaultSuggestions.map((n) => n.cloneNode(true)));
      if (charts) charts.prerendered(chartSource);
    } else {
      const pending = (read().placeholder || []).filter(([id]) => id === "suggestions");
      window.kvcalcWrite(JSON.stringify(pending));
      if (charts) charts.forget();
    }
    root.dataset.numbers = "prerendered";
  }

  document.addEventListener("DOMContentLoaded", () => {
    // module scripts (loader.js's kvcalcWrite, charts.js) have run by now
    const suggestions = document.getElementById("suggestions");
    if (suggestions) defaultSuggestions = [...suggestions.children].map((n) => n.cloneNode(true));
    show();
    window.addEventListener("hashchange", show);
    // an edit before Python is ready: the numbers shown are no longer this form's
    const form = document.getElementById("scenario");
    if (form) {
      form.addEventListener("input", (event) => {
        if (!pythonHasTakenOver() && event.target.name && event.target.id !== "share-url") placeholders();
      });
    }
  });
})();
