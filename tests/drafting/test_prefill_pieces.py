"""A batch's prompts written a few rows a forward (prefill.py): the same first logits, rope
positions, mask and cache as the whole batch in one forward, through the real engine and
tiny random models on rows padded on the left; and the batch size the memory then allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.engines.interface import DraftInput
from app.engines.local import prefill
from app.engines.local.engine import batch_and_pieces, batch_that_fits
from app.engines.local.options import LocalOptions
from tests.drafting.conftest import prefilled, sharpen, tiny_engine

GB = 10**9


def _inputs() -> list[DraftInput]:
    """Three images of three sizes: rows of several lengths, padded on the left."""
    from PIL import Image

    sizes = [(200, 150), (90, 60), (120, 220)]
    return [
        DraftInput(Image.new("RGB", size, (70 * i, 20, 200 - 60 * i)), "describe " * (i + 1))
        for i, size in enumerate(sizes)
    ]


def _prefilled(engine: Any, batch: Any, rows: int) -> dict[str, Any]:
    """Everything the first step reads after the prefill in pieces of `rows`: logits,
    positions, mask, the column it writes, and the whole cache (the columns after the
    prompt must stay empty)."""
    import torch

    engine.decoder.prefill_rows = rows
    slot, state = prefilled(engine, batch)
    for i, layer in enumerate(slot.cache.layers):
        state[f"keys{i}"] = layer.keys.clone()
        state[f"values{i}"] = layer.values.clone()
        state[f"length{i}"] = torch.as_tensor(layer.get_seq_length()).clone()
    return state


def _check(engine: Any, monkeypatch: pytest.MonkeyPatch, rtol: float, atol: float) -> None:
    import torch

    pieces: list[tuple[int, int]] = []
    real = prefill.rows_of

    def counted(inputs: Any, start: int, stop: int) -> dict[str, Any]:
        pieces.append((start, stop))
        return real(inputs, start, stop)

    monkeypatch.setattr(prefill, "rows_of", counted)
    sharpen(engine.model)
    batch = engine._prepare(_inputs())
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert len(set(lengths)) > 1  # rows padded on the left
    assert len(set(batch["image_grid_thw"].prod(-1).tolist())) > 1  # images of several sizes
    whole = _prefilled(engine, batch, rows=0)
    assert not pieces
    for rows, expected in ((1, [(0, 1), (1, 2), (2, 3)]), (2, [(0, 2), (2, 3)])):
        pieces.clear()
        cut = _prefilled(engine, batch, rows=rows)
        assert pieces == expected
        for key, value in whole.items():
            torch.testing.assert_close(cut[key], value, rtol=rtol, atol=atol, msg=key)


@pytest.mark.parametrize("family", ["tiny_qwen2vl", "tiny_qwen25vl"])
def test_pieces_give_what_the_whole_batch_gives(
    family: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = tiny_engine(request.getfixturevalue(family), batch_size=3)
    try:
        _check(engine, monkeypatch, 1e-5, 1e-5)
    finally:
        engine.close()


@pytest.mark.slow
def test_pieces_give_what_the_whole_batch_gives_for_qwen3_vl(
    real_tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Qwen3-VL adds image features into its first layers (deepstack) at the image's tokens:
    # each piece must carry its own rows' features only.
    engine = tiny_engine(real_tiny("Qwen3-VL-4B-Instruct"), batch_size=3, max_pixels=64 * 32 * 32)
    try:
        assert engine.convention == "qwen3vl"
        _check(engine, monkeypatch, 1e-5, 1e-5)
    finally:
        engine.close()


def test_an_engine_drafts_the_same_in_pieces(
    tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.drafting.test_local_engine import images

    cut: list[tuple[int, int]] = []
    real = prefill.rows_of
    monkeypatch.setattr(prefill, "rows_of", lambda b, i, j: cut.append((i, j)) or real(b, i, j))
    whole = tiny_engine(tiny_qwen2vl, batch_size=4)
    pieces = tiny_engine(tiny_qwen2vl, batch_size=4, options=LocalOptions(prefill_rows=3))
    try:
        want = [o.raw for o in whole.draft(images())]
        assert not cut
        assert [o.raw for o in pieces.draft(images())] == want
        assert cut == [(0, 3), (3, 4)]  # the batch of four, written in two forwards
    finally:
        whole.close()
        pieces.close()


def test_a_batch_is_cut_by_its_rows_and_their_images(tiny_qwen2vl: Path) -> None:
    import torch

    engine = tiny_engine(tiny_qwen2vl, batch_size=3)
    try:
        batch = engine._prepare(_inputs())
    finally:
        engine.close()
    patches = batch["image_grid_thw"].prod(-1).tolist()
    piece = prefill.rows_of(batch, 1, 3)
    assert torch.equal(piece["input_ids"], batch["input_ids"][1:])
    assert torch.equal(piece["image_grid_thw"], batch["image_grid_thw"][1:])
    assert torch.equal(piece["pixel_values"], batch["pixel_values"][patches[0] :])
    assert prefill.row_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert prefill.row_ranges(2, 8) == [(0, 2)]
    assert prefill.can_cut(batch)
    # Two images in one row, no image, or a value not per row: not cut by rows.
    two = dict(batch) | {"image_grid_thw": torch.cat([batch["image_grid_thw"]] * 2)}
    text_only = {k: v for k, v in batch.items() if k not in ("pixel_values", "image_grid_thw")}
    odd = dict(batch) | {"second_per_grid_ts": torch.ones(1)}
    for refused in (two, text_only, odd):
        assert not prefill.can_cut(refused)
        with pytest.raises(ValueError, match="one image a row"):
            prefill.rows_of(refused, 0, 1)


def test_a_batch_that_cannot_be_cut_is_written_whole(
    tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    cut: list[int] = []
    real = prefill.rows_of
    monkeypatch.setattr(prefill, "rows_of", lambda *a: cut.append(1) or real(*a))
    engine = tiny_engine(tiny_qwen2vl, batch_size=3, options=LocalOptions(prefill_rows=1))
    try:
        batch = engine._prepare(_inputs())
        decoder = engine.decoder
        slot = decoder._slot(3, batch["input_ids"].shape[1] + 64)
        with torch.inference_mode():
            decoder._prefill(slot, batch)
            assert len(cut) == 3
            pieces = slot.logits.clone()
            # A value that is not per row (the model ignores this one): the whole batch.
            decoder._prefill(slot, batch | {"unused": torch.zeros(1)})
        assert len(cut) == 3
        torch.testing.assert_close(slot.logits, pieces, rtol=1e-5, atol=1e-5)
    finally:
        engine.close()


def test_the_batch_that_fits_counts_one_piece_s_passing_tensors() -> None:
    # Qwen3-VL-8B on an H100 (bench/memory_peak.py, 2026-12-07): weights 17.5 GB; at batch
    # 64 a cache of 19.3 GB, 0.8 GB of the next batch's patches and 15.7 GB of tensors that
    # live only during the prefill. A first batch of 8 takes an eighth of each. 0.85 of the
    # card's 85.5 GB (81,559 MiB) is usable, less what CUDA itself holds.
    cache, pixels = int(19.3 * GB / 8), int(0.8 * GB / 8)
    drafted = cache + int(15.7 * GB / 8)
    held = int(17.5 * GB) + cache
    usable = 72 * GB

    def fits(usable: int = usable, **kw: int) -> int:
        return batch_that_fits(
            8, drafted=drafted, cache=cache, held=held, usable=usable, pixels=pixels, **kw
        )

    # All rows at once: the passing tensors double with the batch; 64 fits, 128 not.
    assert fits() == 64
    # Sixteen rows a forward: 128 images' cache and patches and one piece's passing
    # tensors fit (68.4 GB with 10 % spare); 256 images' cache alone does not.
    assert fits(prefill_rows=16) == 128
    # Where 128 images' cache and a piece do not fit, it stays at 64.
    assert fits(usable=60 * GB, prefill_rows=16) == 64
    # Without the cache's size, everything grows with the batch, pieces or not.
    assert batch_that_fits(8, drafted=drafted, cache=0, held=held, usable=usable) == 64
    assert (
        batch_that_fits(8, drafted=drafted, cache=0, held=held, usable=usable, prefill_rows=16)
        == 64
    )
    # Chosen with the batch: the most rows a forward that reach the largest batch.
    measured = {"drafted": drafted, "cache": cache, "held": held, "pixels": pixels}
    assert batch_and_pieces(8, usable=usable, **measured) == (128, 16)
    assert batch_and_pieces(8, usable=75 * GB, **measured) == (128, 32)
    # No pieces where they let the batch grow no larger.
    assert batch_and_pieces(8, usable=60 * GB, **measured) == (64, 0)
    assert batch_and_pieces(8, usable=400 * GB, **measured) == (256, 0)
    # Off, the batch is what one figure an image gives, as it always was.
    for rows, drafted_, held_, usable_ in ((8, 3 * GB, 5 * GB, 60 * GB), (4, GB, GB, 9 * GB)):
        size = rows
        while size * 2 <= 256 and held_ + size * 2 * drafted_ / rows * 1.1 <= usable_:
            size *= 2
        assert (
            batch_that_fits(
                rows, drafted=drafted_, cache=cache, held=held_, usable=usable_, pixels=pixels
            )
            == size
        )


@pytest.mark.gpu
def test_pieces_on_the_gpu_in_bf16(tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    engine = tiny_engine(tiny_qwen2vl, device="cuda", batch_size=3)
    try:
        assert engine.model.dtype == torch.bfloat16  # what a GPU loads
        _check(engine, monkeypatch, 2e-2, 2e-2)
    finally:
        engine.close()
