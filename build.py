#!/usr/bin/env python3
"""Build, serve and test the KV-cache hit-rate calculator.

    python build.py                      build dist/ (the deployable static site)
    python build.py serve [--port N] [--base /sub/path/]
                                         build dist/ and serve it on http://127.0.0.1:N/
    python build.py test [PYTEST ARGS]   install what the tests need, build, run the tests

The page's runtime (Pyodide, PyScript, Plotly.js) is copied at build time from the npm
packages pinned in package.json / package-lock.json (``npm ci`` runs when node_modules/ is
missing or older than the lock file). The core package is zipped into dist/ and unpacked by
PyScript in the browser: no micropip, no wheels, no request leaves the host.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))   # the core is read from this checkout, installed or not

sys.path.insert(1, str(ROOT / "site"))   # page_figures.py: the page's drawing of the charts

from kvcache_calculator.analytic import sweeps  # noqa: E402 (after the path above)
from kvcache_calculator.analytic.table import prepare  # noqa: E402
from kvcache_calculator.present import report  # noqa: E402
from kvcache_calculator.present.page_numbers import number_changes, placeholder_changes  # noqa: E402
from kvcache_calculator.scenario import FIELDS, encode_fragment  # noqa: E402
from kvcache_calculator.setup import presets  # noqa: E402
from page_figures import for_page  # noqa: E402

SITE = ROOT / "site"
DIST = ROOT / "dist"
NODE_MODULES = ROOT / "node_modules"
PACKAGE = "kvcache_calculator"

# Files copied from the pinned npm packages: (package dir, file names, destination under dist/).
# Only what the page requests: bare Pyodide (no packages from its lock file are loaded),
# PyScript's core and the chunks it imports for a `<script type="py">` on the main thread,
# and the smallest Plotly.js bundle that draws scatter, bar and heatmap traces.
PYODIDE_FILES = ["pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                 "pyodide-lock.json"]
PYSCRIPT_CHUNKS = {"core", "deprecations-manager", "donkey", "error", "py-editor", "py-game",
                   "py-terminal"}
PLOTLY_PACKAGE = "plotly.js-cartesian-dist-min"
PLOTLY_FILE = "plotly-cartesian.min.js"
HTML_PAGES = ("index.html", "lab.html")

MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".zip": "application/zip",
    ".py": "text/x-python",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webmanifest": "application/manifest+json",
}


def run(cmd: list[str], **kwargs) -> None:
    """Run a command, echoing it; exit with its status if it fails."""
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=kwargs.pop("cwd", ROOT), **kwargs)
    if result.returncode != 0:
        sys.exit(result.returncode)


# ---------------------------------------------------------------------------- install

def ensure_node_modules() -> None:
    """Install the pinned front-end packages with ``npm ci`` unless already current."""
    lock = ROOT / "package-lock.json"
    stamp = NODE_MODULES / ".package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime \
            and (NODE_MODULES / "pyodide" / "pyodide.mjs").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("build.py: npm is needed to fetch the pinned Pyodide, PyScript and Plotly.js "
                 "(install Node.js 18+ and npm)")
    run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"])


def install_test_deps() -> None:
    """Install the package in editable mode with its test extra."""
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-e", ".[test]"])


# ---------------------------------------------------------------------------- the form

def _text(value) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


GROUP_TITLES = {
    "model": "Model",
    "hardware": "Hardware",
    "serving": "Serving",
    "workload": "Workload",
    "shared": "Shared content",
}


def render_field(field, models, gpus, placeholder: str | None = None) -> str:
    """One labelled input for a scenario field spec (label, unit, help, error slot);
    ``placeholder`` for an empty field (else "auto" when the field has no default)."""
    key = field.key
    fid = f"f-{key}"
    unit = field.unit
    label = _text(field.label) + (f' <span class="unit">({_text(unit)})</span>' if unit else "")
    default = report.form_text(field.default)
    kind = field.kind
    described = f"h-{key}"
    common = (f'id="{fid}" name="{_text(key)}" aria-describedby="{described}" '
              f'data-default="{_text(default)}"')
    if key == "model":
        options = "".join(f'<option value="{_text(m["id"])}">{_text(m.get("name", ""))}</option>'
                          for m in models)
        control = (f'<input {common} type="text" list="model-presets" value="{_text(default)}" '
                   f'autocomplete="off" spellcheck="false" placeholder="type to search presets">'
                   f'<datalist id="model-presets">{options}'
                   f'<option value="custom">Custom architecture</option></datalist>')
    elif kind == "choice" or key == "gpu":
        choices = list(field.choices)
        labels = {}
        if key == "gpu":
            choices = [g["id"] for g in gpus] + (["custom"] if "custom" not in choices else [])
            labels = {g["id"]: f'{g["id"]} — {g.get("name", "")}' for g in gpus}
        if default and default not in choices:
            choices.insert(0, default)
        options = "".join(
            f'<option value="{_text(c)}"{" selected" if c == default else ""}>'
            f'{_text(labels.get(c, c))}</option>' for c in choices)
        control = f"<select {common}>{options}</select>"
    else:
        mode = {"int": "numeric", "float": "decimal"}.get(kind, "text")
        if placeholder is None and field.default is None:
            placeholder = "auto"
        placeholder = "" if placeholder is None else f' placeholder="{_text(placeholder)}"'
        control = (f'<input {common} type="text" inputmode="{mode}" value="{_text(default)}" '
                   f'autocomplete="off" spellcheck="false"{placeholder}>')
    return (f'<div class="field" data-key="{_text(key)}">'
            f'<label for="{fid}">{label}</label>{control}'
            f'<p class="help" id="{described}">{_text(field.help)}</p>'
            f'<p class="error" id="e-{_text(key)}" hidden></p></div>')


def render_form(fields, models, gpus) -> str:
    """The form's fieldsets, rendered at build time so the page is readable before Python; the
    architecture fields' placeholders are the default preset's values, as main.py writes them."""
    _, setup = report.evaluate_numbers({})
    placeholders = {change[0]: change[2] for change in report.architecture_placeholders(setup)}
    groups: dict[str, list] = {}
    for field in fields:
        groups.setdefault(field.group, []).append(field)
    parts = []
    for group, items in groups.items():
        title = GROUP_TITLES.get(group, group.title())
        extra = ""
        if group == "model":
            main = [f for f in items if f.key == "model"]
            arch = [f for f in items if f.key != "model"]
            inner = "".join(render_field(f, models, gpus) for f in main)
            inner += '<p id="override-note" class="override-note" role="status" hidden></p>'
            inner += ('<details class="advanced" id="arch-details"><summary>Architecture '
                      '(for <code>custom</code>, or to override the preset; empty = from the '
                      'preset)</summary>'
                      + "".join(render_field(f, models, gpus, placeholders.get(f"f-{f.key}"))
                                for f in arch) + "</details>")
        else:
            inner = "".join(render_field(f, models, gpus) for f in items)
        if group == "model":
            extra = (
                '<details class="import" id="import">'
                '<summary>Import a Hugging Face <code>config.json</code></summary>'
                '<p class="help" id="import-help">Paste the model\'s config.json or drop the '
                'file here; its architecture fills the custom fields.</p>'
                '<label for="import-text">config.json text</label>'
                '<textarea id="import-text" rows="4" spellcheck="false" '
                'aria-describedby="import-help import-status"></textarea>'
                '<div class="import-actions">'
                '<button type="button" id="import-apply">Import pasted text</button>'
                '<label class="file-button" for="import-file">Choose file…</label>'
                '<input type="file" id="import-file" accept=".json,application/json">'
                '</div>'
                '<p id="import-status" role="status"></p></details>')
        parts.append(f'<fieldset id="group-{_text(group)}"><legend>{_text(title)}</legend>'
                     f'{inner}{extra}</fieldset>')
    return "\n".join(parts)


def render_sensitivity_options(fields) -> str:
    """<option>s for the sensitivity chart's input selector (the core's numeric sweep keys)."""
    labels = {f.key: f"{f.label} ({f.unit})" if f.unit else f.label for f in fields}
    return "".join(f'<option value="{_text(k)}"{" selected" if k == sweeps.DEFAULT_KEY else ""}>'
                   f'{_text(labels[k])}</option>' for k in sweeps.NUMERIC_KEYS)


# ---------------------------------------------------------------------------- prerender

#: A link the page offers besides the presets: the README's example of a share link.
EXAMPLE_LINKS = ({"model": "qwen3-32b", "gpu": "h200", "num_gpus": "2"},)
#: What a suggestion or chart not prerendered for the scenario shows until Python computes it.
PENDING_SUGGESTIONS = "Computed once Python has loaded."


def preset_links(models, gpus) -> list[dict]:
    """The links whose numbers are prerendered: the default page, each model and GPU preset
    (``#model=<id>``, ``#gpu=<id>``) and :data:`EXAMPLE_LINKS`."""
    return ([{}] + [{"model": m["id"]} for m in models] + [{"gpu": g["id"]} for g in gpus]
            + [dict(link) for link in EXAMPLE_LINKS])


def _start_tag(page: str, element_id: str) -> re.Match:
    pattern = r"<html\b[^>]*>" if element_id == ":root" else rf'<(\w+)\b[^>]*\bid="{re.escape(element_id)}"[^>]*>'
    found = re.search(pattern, page)
    if found is None:
        raise ValueError(f"the page has no element #{element_id} to prerender")
    return found


def html_with(page: str, changes: list) -> str:
    """``page`` with ``changes`` (``[id, what, value]``, as loader.js's ``kvcalcWrite`` applies
    them in the browser) written into its markup: "text" and "items" replace the content of an
    element without children of its own kind, "hidden" and attributes edit its start tag."""
    for element_id, what, value in changes:
        tag = _start_tag(page, element_id)
        if what in ("text", "items"):
            close = page.index(f"</{tag.group(1)}>", tag.end())
            inner = (_text(value) if what == "text"
                     else "".join(f"<li>{_text(item)}</li>" for item in value))
            page = page[:tag.end()] + inner + page[close:]
            continue
        name = "hidden" if what == "hidden" else what
        start = re.sub(rf'\s{re.escape(name)}(="[^"]*")?(?=[\s>])', "", tag.group(0))
        if what == "hidden" and not value:
            new = start
        else:
            attribute = f" {name}" if what == "hidden" else f' {name}="{_text(value)}"'
            new = start[:-1] + attribute + ">"
        page = page[:tag.start()] + new + page[tag.end():]
    return page


def render_chart_parts(match: re.Match) -> str:
    """The parts every chart's figure has (``<!--CHART name plot-classes-->`` in index.html):
    its head, plot, legend, blank note, download buttons and its numbers as a table; the ids
    are those charts.js and main.py address."""
    indent, name, plot_class = match.group(1), match.group(2), match.group(3)
    download = "".join(f'<button type="button" class="secondary" data-chart="{name}" data-format="{fmt}">'
                       f'{fmt.upper()}</button>' for fmt in ("png", "svg"))
    return "\n".join(indent + line for line in (
        f'<p id="chart-{name}-head" class="chart-head"></p>',
        f'<div id="chart-{name}" class="{plot_class}"></div>',
        f'<ul id="chart-{name}-legend" class="chart-legend" aria-label="Legend" hidden></ul>',
        f'<p id="chart-{name}-blank" class="chart-blank" hidden></p>',
        f'<div class="chart-tools" role="group" aria-label="Download this chart">{download}</div>',
        f'<details class="chart-data" id="chart-{name}-data"><summary>The chart\'s numbers</summary>'
        f'<div id="chart-{name}-table" class="chart-table"></div></details>'))


def suggestions_html(items: list[dict]) -> str:
    """The suggestions as main.py draws them (a title, the text, and an "Apply" button for
    each change a suggestion proposes: site/main.py's suggestion_item)."""
    def actions(s: dict) -> str:
        buttons = "".join(f'<button type="button" class="apply secondary" '
                          f'data-changes="{_text(json.dumps(a.get("changes", {})))}">'
                          f'Apply: {_text(a.get("label", ""))}</button>' for a in s.get("actions") or [])
        return f'<span class="apply-row">{buttons}</span>' if buttons else ""
    return "".join(f'<li data-id="{_text(s.get("id", ""))}"><strong>{_text(s.get("title", ""))}</strong>'
                   f'<span> {_text(s.get("text", ""))}</span>{actions(s)}</li>' for s in items)


def prerender(page: str, models, gpus) -> tuple[str, dict]:
    """The default scenario's numbers, suggestions and charts in the page, and a table of the
    numbers of every preset link (``<script type="application/json" id="prerender-data">``,
    read by site/prerender.js before Python has loaded); and the sizes of what was added."""
    output_ids = re.findall(r'<output\b[^>]*\bid="([^"]+)"', page)
    fields: list = []       # the distinct [id, what] of every change, indexed by the rows
    rows: dict[str, list] = {}
    links: dict[str, str] = {}   # a link's fragment as written -> its row's key
    # the form holds the default preset's architecture placeholders; each row sets its own (a
    # link to another model must not show the default's), the unknown links' blanks them
    form_placeholders = report.architecture_placeholders(report.evaluate_numbers({})[1])
    for params in preset_links(models, gpus):
        numbers, setup = report.evaluate_numbers(params)
        if numbers["field_errors"] or numbers["unknown_keys"]:
            raise ValueError(f"the preset link {params} is not valid: {numbers['field_errors']}")
        key = numbers["fragment"]
        if key not in rows:
            row = []
            placeholders = report.architecture_placeholders(setup)
            for element_id, what, value in [*number_changes(numbers, output_ids), *placeholders]:
                if [element_id, what] not in fields:
                    fields.append([element_id, what])
                row.append([fields.index([element_id, what]), value])
            rows[key] = row
        links[key] = links[encode_fragment(params)] = key
        if not params:
            default, analysis = numbers, prepare(setup)
    charts = {name: json.dumps(for_page(name, report.figure(analysis, name, classic=False), show_classic=False))
              for name in report.CHARTS}
    changes = number_changes(default, output_ids)
    page = html_with(page, [*changes, [":root", "data-numbers", "checking"]])
    tag = _start_tag(page, "suggestions")
    close = page.index("</ol>", tag.end())
    page = page[:tag.end()] + suggestions_html(report.suggestion_dicts(analysis)) + page[close:]
    data = {"fields": fields, "rows": rows, "links": links,
            "placeholder": [*placeholder_changes(output_ids), ["suggestions", "items", [PENDING_SUGGESTIONS]],
                            *([element_id, what, ""] for element_id, what, _ in form_placeholders)],
            "charts": charts, "sensitivity_key": sweeps.DEFAULT_KEY}
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    blob = f'<script type="application/json" id="prerender-data">{text}</script>\n'
    page = page.replace("</body>", blob + "</body>")
    table = len(json.dumps([fields, rows, links], separators=(",", ":"), ensure_ascii=False).encode())
    sizes = {"links": len(links), "table_bytes": table,
             "charts_bytes": len(json.dumps(charts, separators=(",", ":")).encode()),
             "data_bytes": len(blob.encode())}
    return page, sizes


# ---------------------------------------------------------------------------- build

def project_url() -> str:
    """The repository's web address when known (GitHub Actions sets GITHUB_REPOSITORY)."""
    repo = os.environ.get("GITHUB_REPOSITORY", "")
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
    return f"{server}/{repo}" if repo.count("/") == 1 else os.environ.get("KVCALC_REPO_URL", "")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def vendor(dist: Path) -> None:
    """Copy the runtime files the page needs from node_modules/ into dist/vendor/."""
    pyodide = NODE_MODULES / "pyodide"
    for name in PYODIDE_FILES:
        _copy(pyodide / name, dist / "vendor" / "pyodide" / name)
    core = NODE_MODULES / "@pyscript" / "core" / "dist"
    for src in sorted(core.glob("*.js")):
        # bundler chunks are named <name>-<8-character hash>.js
        name = src.stem[:-9] if len(src.stem) > 9 and src.stem[-9] == "-" else src.stem
        if name in PYSCRIPT_CHUNKS:
            _copy(src, dist / "vendor" / "pyscript" / src.name)
    _copy(NODE_MODULES / PLOTLY_PACKAGE / PLOTLY_FILE, dist / "vendor" / "plotly" / PLOTLY_FILE)
    for pkg in ("pyodide", "@pyscript/core", PLOTLY_PACKAGE):
        license_file = NODE_MODULES / pkg / "LICENSE"
        if license_file.exists():
            _copy(license_file, dist / "vendor" / "LICENSES" / f"{pkg.replace('/', '_')}.txt")


def zip_package(dest: Path) -> None:
    """Zip the core package's .py files (deterministic order and timestamps)."""
    src = ROOT / PACKAGE
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            info = zipfile.ZipInfo(str(path.relative_to(ROOT)), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())


def _digest(dist: Path) -> tuple[str, list[str]]:
    h = hashlib.sha256()
    files = []
    for path in sorted(p for p in dist.rglob("*") if p.is_file()):
        rel = path.relative_to(dist).as_posix()
        if rel in ("sw.js",):
            continue
        files.append(rel)
        h.update(rel.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16], files


def build(dist: Path = DIST) -> Path:
    """Assemble the deployable site in ``dist`` and return its path."""
    ensure_node_modules()
    if dist.exists():
        shutil.rmtree(dist)
    dist.mkdir(parents=True)
    vendor(dist)
    zip_package(dist / f"{PACKAGE}.zip")
    # both pages' own files: HTML, CSS, JS and their Python glue (main.py, lab.py and the
    # modules pyscript.json ships beside them); index.html and sw.js are written below
    for src in sorted(SITE.iterdir()):
        if src.is_file() and src.name not in ("index.html", "sw.js") and not src.name.startswith("."):
            _copy(src, dist / src.name)
    for src in sorted((SITE / "traces").glob("*.json")):   # the lab's built-in trace summaries
        _copy(src, dist / "traces" / src.name)
    models, gpus = presets.list_models(), presets.list_gpus()
    page = (SITE / "index.html").read_text(encoding="utf-8")
    page = page.replace("<!--FORM-->", render_form(FIELDS, models, gpus))
    page = page.replace("<!--SENSITIVITY_OPTIONS-->", render_sensitivity_options(FIELDS))
    page = re.sub(r"^( *)<!--CHART (\w+) ([\w -]+)-->$", render_chart_parts, page, flags=re.M)
    page, prerendered = prerender(page, models, gpus)
    repo_url = project_url()
    page = page.replace('href="REPORT_URL"', f'href="{_text(repo_url + "/issues/new" if repo_url else "./README.md")}"')
    page = page.replace('href="README_URL"', f'href="{_text(repo_url + "#readme" if repo_url else "./README.md")}"')
    if (ROOT / "README.md").exists():
        _copy(ROOT / "README.md", dist / "README.md")
    # the runtime's files, whose bytes measure the loading progress's first stage (loader.js)
    sizes = {name: (dist / "vendor" / "pyodide" / name).stat().st_size for name in PYODIDE_FILES}
    loader = (dist / "loader.js").read_text(encoding="utf-8")
    (dist / "loader.js").write_text(loader.replace("__SIZES__", json.dumps(sizes)), encoding="utf-8")
    (dist / "index.html").write_text(page, encoding="utf-8")
    # both pages say which build they are, for the new-version notice (loader.js)
    for name in HTML_PAGES:
        html_page = (dist / name).read_text(encoding="utf-8")
        (dist / name).write_text(html_with(html_page, [[":root", "data-build", "BUILD_VERSION"]]),
                                 encoding="utf-8")
    (dist / ".nojekyll").write_text("")
    version, files = _digest(dist)
    files = [f for f in files if f != ".nojekyll"]
    sw = (SITE / "sw.js").read_text(encoding="utf-8")
    sw = sw.replace('"__VERSION__"', json.dumps(version)).replace(
        "__FILES__", json.dumps(["./"] + [f"./{f}" for f in files],
                                indent=1))
    (dist / "sw.js").write_text(sw, encoding="utf-8")
    for name in HTML_PAGES:
        html_page = (dist / name).read_text(encoding="utf-8")
        (dist / name).write_text(html_page.replace("BUILD_VERSION", version), encoding="utf-8")
    (dist / "version.txt").write_text(version + "\n")
    size = sum(p.stat().st_size for p in dist.rglob("*") if p.is_file())
    print(f"built {dist.relative_to(ROOT) if dist.is_relative_to(ROOT) else dist}/ "
          f"({len(files) + 1} files, {size / 2**20:.1f} MiB, version {version}); prerendered: the "
          f"default page's numbers, suggestions and charts ({prerendered['charts_bytes'] / 1024:.1f} KiB "
          f"of chart data) and the numbers of {prerendered['links']} links "
          f"({prerendered['table_bytes'] / 1024:.1f} KiB)", flush=True)
    return dist


# ---------------------------------------------------------------------------- serve

class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with correct types for .wasm/.mjs, optionally under a base sub-path."""

    base = "/"
    quiet = False
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def _strip_base(self) -> bool:
        if self.base == "/":
            return True
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == self.base.rstrip("/"):
            self.send_response(301)
            self.send_header("Location", self.base)
            self.end_headers()
            return False
        if not path.startswith(self.base):
            self.send_error(404, f"outside the base path {self.base}")
            return False
        self.path = "/" + self.path[len(self.base):]
        return True

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self._strip_base():
            super().do_GET()

    def do_HEAD(self):  # noqa: N802
        if self._strip_base():
            super().do_HEAD()

    def end_headers(self):
        if self.path.endswith(("sw.js", "index.html", "/")):
            self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 (signature from http.server)
        if not self.quiet:
            super().log_message(format, *args)


def normalise_base(base: str | None) -> str:
    """'/sub/path/' from 'sub/path', '/sub/path' or None ('/')."""
    base = (base or "/").strip()
    return "/" + base.strip("/") + "/" if base.strip("/") else "/"


class QuietServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a browser hangs up."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def make_server(directory: Path = DIST, port: int = 0, base: str = "/", host: str = "127.0.0.1",
                quiet: bool = True) -> QuietServer:
    """A threading static server for ``directory`` (port 0: a free port); ``.url`` is its URL."""
    handler = type("Handler", (SiteHandler,), {"base": normalise_base(base), "quiet": quiet})
    server = QuietServer((host, port), functools.partial(handler, directory=str(directory)))
    server.url = f"http://{host}:{server.server_address[1]}{normalise_base(base)}"
    return server


def start_server(directory: Path = DIST, base: str = "/") -> QuietServer:
    """Start ``make_server`` in a daemon thread; call ``.shutdown()`` to stop it."""
    server = make_server(directory, base=base)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------- commands

def cmd_build(args: argparse.Namespace) -> None:
    build()


def cmd_serve(args: argparse.Namespace) -> None:
    build()
    server = make_server(DIST, port=args.port, base=args.base, host=args.host, quiet=False)
    print(f"serving dist/ at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def cmd_test(args: argparse.Namespace) -> None:
    install_test_deps()
    build()
    pytest_args = list(args.pytest_args or [])
    env = dict(os.environ, KVCALC_DIST=str(DIST))
    run([sys.executable, "-m", "pytest", *pytest_args], env=env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=cmd_build)
    sub = parser.add_subparsers(dest="command")
    p_build = sub.add_parser("build", help="build dist/ (the default)")
    p_build.set_defaults(func=cmd_build)
    p_serve = sub.add_parser("serve", help="build dist/ and serve it locally")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--base", default="/",
                         help="serve under this sub-path, as GitHub Pages does (/<repo>/)")
    p_serve.set_defaults(func=cmd_serve)
    p_test = sub.add_parser("test", help="install test dependencies, build and run the tests")
    p_test.add_argument("pytest_args", nargs=argparse.REMAINDER,
                        help="extra arguments passed to pytest (e.g. -m 'not browser')")
    p_test.set_defaults(func=cmd_test)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["test"] and not {"-h", "--help"} & set(argv[1:]):
        # everything after `test` goes to pytest as it is (-q, -k EXPR, -m 'not browser')
        cmd_test(argparse.Namespace(pytest_args=argv[1:]))
        return
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
