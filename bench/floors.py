"""What the GPU could do at best: ceilings measured in the call, floors counted from the model.

Ceilings: a large bf16 matrix product (FLOP/s) and a device-to-device copy (bytes read plus
written a second). Floors: the prefill's arithmetic an image (every linear layer's product
over its tokens, and attention's two products over what each token attends to) over the
matrix rate, and a decode step's bytes (every weight the step reads once, and each row's
KV cache) over the copy rate. A measured time over its floor says how near the limit it is.
"""

from __future__ import annotations

from typing import Any


def ceilings() -> dict[str, float]:
    """The matrix rate and copy bandwidth of this GPU, as found now (median of ten); on a
    machine without one, the CPU's, roughly (bench/draft.py's smoke run)."""
    import torch

    if not torch.cuda.is_available():
        return _cpu_ceilings()
    from triton.testing import do_bench

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = do_bench(lambda: a @ b, warmup=50, rep=200, return_mode="median")
    src = torch.randn(1 << 30, device="cuda", dtype=torch.bfloat16)  # 2 GiB, far past the L2
    dst = torch.empty_like(src)
    copy_ms = do_bench(lambda: dst.copy_(src), warmup=50, rep=200, return_mode="median")
    moved = 2 * src.numel() * src.element_size()
    return {
        "matmul_tflops": round(2 * n**3 / ms / 1e9, 1),
        "copy_TBps": round(moved / copy_ms / 1e9, 2),
    }


def _cpu_ceilings() -> dict[str, float]:
    import time

    import torch

    a = torch.randn(512, 512)
    src = torch.randn(1 << 23)
    dst = torch.empty_like(src)
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    mm = (time.perf_counter() - t) / 10
    t = time.perf_counter()
    for _ in range(10):
        dst.copy_(src)
    cp = (time.perf_counter() - t) / 10
    return {
        "matmul_tflops": round(2 * 512**3 / mm / 1e12, 4),
        "copy_TBps": round(2 * src.numel() * 4 / cp / 1e12, 4),
    }


def _linear_params(module: Any) -> int:
    import torch

    return sum(
        m.weight.numel()
        for m in module.modules()
        if isinstance(m, torch.nn.Linear | torch.nn.Conv3d)
    )


def _vision_attention_span(vision: Any, patches: int) -> list[int]:
    """How many patches each vision block's queries attend to (all, or a window's worth)."""
    config = vision.config
    depth = len(vision.blocks)
    full = getattr(config, "fullatt_block_indexes", None)
    if full is None:
        return [patches] * depth
    window = (config.window_size // config.patch_size) ** 2  # patches in one window
    return [patches if i in full else min(window, patches) for i in range(depth)]


def prefill_flops(model: Any, *, prompt_tokens: int, patches: int) -> dict[str, float]:
    """FLOPs to prefill one image's prompt: the vision tower over its patches, the text
    decoder over the prompt (the output layer at the last token only)."""
    inner = model.model
    vision, text = inner.visual, inner.language_model
    v_width = vision.config.hidden_size
    v_flops = 2 * _linear_params(vision) * patches
    v_flops += sum(4 * patches * span * v_width for span in _vision_attention_span(vision, patches))
    config = text.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    t_flops = 2 * _linear_params(text) * prompt_tokens
    # Causal attention: each token attends to those before it, on average half the prompt.
    t_flops += 4 * len(text.layers) * prompt_tokens * prompt_tokens / 2 * heads * head_dim
    t_flops += 2 * model.get_output_embeddings().weight.numel()
    return {"vision": v_flops, "text": t_flops}


def step_bytes(model: Any, *, batch: int, context: int) -> float:
    """Bytes a decode step must read at least: the text decoder's and the output layer's
    weights once, and each row's keys and values over `context` tokens."""
    text = model.model.language_model
    config = text.config
    size = next(model.parameters()).element_size()
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    weights = (_linear_params(text) + model.get_output_embeddings().weight.numel()) * size
    kv = 2 * len(text.layers) * config.num_key_value_heads * head_dim * size * context
    return weights + batch * kv


def floors(
    model: Any,
    limits: dict[str, float],
    *,
    batch: int,
    prompt_tokens: int,
    patches: int,
    new_tokens: int,
) -> dict[str, float]:
    """The prefill's floor an image and a decode step's, in seconds and milliseconds."""
    flops = prefill_flops(model, prompt_tokens=prompt_tokens, patches=patches)
    rate = limits["matmul_tflops"] * 1e12
    context = prompt_tokens + new_tokens / 2  # the average step's cache
    read = step_bytes(model, batch=batch, context=int(context))
    step_compute = 2 * (_linear_params(model.model.language_model)) * batch / rate
    return {
        "prefill_TFLOP_per_image": round((flops["vision"] + flops["text"]) / 1e12, 2),
        "prefill_floor_s_per_image": round((flops["vision"] + flops["text"]) / rate, 4),
        "step_GB": round(read / 1e9, 2),
        "step_floor_ms": round(max(read / (limits["copy_TBps"] * 1e12), step_compute) * 1e3, 3),
    }
