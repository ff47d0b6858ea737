"""The page's glue, run by PyScript: read the form, call the core, draw results and charts.

One render path (docs/architecture.md §6): every change (typing, a link, an imported config) becomes a
``dict[str, str]`` of scenario keys, goes through ``kvcache_calculator.present.report.evaluate_numbers``
(the analysis alone) and its numbers are drawn by :func:`render` (an edit's in the next animation
frame: charts.js runs :func:`on_edit` in a task after the input events, so the key press, the
evaluation and the frame's layout are separate tasks). The rest follows in
later tasks that charts.js schedules once those numbers are painted: the suggestions, then each
chart near the viewport (those in view first), whose data is computed only then
(:func:`chart_json`), and, each in a task of its own, the parts of :data:`LATER_PARTS` (the
announcement, the sensitivity selector, the measured comparison); a newer edit drops the
older one's pending work. Nothing read from the URL,
a pasted config or a file is ever inserted as HTML: text goes through ``textContent``/``value``
only. No Python traceback reaches the page; unexpected errors are logged to the console and
shown as one short sentence.
"""

import gc
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
CURRENT = {"scenario": None, "setup": None, "analysis": None, "report": None, "sensitivity_keys": None}
#: Items a link's notice lists before the rest are folded away (a 600-key link).
NOTICE_ITEMS = 8


# ---------------------------------------------------------------------------- formatting

# ---------------------------------------------------------------------------- the DOM

def inputs():
    """The form's controls that carry a scenario key, by key."""
    form = by_id("scenario")
    out = {}
    for element in form.querySelectorAll("input[name], select[name]"):
        out[element.name] = element
    return out


def read_form(keys):
    """The form as ``{key: text}`` for every scenario key it has: one JSON string from
    JavaScript (converting the JS object entry by entry costs more than the analysis)."""
    data = json.loads(window.kvcalcFormJson("scenario"))
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


def show_link_notice(errors, unknown, warnings=(), kept=(), kept_means=""):
    """List a link's warnings (as they are), its rejected values (the core's errors, whose
    defaults are used, or which the form keeps as typed for the ``kept`` keys, ``kept_means``
    saying what the results use instead) and its unknown keys in the visible notice."""
    notice = by_id("link-notice")
    items = by_id("link-notice-list")
    items.replaceChildren()
    kept_text = "; kept as written, marked in the form" + kept_means
    messages = [*warnings, *(e["message"] + (kept_text if key in kept else "; its default is used")
                             for key, e in errors.items()),
                *(f"{key}: not a known setting, ignored" if key
                  else "a part of the link without a name (\"=…\") was ignored" for key in unknown)]
    for message in messages[:NOTICE_ITEMS]:
        li = document.createElement("li")
        li.textContent = message
        items.appendChild(li)
    if len(messages) > NOTICE_ITEMS:
        # a long link lists the rest folded away, behind a count of what they are
        rest = messages[NOTICE_ITEMS:]
        li = document.createElement("li")
        details = document.createElement("details")
        summary = document.createElement("summary")
        summary.textContent = f"{len(rest):,} more: " + notice_summary(errors, unknown, warnings)
        more = document.createElement("ul")
        for message in rest:
            item = document.createElement("li")
            item.textContent = message
            more.appendChild(item)
        details.append(summary, more)
        li.appendChild(details)
        items.appendChild(li)
    notice.hidden = not messages


def notice_summary(errors, unknown, warnings):
    """What a link's notice lists, counted: "598 unknown keys, 2 invalid values"."""
    counts = [(len(unknown), "unknown key", "unknown keys"), (len(errors), "invalid value", "invalid values"),
              (len(warnings), "other warning", "other warnings")]
    return ", ".join(f"{n:,} {one if n == 1 else many}" for n, one, many in counts if n) + " in all"


def write(changes, later=False):
    """Apply ``changes`` (``[element id, what, value]``, see loader.js) to the DOM in one call:
    each access from Python to the DOM crosses into JavaScript, and an update makes about a
    hundred. ``later``: in the next animation frame, so that the layout the writes cause is
    not part of this task (an edit's numbers)."""
    (window.kvcalcWrite.nextFrame if later else window.kvcalcWrite)(json.dumps(changes))


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
    actions = suggestion.get("actions") or []
    if actions:
        row = document.createElement("span")
        row.className = "apply-row"
        for action in actions:
            row.appendChild(apply_button(action))
        li.appendChild(row)
    return li


def apply_button(action):
    """A button that applies a suggestion's ``changes`` to the form (:func:`on_apply`)."""
    button = document.createElement("button")
    button.type = "button"
    button.className = "apply secondary"
    button.setAttribute("data-changes", json.dumps(action.get("changes", {})))
    button.textContent = "Apply: " + str(action.get("label", ""))
    return button


def current_analysis():
    """The last valid edit's Analysis, built by the first later task that needs it."""
    if CURRENT["analysis"] is None:
        CURRENT["analysis"] = prepare(CURRENT["setup"])
    return CURRENT["analysis"]


def chart_json(name):
    """The drawing of chart ``name`` for the last valid edit (:func:`for_page`: title, legend
    and colour bar as HTML), computed now: charts.js asks for it when it is about to draw it."""
    name = str(name)
    if CURRENT["setup"] is None:     # no valid scenario yet (render_unresolved): nothing to draw
        return None
    if name == "sensitivity":
        offer_sensitivity_keys(CURRENT["setup"])    # before its later task, if that has not run
    analysis = current_analysis()
    show_classic = bool(by_id("show-classic").checked)
    # the original formula's curve is computed only when it is drawn
    figure = chart_figure(analysis, name, sensitivity_key(), classic=show_classic)
    return json.dumps(for_page(name, figure, show_classic=show_classic, fits=bool(analysis.result.fits)))


def current_suggestions():
    if CURRENT.get("suggestions") is None:
        CURRENT["suggestions"] = suggestion_dicts(current_analysis())
    return CURRENT["suggestions"]


def render_suggestions(_event=None):
    """The suggestions for the last valid edit (charts.js calls this first after a change);
    a model that does not fit also lists what would fit, with buttons, beside its message."""
    if CURRENT["setup"] is None:
        render_list("suggestions", [{"title": "No suggestions:", "text": "the model's fields need fixing first."}],
                    suggestion_item)
        by_id("fit-options").hidden = True
        return
    listed = current_suggestions()
    render_list("suggestions", listed, suggestion_item)
    fit = next((s for s in listed if s.get("id") == "fit"), None)
    options = (fit or {}).get("actions") or []
    render_list("fit-options-list", options, lambda a: list_item(apply_button(a)))
    by_id("fit-options").hidden = not options


def list_item(child):
    li = document.createElement("li")
    li.appendChild(child)
    return li


def invalidate(names=(), suggestions=False):
    """Tell charts.js that charts ``names`` (all when empty), and the suggestions, are out of
    date: it redraws those near the viewport in later tasks, once this task's numbers are painted."""
    charts = getattr(window, "kvcalcCharts", None)
    if not missing(charts):
        charts.invalidate(" ".join(names), bool(suggestions))


def link_changes(fragment):
    """The URL (replaceState), the link field and the lab's link for ``fragment``."""
    tail = "#" + fragment if fragment else ""
    return [["share-url", "link", fragment], ["lab-link", "href", "./lab.html" + tail],
            ["lab-traffic-link", "href", "./lab.html?trace=mooncake_conversation_trace" + tail]]


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


def headline_text(report):
    """What the polite live region says once typing pauses: the headline, or that the model
    does not fit (charts.js waits for the pause)."""
    if not report.get("fits", True):
        return "Does not fit. " + str(report.get("fit_message", ""))
    return "Token hit rate " + format_result("token_hit_rate", report.get("results", {}).get("token_hit_rate"))


def offer_sensitivity_keys(setup):
    """Offer in the sensitivity selector only the inputs that apply to this model; a selected
    input that no longer applies falls back to the default (and its chart is redrawn)."""
    keys = sensitivity_keys(setup)
    if keys == CURRENT["sensitivity_keys"]:
        return
    CURRENT["sensitivity_keys"] = keys
    select = by_id("sensitivity-key")
    if select is None:
        return
    wanted = set(keys)
    for option in select.options:
        off = str(option.value) not in wanted
        option.hidden = off
        option.disabled = off
    if str(select.value) not in wanted:
        select.value = DEFAULT_SENSITIVITY_KEY
        invalidate(("sensitivity",))


def render(report, setup, later=False):
    """Draw one evaluation's numbers (results, fit state, notes, link) now, or in the next
    animation frame when ``later`` (an edit), and leave the suggestions and charts of a changed
    scenario to later tasks (:func:`invalidate`). An edit's other parts, which the numbers do
    not need (:data:`LATER_PARTS`), are each a later task too, dropped by a newer edit."""
    scenario = report.get("scenario", {})
    write([*number_changes(report, OUTPUT_IDS),   # the same as build.py's prerendered numbers
           ["app-error", "hidden", True], [":root", "data-numbers", "python"],
           *architecture_placeholders(setup),
           *link_changes(report.get("link", report.get("fragment", ""))),
           *override_changes(scenario),
           *stale_changes(False)], later)
    CURRENT["report"] = report
    if report.get("scenario") != CURRENT["scenario"]:
        CURRENT.update(scenario=report.get("scenario"), setup=setup, analysis=None, suggestions=None)
        invalidate(suggestions=True)
    if later:
        window.kvcalcCharts.later(" ".join(LATER_PARTS))
    else:
        for part in LATER_PARTS.values():
            part()


def announce():
    window.kvcalcAnnounce(headline_text(CURRENT["report"] or {}))


#: What an edit updates after its numbers, each in a task of its own (charts.js ``later``):
#: the headline for screen readers, the sensitivity selector's inputs, the measured comparison.
LATER_PARTS = {"announce": announce, "sensitivity_keys": lambda: offer_sensitivity_keys(CURRENT["setup"]),
               "measured": lambda: show_measured()}


def later_part(name):
    """charts.js runs an edit's later part ``name`` (:data:`LATER_PARTS`) in a task of its own."""
    if CURRENT["setup"] is not None:
        LATER_PARTS[str(name)]()


# ---------------------------------------------------------------------------- handlers

def on_edit(names):
    """The form's fields ``names`` (space-separated) were edited: charts.js calls this in a
    task of its own after their input events (several keys typed before it runs are one call)."""
    update(str(names).split())


def update(names=()):
    """Recompute from the form (fields ``names`` were edited); the numbers are written in the
    next animation frame. An invalid field keeps the last good results, marked stale."""
    gpu = document.querySelector('#scenario [name="gpu"]')
    if "gpu" in names and not missing(gpu) and str(gpu.value) != "custom":
        # an override of the memory belongs to the GPU it was entered for: another preset brings its own
        memory = document.querySelector('#scenario [name="gpu_memory_gib"]')
        if not missing(memory):
            memory.value = ""
    started = time.perf_counter()
    form = read_form(KEYS)
    report, setup = evaluate_numbers(form, target=False)    # the page shows no target results
    computed = time.perf_counter()
    errors = report.get("field_errors", {})
    show_field_errors(errors)
    if errors:
        # the link keeps every edit: the valid fields, and the invalid ones as typed (a link
        # lists those in its notice and uses their defaults)
        link = typed_link(setup.scenario, form, errors, report.get("substituted", []), every_error=True)
        write(stale_changes(True) + link_changes(link), later=True)
        return
    render(report, setup, later=True)
    # for benchmarks/bench_page.py: where the time of the numbers goes
    window.kvcalcTiming = window.JSON.parse(json.dumps({
        "evaluate_ms": (computed - started) * 1000,
        "render_ms": (time.perf_counter() - computed) * 1000}))
    if "model" in names:
        write_form({k: report["scenario"].get(k) for k in ARCH_KEYS}
                   if report["scenario"].get("model") == "custom" else {})


def on_results_click(event):
    """A suggestion's "Apply" button: its changes go into the form, which recomputes."""
    button = event.target.closest("button[data-changes]")
    if missing(button):
        return
    changes = json.loads(str(button.getAttribute("data-changes")))
    label = str(button.textContent).removeprefix("Apply: ")
    write_form({k: v for k, v in changes.items() if k in KEYS})
    update()
    by_id("results-title").focus()      # the button is gone: focus stays in the results
    by_id("copy-status").textContent = f"Applied: {label}."


def export_text(kind):
    """The last valid edit as a JSON or CSV document (present/report.py)."""
    report = CURRENT["report"] or {}
    if CURRENT["setup"] is not None:     # an edit's numbers leave out the target's (update)
        analysis = current_analysis()
        report = {**report, "results": {**report.get("results", {}),
                                        **target_results(CURRENT["setup"], analysis.result)}}
    document_ = export_document(report, current_suggestions())
    if kind == "csv":
        return export_csv(document_)
    return json.dumps(document_, indent=2)


def on_export(event):
    kind = "csv" if str(event.currentTarget.id) == "export-csv" else "json"
    model = str((CURRENT["scenario"] or {}).get("model") or "scenario")
    window.kvcalcDownload(f"kvcache-{model}.{kind}", "text/csv" if kind == "csv" else "application/json",
                          export_text(kind))


def show_measured(_event=None):
    """The prediction against the engine's measured hit rate, if one is entered."""
    report = CURRENT["report"]
    out = by_id("measured-result")
    if report is None or out is None:
        return
    values = {key: str(by_id(f"m-{key}").value) for key in ("hits", "queries", "rate")}
    for key in values:
        by_id(f"m-{key}").removeAttribute("aria-invalid")
    predicted = report.get("results", {}).get("token_hit_rate")
    try:
        found = measured_comparison(predicted or 0.0, hits=values["hits"], queries=values["queries"],
                                    rate_percent=values["rate"])
    except ScenarioError as err:
        field_id = {"prefix_cache_hits": "m-hits", "prefix_cache_queries": "m-queries"}.get(err.key, "m-rate")
        by_id(field_id).setAttribute("aria-invalid", "true")
        out.className = "measured-result error"
        out.textContent = str(err)
        return
    out.className = "measured-result"
    if found and not report.get("fits", True):
        out.textContent = "The model does not fit on these GPUs: there is no prediction to compare with."
    else:
        out.textContent = found.get("text", "")
    out.setAttribute("data-gap", "" if not found else f"{found['gap_points']:.4f}")


def apply_params(params, *, notice=True, warnings=()):
    """Evaluate link parameters: fields take the result, bad keys are listed in the notice.

    The model's fields keep what the link says even where it is invalid (marked beside each
    field); when the model cannot be resolved at all, no numbers are shown rather than another
    model's (:func:`render_unresolved`). Other invalid values take their defaults."""
    report, setup = evaluate_numbers(params)
    window.performance.mark("kvcalc:evaluated")
    errors = report.get("field_errors", {})
    substituted = report.get("substituted", [])
    typed = {k for k in errors if k in MODEL_KEY_SET} | (MODEL_KEY_SET if "model" in substituted else set())
    write_form({**report.get("scenario", {}), **{k: params.get(k) for k in typed}})
    show_field_errors({k: e for k, e in errors.items() if k in typed})
    if notice:
        means = ("" if "model" in substituted
                 else f"; the results use {report.get('scenario', {}).get('model')}'s own architecture")
        show_link_notice(errors, report.get("unknown_keys", []), warnings, typed, means)
    if "model" in substituted:
        render_unresolved(report)
    else:
        render(report, setup)
    open_overrides(report.get("scenario", {}))


def render_unresolved(report):
    """No numbers for a link whose model cannot be resolved (an unknown id, a custom model with
    a key missing): placeholders, never another model's results, and the link as written."""
    bad = ", ".join(k for k in report.get("field_errors", {}) if k in MODEL_KEY_SET) or "model"
    write([*placeholder_changes(OUTPUT_IDS),   # the numbers, the phone's bar and the notes emptied
           ["fit-message", "text", f"No results: the link's model cannot be used until its fields are "
                                   f"fixed ({bad}, marked above). Nothing else is shown in its place."],
           ["fit-notice", "hidden", False], ["app-error", "hidden", True],
           *link_changes(report.get("link", "")), ["override-note", "hidden", True],
           ["results", "class:stale", True], ["charts", "class:stale", True], ["mini", "class:stale", True]])
    CURRENT.update(scenario=None, setup=None, analysis=None)


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
    from kvcache_calculator.setup.hfconfig import import_scenario, scenario_keys_gap  # rarely

    if not str(text).strip():
        area.setAttribute("aria-invalid", "true")
        status.className = "error"
        status.textContent = "Paste the text of a config.json first, or choose or drop the file."
        return
    try:
        arch, keys = import_scenario(str(text))   # weights as its quantization_config says
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
    update()


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


def debug_gc():
    """For benchmarks/bench_page.py only (it sets ``window.kvcalcDebugGc`` before the page
    loads; nothing is done otherwise): log Python's garbage collections, read as JSON by
    ``window.kvcalcGcLog()``: ``[start, ms, generation, collected]``, times from
    ``performance.now()``."""
    if missing(getattr(window, "kvcalcDebugGc", None)):
        return
    log, started, at_start = [], [0.0], gc.get_stats()

    def callback(phase, info):
        now = window.performance.now()
        if phase == "start":
            started[0] = now
        else:
            log.append([started[0], now - started[0], info.get("generation"), info.get("collected")])

    gc.callbacks.append(callback)
    window.kvcalcGcLog = create_proxy(lambda: json.dumps(log))
    window.kvcalcGcState = create_proxy(lambda: json.dumps({
        "enabled": gc.isenabled(), "threshold": gc.get_threshold(), "count": gc.get_count(),
        "stats_at_start": at_start, "stats": gc.get_stats()}))


def start():
    """Apply the link (plus fields edited while loading), draw, wire the events."""
    window.performance.mark("kvcalc:imported")
    debug_gc()
    charts = getattr(window, "kvcalcCharts", None)
    if not missing(charts):
        # the form's edits too: charts.js schedules their evaluation (on_edit)
        charts.connect(create_proxy(PAGE.guarded(chart_json)), create_proxy(PAGE.guarded(render_suggestions)),
                       create_proxy(PAGE.guarded(on_edit)), create_proxy(PAGE.guarded(later_part)))
    params, warnings = link_params()
    for key, el in inputs().items():
        if el.getAttribute("data-touched") and key in KEYS:
            params[key] = str(el.value)
    apply_params(params, warnings=warnings)
    PAGE.listen("show-classic", "change", on_classic_toggle)
    PAGE.listen("sensitivity-key", "change", on_sensitivity_key)
    PAGE.listen("copy-link", "click", on_copy)
    PAGE.listen("reset", "click", on_reset)
    PAGE.listen("import-apply", "click", on_import_click)
    PAGE.listen("import-file", "change", on_import_file)
    PAGE.listen("import", "dragover", on_drag_over)
    PAGE.listen("import", "drop", on_drop)
    PAGE.listen("link-notice-close", "click", lambda e: setattr(by_id("link-notice"), "hidden", True))
    PAGE.listen("results", "click", on_results_click)
    PAGE.listen("export-json", "click", on_export)
    PAGE.listen("export-csv", "click", on_export)
    PAGE.listen("measured", "input", show_measured)
    window.addEventListener("hashchange", create_proxy(PAGE.guarded(on_hash_change)))
    ROOT.setAttribute("data-state", "ready")
    window.performance.mark("kvcalc:ready")


try:
    from kvcache_calculator.errors import ScenarioError
    from kvcache_calculator.analytic.table import prepare
    from kvcache_calculator.analytic.sweeps import DEFAULT_KEY as DEFAULT_SENSITIVITY_KEY
    from kvcache_calculator.present.report import (
        architecture_placeholders, evaluate_numbers, form_text, export_csv, export_document, measured_comparison, sensitivity_keys,
        suggestion_dicts, target_results, typed_link,
    )
    from kvcache_calculator.present.report import figure as chart_figure
    from kvcache_calculator.setup.presets import GPUS, MODELS
    from kvcache_calculator.scenario import FIELDS, MODEL_KEYS, decode_fragment, repeated_keys
    from kvcache_calculator.present.page_numbers import format_result, number_changes, placeholder_changes
    from page_figures import for_page

    KEYS = frozenset(f.key for f in FIELDS)
    OUTPUT_IDS = tuple(str(el.id) for el in document.querySelectorAll("output[id]"))
    ARCH_KEYS = tuple(f.key for f in FIELDS if f.group == "model" and f.key != "model")
    MODEL_KEY_SET = frozenset(MODEL_KEYS)
    PRESET_IDS.update(model=tuple(MODELS), gpu=tuple(GPUS))
    start()
except Exception as boot_error:  # noqa: BLE001 (shown as a sentence, logged in full)
    PAGE.report_unexpected(boot_error)
    by_id("load-text").textContent = "The calculator could not start."
    ROOT.setAttribute("data-state", "error")
