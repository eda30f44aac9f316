"""How much of an answer the draft grammar forces: the lever of jump-forward decoding.

Walks a real-looking answer (bench/grammar.py's) through the grammar over a real Qwen
vocabulary, token by token as the model writes it. Where the grammar allows one string only
(keys, punctuation: xgrammar's `find_jump_forward_string`), the tokens inside it need no
choice: a decoder could feed them with the token before them, in the same forward. Prints
the share of tokens wholly forced, and the runs they come in. CPU only.

    python bench/forced_tokens.py [--models ../shared/models] [--elements 2]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engines.local.grammar import grammar_schema, raw_string_grammar  # noqa: E402
from app.engines.schema import DEFAULT_LIMITS  # noqa: E402
from bench.grammar import ANSWER, VOCAB  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path, default=ROOT.parent / "shared" / "models")
    ap.add_argument("--elements", type=int, default=2, help="elements in the answer")
    args = ap.parse_args()
    import xgrammar as xgr
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.models / "Qwen2.5-VL-7B-Instruct")
    schema = json.dumps(grammar_schema(DEFAULT_LIMITS.for_convention("qwen25vl", max_side=8192)))
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tok, vocab_size=VOCAB))
    ebnf = raw_string_grammar(xgr, schema)
    grammar = (
        compiler.compile_grammar(ebnf)
        if ebnf is not None
        else compiler.compile_json_schema(schema, any_whitespace=False)
    )
    answer = json.loads(json.dumps(ANSWER))
    elements = answer["compositional_deconstruction"]["elements"]
    while len(elements) < args.elements:
        elements.append(dict(elements[0], desc=f"a figure {len(elements)}"))
    del elements[args.elements :]
    text = json.dumps(answer, ensure_ascii=False, separators=(", ", ": "))
    ids = tok.encode(text, add_special_tokens=False)

    matcher = xgr.GrammarMatcher(grammar)
    forced: set[int] = set()  # character positions the grammar allows one way only
    starts, at = [], 0
    for token in ids:
        jump = matcher.find_jump_forward_string()
        forced.update(range(at, at + len(jump)))
        starts.append(at)
        at += len(tok.decode([token]))
        assert matcher.accept_token(token), f"the grammar refuses the answer at {at}"
    ends = starts[1:] + [at]
    wholly = [all(c in forced for c in range(s, e)) for s, e in zip(starts, ends, strict=True)]
    runs = sum(1 for i, f in enumerate(wholly) if f and (i == 0 or not wholly[i - 1]))
    print(
        json.dumps(
            {
                "elements": args.elements,
                "tokens": len(ids),
                "forced_tokens": sum(wholly),
                "forced_share": round(sum(wholly) / len(ids), 3),
                "forced_runs": runs,
                "longest_run": max(
                    (len(r) for r in "".join("x" if f else " " for f in wholly).split()),
                    default=0,
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
