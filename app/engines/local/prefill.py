"""A batch's prompts written into its static cache: a few rows at a time, and padded on the
right for the prompt's attention.

A prefill's passing tensors grow with the tokens of one forward, its cache with the batch.
At Qwen3-VL-8B's batch 64 on an H100 the peak was 52.8 GB: weights 17.5, cache 19.3, and
15.7 of tensors that live only during the prefill (the vision MLP 4.3, the text MLP 2.1 +
2.1, the merged image features 1.6: bench/memory_peak.py, 2026-12-07). Written in pieces of
a few rows, a batch's peak is its weights, its cache and one piece's passing tensors, so a
batch twice as large can fit where its cache fits.

Each piece is the model's own forward on its rows: their ids and mask, their images'
patches and grids (one image a row, as the engine builds batches). It writes into a cache
whose layers are views of the batch cache's rows, so nothing is copied; its last logits and
rope deltas are the rows' own, since every row of a prompt attends only to its own row.
(tests/drafting/test_prefill_pieces.py compares logits, deltas and cache with the whole
batch in one forward, for Qwen2-VL, Qwen2.5-VL and Qwen3-VL.)

The prompt's attention (attention.py) needs each row's padding at its end, not its start
(`right_padded`): every per-row tensor is rolled alike, so a row's prompt sits in the cache's
first columns and its padding after it, where the decode step's mask leaves it unread; the
first logits are then each row's last real token's (`first_logits`).
"""

from __future__ import annotations

from typing import Any


def row_ranges(batch: int, rows: int) -> list[tuple[int, int]]:
    """The pieces' (start, stop) rows: `rows` at a time, the last one shorter."""
    rows = max(1, rows)
    return [(start, min(start + rows, batch)) for start in range(0, batch, rows)]


def can_cut(inputs: Any) -> bool:
    """Whether the batch's rows hold one image each and nothing else that is not per row,
    as the engine builds batches: only such a batch is written in pieces."""
    batch = inputs["input_ids"].shape[0]
    grids = inputs.get("image_grid_thw")
    if grids is None or grids.shape[0] != batch:
        return False
    return all(
        key == "pixel_values" or (getattr(value, "ndim", 0) > 0 and value.shape[0] == batch)
        for key, value in inputs.items()
    )


def rows_of(inputs: Any, start: int, stop: int) -> dict[str, Any]:
    """The rows `start` to `stop` of a processor's batch: every per-row tensor's rows, and the
    patches and grids of those rows' images. A batch that `can_cut` refuses: ValueError."""
    if not can_cut(inputs):
        raise ValueError("a prefill in pieces needs one image a row and per-row tensors")
    patches = inputs["image_grid_thw"].prod(-1).tolist()
    first, last = sum(patches[:start]), sum(patches[:stop])
    return {
        key: value[first:last] if key == "pixel_values" else value[start:stop]
        for key, value in inputs.items()
    }


def right_padded(inputs: Any) -> tuple[dict[str, Any], Any] | None:
    """The batch with each row's padding moved from its start to its end (every per-row
    tensor of the prompt's width rolled alike), and each row's last real column; None for a
    batch not padded on the left."""
    import torch

    mask = inputs["attention_mask"]
    batch, width = mask.shape
    real = mask.sum(-1)
    columns = torch.arange(width, device=mask.device).view(1, width)
    index = (columns + (width - real).view(batch, 1)) % width
    if not torch.equal(mask.gather(1, index), (columns < real.view(batch, 1)).to(mask.dtype)):
        return None
    rolled = {
        key: value.gather(1, index)
        if key != "pixel_values" and getattr(value, "shape", None) == (batch, width)
        else value
        for key, value in inputs.items()
    }
    return rolled, real - 1


def first_logits(model: Any, cache: Any, cache_arg: str, inputs: Any, last: Any = None) -> Any:
    """The prompts through the model into `cache`; each row's logits (rows, vocab) after its
    last token: the last column's, or column `last[row]` (the batch padded on the right)."""
    import torch

    if last is None:
        return model(**inputs, **{cache_arg: cache}, use_cache=True, logits_to_keep=1).logits[:, -1]
    hidden = model.model(**inputs, **{cache_arg: cache}).last_hidden_state
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return model.lm_head(hidden[rows, last])


def prefill_in_pieces(
    model: Any, cache: Any, cache_arg: str, inputs: Any, rows: int, last: Any = None
) -> tuple[Any, Any]:
    """Writes the batch's prompts into `cache` (a reset StaticCache) `rows` at a time; gives
    each row's last logits (batch, vocab) and its rope delta (batch,). The batch must be one
    that `can_cut`; `last` as `first_logits`'s."""
    import torch

    batch, length = inputs["input_ids"].shape
    _allocate(model, cache, batch)
    logits, deltas = [], []
    for start, stop in row_ranges(batch, rows):
        piece = _rows_view(model, cache, start, stop)
        ends = last[start:stop] if last is not None else None
        logits.append(first_logits(model, piece, cache_arg, rows_of(inputs, start, stop), ends))
        deltas.append(model.model.rope_deltas.reshape(stop - start))
    for layer in cache.layers:  # the whole batch's cache now holds `length` columns
        if isinstance(getattr(layer, "cumulative_length", None), torch.Tensor):
            layer.cumulative_length.fill_(length)
    return torch.cat(logits), torch.cat(deltas)


def _allocate(model: Any, cache: Any, batch: int) -> None:
    """The cache's tensors for the whole batch, made now rather than by its first write
    (which a piece would make with the piece's rows)."""
    import torch

    if all(getattr(layer, "is_initialized", False) for layer in cache.layers):
        if all(layer.keys.shape[0] == batch for layer in cache.layers):
            return
        raise ValueError("the cache was made for another batch size")
    text = model.config.get_text_config()
    kv_heads = text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    parameter = next(model.parameters())
    shape = (batch, kv_heads, 0, head_dim)
    empty = torch.empty(shape, dtype=parameter.dtype, device=parameter.device)
    for layer in cache.layers:
        if not getattr(layer, "is_initialized", False):
            layer.lazy_initialization(empty, empty)


def _rows_view(model: Any, cache: Any, start: int, stop: int) -> Any:
    """A cache over the rows `start` to `stop` of `cache`: its layers' tensors are views of
    those rows, so the piece's forward writes straight into the batch's cache."""
    import torch
    from transformers import StaticCache

    view: Any = StaticCache(config=model.config, max_cache_len=cache.layers[0].max_cache_len)
    for mine, whole in zip(view.layers, cache.layers, strict=True):
        mine.__dict__.update(whole.__dict__)  # dtype, device, sizes, initialised
        mine.keys, mine.values = whole.keys[start:stop], whole.values[start:stop]
        if hasattr(mine, "batch_size"):
            mine.batch_size = stop - start
        if isinstance(getattr(whole, "cumulative_length", None), torch.Tensor):
            mine.cumulative_length = torch.zeros_like(whole.cumulative_length)
    return view
