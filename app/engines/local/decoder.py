"""Greedy decoding of one batch over a static KV cache, the one-token step replayed from a
CUDA graph on the GPU, with the grammar's masks filled on the CPU while the GPU runs.

Why not transformers' `generate`: at batch 32 on an H200 its loop spent most of each step
outside the model (mask and position bookkeeping, logits processors, stopping criteria, a
host sync per step), and `torch.compile` of the whole forward failed under CUDA graphs. Here
the step is the model's own forward, captured once per batch size with every input in a
fixed buffer (token, 3D rope positions, a 4D additive mask over the cache), and replayed.

Per step, in order: the masked logits give the next tokens (argmax, on the GPU); the tokens
start their copy to the host; the next forward is launched; while it runs, the CPU hands the
tokens to the grammar matchers and fills the next mask. So the grammar costs only what its
CPU work exceeds the GPU's step.

Positions: Qwen-VL's multimodal rope gives every token of a prompt three position ids; after
the prompt, all three are the row's largest prompt position + 1 + step, counted without the
left padding (as transformers 5.2x does; older versions shifted padded rows by their padding).

Jump-forward (`run(encode=...)`, one row with a grammar): where the grammar allows one string
only after a token (keys, punctuation: 32-40 % of an answer's tokens, bench/forced_tokens.py),
that string is tokenized as the tokenizer splits it, accepted by the matcher and the parser,
and fed with the token before it in ONE forward (`TextStep.many`, a CUDA graph per length).
The token is then needed on the host before the next forward starts: the loop waits for it
each step, and fills the next mask while the forward runs.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.engines.local import kernels
from app.engines.local.attention import prompt_prefill
from app.engines.local.closing import BadPrefix, Closer, Parser
from app.engines.local.grammar import Grammar
from app.engines.local.prefill import can_cut, first_logits, prefill_in_pieces, right_padded
from app.engines.local.text_step import MAX_POSITIONS, TextStep

CAPACITY_STEP = 256  # cache lengths are rounded up to this, so a slot serves many prompts
SLOTS = 2  # batch sizes kept ready at once (a job's batch and its shorter last one)
FINISH_CHECK_EVERY = 16  # steps between looks at the stop tokens when no grammar syncs
# Without Atelier's Triton kernels the lean step attends with two matmuls below this batch
# size and with torch's sdpa from it. Graph-replayed 2B step on an H100
# (bench/decode_step.py): kernels 1.94 / 2.77 ms at batch 1 / 31, matmul 3.16-3.19 / 4.22 /
# 6.90 ms at batch 1 / 32 / 128, sdpa (cudnn) 3.70 / 4.15 / 6.13 ms.
MATMUL_ATTENTION_BELOW = 32
# With the kernels, their attention at every batch size: on an H200 the replayed 2B step
# took 2.39 / 2.94 / 4.02 ms at batch 32 / 64 / 128 with them, 3.84 / 4.06 / 5.38 with sdpa.
TRITON_ATTENTION_BELOW = 1 << 30
# The most tokens one jump-forward feeds in one forward (a CUDA graph per count from 2): a
# longer run is fed in several. The longest run in a real answer was 11 tokens.
MAX_FEED = 16
log = logging.getLogger("atelier.drafting")
assert CAPACITY_STEP % kernels.KEYS_PER_PROGRAM == 0  # every slot's cache fits the kernels
assert MAX_FEED <= kernels.LINEAR_ROWS  # a forward's tokens are rows of the kernels' products


def lean_attention(
    batch: int, with_kernels: bool = False, triton_below: int = TRITON_ATTENTION_BELOW
) -> str:
    """The lean step's attention for a batch size: Atelier's Triton kernels where they run
    (app/engines/local/kernels.py) below `triton_below`; else two matmuls at small
    batches and sdpa from MATMUL_ATTENTION_BELOW."""
    if with_kernels and batch < triton_below:
        return "triton"
    return "sdpa" if batch >= MATMUL_ATTENTION_BELOW else "matmul"


@dataclass
class Result:
    tokens: list[list[int]]  # each row's new tokens, up to (not including) its stop token
    finished: list[bool]  # whether the row ended with a stop token within the budget
    steps: int
    # Each kept token's log probability under the step's logits as masked by the grammar
    # (so a token the grammar forced has 0): what the draft's confidences are made of.
    logprobs: list[list[float]] = field(default_factory=list)
    forwards: int = 0  # the model's forwards, the prefill's included (jump-forward: < tokens)


@dataclass
class _Slot:
    """Everything one batch size's decode step reads and writes, at fixed addresses."""

    batch: int
    capacity: int
    cache: Any
    token: Any  # (batch, 1) the token fed to the next step
    positions: Any  # (3, batch, 1) its rope position ids
    mask: Any  # (batch, 1, 1, capacity) 0 where attended, the dtype's minimum elsewhere
    write_at: Any  # (1,) the cache column the next step writes
    logits: Any  # (batch, vocab) float32, the last step's output
    graph: Any = None
    used: int = field(default=0)
    # Jump-forward (batch 1): the tokens fed together, their offsets, a graph per count.
    feed: Any = None  # (1, MAX_FEED)
    feed_host: Any = None  # (capacity,) on the host, pinned on a GPU
    offsets: Any = None  # (MAX_FEED,) 0, 1, ...
    columns: Any = None  # (capacity,) 0, 1, ...
    feed_graphs: dict[int, Any] = field(default_factory=dict)


class Decoder:
    """Runs batches through one model; keeps a cache and a captured step per batch size."""

    def __init__(
        self,
        model: Any,
        *,
        stop_ids: set[int],
        graphs: bool,
        compile_step: bool = False,
        lean_step: bool = True,
        use_kernels: bool = True,
        triton_attention_below: int | None = None,
        cache_dir: Any = None,
        prompt_attention: bool = False,
        prefill_rows: int = 0,
        read_to_last: bool = True,
    ) -> None:
        """`cache_dir`: where the lean step keeps what it timed, for the next start;
        `prompt_attention`: the prompts padded on the right, the prefill's attention causal
        over their own columns with no mask (attention.py: the model must use the grouped
        attention); `prefill_rows`: a
        larger batch's prompts written this many rows a forward (prefill.py), 0: all;
        `read_to_last`: the kernels' attention reads the cache up to the step's column."""
        import torch

        self.torch = torch
        self.model = model
        self.stop_ids = sorted(stop_ids)
        self.device = next(model.parameters()).device
        self.graphs = graphs and self.device.type == "cuda"
        self.dtype = next(model.parameters()).dtype
        self.vocab = model.get_output_embeddings().weight.shape[0]
        # transformers renamed the cache argument (past_key_values -> cache) in 5.2x.
        names = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in names else "past_key_values"
        self.slots: dict[int, _Slot] = {}
        # Causal over the prompt's columns: not for a model that attends within a window.
        windowed = getattr(model.config.get_text_config(), "use_sliding_window", False)
        self.prompt_attention = prompt_attention and not windowed
        self.prefill_rows = prefill_rows
        # The step written out lean (app/drafting/text_step.py) where the model is one it
        # knows; else the model's own forward.
        self.text_step = TextStep.for_model(model) if lean_step else None
        if self.text_step is not None:
            self.text_step.cache_dir = cache_dir
            self.text_step.read_to_last = read_to_last
        self.kernels = (
            use_kernels
            and self.text_step is not None
            and kernels.available(self.device)
            and kernels.fits(head_dim=self.text_step.head_dim, capacity=CAPACITY_STEP)
        )
        below = triton_attention_below or TRITON_ATTENTION_BELOW
        self.attention_for = lambda batch: lean_attention(batch, self.kernels, below)
        self.pool = torch.cuda.graph_pool_handle() if self.graphs else None
        self.uses = 0
        # Opt-in: inductor fuses the step's small kernels before the graph is captured. The
        # first batch of each size compiles (tens of seconds; cached on disk by torch).
        self.step_fn = (
            torch.compile(self._forward, dynamic=False) if compile_step and self.graphs else None
        )

    def close(self) -> None:
        """Lets go of every cache, captured graph and the model, so that their GPU memory is
        free once the caller drops its own references (an engine closed to load another)."""
        self.slots.clear()
        self.text_step = None
        self.step_fn = None
        self.model = None

    def run(
        self,
        inputs: Any,
        *,
        max_new_tokens: int,
        grammar: Grammar | None = None,
        closer: Closer | None = None,
        closing: bool = True,
        rows: int | None = None,
        min_steps: int = 0,
        logprobs: bool = True,
        encode: Callable[[str], list[int]] | None = None,
    ) -> Result:
        """Decodes `inputs` (the processor's batch, on the device, padded on the left).

        `grammar` constrains the output, or None; `closer` (with a grammar) parses each row,
        so its strings keep their bounds, and with `closing` writes each row's shortest valid
        end once its budget runs short; `rows` counts the real rows
        (the rest are padding, decoded but never constrained or returned); `min_steps` keeps
        stepping after every row has stopped, for benchmarks that need a fixed length;
        `encode` (the tokenizer's, text to ids) switches jump-forward on for a batch of one
        row with a grammar, where the lean step runs (else it is ignored).
        """
        torch = self.torch
        batch, length = inputs["input_ids"].shape
        rows = batch if rows is None else rows
        slot = self._slot(batch, length + max_new_tokens)
        if self.text_step is not None and self.attention_for(batch) == "triton":
            self.text_step.choose_products(batch)  # timed once per batch size, before capture
        stops = torch.tensor(self.stop_ids, device=self.device)
        out = torch.empty((batch, max_new_tokens), dtype=torch.long, device=self.device)
        logp = (
            torch.empty((batch, max_new_tokens), dtype=torch.float32, device=self.device)
            if logprobs
            else None
        )
        matchers = (
            Matchers(grammar, rows, batch, self.vocab, self.device, closer, max_new_tokens, closing)
            if grammar
            else None
        )

        jumping = (
            encode is not None
            and matchers is not None
            and batch == rows == 1
            and self.text_step is not None
            and slot.capacity <= MAX_POSITIONS
        )
        with torch.inference_mode():
            self._prefill(slot, inputs)
            if jumping:
                assert matchers is not None and encode is not None
                return self._decode_jumping(
                    slot, matchers, encode, max_new_tokens, min_steps, logprobs
                )
            if matchers:
                matchers.fill()  # the first mask, while the prefill runs
            host = torch.empty(batch, dtype=torch.long, pin_memory=self.graphs)
            copied = torch.cuda.Event() if self.device.type == "cuda" else None
            steps, forwards = 0, 1  # the prefill's
            for t in range(max_new_tokens):
                if matchers:
                    matchers.apply(slot.logits)
                token = slot.logits.argmax(-1)
                out[:, t] = token
                if logp is not None:
                    # The chosen token's log probability: one pass over the logits, on the GPU.
                    scores = slot.logits
                    logp[:, t] = scores.gather(-1, token.view(batch, 1)).squeeze(
                        1
                    ) - scores.logsumexp(-1)
                steps = t + 1
                if matchers:
                    host.copy_(token, non_blocking=True)
                    if copied is not None:
                        copied.record()
                last = steps == max_new_tokens
                if not last:
                    slot.token.copy_(token.view(batch, 1))
                    self._step(slot)  # runs on the GPU while the CPU goes on below
                    forwards += 1
                if matchers:
                    if copied is not None:
                        copied.synchronize()
                    matchers.accept(host.tolist())
                    if matchers.all_done() and steps >= min_steps:
                        break
                    if not last:
                        matchers.fill()
                elif (
                    steps % FINISH_CHECK_EVERY == 0
                    and steps >= min_steps
                    and self._all_stopped(out[:rows, :steps], stops)
                ):
                    break
        kept = logp[:rows, :steps].tolist() if logp is not None else None
        result = self._result(out[:rows, :steps].tolist(), steps, kept)
        result.forwards = forwards
        return result

    def _prefill(self, slot: _Slot, inputs: Any) -> None:
        """The prompt through the model's forward into the slot's cache; its logits, the
        rope positions, mask and cache column the first step reads."""
        torch = self.torch
        batch, length = inputs["input_ids"].shape
        slot.cache.reset()
        # The prompt's attention wants the padding after each prompt (prefill.py).
        padded = right_padded(inputs) if self.prompt_attention else None
        last = None
        if padded is not None:
            inputs, last = padded
        with prompt_prefill() if padded is not None else nullcontext():
            if 0 < self.prefill_rows < batch and can_cut(inputs):
                first, deltas = prefill_in_pieces(
                    self.model, slot.cache, self.cache_arg, inputs, self.prefill_rows, last
                )
            else:
                first = first_logits(self.model, slot.cache, self.cache_arg, inputs, last)
                deltas = self.model.model.rope_deltas
        # The model's delta is the row's last prompt position + 1 - its unpadded length.
        real = inputs["attention_mask"].sum(-1).view(1, batch, 1)
        deltas = deltas.view(1, batch, 1)
        slot.positions.copy_((deltas + real).expand(3, batch, 1))
        slot.mask.fill_(torch.finfo(self.dtype).min)
        slot.mask[:, 0, 0, :length].masked_fill_(inputs["attention_mask"].bool(), 0.0)
        slot.write_at.fill_(length)
        slot.logits.copy_(first)

    def _decode_jumping(
        self,
        slot: _Slot,
        matchers: Matchers,
        encode: Callable[[str], list[int]],
        max_new_tokens: int,
        min_steps: int,
        logprobs: bool,
    ) -> Result:
        """One row's decoding where each token the model chooses is fed with the forced
        tokens after it, in one forward; a forced token's log probability is 0."""
        torch = self.torch
        tokens: list[int] = []
        chances: list[float] = []
        forwards = 1  # the prefill
        matchers.encode = encode
        matchers.fill()
        while len(tokens) < max_new_tokens:
            matchers.apply(slot.logits)
            scores = slot.logits
            token = scores.argmax(-1)
            if logprobs:
                chance = scores.gather(-1, token.view(1, 1)).view(1) - scores.logsumexp(-1)
                both = torch.cat((token.double(), chance.double())).tolist()  # waits for it
                chosen, chances_now = int(both[0]), [both[1]]
            else:
                chosen, chances_now = int(token.item()), [0.0]
            matchers.accept([chosen])
            tokens.append(chosen)
            done = matchers.all_done() and len(tokens) >= min_steps
            if done or len(tokens) == max_new_tokens:
                chances += chances_now
                break
            # The next free token keeps its place in the budget.
            forced = matchers.jump(max_new_tokens - len(tokens) - 1)
            tokens += forced
            chances += chances_now + [0.0] * len(forced)
            forwards += self._feed(slot, [chosen, *forced])  # runs while the CPU goes on
            matchers.fill()
        result = self._result([tokens], len(tokens), [chances] if logprobs else None)
        result.forwards = forwards
        return result

    def _feed(self, slot: _Slot, ids: list[int]) -> int:
        """Feeds `ids` to the model after what the slot holds, MAX_FEED at most a forward;
        the last one's logits land in the slot. How many forwards it took."""
        if len(ids) == 1:
            slot.token.fill_(ids[0])
            self._step(slot)
            return 1
        self._feed_buffers(slot)
        # Each forward's tokens copied from a place of their own: none is overwritten
        # before its copy has run (the caller waits for the logits before the next feed).
        slot.feed_host[: len(ids)] = self.torch.tensor(ids)
        forwards = 0
        for start in range(0, len(ids), MAX_FEED):
            count = min(MAX_FEED, len(ids) - start)
            if count == 1:
                slot.token.fill_(ids[start])
                self._step(slot)
            else:
                host = slot.feed_host[start : start + count]
                slot.feed[0, :count].copy_(host, non_blocking=True)
                self._step_many(slot, count)
            forwards += 1
        return forwards

    def _feed_buffers(self, slot: _Slot) -> None:
        if slot.feed is not None:
            return
        torch, d = self.torch, self.device
        slot.feed = torch.zeros((1, MAX_FEED), dtype=torch.long, device=d)
        slot.feed_host = torch.zeros(slot.capacity, dtype=torch.long, pin_memory=self.graphs)
        slot.offsets = torch.arange(MAX_FEED, device=d)
        slot.columns = torch.arange(slot.capacity, device=d)

    def _forward_many(self, slot: _Slot, count: int) -> None:
        """The forward of `count` tokens (slot.feed) at batch 1: their keys and values at the
        next `count` cache columns, each attending to the cache and the ones before it; the
        last one's logits in the slot."""
        torch = self.torch
        assert self.text_step is not None
        offsets = slot.offsets[:count]
        columns = slot.write_at + offsets
        slot.mask.index_fill_(3, columns, 0.0)
        causal = slot.columns.view(1, -1) > columns.view(-1, 1)  # (count, capacity)
        mask = torch.where(causal, torch.finfo(self.dtype).min, slot.mask[0, 0])
        logits = self.text_step.many(
            slot.feed[:, :count],
            slot.positions[0, 0] + offsets,
            mask.view(count, 1, 1, slot.capacity),
            columns,
            slot.cache,
            attention=self.attention_for(1),
            out=slot.logits,
        )
        if logits is not slot.logits:
            slot.logits.copy_(logits)
        slot.write_at.add_(count)
        slot.positions.add_(count)

    def _step_many(self, slot: _Slot, count: int) -> None:
        if not self.graphs:
            self._forward_many(slot, count)
            return
        graph = slot.feed_graphs.get(count)
        if graph is None:
            slot.feed_graphs[count] = self._capture(lambda: self._forward_many(slot, count))
            return
        graph.replay()

    def _capture(self, step: Callable[[], None]) -> Any:
        """Runs `step` once (eagerly, on a side stream: a real step, and the warm-up torch
        asks for before capture), then captures it, which records kernels without running
        them; the graph."""
        torch = self.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            step()
        return graph

    def _all_stopped(self, tokens: Any, stops: Any) -> bool:
        return bool(self.torch.isin(tokens, stops).any(1).all())

    def _result(
        self, tokens: list[list[int]], steps: int, logprobs: list[list[float]] | None
    ) -> Result:
        """Each row up to its stop token; `logprobs` (None: not kept) cut the same way."""
        stops = set(self.stop_ids)
        kept, finished, kept_logprobs = [], [], []
        for n, row in enumerate(tokens):
            end = next((i for i, t in enumerate(row) if t in stops), None)
            kept.append(row if end is None else row[:end])
            if logprobs is not None:
                kept_logprobs.append(logprobs[n] if end is None else logprobs[n][:end])
            finished.append(end is not None)
        return Result(kept, finished, steps, kept_logprobs)

    def _forward(self, slot: _Slot) -> None:
        """The one-token step; every tensor it reads or writes lives in the slot."""
        slot.mask.index_fill_(3, slot.write_at, 0.0)
        if self.text_step is not None and slot.capacity <= MAX_POSITIONS:
            position = slot.positions[0].view(slot.batch)
            logits = self.text_step(
                slot.token,
                position,
                slot.mask,
                slot.write_at,
                slot.cache,
                attention=self.attention_for(slot.batch),
                out=slot.logits,
            )
            if logits is not slot.logits:
                slot.logits.copy_(logits)
            slot.write_at.add_(1)
            slot.positions.add_(1)
            return
        logits = self.model(
            input_ids=slot.token,
            position_ids=slot.positions,
            attention_mask=slot.mask,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_arg: slot.cache},
        ).logits
        slot.logits.copy_(logits[:, -1])
        slot.write_at.add_(1)
        slot.positions.add_(1)

    def _step(self, slot: _Slot) -> None:
        if not self.graphs:
            self._forward(slot)
            return
        if slot.graph is None:
            step = self.step_fn or self._forward
            slot.graph = self._capture(lambda: step(slot))
            return
        slot.graph.replay()

    def cache_bytes(self, batch: int) -> int:
        """The GPU memory of the cache kept for this batch size (0 where none is)."""
        slot = self.slots.get(batch)
        layers = slot.cache.layers if slot is not None else []
        return sum(
            t.numel() * t.element_size()
            for layer in layers
            if getattr(layer, "is_initialized", False)
            for t in (layer.keys, layer.values)
        )

    def _slot(self, batch: int, needed: int) -> _Slot:
        from transformers import StaticCache

        torch = self.torch
        self.uses += 1
        slot = self.slots.get(batch)
        if slot is not None and slot.capacity >= needed:
            slot.used = self.uses
            return slot
        if slot is not None or len(self.slots) >= SLOTS:
            # Make room: drop this size's smaller slot, or the one used longest ago.
            victim = (
                batch if slot is not None else min(self.slots, key=lambda b: self.slots[b].used)
            )
            del self.slots[victim]
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        capacity = -(-needed // CAPACITY_STEP) * CAPACITY_STEP
        d = self.device
        slot = _Slot(
            batch=batch,
            capacity=capacity,
            cache=StaticCache(config=self.model.config, max_cache_len=capacity),
            token=torch.zeros((batch, 1), dtype=torch.long, device=d),
            positions=torch.zeros((3, batch, 1), dtype=torch.long, device=d),
            mask=torch.zeros((batch, 1, 1, capacity), dtype=self.dtype, device=d),
            write_at=torch.zeros(1, dtype=torch.long, device=d),
            logits=torch.zeros((batch, self.vocab), dtype=torch.float32, device=d),
            used=self.uses,
        )
        self.slots[batch] = slot
        return slot


class Matchers:
    """One xgrammar matcher per real row, their masks filled together on several threads.

    Each row's parser (the closer's) counts the string the row is in, and the row's mask
    keeps only the tokens that fit that string's bound (lengths.py: the grammar leaves the
    bounds out). With `closing`, each row near the end of its `budget` gets its shortest
    valid end written for it: its mask then allows that end's next token alone. With
    `encode` (jump-forward), `jump` feeds a row the tokens the grammar forces next.
    """

    def __init__(
        self,
        grammar: Grammar,
        rows: int,
        batch: int,
        vocab: int,
        device: Any,
        closer: Closer | None = None,
        budget: int = 0,
        closing: bool = True,
    ) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.matchers = [xgr.GrammarMatcher(grammar.compiled) for _ in range(rows)]
        self.filler = xgr.BatchGrammarMatcher(max_threads=8)
        self.bitmask = xgr.allocate_token_bitmask(batch, vocab)  # padding rows: all allowed
        self.on_device = self.bitmask.to(device)
        if device.type == "cuda":
            self.bitmask = self.bitmask.pin_memory()
        self.words = self.bitmask.shape[1]
        self.rows_view = self.bitmask.numpy()  # the same memory: NumPy's calls cost less
        self.live = list(range(rows))
        self.lengths = grammar.lengths
        self.tokens = grammar.vocab  # each token's bytes, fed to the parsers
        self.closer = closer if closing else None
        self.parsers: list[Parser | None] = [
            closer.parser() if closer is not None else None for _ in range(rows)
        ]
        self.left = budget  # tokens still to come, the next one included
        self.ends: dict[int, list[int]] = {}  # row: the tokens of its end still to write
        self.look_at: dict[int, int] = {}  # row: the budget left at its next look
        self.encode: Callable[[str], list[int]] | None = None  # text to ids, for `jump`

    def fill(self) -> None:
        if self.live:
            self.filler.batch_fill_next_token_bitmask(
                [self.matchers[i] for i in self.live], self.bitmask, indices=self.live
            )
            if self.closer is not None and self.left <= self.closer.window:
                self._close()
            self._keep_lengths()

    def _keep_lengths(self) -> None:
        """Each row's mask keeps the tokens that fit the bound of the string it is in."""
        rows, ends = self.rows_view, self.ends
        for i in self.live:
            parser = self.parsers[i]
            if parser is None or ends.get(i):
                continue  # an end being written adds no character to a string
            mask = self._length_mask(parser)
            if mask is not None:
                np.bitwise_and(rows[i], mask, out=rows[i])

    def _length_mask(self, parser: Parser) -> np.ndarray | None:
        """The bitmask row of the tokens that fit where `parser` stands; None: all do."""
        room = parser.room()
        if room is None:
            return self.lengths.outside_mask(self.words)
        return self.lengths.inside_mask(room[0], room[1], self.words)

    def _close(self) -> None:
        """Rows that must end now get their end's next token as their only choice."""
        assert self.closer is not None
        for i in self.live:
            if i not in self.ends:
                parser = self.parsers[i]
                if parser is None or self.left > self.look_at.get(i, self.left):
                    continue
                end = parser.end()
                if not end or not self.closer.must_close(end, self.left):
                    # Each token lengthens the end by `growth` at most: no need to look
                    # again until the budget could run short.
                    self.look_at[i] = self.left - self.closer.steps_free(end, self.left)
                    continue
                self.ends[i] = self.closer.tokens(end)
            end_tokens = self.ends[i]
            if not end_tokens:
                continue  # written: the grammar allows only the stop tokens now
            token = end_tokens[0]
            word, bit = token >> 5, token & 31
            row = self.bitmask[i]
            if not (int(row[word]) >> bit) & 1:
                # Not where the grammar is: leave the row to the model (never seen).
                self.ends[i] = []
                continue
            row.zero_()
            row[word] = (1 << bit) if bit < 31 else -(1 << 31)  # int32 words

    def apply(self, logits: Any) -> None:
        self.on_device.copy_(self.bitmask, non_blocking=True)
        self.xgr.apply_token_bitmask_inplace(logits, self.on_device)

    def accept(self, tokens: list[int]) -> None:
        self.left -= 1
        if not self.live:
            return
        self.filler.batch_accept_token(
            [self.matchers[i] for i in self.live], [tokens[i] for i in self.live]
        )
        self.live = [i for i in self.live if not self.matchers[i].is_terminated()]
        for i in self.live:  # a row that took its stop token is done: nothing to feed
            self._feed_parser(i, tokens[i])

    def _feed_parser(self, i: int, token: int) -> None:
        parser = self.parsers[i]
        if parser is None:
            return
        try:
            parser.feed(self.tokens[token])
        except BadPrefix as e:
            # The parser reads the schema otherwise than the grammar (never seen): the
            # row goes on with the grammar alone, its strings unbounded, never closed.
            log.warning("row %d is left to the grammar alone: %s", i, e)
            self.parsers[i] = None
            self.ends[i] = []
        if self.ends.get(i):
            self.ends[i].pop(0)

    def jump(self, most: int) -> list[int]:
        """The tokens forced next in the one row (`most` at most), each accepted by the
        matcher and fed to the parser as one step's token would be: the rest of its end
        where the closer writes one, else the text the grammar forces, tokenized as
        `encode` splits it."""
        if most <= 0 or self.encode is None or self.live != [0]:
            return []
        matcher = self.matchers[0]
        writing = bool(self.ends.get(0))
        if writing:
            tokens = list(self.ends[0])
        else:
            text = matcher.find_jump_forward_string()
            tokens = self.encode(text) if text else []
        fed: list[int] = []
        for token in tokens[:most]:
            parser = self.parsers[0]
            mask = None if parser is None or writing else self._length_mask(parser)
            if mask is not None and not (int(mask[token >> 5]) >> (token & 31)) & 1:
                break  # past the bound of the string it is in: the model's choice
            if not matcher.accept_token(token):
                if writing:
                    self.ends[0] = []  # as `_close` does (never seen): left to the model
                break  # else a split the grammar refuses: the rest is the model's
            fed.append(token)
            self.left -= 1
            self._feed_parser(0, token)
        return fed

    def all_done(self) -> bool:
        return not self.live
