"""The README's key table is generated from FIELDS and must stay in step with it."""

from pathlib import Path

from kvcache_calculator.scenario import FIELDS, format_value

README = Path(__file__).resolve().parents[1] / "README.md"


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


if __name__ == "__main__":
    print(keys_table())
