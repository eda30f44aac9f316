"""The local engine through the real load and generate path, with tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from app.drafting.engines import DraftError, DraftInput
from app.drafting.local import LocalEngine
from app.drafting.schema import Limits
from tests.drafting.conftest import MAX_CHARS, MAX_ELEMENTS, TOKENS

LIMITS = Limits.scaled(max_chars=MAX_CHARS, max_elements=MAX_ELEMENTS)


def images() -> list[DraftInput]:
    sizes = [(320, 240), (240, 420), (500, 500), (700, 300)]
    return [
        DraftInput(Image.new("RGB", s, (40 * i, 90, 140)), f"describe image {i}")
        for i, s in enumerate(sizes)
    ]


@pytest.mark.parametrize("family", ["tiny_qwen2vl", "tiny_qwen25vl"])
def test_every_output_is_schema_valid_json(family: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(family)
    engine = LocalEngine.load(
        str(path),
        device="cpu",
        batch_size=3,  # 4 images: a full batch and a partial one, padded on the left
        max_pixels=64 * 28 * 28,
        max_new_tokens=TOKENS,
        limits=LIMITS,
    )
    assert engine.convention == ("qwen25vl" if family == "tiny_qwen25vl" else "qwen2vl")
    outputs = engine.draft(images())
    assert len(outputs) == 4
    for out in outputs:
        assert out.error is None, out.raw
        data = json.loads(out.raw)
        assert set(data) == {
            "high_level_description",
            "style_description",
            "compositional_deconstruction",
        }
        assert len(data["high_level_description"]) <= 2 * MAX_CHARS
        assert len(data["compositional_deconstruction"]["elements"]) <= MAX_ELEMENTS
        assert out.caption is not None
        for e in out.caption.composition.elements:
            assert e.box is None or all(0 <= v <= 1 for v in e.box)


def test_a_budget_too_small_is_reported_as_cut(tiny_qwen2vl: Path) -> None:
    engine = LocalEngine.load(
        str(tiny_qwen2vl), device="cpu", max_pixels=64 * 28 * 28, max_new_tokens=20, limits=LIMITS
    )
    out = engine.draft(images()[:1])[0]
    assert out.caption is None
    assert out.error == "the answer was cut at the token limit"
    assert out.raw == '{"high_level_descrip'  # kept for inspection


def test_missing_model_gives_a_way_forward(tmp_path: Path) -> None:
    with pytest.raises(DraftError) as e:
        LocalEngine.load("Qwen/Qwen2-VL-7B-Instruct-nowhere", device="cpu")
    assert "hf download Qwen/Qwen2-VL-7B-Instruct-nowhere" in e.value.message
    with pytest.raises(DraftError) as e:
        LocalEngine.load(str(tmp_path / "no-such-folder"), device="cpu")
    assert "not a local folder and not in the Hugging Face cache" in e.value.message


def test_static_cache_path_pads_to_buckets_and_returns_only_real_rows(tiny_qwen2vl: Path) -> None:
    # The GPU path: a static KV cache with batch and length buckets, run here on the CPU.
    engine = LocalEngine.load(
        str(tiny_qwen2vl),
        device="cpu",
        batch_size=4,
        max_pixels=64 * 28 * 28,
        max_new_tokens=TOKENS,
        limits=LIMITS,
        static_cache=True,
    )
    outputs = engine.draft(images()[:3])  # padded to a batch of 4 inside
    assert len(outputs) == 3
    assert all(o.caption is not None for o in outputs), [o.error for o in outputs]


def test_grouped_attention_decodes_exactly_like_transformers_sdpa() -> None:
    import torch

    from app.drafting.attention import use_grouped_attention
    from app.drafting.random_model import build

    model, processor = build("tiny")  # 4 query heads share 2 KV heads
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for t in ("short", "a longer prompt, padded on the left of the other")
    ]
    batch = processor(
        text=texts,
        images=[Image.new("RGB", (200, 150), (200, 10, 10)), Image.new("RGB", (120, 220), 90)],
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    with torch.inference_mode():
        plain = [
            model.generate(**batch, max_new_tokens=30, do_sample=False, cache_implementation=c)
            for c in (None, "static")
        ]
        use_grouped_attention(model)
        grouped = [
            model.generate(**batch, max_new_tokens=30, do_sample=False, cache_implementation=c)
            for c in (None, "static")
        ]
    assert model.config._attn_implementation == "atelier_grouped_sdpa"
    assert all(torch.equal(a, b) for a, b in zip(plain, grouped, strict=True))
