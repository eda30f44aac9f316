"""The prefill's attention on the prompt's own columns, padded on the right, causal with no
mask (attention.py, prefill.py): each row's first logits, positions and real tokens' keys and
values are those of transformers' own path (rows padded on the left, the padding mask, the
whole cache), through the real engine and a tiny random model; and it drafts the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.engines.interface import DraftInput
from app.engines.local import attention
from app.engines.local.options import LocalOptions
from tests.drafting.conftest import prefilled, sharpen, tiny_engine


def _inputs() -> list[DraftInput]:
    """Three images of different sizes: the shorter prompts are padded."""
    from PIL import Image

    return [
        DraftInput(Image.new("RGB", (200, 150), (200, 10, 10)), "describe"),
        DraftInput(Image.new("RGB", (90, 60), (10, 10, 200)), "describe the picture"),
        DraftInput(Image.new("RGB", (120, 220), (10, 200, 10)), "the picture, please"),
    ]


def _prefilled(engine: Any, batch: Any, on: bool) -> dict[str, Any]:
    """What the first step reads: logits, positions, its column, and each row's keys and
    values at the columns its mask attends (wherever the padding put them)."""
    engine.decoder.prompt_attention = on
    slot, state = prefilled(engine, batch)
    length = batch["input_ids"].shape[1]
    attended = state.pop("mask")[:, 0, 0, :length] == 0  # the layouts differ; this does not
    for row in range(attended.shape[0]):
        columns = attended[row].nonzero().view(-1)
        state[f"real{row}"] = columns.new_tensor(len(columns))
        for i, layer in enumerate(slot.cache.layers):
            state[f"keys{i}/{row}"] = layer.keys[row, :, columns].clone()
            state[f"values{i}/{row}"] = layer.values[row, :, columns].clone()
    return state


def _check(engine: Any, rtol: float, atol: float, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    calls: list[tuple[int, int]] = []
    real = attention._prompt_attention

    def counted(module: Any, query: Any, key: Any, *args: Any, **kw: Any) -> Any:
        calls.append((query.shape[2], key.shape[2]))
        return real(module, query, key, *args, **kw)

    monkeypatch.setattr(attention, "_prompt_attention", counted)
    sharpen(engine.model)
    batch = engine._prepare(_inputs())
    lengths = batch["attention_mask"].sum(-1)
    assert len(set(lengths.tolist())) > 1  # padded
    whole = _prefilled(engine, batch, on=False)
    assert not calls
    cut = _prefilled(engine, batch, on=True)
    # Each text layer, and only those (not the vision tower's), cut the whole cache.
    layers = len(engine.model.model.language_model.layers)
    assert len(calls) == layers and all(keys > tokens for tokens, keys in calls)
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


def test_where_no_fused_kernel_takes_it_transformers_path_does(
    tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a GPU where flash, cuDNN and the efficient kernel all refuse: the prompt's
    # columns with the (right-padded) mask, through transformers' own path.
    monkeypatch.setattr(attention, "PROMPT_KERNELS", ("EFFICIENT_ATTENTION",))  # not on a CPU
    engine = tiny_engine(
        tiny_qwen2vl, options=LocalOptions(grouped_attention=True, prompt_attention=True)
    )
    try:
        _check(engine, 1e-5, 1e-5, monkeypatch)
    finally:
        engine.close()


@pytest.mark.slow
def test_the_prompts_attention_for_qwen3_vl(
    real_tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = tiny_engine(
        real_tiny("Qwen3-VL-4B-Instruct"),
        max_pixels=64 * 32 * 32,
        options=LocalOptions(grouped_attention=True, prompt_attention=True),
    )
    try:
        _check(engine, 1e-5, 1e-5, monkeypatch)
    finally:
        engine.close()


@pytest.mark.parametrize("rows", [0, 2])
def test_an_engine_drafts_the_same_with_the_prompts_attention(
    tiny_qwen25vl: Path, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decode steps after it read the prompt where the right padding put it; with the
    # prefill in pieces too.
    from tests.drafting.test_local_engine import images

    calls: list[int] = []
    real = attention._prompt_attention

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(attention, "_prompt_attention", counted)

    options = {"grouped_attention": True, "prefill_rows": rows}
    plain = tiny_engine(tiny_qwen25vl, batch_size=4, options=LocalOptions(**options))
    cut = tiny_engine(
        tiny_qwen25vl, batch_size=4, options=LocalOptions(prompt_attention=True, **options)
    )
    try:
        want = [o.raw for o in plain.draft(images())]
        assert not calls
        drafted = cut.draft(images())
        assert [o.raw for o in drafted] == want
        assert all(o.caption is not None for o in drafted)
        # Every text layer of every forward that wrote prompts took the prompt's path.
        layers = len(cut.model.model.language_model.layers)
        assert len(calls) == layers * (2 if rows else 1)
    finally:
        plain.close()
        cut.close()


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
    # In bf16 flash attention can run (or cuDNN's); every row must stay finite, and give
    # what transformers' own path gives within bf16's rounding.
    import torch

    engine = tiny_engine(tiny_qwen2vl, device="cuda", options=LocalOptions(prompt_attention=True))
    try:
        assert engine.model.dtype == torch.bfloat16  # what a GPU loads
        assert engine.decoder.prompt_attention  # with the grouped attention, on a GPU by default
        _check(engine, 2e-2, 2e-2, monkeypatch)
    finally:
        engine.close()
