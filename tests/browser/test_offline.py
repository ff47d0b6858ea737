"""Offline: nothing leaves the host, the service worker keeps the page working with no
network at all, a new build replaces the old cache, and all of it under a sub-path too."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from pagetools import SUB_PATH, Site, draw_every_chart, new_context, set_field, value, wait_ready

pytestmark = pytest.mark.browser


def test_only_local_files_the_page_needs_are_requested(browser, site, dist_dir):
    context, watch = new_context(browser, site.origin)
    try:
        page = context.new_page()
        page.goto(site.url + "#model=qwen3-32b&gpu=h200&num_gpus=2")
        wait_ready(page)
        set_field(page, "arrival_rate", "3")
        page.wait_for_function("location.hash.includes('arrival_rate=3')")
        page.wait_for_timeout(300)
    finally:
        context.close()
    watch.check()  # no request left the local server, none failed, no page error
    assert watch.external == []
    requested = {u.split("#")[0].split("?")[0][len(site.url):] for u in watch.requests
                 if u.startswith(site.url)}
    vendored = {p.relative_to(dist_dir).as_posix() for p in (dist_dir / "vendor").rglob("*")
                if p.is_file() and "LICENSES" not in p.parts}
    unused = vendored - requested
    assert not unused, f"vendored but never requested: {sorted(unused)}"
    assert "kvcache_calculator.zip" in requested


@pytest.fixture
def dist_copy(dist_dir, tmp_path) -> Path:
    """A private copy of the site, so a test can rewrite it ("a new build")."""
    copy = tmp_path / "dist"
    shutil.copytree(dist_dir, copy)
    return copy


def wait_controlled(page) -> None:
    """Wait until the service worker has cached the site and controls the page."""
    page.wait_for_function("navigator.serviceWorker && navigator.serviceWorker.controller !== null",
                           timeout=60_000)


def wait_until(predicate, what: str, timeout_s: float = 60.0) -> None:
    """Poll ``predicate`` (page.evaluate awaits promises; wait_for_function does not)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def cache_names(page) -> list[str]:
    return page.evaluate("caches.keys()")


@pytest.mark.parametrize("base", ["/", SUB_PATH])
def test_works_offline_after_the_first_visit(browser, dist_copy, base):
    running = Site(dist_copy, base=base)
    context, watch = new_context(browser, running.origin, service_workers="allow")
    try:
        page = context.new_page()
        page.goto(running.url + "#model=qwen3-8b&arrival_rate=2")
        wait_ready(page)
        wait_controlled(page)
        version = (dist_copy / "version.txt").read_text().strip()
        scope = base
        assert cache_names(page) == [f"kvcalc:{scope}:{version}"]
        first = value(page, "token_hit_rate")
        # every request stayed under the base path
        assert all(u.startswith(running.url) for u in watch.requests), watch.requests

        running.stop()                       # no server any more ...
        context.set_offline(True)            # ... and no network at all
        page.reload()
        wait_ready(page)
        assert value(page, "token_hit_rate") == first
        set_field(page, "arrival_rate", "4")
        page.wait_for_function("location.hash.includes('arrival_rate=4')")
        assert value(page, "request_rate") == pytest.approx(4 * 5)   # 5 turns on average
        draw_every_chart(page)               # Plotly.js from the cache too
        other = context.new_page()
        other.goto(running.url + "#model=qwen3-32b&gpu=h200&num_gpus=2")
        wait_ready(other)
        assert value(other, "kv_bytes_per_token") == 262144
    finally:
        context.close()
        running.stop()
    watch.check()


def test_a_new_build_replaces_the_old_cache(browser, dist_copy):
    running = Site(dist_copy)
    context, watch = new_context(browser, running.origin, service_workers="allow")
    try:
        page = context.new_page()
        page.goto(running.url)
        wait_ready(page)
        wait_controlled(page)
        old = (dist_copy / "version.txt").read_text().strip()
        assert cache_names(page) == [f"kvcalc:/:{old}"]
        # "a new build": new page text, a new version in the service worker
        new = "0123456789abcdef"
        index = dist_copy / "index.html"
        index.write_text(index.read_text().replace("KV-cache hit-rate calculator</h1>",
                                                   "KV-cache hit-rate calculator (new)</h1>"))
        sw = dist_copy / "sw.js"
        sw.write_text(re.sub(r'const VERSION = "[0-9a-f]+";', f'const VERSION = "{new}";',
                             sw.read_text()))
        page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.update())")
        wait_until(lambda: cache_names(page) == [f"kvcalc:/:{new}"], "the new cache replaced the old")
        page.reload()
        wait_ready(page)
        assert "(new)" in page.inner_text("h1")
        assert cache_names(page) == [f"kvcalc:/:{new}"]
    finally:
        context.close()
        running.stop()
    watch.check()
