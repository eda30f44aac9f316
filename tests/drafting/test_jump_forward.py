"""Jump-forward decoding: the tokens the grammar forces, fed with the token before them in one
forward, through the real engine with tiny random models.

Run as a script with TRITON_INTERPRET=1, it checks the Triton path of the several-token
forward in Triton's CPU interpreter (`test_several_tokens_at_once_in_the_kernels`).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from app.engines.interface import DraftInput  # noqa: E402
from app.engines.local.decoder import MAX_FEED, Decoder, Matchers  # noqa: E402
from app.engines.local.engine import LocalEngine  # noqa: E402
from app.engines.local.options import LocalOptions  # noqa: E402
from tests.drafting.conftest import LIMITS, tiny_engine  # noqa: E402

ANSWER = {
    "high_level_description": 'A sign: "ROMA"',
    "style_description": {
        "aesthetics": "flat, bold",
        "lighting": "noon",
        "medium": "painting",
        "technique": "oil",
    },
    "compositional_deconstruction": {
        "background": "a wall",
        "elements": [
            {"type": "text", "bbox_2d": [1, 22, 333, 4], "text": 'ROMA\n"1610"', "desc": "sign"},
            {"type": "obj", "bbox_2d": [5, 6, 70, 80], "desc": "a cat é"},
        ],
    },
}


def one_prompt(processor: Any) -> Any:
    """One request with an image, as the engine builds it."""
    from PIL import Image

    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    return processor(
        text=[text], images=[Image.new("RGB", (200, 150), (200, 10, 10))], return_tensors="pt"
    )


def check_several_tokens_at_once(device: str, use_kernels: bool) -> None:
    """The last logits and the cache after feeding tokens in one forward (and a run longer
    than MAX_FEED, in two) are those after feeding them one a step."""
    import torch

    from tests.support.random_model import build

    model, processor = build("tiny16", device=device, dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.language_model.layers:  # sharp attention: masks matter
            layer.self_attn.q_proj.weight.mul_(30)
    inputs = one_prompt(processor).to(device)
    stops = {model.generation_config.eos_token_id}
    decoder = Decoder(model, stop_ids=stops, graphs=device == "cuda", use_kernels=use_kernels)
    assert decoder.attention_for(1) == ("triton" if use_kernels else "matmul")
    if use_kernels:
        assert decoder.text_step is not None
        decoder.text_step.choose_products(1)
    length = inputs["input_ids"].shape[1]
    slot = decoder._slot(1, length + 64)
    torch.manual_seed(1)
    for count in (2, 5, MAX_FEED + 4):
        ids = torch.randint(256, (count,)).tolist()  # byte tokens
        with torch.inference_mode():
            decoder._prefill(slot, inputs)
            decoder._feed(slot, ids[:1])  # something written after the prompt already
            before = copy.deepcopy(_state(slot))
            for token in ids:
                slot.token.fill_(token)
                decoder._step(slot)
            want = copy.deepcopy(_state(slot))
            _restore(slot, before)
            forwards = decoder._feed(slot, ids)
            got = _state(slot)
        assert forwards == -(-count // MAX_FEED)
        assert not torch.equal(want["logits"], before["logits"])
        for key, value in want.items():
            torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-4, msg=key)
    if device == "cuda":
        assert set(slot.feed_graphs) == {2, 4, 5, MAX_FEED}


def _state(slot: Any) -> dict[str, Any]:
    state = {
        "logits": slot.logits,
        "mask": slot.mask,
        "positions": slot.positions,
        "write_at": slot.write_at,
    }
    for i, layer in enumerate(slot.cache.layers):
        state[f"keys{i}"], state[f"values{i}"] = layer.keys, layer.values
    return state


def _restore(slot: Any, state: dict[str, Any]) -> None:
    for key, value in _state(slot).items():
        value.copy_(state[key])


def test_several_tokens_fed_at_once_compute_what_one_a_step_computes() -> None:
    check_several_tokens_at_once("cpu", use_kernels=False)


@pytest.mark.slow
def test_several_tokens_at_once_in_the_kernels() -> None:
    from tests.support.interpreter import run_in_interpreter

    run_in_interpreter(Path(__file__), "jump-forward kernel checks passed")


@pytest.mark.gpu
def test_several_tokens_at_once_on_the_gpu() -> None:
    for use_kernels in (True, False):
        check_several_tokens_at_once("cuda", use_kernels)


@pytest.mark.gpu
def test_a_jumping_draft_replayed_from_graphs_decodes_like_one_token_a_step() -> None:
    import torch

    from tests.support.random_model import build

    model, processor = build("tiny16", device="cuda", dtype=torch.float32)
    engine = LocalEngine(model, processor, batch_size=1, max_new_tokens=600, limits=LIMITS)
    batch = engine._prepare(images()[:1])
    runs = []
    for encode in (None, engine._encode, engine._encode):  # captured, then replayed
        runs.append(
            engine.decoder.run(
                batch,
                max_new_tokens=600,
                grammar=engine.grammar,
                closer=engine.closer,
                encode=encode,
            )
        )
    assert runs[1].tokens == runs[2].tokens == runs[0].tokens
    assert runs[1].forwards < 0.75 * runs[0].forwards
    assert engine.decoder.slots[1].feed_graphs
    engine.close()


def _engine(folder: Path, jump: bool, tokens: int = 600) -> LocalEngine:
    return tiny_engine(
        folder,
        batch_size=1,
        max_new_tokens=tokens,
        options=LocalOptions(jump_forward=jump),
    )


def _walk(engine: LocalEngine, text: str, budget: int = 10**6) -> tuple[int, int]:
    """Writes `text` as a model would (each free token the tokenizer's next one for the
    rest of the text, where the mask allows it, else the first the mask allows: the
    closer's, once a short `budget` runs out) through a jumping row, and feeds the same
    tokens one a step to another: after every jump their masks, parsers and budgets must
    agree. The number of jumps and of tokens they fed."""
    import numpy as np

    assert engine.grammar is not None
    vocab = engine.grammar.vocab

    def rows() -> Matchers:
        assert engine.grammar is not None
        return Matchers(
            engine.grammar, 1, 1, engine.vocab_size, engine.device, engine.closer, budget
        )

    def allowed(rows: Matchers, token: int) -> bool:
        return bool((int(rows.bitmask[0, token >> 5]) >> (token & 31)) & 1)

    jumping, single = rows(), rows()
    jumping.encode = engine._encode
    data, at = text.encode(), 0
    stop = engine.compiled.tokenizer_info.stop_token_ids[0]
    canonical, start = {}, 0  # the tokenizer's split of the whole text, by where each starts
    for t in engine._encode(text):
        canonical[start] = t
        start += len(vocab[t])
    jumps = fed = 0
    jumping.fill()
    while not jumping.all_done():
        rest = data[at:].decode(errors="replace")
        token = canonical.get(at) or (engine._encode(rest)[0] if rest else stop)
        if not allowed(jumping, token):
            assert 0 in jumping.ends, rest  # only where the closer writes, or wrote
            bits = np.unpackbits(jumping.bitmask[0].numpy().view(np.uint8), bitorder="little")
            token = int(np.flatnonzero(bits)[0])
        jumping.accept([token])
        forced = jumping.jump(budget)
        for t in [token, *forced]:
            single.fill()
            assert allowed(single, t)
            single.accept([t])
            at += len(vocab[t]) if t != stop else 0
        jumps += bool(forced)
        fed += len(forced)
        jumping.fill()
        single.fill()
        assert np.array_equal(jumping.bitmask.numpy(), single.bitmask.numpy()), rest
        one, other = jumping.parsers[0], single.parsers[0]
        assert one is not None and other is not None
        assert one.stack == other.stack and one.end() == other.end()
        assert jumping.left == single.left and jumping.ends == single.ends
    assert single.all_done() and jumping.left >= 0
    assert budget < 10**6 or at == len(data)
    return jumps, fed


@pytest.mark.parametrize("tokenizer", ["byte-level", "Qwen2.5-VL"])
def test_masks_after_a_jump_equal_those_after_its_tokens_one_at_a_time(
    tokenizer: str, tiny_qwen2vl: Path, real_tiny: Any
) -> None:
    folder = tiny_qwen2vl if tokenizer == "byte-level" else real_tiny("Qwen2.5-VL-7B-Instruct")
    engine = _engine(folder, jump=True)
    text = json.dumps(ANSWER, ensure_ascii=False, separators=(", ", ": "))
    jumps, fed = _walk(engine, text)
    tokens = len(engine._encode(text))
    # Keys and punctuation: a third or more of the answer's tokens, in runs.
    assert jumps >= 10 and fed >= tokens // 4 and fed > jumps, (jumps, fed, tokens)
    # A budget that runs out near the end: the closer writes the end, fed at once too.
    short, short_fed = _walk(engine, text, budget=tokens - tokens // 8)
    assert 1 <= short < jumps and short_fed > short, (short, short_fed)
    engine.close()


def images() -> list[DraftInput]:
    from PIL import Image

    return [
        DraftInput(Image.new("RGB", size, (40 * i, 90, 140)), f"describe image {i}")
        for i, size in enumerate([(320, 240), (500, 500)])
    ]


@pytest.mark.parametrize("budget", [600, 230], ids=["free", "closed"])
def test_a_jumping_draft_is_the_same_caption_in_fewer_forwards(
    budget: int, tiny_qwen2vl: Path
) -> None:
    # The random model writes the same tokens whichever way the forced ones are fed (the
    # byte-level tokenizer splits them as the grammar did, one byte a token); with a short
    # budget its end is written by the closer, with jumps before.
    drafts = {}
    for jump in (False, True):
        engine = _engine(tiny_qwen2vl, jump=jump, tokens=budget)
        batch = engine._prepare(images()[:1])
        result = engine.decoder.run(
            batch,
            max_new_tokens=budget,
            grammar=engine.grammar,
            closer=engine.closer,
            encode=engine._encode if jump else None,
        )
        outputs = engine.draft(images())  # one at a time (batch_size=1)
        drafts[jump] = (result, outputs)
        engine.close()
    (one, one_out), (jumped, jumped_out) = drafts[False], drafts[True]
    assert jumped.tokens == one.tokens and jumped.finished == one.finished == [True]
    assert one.forwards >= len(one.tokens[0]) + 1  # and the stop token's
    assert jumped.forwards < 0.75 * one.forwards
    assert [o.raw for o in jumped_out] == [o.raw for o in one_out]
    for out in jumped_out:
        assert out.error is None and out.caption is not None, out.raw
    # A forced token carries no information: probability 1, as the masked step gives it.
    assert len(jumped.logprobs[0]) == len(jumped.tokens[0])
    assert jumped.logprobs[0].count(0.0) >= jumped.forwards // 3
    for a, b in zip(jumped.logprobs[0], one.logprobs[0], strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_a_jumping_draft_carries_its_fields_confidences(tiny_qwen2vl: Path) -> None:
    engine = _engine(tiny_qwen2vl, jump=True)
    plain = _engine(tiny_qwen2vl, jump=False)
    for jumped, one in zip(engine.draft(images()), plain.draft(images()), strict=True):
        assert jumped.confidence and one.confidence, jumped.raw
        assert jumped.confidence.keys() == one.confidence.keys()
        for field, c in jumped.confidence.items():
            assert 0 < c.least <= c.mean <= 1
            assert c.least == pytest.approx(one.confidence[field].least, abs=1e-4)
    engine.close()
    plain.close()


def test_a_batch_of_several_rows_does_not_jump(tiny_qwen2vl: Path) -> None:
    engine = tiny_engine(
        tiny_qwen2vl,
        max_new_tokens=600,
        options=LocalOptions(jump_forward=True),
    )
    batch = engine._prepare(images())
    result = engine.decoder.run(
        batch,
        max_new_tokens=600,
        grammar=engine.grammar,
        closer=engine.closer,
        encode=engine._encode,
    )
    assert result.forwards >= result.steps
    engine.close()


if __name__ == "__main__":
    from app.engines.local import kernels

    assert kernels.available("cpu"), "run with TRITON_INTERPRET=1"
    check_several_tokens_at_once("cpu", use_kernels=True)
    print("jump-forward kernel checks passed")
