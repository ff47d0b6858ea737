"""What both pages' glue shares: DOM look-ups, event wiring that no exception escapes, and
the one sentence shown for an unexpected error.

Page-only code: PyScript fetches it beside ``main.py`` and ``lab.py`` (``files`` in
``pyscript.json``), so each page imports it by name. It imports nothing from the core: a
core that fails to load is still reported through it.
"""

import asyncio
import traceback
from dataclasses import dataclass

from pyscript import document, window
from pyscript.ffi import create_proxy


def missing(value):
    """True for Python None and JavaScript null/undefined (Pyodide's JsNull)."""
    return value is None or type(value).__name__ in ("JsNull", "JsUndefined")


def by_id(element_id):
    """The element with this id, or None."""
    element = document.getElementById(element_id)
    return None if missing(element) else element


@dataclass(frozen=True)
class Page:
    """One page's wording for unexpected errors: ``name`` starts the console log (the browser
    tests allow exactly these lines), ``stopped`` names what the error stopped."""

    name: str
    stopped: str

    def report_unexpected(self, err):
        """Log the traceback for developers; show the user one sentence (the page's
        ``#app-error`` box says how to report it)."""
        window.console.error(f"{self.name}: " + "".join(
            traceback.format_exception(type(err), err, err.__traceback__)))
        by_id("app-error-text").textContent = (
            f"An internal error ({type(err).__name__}) stopped this {self.stopped}.")
        by_id("app-error").hidden = False

    def guarded(self, handler):
        """``handler`` wrapped so that no exception escapes to PyScript's error display: it
        returns the handler's result, or None after reporting the error; a handler that
        returns a coroutine runs as a task, reported the same way."""
        def wrapper(event=None):
            try:
                result = handler(event)
                if asyncio.iscoroutine(result):
                    self.start_task(result)
                    return None
                return result
            except Exception as err:  # noqa: BLE001 (the page must never show a traceback)
                self.report_unexpected(err)
                return None
        return wrapper

    def start_task(self, coroutine):
        """Run ``coroutine`` as a task whose exception, if any, is reported."""
        task = asyncio.ensure_future(coroutine)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task):
        if not task.cancelled() and task.exception() is not None:
            self.report_unexpected(task.exception())

    def listen(self, element_id, event_name, handler):
        """Call ``handler(event)`` (guarded) on each ``event_name`` event of ``#element_id``."""
        element = by_id(element_id)
        if element is None:
            raise LookupError(f"the page has no element #{element_id} to listen to")
        element.addEventListener(event_name, create_proxy(self.guarded(handler)))
