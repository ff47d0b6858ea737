"""Links that never lie (issue 12): a link keeps its model while a field is invalid, shows no
other model's numbers, and says when an override is in effect."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from pagetools import field, set_field, value, wait_ready

pytestmark = pytest.mark.browser


def hash_of(page) -> str:
    return unquote(page.evaluate("location.hash"))


def test_an_mla_preset_with_attention_gqa_keeps_its_model_and_names_every_field(page, site):
    page.goto(site.url + "#model=deepseek-v3&gpu=h200&num_gpus=8&weight_dtype=fp8&attention=gqa")
    wait_ready(page)
    assert field(page, "model").input_value() == "deepseek-v3"
    assert field(page, "attention").input_value() == "gqa"
    for key in ("attention", "num_kv_heads", "head_dim"):
        assert field(page, key).get_attribute("aria-invalid") == "true", key
        assert key in page.inner_text("#link-notice")
    assert "an MLA" in page.inner_text("#e-attention")
    # the numbers are DeepSeek-V3's (its own MLA layers: 70,272 bytes per token at bf16)
    assert value(page, "kv_bytes_per_token") == 70272
    assert "model=deepseek-v3" in hash_of(page) and "attention=gqa" in hash_of(page)


def test_an_incomplete_custom_link_keeps_its_architecture_and_shows_no_numbers(page, site):
    page.goto(site.url + "#model=custom&num_layers=32&num_kv_heads=8&params_b=8&gpu=h200")
    wait_ready(page)
    assert field(page, "model").input_value() == "custom"
    assert {k: field(page, k).input_value() for k in ("num_layers", "num_kv_heads", "params_b")} == {
        "num_layers": "32", "num_kv_heads": "8", "params_b": "8"}
    assert field(page, "head_dim").get_attribute("aria-invalid") == "true"
    # never another model's numbers: placeholders and a sentence saying why
    assert page.get_attribute("#token_hit_rate", "data-value") == ""
    assert page.inner_text("#token_hit_rate").strip() == "—"
    assert "head_dim" in page.inner_text("#fit-message") and page.is_visible("#fit-message")
    for part in ("model=custom", "num_layers=32", "num_kv_heads=8", "params_b=8", "gpu=h200"):
        assert part in hash_of(page), part
    # completing it shows its numbers
    set_field(page, "head_dim", "128")
    page.wait_for_function("document.getElementById('token_hit_rate').dataset.value !== ''")
    assert value(page, "kv_bytes_per_token") == 32 * 8 * 128 * 2 * 2
    assert page.is_hidden("#fit-message")


def test_editing_attention_on_deepseek_keeps_the_model_in_the_address(page, site):
    page.goto(site.url + "#model=deepseek-v3&gpu=h200&num_gpus=8")
    wait_ready(page)
    set_field(page, "attention", "gqa")
    page.wait_for_function("location.hash.includes('attention=gqa')")
    assert "model=deepseek-v3" in hash_of(page) and "llama" not in hash_of(page)
    assert page.is_visible("#stale-note")
    assert field(page, "num_kv_heads").get_attribute("aria-invalid") == "true"


def test_memory_overrides_are_shown_and_do_not_outlive_their_gpu(page, site):
    page.goto(site.url + "#gpu_memory_gib=200")
    wait_ready(page)
    notes = page.inner_text("#notes")
    assert "gpu_memory_gib = 200 GiB" in notes and "does not exist" in notes
    set_field(page, "gpu", "h200")
    page.wait_for_function("!location.hash.includes('gpu_memory_gib')")
    assert field(page, "gpu_memory_gib").input_value() == ""
    assert "gpu_memory_gib" not in page.inner_text("#notes")


def test_a_capacity_override_beyond_the_gpu_is_warned_about(page, site):
    page.goto(site.url + "#kv_cache_tokens=1000000000000")
    wait_ready(page)
    notes = page.inner_text("#notes")
    assert "kv_cache_tokens = 1,000,000,000,000" in notes and "more than the 79.6 GiB" in notes


def test_a_prompt_beyond_the_context_is_warned_about(page, site):
    page.goto(site.url + "#input_tokens=100000")
    wait_ready(page)
    assert "context of 131,072 tokens" in page.inner_text("#notes")


def test_import_takes_the_weight_format_and_refuses_sizes_beyond_the_form(page, site, shared_dir):
    config = shared_dir / "hf-configs" / "deepseek-ai--DeepSeek-V3.json"
    if not config.exists():
        pytest.skip(f"{config} not found")
    page.goto(site.url + "#gpu=h200&num_gpus=8")
    wait_ready(page)
    page.click("#import summary")
    page.fill("#import-text", config.read_text())
    page.click("#import-apply")
    page.wait_for_function("location.hash.includes('model=custom')")
    assert field(page, "weight_dtype").input_value() == "fp8"       # its quantization_config
    assert "weight_dtype=fp8" in hash_of(page)
    huge = config.read_text().replace('"num_hidden_layers": 61', '"num_hidden_layers": 1000000')
    page.fill("#import-text", huge)
    page.click("#import-apply")
    page.wait_for_function("document.getElementById('import-status').textContent.includes('Not imported')")
    assert "num_hidden_layers" in page.inner_text("#import-status") and "limit" in page.inner_text("#import-status")
    assert field(page, "num_layers").input_value() == "61"
