"""The local engine: a Qwen-VL model through transformers, on this machine's GPU (or CPU).

Output is constrained by xgrammar to the draft JSON schema, so it is always valid JSON of
the right shape when it ends within the token budget. torch, transformers and xgrammar are
imported here only, when a draft runs, so the app and the CLI start fast without them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from app.drafting.attention import use_grouped_attention
from app.drafting.engines import DraftError, DraftInput, DraftOutput, parse_output
from app.drafting.grammar import GrammarLogitsProcessor
from app.drafting.schema import (
    DEFAULT_LIMITS,
    BoxConvention,
    Limits,
    json_schema,
)

log = logging.getLogger("atelier.drafting")

LENGTH_BUCKET = 128  # prompt lengths are padded to a multiple of this with a static cache

CONVENTIONS: dict[str, BoxConvention] = {
    "qwen2_vl": "qwen2vl",
    "qwen2_5_vl": "qwen25vl",
    "qwen3_vl": "qwen3vl",
}


class LocalEngine:
    name = "local"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 8,
        max_new_tokens: int = 1024,
        limits: Limits = DEFAULT_LIMITS,
        grammar: bool = True,
        static_cache: bool | None = None,
        grouped_attention: bool | None = None,
    ) -> None:
        import torch

        self.model = model
        self.processor = processor
        self.device = next(model.parameters()).device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        model_type = model.config.model_type
        if model_type not in CONVENTIONS:
            raise DraftError(
                f"Atelier drafts with Qwen2-VL, Qwen2.5-VL or Qwen3-VL; this model is {model_type}."
            )
        self.convention = CONVENTIONS[model_type]
        self.limits = limits.for_convention(self.convention, max_side=8192)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.compiled = self._compile_grammar() if grammar else None
        # A static KV cache lets transformers compile the decode step once per shape; worth
        # it on a GPU, only overhead on the CPU.
        self.static_cache = self.device.type == "cuda" if static_cache is None else static_cache
        if self.device.type == "cuda" if grouped_attention is None else grouped_attention:
            use_grouped_attention(model)
        self.torch = torch

    @classmethod
    def load(
        cls,
        model_id: str,
        *,
        device: str | None = None,
        batch_size: int = 8,
        max_pixels: int = 1024 * 1024,
        max_new_tokens: int = 1024,
        allow_download: bool = False,
        **kw: Any,
    ) -> LocalEngine:
        """Loads from a local folder or the Hugging Face cache; downloads only if allowed."""
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as e:
            raise DraftError(
                f"The local drafting engine needs torch, transformers and xgrammar ({e.name} is "
                "missing): pip install 'atelier[draft]', or use the openai engine."
            ) from None
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            log.warning(
                "No CUDA GPU: drafting runs on the CPU, which takes minutes an image. A GPU, "
                "or a remote server with --engine openai, is much faster."
            )
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        started = time.perf_counter()
        try:
            # The Qwen-VL processors count pixels: shortest_edge and longest_edge are the
            # smallest and largest image area the model is given.
            processor = AutoProcessor.from_pretrained(
                model_id,
                size={"shortest_edge": 4 * 28 * 28, "longest_edge": max_pixels},
                local_files_only=not allow_download,
            )
            model: Any = AutoModelForImageTextToText.from_pretrained(
                model_id, dtype=dtype, local_files_only=not allow_download
            )
        except OSError as e:
            raise DraftError(
                f"Atelier cannot find the model {model_id!r}: it is not a local folder and not "
                "in the Hugging Face cache. On a machine with internet, run "
                f"`hf download {model_id}` (the cache is shared), set ATELIER_DRAFT_MODEL "
                "(or --model) to a folder holding it, or let Atelier download it with "
                f"ATELIER_DRAFT_ALLOW_DOWNLOAD=1. ({str(e).splitlines()[0][:200]})"
            ) from None
        try:
            model = model.to(device).eval()
        except torch.cuda.OutOfMemoryError:
            raise DraftError(
                f"{model_id} does not fit in the GPU's memory. Use a smaller model (for "
                "example Qwen/Qwen2-VL-2B-Instruct), or close what else uses the GPU."
            ) from None
        log.info("loaded %s on %s in %.1f s", model_id, device, time.perf_counter() - started)
        return cls(model, processor, batch_size=batch_size, max_new_tokens=max_new_tokens, **kw)

    def _compile_grammar(self) -> Any:
        try:
            import xgrammar as xgr
        except ImportError:
            raise DraftError(
                "Constrained decoding needs xgrammar: pip install 'atelier[draft]'."
            ) from None
        info = xgr.TokenizerInfo.from_huggingface(
            self.processor.tokenizer, vocab_size=self.vocab_size
        )
        compiler = xgr.GrammarCompiler(info)
        return compiler.compile_json_schema(
            json.dumps(json_schema(self.limits)), any_whitespace=False
        )

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        """Drafts in batches of `batch_size`; a batch that runs out of memory is split."""
        out: list[DraftOutput] = []
        for i in range(0, len(inputs), self.batch_size):
            out.extend(self._batch(inputs[i : i + self.batch_size]))
        return out

    def _batch(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        torch = self.torch
        try:
            return self._generate(inputs)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(inputs) == 1:
                raise DraftError(
                    "The GPU ran out of memory drafting one image. Lower ATELIER_DRAFT_MAX_PIXELS "
                    "(the image size the model sees), use a smaller model, or close what else "
                    "uses the GPU."
                ) from None
            half = len(inputs) // 2
            log.warning("out of GPU memory at batch %d: splitting", len(inputs))
            return self._batch(inputs[:half]) + self._batch(inputs[half:])

    def _generate(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        torch = self.torch
        messages = [
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": i.prompt}]}]
            for i in inputs
        ]
        texts = [
            self.processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
            for m in messages
        ]
        images = [i.image for i in inputs]
        real = len(texts)
        shaped: dict[str, Any] = {}
        if self.static_cache:
            # Compiled decode steps are kept per (batch, cache length): round both up to a
            # few buckets so a new batch rarely compiles again. Padding rows repeat the last.
            bucket = min(self.batch_size, 1 << (real - 1).bit_length())
            texts += [texts[-1]] * (bucket - real)
            images += [images[-1]] * (bucket - real)
            shaped["pad_to_multiple_of"] = LENGTH_BUCKET
        batch = self.processor(
            text=texts,
            images=images,
            padding=True,
            padding_side="left",
            return_tensors="pt",
            **shaped,
        ).to(self.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
        }
        if self.compiled is not None:
            kwargs["logits_processor"] = [
                GrammarLogitsProcessor(self.compiled, vocab_size=self.vocab_size)
            ]
        if self.static_cache:
            kwargs["cache_implementation"] = "static"
        with torch.inference_mode():
            generated = self.model.generate(**batch, **kwargs)
        new = generated[:, batch["input_ids"].shape[1] :]
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        texts_out = self.processor.batch_decode(new, skip_special_tokens=True)
        grid = batch.get("image_grid_thw")
        outputs = []
        for n, raw in enumerate(texts_out[:real]):
            finished = any(int(t) in eos_ids for t in new[n])
            resized = None
            if grid is not None:
                _, gh, gw = (int(v) for v in grid[n])
                resized = (gw * 14, gh * 14)
            if not finished:
                outputs.append(DraftOutput(raw, error="the answer was cut at the token limit"))
            else:
                outputs.append(parse_output(raw, convention=self.convention, resized=resized))
        return outputs

    def close(self) -> None:
        del self.model
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()
