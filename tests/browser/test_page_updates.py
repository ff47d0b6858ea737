"""The order of an update (issue 14): numbers at once, suggestions and charts in later tasks,
charts only near the viewport, and a newer edit superseding an older one's chart work.

No wall-clock bounds here: ``benchmarks/bench_page.py`` measures how long each part takes.
"""

from __future__ import annotations

import pytest
from pagetools import CHARTS, chart_state, draw_every_chart, value, wait_ready

from kvcache_calculator.analytic.table import prepare
from kvcache_calculator.present.page_numbers import format_result
from kvcache_calculator.present.report import (
    evaluate, evaluate_numbers, measured_comparison, sensitivity_keys, suggestion_dicts,
)

pytestmark = pytest.mark.browser

# Dispatch edits in one JS task and read the page: at once (the input events' task is over),
# then in the frame that writes their numbers (charts.js's "kvcalc:numbers" event), before any
# later task has run.
EDIT_AND_READ = """async (edits) => {
    const snapshot = () => {
        const chart = document.getElementById('chart-hit_vs_memory');
        const point = (chart.data || []).find((t) => t.name === 'This scenario');
        return {hit: document.getElementById('token_hit_rate').dataset.value,
                chart_state: chart.dataset.state, chart_hit: point ? point.y[0] : null,
                suggestions: document.getElementById('suggestions').textContent,
                computed: window.kvcalcCharts.counts.computed,
                evaluated: window.kvcalcCharts.counts.evaluated,
                edit: document.documentElement.dataset.edit};
    };
    const before = snapshot();
    const numbers = new Promise((r) => document.addEventListener('kvcalc:numbers', r, {once: true}));
    for (const [key, text] of edits) {
        const el = document.querySelector(`#scenario [name="${key}"]`);
        el.value = text;
        el.dispatchEvent(new Event('input', {bubbles: true}));
    }
    const sync = snapshot();
    await numbers;
    return {before, sync, after: snapshot()};
}"""

DRAWN_FOR_THIS_SCENARIO = """() => {
    const chart = document.getElementById('chart-hit_vs_memory');
    const point = (chart.data || []).find((t) => t.name === 'This scenario');
    const hit = Number(document.getElementById('token_hit_rate').dataset.value);
    return chart.dataset.state === 'drawn' && point && Math.abs(point.y[0] - 100 * hit) < 1e-3;
}"""


def computed(page) -> int:
    return page.evaluate("window.kvcalcCharts.counts.computed")


def open_at_top(page, url: str) -> None:
    page.goto(url)
    wait_ready(page)
    # at 1280 x 900 the first chart is near the viewport: wait until it is drawn
    page.wait_for_function(DRAWN_FOR_THIS_SCENARIO)


def test_numbers_update_before_suggestions_and_charts(page, site):
    open_at_top(page, site.url)
    got = page.evaluate(EDIT_AND_READ, [["think_time_s", "600"], ["turns", "5"]])
    before, sync, after = got["before"], got["sync"], got["after"]
    # the input events' task only records the edits: Python evaluates them in a later task
    assert sync["hit"] == before["hit"] and sync["edit"] == "pending"
    assert sync["evaluated"] == before["evaluated"]
    # the numbers changed in the next frame, both edits in one evaluation ...
    assert after["hit"] != before["hit"] and after["edit"] == "done"
    assert after["evaluated"] == before["evaluated"] + 1
    # ... while the chart and the suggestions still show the previous scenario
    assert before["chart_state"] == "drawn" and after["chart_state"] == "stale"
    assert after["chart_hit"] == before["chart_hit"]
    assert after["suggestions"] == before["suggestions"]
    assert after["computed"] == before["computed"]     # no chart computed in that task
    # later tasks bring them up to date
    page.wait_for_function(DRAWN_FOR_THIS_SCENARIO)
    page.wait_for_function("(old) => document.getElementById('suggestions').textContent !== old",
                           arg=before["suggestions"])
    assert page.get_attribute("html", "data-charts") == "drawn"


def test_only_what_is_near_the_viewport_is_computed_until_scrolled_to(page, site):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(site.url)
    wait_ready(page)
    prerendered = page.inner_text("#suggestions")   # the default page's, written by build.py
    # on a phone the suggestions and charts are far below the form: none is computed, before
    # or after an edit
    page.evaluate(EDIT_AND_READ, [["arrival_rate", "3"]])
    page.wait_for_function("location.hash.includes('arrival_rate=3')")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 50)))")
    assert computed(page) == 0
    assert [chart_state(page, n) for n in CHARTS] == ["stale"] * len(CHARTS)
    assert page.locator("#charts .main-svg").count() == 0
    assert page.get_attribute("#suggestions", "data-state") == "stale"
    assert page.inner_text("#suggestions") == prerendered    # not recomputed
    page.locator("#suggestions").scroll_into_view_if_needed()
    page.wait_for_function("document.getElementById('suggestions').dataset.state === 'drawn'")
    assert page.locator("#suggestions .placeholder").count() == 0
    assert page.locator("#suggestions li").count() >= 1
    assert page.inner_text("#suggestions") != prerendered   # arrival_rate=3's own
    # scrolled into view, the heatmap is drawn, for the current scenario
    page.locator("#chart-heatmap").scroll_into_view_if_needed()
    page.wait_for_function("document.getElementById('chart-heatmap').dataset.state === 'drawn'")
    marker = page.evaluate("document.getElementById('chart-heatmap').data[1]")
    assert marker["name"] == "This scenario"
    assert 10 ** marker["y"][0] == pytest.approx(3.0)     # the log axis holds log10(rate)
    assert page.locator("#chart-heatmap .main-svg").count() > 0
    # the charts far above it stay undrawn (the first chart is near the suggestions, which
    # hold the build's list of the default page's suggestions when scrolled to)
    assert chart_state(page, "sensitivity") == "stale"


def test_a_newer_edit_supersedes_the_older_ones_chart_work(page, site):
    open_at_top(page, site.url)
    start = computed(page)
    # three edits in one task: only the last one's charts are ever computed
    got = page.evaluate(EDIT_AND_READ, [["arrival_rate", "0.5"], ["arrival_rate", "6"],
                                        ["think_time_s", "45"]])
    assert got["after"]["chart_state"] == "stale"
    page.wait_for_function(DRAWN_FOR_THIS_SCENARIO)
    page.wait_for_function("document.documentElement.dataset.charts === 'drawn'")
    drawn = [n for n in CHARTS if chart_state(page, n) == "drawn"]
    assert "hit_vs_memory" in drawn
    assert computed(page) - start == len(drawn)        # once each, for the last edit
    page.wait_for_function("location.hash.includes('arrival_rate=6')")


def test_a_chart_setting_redraws_its_chart_only(page, site):
    open_at_top(page, site.url)
    page.locator("#chart-sensitivity").scroll_into_view_if_needed()
    page.wait_for_function("['hit_vs_memory', 'sensitivity'].every((n) =>"
                           " document.getElementById('chart-' + n).dataset.state === 'drawn')")
    page.wait_for_function("document.documentElement.dataset.charts === 'drawn'")
    start = computed(page)
    page.select_option("#sensitivity-key", "turns")
    page.wait_for_function("document.getElementById('chart-sensitivity-head').textContent"
                           ".toLowerCase().includes('turns')")
    page.wait_for_function("document.documentElement.dataset.charts === 'drawn'")
    assert computed(page) - start == 1
    page.check("#show-classic")
    page.wait_for_function("""() => document.getElementById('chart-hit_vs_memory').data
        .some((t) => t.name.toLowerCase().includes('original'))""")
    page.wait_for_function("document.documentElement.dataset.charts === 'drawn'")
    assert computed(page) - start == 2


def test_plotly_array_attributes_kept_per_trace_type_are_plotlys_own(page, site):
    """charts.js keeps Plotly.js's findArrayAttributes per trace type and array-valued paths:
    for every trace of every chart, before and after an edit, it answers as Plotly.js does."""
    page.goto(site.url)
    wait_ready(page)
    compare = """() => {
        const find = Plotly.PlotSchema.findArrayAttributes;
        const traces = [...document.querySelectorAll('#charts .plot')].flatMap((d) => d._fullData || []);
        return {memoized: find.memoized === true, traces: traces.length,
                differ: traces.filter((t) => JSON.stringify(find(t)) !== JSON.stringify(find.original(t)))
                              .map((t) => t.name)};
    }"""
    for edit in (None, ["model", "qwen3-32b"]):
        if edit:
            page.fill(f'#scenario [name="{edit[0]}"]', edit[1])
        page.check("#show-classic")            # the classic curve's trace too
        draw_every_chart(page)
        got = page.evaluate(compare)
        assert got["memoized"] and got["traces"] >= 10
        assert got["differ"] == []
        page.uncheck("#show-classic")


TYPING_STATE = """() => ({counts: {...window.kvcalcCharts.counts.drawn_by_name},
    drawn: window.kvcalcCharts.counts.drawn, evaluated: window.kvcalcCharts.counts.evaluated,
    in_view: [...document.querySelectorAll('#charts .plot')].filter((p) => {
        const r = p.getBoundingClientRect();
        return r.bottom > 0 && r.top < window.innerHeight; }).map((p) => p.id.slice(6))})"""


def test_typing_redraws_the_charts_once_after_the_pause(page, site):
    """Keys typed into a field update the numbers; the charts in view are redrawn once, when
    typing pauses (charts.js counts the redraws of each chart), for the final value."""
    open_at_top(page, site.url)
    page.locator("#chart-hit_vs_memory").scroll_into_view_if_needed()
    # the IntersectionObserver reports the scroll in a later frame: then the charts it brought near
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.wait_for_function("document.documentElement.dataset.charts === 'drawn'")
    # a longer pause than the page's 250 ms, so that a busy machine's key gaps stay within it
    page.evaluate("window.kvcalcCharts.typingPauseMs = 1500")
    start = page.evaluate(TYPING_STATE)
    assert "hit_vs_memory" in start["in_view"]
    # keys as input events, 40 ms apart: typed with the keyboard, the browser would scroll the
    # field (far below the chart on a desktop) into view and the chart out of it
    page.evaluate("""async () => { const el = document.querySelector('#scenario [name="arrival_rate"]');
        el.focus({preventScroll: true}); el.value = '';
        for (const key of '2.75') {
            el.value += key;
            el.dispatchEvent(new InputEvent('input', {bubbles: true, data: key, inputType: 'insertText'}));
            await new Promise((r) => setTimeout(r, 40));
        } }""")
    page.wait_for_function("document.documentElement.dataset.edit === 'done'")
    typed = page.evaluate(TYPING_STATE)
    assert typed["drawn"] == start["drawn"], (start, typed)   # nothing redrawn while typing
    assert start["evaluated"] < typed["evaluated"] <= start["evaluated"] + 4
    report, _setup = evaluate_numbers({"arrival_rate": "2.75"})
    assert value(page, "token_hit_rate") == pytest.approx(report["results"]["token_hit_rate"], abs=1e-9)
    page.wait_for_function(DRAWN_FOR_THIS_SCENARIO)          # after the pause: the final value's
    page.wait_for_function("document.documentElement.dataset.charts === 'drawn'")
    end = page.evaluate(TYPING_STATE)
    redrawn = {n: end["counts"].get(n, 0) - start["counts"].get(n, 0) for n in CHARTS}
    assert all(redrawn[n] == 1 for n in start["in_view"]), redrawn
    assert max(redrawn.values()) == 1, redrawn
    assert page.evaluate("window.kvcalcCharts.counts.evaluated") == typed["evaluated"]


LATER_STATE = """() => ({later: window.kvcalcCharts.counts.later, evaluated: window.kvcalcCharts.counts.evaluated,
    measured: document.getElementById('measured-result').textContent,
    offered: [...document.getElementById('sensitivity-key').options].filter((o) => !o.hidden).map((o) => o.value),
    suggestions: [...document.querySelectorAll('#suggestions li strong')].map((s) => s.textContent)})"""


def test_a_typed_edits_other_parts_arrive_after_its_numbers(page, site):
    """Typed key by key, a model's id updates the numbers first; the parts the numbers do not
    need (the measured comparison, the sensitivity selector's inputs, the announcement, the
    suggestions) follow, one task each (charts.js counts them), and equal the core's for
    the final value. A newer edit drops the parts an older one has not run yet."""
    open_at_top(page, site.url)
    page.evaluate("window.kvcalcCharts.typingPauseMs = 1500")
    page.evaluate("document.getElementById('measured').open = true")
    page.fill("#m-rate", "50")          # a measured hit rate to compare with
    page.wait_for_function("document.getElementById('measured-result').textContent !== ''")
    start = page.evaluate(LATER_STATE)
    page.evaluate("""() => { const el = document.querySelector('#scenario [name="model"]');
                             el.focus({preventScroll: true}); el.select(); }""")
    page.keyboard.type("gemma-2-9b", delay=30)     # only the last value is a known model
    page.wait_for_function("document.documentElement.dataset.edit === 'done'"
                           " && document.documentElement.dataset.later === 'done'")
    report = evaluate({"model": "gemma-2-9b"})
    numbers, setup = evaluate_numbers({"model": "gemma-2-9b"})
    assert value(page, "token_hit_rate") == pytest.approx(report["results"]["token_hit_rate"], abs=1e-9)
    typed = page.evaluate(LATER_STATE)
    evaluations = typed["evaluated"] - start["evaluated"]
    # three later parts for the valid value, none for the ids that are not models yet, and
    # never more than three per evaluation
    assert 3 <= typed["later"] - start["later"] <= 3 * evaluations
    predicted = numbers["results"]["token_hit_rate"]
    assert typed["measured"] == measured_comparison(predicted, rate_percent="50")["text"]
    assert typed["measured"] != start["measured"]
    assert typed["offered"] == list(sensitivity_keys(setup)) != start["offered"]
    assert "sliding_window" in typed["offered"]        # a sliding-window model's own key
    page.wait_for_function("(text) => document.getElementById('announce').textContent === text",
                           arg="Token hit rate " + format_result("token_hit_rate", predicted))
    page.locator("#suggestions").scroll_into_view_if_needed()
    page.wait_for_function("document.getElementById('suggestions').dataset.state === 'drawn'")
    assert page.evaluate(LATER_STATE)["suggestions"] == [s["title"] for s in suggestion_dicts(prepare(setup))]
    assert [s["title"] for s in report["suggestions"]] == page.evaluate(LATER_STATE)["suggestions"]

    # two edits, the second in the frame that writes the first one's numbers, before the first
    # one's later parts have run: only the second one's run
    before = page.evaluate(LATER_STATE)
    page.evaluate("""() => new Promise((resolve) => {
        const el = document.querySelector('#scenario [name="arrival_rate"]');
        document.addEventListener('kvcalc:numbers', () => {
            el.value = '7';
            el.dispatchEvent(new Event('input', {bubbles: true}));
            resolve();
        }, {once: true});
        el.value = '6';
        el.dispatchEvent(new Event('input', {bubbles: true}));
    })""")
    page.wait_for_function("document.documentElement.dataset.edit === 'done'"
                           " && document.documentElement.dataset.later === 'done'")
    after = page.evaluate(LATER_STATE)
    assert after["evaluated"] - before["evaluated"] == 2
    assert after["later"] - before["later"] == 3
    final, _ = evaluate_numbers({"model": "gemma-2-9b", "arrival_rate": "7"})
    assert after["measured"] == measured_comparison(final["results"]["token_hit_rate"], rate_percent="50")["text"]
