"""The prefill's attention on the prompt's own columns, cuDNN's kernel first (attention.py):
the same logits and cache as transformers' own path over the whole cache, through the real
engine and a tiny random model, on rows padded on the left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.engines.interface import DraftInput
from app.engines.local import attention
from app.engines.local.options import LocalOptions
from tests.drafting.conftest import tiny_engine


def _inputs() -> list[DraftInput]:
    """Two images of different sizes: the shorter prompt is padded on the left."""
    from PIL import Image

    return [
        DraftInput(Image.new("RGB", (200, 150), (200, 10, 10)), "describe"),
        DraftInput(Image.new("RGB", (90, 60), (10, 10, 200)), "describe the picture"),
    ]


def _prefilled(engine: Any, batch: Any, cut: bool) -> dict[str, Any]:
    """The first logits and every layer's keys and values of the prompt's columns."""
    import torch

    decoder = engine.decoder
    length = batch["input_ids"].shape[1]
    decoder.prompt_attention = cut
    slot = decoder._slot(batch["input_ids"].shape[0], length + 64)
    with torch.inference_mode():
        decoder._prefill(slot, batch)
    state = {"logits": slot.logits.clone()}
    for i, layer in enumerate(slot.cache.layers):
        state[f"keys{i}"] = layer.keys[:, :, :length].clone()
        state[f"values{i}"] = layer.values[:, :, :length].clone()
    return state


def _sharpen(model: Any) -> None:
    """Sharp attention, so that a wrong mask or a wrong cut shows in the logits."""
    import torch

    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(30)


def _check(engine: Any, rtol: float, atol: float, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cuts: list[tuple[int, int]] = []
    real = attention._prompt_attention

    def counted(module: Any, query: Any, key: Any, *args: Any, **kw: Any) -> Any:
        cuts.append((query.shape[2], key.shape[2]))
        return real(module, query, key, *args, **kw)

    monkeypatch.setattr(attention, "_prompt_attention", counted)
    _sharpen(engine.model)
    batch = engine._prepare(_inputs())
    assert int(batch["attention_mask"][1].sum()) < batch["attention_mask"].shape[1]  # padded
    whole = _prefilled(engine, batch, cut=False)
    assert not cuts
    cut = _prefilled(engine, batch, cut=True)
    # Each text layer's attention got the whole cache, and cut it (the vision tower's, where
    # it is not packed, comes here too, with no cache to cut).
    layers = len(engine.model.model.language_model.layers)
    assert len([tokens for tokens, keys in cuts if keys > tokens]) == layers
    for key, value in whole.items():
        assert torch.isfinite(cut[key]).all(), key
        torch.testing.assert_close(cut[key], value, rtol=rtol, atol=atol, msg=key)


def test_the_prompts_attention_gives_what_the_whole_cache_gives(
    tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = tiny_engine(
        tiny_qwen2vl, options=LocalOptions(grouped_attention=True, prompt_attention=True)
    )
    try:
        assert engine.decoder.prompt_attention
        _check(engine, 1e-5, 1e-5, monkeypatch)
    finally:
        engine.close()


def test_the_prompts_attention_needs_the_grouped_attention(tiny_qwen2vl: Path) -> None:
    engine = tiny_engine(
        tiny_qwen2vl, options=LocalOptions(grouped_attention=False, prompt_attention=True)
    )
    try:
        assert not engine.decoder.prompt_attention
    finally:
        engine.close()


@pytest.mark.gpu
def test_the_prompts_attention_on_the_gpu_in_bf16(
    tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In bf16 cuDNN's kernel can run; padded rows must stay finite (a NaN there would reach
    # every real row through the values).
    import torch

    engine = tiny_engine(tiny_qwen2vl, device="cuda", options=LocalOptions(prompt_attention=True))
    try:
        assert engine.model.dtype == torch.bfloat16  # what a GPU loads
        assert engine.decoder.prompt_attention  # with the grouped attention, on a GPU by default
        _check(engine, 2e-2, 2e-2, monkeypatch)
    finally:
        engine.close()
