"""Fixtures for the browser tests: the built site on a local static server, and Chromium.

The site is built once per session into a temporary directory (or taken from
``$KVCALC_DIST``, which ``python build.py test`` sets) and served by a static server thread on
127.0.0.1 with a free port. Every page fails its test on any page error or console error, and
every request that would leave the local server is aborted and fails the test too.

Chromium: the system one (``/usr/bin/chromium`` on Debian) where present, else Playwright's
own when it is installed; with neither, these tests skip with the reason. They never run
``playwright install``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / ".." / "shared"
sys.path.insert(0, str(ROOT))

import build  # noqa: E402 (the repository's build script, for build() and the server)
from pagetools import SUB_PATH, Site, new_context  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage"]


def system_chromium() -> str | None:
    """Path of a system Chromium, if any."""
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser",
                      shutil.which("chromium") or "", shutil.which("chromium-browser") or "",
                      shutil.which("google-chrome") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def playwright_instance():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright for Python is not installed")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance):
    executable = system_chromium()
    if executable is None:
        own = Path(playwright_instance.chromium.executable_path)
        if not own.exists():
            if os.environ.get("CI") == "true":  # .ci/run installs Chromium: never skip in CI
                pytest.fail("no Chromium in CI: .ci/run should have installed it")
            pytest.skip("no Chromium: install the system package (apt-get install chromium); "
                        "Playwright's own browser is not installed either")
        executable = str(own)
    browser = playwright_instance.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def dist_dir(tmp_path_factory) -> Path:
    """The built site: $KVCALC_DIST, or a fresh build in a temporary directory."""
    given = os.environ.get("KVCALC_DIST")
    if given and (Path(given) / "index.html").exists():
        return Path(given)
    if not (build.NODE_MODULES / "pyodide").exists() and shutil.which("npm") is None:
        pytest.skip("cannot build the site: node_modules/ is missing and npm is not installed")
    return build.build(tmp_path_factory.mktemp("dist") / "dist")


@pytest.fixture(scope="session")
def site(dist_dir):
    running = Site(dist_dir)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def sub_site(dist_dir):
    """The same site under a GitHub-Pages-like sub-path."""
    running = Site(dist_dir, base=SUB_PATH)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def shared_context(browser, site):
    """One context for most tests, so the runtime comes from the HTTP cache after the first."""
    context, watch = new_context(browser, site.origin)
    yield context, watch
    context.close()


@pytest.fixture
def page(shared_context):
    """A fresh page in the shared context; fails the test on any page or console error."""
    context, watch = shared_context
    watch.page_errors.clear()
    watch.console_errors.clear()
    watch.external.clear()
    watch.bad_status.clear()
    watch.dialogs.clear()
    watch.allowed_console = ()
    p = context.new_page()
    p.watch = watch
    yield p
    p.close()
    watch.check()


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found: ../shared/ is absent")
    return SHARED
