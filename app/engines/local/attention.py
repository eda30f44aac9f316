"""Grouped-query attention for decoding without copying the KV cache.

transformers' sdpa path expands every KV head to all its query heads (repeat_kv) whenever a
mask is given, which a static cache always needs: on an H200 at batch 32 those two copies
per layer were 63% of each decode step's GPU time (bench/decode_probe.py --kernels). For
one new token, the query heads that share a KV head can be laid out as a short sequence
instead, and plain sdpa then attends them to the shared keys without any copy. Prefill
(more than one token) keeps transformers' own path.
"""

from __future__ import annotations

from typing import Any

NAME = "atelier_grouped_sdpa"


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


def use_grouped_attention(model: Any) -> None:
    """Registers the grouped attention and switches the model's text decoder to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, grouped_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)
