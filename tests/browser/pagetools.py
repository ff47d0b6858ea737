"""Helpers for the browser tests: waiting for the page, reading results, filling fields."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402 (the repository's build script: the static server)

SUB_PATH = "/kvcache-calculator/"
READY_TIMEOUT_MS = 90_000


class Site:
    """A running static server for the built site."""

    def __init__(self, directory: Path, base: str = "/"):
        self.server = build.start_server(directory, base=base)
        self.url = self.server.url
        self.origin = self.url.split("/", 3)[0] + "//" + self.url.split("/", 3)[2]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Watch:
    """Collects page errors, console errors, external and failed requests of a context."""

    def __init__(self, origin: str):
        self.origin = origin
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        self.external: list[str] = []
        self.requests: list[str] = []
        self.bad_status: list[str] = []
        self.dialogs: list[str] = []
        self.allowed_console = ()

    def route(self, route):
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.external.append(url)
            route.abort()

    def attach(self, page):
        page.on("pageerror", lambda err: self.page_errors.append(f"{err}"))
        page.on("console", self._console)
        page.on("request", lambda req: self.requests.append(req.url))
        page.on("response", lambda res: res.status >= 400 and self.bad_status.append(
            f"{res.status} {res.url}"))
        page.on("dialog", self._dialog)

    def _console(self, message):
        if message.type == "error" and not any(a in message.text for a in self.allowed_console):
            self.console_errors.append(message.text[:2000])

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check(self):
        problems = []
        if self.page_errors:
            problems.append(f"page errors: {self.page_errors}")
        if self.console_errors:
            problems.append(f"console errors: {self.console_errors}")
        if self.external:
            problems.append(f"requests leaving the local server: {self.external}")
        if self.bad_status:
            problems.append(f"failed responses: {self.bad_status}")
        if self.dialogs:
            problems.append(f"dialogs opened: {self.dialogs}")
        assert not problems, "; ".join(problems)


def new_context(browser, origin: str, **options):
    """A browser context that aborts and records every request leaving ``origin``."""
    options.setdefault("service_workers", "block")
    options.setdefault("viewport", {"width": 1280, "height": 900})
    context = browser.new_context(**options)
    watch = Watch(origin)
    context.route("**/*", watch.route)
    context.on("page", watch.attach)
    return context, watch


def wait_ready(page, timeout: int = READY_TIMEOUT_MS) -> None:
    """Wait until the first results are drawn (``<html data-state="ready">``)."""
    page.wait_for_function(
        "document.documentElement.dataset.state !== 'loading'", timeout=timeout)
    state = page.evaluate("document.documentElement.dataset.state")
    assert state == "ready", f"page state is {state!r}: {page.inner_text('#app-error')}"


def value(page, result_id: str) -> float | None:
    """A result's ``data-value`` as a float (None when empty)."""
    raw = page.get_attribute(f"#{result_id}", "data-value")
    return float(raw) if raw not in (None, "") else None


def field(page, key: str):
    """The form control of a scenario key."""
    return page.locator(f'#scenario [name="{key}"]')


def set_field(page, key: str, text: str) -> None:
    """Type a value into a field (opening its <details> first) and let the page recompute."""
    control = field(page, key)
    page.evaluate("""(key) => {
        const el = document.querySelector(`#scenario [name="${key}"]`);
        const d = el.closest('details'); if (d) d.open = true; }""", key)
    if control.evaluate("el => el.tagName") == "SELECT":
        control.select_option(text)
    else:
        control.fill(text)
    wait_numbers(page)


def wait_numbers(page) -> None:
    """Wait until the last edit's numbers are written (charts.js evaluates edits in a later
    task, and main.py writes their numbers in the next frame)."""
    page.wait_for_function("document.documentElement.dataset.edit !== 'pending'")


ARTIFACTS = ROOT / "test-artifacts"


def check_fits_screen(page, label: str) -> None:
    """No horizontal overflow at the current viewport; a full-page screenshot is kept in
    ``test-artifacts/<label>.png`` for a person to look at."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{label}: the page is {overflow}px wider than the screen"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{label}.png"), full_page=True)


def serious_axe_violations(page) -> list:
    """axe-core's serious and critical violations on the page as it stands (skips the test
    when node_modules/axe-core is absent)."""
    import pytest

    axe = ROOT / "node_modules" / "axe-core" / "axe.min.js"
    if not axe.exists():
        pytest.skip("node_modules/axe-core is absent: run npm ci (python build.py test does)")
    page.add_script_tag(path=str(axe))
    found = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


CHARTS = ("hit_vs_memory", "sensitivity", "tornado", "heatmap", "memory")


def chart_state(page, name: str) -> str:
    """``stale`` or ``drawn``: whether chart ``name`` shows the last edit (charts.js)."""
    return page.get_attribute(f"#chart-{name}", "data-state")


def draw_every_chart(page) -> None:
    """Scroll each chart into view and wait until it is drawn for the last edit (charts are
    drawn only when near the viewport); back to the top afterwards."""
    wait_numbers(page)
    for name in CHARTS:
        page.locator(f"#chart-{name}").scroll_into_view_if_needed()
        page.wait_for_function("(n) => document.getElementById('chart-' + n).dataset.state === 'drawn'"
                               " && document.querySelector('#chart-' + n + ' .main-svg')", arg=name)
    page.evaluate("window.scrollTo(0, 0)")
