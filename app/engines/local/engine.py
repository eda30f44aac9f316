"""The local engine: a Qwen-VL model through transformers, on this machine's GPU (or CPU).

Output is constrained by xgrammar to the draft JSON schema (grammar.py; its strings' bounds
are kept token by token, lengths.py), and a row whose token budget runs short gets the
shortest valid end of its JSON written for it (closing.py), so every answer is valid JSON of
the right shape. torch, transformers and xgrammar are
imported here only, when a draft runs, so the app and the CLI start fast without them.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from app.engines.interface import (
    READ_PROMPT,
    DraftError,
    DraftInput,
    DraftOutput,
    Engine,
    parse_output,
)
from app.engines.local.attention import use_grouped_attention
from app.engines.local.closing import Closer
from app.engines.local.decoder import Decoder, Result
from app.engines.local.fused import use_fused_rms_norm, use_fused_vision_rotary
from app.engines.local.grammar import Grammar, compile_grammar
from app.engines.local.model_inputs import ModelInputs
from app.engines.local.options import LocalOptions
from app.engines.local.vision import use_packed_vision
from app.engines.schema import (
    DEFAULT_LIMITS,
    BoxConvention,
    DraftLimits,
    json_schema,
)

READ_TOKENS = 128  # a second reading: the text of one box
log = logging.getLogger("atelier.drafting")

# Batch size 0 (the default): the first batch is short, its GPU memory per image measured,
# and later batches are the largest power of two up to AUTO_MAX_BATCH that fits in
# AUTO_MEMORY_SHARE of the memory the GPU has for this process. A short first batch also
# starts the GPU sooner. On an H200, 2B at 1 MP: 15.3 images/s at batch 128, 16.0 at 256
# (78 GB at its peak; bench/results/2026-12-01-h200-draft-2b-qwen-b256.json), 16.8 at 256
# with the packed vision tower (58 GB; ...-2b-qwen-packed.json). On an H100
# batch 64 drafted 2B a third faster than batch 32.
AUTO_FIRST_BATCH = 8
AUTO_MAX_BATCH = 256
AUTO_MEMORY_SHARE = 0.85
AUTO_CPU_BATCH = 4
# Rows a forward the prompts may be written in where that lets the automatic batch grow
# (`LocalOptions.prefill_rows` -1, `batch_and_pieces`).
AUTO_PREFILL_ROWS = (64, 32, 16, 8)
# A job's first batch is prepared this many images at a time while the rest still decode
# (`prefetch_decoded`).
PREPARE_PART = 32

# Qwen-VL processors count pixels in units of one merged patch: 2x2 patches of 14 px, 28 x 28.
QWEN_PIXEL_UNIT = 28 * 28
MIN_IMAGE_PIXELS = 4 * QWEN_PIXEL_UNIT  # the processors' own floor: 4 merged patches
QWEN_PATCH = 14  # Qwen2-VL and Qwen2.5-VL; Qwen3-VL's processor says 16 itself

CONVENTIONS: dict[str, BoxConvention] = {
    "qwen2_vl": "qwen2vl",
    "qwen2_5_vl": "qwen25vl",
    "qwen3_vl": "qwen3vl",
}


# What `LocalEngine.prepare` started, by the arguments it depends on: a processor, a config
# and the grammar's future, which `load` takes up.
_PREPARED: dict[tuple[Any, ...], Future[tuple[Any, Any, Future[Grammar] | None]]] = {}
_PREPARED_LOCK = threading.Lock()


def _front_key(model_id: str, max_pixels: int, local_only: bool, kw: dict[str, Any]) -> tuple:
    options = kw.get("options") or LocalOptions()
    limits = kw.get("limits", DEFAULT_LIMITS)
    return (model_id, max_pixels, local_only, repr(limits), str(kw.get("cache_dir")), options)


def by_size(inputs: list[DraftInput]) -> list[int]:
    """The order that puts images of one size side by side, largest first (stable): the
    vision tower attends over each run of one size in one call (vision.py), and prompts of
    one length need no padding."""
    return sorted(range(len(inputs)), key=lambda i: (-_area(inputs[i]), inputs[i].image.size))


def _area(item: DraftInput) -> int:
    width, height = item.image.size
    return width * height


def _loading_key(config: Any) -> tuple[BoxConvention, int] | None:
    """The box convention and vocabulary size a model's config gives, which the grammar
    depends on (with the tokenizer); None for a model Atelier does not draft with."""
    convention = CONVENTIONS.get(config.model_type)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab_size = getattr(text, "vocab_size", None)
    if convention is None or not isinstance(vocab_size, int):
        return None
    return convention, vocab_size


def _bytes(tensor: Any) -> int:
    return int(tensor.numel() * tensor.element_size()) if tensor is not None else 0


def _on(option: bool | None, on_gpu: bool) -> bool:
    return on_gpu if option is None else option


def batch_that_fits(
    rows: int,
    *,
    drafted: int,
    cache: int,
    held: int,
    usable: int,
    prefill_rows: int = 0,
    pixels: int = 0,
) -> int:
    """The largest power of two from `rows` up to AUTO_MAX_BATCH whose batch fits `usable`
    bytes, from a batch of `rows` that took `drafted` bytes at its peak, `cache` of them its
    KV cache, with `held` bytes allocated after it (the weights, the kept caches), and
    whose images' patches took `pixels` bytes.

    The cache grows with the batch, and so do the next batch's patches, which land while a
    batch decodes; the rest (the prefill's passing tensors) grows with the rows of one
    forward: all of them, or `prefill_rows` where the prompts are written in pieces. 10 %
    is kept spare."""
    if prefill_rows <= 0 or cache <= 0:
        # All of it grows with the batch alike (without the cache's size, too).
        cache = pixels = prefill_rows = 0
    measured_rows = min(rows, prefill_rows) if prefill_rows > 0 else rows
    passing = max(drafted - cache, 0) / measured_rows

    def need(size: int) -> float:
        at_once = min(size, prefill_rows) if prefill_rows > 0 else size
        return held + 1.1 * (size * (cache + pixels) / rows + at_once * passing)

    size = rows
    while size * 2 <= AUTO_MAX_BATCH and need(size * 2) <= usable:
        size *= 2
    return size


def batch_and_pieces(rows: int, **measured: int) -> tuple[int, int]:
    """The largest batch that fits (`batch_that_fits`, from what a first batch of `rows`
    `measured`), and the most rows a forward that let it fit: 0 (all of them) where pieces
    let the batch grow no larger, since each piece is a forward of its own."""
    best, pieces = batch_that_fits(rows, **measured), 0
    for rows_at_once in AUTO_PREFILL_ROWS:  # the largest first: the fewest forwards
        size = batch_that_fits(rows, prefill_rows=rows_at_once, **measured)
        if size > best:
            best, pieces = size, rows_at_once
    return best, pieces


class LocalEngine(Engine):
    name = "local"

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 8,
        max_new_tokens: int = 1024,
        limits: DraftLimits = DEFAULT_LIMITS,
        compile_step: bool = False,
        options: LocalOptions | None = None,
        cache_dir: Path | None = None,
        grammar: Future[Grammar] | None = None,
    ) -> None:
        """`grammar`: the grammar being compiled for this model already (`load` starts it
        beside the weights); else it is compiled here, if `options.grammar`."""
        import torch

        options = options or LocalOptions()
        self.cache_dir = cache_dir  # the compiled grammar, kept for the next start

        self.model = model
        self.processor = processor
        self._byte_of: dict[str, int] | None = None  # the byte-level alphabet, once needed
        self.inputs = ModelInputs(processor)  # the processor's batches, tokenized faster
        self.device = next(model.parameters()).device
        # 0: chosen from the GPU's memory after a short first batch (`_measured`).
        self.auto_batch = batch_size <= 0
        if self.auto_batch:
            batch_size = AUTO_FIRST_BATCH if self.device.type == "cuda" else AUTO_CPU_BATCH
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
        self.grammar: Grammar | None = None
        if options.grammar:
            started = grammar is not None and _loading_key(model.config) == (
                self.convention,
                self.vocab_size,
            )
            self.grammar = (
                grammar.result()  # type: ignore[union-attr]
                if started
                else compile_grammar(processor.tokenizer, self.vocab_size, self.limits, cache_dir)
            )
        self.compiled = self.grammar.compiled if self.grammar is not None else None
        # The parser each row's strings are counted with; it writes ends with `closing`.
        self.closer = self._closer(self.grammar) if self.grammar is not None else None
        self.closing = options.closing
        on_gpu = self.device.type == "cuda"
        grouped = _on(options.grouped_attention, on_gpu)
        if grouped:
            use_grouped_attention(model)
        if _on(options.fused_norms, on_gpu):
            use_fused_rms_norm(model)
        if _on(options.packed_vision, on_gpu):
            use_packed_vision(model)
        elif _on(options.fused_vision_rotary, on_gpu):
            use_fused_vision_rotary(model)
        eos = model.generation_config.eos_token_id
        stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if processor.tokenizer.eos_token_id is not None:
            stop_ids.add(processor.tokenizer.eos_token_id)
        if self.compiled is not None:
            stop_ids.update(self.compiled.tokenizer_info.stop_token_ids)
        # The decode step is captured as a CUDA graph per batch size on a GPU.
        self.decoder = Decoder(
            model,
            stop_ids=stop_ids,
            graphs=_on(options.graphs, on_gpu),
            compile_step=compile_step,
            lean_step=options.lean_step,
            use_kernels=options.kernels,
            triton_attention_below=options.triton_attention_below,
            cache_dir=cache_dir,
            prompt_attention=grouped and options.prompt_attention,
            prefill_rows=options.prefill_rows,
            read_to_last=options.read_to_last,
        )
        self.min_steps = options.min_steps
        self.confidence = options.confidence
        self.jump_forward = options.jump_forward
        self.gpu_preprocess = options.gpu_preprocess  # turned off where the processor cannot
        self.prepare_while_decoding = options.prepare_while_decoding
        self.torch = torch
        # Inputs are prepared on this thread, ahead of the GPU (see `draft` and `prefetch`).
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="atelier-prepare")
        self._ahead: tuple[list[DraftInput], int, Future[Any]] | None = None

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
            from transformers import AutoModelForImageTextToText
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
        local_only = not allow_download
        grammar = None
        with _PREPARED_LOCK:
            ahead = _PREPARED.pop(_front_key(model_id, max_pixels, local_only, kw), None)
        try:
            front = None
            if ahead is not None:
                try:
                    front = ahead.result()
                except Exception:  # done again below, where its errors are reported
                    log.debug("preparing %s ahead failed", model_id, exc_info=True)
            processor, config, grammar = front or cls._front(model_id, max_pixels, local_only, kw)
            model: Any = AutoModelForImageTextToText.from_pretrained(
                model_id,
                config=config,
                dtype=dtype,
                local_files_only=local_only,
                # Straight onto the GPU: no copy held in host memory on the way.
                device_map=device if device.startswith("cuda") else None,
                # transformers (5.2x, with its `kernels` dependency) otherwise swaps layers for
                # kernels fetched from the Hugging Face Hub as it loads: a download on every
                # start, and a failed load offline ("not available in the local cache"), as
                # seen on an H100. Atelier's own kernels are local (fused.py, kernels.py).
                use_kernels=False,
            )
            model = model.to(device).eval()
        except torch.cuda.OutOfMemoryError:
            raise DraftError(
                f"{model_id} does not fit in the GPU's memory. Use a smaller model (for "
                "example Qwen/Qwen2-VL-2B-Instruct), or close what else uses the GPU."
            ) from None
        except OSError as e:
            raise DraftError(
                f"Atelier cannot find the model {model_id!r}: it is not a local folder and not "
                "in the Hugging Face cache. On a machine with internet, run "
                f"`hf download {model_id}` (the cache is shared), set ATELIER_DRAFT_MODEL "
                "(or --model) to a folder holding it, or let Atelier download it with "
                f"ATELIER_DRAFT_ALLOW_DOWNLOAD=1. ({str(e).splitlines()[0][:200]})"
            ) from None
        log.info("loaded %s on %s in %.1f s", model_id, device, time.perf_counter() - started)
        return cls(
            model,
            processor,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            grammar=grammar,
            **kw,
        )

    @classmethod
    def prepare(
        cls,
        model_id: str,
        *,
        max_pixels: int = 1024 * 1024,
        allow_download: bool = False,
        **kw: Any,
    ) -> None:
        """Starts, on a thread, what `load` does before the weights (the processor, the
        config, the grammar: seconds on the CPU, nothing on the GPU), for a `load` with the
        same arguments to take up: the drafting process calls it as it starts, for the
        model its settings name, while it looks for its job."""
        key = _front_key(model_id, max_pixels, not allow_download, kw)
        pool = ThreadPoolExecutor(1, thread_name_prefix="atelier-prepare-load")
        with _PREPARED_LOCK:
            if key not in _PREPARED:
                _PREPARED[key] = pool.submit(
                    cls._front, model_id, max_pixels, not allow_download, kw
                )
        pool.shutdown(wait=False)

    @classmethod
    def _front(
        cls, model_id: str, max_pixels: int, local_only: bool, kw: dict[str, Any]
    ) -> tuple[Any, Any, Future[Grammar] | None]:
        """The processor, the config, and the grammar started on a thread."""
        from transformers import AutoConfig, AutoProcessor

        # The Qwen-VL processors count pixels: shortest_edge and longest_edge are the
        # smallest and largest image area the model is given. A checkpoint's own
        # min_pixels and max_pixels (Qwen2.5-VL's: up to 12.8M pixels) override `size`,
        # so they are given too.
        processor = AutoProcessor.from_pretrained(
            model_id,
            size={"shortest_edge": MIN_IMAGE_PIXELS, "longest_edge": max_pixels},
            min_pixels=MIN_IMAGE_PIXELS,
            max_pixels=max_pixels,
            local_files_only=local_only,
            use_fast=True,  # the torch-based image processor, which can work on the GPU
        )
        config = AutoConfig.from_pretrained(model_id, local_files_only=local_only)
        return processor, config, cls._grammar_beside_weights(config, processor, kw)

    @staticmethod
    def _grammar_beside_weights(
        config: Any, processor: Any, kw: dict[str, Any]
    ) -> Future[Grammar] | None:
        """Starts compiling (or reading back) the grammar on a thread while the weights load:
        both take seconds, one on the CPU, the other mostly on the disk and the GPU."""
        options = kw.get("options") or LocalOptions()
        key = _loading_key(config)
        if not options.grammar or key is None:
            return None
        convention, vocab_size = key
        limits = kw.get("limits", DEFAULT_LIMITS).for_convention(convention, max_side=8192)
        pool = ThreadPoolExecutor(1, thread_name_prefix="atelier-grammar")
        future = pool.submit(
            compile_grammar, processor.tokenizer, vocab_size, limits, kw.get("cache_dir")
        )
        pool.shutdown(wait=False)
        return future

    def _closer(self, grammar: Grammar) -> Closer:
        """What writes a row's shortest valid end when its token budget runs short."""
        return Closer(
            json_schema(self.limits, bounds="maxLength"), vocab=grammar.vocab, encode=self._encode
        )

    def _encode(self, text: str) -> list[int]:
        """The token ids of `text` as the model's tokenizer splits it."""
        ids: list[int] = self.processor.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def prefetch(self, inputs: list[DraftInput]) -> None:
        """Starts preparing the first batch of `inputs`, which `draft` is called with next
        (a drafting job loads its next batch while this one drafts)."""
        chunk = [inputs[i] for i in by_size(inputs)[: self.batch_size]]
        self._ahead = (inputs, len(chunk), self._pool.submit(self._prepare, chunk))

    def draft(self, inputs: list[DraftInput]) -> list[DraftOutput]:
        """Drafts in batches of `batch_size`; a batch that runs out of memory is split.

        Images of one size are drafted side by side (`by_size`); the outputs come back in
        the order of `inputs`. The next batch's inputs (resizing, patching, tokenizing:
        about 1 s for 32 images) are prepared on a thread while the GPU decodes this one.
        """
        order = by_size(inputs)
        ordered = [inputs[i] for i in order]
        size = self.batch_size
        chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        hinted, self._ahead = self._ahead, None
        ahead = None
        if hinted is not None and hinted[0] is inputs and chunks and hinted[1] == len(chunks[0]):
            ahead = hinted[2]
        elif hinted is not None:
            hinted[2].cancel()
        if ahead is None and chunks:
            ahead = self._pool.submit(self._prepare, chunks[0])
        drafted: list[DraftOutput] = []
        for k, chunk in enumerate(chunks):
            assert ahead is not None
            try:
                prepared = ahead.result()
            except self.torch.cuda.OutOfMemoryError:
                prepared = None  # prepared again in `_batch`, which splits what does not fit
                self.torch.cuda.empty_cache()
            except Exception:
                # Prepared again in line: a fault of the inputs says itself there, and one
                # of preparing ahead (in parts) costs the time saved, not the batch.
                log.warning("a batch prepared ahead failed; preparing it again", exc_info=True)
                prepared = None
            if k + 1 < len(chunks):
                ahead = self._pool.submit(self._prepare, chunks[k + 1])
            drafted.extend(self._batch(chunk, prepared))
        out: list[DraftOutput] = [drafted[0]] * len(inputs) if drafted else []
        for position, i in enumerate(order):
            out[i] = drafted[position]
        return out

    def _batch(self, inputs: list[DraftInput], prepared: Any = None) -> list[DraftOutput]:
        torch = self.torch
        measure = self.auto_batch and self.device.type == "cuda" and len(inputs) == self.batch_size
        if measure:
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        batch = prepared
        try:
            if batch is None:
                batch = self._prepare(inputs)
            out = self._generate(batch)
            if measure:
                peak = torch.cuda.max_memory_allocated(self.device)
                self._measured(before, peak, len(inputs), _bytes(batch.get("pixel_values")))
            return out
        except torch.cuda.OutOfMemoryError:
            pass
        # Out of memory. Split outside the `except`: its traceback holds the failed forward's
        # frames, and with them its tensors, until the block ends.
        del prepared, batch
        self.auto_batch = False  # the size that fits is found by halving from here
        # The caches and graphs kept for other sizes go too: the halves need the room.
        self.decoder.slots.clear()
        gc.collect()
        torch.cuda.empty_cache()
        if len(inputs) == 1:
            raise DraftError(
                "The GPU ran out of memory drafting one image. Lower ATELIER_DRAFT_MAX_PIXELS "
                "(the image size the model sees), use a smaller model, or close what else "
                "uses the GPU."
            )
        half = len(inputs) // 2
        # Later batches start at the size that fits, rather than running out again.
        self.batch_size = min(self.batch_size, half)
        log.warning("out of GPU memory at batch %d: batches of %d from now", len(inputs), half)
        return self._batch(inputs[:half]) + self._batch(inputs[half:])

    def _measured(self, before: int, peak: int, rows: int, pixels: int) -> None:
        """Sets the batch size from a first batch's memory: `peak` bytes at most while
        drafting `rows` images, from `before`, with `pixels` bytes of their patches."""
        torch = self.torch
        free, _ = torch.cuda.mem_get_info(self.device)
        usable = (free + torch.cuda.memory_reserved(self.device)) * AUTO_MEMORY_SHARE
        held = torch.cuda.memory_allocated(self.device)
        measured = {
            "drafted": max(peak - before, 1),
            "cache": self.decoder.cache_bytes(rows),
            "held": held,
            "usable": int(usable),
            "pixels": pixels,
        }
        if self.decoder.prefill_rows < 0:
            size, self.decoder.prefill_rows = batch_and_pieces(rows, **measured)
        else:
            size = batch_that_fits(rows, prefill_rows=self.decoder.prefill_rows, **measured)
        self.batch_size, self.auto_batch = size, False
        log.info(
            "drafting in batches of %d (prompts %s a forward): %.2f GB an image, "
            "%.1f GB held, %.1f GB usable",
            size,
            self.decoder.prefill_rows or "all",
            (peak - before) / rows / 1e9,
            held / 1e9,
            usable / 1e9,
        )

    def _prepare(self, inputs: list[DraftInput]) -> Any:
        """The processor's batch, padded on the left, on the model's device.

        On a GPU the images are resized, normalised and cut into patches there (transformers'
        torchvision image processor, `device=`), about 20 ms an image less on the CPU, and all
        of it runs on a stream of its own, so a batch prepared on the thread lands while the
        previous one decodes. What comes from the CPU is copied from pinned memory; pixels
        are cast to the model's dtype (the model casts them anyway).
        """
        texts = self._texts(inputs)
        images = [i.image for i in inputs]
        if self.device.type != "cuda":
            return self._process(texts, images).to(self.device)
        return self._on_own_stream(
            lambda: self._process(texts, images, on_device=self.gpu_preprocess)
        )

    def prefetch_decoded(self, decoded: Iterable[DraftInput], count: int) -> list[DraftInput]:
        """Prepares the images PREPARE_PART at a time, on the thread, as they come, then the
        batch from those parts in `draft`'s order: what `_prepare` makes of the batch, most of
        it made while the last images still decode. A batch longer than `batch_size` is
        drafted in several, and only taken here."""
        if not self.prepare_while_decoding or count > self.batch_size or count <= PREPARE_PART:
            return list(decoded)
        inputs: list[DraftInput] = []
        parts: list[Future[Any]] = []
        part: list[DraftInput] = []
        for item in decoded:
            inputs.append(item)
            part.append(item)
            if len(part) == PREPARE_PART:
                parts.append(self._pool.submit(self._prepare_part, [i.image for i in part]))
                part = []
        if part:
            parts.append(self._pool.submit(self._prepare_part, [i.image for i in part]))
        if len(inputs) > self.batch_size:
            return inputs
        hinted, self._ahead = self._ahead, None
        if hinted is not None:
            hinted[2].cancel()
        order = by_size(inputs)
        made = self._pool.submit(self._prepare_parts, inputs, parts, order)
        self._ahead = (inputs, len(inputs), made)
        return inputs

    def _prepare_part(self, images: list[Any]) -> Any:
        """Some of a batch's images processed (`ModelInputs.pixels`), on the model's device."""
        if self.device.type != "cuda":
            return self._pixels(images)
        return self._on_own_stream(lambda: self._pixels(images, on_device=self.gpu_preprocess))

    def _prepare_parts(
        self, inputs: list[DraftInput], parts: list[Future[Any]], order: list[int]
    ) -> Any:
        """The batch of `inputs` in `order` from their images processed in `parts`."""
        texts = self._texts([inputs[i] for i in order])
        done = [part.result() for part in parts]
        if self.device.type != "cuda":
            return self.inputs.assemble(texts, done, order).to(self.device)
        return self._on_own_stream(lambda: self.inputs.assemble(texts, done, order))

    def _on_own_stream(self, make: Callable[[], Any]) -> Any:
        """What `make` gives, made and landed on the GPU (`_landed`) on a stream of its own,
        so that it overlaps the decoding on the default stream; waited for."""
        stream = self.torch.cuda.Stream(self.device)
        with self.torch.cuda.stream(stream):
            batch = self._landed(make())
        stream.synchronize()
        return batch

    def _landed(self, batch: Any) -> Any:
        """`batch`'s tensors on the model's device (from pinned memory), its floating ones in
        the model's dtype, each marked as used on the default stream later (so that the
        allocator knows before it reuses them). On the stream in use."""
        torch = self.torch
        dtype = next(self.model.parameters()).dtype
        for key, value in batch.items():
            if value.is_floating_point():
                value = value.to(dtype)
            if value.device != self.device:
                value = value.pin_memory().to(self.device, non_blocking=True)
            batch[key] = value
            batch[key].record_stream(torch.cuda.default_stream(self.device))
        return batch

    def _texts(self, inputs: list[DraftInput]) -> list[str]:
        """Each request as the chat template writes it: the image, then the prompt."""
        return [
            self.processor.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": i.prompt}],
                    }
                ],
                add_generation_prompt=True,
                tokenize=False,
            )
            for i in inputs
        ]

    def _process(self, texts: list[str], images: list[Any], on_device: bool = False) -> Any:
        return self._on_device_or_cpu(self.inputs.batch, on_device, texts, images)

    def _pixels(self, images: list[Any], on_device: bool = False) -> Any:
        return self._on_device_or_cpu(self.inputs.pixels, on_device, images)

    def _on_device_or_cpu(self, make: Any, on_device: bool, *args: Any) -> Any:
        """`make(*args)`, its images processed on the model's device where asked and the
        image processor can; on the CPU from then on where it cannot."""
        kw = {"device": self.device} if on_device else {}
        try:
            return make(*args, **kw)
        except (TypeError, ValueError, RuntimeError) as e:
            if not on_device or isinstance(e, self.torch.cuda.OutOfMemoryError):
                raise  # out of memory: the batch is split (`draft`, `_batch`)
            # An image processor that cannot work on the GPU: on the CPU from now on.
            log.warning("image preprocessing stays on the CPU: %s", str(e).splitlines()[0][:200])
            self.gpu_preprocess = False
            return make(*args)

    def _decode(self, batch: Any) -> Result:
        """The prepared batch decoded with this engine's grammar, closer, budget and
        options: the tokens, before they become drafts."""
        return self.decoder.run(
            batch,
            max_new_tokens=self.max_new_tokens,
            grammar=self.grammar,
            closer=self.closer,
            closing=self.closing,
            min_steps=self.min_steps,
            logprobs=self.confidence,
            encode=self._encode if self.jump_forward else None,
        )

    def _generate(self, batch: Any) -> list[DraftOutput]:
        result = self._decode(batch)
        texts_out = self.processor.batch_decode(result.tokens, skip_special_tokens=True)
        grid = batch.get("image_grid_thw")
        patch = getattr(self.processor.image_processor, "patch_size", QWEN_PATCH)
        outputs = []
        for n, raw in enumerate(texts_out):
            resized = None
            if grid is not None:
                _, gh, gw = (int(v) for v in grid[n])
                resized = (gw * patch, gh * patch)
            if not result.finished[n]:
                outputs.append(DraftOutput(raw, error="the answer was cut at the token limit"))
            else:
                tokens = None
                if result.logprobs:
                    pieces = self._token_bytes(result.tokens[n])
                    tokens = list(zip(pieces, result.logprobs[n], strict=True))
                outputs.append(
                    parse_output(raw, convention=self.convention, resized=resized, tokens=tokens)
                )
        return outputs

    def _token_bytes(self, ids: list[int]) -> list[bytes]:
        """Each token's bytes, which together spell the decoded text (Qwen's byte-level BPE
        writes each byte as one character of the GPT-2 byte alphabet): the grammar's table
        where there is one, a list lookup a token (from the token strings, 256 answers of 450
        tokens took 0.39 s on a 2-core x86_64, the table 0.03 s)."""
        if self.grammar is not None:
            vocab = self.grammar.vocab
            if all(0 <= i < len(vocab) for i in ids):
                return [vocab[i] for i in ids]
        return self._bytes_from_strings(ids)

    def _bytes_from_strings(self, ids: list[int]) -> list[bytes]:
        """Each token's bytes, from the tokenizer's token strings."""
        if self._byte_of is None:
            from transformers.convert_slow_tokenizer import bytes_to_unicode

            self._byte_of = {c: b for b, c in bytes_to_unicode().items()}
        byte_of = self._byte_of
        out = []
        for piece in self.processor.tokenizer.convert_ids_to_tokens(ids):
            piece = piece or ""
            if all(c in byte_of for c in piece):
                out.append(bytes(byte_of[c] for c in piece))
            else:  # an added token: its text as it is
                out.append(piece.encode())
        return out

    def read_texts(self, crops: list[Any]) -> list[str | None]:
        """Each crop's text read alone: READ_PROMPT, decoded without the caption's grammar
        (the answer is the text itself), in the engine's batches; None where the answer ran
        past READ_TOKENS (a reading that long is no transcription of a box)."""
        inputs = [DraftInput(crop, READ_PROMPT) for crop in crops]
        out: list[str | None] = []
        step = max(1, self.batch_size)
        for start in range(0, len(inputs), step):
            batch = self._prepare(inputs[start : start + step])
            result = self.decoder.run(batch, max_new_tokens=READ_TOKENS, closing=False)
            texts = self.processor.batch_decode(result.tokens, skip_special_tokens=True)
            out += [
                t.strip() if done else None for t, done in zip(texts, result.finished, strict=True)
            ]
        return out

    def leave_one_core(self) -> bool:
        """On the CPU, draws on one core fewer than the machine has; whether it is on the CPU."""
        if self.device.type != "cpu":
            return False
        self.torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        return True

    def close(self) -> None:
        if self.grammar is not None and self.grammar.keeping is not None:
            self.grammar.keeping.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.inputs.close()
        self._ahead = None
        self.decoder.close()
        del self.model
        if self.torch.cuda.is_available():
            gc.collect()  # what still refers to the caches in a cycle
            self.torch.cuda.empty_cache()
