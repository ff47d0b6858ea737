"""The README's key table is generated from FIELDS and must stay in step with it; its
Architecture section names the subpackages that exist."""

import re
from pathlib import Path

from kvcache_calculator.scenario import FIELDS, format_value

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def keys_table() -> str:
    rows = ["| key | meaning | unit | default | allowed |", "|---|---|---|---|---|"]
    for f in FIELDS:
        default = format_value(f.default) if f.default is not None else (
            "from the preset" if f.group == "model" else "derived" if f.key == "kv_cache_tokens" else "none")
        allowed = f.allowed().removeprefix("must be ").removesuffix(f" ({f.unit})" if f.unit else "")
        rows.append(f"| `{f.key}` | {f.help} | {f.unit} | {default} | {allowed} |")
    return "\n".join(rows)


def test_readme_documents_every_key_with_its_default():
    text = README.read_text(encoding="utf-8")
    assert keys_table() in text, "README's key table is stale: paste tests/test_readme.py's keys_table()"


def architecture_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Architecture\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_architecture_tree_names_every_subpackage_and_no_other():
    section = architecture_section()
    tree = section[section.index("```\nkvcache_calculator/"):]
    tree = tree[:tree.index("\n```", 4)]
    named = set(re.findall(r"^  ([a-z_]+)/", tree, re.M))
    existing = {p.parent.name for p in (ROOT / "kvcache_calculator").glob("*/__init__.py")}
    assert named == existing, f"README tree: {sorted(named)}; packages: {sorted(existing)}"
    for top in re.findall(r"^([a-z]+)/", tree, re.M):
        assert (ROOT / top).is_dir(), top
    assert "docs/architecture.md" in section


if __name__ == "__main__":
    print(keys_table())
