"""Schema-constrained decoding for transformers' generate, with xgrammar.

Our own logits processor rather than xgrammar's contrib one: that one reads the sampled
token of each row with its own GPU sync and fills the masks one row after another. Here the
last tokens come over in one copy, the masks of the whole batch are filled on several CPU
threads, and the mask goes to the GPU from pinned memory without blocking.
"""

from __future__ import annotations

from typing import Any


class GrammarLogitsProcessor:
    """Masks every token the grammar does not allow next; one instance per generate call."""

    def __init__(self, compiled: Any, *, vocab_size: int, threads: int = 8) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.compiled = compiled
        self.vocab_size = vocab_size
        self.batch = xgr.BatchGrammarMatcher(max_threads=threads)
        self.matchers: list[Any] = []
        self.bitmask: Any = None
        self.started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        xgr = self.xgr
        rows = input_ids.shape[0]
        if not self.matchers:
            self.matchers = [xgr.GrammarMatcher(self.compiled) for _ in range(rows)]
            self.bitmask = xgr.allocate_token_bitmask(rows, self.vocab_size)
            if scores.device.type == "cuda":
                self.bitmask = self.bitmask.pin_memory()
        if self.started:
            last = input_ids[:, -1].tolist()  # one device-to-host copy for the whole batch
            live = [i for i, m in enumerate(self.matchers) if not m.is_terminated()]
            if live:
                self.batch.batch_accept_token(
                    [self.matchers[i] for i in live], [last[i] for i in live]
                )
        self.started = True
        live = [i for i, m in enumerate(self.matchers) if not m.is_terminated()]
        if live:
            self.batch.batch_fill_next_token_bitmask(
                [self.matchers[i] for i in live], self.bitmask, indices=live
            )
        mask = self.bitmask.to(scores.device, non_blocking=True)
        xgr.apply_token_bitmask_inplace(scores, mask)
        return scores
