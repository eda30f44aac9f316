"""The draft grammar over a real Qwen vocabulary: strings bounded in the grammar (before)
against unbounded with their bounds kept beside it (app/engines/local/lengths.py, now).

For each: the compile time, the size kept on disk and the time to read it back (what a
first-ever and a next start pay), and the CPU time of one decode step's masks for a batch
(fill, the bounds, accepting the tokens), walking every row through a real answer. Printed
as ratios, now against before, both measured in this run. CPU only.

    python bench/grammar.py [--models ../shared/models] [--rows 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engines.local.closing import Closer  # noqa: E402
from app.engines.local.decoder import Matchers  # noqa: E402
from app.engines.local.grammar import compile_grammar, raw_string_grammar  # noqa: E402
from app.engines.schema import DEFAULT_LIMITS, json_schema  # noqa: E402

VOCAB = 152064  # Qwen2.5-VL-7B's embedding rows

ANSWER = {
    "high_level_description": ("A quiet harbour at dusk, boats resting on still water. " * 8)[:399],
    "style_description": {
        "aesthetics": ("soft muted tones, a calm and balanced frame " * 5)[:199],
        "lighting": "warm low sun from the left",
        "medium": "painting",
        "technique": "oil on canvas, visible brush strokes",
    },
    "compositional_deconstruction": {
        "background": "a pale sky over calm water",
        "elements": [
            {"type": "obj", "bbox_2d": [12, 220, 310, 990], "desc": "a red fishing boat"},
            {"type": "text", "bbox_2d": [0, 0, 999, 50], "text": 'HARBOUR\n"CAFÉ"', "desc": "sign"},
        ],
    },
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, default=ROOT.parent / "shared" / "models")
    ap.add_argument("--rows", type=int, default=256)
    args = ap.parse_args()
    import torch
    import xgrammar as xgr
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.models / "Qwen2.5-VL-7B-Instruct")
    from importlib.metadata import version

    report: dict = {"rows": args.rows, "xgrammar": version("xgrammar")}

    t = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=VOCAB)
    ebnf = raw_string_grammar(xgr, json.dumps(json_schema(DEFAULT_LIMITS)))
    bounded = xgr.GrammarCompiler(info, cache_enabled=False).compile_grammar(ebnf)
    report["before_compile_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    now = compile_grammar(tok, VOCAB, DEFAULT_LIMITS, None)  # vocabulary, grammar, bounds
    report["now_compile_s"] = round(time.perf_counter() - t, 2)
    for name, compiled in (("before", bounded), ("now", now.compiled)):
        text = info.serialize_json() + compiled.serialize_json()
        report[f"{name}_kept_MB"] = round(len(text) / 1e6, 1)
        t = time.perf_counter()
        xgr.CompiledGrammar.deserialize_json(
            compiled.serialize_json(), xgr.TokenizerInfo.deserialize_json(info.serialize_json())
        )
        report[f"{name}_read_back_s"] = round(time.perf_counter() - t, 2)

    written = json.dumps(ANSWER, ensure_ascii=False, separators=(", ", ": "))
    ids = tok.encode(written, add_special_tokens=False)
    rows, cpu = args.rows, torch.device("cpu")
    bitmask = xgr.allocate_token_bitmask(rows, VOCAB)
    filler = xgr.BatchGrammarMatcher(max_threads=8)
    matchers = [xgr.GrammarMatcher(bounded) for _ in range(rows)]
    t = time.perf_counter()
    for token in ids:
        filler.batch_fill_next_token_bitmask(matchers, bitmask)
        filler.batch_accept_token(matchers, [token] * rows)
    report["before_step_ms"] = round((time.perf_counter() - t) / len(ids) * 1e3, 3)
    closer = Closer(
        json_schema(DEFAULT_LIMITS, bounds="maxLength"),
        vocab=now.vocab,
        encode=lambda text: tok.encode(text, add_special_tokens=False),
    )
    masks = Matchers(now, rows, rows, VOCAB, cpu, closer, budget=10**6)
    t = time.perf_counter()
    for token in ids:
        masks.fill()
        masks.accept([token] * rows)
    report["now_step_ms"] = round((time.perf_counter() - t) / len(ids) * 1e3, 3)
    report["answer_tokens"] = len(ids)
    for key in ("compile_s", "kept_MB", "read_back_s", "step_ms"):
        report[f"{key}_now_over_before"] = round(report[f"now_{key}"] / report[f"before_{key}"], 3)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
