"""The lab's simulations, issue 12 defect 9: an estimate of the time before a costly run
starts (and a choice to cancel it), progress that only moves forward with the time left,
Cancel that stops the job and leaves the page usable; desktop and phone viewports.

Behaviour only: how long tasks take is measured by benchmarks/bench_lab_tasks.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pagetools import check_fits_screen
from test_lab_page import SMALL, open_lab, start_and_wait

pytestmark = pytest.mark.browser

# FIFO on 4 instances with random routing, 20,000 conversations: minutes in any browser
COSTLY = "policy=fifo&instances=4&routing=random"
SHOTS = Path("/tmp/t_shots")
VIEWPORTS = [(1280, 900, "desktop"), (390, 844, "phone")]


def job_state(page) -> str:
    return page.evaluate("document.documentElement.dataset.job")


def progress(page) -> float:
    return page.evaluate("document.getElementById('job-progress').value")


def start_costly(page, site, width, height) -> None:
    """Press Simulate on the costly scenario; a first slice is timed, then the run waits with
    its estimate: Run it, or Cancel."""
    page.set_viewport_size({"width": width, "height": height})
    open_lab(page, site, COSTLY)
    page.select_option("#sim-conversations", "20000")
    page.click("#simulate")
    page.wait_for_function("document.documentElement.dataset.simConfirm === 'waiting'", timeout=60_000)


@pytest.mark.parametrize("width,height,name", VIEWPORTS)
def test_a_costly_simulation_shows_its_estimate_before_it_runs(page, site, width, height, name):
    start_costly(page, site, width, height)
    estimate = float(page.evaluate("document.documentElement.dataset.simEstimateS"))
    assert estimate > 60
    status = page.inner_text("#job-status")
    assert "take about" in status and "min" in status, status
    assert page.is_visible("#job-go") and page.is_visible("#cancel")
    assert job_state(page) == "running"
    # while it waits, nothing runs: the bar stays where the first slice left it
    held = progress(page)
    page.wait_for_timeout(700)
    assert progress(page) == held
    check_fits_screen(page, f"lab-estimate-{name}")
    SHOTS.mkdir(exist_ok=True)
    page.locator("#job").screenshot(path=str(SHOTS / f"estimate-{name}.png"))
    page.click("#cancel")
    page.wait_for_function("document.documentElement.dataset.job !== 'running'")
    assert job_state(page) == "cancelled"
    assert page.is_hidden("#job-go") and page.is_enabled("#simulate")


@pytest.mark.parametrize("width,height,name", VIEWPORTS)
def test_a_long_run_moves_forward_with_the_time_left_and_cancels(page, site, width, height, name):
    start_costly(page, site, width, height)
    page.click("#job-go")
    page.wait_for_function("document.documentElement.dataset.simConfirm === undefined")
    page.wait_for_function("document.getElementById('job-status').textContent.includes('left')",
                           timeout=60_000)
    samples = []
    for _ in range(6):
        samples.append(progress(page))
        page.wait_for_timeout(500)
    assert all(b >= a for a, b in zip(samples, samples[1:])), samples
    assert samples[-1] > samples[0], samples            # it advances, not only at the end
    status = page.inner_text("#job-status")
    assert "requests" in status and "left" in status and "%" in status, status
    page.locator("#job").screenshot(path=str(SHOTS / f"progress-{name}.png"))
    page.click("#cancel")
    page.wait_for_function("document.documentElement.dataset.job !== 'running'")
    assert job_state(page) == "cancelled"
    assert "cancelled" in page.inner_text("#job-status")
    # the page is usable: a quick simulation runs to its end, with no question asked
    page.evaluate("(f) => { location.hash = f; }", SMALL)      # another scenario, same page
    page.wait_for_function("document.getElementById('scenario-text').textContent.includes('0.5 conversations/s')")
    page.select_option("#sim-conversations", "300")
    assert start_and_wait(page, "#simulate") == "done"
    assert page.evaluate("document.documentElement.dataset.simEstimateS") is not None
    assert float(page.get_attribute("#sim-token_hit_rate", "data-value")) > 0
    check_fits_screen(page, f"lab-after-cancel-{name}")


def test_the_scenario_line_says_1_instance(page, site):
    open_lab(page, site, "instances=1&arrival_rate=1&turns=1")
    text = page.inner_text("#scenario-text")
    assert "1 instance;" in text and "1 conversation/s of 1 turn," in text, text
    assert "instance(s)" not in text
