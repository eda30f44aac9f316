"""The strings' bounds, kept token by token beside an unbounded grammar (lengths.py)."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from app.engines.local.lengths import StringLengths
from app.engines.schema import DraftLimits


def _bits(row: Any) -> np.ndarray:
    """Each token's bit of a bitmask row (a NumPy or torch int32 row)."""
    row = row if isinstance(row, np.ndarray) else row.numpy()
    return np.unpackbits(row.view(np.uint8), bitorder="little").astype(bool)


def test_count_each_token_s_characters_as_the_bounded_patterns_do() -> None:
    vocab = [
        b"abc",  # 3 inside a string
        "é".encode(),  # one character, two bytes
        b"\xc3",  # a lead byte: its character
        b"\xa9x",  # a continuation byte belongs to the character before: 1
        b'ab", "',  # 2, then a string opened empty
        b"\\n",  # an escape is one character
        b'\\"q',  # 2 (just after a backslash: 0, an escaped backslash, then the closing quote)
        b'"',  # closes the string (after a backslash: an escaped quote)
        b'x": "' + b"y" * 9,  # 1, then 9 in the string it opens
        b"",
        b': "' + b"z" * 9,  # 2; from outside any string, 9 in the one it opens
    ]
    lengths = StringLengths(vocab, shortest_bound=8)
    assert lengths.inside.tolist() == [3, 1, 1, 1, 2, 1, 2, 0, 1, 0, 2]
    # Just after a backslash the first byte is the escaped character, counted with it.
    assert lengths.after_escape.tolist() == [2, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1]
    words = 1
    # Room for 1: the tokens of 1 character or none, never one that opens 9 in a string.
    assert _bits(lengths.inside_mask(1, False, words))[: len(vocab)].tolist() == [
        False, True, True, True, False, True, False, True, False, True, False,
    ]  # fmt: skip
    assert lengths.inside_mask(3, False, words) is not None  # the 9 characters opened
    assert _bits(lengths.outside_mask(words))[: len(vocab)].tolist() == [True] * 10 + [False]
    roomy = StringLengths(vocab, shortest_bound=9)
    assert roomy.inside_mask(3, False, words) is None  # every token fits
    assert roomy.outside_mask(words) is None
    assert _bits(roomy.inside_mask(0, True, words))[: len(vocab)].tolist() == [
        False, True, True, False, False, False, True, True, True, True, False,
    ]  # fmt: skip


def _walks(tokenizer: Any, vocab_size: int, limits: DraftLimits, walks: int) -> None:
    """Random walks through the decoder's masks (the unbounded grammar with the bounds kept
    beside it) allow, at every step, exactly the tokens xgrammar's grammar of the bounded
    patterns allows; and every answer closed for its budget is one that grammar takes."""
    import xgrammar as xgr

    from app.engines.local.closing import Closer
    from app.engines.local.decoder import Matchers
    from app.engines.local.grammar import compile_grammar, raw_string_grammar
    from app.engines.schema import json_schema

    grammar = compile_grammar(tokenizer, vocab_size, limits, None)
    info = grammar.compiled.tokenizer_info
    ebnf = raw_string_grammar(xgr, json.dumps(json_schema(limits)))
    assert ebnf is not None
    bounded = xgr.GrammarCompiler(info).compile_grammar(ebnf)
    closer = Closer(
        json_schema(limits, bounds="maxLength"),
        vocab=grammar.vocab,
        encode=lambda text: tokenizer.encode(text, add_special_tokens=False),
    )
    cpu = __import__("torch").device("cpu")
    expected = xgr.allocate_token_bitmask(1, vocab_size)
    stops = set(info.stop_token_ids)
    long_first = sorted(range(len(grammar.vocab)), key=lambda t: -len(grammar.vocab[t]))
    rank = {t: n for n, t in enumerate(long_first)}
    rng = random.Random(0)
    narrowed = 0  # steps in a string with less room than the longest token
    whole = 0  # answers written to their end
    for _ in range(walks):
        budget = closer.window + rng.randint(0, 300)  # the answer closed, or written whole
        rows = Matchers(grammar, 1, 1, vocab_size, cpu, closer, budget=budget)
        reference = xgr.GrammarMatcher(bounded)
        text = b""
        for _ in range(budget):
            room = rows.parsers[0].room()  # type: ignore[union-attr]
            narrowed += room is not None and room[0] < grammar.lengths.longest
            rows.fill()
            reference.fill_next_token_bitmask(expected)
            ours = _bits(rows.bitmask[0])[:vocab_size]
            if not rows.ends.get(0):
                assert (ours == _bits(expected[0])[:vocab_size]).all(), text
            allowed = [int(t) for t in np.flatnonzero(ours)]
            choices = [t for t in allowed if t not in stops] or allowed  # or the answer's end
            # Long tokens first, half the time: strings reach their bounds within the walk.
            token = (
                min(choices, key=rank.__getitem__) if rng.random() < 0.5 else rng.choice(choices)
            )
            assert reference.accept_token(token), text
            text += b"" if token in stops else grammar.vocab[token]
            rows.accept([token])
            if rows.all_done():
                assert reference.is_terminated()
                json.loads(text.decode(errors="replace"))  # xgrammar lets odd UTF-8 by
                whole += 1
                break
    assert narrowed > 5 * walks  # the walks reach their strings' bounds
    assert whole > walks // 2


@pytest.mark.slow
def test_the_kept_bounds_allow_what_the_bounded_patterns_allow_with_a_bpe_tokenizer() -> None:
    # A byte-level BPE like Qwen's (multi-character tokens, quotes and escapes among them),
    # trained on the standard library's source so that it builds on any machine.
    from tests.support.random_model import python_sources, tokenizer

    tok = tokenizer(python_sources(2), vocab_size=3000)
    _walks(tok, len(tok), DraftLimits.scaled(max_chars=8, max_elements=2), walks=40)


@pytest.mark.slow
def test_the_kept_bounds_allow_what_the_bounded_patterns_allow_with_qwen_s_tokenizer() -> None:
    from tests.support.random_model import real_folder, real_tokenizer

    folder = real_folder("Qwen2.5-VL-7B-Instruct")
    if folder is None:
        pytest.skip("the real Qwen2.5-VL tokenizer files are not here (../shared/models)")
    tok, _ = real_tokenizer(folder)
    _walks(tok, 152064, DraftLimits.scaled(max_chars=24, max_elements=2), walks=12)
