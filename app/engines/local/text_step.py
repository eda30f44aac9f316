"""The one-token decode step of a Qwen-VL model's text decoder, written out lean.

At batch 1 a decode step of Qwen2-VL-2B is about 1,000 small kernels: the model's forward
through transformers (masks, rope recomposition, three projections for q, k and v, the cache
update, norms in six kernels) costs 4.3 ms on an H100 where reading the weights once costs
under 1 ms. This step computes the same thing in about 17 kernels a layer:

- q, k and v come from one matrix product, gate and up from another: the model's own
  weights are rebound as views into one fused tensor each, so no memory is added;
- rope is a row of a cos/sin table built once: after the prompt all three of a token's
  multimodal positions are equal, and then multimodal rope is plain rope;
- the new key and value go straight into the static cache's tensors, at the step's column;
- attention is one sdpa call, the query heads of a KV head laid out as a short sequence
  (no repeat of the cache), over the slot's additive mask; or two matmuls; or, on a GPU,
  Atelier's Triton kernels (app/drafting/kernels.py), which also take over rope, the cache
  write, silu and some of the products: 1.94 ms a step at batch 1 on an H100 where the
  torch ops take 3.16;
- each residual add rides in its matrix product (addmm).

`TextStep.many` is the same step for several tokens of one row (jump-forward's forced
runs): rope per position, the keys and values written at consecutive columns, each token
attending over the mask it is given (the cache's, causal among the new ones); the Triton
path runs the tokens as rows of a batch whose cache rows are views of the one row's.

The prefill stays the model's own forward, which fills the same cache. `TextStep.for_model`
returns None for a model it does not know how to step; the decoder then steps through the
model's forward. tests/drafting/test_local_engine.py checks its logits against the model's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("atelier.drafting")

MAX_POSITIONS = 32768  # rows of the rope table; longer prompts step through the model
# The products that may run in Atelier's `kernels.linear` rather than cuBLAS.
PRODUCTS = ("qkv", "o", "gate_up", "down", "lm_head")


class TextStep:
    """Maps (token, position, mask, column, cache) to the next logits, for one batch size."""

    def __init__(self, model: Any) -> None:
        import torch

        self.torch = torch
        text = model.model.language_model
        config = text.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.embed = text.embed_tokens.weight
        self.final_norm = text.norm
        self.lm_head = model.get_output_embeddings().weight
        self.layers = [
            _Layer(layer, self.heads, self.kv_heads, self.head_dim) for layer in text.layers
        ]
        self.scale = self.head_dim**-0.5
        # Batch size -> the products that run in `kernels.linear` (`choose_products`),
        # kept on disk in `cache_dir` for the next start where it is given.
        self.products: dict[int, frozenset[str]] = {}
        self.cache_dir: Path | None = None
        # Atelier's attention reads the cache up to the step's column only (kernels.py);
        # off, every column, for a benchmark's before and after.
        self.read_to_last = True
        rotary = text.rotary_emb
        inv_freq = rotary.inv_freq.float()
        positions = torch.arange(MAX_POSITIONS, device=inv_freq.device, dtype=torch.float32)
        freqs = positions[:, None] * inv_freq[None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        dtype = self.embed.dtype
        scaling = float(getattr(rotary, "attention_scaling", 1.0))
        self.cos = (angles.cos() * scaling).to(dtype)
        self.sin = (angles.sin() * scaling).to(dtype)

    @classmethod
    def for_model(cls, model: Any) -> TextStep | None:
        """The lean step for a Qwen2/2.5/3-VL text decoder; None for anything else."""
        try:
            text = model.model.language_model
            config = text.config
            rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
            rope_type = (rope or {}).get("rope_type", (rope or {}).get("type", "default"))
            layers = list(text.layers)
        except AttributeError:
            return None
        if getattr(config, "use_sliding_window", False) or rope_type not in ("default", "mrope"):
            return None
        if not layers or not all(_Layer.fits(layer) for layer in layers):
            return None
        return cls(model)

    def __call__(
        self,
        token: Any,
        position: Any,
        mask: Any,
        column: Any,
        cache: Any,
        attention: str = "sdpa",
        out: Any = None,
    ) -> Any:
        """Float32 logits (batch, vocab) for `token` (batch, 1) at `position` (batch,), maybe
        written into `out` (then returned);
        writes its key and value at cache `column` (1,), and attends over `mask` with
        `attention`: "sdpa" (torch picks a fused kernel), "matmul", or "triton" (rope, cache
        write, attention and silu in Atelier's kernels, app/drafting/kernels.py)."""
        torch = self.torch
        F = torch.nn.functional
        batch = token.shape[0]
        x = F.embedding(token.view(batch), self.embed)
        if attention == "triton":
            products = self.products.get(batch, frozenset())
            for i, layer in enumerate(self.layers):
                x = layer.with_kernels(
                    x,
                    self.cos,
                    self.sin,
                    position,
                    mask,
                    column,
                    cache.layers[i],
                    self.scale,
                    products,
                    last=column if self.read_to_last else None,
                )
            if "lm_head" in products:
                return self._lm_head(x, kernel=True, out=out)
        else:
            cos = self.cos.index_select(0, position).unsqueeze(1)  # (batch, 1, head_dim)
            sin = self.sin.index_select(0, position).unsqueeze(1)
            for i, layer in enumerate(self.layers):
                x = layer(x, cos, sin, mask, column, cache.layers[i], self.scale, attention)
        return self._lm_head(x, kernel=False)

    def many(
        self,
        tokens: Any,
        positions: Any,
        mask: Any,
        columns: Any,
        cache: Any,
        attention: str = "matmul",
        out: Any = None,
    ) -> Any:
        """Float32 logits (1, vocab) after the last of `tokens` (1, count), one row's, at
        `positions` (count,), maybe written into `out`; writes their keys and values at cache
        `columns` (count,), consecutive, and attends each over its row of `mask` (count, 1, 1,
        capacity). With "triton", Atelier's kernels (the products chosen at batch 1); any
        other attention is two matmuls."""
        torch = self.torch
        F = torch.nn.functional
        count = tokens.shape[1]
        x = F.embedding(tokens.view(count), self.embed)
        if attention == "triton":
            products = self.products.get(1, frozenset())
            for i, layer in enumerate(self.layers):
                writes, reads = _rows_as_columns(cache.layers[i], count)
                x = layer.with_kernels(
                    x,
                    self.cos,
                    self.sin,
                    positions,
                    mask,
                    columns[:1],
                    writes,
                    self.scale,
                    products,
                    attend=reads,
                    last=columns[count - 1 :] if self.read_to_last else None,
                )
            if "lm_head" in products:
                return self._lm_head(x[-1:], kernel=True, out=out)
            return self._lm_head(x[-1:], kernel=False)
        cos = self.cos.index_select(0, positions).unsqueeze(1)  # (count, 1, head_dim)
        sin = self.sin.index_select(0, positions).unsqueeze(1)
        flat = mask.view(count, mask.shape[-1])
        for i, layer in enumerate(self.layers):
            x = layer.many(x, cos, sin, flat, columns, cache.layers[i], self.scale)
        return self._lm_head(x[-1:], kernel=False)

    def _lm_head(self, x: Any, *, kernel: bool, out: Any = None) -> Any:
        """Float32 logits of the final norm of x (written into `out` by the kernel)."""
        norm = self.final_norm
        if kernel:
            from app.engines.local import kernels

            return kernels.linear(
                x,
                self.lm_head,
                norm=norm.weight,
                eps=_eps(norm),
                out_dtype=self.torch.float32,
                out=out,
            )
        F = self.torch.nn.functional
        return F.linear(_norm(x, norm), self.lm_head).float()

    def choose_products(self, batch: int) -> frozenset[str]:
        """Which products run in `kernels.linear` at this batch size, chosen once by timing
        each both ways over every layer's weights (as a CUDA graph: GPU time, as the step
        will spend it). Which is faster depends on the card and the model: on an H100 the
        kernel wins for 2B's gate/up and loses for 7B's. Without a GPU (Triton's CPU
        interpreter, for the tests) all of them."""
        from app.engines.local import kernels

        chosen = self.products.get(batch)
        if chosen is not None:
            return chosen
        if batch > kernels.LINEAR_ROWS:
            chosen = frozenset()
        elif self.embed.device.type != "cuda":
            chosen = frozenset(PRODUCTS)
        else:
            kept = self._kept_choices()
            if str(batch) in kept:
                chosen = frozenset(kept[str(batch)]) & frozenset(PRODUCTS)
            else:
                chosen = frozenset(p for p in PRODUCTS if self._kernel_is_faster(p, batch))
                self._keep_choice(kept | {str(batch): sorted(chosen)})
            log.info("decode step at batch %d: products in Atelier's kernel: %s", batch, chosen)
        self.products[batch] = chosen
        return chosen

    def _choices_path(self) -> Path | None:
        """Where the timing's choices are kept (`cache_dir`), keyed by the GPU, the
        versions of torch and Triton, and every product's shape and dtype."""
        if self.cache_dir is None:
            return None
        import triton

        torch = self.torch
        layer0 = self.layers[0]
        parts = [
            torch.cuda.get_device_name(self.embed.device),
            torch.__version__,
            triton.__version__,
            str(self.embed.dtype),
            str(len(self.layers)),
            *(str(tuple(w.shape)) for w in (layer0.qkv, layer0.o.weight, layer0.gate_up)),
            str(tuple(layer0.down.weight.shape)),
            str(tuple(self.lm_head.shape)),
        ]
        key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
        return self.cache_dir / f"products-{key}.json"

    def _kept_choices(self) -> dict[str, list[str]]:
        path = self._choices_path()
        try:
            return json.loads(path.read_text()) if path is not None and path.is_file() else {}
        except (OSError, ValueError):
            return {}

    def _keep_choice(self, choices: dict[str, list[str]]) -> None:
        path = self._choices_path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_suffix(f".{os.getpid()}.part")
            part.write_text(json.dumps(choices))
            part.replace(path)
        except OSError as e:
            log.warning("the decode step's timing is not kept: %s", e)

    def _kernel_is_faster(self, product: str, batch: int) -> bool:
        torch = self.torch
        F = torch.nn.functional
        dtype, device = self.embed.dtype, self.embed.device
        hidden = self.embed.shape[1]
        layer0 = self.layers[0]
        x = torch.randn(batch, hidden, dtype=dtype, device=device)
        attended = torch.randn(batch, layer0.q_size, dtype=dtype, device=device)
        gate_up = torch.randn(batch, layer0.gate_up.shape[0], dtype=dtype, device=device)
        from app.engines.local import kernels

        def ours() -> None:
            for layer in self.layers:
                if product == "qkv":
                    norm = layer.in_norm
                    kernels.linear(
                        x, layer.qkv, bias=layer.qkv_bias, norm=norm.weight, eps=_eps(norm)
                    )
                elif product == "o":
                    kernels.linear(attended, layer.o.weight, bias=layer.o.bias, residual=x)
                elif product == "gate_up":
                    norm = layer.post_norm
                    kernels.linear(x, layer.gate_up, norm=norm.weight, eps=_eps(norm))
                elif product == "down":
                    kernels.linear(gate_up, layer.down.weight, gated=True, residual=x)
            if product == "lm_head":
                self._lm_head(x, kernel=True)

        def theirs() -> None:
            for layer in self.layers:
                if product == "qkv":
                    F.linear(_norm(x, layer.in_norm), layer.qkv, layer.qkv_bias)
                elif product == "o":
                    _add_linear(x, attended, layer.o)
                elif product == "gate_up":
                    norm = layer.post_norm
                    F.linear(_norm(x, norm), layer.gate_up)
                elif product == "down":
                    _add_linear(x, kernels.silu_mul(gate_up), layer.down)
            if product == "lm_head":
                self._lm_head(x, kernel=False)

        return _graph_ms(torch, ours) < _graph_ms(torch, theirs)


class _Layer:
    """One decoder layer's weights, with q/k/v and gate/up fused in place."""

    def __init__(self, layer: Any, heads: int, kv_heads: int, head_dim: int) -> None:
        import torch

        self.torch = torch
        attn, mlp = layer.self_attn, layer.mlp
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.in_norm, self.post_norm = layer.input_layernorm, layer.post_attention_layernorm
        self.q_norm = getattr(attn, "q_norm", None)  # Qwen3: per-head norms before rope
        self.k_norm = getattr(attn, "k_norm", None)
        self.qkv, self.qkv_bias = _fuse([attn.q_proj, attn.k_proj, attn.v_proj])
        self.gate_up, _ = _fuse([mlp.gate_proj, mlp.up_proj])
        self.o, self.down = attn.o_proj, mlp.down_proj
        self.q_size = heads * head_dim
        self.kv_size = kv_heads * head_dim

    @staticmethod
    def fits(layer: Any) -> bool:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        names = ("q_proj", "k_proj", "v_proj", "o_proj")
        if attn is None or mlp is None or not all(hasattr(attn, n) for n in names):
            return False
        if not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
            return False
        act = getattr(getattr(mlp, "act_fn", None), "__class__", type(None)).__name__
        same_bias = (
            len({attn.q_proj.bias is None, attn.k_proj.bias is None, attn.v_proj.bias is None}) == 1
        )
        return (
            act in ("SiLU", "SiLUActivation")
            and same_bias
            and mlp.gate_proj.bias is None
            and mlp.up_proj.bias is None
            and hasattr(layer, "input_layernorm")
            and hasattr(layer, "post_attention_layernorm")
        )

    def __call__(
        self,
        x: Any,
        cos: Any,
        sin: Any,
        mask: Any,
        column: Any,
        cache: Any,
        scale: float,
        attention: str,
    ) -> Any:
        torch = self.torch
        F = torch.nn.functional
        batch, d = x.shape[0], self.head_dim
        h = F.rms_norm(x, self.in_norm.weight.shape, self.in_norm.weight, _eps(self.in_norm))
        qkv = F.linear(h, self.qkv, self.qkv_bias)
        q = qkv[:, : self.q_size].view(batch, self.heads, d)
        k = qkv[:, self.q_size : self.q_size + self.kv_size].view(batch, self.kv_heads, d)
        v = qkv[:, self.q_size + self.kv_size :].view(batch, self.kv_heads, 1, d)
        if self.q_norm is not None and self.k_norm is not None:
            q = F.rms_norm(q, self.q_norm.weight.shape, self.q_norm.weight, _eps(self.q_norm))
            k = F.rms_norm(k, self.k_norm.weight.shape, self.k_norm.weight, _eps(self.k_norm))
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        cache.keys.index_copy_(2, column, k.view(batch, self.kv_heads, 1, d))
        cache.values.index_copy_(2, column, v)
        group = self.heads // self.kv_heads
        q = q.view(batch, self.kv_heads, group, d)
        if attention == "matmul":
            # Two small products and a softmax in float32, as transformers' eager attention:
            # at batch 1 this is a third of cudnn's sdpa time for one query (bench/decode_step.py).
            scores = torch.add(mask, torch.matmul(q, cache.keys.transpose(-1, -2)), alpha=scale)
            weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            out = torch.matmul(weights, cache.values)
        else:
            out = F.scaled_dot_product_attention(
                q, cache.keys, cache.values, attn_mask=mask, scale=scale
            )
        x = _add_linear(x, out.reshape(batch, self.q_size), self.o)
        h = F.rms_norm(x, self.post_norm.weight.shape, self.post_norm.weight, _eps(self.post_norm))
        gate, up = F.linear(h, self.gate_up).chunk(2, dim=-1)
        return _add_linear(x, F.silu(gate) * up, self.down)

    def many(
        self, x: Any, cos: Any, sin: Any, mask: Any, columns: Any, cache: Any, scale: float
    ) -> Any:
        """The layer for several tokens of one row, x (count, hidden), attending with two
        matmuls over `mask` (count, capacity); their keys and values go to `columns`."""
        torch = self.torch
        F = torch.nn.functional
        count, d = x.shape[0], self.head_dim
        qkv = F.linear(_norm(x, self.in_norm), self.qkv, self.qkv_bias)
        q = qkv[:, : self.q_size].view(count, self.heads, d)
        k = qkv[:, self.q_size : self.q_size + self.kv_size].view(count, self.kv_heads, d)
        v = qkv[:, self.q_size + self.kv_size :].view(count, self.kv_heads, d)
        if self.q_norm is not None and self.k_norm is not None:
            q = F.rms_norm(q, self.q_norm.weight.shape, self.q_norm.weight, _eps(self.q_norm))
            k = F.rms_norm(k, self.k_norm.weight.shape, self.k_norm.weight, _eps(self.k_norm))
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        cache.keys.index_copy_(2, columns, k.transpose(0, 1).unsqueeze(0))
        cache.values.index_copy_(2, columns, v.transpose(0, 1).unsqueeze(0))
        group = self.heads // self.kv_heads
        # (1, kv heads, group, count, d) over the cache's (1, kv heads, 1, capacity, d).
        q = q.view(count, self.kv_heads, group, d).permute(1, 2, 0, 3).unsqueeze(0)
        keys, values = cache.keys.unsqueeze(2), cache.values.unsqueeze(2)
        scores = torch.add(mask, torch.matmul(q, keys.transpose(-1, -2)), alpha=scale)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(weights, values)[0].permute(2, 0, 1, 3).reshape(count, self.q_size)
        x = _add_linear(x, out, self.o)
        gate, up = F.linear(_norm(x, self.post_norm), self.gate_up).chunk(2, dim=-1)
        return _add_linear(x, F.silu(gate) * up, self.down)

    def with_kernels(
        self,
        x: Any,
        cos: Any,
        sin: Any,
        position: Any,
        mask: Any,
        column: Any,
        cache: Any,
        scale: float,
        products: frozenset[str] = frozenset(),
        attend: Any = None,
        last: Any = None,
    ) -> Any:
        """The same layer with its small ops in Triton kernels; `cos` and `sin` are the
        whole rope tables, indexed by `position` inside the kernel; the `products` named
        run in `kernels.linear`, the others in cuBLAS. `attend`: the cache attention reads,
        where it is not the one written (`TextStep.many`); `last`: (1,) the last column
        it reads (the columns after it are empty), None: all of them."""
        from app.engines.local import kernels

        F = self.torch.nn.functional
        batch, d = x.shape[0], self.head_dim
        norm = self.in_norm
        if "qkv" in products:
            qkv = kernels.linear(x, self.qkv, bias=self.qkv_bias, norm=norm.weight, eps=_eps(norm))
        else:
            qkv = F.linear(_norm(x, norm), self.qkv, self.qkv_bias)
        q = qkv[:, : self.q_size].view(batch, self.heads, d)
        k = qkv[:, self.q_size : self.q_size + self.kv_size].view(batch, self.kv_heads, d)
        v = qkv[:, self.q_size + self.kv_size :].view(batch, self.kv_heads, d)
        if self.q_norm is not None and self.k_norm is not None:
            q = F.rms_norm(q, self.q_norm.weight.shape, self.q_norm.weight, _eps(self.q_norm))
            k = F.rms_norm(k, self.k_norm.weight.shape, self.k_norm.weight, _eps(self.k_norm))
        q = kernels.rope_into_cache(q, k, v, cos, sin, position, column, cache)
        attend = attend if attend is not None else cache
        out = kernels.decode_attention(q, attend.keys, attend.values, mask, scale, last)
        if "o" in products:
            x = kernels.linear(out, self.o.weight, bias=self.o.bias, residual=x)
        else:
            x = _add_linear(x, out, self.o)
        norm = self.post_norm
        if "gate_up" in products:
            gate_up = kernels.linear(x, self.gate_up, norm=norm.weight, eps=_eps(norm))
        else:
            gate_up = F.linear(_norm(x, norm), self.gate_up)
        if "down" in products:
            return kernels.linear(gate_up, self.down.weight, gated=True, residual=x)
        return _add_linear(x, kernels.silu_mul(gate_up), self.down)


class _Views:
    def __init__(self, keys: Any, values: Any) -> None:
        self.keys, self.values = keys, values


def _rows_as_columns(layer: Any, count: int) -> tuple[_Views, _Views]:
    """A layer cache (1, kv heads, capacity, d) seen as `count` rows for the decode kernels:
    for writing, row r's column c is the cache's column c + r (one kernel writes a run of
    columns); for reading, every row is the one row."""
    keys, values = layer.keys, layer.values

    def shifted(t: Any) -> Any:
        size, stride = (count, t.shape[1], 1, t.shape[3]), list(t.stride())
        return t.as_strided(size, (stride[2], stride[1], stride[2], stride[3]))

    def shared(t: Any) -> Any:
        return t.expand(count, -1, -1, -1)

    return _Views(shifted(keys), shifted(values)), _Views(shared(keys), shared(values))


def _graph_ms(torch: Any, fn: Any) -> float:
    """GPU milliseconds of `fn`, captured as a CUDA graph and replayed."""
    fn()  # compiles what it needs, outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        graph.replay()
    end.record()
    end.synchronize()
    del graph
    return float(start.elapsed_time(end))


def _rope(x: Any, cos: Any, sin: Any) -> Any:
    import torch

    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _add_linear(x: Any, a: Any, linear: Any) -> Any:
    """x + linear(a), the add done in the product's epilogue when there is no bias."""
    import torch

    if linear.bias is not None:
        return x + linear(a)
    return torch.addmm(x, a, linear.weight.t())


def _fuse(linears: list[Any]) -> tuple[Any, Any]:
    """One weight (and bias) for several linears over the same input; each linear's own
    parameters become views into it, so the model keeps working and no memory is added."""
    import torch

    with torch.no_grad():
        weight = torch.cat([lin.weight for lin in linears])
        has_bias = linears[0].bias is not None
        bias = torch.cat([lin.bias for lin in linears]) if has_bias else None
        start = 0
        for lin in linears:
            rows = lin.weight.shape[0]
            lin.weight = torch.nn.Parameter(weight[start : start + rows], requires_grad=False)
            if bias is not None:
                lin.bias = torch.nn.Parameter(bias[start : start + rows], requires_grad=False)
            start += rows
    return weight, bias


def _norm(x: Any, norm: Any) -> Any:
    """The RMS norm module `norm` applied to x, in one kernel."""
    import torch

    return torch.nn.functional.rms_norm(x, norm.weight.shape, norm.weight, _eps(norm))


def _eps(norm: Any) -> float:
    return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))
