"""End-to-end tests of the built page in Chromium (see conftest.py for the fixtures).

Each test loads the page from the local static server; every request leaving that server is
aborted and fails the test, as does any page error or console error.
"""

from __future__ import annotations

import json
import math

import pytest
from pagetools import CHARTS, check_fits_screen, draw_every_chart, field, set_field, value, wait_ready

pytestmark = pytest.mark.browser

RESULT_IDS = ("token_hit_rate", "request_hit_rate", "max_token_hit_rate",
              "characteristic_time_s", "capacity_tokens", "capacity_gib", "kv_bytes_per_token",
              "kv_bytes_per_token_per_gpu", "request_rate", "hit_tokens_per_s",
              "prefill_gpu_s_saved_per_s")


def results(page) -> dict:
    return {key: page.get_attribute(f"#{key}", "data-value") for key in RESULT_IDS}


def wait_changed(page, key: str, old: str | None) -> None:
    page.wait_for_function(
        "([k, old]) => document.getElementById(k).dataset.value !== old", arg=[key, old])


def test_page_loads_computes_and_draws_every_chart(page, site):
    page.goto(site.url)
    wait_ready(page)
    got = results(page)
    for key in ("token_hit_rate", "request_hit_rate", "max_token_hit_rate",
                "capacity_tokens", "kv_bytes_per_token", "request_rate"):
        assert got[key] not in (None, ""), f"{key} has no data-value"
        assert math.isfinite(float(got[key]))
    assert 0 < value(page, "token_hit_rate") <= value(page, "max_token_hit_rate") <= 1
    # the default model is a preset with a published KV size (docs/validation.md §8)
    assert value(page, "kv_bytes_per_token") == 131072
    assert page.text_content("#token_hit_rate").strip().endswith("%")
    draw_every_chart(page)      # each is drawn when it comes near the viewport
    page.wait_for_function("document.documentElement.dataset.charts === 'drawn'")
    # PyScript's document-wide MutationObservers are stopped once Python has started
    # (loader.js): the updates below still work without them
    assert page.get_attribute("html", "data-observers") == "stopped"
    # titles, legends and the colour bar are HTML beside each chart (page_figures.for_page)
    for name in CHARTS:
        assert page.text_content(f"#chart-{name}-head").strip(), f"{name} has no title"
        assert page.locator(f"#chart-{name} .legend, #chart-{name} .colorbar").count() == 0
    legend = page.inner_text("#chart-hit_vs_memory-legend")
    assert "Token hit rate (model)" in legend and "Ceiling" in legend and "This scenario" in legend
    assert page.locator("#chart-hit_vs_memory-legend li svg").count() == 3
    assert page.inner_text("#chart-tornado-legend").split() == ["-20%", "+20%"]
    assert "Hit rate (%)" in page.inner_text("#chart-heatmap-legend .colorbar")
    # the heatmap's axis is log10 on a linear scale: labels and hover text show real rates
    heat = page.evaluate("""() => { const d = document.getElementById('chart-heatmap');
        return {y0: d.data[0].y[0], text0: d.data[0].text[0][0],
                ticks: [...d.querySelectorAll('.ytick text')].map(t => t.textContent)}; }""")
    assert float(heat["text0"]) == pytest.approx(10 ** heat["y0"], rel=1e-2)
    assert {"0.1", "1", "10"} <= set(heat["ticks"])
    assert page.locator("#suggestions li").count() >= 1
    body = page.inner_text("body")
    assert "Traceback" not in body
    csp = page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
    assert "default-src 'self'" in csp and "http" not in csp
    # every scenario input's name is its key, every field has a label and help text
    names = page.eval_on_selector_all("#scenario [name]", "els => els.map(e => e.name)")
    assert {"model", "gpu", "num_gpus", "arrival_rate", "think_time_s", "kv_cache_tokens"} <= set(names)
    unlabelled = page.eval_on_selector_all(
        "#scenario [name]", "els => els.filter(e => !e.labels || !e.labels.length).map(e => e.name)")
    assert unlabelled == []


def test_changing_an_input_recomputes_and_updates_the_link(page, site):
    page.goto(site.url)
    wait_ready(page)
    before = results(page)
    set_field(page, "think_time_s", "600")
    wait_changed(page, "token_hit_rate", before["token_hit_rate"])
    assert float(page.get_attribute("#token_hit_rate", "data-value")) < float(before["token_hit_rate"])
    page.wait_for_function("location.hash.includes('think_time_s=600')")   # when the page is idle
    assert page.input_value("#share-url").endswith(page.evaluate("location.hash"))
    # the lab opens on the same scenario
    assert page.get_attribute("#lab-link", "href") == "./lab.html" + page.evaluate("location.hash")
    set_field(page, "kv_dtype", "fp8")
    wait_changed(page, "kv_bytes_per_token", before["kv_bytes_per_token"])
    assert value(page, "kv_bytes_per_token") == 65536


def test_share_link_round_trip_restores_fields_and_results(page, site, shared_context):
    page.goto(site.url)
    wait_ready(page)
    for key, text in (("model", "qwen3-8b"), ("arrival_rate", "3.5"), ("turns", "8"),
                      ("think_dist", "fixed"), ("num_gpus", "2"), ("system_prompt_tokens", "1000"),
                      ("num_documents", "40"), ("document_zipf", "1.3"), ("think_sigma", "1.5")):
        old = page.get_attribute("#token_hit_rate", "data-value")
        set_field(page, key, text)
        page.wait_for_function("(k) => location.hash.includes(k + '=')", arg=key)
    link = page.input_value("#share-url")
    form = {k: field(page, k).input_value() for k in
            ("model", "arrival_rate", "turns", "think_dist", "num_gpus", "system_prompt_tokens", "gpu",
             "num_documents", "document_zipf", "think_sigma")}
    shown = results(page)
    other = shared_context[0].new_page()
    try:
        other.goto(link)
        wait_ready(other)
        assert {k: field(other, k).input_value() for k in form} == form
        assert results(other) == shown
    finally:
        other.close()
    assert old is not None


def test_preset_link(page, site):
    page.goto(site.url + "#model=qwen3-32b&gpu=h200&num_gpus=2")
    wait_ready(page)
    assert field(page, "model").input_value() == "qwen3-32b"
    assert field(page, "gpu").input_value() == "h200"
    assert field(page, "num_gpus").input_value() == "2"
    assert value(page, "kv_bytes_per_token") == 262144
    assert page.inner_text("#capacity_gib").endswith(" GiB over 2 GPUs")
    assert page.is_hidden("#link-notice")
    # the datalist offers the presets for searching
    assert page.locator("#model-presets option").count() >= 10


def test_link_with_unknown_keys_and_bad_values(page, site):
    page.goto(site.url + "#arrival_rate=-1&bogus_key=1&turns=3&gpu=nonexistent-gpu")
    wait_ready(page)
    notice = page.inner_text("#link-notice")
    assert page.is_visible("#link-notice")
    assert "arrival_rate" in notice and "bogus_key" in notice and "gpu" in notice
    assert field(page, "arrival_rate").input_value() == "1"      # its default
    assert field(page, "gpu").input_value() == "h100-sxm"        # its default
    assert field(page, "turns").input_value() == "3"             # the rest of the link applies
    assert value(page, "request_rate") == pytest.approx(3.0)     # 1 conversation/s x 3 turns


def test_invalid_field_shows_message_and_keeps_stale_results(page, site):
    page.goto(site.url)
    wait_ready(page)
    before = results(page)
    set_field(page, "arrival_rate", "fast")
    control = field(page, "arrival_rate")
    page.wait_for_function(
        "document.querySelector('[name=arrival_rate]').getAttribute('aria-invalid') === 'true'")
    # beside its labelled field: the rule, then what was typed (not the key)
    message = page.inner_text("#e-arrival_rate")
    assert message.startswith("Must be a number") and "(you entered 'fast')" in message
    assert "e-arrival_rate" in control.get_attribute("aria-describedby")
    assert page.is_visible("#stale-note")
    assert page.get_attribute("#mini-stale", "hidden") is None       # the phone's sticky bar too
    assert results(page) == before
    # later edits still reach the link, the invalid field as typed
    set_field(page, "think_time_s", "30")
    page.wait_for_function("location.hash.includes('think_time_s=30')")
    assert "arrival_rate=fast" in page.evaluate("location.hash")
    page.click("#copy-link")
    page.wait_for_function("document.getElementById('copy-status').textContent !== ''")
    assert "1 invalid field" in page.inner_text("#copy-status")
    set_field(page, "arrival_rate", "")
    page.wait_for_function("document.getElementById('e-arrival_rate').textContent.startsWith('Enter a value.')")
    set_field(page, "model", "qwen")
    page.wait_for_function("document.getElementById('e-model').textContent.includes('matching: ')")
    assert "qwen3-8b" in page.inner_text("#e-model") and "llama" not in page.inner_text("#e-model")
    set_field(page, "model", "llama-3.1-8b")
    set_field(page, "think_time_s", "60")
    set_field(page, "arrival_rate", "2")
    page.wait_for_function("document.getElementById('stale-note').hidden")
    assert control.get_attribute("aria-invalid") is None
    assert value(page, "request_rate") != float(before["request_rate"])


def test_choosing_custom_marks_every_missing_architecture_field(page, site):
    page.goto(site.url)
    wait_ready(page)
    set_field(page, "model", "custom")
    page.wait_for_function("document.getElementById('stale-note').hidden === false")
    for key in ("num_layers", "params_b", "num_kv_heads", "head_dim"):
        assert field(page, key).get_attribute("aria-invalid") == "true", key
        assert page.inner_text(f"#e-{key}") == "Enter a value: it is required for a custom architecture."
    assert page.evaluate("document.getElementById('arch-details').open")


def test_a_link_with_an_invalid_field_opens_with_the_other_edits(page, site):
    page.goto(site.url + "#turns_dist=fixed&think_time_s=30&turns=7.5")
    wait_ready(page)
    assert "turns" in page.inner_text("#link-notice")
    assert field(page, "think_time_s").input_value() == "30"
    assert field(page, "turns_dist").input_value() == "fixed"


def test_link_notice_names_repeated_and_nameless_parts(page, site):
    page.goto(site.url + "#arrival_rate=2&arrival_rate=3&=x")
    wait_ready(page)
    notice = page.inner_text("#link-notice")
    assert "arrival_rate: given more than once; the last value ('3') is used" in notice
    assert "without a name" in notice and "\n: not a known" not in notice
    assert field(page, "arrival_rate").input_value() == "3"


def test_a_link_overriding_a_preset_shows_the_override(page, site):
    page.goto(site.url + "#model=qwen3-30b-a3b&num_layers=40")
    wait_ready(page)
    assert page.evaluate("document.getElementById('arch-details').open")
    assert "num_layers = 40" in page.inner_text("#override-note")
    assert field(page, "num_layers").input_value() == "40"
    set_field(page, "num_layers", "")
    page.wait_for_function("document.getElementById('override-note').hidden")


def test_model_that_does_not_fit_explains_itself(page, site):
    page.goto(site.url + "#model=llama-3.1-405b&gpu=l4")
    wait_ready(page)
    assert page.is_visible("#fit-message")
    message = page.inner_text("#fit-message")
    assert len(message) > 20 and "Traceback" not in message
    assert page.get_attribute("html", "data-fits") == "false"
    set_field(page, "model", "llama-3.2-1b")
    page.wait_for_function("document.documentElement.dataset.fits === 'true'")
    assert page.is_hidden("#fit-message")


def test_config_import_by_paste_and_file(page, site, shared_dir, tmp_path):
    config = shared_dir / "hf-configs" / "Qwen--Qwen3-32B.json"
    if not config.exists():
        pytest.skip(f"{config} not found: ../shared/hf-configs is absent")
    page.goto(site.url)
    wait_ready(page)
    page.click("#import summary")
    page.fill("#import-text", config.read_text())
    page.click("#import-apply")
    page.wait_for_function("location.hash.includes('model=custom')")
    assert field(page, "num_layers").input_value() == "64"
    assert value(page, "kv_bytes_per_token") == 262144
    assert "Imported" in page.inner_text("#import-status")
    # a file with an unsupported/broken config: the message, no traceback, nothing else changes
    bad = tmp_path / "config.json"
    bad.write_text('{"num_hidden_layers": "many"}')
    page.set_input_files("#import-file", str(bad))
    page.wait_for_function("document.getElementById('import-status').textContent.includes('Not imported')")
    assert "Traceback" not in page.inner_text("#import-status")
    assert field(page, "num_layers").input_value() == "64"
    # a good file
    page.set_input_files("#import-file", str(shared_dir / "hf-configs" / "Qwen--Qwen3-8B.json"))
    page.wait_for_function("document.querySelector('[name=num_layers]').value === '36'")
    assert page.inner_text("#import-status").startswith("Imported from config.json")
    assert "approximately" not in page.inner_text("#import-status")
    # an architecture the scenario keys cannot hold exactly says so, and names the preset
    gemma = shared_dir / "hf-configs" / "google--gemma-4-26B-A4B.json"
    page.set_input_files("#import-file", str(gemma))
    page.wait_for_function("document.getElementById('import-status').textContent.includes('approximately')")
    assert "The preset gemma-4-26b-a4b has the exact figures." in page.inner_text("#import-status")
    # nothing pasted: says what to do, not a JSON parser's message
    page.fill("#import-text", "  ")
    page.click("#import-apply")
    page.wait_for_function("document.getElementById('import-status').textContent.startsWith('Paste')")


INJECTIONS = (
    "<img src=x onerror=window.__pwned=1>",
    "\"><script>window.__pwned=1</script>",
    "<svg/onload=window.__pwned=1>",
    "javascript:window.__pwned=1",
)


def test_injection_payloads_in_links_and_configs_never_execute(page, site):
    from urllib.parse import quote

    for payload in INJECTIONS:
        encoded = quote(payload, safe="")
        page.goto("about:blank")
        page.goto(f"{site.url}#model={encoded}&{encoded}=1&arrival_rate={encoded}")
        wait_ready(page)
        assert page.is_visible("#link-notice")
        assert page.evaluate("window.__pwned") is None
        page.evaluate("document.getElementById('import').open = true")
        config = {"architectures": [payload], "model_type": payload, "num_hidden_layers": payload,
                  "hidden_size": 4096, "num_attention_heads": 32}
        page.fill("#import-text", json.dumps(config))
        page.click("#import-apply")
        page.wait_for_function("document.getElementById('import-status').textContent !== ''")
        page.fill("#import-text", json.dumps({"architectures": [payload], "model_type": "llama",
                                              "num_hidden_layers": 2, "hidden_size": 64,
                                              "num_attention_heads": 4, "num_key_value_heads": 2,
                                              "intermediate_size": 128, "vocab_size": 100}))
        page.click("#import-apply")
        page.wait_for_timeout(100)
        assert page.evaluate("window.__pwned") is None
        injected = page.evaluate("""() => [...document.querySelectorAll(
            '[onerror], [onload], img[src="x"], script')].filter(
            el => el.tagName !== 'SCRIPT' || el.textContent.includes('__pwned')).length""")
        assert injected == 0


def test_unexpected_error_shows_a_sentence_not_a_traceback(page, site):
    page.watch.allowed_console = ("kvcache calculator:",)
    page.goto(site.url)
    wait_ready(page)
    page.wait_for_function("window.Plotly !== undefined")
    page.evaluate("() => { window.Plotly.react = () => { throw new Error('boom'); }; }")
    set_field(page, "turns", "7")
    page.wait_for_selector("#app-error:not([hidden])")
    text = page.inner_text("#app-error")
    assert "Traceback" not in page.inner_text("body")
    assert "report it" in text
    assert page.get_attribute("#report-link", "href")


def test_keyboard_only_editing(page, site):
    page.goto(site.url)
    wait_ready(page)
    before = page.get_attribute("#token_hit_rate", "data-value")
    field(page, "think_time_s").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("900")
    wait_changed(page, "token_hit_rate", before)
    # Tab moves on to the next control, which is focusable and labelled
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.labels && document.activeElement.labels.length") >= 1


@pytest.mark.parametrize("width,height,name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_layout_fits_the_screen(shared_context, site, width, height, name):
    context, watch = shared_context
    p = context.new_page()
    try:
        p.set_viewport_size({"width": width, "height": height})
        p.goto(site.url + "#model=qwen3-32b&gpu=h200&num_gpus=2")
        wait_ready(p)
        draw_every_chart(p)
        check_fits_screen(p, f"page-{name}")
    finally:
        p.close()
    watch.check()


def test_axe_reports_no_serious_or_critical_violation(browser, site):
    from pagetools import new_context, serious_axe_violations

    context, watch = new_context(browser, site.origin, bypass_csp=True)
    try:
        p = context.new_page()
        p.goto(site.url + "#arrival_rate=oops&bogus=1")  # with the notice showing
        wait_ready(p)
        set_field(p, "turns", "0")                         # and an invalid field
        p.wait_for_selector("#e-turns:not([hidden])")
        serious = serious_axe_violations(p)
        assert serious == [], serious
    finally:
        context.close()
    watch.check()


def test_classic_formula_toggle_and_copy_link(page, site):
    page.goto(site.url)
    wait_ready(page)
    page.wait_for_selector("#chart-hit_vs_memory .main-svg")
    names = """() => document.getElementById('chart-hit_vs_memory').data
        .filter(t => t.visible !== false).map(t => t.name)"""
    assert not any("original" in n.lower() for n in page.evaluate(names))
    page.check("#show-classic")
    page.wait_for_function(names.replace("() =>", "() => (") + ").some(n => n.toLowerCase().includes('original'))")
    page.click("#copy-link")
    page.wait_for_function("document.getElementById('copy-status').textContent !== ''")
    assert page.input_value("#share-url") == page.evaluate("location.href")
    # the chart settings go back to their defaults with Reset
    page.select_option("#sensitivity-key", "think_time_s")
    page.click("#reset")
    page.wait_for_function("!document.getElementById('show-classic').checked")
    assert page.evaluate("document.getElementById('sensitivity-key').selectedIndex") == 0


def test_chart_toolbars_have_zoom_pan_and_reset_only(page, site):
    """Plotly.js 4 adds a "Share chart" button that uploads to Plotly Cloud unless told not to."""
    page.goto(site.url)
    wait_ready(page)
    draw_every_chart(page)
    titles = page.eval_on_selector_all(".modebar-btn", "els => els.map(e => e.dataset.title)")
    assert len(titles) == 3 * len(CHARTS), titles
    assert set(titles) == {"Zoom", "Pan", "Reset axes"}, titles


def test_a_core_that_fails_to_load_gives_the_error_state_not_a_traceback(page, site):
    import io
    import zipfile

    page.watch.allowed_console = ("kvcache calculator:",)
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("kvcache_calculator/__init__.py", "raise RuntimeError('broken build')\n")
    page.route("**/kvcache_calculator.zip", lambda route: route.fulfill(
        status=200, body=broken.getvalue(), content_type="application/zip"))
    page.goto(site.url)
    page.wait_for_function("document.documentElement.dataset.state !== 'loading'", timeout=90_000)
    assert page.get_attribute("html", "data-state") == "error"
    assert page.is_visible("#app-error")
    body = page.inner_text("body")
    assert "Traceback" not in body and "broken build" not in body
    assert "could not start" in page.inner_text("#load-text") or page.is_visible("#app-error")


def test_sensitivity_input_selector_and_config_drop(page, site, shared_dir):
    page.goto(site.url)
    wait_ready(page)
    page.locator("#chart-sensitivity").scroll_into_view_if_needed()
    page.wait_for_selector("#chart-sensitivity .main-svg")
    page.select_option("#sensitivity-key", "think_time_s")
    # the chart's title is HTML above it (page_figures.for_page), its axis names the input
    page.wait_for_function("""() =>
        document.getElementById('chart-sensitivity-head').textContent.toLowerCase().includes('think time')
        && document.getElementById('chart-sensitivity').layout.xaxis.title.text.toLowerCase()
            .includes('think time')""")
    assert "sensitivity" not in page.evaluate("location.hash")   # a view setting, not a key
    # dropping a config.json file on the import area imports it
    config = (shared_dir / "hf-configs" / "Qwen--Qwen3-8B.json").read_text()
    page.evaluate("""(text) => {
        const data = new DataTransfer();
        data.items.add(new File([text], 'config.json', {type: 'application/json'}));
        const target = document.getElementById('import');
        target.dispatchEvent(new DragEvent('dragover', {dataTransfer: data, bubbles: true, cancelable: true}));
        target.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    }""", config)
    page.wait_for_function("document.querySelector('[name=num_layers]').value === '36'")
    assert field(page, "model").input_value() == "custom"
