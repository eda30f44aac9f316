"""Checks of the decode step's Triton kernels (app/drafting/kernels.py) against torch.

Run by tests/drafting/test_kernels.py: in Triton's CPU interpreter, in a process of its own
(`python tests/drafting/kernel_checks.py` with TRITON_INTERPRET=1, which Triton reads when
the kernels are defined), and on a GPU in the test process. In the interpreter only float32:
its bfloat16 matrix products are wrong (Triton 3.8), so bfloat16 is checked on the GPU.
"""

from __future__ import annotations

import copy
import inspect
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.engines.local import kernels  # noqa: E402
from app.engines.local.text_step import PRODUCTS, _rope  # noqa: E402


def close(got: Any, want: Any, dtype: Any) -> None:
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol)


def check_rope_into_cache(device: str, dtype: Any) -> None:
    torch.manual_seed(0)
    batch, heads, kv_heads, d, capacity = 3, 6, 2, 16, 512
    # q, k and v as views into one fused projection, as the step has them.
    qkv = torch.randn(batch, (heads + 2 * kv_heads) * d, dtype=dtype, device=device)
    q = qkv[:, : heads * d].view(batch, heads, d)
    k = qkv[:, heads * d : (heads + kv_heads) * d].view(batch, kv_heads, d)
    v = qkv[:, (heads + kv_heads) * d :].view(batch, kv_heads, d)
    cos = torch.randn(1000, d, dtype=dtype, device=device)
    sin = torch.randn(1000, d, dtype=dtype, device=device)
    position = torch.tensor([7, 400, 999], device=device)
    column = torch.tensor([300], device=device)
    keys = torch.zeros(batch, kv_heads, capacity, d, dtype=dtype, device=device)
    cache = SimpleNamespace(keys=keys, values=torch.zeros_like(keys))
    got = kernels.rope_into_cache(q, k, v, cos, sin, position, column, cache)
    c = cos[position].unsqueeze(1).float()
    s = sin[position].unsqueeze(1).float()
    close(got, _rope(q.float(), c, s), dtype)
    close(cache.keys[:, :, 300], _rope(k.float(), c, s), dtype)
    assert torch.equal(cache.values[:, :, 300], v)
    # Nothing written anywhere else.
    cache.keys[:, :, 300] = 0
    cache.values[:, :, 300] = 0
    assert not cache.keys.any() and not cache.values.any()


def check_decode_attention(device: str, dtype: Any) -> None:
    torch.manual_seed(1)
    batch, heads, kv_heads, d, capacity = 3, 6, 2, 16, 768  # 3 stretches of the cache
    keys = torch.randn(batch, kv_heads, capacity, d, dtype=dtype, device=device)
    values = torch.randn_like(keys)
    q = torch.randn(batch, heads, d, dtype=dtype, device=device) * 3  # sharp: masks matter
    mask = torch.full((batch, 1, 1, capacity), torch.finfo(dtype).min, dtype=dtype, device=device)
    mask[0, ..., :301] = 0  # filled up to 300
    mask[1, ..., 5:301] = 0  # left padding of 5
    mask[2, ..., 520:530] = 0  # whole stretches with nothing to attend
    got = kernels.decode_attention(q, keys, values, mask, d**-0.5)
    group = heads // kv_heads

    def attended(keys: Any, values: Any, mask: Any) -> Any:
        k = keys.float().repeat_interleave(group, 1)
        v = values.float().repeat_interleave(group, 1)
        scores = (q.float().unsqueeze(2) @ k.transpose(-1, -2)) * d**-0.5 + mask.float()
        return (scores.softmax(-1) @ v).reshape(batch, heads * d)

    close(got, attended(keys, values, mask), dtype)
    assert got.isfinite().all()
    # Up to the step's column only: what lies after it (NaN here, as no cache holds) is
    # never read, the mask's zeros there included, at a column inside a stretch and at one
    # that ends it.
    for last in (300, 319):
        unread = keys.clone(), values.clone(), mask.clone()
        for t in unread[:2]:
            t[:, :, last + 1 :] = float("nan")
        unread[2][..., last + 1 :] = 0
        column = torch.tensor([last], device=device)
        got = kernels.decode_attention(q, *unread[:2], unread[2], d**-0.5, column)
        cut = mask.clone()
        cut[..., last + 1 :] = torch.finfo(dtype).min
        close(got[:2], attended(keys, values, cut)[:2], dtype)  # the rows with keys up to it
        assert got.isfinite().all()


def check_silu_mul(device: str, dtype: Any) -> None:
    torch.manual_seed(2)
    gate_up = torch.randn(3, 2 * 1500, dtype=dtype, device=device) * 4
    want = torch.nn.functional.silu(gate_up[:, :1500].float()) * gate_up[:, 1500:].float()
    close(kernels.silu_mul(gate_up), want, dtype)


def check_linear(device: str, dtype: Any) -> None:
    """The small-batch product with each of its fused parts, on shapes that fill no block."""
    torch.manual_seed(3)
    # K in whole blocks or not, N too.
    for n, k, rows in ((100, 200, 1), (100, 200, 3), (100, 200, 17), (64, 256, 2)):
        _linear_rows(n, k, rows, device, dtype)


def _linear_rows(n: int, k: int, rows: int, device: str, dtype: Any) -> None:
    F = torch.nn.functional
    weight = torch.randn(n, k, dtype=dtype, device=device) / k**0.5
    bias = torch.randn(n, dtype=dtype, device=device)
    norm = torch.rand(k, dtype=dtype, device=device) + 0.5
    x = torch.randn(rows, k, dtype=dtype, device=device) * 3
    residual = torch.randn(rows, n, dtype=dtype, device=device)
    close(kernels.linear(x, weight), F.linear(x, weight), dtype)
    close(kernels.linear(x, weight, bias=bias), F.linear(x, weight, bias), dtype)
    close(kernels.linear(x, weight, residual=residual), residual + F.linear(x, weight), dtype)
    normed = F.rms_norm(x, (k,), norm, 1e-6)
    close(kernels.linear(x, weight, norm=norm, eps=1e-6), F.linear(normed, weight), dtype)
    logits = kernels.linear(x, weight, norm=norm, out_dtype=torch.float32)
    assert logits.dtype == torch.float32
    close(logits, F.linear(normed, weight), dtype)
    gate_up = torch.randn(rows, 2 * k, dtype=dtype, device=device) * 2
    gated = F.silu(gate_up[:, :k]) * gate_up[:, k:]
    for split in (1, 3):  # K in three chunks (the last one short), added up after
        config = (16, 32, 4, 3, split)
        close(
            kernels.linear(gate_up, weight, gated=True, residual=residual, config=config),
            residual + F.linear(gated, weight),
            dtype,
        )
        close(
            kernels.linear(x, weight, bias=bias, norm=norm, config=config),
            F.linear(normed, weight, bias),
            dtype,
        )


def image_prompts(processor: Any, device: str, copies: int = 1) -> Any:
    """Two requests with an image each (`copies` times), the shorter padded on the left."""
    from PIL import Image

    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for t in ("short", "a longer prompt, padded on the left of the other")
    ] * copies
    return processor(
        text=texts,
        images=[Image.new("RGB", (200, 150), (200, 10, 10)), Image.new("RGB", (120, 220), 90)]
        * copies,
        padding=True,
        padding_side="left",
        return_tensors="pt",
    ).to(device)


def check_lean_step(device: str, dtype: Any) -> None:
    """Ten steps of a random Qwen2-VL's lean step from a prefilled cache, a left-padded batch
    of image prompts: the kernels' logits and cache writes are the torch ops'."""
    from tests.support.random_model import build

    model, processor = build("tiny16", device=device, dtype=dtype)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(30)
    for copies in (1, 9):  # 2 rows, and 18: past kernels.LINEAR_ROWS, cuBLAS's products
        _lean_step_steps(model, processor, copies, device, dtype)


def _lean_step_steps(model: Any, processor: Any, copies: int, device: str, dtype: Any) -> None:
    from transformers import StaticCache

    from app.engines.local.text_step import TextStep

    batch = image_prompts(processor, device, copies)
    step = TextStep.for_model(model)
    assert step is not None
    rows, length = batch["input_ids"].shape
    capacity = 256
    cache = StaticCache(config=model.config, max_cache_len=capacity)
    arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        first = model(**batch, use_cache=True, **{arg: cache}).logits[:, -1]
        ours, theirs = cache, copy.deepcopy(cache)
        position = model.model.rope_deltas.view(rows) + batch["attention_mask"].sum(-1)
        add = torch.full((rows, 1, 1, capacity), torch.finfo(dtype).min, dtype=dtype, device=device)
        add[:, 0, 0, :length].masked_fill_(batch["attention_mask"].bool(), 0.0)
        token = first.argmax(-1).view(rows, 1)
        for t in range(10):
            column = torch.tensor([length + t], device=device)
            add.index_fill_(3, column, 0.0)
            want = step(token, position + t, add, column, theirs, attention="matmul")
            got = step(token, position + t, add, column, ours, attention="triton")
            if t == 0:
                assert not step.products  # none chosen yet: torch's products
                step.choose_products(rows)
                # On a GPU the faster of each pair, timed; in the interpreter all of them.
                every = frozenset(PRODUCTS) if device == "cpu" else step.products[rows]
                assert step.products == {rows: frozenset() if rows > 16 else every}
                assert every <= frozenset(PRODUCTS)
            close(got, want, dtype)
            for a, b in zip(ours.layers, theirs.layers, strict=True):
                close(a.keys, b.keys, dtype)
                close(a.values, b.values, dtype)
            token = want.argmax(-1).view(rows, 1)


def check_decoder_uses_them(device: str, dtype: Any) -> None:
    """The decoder picks the kernels below batch 32 where they run, and decodes the same
    tokens with them as with its torch ops."""
    from app.engines.local.decoder import Decoder
    from tests.support.random_model import build

    model, processor = build("tiny16", device=device, dtype=dtype)
    batch = image_prompts(processor, device)
    stops = {model.generation_config.eos_token_id}
    runs = []
    for use in (True, False):
        decoder = Decoder(model, stop_ids=stops, graphs=device == "cuda", use_kernels=use)
        assert decoder.attention_for(2) == ("triton" if use else "matmul")
        runs.append(decoder.run(batch, max_new_tokens=24, min_steps=24).tokens)
    assert runs[0] == runs[1]


CHECKS = [
    check_rope_into_cache,
    check_decode_attention,
    check_silu_mul,
    check_linear,
    check_lean_step,
    check_decoder_uses_them,
]

if __name__ == "__main__":
    assert kernels.available("cpu"), "run with TRITON_INTERPRET=1"
    for check in CHECKS:
        check("cpu", torch.float32)
        print(check.__name__, "ok", flush=True)
    print("all kernel checks passed")
