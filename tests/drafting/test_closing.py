"""Every answer closes within its token budget: the shortest valid end of a half answer."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from app.config import Settings
from app.drafting.open_engine import max_new_tokens
from app.engines.interface import DraftInput
from app.engines.local.closing import Closer
from app.engines.local.engine import LocalEngine
from app.engines.schema import DraftLimits, json_schema


def _allowed(mask: object, vocab: int) -> list[int]:
    row = mask[0].tolist()  # type: ignore[index]
    return [t for t in range(vocab) if (row[t >> 5] >> (t & 31)) & 1]


@pytest.mark.slow
@pytest.mark.parametrize("strings", ["raw", "json"])
def test_the_shortest_end_of_any_grammar_prefix_completes_a_valid_answer(strings: str) -> None:
    # Random walks through the grammar, each stopped anywhere: the prefix plus its end is an
    # answer the grammar accepts whole (the stop token is allowed next) and that parses. The
    # engine's grammar ("raw": escapes allowed in strings) and xgrammar's JSON mode alike.
    import xgrammar as xgr

    from app.engines.local.grammar import raw_string_grammar
    from tests.support.random_model import tokenizer

    schema = json_schema(DraftLimits.scaled(max_chars=6, max_elements=2))
    tok = tokenizer()
    info = xgr.TokenizerInfo.from_huggingface(tok)
    compiler = xgr.GrammarCompiler(info)
    ebnf = raw_string_grammar(xgr, json.dumps(schema))
    assert ebnf is not None
    compiled = (
        compiler.compile_grammar(ebnf)
        if strings == "raw"
        else compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
    )
    closer = Closer(schema, vocab=info.decoded_vocab, encode=tok.encode)
    rng = random.Random(0)
    mask = xgr.allocate_token_bitmask(1, info.vocab_size)
    stops = set(info.stop_token_ids)
    for _ in range(60):
        walker, parser, text = xgr.GrammarMatcher(compiled), closer.parser(), b""
        for _ in range(rng.randint(0, 260)):
            walker.fill_next_token_bitmask(mask)
            choices = [t for t in _allowed(mask, info.vocab_size) if t not in stops]
            if not choices:
                break
            token = rng.choice(choices)
            assert walker.accept_token(token)
            text += info.decoded_vocab[token]
            parser.feed(info.decoded_vocab[token])
        end = parser.end()
        whole = xgr.GrammarMatcher(compiled)
        assert whole.accept_string(text + end), (text, end)
        whole.fill_next_token_bitmask(mask)
        assert stops & set(_allowed(mask, info.vocab_size)), (text, end)
        json.loads((text + end).decode(errors="replace"))
        # The end is written with tokens the grammar takes one after another.
        walker_tokens = closer.tokens(end)
        assert b"".join(info.decoded_vocab[t] for t in walker_tokens) == end
        for token in walker_tokens:
            assert walker.accept_token(token)


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["default", 1024, 400])
def test_a_byte_level_model_captions_every_image_within_its_budget(
    tiny_qwen2vl: Path, budget: str | int
) -> None:
    # A random model writes long strings: at the default limits (about 6,000 characters at
    # most) a budget of 1,024 tokens (the default until the budget was derived from the
    # bounds) or 400 cut every answer before the answer was closed for it.
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    tokens = max_new_tokens(defaults) if budget == "default" else int(budget)
    engine = LocalEngine.load(
        str(tiny_qwen2vl),
        device="cpu",
        max_pixels=64 * 28 * 28,
        batch_size=3,
        max_new_tokens=tokens,
    )
    inputs = [DraftInput(Image.new("RGB", (200, 160), (30 * i, 80, 120)), "x") for i in range(3)]
    outputs = engine.draft(inputs)
    for out in outputs:
        assert out.error is None, out.raw[-200:]
        assert out.caption is not None
        assert len(out.raw.encode()) <= tokens  # one byte a token
