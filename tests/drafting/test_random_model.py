"""The offline tokenizers of the random-weight models used by tests and benchmarks."""

from __future__ import annotations

from app.drafting.prompt import build_prompt
from tests.support.random_model import SPECIAL_TOKENS, python_sources, tokenizer


def test_a_trained_bpe_gives_prompts_of_a_real_tokenizer_s_length_and_round_trips() -> None:
    prompt = build_prompt(width=1024, height=768, convention="qwen2vl", style_block={})
    byte = tokenizer()
    bpe = tokenizer(python_sources(megabytes=3), vocab_size=8000)
    assert len(byte(prompt)["input_ids"]) == len(prompt.encode())
    n = len(bpe(prompt)["input_ids"])
    # English prose: about four characters a token, as Qwen's own tokenizer gives.
    assert len(prompt) / 6 < n < len(prompt) / 2.5
    assert bpe.decode(bpe(prompt)["input_ids"]) == prompt
    for special in SPECIAL_TOKENS:  # single tokens, as the processor and the grammar expect
        assert len(bpe(special, add_special_tokens=False)["input_ids"]) == 1
