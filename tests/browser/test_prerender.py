"""The numbers before Python has loaded (issue 12): the default page and the preset links
show the build's numbers at first paint, drawn by the same core, and Python takes over with
the same values; any other link, and any edit made before Python is ready, shows
placeholders, never another scenario's numbers.

Python is held back by holding the request for Pyodide's WebAssembly binary until the test
has read what the page shows without it.
"""

from __future__ import annotations

import pytest
from pagetools import ARTIFACTS, CHARTS, set_field, value, wait_ready

pytestmark = pytest.mark.browser

NONE = "—"
OUTPUTS_JS = """() => Object.fromEntries([...document.querySelectorAll('#results output[id]')]
    .map((o) => [o.id, [o.textContent, o.dataset.value]]))"""
# Every value of the headline painted, in order (sampled once a frame, while visible).
RECORD_SHOWN_JS = """
window.__shown = [];
const sample = () => {
  const el = document.getElementById('token_hit_rate');
  if (el && getComputedStyle(el).visibility === 'visible') {
    const text = el.textContent;
    if (window.__shown[window.__shown.length - 1] !== text) window.__shown.push(text);
  }
  requestAnimationFrame(sample);
};
requestAnimationFrame(sample);
"""


class HeldPython:
    """Holds the requests for Pyodide's WebAssembly until :meth:`release`."""

    def __init__(self, page):
        self.page = page
        self.routes = []
        page.route("**/pyodide.asm.wasm", self.hold)

    def hold(self, route):
        self.routes.append(route)

    def release(self):
        for route in self.routes:
            route.continue_()
        self.page.unroute("**/pyodide.asm.wasm", self.hold)


def open_held(page, url: str) -> HeldPython:
    page.add_init_script(RECORD_SHOWN_JS)
    held = HeldPython(page)
    page.goto(url)
    page.wait_for_function("['prerendered', 'pending'].includes(document.documentElement.dataset.numbers)")
    page.wait_for_function("document.readyState !== 'loading'")
    return held


def drawn_charts(page) -> list[str]:
    return [name for name in CHARTS if page.locator(f"#chart-{name} .main-svg").count()]


def assert_placeholders(page) -> None:
    assert page.evaluate("document.documentElement.dataset.numbers") == "pending"
    shown = page.evaluate(OUTPUTS_JS)
    assert shown and all(pair == [NONE, ""] for pair in shown.values()), shown
    assert page.inner_text("#mini-value") == NONE
    assert page.inner_text("#suggestions").strip() == "Computed once Python has loaded."
    assert drawn_charts(page) == []


def test_default_page_shows_the_builds_numbers_and_charts_and_python_agrees(page, site):
    held = open_held(page, site.url)
    assert page.evaluate("document.documentElement.dataset.numbers") == "prerendered"
    # every chart near the viewport drawn by Plotly.js from the page's data, Python not started
    page.set_viewport_size({"width": 1280, "height": 900})
    # (scrolled to: the suggestions' apply buttons can push the first chart past the near-view margin)
    page.locator("#chart-hit_vs_memory").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#chart-hit_vs_memory .main-svg')")
    assert page.evaluate("document.documentElement.dataset.state") == "loading"
    before = page.evaluate(OUTPUTS_JS)
    assert before["token_hit_rate"][0].endswith("%") and float(before["token_hit_rate"][1]) > 0
    suggestions = page.inner_text("#suggestions")
    assert "Computed once Python" not in suggestions and suggestions.strip()
    heads = {name: page.inner_text(f"#chart-{name}-head") for name in drawn_charts(page)}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "prerender-desktop.png"), full_page=True)
    drawn = page.evaluate("window.kvcalcCharts.counts.drawn")

    held.release()
    wait_ready(page)
    page.wait_for_function("document.documentElement.dataset.charts === 'drawn'")
    assert page.evaluate("document.documentElement.dataset.numbers") == "python"
    assert page.evaluate(OUTPUTS_JS) == before          # the same text and the same value
    assert page.inner_text("#suggestions") == suggestions
    assert {name: page.inner_text(f"#chart-{name}-head") for name in heads} == heads
    # Python's charts are the build's, to the character: none drawn again
    assert page.evaluate("window.kvcalcCharts.counts.drawn") == drawn
    # no frame showed another value of the headline
    assert page.evaluate("window.__shown") == [before["token_hit_rate"][0]]


def test_a_preset_link_shows_its_numbers_and_python_agrees(page, site):
    held = open_held(page, site.url + "#model=qwen3-32b")
    assert page.evaluate("document.documentElement.dataset.numbers") == "prerendered"
    before = page.evaluate(OUTPUTS_JS)
    assert float(before["kv_bytes_per_token"][1]) == 262144   # Qwen3-32B: 64 layers x 8 heads x 128 x 2 x 2 bytes
    # numbers only: the default page's suggestions and charts are not this link's
    assert page.inner_text("#suggestions").strip() == "Computed once Python has loaded."
    assert drawn_charts(page) == []
    held.release()
    wait_ready(page)
    assert page.evaluate(OUTPUTS_JS) == before
    assert page.evaluate("window.__shown") == [before["token_hit_rate"][0]]


@pytest.mark.parametrize("fragment", [
    "arrival_rate=1.5",                               # the default page with one key changed
    "model=qwen3-32b&num_gpus=2",                     # a preset link with one key added
    "model=qwen3-32b&gpu=h200&num_gpus=4",            # the README's example with one key changed
    "model=no-such-model&%zz=&gpu",                   # invalid
])
def test_a_link_not_prerendered_shows_placeholders_until_python(page, site, fragment):
    if fragment.startswith("model=no-such"):
        page.watch.allowed_console = ()
    held = open_held(page, site.url + "#" + fragment)
    assert_placeholders(page)
    held.release()
    wait_ready(page)
    final = page.inner_text("#token_hit_rate")
    if fragment.startswith("model=no-such"):
        # an unknown model is never replaced by another one: placeholders stay, and say why
        assert final == NONE and page.evaluate("window.__shown") == [NONE]
        assert page.is_visible("#fit-message") and "model" in page.inner_text("#fit-message")
        return
    assert final != NONE
    # painted: the placeholder, then Python's number; nothing else
    assert page.evaluate("window.__shown") in ([NONE, final], [final])
    if fragment == "arrival_rate=1.5":
        assert value(page, "request_rate") == pytest.approx(1.5 * 5)


def test_an_edit_before_python_is_ready_replaces_the_numbers_by_placeholders(page, site):
    held = open_held(page, site.url)
    # (scrolled to: the suggestions' apply buttons can push the first chart past the near-view margin)
    page.locator("#chart-hit_vs_memory").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#chart-hit_vs_memory .main-svg')")
    set_field(page, "arrival_rate", "3")
    assert_placeholders(page)
    held.release()
    wait_ready(page)
    assert value(page, "request_rate") == pytest.approx(3 * 5)    # 5 turns on average
    assert page.evaluate("window.__shown")[-2:][0] in (NONE, page.inner_text("#token_hit_rate"))


def test_a_hash_change_before_python_follows_the_table(page, site):
    held = open_held(page, site.url + "#model=qwen3-32b")
    qwen = page.evaluate(OUTPUTS_JS)
    page.evaluate("location.hash = 'model=qwen3-32b&turns=9'")
    page.wait_for_function("document.documentElement.dataset.numbers === 'pending'")
    assert_placeholders(page)
    page.evaluate("location.hash = 'model=qwen3-32b'")
    page.wait_for_function("document.documentElement.dataset.numbers === 'prerendered'")
    assert page.evaluate(OUTPUTS_JS) == qwen
    held.release()
    wait_ready(page)
    assert page.evaluate(OUTPUTS_JS) == qwen


def test_phone_before_python(browser, site, shared_context):
    context, _watch = shared_context
    page = context.new_page()
    try:
        page.set_viewport_size({"width": 390, "height": 844})
        held = open_held(page, site.url)
        page.wait_for_function("document.querySelector('#chart-hit_vs_memory .main-svg')"
                               " || document.documentElement.dataset.charts === 'drawn'")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "prerender-phone.png"), full_page=False)
        held.release()
        wait_ready(page)
    finally:
        page.close()


ARCH_PLACEHOLDERS_JS = """() => Object.fromEntries([...document.querySelectorAll('#arch-details input')]
    .map((i) => [i.id, [i.placeholder, i.value]]))"""


@pytest.mark.parametrize("fragment", ["", "#model=deepseek-v3"])
def test_architecture_fields_show_the_presets_values_before_python_as_after(browser, site, fragment):
    """Issue 12 item 13: the architecture panel's empty fields show the preset's values (not
    "auto") before Python has loaded, the same as Python writes them; a link to another preset
    shows its own, desktop and phone."""
    for name, size in (("desktop", {"width": 1280, "height": 900}), ("phone", {"width": 390, "height": 844})):
        context = browser.new_context(viewport=size, service_workers="block")
        page = context.new_page()
        try:
            held = open_held(page, site.url + fragment)
            page.evaluate("document.getElementById('arch-details').open = true")
            before = page.evaluate(ARCH_PLACEHOLDERS_JS)
            assert page.evaluate("document.documentElement.dataset.state") == "loading"
            assert before and all(value == "" for _, value in before.values()), before
            assert not any(p in ("auto", "") for p, _ in before.values()), before
            if not fragment:
                assert before["f-num_layers"][0] == "32"      # Llama-3.1-8B: 32 layers
                ARTIFACTS.mkdir(exist_ok=True)
                page.locator("#arch-details").screenshot(path=str(ARTIFACTS / f"arch-before-python-{name}.png"))
            else:
                assert before["f-num_layers"][0] == "61"      # DeepSeek-V3: 61 layers
            held.release()
            wait_ready(page)
            assert page.evaluate(ARCH_PLACEHOLDERS_JS) == before
        finally:
            context.close()
