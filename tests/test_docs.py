"""The project documents itself: references point into docs/, and nothing points outside.

- Every ``docs/<name>.md`` named anywhere in the repository exists, and every section it is
  cited with (``docs/model.md §5``, ``§4-§6``, ``§10.3``) is a numbered heading of that page.
- No file refers to the working documents the project was built from (their names are
  assembled below, so this file does not mention them either), except notes kept under
  ``docs/history/``.
- Only tests and benchmarks may reach for data beside the checkout (the public traces and
  real config.json files in a sibling ``shared`` folder), and each of them says what is
  missing when it is absent: a test skips with a reason, a benchmark prints a note.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Directories that hold no project text (generated, vendored or tool state).
SKIP_DIRS = {".git", "node_modules", "dist", "__pycache__", ".hypothesis", ".pytest_cache", "build"}
TEXT_SUFFIXES = {".py", ".md", ".js", ".html", ".css", ".json", ".toml", ".yml", ".yaml", ".txt",
                 ".svg", ".cfg", ".ini", ""}

#: The names of the working documents, assembled so that this file does not contain them.
FOREIGN_DOCS = re.compile(r"\b(?:" + "|".join(("MODEL", "DESIGN", "STYLE", "PRESETS")) + r")\.md")
#: A reference to the sibling data folder, as a string or as path parts.
SIBLING = re.compile(r"\.\./" + "shared" + r"|\"\.\.\"\s*/\s*\"" + "shared" + "\"")
#: ``docs/<name>.md`` and the section numbers that follow it (``§5``, ``§4-§6, §9``, ``§1 and §4``).
_SECTIONS = r"((?:(?:\s*[,\-–]\s*|\s+and\s+|\s+)§\d+(?:\.\d+)?)*)"
REFERENCE = re.compile(r"(?<![\w/.-])docs/([a-z0-9_-]+\.md)" + _SECTIONS)
#: Inside docs/, pages cite each other without the prefix (``validation.md §4.1``).
SIBLING_PAGE = re.compile(r"(?<![\w/.-])([a-z0-9_-]+\.md)" + _SECTIONS)
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)?)[. ]", re.M)


def project_files() -> list[Path]:
    """Every text file of the project (what ``git ls-files`` would list, without needing git)."""
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file() and not path.is_symlink() and path.suffix in TEXT_SUFFIXES:
            out.append(path)
    return sorted(out)


FILES = project_files()


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def sections(page: Path) -> set[str]:
    """The section numbers of a docs page: ``## 5. Title`` gives "5", ``### 5.2 Title`` "5.2"."""
    return set(HEADING.findall(text(page)))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_docs_exist_with_numbered_sections():
    for name in ("model.md", "validation.md", "architecture.md"):
        page = DOCS / name
        assert page.is_file(), f"docs/{name} is missing"
        numbers = [int(n) for n in sections(page) if "." not in n]
        assert numbers and sorted(numbers) == list(range(1, max(numbers) + 1)), (name, sorted(numbers))


def test_every_docs_reference_points_to_a_page_and_section():
    bad = []
    seen = 0
    for path in FILES:
        if rel(path).startswith("tests/data/"):
            continue   # data quoted from elsewhere (logs, configs) may name other projects' docs/
        patterns = (REFERENCE, SIBLING_PAGE) if rel(path).startswith("docs/") else (REFERENCE,)
        for pattern, match in ((p, m) for p in patterns for m in p.finditer(text(path))):
            if pattern is SIBLING_PAGE and not match.group(2) and not (DOCS / match.group(1)).is_file():
                continue   # a file name in prose (README.md), not a citation
            seen += 1
            page = DOCS / match.group(1)
            if not page.is_file():
                bad.append(f"{rel(path)}: docs/{match.group(1)} does not exist")
                continue
            known = sections(page)
            for number in re.findall(r"§(\d+(?:\.\d+)?)", match.group(2)):
                if number not in known:
                    bad.append(f"{rel(path)}: docs/{match.group(1)} has no section {number}")
    assert seen >= 40, f"only {seen} references to docs/ found: is the pattern still right?"
    assert not bad, "\n".join(bad)


def test_relative_links_between_docs_pages_resolve():
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([a-z0-9_-]+\.md)(?:#[^)]*)?\)", text(page)):
            assert (DOCS / target).is_file(), f"{rel(page)} links to {target}, which does not exist"


def test_no_file_refers_to_the_working_documents():
    offenders = [f"{rel(path)}:{n}: {line.strip()}"
                 for path in FILES if not rel(path).startswith("docs/history/")
                 for n, line in enumerate(text(path).splitlines(), 1) if FOREIGN_DOCS.search(line)]
    assert not offenders, "refer to docs/ instead:\n" + "\n".join(offenders)


def test_only_tests_and_benchmarks_read_the_sibling_data_folder():
    readers = [path for path in FILES if SIBLING.search(text(path))]
    assert readers, "no test reads the public traces or configs: is the pattern still right?"
    outside = [rel(p) for p in readers if not rel(p).startswith(("tests/", "benchmarks/"))]
    assert not outside, f"only tests and benchmarks may use the sibling data folder: {outside}"


@pytest.mark.parametrize("path", [p for p in FILES if SIBLING.search(text(p))], ids=rel)
def test_a_reader_of_the_sibling_folder_says_what_is_missing(path):
    """It reads traces or configs only, and skips (a test) or prints a note (a benchmark)
    naming what is absent."""
    body = text(path)
    for line in body.splitlines():
        if SIBLING.search(line) and not re.search(r"traces|hf-configs|is absent|SHARED\s*=", line):
            pytest.fail(f"{rel(path)} uses the sibling folder for something else: {line.strip()}")
    if rel(path).startswith("tests/"):
        assert re.search(r"pytest\.skip\(|skipif\(", body), f"{rel(path)} must skip when the data is absent"
        reasons = re.findall(r"(?:pytest\.skip\(|reason=)\s*f?\"([^\"]*)\"", body)
        assert reasons and all("not found" in r and "absent" in r for r in reasons if "shared" in r), reasons
    else:
        assert re.search(r"print\(f?\"[^\"]*not found", body), f"{rel(path)} must say when the data is absent"
