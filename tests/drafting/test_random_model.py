"""The offline tokenizers of the random-weight models used by tests and benchmarks."""

from __future__ import annotations

import pytest

from app.engines.prompt import build_prompt
from tests.support.random_model import (
    REAL_MODELS,
    SPECIAL_TOKENS,
    build,
    python_sources,
    real_folder,
    real_tokenizer,
    tokenizer,
)


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


def test_a_benchmark_model_can_take_the_real_qwen_tokenizer_and_chat_template() -> None:
    folder = real_folder("Qwen2.5-VL-7B-Instruct")
    if folder is None:
        pytest.skip(f"the real Qwen2.5-VL files are not here ({REAL_MODELS})")
    tok, template = real_tokenizer(folder)
    model, processor = build("tiny", tok=tok, chat_template=template)
    prompt = build_prompt(width=1024, height=768, convention="qwen2vl", style_block={})
    chat = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert chat.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")
    assert model.get_output_embeddings().weight.shape[0] == len(tok) > 151_000
    # The special tokens keep Qwen's own ids, which the model's config names.
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    n = len(tok(prompt)["input_ids"])
    assert len(prompt) / 6 < n < len(prompt) / 2.5
