"""The calculator page as a careful engineer checks it (issue 12, defects 12-14 and "what
engineers missed"): a model that does not fit says so, the form shows what the model uses,
the page reads well to a screen reader, and results leave the page as files.

Each test failed before its fix. Every request leaving the local server fails the test
(conftest.py), so exports and chart images are made in the page.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from pagetools import CHARTS, check_fits_screen, field, new_context, serious_axe_violations, set_field, value, wait_ready

pytestmark = pytest.mark.browser

NO_FIT = "#model=llama-3.1-70b"        # 135 GiB of weights and reserves on an 80 GB GPU


def near_chart(page, name: str) -> None:
    """Scroll chart ``name`` near the viewport and wait until it shows the last edit."""
    page.locator(f"#chart-{name}-head").scroll_into_view_if_needed()
    page.wait_for_function("(n) => document.getElementById('chart-' + n).dataset.state === 'drawn'", arg=name)


def test_a_model_that_does_not_fit_says_so_instead_of_zeros(page, site):
    """Defect 12: the headline was a big "0.0 %" and the tornado empty axes."""
    page.goto(site.url + NO_FIT)
    wait_ready(page)
    assert page.text_content("#token_hit_rate").strip() == "Does not fit"
    assert value(page, "token_hit_rate") is None          # no number to copy either
    for key in ("request_hit_rate", "characteristic_time_s", "hit_tokens_per_s"):
        assert "0" not in page.text_content(f"#{key}"), key
    assert page.text_content("#mini-value").strip() == "Does not fit"
    # why, and what would fit, with buttons
    assert page.is_visible("#fit-notice")
    assert "135.3 GiB" in page.inner_text("#fit-message")
    page.wait_for_selector("#fit-options:not([hidden])")
    options = page.locator("#fit-options button").all_inner_texts()
    assert "Apply: GPUs per instance = 4" in options, options
    # the tornado and the sensitivity curve (0 % everywhere) are a sentence, not empty axes
    for name in ("tornado", "sensitivity"):
        near_chart(page, name)
        assert page.is_visible(f"#chart-{name}-blank")
        assert "does not fit" in page.inner_text(f"#chart-{name}-blank")
        assert page.locator(f"#chart-{name} .main-svg").count() == 0
    # what still means something is drawn: the memory breakdown shows why
    near_chart(page, "memory")
    assert page.is_hidden("#chart-memory-blank")
    # one click makes it fit, and the charts come back
    page.evaluate("window.scrollTo(0, 0)")
    page.click("#fit-options button:has-text('GPUs per instance = 4')")
    page.wait_for_function("document.documentElement.dataset.fits === 'true'")
    assert field(page, "num_gpus").input_value() == "4"
    assert page.text_content("#token_hit_rate").strip().endswith("%")
    assert 0 < value(page, "token_hit_rate") < 1
    assert page.is_hidden("#fit-notice")
    near_chart(page, "tornado")
    page.wait_for_selector("#chart-tornado .main-svg")
    assert page.is_hidden("#chart-tornado-blank")


def test_suggestion_apply_buttons_change_the_form(page, site):
    """What engineers missed: a one-click "apply" on a suggestion."""
    page.goto(site.url + "#instances=3&routing=random&turns=7")
    wait_ready(page)
    button = page.locator("#suggestions button:has-text('Apply: Routing = session')")
    button.wait_for()
    before = value(page, "token_hit_rate")
    button.click()
    page.wait_for_function("(old) => document.getElementById('token_hit_rate').dataset.value != old",
                           arg=str(before))
    assert field(page, "routing").input_value() == "session"
    assert value(page, "token_hit_rate") > before
    assert "routing=" not in page.input_value("#share-url")        # session is the default
    assert page.evaluate("document.activeElement.id") == "results-title"   # focus kept in the results


def test_architecture_fields_show_the_presets_values(page, site):
    """Defect 13: the architecture panel showed "auto" instead of the preset's values."""
    page.goto(site.url + "#model=llama-3.1-70b&num_gpus=4")
    wait_ready(page)
    placeholders = page.evaluate("""() => Object.fromEntries(['num_layers', 'num_kv_heads', 'head_dim',
        'params_b', 'kv_lora_rank'].map(k => [k, document.getElementById('f-' + k).placeholder]))""")
    assert placeholders["num_layers"] == "80"
    assert placeholders["num_kv_heads"] == "8"
    assert placeholders["head_dim"] == "128"
    assert placeholders["params_b"] == "70.6"
    assert placeholders["kv_lora_rank"] == "not used by this model"
    assert "auto" not in placeholders.values()
    set_field(page, "model", "deepseek-v3")
    page.wait_for_function("document.getElementById('f-kv_lora_rank').placeholder === '512'")
    assert page.get_attribute("#f-num_layers", "placeholder") == "61"


def test_sensitivity_selector_offers_only_inputs_that_apply(page, site):
    """Defect 13: MLA keys were offered for a GQA model."""
    offered = "() => [...document.querySelectorAll('#sensitivity-key option')].filter(o => !o.hidden && !o.disabled).map(o => o.value)"
    page.goto(site.url + "#model=llama-3.1-8b")
    wait_ready(page)
    keys = page.evaluate(offered)
    assert "num_kv_heads" in keys and "head_dim" in keys
    assert "kv_lora_rank" not in keys and "qk_rope_head_dim" not in keys
    assert "sliding_window" not in keys and "activation_reserve_gib" not in keys
    page.select_option("#sensitivity-key", "head_dim")
    set_field(page, "model", "deepseek-v3")
    page.wait_for_function("!document.querySelector('#sensitivity-key option[value=kv_lora_rank]').hidden")
    keys = page.evaluate(offered)
    assert "kv_lora_rank" in keys and "num_kv_heads" not in keys and "head_dim" not in keys
    # the chosen input no longer applies: back to the default
    assert page.input_value("#sensitivity-key") == "arrival_rate"


def test_chart_titles_use_the_forms_labels(page, site):
    """Defect 13: "Token hit rate vs kv cache size override"."""
    page.goto(site.url + "#kv_cache_tokens=200000")
    wait_ready(page)
    page.select_option("#sensitivity-key", "kv_cache_tokens")
    near_chart(page, "sensitivity")
    page.wait_for_function("document.getElementById('chart-sensitivity-head').textContent.includes('override')")
    head = page.inner_text("#chart-sensitivity-head")
    assert "Token hit rate vs KV cache size override" in head, head


def test_a_600_key_link_gets_a_short_summarised_notice(page, site):
    """Defect 13: a 600-key link filled the screen with notices."""
    keys = "&".join(f"junk{i}=1" for i in range(598)) + "&arrival_rate=oops&turns=-1"
    page.goto(site.url + "#" + keys)
    wait_ready(page)
    assert page.is_visible("#link-notice")
    shown = page.locator("#link-notice-list > li").count()
    assert shown == 9                                   # 8 items, then the rest folded
    summary = page.inner_text("#link-notice-list > li:last-child summary")
    assert summary == "592 more: 598 unknown keys, 2 invalid values in all", summary
    assert page.locator("#link-notice").bounding_box()["height"] < 450
    assert value(page, "token_hit_rate") is not None   # the valid rest still computes


def test_counts_of_one_are_singular(page, site):
    """Defect 13: "1 instance(s)", "1 conversations/s"."""
    page.goto(site.url + "#arrival_rate=0.2&turns=5&turns_dist=fixed")
    wait_ready(page)
    assert page.text_content("#request_rate").strip() == "1 request/s"


def test_only_the_headline_is_announced_once_typing_pauses(page, site):
    """Defect 14: 11 <output>s were live regions, read on every keystroke."""
    page.goto(site.url)
    wait_ready(page)
    # the headline of the link opened is announced once, after the same pause
    page.wait_for_function("document.getElementById('announce').textContent !== ''")
    live = page.evaluate("""() => [...document.querySelectorAll('#results *')].filter(el => {
        const live = el.getAttribute('aria-live');
        if (live) return live !== 'off';
        return el.tagName === 'OUTPUT' || ['status', 'alert', 'log'].includes(el.getAttribute('role'));
    }).map(el => el.id)""")
    assert live == ["announce", "measured-result"], live   # the second speaks only for its own fields
    assert page.get_attribute("#announce", "aria-live") == "polite"
    page.evaluate("""() => { window.announced = [];
        new MutationObserver(() => window.announced.push(document.getElementById('announce').textContent))
            .observe(document.getElementById('announce'), {childList: true, characterData: true, subtree: true}); }""")
    field(page, "think_time_s").fill("")
    field(page, "think_time_s").press_sequentially("900", delay=150)
    page.wait_for_timeout(300)
    assert page.evaluate("window.announced") == []      # nothing while typing
    page.wait_for_function("window.announced.length > 0", timeout=5000)
    page.wait_for_timeout(1500)
    announced = page.evaluate("window.announced")
    assert len(announced) == 1, announced
    assert announced[0] == "Token hit rate " + page.text_content("#token_hit_rate").strip()


def test_every_chart_has_its_numbers_as_a_table(page, site):
    """Defect 14: charts need a text alternative."""
    page.goto(site.url)
    wait_ready(page)
    for name in CHARTS:
        near_chart(page, name)
        page.wait_for_selector(f"#chart-{name}-table table tbody tr", state="attached")
    tornado = page.evaluate("""() => ({rows: document.querySelectorAll('#chart-tornado-table tbody tr').length,
        bars: document.getElementById('chart-tornado').data[0].y.length,
        first: document.querySelector('#chart-tornado-table tbody th').textContent,
        bar: document.getElementById('chart-tornado').data[0].y[0]})""")
    assert tornado["rows"] == tornado["bars"] and tornado["first"] == tornado["bar"]
    memory = page.eval_on_selector_all("#chart-memory-table tbody th", "els => els.map(e => e.textContent)")
    assert memory[0] == "Weights" and "KV cache" in memory
    page.click("#chart-hit_vs_memory-data summary")
    assert page.is_visible("#chart-hit_vs_memory-table table")
    assert "This scenario" in page.inner_text("#chart-hit_vs_memory-table")


def test_buttons_show_a_visible_focus_ring(page, site):
    """Defect 14: toolbar buttons need a visible focus ring."""
    page.goto(site.url)
    wait_ready(page)
    near_chart(page, "hit_vs_memory")
    for selector in ("#copy-link", "#export-json", ".chart-tools button[data-format=png]"):
        page.locator(selector).first.focus()
        page.keyboard.press("Shift+Tab")               # keyboard focus, so :focus-visible applies
        page.keyboard.press("Tab")
        ring = page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
            return {style: s.outlineStyle, width: parseFloat(s.outlineWidth), color: s.outlineColor}; }""")
        assert ring["style"] == "solid" and ring["width"] >= 2, (selector, ring)
        assert ring["color"] == "rgb(26, 29, 35)", (selector, ring)     # --fg: 16:1 on white


def test_axe_reports_nothing_serious_on_the_new_parts(browser, site):
    """Defect 14: axe-core on the page with a model that does not fit, its options, the
    charts' tables and the measured-rate fields open."""
    context, watch = new_context(browser, site.origin, bypass_csp=True)
    try:
        p = context.new_page()
        p.goto(site.url + NO_FIT)
        wait_ready(p)
        p.wait_for_selector("#fit-options:not([hidden])")
        for name in CHARTS:
            near_chart(p, name)
        p.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        p.fill("#m-hits", "x")
        p.wait_for_selector("#m-hits[aria-invalid=true]")
        serious = serious_axe_violations(p)
        assert serious == [], serious
    finally:
        context.close()
    watch.check()


def test_export_scenario_results_and_charts(page, site, tmp_path):
    """What engineers missed: the scenario and results as JSON and CSV, charts as PNG and SVG."""
    page.goto(site.url + "#model=qwen3-32b&gpu=h200")
    wait_ready(page)
    with page.expect_download() as info:
        page.click("#export-json")
    doc = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert info.value.suggested_filename == "kvcache-qwen3-32b.json"
    assert doc["scenario"]["model"] == "qwen3-32b" and doc["scenario"]["gpu"] == "h200"
    assert doc["results"]["token_hit_rate"] == pytest.approx(value(page, "token_hit_rate"))
    assert doc["units"]["capacity_tokens"] == "tokens" and doc["suggestions"]
    with page.expect_download() as info:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    by_key = {(r["section"], r["key"]): r for r in rows}
    assert by_key[("scenario", "model")]["value"] == "qwen3-32b"
    assert float(by_key[("result", "token_hit_rate")]["value"]) == pytest.approx(value(page, "token_hit_rate"))
    near_chart(page, "hit_vs_memory")
    page.wait_for_selector("#chart-hit_vs_memory .main-svg")
    for fmt, start in (("png", b"\x89PNG"), ("svg", b"<svg")):
        with page.expect_download() as info:
            page.click(f".chart-tools button[data-chart=hit_vs_memory][data-format={fmt}]")
        data = Path(info.value.path()).read_bytes()
        assert info.value.suggested_filename == f"kvcache-hit_vs_memory.{fmt}"
        assert data.startswith(start), data[:20]
        if fmt == "svg":
            assert b"Token hit rate vs GPU memory" in data     # the title is in the image


def test_measured_engine_counters_against_the_prediction(page, site):
    """What engineers missed: enter vLLM's counters (or a rate) and see the gap."""
    page.goto(site.url)
    wait_ready(page)
    predicted = value(page, "token_hit_rate")
    page.click("#measured summary")
    page.fill("#m-hits", "3000")
    page.fill("#m-queries", "10000")
    text = page.inner_text("#measured-result")
    assert text.startswith(f"Measured 30.0 %, predicted {100 * predicted:.1f} %")
    assert float(page.get_attribute("#measured-result", "data-gap")) == pytest.approx(30 - 100 * predicted, abs=1e-3)
    assert "below the prediction" in text
    page.fill("#m-queries", "0")
    assert "prefix_cache_queries" in page.inner_text("#measured-result")
    assert page.get_attribute("#m-queries", "aria-invalid") == "true"
    page.fill("#m-hits", "")
    page.fill("#m-queries", "")
    page.fill("#m-rate", f"{100 * predicted:.2f}")
    assert "within 2 points" in page.inner_text("#measured-result")
    # the comparison follows the prediction when the scenario changes
    set_field(page, "think_time_s", "5")
    page.wait_for_function("!document.getElementById('measured-result').textContent.includes('within 2 points')")


@pytest.mark.parametrize("width,height,name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_does_not_fit_layout_fits_the_screen(shared_context, site, width, height, name):
    context, watch = shared_context
    p = context.new_page()
    try:
        p.set_viewport_size({"width": width, "height": height})
        p.goto(site.url + NO_FIT)
        wait_ready(p)
        p.locator("#fit-notice").scroll_into_view_if_needed()     # below the form on a phone
        p.wait_for_selector("#fit-options:not([hidden])")
        for chart in CHARTS:
            near_chart(p, chart)
        p.evaluate("document.querySelectorAll('.chart-data, #measured').forEach(d => d.open = true)")
        check_fits_screen(p, f"page-no-fit-{name}")
    finally:
        p.close()
    watch.check()
