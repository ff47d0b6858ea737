"""A new deploy never shows the old build silently (issue 12, defect 11): a page served from
the old build's cache shows a notice with a reload button once the new service worker has
cached the new build, and the button loads the new build with the same link."""

from __future__ import annotations

import re
import shutil

import pytest
from pagetools import Site, new_context, wait_ready

pytestmark = pytest.mark.browser

NEW_VERSION = "fedcba9876543210"
ASK_VERSION_JS = """() => new Promise((resolve) => {
  const channel = new MessageChannel();
  channel.port1.onmessage = (e) => resolve(e.data.version);
  navigator.serviceWorker.controller.postMessage({type: 'version'}, [channel.port2]);
})"""


def second_build(dist_dir, target, old_version: str):
    """A copy of the build as a later deploy gives it: another page text and another version."""
    shutil.copytree(dist_dir, target)
    for name in ("index.html", "lab.html"):
        page = target / name
        text = page.read_text().replace(f'data-build="{old_version}"', f'data-build="{NEW_VERSION}"')
        page.write_text(text.replace("KV-cache hit-rate calculator</h1>",
                                     "KV-cache hit-rate calculator (new)</h1>"))
    sw = target / "sw.js"
    sw.write_text(re.sub(r'const VERSION = "[0-9a-f]+";', f'const VERSION = "{NEW_VERSION}";', sw.read_text()))
    return target


def test_a_new_deploy_shows_a_notice_and_reload_loads_it(browser, dist_dir, tmp_path):
    old_version = (dist_dir / "version.txt").read_text().strip()
    old = tmp_path / "old"
    shutil.copytree(dist_dir, old)
    new = second_build(dist_dir, tmp_path / "new", old_version)
    live = tmp_path / "live"            # what the server serves: the old build, then the new
    live.symlink_to(old, target_is_directory=True)
    running = Site(live)
    context, watch = new_context(browser, running.origin, service_workers="allow")
    try:
        page = context.new_page()
        page.goto(running.url + "#model=qwen3-8b")
        wait_ready(page)
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=60_000)
        # the first visit: the worker serves this very build, no notice
        assert page.evaluate(ASK_VERSION_JS) == old_version
        page.wait_for_timeout(300)
        assert page.locator("#update-notice").count() == 0

        live.unlink()                   # deploy the new build
        live.symlink_to(new, target_is_directory=True)
        page.reload()
        wait_ready(page)                # the old build, from the old worker's cache ...
        assert "(new)" not in page.inner_text("h1")
        notice = page.locator("#update-notice")
        notice.wait_for(timeout=60_000)  # ... says a new one is ready
        assert "new version" in notice.inner_text()
        assert page.evaluate("document.documentElement.dataset.update") == "ready"
        with page.expect_navigation():
            page.click("#update-reload")
        wait_ready(page)
        assert "(new)" in page.inner_text("h1")
        assert page.evaluate("location.hash") == "#model=qwen3-8b"
        assert page.evaluate(ASK_VERSION_JS) == NEW_VERSION
        page.wait_for_timeout(300)
        assert page.locator("#update-notice").count() == 0
    finally:
        context.close()
        running.stop()
    watch.check()
