"""Generators of steps: long computations that ``yield`` between small pieces of work, so
the lab page can hand control back to the browser between them (docs/architecture.md)."""

from __future__ import annotations

__all__ = ["drain"]


def drain(steps):
    """Run a generator of steps (``yield`` between pieces of work) to its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
