"""Grouped-query attention for decoding without copying the KV cache, and the prompt's.

transformers' sdpa path expands every KV head to all its query heads (repeat_kv) whenever a
mask is given, which a static cache always needs: on an H200 at batch 32 those two copies
per layer were 63% of each decode step's GPU time (bench/decode_probe.py --kernels). For
one new token, the query heads that share a KV head can be laid out as a short sequence
instead, and plain sdpa then attends them to the shared keys without any copy.

Prefill (more than one token) keeps transformers' own path, except while the decoder
writes prompts padded on the right into an empty cache (`prompt_prefill`, decoder.py): then
a text layer's attention reads the prompt's own columns only (the cache's later ones are
empty: a third of the work at 450 new tokens) and needs no mask at all, since causal
attention over a row whose padding comes last never reaches the padding from a real token.
Without a mask PyTorch can run flash attention. With transformers' padding mask it picks its
memory-efficient kernel (flash takes no mask, cuDNN comes last): at Qwen3-VL-8B's prefill
shapes on an H100 that took 9.3 ms a layer for eight rows, against 1.3 ms for cuDNN's, one
cold call each (bench/memory_peak.py, 2026-12-07). A row of nothing but masked keys, which
a padding mask makes and which some kernels turn to NaN, cannot occur. The vision tower's
attention (not causal) is left as it is. Off by default (LocalOptions.prompt_attention)
until its GPU test and a whole batch's time have run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

NAME = "atelier_grouped_sdpa"
# Tried in this order for a prompt's attention; the first that takes the inputs runs.
PROMPT_KERNELS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
_prompt: ContextVar[bool] = ContextVar("atelier_prompt_prefill", default=False)


@contextmanager
def prompt_prefill() -> Iterator[None]:
    """While the decoder writes prompts, padded on the right, from the first column of an
    empty static cache."""
    token = _prompt.set(True)
    try:
        yield
    finally:
        _prompt.reset(token)


def grouped_sdpa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Attention output shaped (batch, tokens, heads, head_dim), as transformers expects."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, tokens, dim = query.shape
    kv_heads = key.shape[1]
    if tokens != 1 or heads == kv_heads or key.shape[-1] != value.shape[-1]:
        if tokens > 1 and _prompt.get() and getattr(module, "is_causal", False):
            return _prompt_attention(module, query, key, value, attention_mask, scaling, **kwargs)
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    # repeat_kv orders heads KV-head-major: query head h uses KV head h // group.
    group = heads // kv_heads
    q = query.reshape(batch, kv_heads, group, dim)
    mask = attention_mask
    if mask is not None and mask.dim() == 4:
        mask = mask[:, :, -1:, : key.shape[-2]]  # (batch, 1, 1, keys) broadcasts over the group
    out = torch.nn.functional.scaled_dot_product_attention(
        q, key, value, attn_mask=mask, dropout_p=0.0, scale=scaling
    )
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _prompt_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    scaling: float | None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """Prompts written from column 0, padded on the right: causal attention over their own
    columns, no mask, flash first. Where no fused kernel takes the inputs on a GPU, the same
    columns go through transformers' path with its mask (PyTorch's math kernel would hold
    every row's whole score matrix at once)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    tokens = query.shape[2]
    key, value = key[:, :, :tokens], value[:, :, :tokens]
    names = PROMPT_KERNELS if query.device.type == "cpu" else PROMPT_KERNELS[:-1]
    kernels = [getattr(SDPBackend, k) for k in names if hasattr(SDPBackend, k)]
    try:
        with sdpa_kernel(kernels, set_priority=True):
            out = torch.nn.functional.scaled_dot_product_attention(
                query,
                key,
                value,
                is_causal=True,
                scale=scaling,
                enable_gqa=query.shape[1] != key.shape[1],
            )
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError:  # "No available kernel"
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[..., :tokens]
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, **kwargs
        )
    return out.transpose(1, 2).contiguous(), None


def use_grouped_attention(model: Any) -> None:
    """Registers the grouped attention and switches the model's text decoder to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, grouped_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
