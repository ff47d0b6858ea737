"""The page's numbers as text: what the calculator page shows for one evaluation.

Shared by the page's glue (``site/main.py``, in Pyodide, on every edit) and by ``build.py``,
which writes the default scenario's numbers and those of the preset links into the static
HTML (the page shows them before Python has loaded). One function for both, so the numbers
drawn at first paint are the ones Python draws when it takes over.

A change is ``[element id, what, value]`` as ``site/loader.js``'s ``kvcalcWrite`` applies
it: ``what`` is ``"text"``, ``"hidden"``, ``"items"`` or an attribute's name; ``":root"``
is ``<html>``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from kvcache_calculator.present.figures import unit_for
from kvcache_calculator.units import NONE, format_bytes, format_count, format_duration, format_fixed, format_percent

#: How each result is written (the plain number goes to ``data-value``).
FORMATS = {
    "token_hit_rate": format_percent,
    "request_hit_rate": format_percent,
    "max_token_hit_rate": format_percent,
    "characteristic_time_s": format_duration,
    "capacity_tokens": lambda v: f"{format_fixed(v)} tokens",
    "capacity_gib": lambda v: f"{format_fixed(v, 2)} GiB",
    "kv_bytes_per_token": lambda v: f"{format_bytes(v)} per token",
    "kv_bytes_per_token_per_gpu": lambda v: f"{format_bytes(v)} per token per GPU",
    "request_rate": lambda v: f"{format_count(v)} {unit_for(v, 'requests/s')}",
    "hit_tokens_per_s": lambda v: f"{format_count(v)} {unit_for(v, 'tokens/s')}",
    "prefill_gpu_s_saved_per_s": lambda v: f"{format_count(v)} GPU·s per s",
}
NONE_TEXT = {"characteristic_time_s": "unbounded (everything fits)"}
#: Results that mean nothing when the model does not fit (no KV cache at all): shown as
#: "does not fit" (the headline) or a dash, never as a number.
NO_FIT_TEXT = {"token_hit_rate": "Does not fit", "request_hit_rate": None, "characteristic_time_s": None,
               "capacity_tokens": "no KV cache", "capacity_gib": None, "hit_tokens_per_s": None,
               "prefill_gpu_s_saved_per_s": None}


def format_result(key: str, value: Any) -> str:
    """The text shown for one result (the plain number goes to ``data-value``)."""
    if value is None:
        return NONE_TEXT.get(key, NONE)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value != value:  # NaN
        return NONE
    if value == float("inf"):
        return "unbounded"
    return FORMATS.get(key, format_count)(value)


def plain_number(value: Any) -> str:
    """``data-value``: the number in the CLI's unit, or empty when there is none."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def result_changes(results: Mapping[str, Any], gpus: int, output_ids: Sequence[str], fits: bool = True) -> list:
    """The page's result outputs (``output_ids``, and the phone's bar) showing ``results``; when
    the model does not fit, "does not fit" and dashes instead of the zeros that would mean nothing."""
    changes = []
    for key in output_ids:
        if key not in results:
            continue
        value = results[key]
        if not fits and key in NO_FIT_TEXT:
            changes += [[key, "text", NO_FIT_TEXT[key] or NONE], [key, "data-value", ""]]
            continue
        text = format_result(key, value)
        if key == "capacity_gib" and gpus > 1 and value is not None:
            text += f" over {gpus} GPUs"   # per instance, over its GPUs (an MLA latent is on each)
        changes += [[key, "text", text], [key, "data-value", plain_number(value)]]
    if "token_hit_rate" in results:
        changes.append(["mini-value", "text", format_result("token_hit_rate", results["token_hit_rate"])
                        if fits else NO_FIT_TEXT["token_hit_rate"]])
    return changes


def number_changes(report: Mapping[str, Any], output_ids: Sequence[str]) -> list:
    """The numbers of an evaluation (:func:`~kvcache_calculator.present.report.evaluate_numbers`):
    whether the model fits and why not, every result, the notes, the lines vLLM should print."""
    fits = bool(report.get("fits", True))
    scenario = report.get("scenario", {})
    return [["fit-message", "text", "" if fits else str(report.get("fit_message", ""))],
            ["fit-notice", "hidden", fits], [":root", "data-fits", "true" if fits else "false"],
            ["headline-sub", "text", "of prompt tokens served from the prefix cache" if fits
             else "on these GPUs: no memory is left for a KV cache"],
            *result_changes(report.get("results", {}), scenario.get("num_gpus") or 1, output_ids, fits),
            ["notes", "items", [str(n) for n in report.get("notes", [])]],
            ["engine-log", "text", str(report.get("engine_log", ""))]]


def placeholder_changes(output_ids: Sequence[str]) -> list:
    """Every number as a placeholder (the page has none yet for the scenario shown)."""
    return [*(change for key in output_ids for change in ([key, "text", NONE], [key, "data-value", ""])),
            ["mini-value", "text", NONE], ["fit-notice", "hidden", True], ["notes", "items", []],
            ["engine-log", "text", ""]]
