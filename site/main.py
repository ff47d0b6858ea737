"""The page's glue, run by PyScript: read the form, call the core, draw results and charts.

One render path (docs/architecture.md §6): every change (typing, a link, an imported config) becomes a
``dict[str, str]`` of scenario keys, goes through ``kvcache_calculator.present.report.evaluate_numbers``
(the analysis alone) and its numbers are drawn at once by :func:`render`. The rest follows in
later tasks that charts.js schedules once those numbers are painted: the suggestions, then each
chart near the viewport (those in view first), whose data is computed only then
(:func:`chart_json`); a newer edit drops the older one's pending work. Nothing read from the URL,
a pasted config or a file is ever inserted as HTML: text goes through ``textContent``/``value``
only. No Python traceback reaches the page; unexpected errors are logged to the console and
shown as one short sentence.
"""

import json
import time

from pyscript import document, window
from pyscript.ffi import create_proxy

from pagekit import Page, by_id, missing   # site/pagekit.py, shipped by pyscript.json

window.performance.mark("kvcalc:main-start")  # start-up marks for benchmarks/bench_page.py

ROOT = document.documentElement
PAGE = Page("kvcache calculator", "update")
PRESET_IDS = {}      # "model"/"gpu" -> preset ids, for shorter field messages
# The last valid edit: its scenario and Setup, and its Analysis (the hit-rate table the
# suggestions and charts share) once a later task has needed it.
CURRENT = {"scenario": None, "setup": None, "analysis": None}


# ---------------------------------------------------------------------------- formatting

def form_text(value):
    """A scenario value as it is written in a form field."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------------------- the DOM

def inputs():
    """The form's controls that carry a scenario key, by key."""
    form = by_id("scenario")
    out = {}
    for element in form.querySelectorAll("input[name], select[name]"):
        out[element.name] = element
    return out


def read_form(keys):
    """The form as ``{key: text}`` for every scenario key it has (one call into the DOM)."""
    data = window.Object.fromEntries(window.FormData.new(by_id("scenario"))).to_py()
    return {key: str(text) for key, text in data.items() if key in keys}


def write_form(scenario):
    """Put the scenario's values into the form fields."""
    for key, el in inputs().items():
        if key in scenario:
            el.value = form_text(scenario[key])
    details = by_id("arch-details")
    if details is not None and scenario.get("model") == "custom":
        details.open = True


def show_field_errors(errors):
    """Mark invalid fields and show the core's error (``ScenarioError.to_dict()``) beside
    each, worded for its field; clear the others.

    Only fields that are or were invalid are touched (each DOM access crosses into JS).
    """
    marked = {el.name: el for el in document.querySelectorAll("#scenario [aria-invalid]")}
    for key in errors:
        if key not in marked and key in KEYS:
            el = document.querySelector(f'#scenario [name="{key}"]')
            if not missing(el):
                marked[key] = el
    for key, el in marked.items():
        problem = errors.get(key)
        error = by_id(f"e-{key}")
        if problem:
            el.setAttribute("aria-invalid", "true")
            el.setAttribute("aria-describedby", f"e-{key} h-{key}")
            if error is not None:
                error.textContent = field_message(problem)
                error.hidden = False
            if key in ARCH_KEYS:
                details = by_id("arch-details")
                if details is not None:
                    details.open = True
        else:
            el.removeAttribute("aria-invalid")
            el.setAttribute("aria-describedby", f"h-{key}")
            if error is not None:
                error.textContent = ""
                error.hidden = True


def field_message(error):
    """The core's error (``ScenarioError.to_dict()``) as shown beside its field, whose label
    already names it: the rule first, then what was typed; a preset list is shortened to the
    presets that match."""
    key, value, shown, rule = error["key"], error["value"], error["shown"], error["allowed"]
    if key in PRESET_IDS and rule.startswith("must be one of"):
        typed = value.strip().lower()
        matches = [i for i in PRESET_IDS[key] if typed and typed in i][:6]
        rule = "must be one of the presets in the list, or custom"
        if matches:
            rule += "; matching: " + ", ".join(matches) + ("…" if len(matches) == 6 else "")
    empty = value == ""
    if empty and rule.startswith("is "):
        return f"Enter a value: it {rule}."
    if rule.split(" ", 1)[0] in ("must", "is", "needs", "does"):   # not a model's own name
        rule = rule[:1].upper() + rule[1:]
    return f"Enter a value. {rule}." if empty else f"{rule} (you entered {shown})."


def show_link_notice(errors, unknown, warnings=()):
    """List a link's warnings (as they are), its rejected values (the core's errors, whose
    defaults are used) and its unknown keys in the visible notice."""
    notice = by_id("link-notice")
    items = by_id("link-notice-list")
    items.replaceChildren()
    for message in [*warnings, *(f"{e['message']}; its default is used" for e in errors.values())]:
        li = document.createElement("li")
        li.textContent = message
        items.appendChild(li)
    for key in unknown:
        li = document.createElement("li")
        li.textContent = (f"{key}: not a known setting, ignored" if key
                          else "a part of the link without a name (\"=…\") was ignored")
        items.appendChild(li)
    notice.hidden = not (errors or unknown or warnings)


def write(changes):
    """Apply ``changes`` (``[element id, what, value]``, see loader.js) to the DOM in one call:
    each access from Python to the DOM crosses into JavaScript, and an update makes about a
    hundred."""
    window.kvcalcWrite(json.dumps(changes))


def render_list(element_id, items, make):
    target = by_id(element_id)
    target.replaceChildren()
    for item in items:
        target.appendChild(make(item))


def suggestion_item(suggestion):
    li = document.createElement("li")
    li.setAttribute("data-id", str(suggestion.get("id", "")))
    title = document.createElement("strong")
    title.textContent = str(suggestion.get("title", ""))
    li.appendChild(title)
    text = document.createElement("span")
    text.textContent = " " + str(suggestion.get("text", ""))
    li.appendChild(text)
    return li


def current_analysis():
    """The last valid edit's Analysis, built by the first later task that needs it."""
    if CURRENT["analysis"] is None:
        CURRENT["analysis"] = prepare(CURRENT["setup"])
    return CURRENT["analysis"]


def chart_json(name):
    """The drawing of chart ``name`` for the last valid edit (:func:`for_page`: title, legend
    and colour bar as HTML), computed now: charts.js asks for it when it is about to draw it."""
    name = str(name)
    figure = chart_figure(current_analysis(), name, sensitivity_key())
    return json.dumps(for_page(name, figure, show_classic=bool(by_id("show-classic").checked)))


def render_suggestions(_event=None):
    """The suggestions for the last valid edit (charts.js calls this first after a change)."""
    render_list("suggestions", suggestion_dicts(current_analysis()), suggestion_item)


def invalidate(names=(), suggestions=False):
    """Tell charts.js that charts ``names`` (all when empty), and the suggestions, are out of
    date: it redraws those near the viewport in later tasks, once this task's numbers are painted."""
    charts = getattr(window, "kvcalcCharts", None)
    if not missing(charts):
        charts.invalidate(" ".join(names), bool(suggestions))


def link_changes(fragment):
    """The URL (replaceState), the link field and the lab's link for ``fragment``."""
    return [["share-url", "link", fragment], ["lab-link", "href", "./lab.html" + ("#" + fragment if fragment else "")]]


def stale_changes(stale):
    """Results and charts marked as the last valid input's (a field is invalid), or not."""
    stale = bool(stale)
    return [["stale-note", "hidden", not stale], ["results", "class:stale", stale],
            ["charts", "class:stale", stale], ["mini", "class:stale", stale], ["mini-stale", "hidden", not stale]]


def overridden_keys(scenario):
    """The architecture keys a scenario overrides on a preset (none for a custom model)."""
    if scenario.get("model") == "custom":
        return []
    return [k for k in ARCH_KEYS if scenario.get(k) is not None]


def open_overrides(scenario):
    """Open the architecture fields when a link overrides a preset's architecture."""
    if overridden_keys(scenario):
        by_id("arch-details").open = True


def override_changes(scenario):
    """Say when a preset's architecture is overridden (its results differ from the preset's)."""
    changed = overridden_keys(scenario)
    if not changed:
        return [["override-note", "hidden", True]]
    listed = ", ".join(f"{k} = {form_text(scenario[k])}" for k in changed)
    return [["override-note", "text", f"{scenario.get('model')} with its architecture overridden ({listed}): "
                                      "empty those fields to use the preset's values."],
            ["override-note", "hidden", False]]


def render(report, setup):
    """Draw one evaluation's numbers (results, fit state, notes, link) now, and leave the
    suggestions and charts of a changed scenario to later tasks (:func:`invalidate`)."""
    scenario = report.get("scenario", {})
    write([*number_changes(report, OUTPUT_IDS),   # the same as build.py's prerendered numbers
           ["app-error", "hidden", True], [":root", "data-numbers", "python"],
           *link_changes(report.get("fragment", "")),
           *override_changes(scenario),
           *stale_changes(False)])
    if report.get("scenario") != CURRENT["scenario"]:
        CURRENT.update(scenario=report.get("scenario"), setup=setup, analysis=None)
        invalidate(suggestions=True)


# ---------------------------------------------------------------------------- handlers

def on_form_input(event):
    """Recompute from the form; an invalid field keeps the last good results, marked stale."""
    target = None if event is None else event.target
    if target is not None and getattr(target, "id", "") in ("share-url", "import-text",
                                                            "import-file", "show-classic"):
        return
    started = time.perf_counter()
    form = read_form(KEYS)
    report, setup = evaluate_numbers(form)
    computed = time.perf_counter()
    errors = report.get("field_errors", {})
    show_field_errors(errors)
    if errors:
        # the link keeps every edit: the valid fields, and the invalid ones as typed (a link
        # lists those in its notice and uses their defaults)
        typed = {key: form[key] for key in errors if key in form}
        write(stale_changes(True)
              + link_changes("&".join(p for p in (report.get("fragment", ""), encode_fragment(typed)) if p)))
        return
    render(report, setup)
    # for benchmarks/bench_page.py: where the time of the numbers goes
    window.kvcalcTiming = window.JSON.parse(json.dumps({
        "evaluate_ms": (computed - started) * 1000,
        "render_ms": (time.perf_counter() - computed) * 1000}))
    if target is not None and getattr(target, "name", "") == "model":
        write_form({k: report["scenario"].get(k) for k in ARCH_KEYS}
                   if report["scenario"].get("model") == "custom" else {})


def apply_params(params, *, notice=True, warnings=()):
    """Evaluate link parameters: fields take the result, bad keys are listed in the notice."""
    report, setup = evaluate_numbers(params)
    window.performance.mark("kvcalc:evaluated")
    errors = report.get("field_errors", {})
    write_form(report.get("scenario", {}))
    show_field_errors({})
    if notice:
        show_link_notice(errors, report.get("unknown_keys", []), warnings)
    render(report, setup)
    open_overrides(report.get("scenario", {}))


def link_params():
    """The URL fragment as ``{key: text}``, with warnings for its notice (keys given twice);
    an unreadable fragment is shown in the notice."""
    fragment = str(window.location.hash or "")
    try:
        params = decode_fragment(fragment)
    except ScenarioError as err:
        show_link_notice({}, [], [str(err)])
        return {}, []
    return params, [f"{key}: given more than once; the last value ({params[key]!r}) is used"
                    for key in repeated_keys(fragment)]


def on_hash_change(event):
    params, warnings = link_params()
    apply_params(params, warnings=warnings)


def on_classic_toggle(event):
    """The original formula's curve is drawn on one chart: only that one is redrawn."""
    invalidate(("hit_vs_memory",))


def on_sensitivity_key(event):
    """Another input to vary: only the sensitivity chart is redrawn."""
    invalidate(("sensitivity",))


def sensitivity_key():
    """The input the sensitivity chart varies (a page setting, not a scenario key)."""
    select = by_id("sensitivity-key")
    return None if select is None else (str(select.value) or None)


def on_copy(event):
    window.kvcalcWrite.flush()      # the address bar follows an edit when the page is idle
    url = str(window.location.href)
    by_id("share-url").value = url
    status = by_id("copy-status")
    invalid = document.querySelectorAll("#scenario [aria-invalid=true]").length
    done = ("Link copied." if not invalid else
            f"Link copied, with {invalid} invalid field{'s' if invalid > 1 else ''} as typed: "
            f"opening it lists {'them' if invalid > 1 else 'it'} and uses "
            f"{'their defaults' if invalid > 1 else 'its default'}.")
    clipboard = getattr(window.navigator, "clipboard", None)
    if not missing(clipboard):
        try:
            clipboard.writeText(url).then(
                create_proxy(lambda *_: setattr(status, "textContent", done)),
                create_proxy(lambda *_: copy_by_selection(status)))
            return
        except Exception:  # noqa: BLE001 (fall back to selecting the text)
            pass
    copy_by_selection(status)


def copy_by_selection(status):
    field = by_id("share-url")
    field.focus()
    field.select()
    status.textContent = "Select and copy the link shown."


def on_reset(event):
    window.history.replaceState(None, "", window.location.href.split("#", 1)[0])
    by_id("link-notice").hidden = True
    by_id("show-classic").checked = False
    by_id("arch-details").open = False
    select = by_id("sensitivity-key")
    if select is not None and select.options.length:
        select.selectedIndex = 0
    CURRENT["scenario"] = None      # the chart settings changed: redraw every chart
    apply_params({}, notice=False)


def import_text(text):
    """Fill the custom architecture from a Hugging Face config.json's text."""
    status = by_id("import-status")
    area = by_id("import-text")
    from kvcache_calculator.setup.hfconfig import arch_to_scenario, import_config, scenario_keys_gap  # rarely

    if not str(text).strip():
        area.setAttribute("aria-invalid", "true")
        status.className = "error"
        status.textContent = "Paste the text of a config.json first, or choose or drop the file."
        return
    try:
        arch = import_config(str(text))
        keys = arch_to_scenario(arch)
    except ScenarioError as err:
        area.setAttribute("aria-invalid", "true")
        status.className = "error"
        status.textContent = f"Not imported: {err}"
        return
    area.removeAttribute("aria-invalid")
    values = {key: None for key in ARCH_KEYS}
    values.update({k: v for k, v in keys.items() if k in KEYS})
    values["model"] = "custom"
    write_form(values)
    status.className = "ok"
    described = ", ".join(f"{k} = {form_text(v)}" for k, v in keys.items() if v is not None)
    source = str(arch.source or "imported from config.json")   # "imported from config.json (X)"
    gap = scenario_keys_gap(arch)   # sliding layers with their own heads, linear state...
    status.textContent = f"{source[:1].upper()}{source[1:]}: {described}." + (f" {gap}" if gap else "")
    on_form_input(None)


def on_import_click(event):
    import_text(by_id("import-text").value)


def read_file_then_import(file):
    if missing(file):
        return
    promise = file.text()
    promise.then(create_proxy(PAGE.guarded(lambda text: import_text(text))))


def on_import_file(event):
    files = event.target.files
    read_file_then_import(files.item(0) if files.length else None)


def on_drag_over(event):
    event.preventDefault()


def on_drop(event):
    event.preventDefault()
    files = None if missing(event.dataTransfer) else event.dataTransfer.files
    if not missing(files) and files.length:
        by_id("import").open = True
        read_file_then_import(files.item(0))


def start():
    """Apply the link (plus fields edited while loading), draw, wire the events."""
    window.performance.mark("kvcalc:imported")
    charts = getattr(window, "kvcalcCharts", None)
    if not missing(charts):
        charts.connect(create_proxy(PAGE.guarded(chart_json)), create_proxy(PAGE.guarded(render_suggestions)))
    params, warnings = link_params()
    for key, el in inputs().items():
        if el.getAttribute("data-touched") and key in KEYS:
            params[key] = str(el.value)
    apply_params(params, warnings=warnings)
    PAGE.listen("scenario", "input", on_form_input)
    PAGE.listen("show-classic", "change", on_classic_toggle)
    PAGE.listen("sensitivity-key", "change", on_sensitivity_key)
    PAGE.listen("copy-link", "click", on_copy)
    PAGE.listen("reset", "click", on_reset)
    PAGE.listen("import-apply", "click", on_import_click)
    PAGE.listen("import-file", "change", on_import_file)
    PAGE.listen("import", "dragover", on_drag_over)
    PAGE.listen("import", "drop", on_drop)
    PAGE.listen("link-notice-close", "click", lambda e: setattr(by_id("link-notice"), "hidden", True))
    window.addEventListener("hashchange", create_proxy(PAGE.guarded(on_hash_change)))
    ROOT.setAttribute("data-state", "ready")
    window.performance.mark("kvcalc:ready")


try:
    from kvcache_calculator.errors import ScenarioError
    from kvcache_calculator.analytic.table import prepare
    from kvcache_calculator.present.report import evaluate_numbers, suggestion_dicts
    from kvcache_calculator.present.report import figure as chart_figure
    from kvcache_calculator.setup.presets import GPUS, MODELS
    from kvcache_calculator.scenario import FIELDS, decode_fragment, encode_fragment, repeated_keys
    from kvcache_calculator.present.page_numbers import number_changes
    from page_figures import for_page

    KEYS = frozenset(f.key for f in FIELDS)
    OUTPUT_IDS = tuple(str(el.id) for el in document.querySelectorAll("output[id]"))
    ARCH_KEYS = tuple(f.key for f in FIELDS if f.group == "model" and f.key != "model")
    PRESET_IDS.update(model=tuple(MODELS), gpu=tuple(GPUS))
    start()
except Exception as boot_error:  # noqa: BLE001 (shown as a sentence, logged in full)
    PAGE.report_unexpected(boot_error)
    by_id("load-text").textContent = "The calculator could not start."
    ROOT.setAttribute("data-state", "error")
