"""Jump-forward decoding at batch 1 (a one-image re-draft) on a GPU.

The grammar forces 32-40 % of an answer's tokens (bench/forced_tokens.py); with
LocalOptions(jump_forward=True) each forced run is fed with the token before it in one
forward. This prints one JSON line per result:

- "step": the graph-replayed forward of q tokens at batch 1 (q = 1: the one-token step; from
  2 the several-token one), GPU time from CUDA events over --replays replays, q = 1..12;
- "draft": a one-image draft with jump-forward off and on, alternating in one engine, the
  budget NEW_TOKENS (450) and no minimum (rows end by the closer or their stop token): the
  decode's seconds (prefill included) with its tokens and forwards, and the whole draft's
  seconds (preparing the image and parsing included). Random weights: the model writes
  noise to its strings' bounds, so the forced share is not a real answer's;
- "projection": a real 8-element answer (bench/grammar.py's, as bench/forced_tokens.py
  builds it) walked through the engine's own grammar and jump-forward, each free token the
  tokenizer's next one: its forwards, and its decode time projected as the sum of the
  measured step of each forward's length, against one token a step; with the measured
  prefill (a one-token run), the projected re-draft (issue 30's goal: at most 0.6 s).

    python bench/jump_forward.py 2b --tokenizer qwen [--models ../shared/models] [--rounds 3]

`tiny` runs a tiny model on the CPU (eager, no graphs): a smoke run of every path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engines.local.engine import LocalEngine  # noqa: E402
from app.engines.local.options import LocalOptions  # noqa: E402
from bench.draft import NEW_TOKENS, QWEN3, images, load_model, sync, timed  # noqa: E402
from bench.grammar import ANSWER  # noqa: E402
from tests.support.random_model import REAL_MODELS  # noqa: E402

STEP_COUNTS = range(1, 13)
ELEMENTS = 8  # bench/results/2026-12-01-cpu-forced-tokens.jsonl: 529 tokens, 212 forced


def step_times(engine: LocalEngine, replays: int) -> dict[int, float]:
    """Milliseconds of the forward of q tokens at batch 1, replayed from its CUDA graph (on
    the CPU: run eagerly, timed by the clock), for each q in STEP_COUNTS."""
    import torch

    decoder = engine.decoder
    inputs = engine._prepare(images(1, engine.convention))
    length = inputs["input_ids"].shape[1]
    # Room for the drafts after (the slot and its graphs are kept for them).
    slot = decoder._slot(1, length + max(engine.max_new_tokens, max(STEP_COUNTS) * (replays + 2)))
    if decoder.text_step is not None and decoder.attention_for(1) == "triton":
        decoder.text_step.choose_products(1)
    out = {}
    with torch.inference_mode():
        decoder._prefill(slot, inputs)
        decoder._feed_buffers(slot)
        slot.feed.random_(0, 256)  # tokens every vocabulary here has
        at, positions = slot.write_at.clone(), slot.positions.clone()
        for q in STEP_COUNTS:
            slot.write_at.copy_(at)
            slot.positions.copy_(positions)

            def step(q: int = q) -> None:
                if q == 1:
                    decoder._step(slot)
                else:
                    decoder._step_many(slot, q)

            step()  # captures (on a GPU)
            sync()
            if torch.cuda.is_available():
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
                start.record()
                for _ in range(replays):
                    step()
                end.record()
                end.synchronize()
                ms = start.elapsed_time(end) / replays
            else:
                t = time.perf_counter()
                for _ in range(replays):
                    step()
                ms = (time.perf_counter() - t) * 1e3 / replays
            out[q] = ms
            print(json.dumps({"kind": "step", "q": q, "ms": round(ms, 3)}), flush=True)
    return out


def drafts(engine: LocalEngine, rounds: int) -> list[dict[str, Any]]:
    """A one-image draft with jump-forward off and on, alternating, `rounds` times each."""
    inputs = images(1, engine.convention)
    rows = []
    for n in range(rounds + 1):  # the first round warms up (captures the graphs)
        for on in (False, True):
            engine.jump_forward = on
            prepared = engine._prepare(inputs)
            sync()
            t = time.perf_counter()
            result = engine._decode(prepared)  # min_steps 0: rows end by themselves
            sync()
            decode = time.perf_counter() - t
            whole = timed(engine, inputs)
            row = {
                "kind": "draft",
                "jump_forward": on,
                "warmup": n == 0,
                "decode_s": round(decode, 4),
                "draft_s": round(whole, 4),
                "tokens": len(result.tokens[0]),
                "forwards": result.forwards,
                "finished": result.finished[0],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def answer_feeds(engine: LocalEngine) -> tuple[list[int], int]:
    """The forwards' lengths (1 + the tokens fed with the free one) that jump-forward gives a
    real answer of ELEMENTS elements, each free token the tokenizer's next one for the rest
    of the answer; and its tokens one a step."""
    from app.engines.local.decoder import MAX_FEED, Matchers

    answer = json.loads(json.dumps(ANSWER))
    elements = answer["compositional_deconstruction"]["elements"]
    while len(elements) < ELEMENTS:
        elements.append(dict(elements[0], desc=f"a figure {len(elements)}"))
    text = json.dumps(answer, ensure_ascii=False, separators=(", ", ": "))
    assert engine.grammar is not None and engine.compiled is not None
    vocab = engine.grammar.vocab
    canonical, start = {}, 0
    whole = engine._encode(text)
    for t in whole:
        canonical[start] = t
        start += len(vocab[t])
    row = Matchers(
        engine.grammar, 1, 1, engine.vocab_size, engine.device, engine.closer, budget=10**6
    )
    row.encode = engine._encode
    stop = engine.compiled.tokenizer_info.stop_token_ids[0]
    data, at, feeds = text.encode(), 0, []
    while not row.all_done():
        token = canonical.get(at) or (
            engine._encode(data[at:].decode(errors="replace"))[0] if at < len(data) else stop
        )
        row.accept([token])
        forced = row.jump(10**6)
        at += sum(len(vocab[t]) for t in [token, *forced] if t != stop)
        fed = 1 + len(forced)
        feeds += [MAX_FEED] * (fed // MAX_FEED) + ([fed % MAX_FEED] if fed % MAX_FEED else [])
    return feeds, len(whole) + 1  # and the stop token


def prefill_s(engine: LocalEngine, rounds: int) -> float:
    """Seconds of a one-image prefill and its first token (a one-token run), the best of
    `rounds`, the image prepared beforehand."""
    prepared = engine._prepare(images(1, engine.convention))
    best = float("inf")
    for _ in range(rounds):
        sync()
        t = time.perf_counter()
        engine.decoder.run(prepared, max_new_tokens=1, grammar=engine.grammar)
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def projection(engine: LocalEngine, ms: dict[int, float], prefill: float) -> dict[str, Any]:
    """The real answer's decode time from the measured steps, with and without jump-forward,
    and its re-draft's (the prefill added)."""
    feeds, tokens = answer_feeds(engine)
    missing = sorted({q for q in feeds if q not in ms})
    longest = max(ms)
    # A forward longer than measured: the longest measured, scaled by its length (never seen
    # in a real answer below 12).
    cost = {q: ms.get(q, ms[longest] * q / longest) for q in set(feeds)}
    jumped = sum(cost[q] for q in feeds)
    plain = tokens * ms[1]
    counts = {q: feeds.count(q) for q in sorted(set(feeds))}
    return {
        "kind": "projection",
        "elements": ELEMENTS,
        "tokens": tokens,
        "forwards": len(feeds),
        "forced_tokens": sum(feeds) - len(feeds),
        "forced_runs": sum(1 for q in feeds if q > 1),
        "forward_lengths": counts,
        "unmeasured_lengths": missing,
        "one_a_step_ms": round(plain, 1),
        "jump_forward_ms": round(jumped, 1),
        "ratio": round(jumped / plain, 3),
        "prefill_s": round(prefill, 4),
        "redraft_one_a_step_s": round(prefill + plain / 1e3, 3),
        "redraft_jump_forward_s": round(prefill + jumped / 1e3, 3),
    }


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=["2b", "7b", *QWEN3, "tiny"], help="tiny: CPU smoke run")
    ap.add_argument("--tokenizer", choices=["byte", "bpe", "qwen"], default="qwen")
    ap.add_argument("--models", type=Path, default=REAL_MODELS, help="real Qwen files")
    ap.add_argument("--rounds", type=int, default=3, help="timed drafts each way")
    ap.add_argument("--replays", type=int, default=50, help="replays a step time is over")
    args = ap.parse_args()
    print(
        json.dumps(
            {
                "kind": "setup",
                "shape": args.shape,
                "tokenizer": args.tokenizer,
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                "new_tokens": NEW_TOKENS,
            }
        ),
        flush=True,
    )
    model, processor = load_model(args.shape, args.tokenizer, args.models)
    engine = LocalEngine(
        model,
        processor,
        batch_size=1,
        max_new_tokens=NEW_TOKENS,
        options=LocalOptions(jump_forward=True),
    )
    ms = step_times(engine, args.replays if torch.cuda.is_available() else 2)
    drafts(engine, args.rounds if torch.cuda.is_available() else 1)
    prefill = prefill_s(engine, args.rounds)
    print(json.dumps(projection(engine, ms, prefill)), flush=True)
    engine.close()


if __name__ == "__main__":
    main()
