"""The prefill a few rows a forward (LocalOptions(prefill_rows=N)) against one forward of the
whole batch, through tiny random models on the CPU: the same cache, logits, positions and
mask, and the same drafts."""

from __future__ import annotations

from typing import Any

import pytest

from app.engines.local.decoder import Decoder, row_parts
from tests.drafting.conftest import tiny_qwen3vl_model
from tests.drafting.kernel_checks import image_prompts


def _model(family: str) -> tuple[Any, Any]:
    """A tiny random model of `family` with sharp attention (masks and positions matter),
    and a left-padded batch of four prompts: images for Qwen2/2.5-VL, text for Qwen3-VL."""
    import torch

    from tests.support.random_model import build

    torch.manual_seed(0)
    if family == "qwen3_vl":
        model = tiny_qwen3vl_model()
        ids = torch.randint(5, 300, (4, 9))
        mask = torch.ones_like(ids)
        mask[0, :3], mask[2, :5] = 0, 0
        batch: Any = {"input_ids": ids, "attention_mask": mask}
    else:
        model, processor = build("tiny", family)  # type: ignore[arg-type]
        batch = image_prompts(processor, "cpu", copies=2)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(30)
            layer.self_attn.k_proj.weight.mul_(30)
    return model, batch


def _stops(model: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos]) if eos is not None else {0}


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("rows", [1, 3])
def test_a_prefill_in_parts_leaves_what_one_forward_leaves(family: str, rows: int) -> None:
    import torch

    model, batch = _model(family)
    width = batch["input_ids"].shape[1]
    whole = Decoder(model, stop_ids=_stops(model), graphs=False)
    parts = Decoder(model, stop_ids=_stops(model), graphs=False, prefill_rows=rows)
    with torch.inference_mode():
        one = whole._slot(4, width + 16)
        whole._prefill(one, batch)
        several = parts._slot(4, width + 16)
        parts._prefill(several, batch)
    torch.testing.assert_close(several.logits, one.logits, rtol=1e-4, atol=1e-4)
    assert torch.equal(several.positions, one.positions)
    assert torch.equal(several.mask, one.mask)
    assert torch.equal(several.write_at, one.write_at)
    for a, b in zip(several.cache.layers, one.cache.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a.values, b.values, rtol=1e-4, atol=1e-4)
        assert int(a.cumulative_length) == int(b.cumulative_length) == width


@pytest.mark.parametrize("lean", [True, False], ids=["lean-step", "model-step"])
def test_drafts_from_a_prefill_in_parts_are_the_whole_batch_s(lean: bool) -> None:
    model, batch = _model("qwen2_vl")
    stops = _stops(model)
    want = Decoder(model, stop_ids=stops, graphs=False, lean_step=lean).run(
        batch, max_new_tokens=30
    )
    assert max(len(row) for row in want.tokens) > 10
    for rows in (1, 2, 3):
        decoder = Decoder(model, stop_ids=stops, graphs=False, lean_step=lean, prefill_rows=rows)
        assert decoder.run(batch, max_new_tokens=30).tokens == want.tokens
        # The slot's cache is reused for the next batch of the same size.
        assert decoder.run(batch, max_new_tokens=30).tokens == want.tokens


def test_rows_are_cut_with_their_own_image_s_patches() -> None:
    import torch

    _, batch = _model("qwen2_vl")
    parts = row_parts(batch, 3)
    assert parts is not None
    assert [start for start, _ in parts] == [0, 3]
    patches = batch["image_grid_thw"].prod(-1).tolist()
    for start, part in parts:
        n = part["input_ids"].shape[0]
        assert torch.equal(part["input_ids"], batch["input_ids"][start : start + n])
        assert part["pixel_values"].shape[0] == sum(patches[start : start + n])
    joined = torch.cat([part["pixel_values"] for _, part in parts])
    assert torch.equal(joined, batch["pixel_values"])


def test_a_batch_it_cannot_cut_is_prefilled_whole() -> None:
    import torch

    _, batch = _model("qwen2_vl")
    with_video = dict(batch, pixel_values_videos=torch.zeros(1))
    assert row_parts(with_video, 1) is None
    two_images_a_row = dict(batch, image_grid_thw=torch.cat([batch["image_grid_thw"]] * 2))
    assert row_parts(two_images_a_row, 1) is None


@pytest.mark.gpu
def test_a_prefill_in_parts_decodes_like_the_whole_batch_from_graphs_on_the_gpu() -> None:
    import torch

    from tests.support.random_model import build

    model, processor = build("tiny", device="cuda", dtype=torch.float32)
    batch = image_prompts(processor, "cpu", copies=2).to("cuda")
    stops = _stops(model)
    whole = Decoder(model, stop_ids=stops, graphs=True).run(batch, max_new_tokens=60)
    parts = Decoder(model, stop_ids=stops, graphs=True, prefill_rows=3)
    assert parts.run(batch, max_new_tokens=60).tokens == whole.tokens
    assert parts.run(batch, max_new_tokens=60).tokens == whole.tokens  # graphs replayed
