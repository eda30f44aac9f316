"""The local engine through the real load and generate path, with tiny random models."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.engines.interface import DraftError, DraftInput
from app.engines.local.decoder import Matchers
from app.engines.local.engine import LocalEngine
from app.engines.local.options import LocalOptions
from app.engines.schema import DraftLimits
from tests.drafting.conftest import LIMITS, MAX_CHARS, MAX_ELEMENTS, TOKENS, sharpen, tiny_engine
from tests.drafting.kernel_checks import image_prompts


def images() -> list[DraftInput]:
    sizes = [(320, 240), (240, 420), (500, 500), (700, 300)]
    return [
        DraftInput(Image.new("RGB", s, (40 * i, 90, 140)), f"describe image {i}")
        for i, s in enumerate(sizes)
    ]


@pytest.mark.parametrize("family", ["tiny_qwen2vl", "tiny_qwen25vl"])
def test_every_output_is_schema_valid_json(family: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(family)
    engine = LocalEngine.load(
        str(path),
        device="cpu",
        batch_size=3,  # 4 images: a full batch and a partial one, padded on the left
        max_pixels=64 * 28 * 28,
        max_new_tokens=TOKENS,
        limits=LIMITS,
    )
    assert engine.convention == ("qwen25vl" if family == "tiny_qwen25vl" else "qwen2vl")
    outputs = engine.draft(images())
    assert len(outputs) == 4
    for out in outputs:
        assert out.error is None, out.raw
        data = json.loads(out.raw)
        assert set(data) == {
            "high_level_description",
            "style_description",
            "compositional_deconstruction",
        }
        # A random model writes every string to its bound (kept by lengths.py, not the
        # grammar): none goes past it.
        assert len(data["high_level_description"]) <= LIMITS.description
        style = data["style_description"]
        assert all(len(style[k]) <= LIMITS.style_field for k in ("aesthetics", "lighting"))
        assert len(style["technique"]) <= LIMITS.style_field
        comp = data["compositional_deconstruction"]
        assert len(comp["background"]) <= LIMITS.background
        assert len(comp["elements"]) <= MAX_ELEMENTS
        for element in comp["elements"]:
            assert len(element["desc"]) <= LIMITS.desc
            assert len(element.get("text", "")) <= LIMITS.text
        assert out.caption is not None
        for e in out.caption.composition.elements:
            assert e.box is None or all(0 <= v <= 1 for v in e.box)


def test_each_image_gets_its_own_draft_whatever_the_order(tiny_qwen2vl: Path) -> None:
    # The engine drafts images of one size side by side (sorted by size, in batches of 2
    # here): every output must still come back in the place of its own image.
    engine = tiny_engine(tiny_qwen2vl)
    given = images() + [images()[1]]  # two images of one size, apart
    forward = [o.raw for o in engine.draft(given)]
    backward = [o.raw for o in engine.draft(given[::-1])][::-1]
    assert forward == backward
    assert len(set(forward)) > 1  # the images' drafts differ, so a mix-up would show
    assert forward[1] == forward[4]  # the same image, the same draft


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["Qwen2.5-VL-7B-Instruct", "Qwen3-VL-4B-Instruct", "Qwen3-VL-8B-Instruct"]
)
def test_tiny_models_around_the_real_qwen_files_draft_valid_captions(
    name: str, real_tiny: Any
) -> None:
    # The real loading path over a user's download, weights aside: the processor from
    # preprocessor_config.json, the real chat template and the real 151k vocabulary, which
    # the grammar is compiled for.
    engine = LocalEngine.load(
        str(real_tiny(name)),
        device="cpu",
        batch_size=2,
        max_pixels=64 * 32 * 32,
        max_new_tokens=TOKENS,
        limits=LIMITS,
    )
    qwen3 = name.startswith("Qwen3")
    assert engine.convention == ("qwen3vl" if qwen3 else "qwen25vl")
    assert engine.processor.image_processor.patch_size == (16 if qwen3 else 14)
    assert len(engine.processor.tokenizer) > 151_000
    text = engine._texts(images()[:1])[0]
    # Qwen2.5-VL's template adds its default system prompt; Qwen3-VL's has none.
    assert ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>" in text) != qwen3
    outputs = engine.draft(images()[:3])
    assert len(outputs) == 3
    for out in outputs:
        assert out.error is None, out.raw
        assert out.caption is not None
        for e in out.caption.composition.elements:
            assert e.box is None or all(0 <= v <= 1 for v in e.box)
    # The confidences' token bytes come from the grammar's table: the same bytes as the
    # tokenizer's own token strings give, for every token a draft can hold.
    tokenizer = engine.processor.tokenizer
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    assert engine.grammar is not None
    looked_up = engine._token_bytes(ids)
    assert looked_up == engine._bytes_from_strings(ids)
    assert all(b is engine.grammar.vocab[i] for i, b in zip(ids[:1000], looked_up, strict=False))


def test_the_compiled_grammar_is_kept_for_the_next_start(
    tiny_qwen2vl: Path, tmp_path: Path
) -> None:
    def start(limits: DraftLimits = LIMITS) -> LocalEngine:
        return tiny_engine(
            tiny_qwen2vl,
            limits=limits,
            cache_dir=tmp_path / "cache",
        )

    (tmp_path / "cache").mkdir()
    # The formats before (the second with bounded strings, hundreds of MB), never read now,
    # and a part file a stopped start left, are removed; what else is there stays.
    cache = tmp_path / "cache"
    earlier = [cache / f"grammar-{'0a' * 16}.json", cache / f"grammar-{'4b' * 16}.xgrammar"]
    left = cache / f"grammar-v3-{'5c' * 16}.123.part"
    others = [cache / "grammar-notes.txt", cache / f"grammar-v3-{'6d' * 16}.456.part"]
    for path in [*earlier, left, *others]:
        path.write_text("{}")
    os.utime(left, (time.time() - 2 * 3600,) * 2)
    (cache / f"grammar-{'7e' * 16}.json.d").mkdir()  # not a file: kept, and no failure
    first = start()
    raw = first.draft(images()[:1])[0].raw
    first.close()  # waits for the grammar to be written (on a thread of its own)
    assert not any(path.exists() for path in [*earlier, left])
    assert all(path.exists() for path in others)
    for path in others:
        path.unlink()
    (cache / f"grammar-{'7e' * 16}.json.d").rmdir()
    [kept] = (tmp_path / "cache").glob("grammar-*")
    made = kept.stat().st_mtime_ns
    second = start()  # reads the grammar back: the file is not written again
    assert second.draft(images()[:1])[0].raw == raw
    second.close()
    assert kept.stat().st_mtime_ns == made
    # Other string bounds are the same grammar (lengths.py keeps them), read back too.
    start(DraftLimits.scaled(max_chars=MAX_CHARS + 1, max_elements=MAX_ELEMENTS)).close()
    assert list((tmp_path / "cache").glob("grammar-*")) == [kept]
    assert kept.stat().st_mtime_ns == made
    # Another number of elements is another grammar, kept beside it.
    start(DraftLimits.scaled(max_chars=MAX_CHARS, max_elements=MAX_ELEMENTS + 1)).close()
    assert len(list((tmp_path / "cache").glob("grammar-*"))) == 2
    # A damaged file, or one cut short, is compiled again and replaced, never fatal.
    whole = kept.read_bytes()
    for damaged in (b"{not json", whole[: len(whole) // 2]):
        kept.write_bytes(damaged)
        third = start()
        assert third.draft(images()[:1])[0].caption is not None
        third.close()
        assert kept.read_bytes() == whole


def test_a_budget_too_small_is_reported_as_cut(tiny_qwen2vl: Path) -> None:
    engine = LocalEngine.load(
        str(tiny_qwen2vl), device="cpu", max_pixels=64 * 28 * 28, max_new_tokens=20, limits=LIMITS
    )
    out = engine.draft(images()[:1])[0]
    assert out.caption is None
    assert out.error == "the answer was cut at the token limit"
    assert out.raw == '{"high_level_descrip'  # kept for inspection


def test_loading_fetches_no_kernels_from_the_hub(
    tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers swaps layers for Hub kernels by default where `kernels` is installed: a
    download as the model loads, which fails offline on a GPU."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = LocalEngine.load(str(tiny_qwen2vl), device="cpu", max_new_tokens=TOKENS)
    assert engine.model.use_kernels is False


def test_missing_model_gives_a_way_forward(tmp_path: Path) -> None:
    with pytest.raises(DraftError) as e:
        LocalEngine.load("Qwen/Qwen2-VL-7B-Instruct-nowhere", device="cpu")
    assert "hf download Qwen/Qwen2-VL-7B-Instruct-nowhere" in e.value.message
    with pytest.raises(DraftError) as e:
        LocalEngine.load(str(tmp_path / "no-such-folder"), device="cpu")
    assert "not a local folder and not in the Hugging Face cache" in e.value.message


@pytest.mark.parametrize("lean", [True, False], ids=["lean-step", "model-step"])
@pytest.mark.parametrize("sharpen", [1.0, 300.0])
def test_decoder_gives_exactly_what_transformers_generate_gives(sharpen: float, lean: bool) -> None:
    # Atelier's own loop (static cache, 4D mask, rope positions it computes itself) against
    # transformers' greedy generate, on a left-padded batch, both attentions. Random attention
    # is nearly uniform, which hides wrong positions; sharpened, it hides a wrong pad mask:
    # both are checked.
    import torch

    from app.engines.local.attention import use_grouped_attention
    from app.engines.local.decoder import Decoder
    from tests.support.random_model import build

    model, processor = build("tiny")
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(sharpen)
            layer.self_attn.k_proj.weight.mul_(sharpen)
    batch = image_prompts(processor, "cpu")
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos])
    with torch.inference_mode():
        want = model.generate(**batch, max_new_tokens=40, do_sample=False)
    new = want[:, batch["input_ids"].shape[1] :].tolist()
    expected = [row[: next((i for i, t in enumerate(row) if t in stops), None)] for row in new]
    assert max(len(row) for row in expected) > 10
    decoder = Decoder(model, stop_ids=stops, graphs=False, lean_step=lean)
    assert (decoder.text_step is not None) == lean
    for grouped in (False, True):
        if grouped:
            use_grouped_attention(model)
        assert decoder.run(batch, max_new_tokens=40).tokens == expected
        # The slot's cache is reused for the next batch of the same size.
        assert decoder.run(batch, max_new_tokens=40).tokens == expected
    assert len(decoder.slots) == 1


def test_grouped_attention_decodes_exactly_like_transformers_sdpa() -> None:
    import torch

    from app.engines.local.attention import use_grouped_attention
    from tests.support.random_model import build

    model, processor = build("tiny")  # 4 query heads share 2 KV heads
    batch = image_prompts(processor, "cpu")
    with torch.inference_mode():
        plain = [
            model.generate(**batch, max_new_tokens=30, do_sample=False, cache_implementation=c)
            for c in (None, "static")
        ]
        use_grouped_attention(model)
        grouped = [
            model.generate(**batch, max_new_tokens=30, do_sample=False, cache_implementation=c)
            for c in (None, "static")
        ]
    assert model.config._attn_implementation == "atelier_grouped_sdpa"
    assert all(torch.equal(a, b) for a, b in zip(plain, grouped, strict=True))


@pytest.mark.gpu
def test_graph_replayed_steps_decode_like_eager_ones_on_the_gpu() -> None:
    import torch

    from app.engines.local.decoder import Decoder
    from tests.support.random_model import build

    model, processor = build("tiny", device="cuda", dtype=torch.float32)
    batch = image_prompts(processor, "cpu").to("cuda")
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos])
    eager = Decoder(model, stop_ids=stops, graphs=False).run(batch, max_new_tokens=60)
    graphs = Decoder(model, stop_ids=stops, graphs=True)
    for _ in range(2):  # captured on the first batch, replayed on the second
        assert graphs.run(batch, max_new_tokens=60).tokens == eager.tokens
    assert graphs.slots[2].graph is not None


def test_fused_rms_norm_computes_what_transformers_norm_computes() -> None:
    import torch

    from app.engines.local.fused import use_fused_rms_norm
    from tests.support.random_model import build

    model, _ = build("tiny", dtype=torch.bfloat16)
    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]
    x = torch.randn(3, 7, norms[0].weight.shape[0], dtype=torch.bfloat16) * 4
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 1.5)
        before = [m(x) for m in norms]
        assert use_fused_rms_norm(model) == len(norms) == 5  # 2 layers x 2, and the last
        after = [m(x) for m in norms]
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, atol=0.02, rtol=0.02)  # one bf16 rounding apart
        assert not torch.equal(a * 0, a)


def _tiny_qwen3vl() -> object:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = Qwen3VLConfig(
        text_config={
            "vocab_size": 300,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "deepstack_visual_indexes": [0],
        },
    )
    return Qwen3VLForConditionalGeneration(config).eval()


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_lean_step_computes_the_model_s_own_next_logits(family: str) -> None:
    # Prefill through the model into a static cache, then ten steps each way from copies of
    # it: the lean step's logits and cache writes must be the model forward's, on a
    # left-padded batch (Qwen2/2.5-VL prompts carry an image: positions with rope deltas).
    import copy
    import inspect

    import torch
    from transformers import StaticCache

    from app.engines.local.text_step import TextStep
    from tests.support.random_model import build

    torch.manual_seed(0)
    if family == "qwen3_vl":
        model: Any = _tiny_qwen3vl()
        ids = torch.randint(5, 300, (2, 9))
        mask = torch.ones_like(ids)
        mask[0, :3] = 0
        batch: Any = {"input_ids": ids, "attention_mask": mask}
    else:
        model, processor = build("tiny", family)  # type: ignore[arg-type]
        batch = image_prompts(processor, "cpu")
    sharpen(model)  # masks matter
    step = TextStep.for_model(model)
    assert step is not None
    rows, length = batch["input_ids"].shape
    capacity = length + 16
    cache = StaticCache(config=model.config, max_cache_len=capacity)
    with torch.inference_mode():
        arg = (
            "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        )
        first = model(**batch, use_cache=True, **{arg: cache}).logits[:, -1]
        theirs, ours = cache, copy.deepcopy(cache)
        real = batch["attention_mask"].sum(-1)
        deltas = model.model.rope_deltas  # None for a prompt without an image
        deltas = torch.zeros(rows, dtype=torch.long) if deltas is None else deltas.view(rows)
        add = torch.full((rows, 1, 1, capacity), torch.finfo(torch.float32).min)
        add[:, 0, 0, :length].masked_fill_(batch["attention_mask"].bool(), 0.0)
        token = first.argmax(-1).view(rows, 1)
        for t in range(10):
            column = torch.tensor([length + t])
            position = deltas + real + t
            add.index_fill_(3, column, 0.0)
            want = model(
                input_ids=token,
                position_ids=position.view(1, rows, 1).expand(3, rows, 1),
                attention_mask=add,
                use_cache=True,
                **{arg: theirs},
            ).logits[:, -1]
            got = step(token, position, add, column, ours)
            torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-4)
            # The other attention, from the same cache (its write is the same one again).
            again = step(token, position, add, column, copy.deepcopy(ours), attention="matmul")
            torch.testing.assert_close(again, want.float(), rtol=1e-4, atol=1e-4)
            for a, b in zip(ours.layers, theirs.layers, strict=True):
                torch.testing.assert_close(a.keys, b.keys, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(a.values, b.values, rtol=1e-5, atol=1e-5)
            token = want.argmax(-1).view(rows, 1)


@pytest.mark.gpu
def test_fused_vision_rotary_keeps_the_model_s_output_on_the_gpu() -> None:
    import torch

    from app.engines.local.fused import use_fused_vision_rotary
    from tests.support.random_model import build

    model, processor = build("tiny", device="cuda", dtype=torch.float32)
    batch = image_prompts(processor, "cpu").to("cuda")
    with torch.inference_mode():
        want = model(**batch).logits
        assert use_fused_vision_rotary(model)
        assert not use_fused_vision_rotary(model)  # once is enough
        got = model(**batch).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_images_prepared_on_the_gpu_match_the_cpu_s() -> None:
    import torch

    from tests.support.random_model import build

    model, processor = build("tiny", device="cuda", dtype=torch.float32, max_pixels=256 * 28 * 28)
    inputs = images()
    engine = LocalEngine(model, processor, options=LocalOptions(grammar=False))
    # The processor itself hands back pixels made on the GPU (not copied there afterwards).
    raw = engine._process(engine._texts(inputs), [i.image for i in inputs], on_device=True)
    assert raw["pixel_values"].device.type == "cuda" and engine.gpu_preprocess
    on_gpu = engine._prepare(inputs)
    cpu_options = LocalOptions(grammar=False, gpu_preprocess=False)
    on_cpu = LocalEngine(model, processor, options=cpu_options)._prepare(inputs)
    assert on_gpu.keys() == on_cpu.keys()
    for key in on_cpu:
        assert on_gpu[key].device.type == "cuda"
        if on_cpu[key].is_floating_point():  # resampling on another device: close, not equal
            torch.testing.assert_close(on_gpu[key], on_cpu[key], atol=0.05, rtol=0)
        else:
            assert torch.equal(on_gpu[key], on_cpu[key])


@pytest.mark.gpu
def test_batch_size_zero_is_chosen_from_the_gpu_s_memory_after_a_short_first_batch() -> None:
    import torch

    from app.engines.local import engine as local
    from tests.support.random_model import build

    model, processor = build("tiny", device="cuda", dtype=torch.bfloat16)
    engine = local.LocalEngine(model, processor, batch_size=0, max_new_tokens=8)
    assert engine.auto_batch and engine.batch_size == local.AUTO_FIRST_BATCH
    image = Image.new("RGB", (64, 64), (200, 10, 10))
    inputs = [DraftInput(image, "describe") for _ in range(local.AUTO_FIRST_BATCH)]
    engine.draft(inputs)
    # A tiny model's batch takes megabytes: the largest batch fits.
    assert not engine.auto_batch and engine.batch_size == local.AUTO_MAX_BATCH
    # Nine tenths of the free memory already held (past AUTO_MEMORY_SHARE): no growth.
    engine = local.LocalEngine(model, processor, batch_size=0, max_new_tokens=8)
    hog = torch.empty(int(torch.cuda.mem_get_info()[0] * 0.9), dtype=torch.uint8, device="cuda")
    try:
        engine.draft(inputs)
        assert not engine.auto_batch and engine.batch_size == local.AUTO_FIRST_BATCH
    finally:
        del hog
        torch.cuda.empty_cache()


@pytest.mark.gpu
def test_the_decode_step_s_timing_is_kept_for_the_next_start(tmp_path: Path) -> None:
    import torch

    from app.engines.local.text_step import PRODUCTS, TextStep
    from tests.support.random_model import build

    model, _ = build("tiny16", device="cuda", dtype=torch.bfloat16)
    first = TextStep.for_model(model)
    assert first is not None
    first.cache_dir = tmp_path
    chosen = first.choose_products(1)
    (kept,) = tmp_path.glob("products-*.json")
    assert json.loads(kept.read_text()) == {"1": sorted(chosen)}
    written = kept.stat().st_mtime_ns
    second = TextStep.for_model(model)
    assert second is not None
    second.cache_dir = tmp_path
    assert second.choose_products(1) == chosen <= frozenset(PRODUCTS)
    assert kept.stat().st_mtime_ns == written  # read back, not timed again
    second.choose_products(2)
    assert set(json.loads(kept.read_text())) == {"1", "2"}


def test_the_engine_s_grammar_lets_a_transcription_hold_a_line_break_and_a_quote(
    tiny_qwen2vl: Path,
) -> None:
    # xgrammar's JSON mode writes no escape (tests/drafting/test_schema.py's xfail); the
    # engine compiles the same schema with its patterns read on the raw text, so exactly the
    # caption's escapes are allowed, within the same bounds.
    engine = LocalEngine.load(str(tiny_qwen2vl), device="cpu", max_new_tokens=TOKENS, limits=LIMITS)
    answer = {
        "high_level_description": 'A sign: "ROMA"',
        "style_description": {
            "aesthetics": "a",
            "lighting": "b",
            "medium": "painting",
            "technique": "oil",
        },
        "compositional_deconstruction": {
            "background": "a wall",
            "elements": [
                {"type": "text", "bbox_2d": [1, 2, 3, 4], "text": 'ROMA\n"1610"', "desc": "sign"}
            ],
        },
    }

    def accepts(text: str) -> bool:
        # Token by token through the decoder's own masks: the grammar and the bounds that
        # lengths.py keeps beside it (the tokenizer is byte-level: a token a byte).
        assert engine.grammar is not None
        rows = Matchers(
            engine.grammar, 1, 1, engine.vocab_size, engine.device, engine.closer, budget=10**6
        )
        tokens = engine.processor.tokenizer.encode(text, add_special_tokens=False)
        for token in [*tokens, engine.compiled.tokenizer_info.stop_token_ids[0]]:
            rows.fill()
            if not (int(rows.bitmask[0, token >> 5]) >> (token & 31)) & 1:
                return False
            rows.accept([token])
        return rows.all_done()

    written = json.dumps(answer, ensure_ascii=False, separators=(", ", ": "))
    assert '\\n\\"1610\\"' in written and accepts(written)
    assert not accepts(written.replace("\\n", "\n"))  # a raw line break is not JSON
    assert not accepts(written.replace("\\n", "\\t"))  # nor an escape a caption needs not
    # The bound counts characters, an escape as one: a UTF-8 character is bytes (tokens) more.
    for extra, fits in ((0, True), (1, False)):
        text = "é" * (2 * MAX_CHARS + extra - 2) + '"x'  # the description: twice the others
        long = dict(answer, high_level_description=text)
        assert accepts(json.dumps(long, ensure_ascii=False, separators=(", ", ": "))) == fits
        breaks = "\n" * (MAX_CHARS + extra)
        lines = dict(answer["compositional_deconstruction"]["elements"][0], text=breaks)
        deep = {**answer, "compositional_deconstruction": {"background": "", "elements": [lines]}}
        assert accepts(json.dumps(deep, ensure_ascii=False, separators=(", ", ": "))) == fits
    engine.close()


def _with_checkpoint_pixels(folder: Path, to: Path) -> Path:
    """A copy of a saved model whose preprocessor_config.json bounds pixels the way
    Qwen2.5-VL's checkpoint does (min_pixels and max_pixels beside `size`)."""
    import shutil

    shutil.copytree(folder, to)
    # Written on its own by older transformers, inside processor_config.json by newer ones.
    path = to / "preprocessor_config.json"
    whole = json.loads((path if path.is_file() else to / "processor_config.json").read_text())
    config = whole if path.is_file() else whole["image_processor"]
    config.update(min_pixels=3136, max_pixels=12845056)
    config["size"] = {"shortest_edge": 3136, "longest_edge": 12845056}
    (path if path.is_file() else to / "processor_config.json").write_text(json.dumps(whole))
    return to


@pytest.mark.parametrize("name", ["tiny", "Qwen2.5-VL-7B-Instruct", "Qwen3-VL-4B-Instruct"])
def test_images_are_given_at_most_the_pixels_asked_for(
    name: str, real_tiny: Any, tiny_qwen25vl: Path, tmp_path: Path
) -> None:
    # Qwen2.5-VL's preprocessor_config.json holds max_pixels 12,845,056, which overrode the
    # engine's own bound: a 2000x3000 image went in at about 6M pixels.
    folder = (
        _with_checkpoint_pixels(tiny_qwen25vl, tmp_path / "model")
        if name == "tiny"
        else real_tiny(name)
    )
    engine = LocalEngine.load(str(folder), device="cpu", max_pixels=512 * 512)
    grid = engine.processor.image_processor(images=[Image.new("RGB", (2000, 3000))])[
        "image_grid_thw"
    ][0]
    patch = engine.processor.image_processor.patch_size
    assert int(grid[1] * grid[2]) * patch * patch <= 512 * 512
    engine.close()


def test_read_texts_reads_each_crop_alone_in_order(tiny_qwen2vl: Path) -> None:
    # The second reading runs the real decode path without the caption's grammar: one answer
    # per crop, in the crops' order whatever the batches (of 2 here).
    engine = tiny_engine(tiny_qwen2vl)
    crops = [Image.new("RGB", (90 + 30 * i, 60), (50 * i, 120, 200 - 40 * i)) for i in range(3)]
    forward = engine.read_texts(crops)
    backward = engine.read_texts(crops[::-1])
    assert len(forward) == 3
    assert forward == backward[::-1]
    assert all(t is None or isinstance(t, str) for t in forward)
    engine.close()


def test_a_recorded_token_probability_is_the_softmax_of_its_step_s_logits(
    tiny_qwen2vl: Path,
) -> None:
    # Each kept token's recorded log probability is the log softmax of the logits its step
    # produced: checked against one teacher-forced forward of the real model over the prompt
    # and the tokens drafted (no grammar here, so nothing is masked).
    import torch

    engine = tiny_engine(
        tiny_qwen2vl,
        batch_size=1,
    )
    batch = engine._prepare([images()[0]])
    result = engine.decoder.run(batch, max_new_tokens=12, closing=False)
    tokens, recorded = result.tokens[0], result.logprobs[0]
    assert len(tokens) == len(recorded) >= 2
    length, extra = batch["input_ids"].shape[1], len(tokens) - 1
    forced = {}
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == length:
            fill = torch.ones if key == "attention_mask" else torch.zeros
            added = torch.tensor([tokens[:-1]]) if key == "input_ids" else fill(1, extra)
            forced[key] = torch.cat([value, added.to(value.dtype)], dim=1)
        else:
            forced[key] = value
    with torch.inference_mode():
        logits = engine.model(**forced).logits[0, length - 1 : length - 1 + len(tokens)]
    expected = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor([tokens]).T)
    assert torch.allclose(torch.tensor(recorded), expected.squeeze(1), atol=1e-3)
    assert all(p <= 0 for p in recorded)
    engine.close()


def test_a_local_draft_carries_its_fields_confidences(tiny_qwen2vl: Path) -> None:
    engine = tiny_engine(tiny_qwen2vl)
    outputs = [o for o in engine.draft(images()[:2]) if o.caption is not None]
    assert outputs
    for out in outputs:
        assert out.confidence, out.raw
        assert "high_level_description" in out.confidence
        assert all(0 < c.least <= c.mean <= 1 for c in out.confidence.values())
    engine.close()


def test_confidence_can_be_switched_off_for_its_benchmark(tiny_qwen2vl: Path) -> None:
    from app.engines.local.options import LocalOptions

    engine = tiny_engine(
        tiny_qwen2vl,
        options=LocalOptions(confidence=False),
    )
    outputs = [o for o in engine.draft(images()[:2]) if o.caption is not None]
    assert outputs and all(o.confidence is None for o in outputs)
    engine.close()


@pytest.mark.gpu
def test_a_batch_out_of_memory_is_split_until_it_fits() -> None:
    # The memory is capped between what one image and what eight take: the batch of eight
    # runs out, and is halved until it fits (the caches of the size that failed, and the
    # failed forward's tensors, let go), and every image is drafted.
    import torch

    from tests.support.random_model import build

    model, processor = build("tiny", device="cuda", dtype=torch.float32, max_pixels=256 * 28 * 28)
    inputs = (images() * 4)[:8]
    engine = LocalEngine(model, processor, batch_size=8, max_new_tokens=40)
    want = engine.draft(inputs)
    torch.cuda.synchronize()
    engine.decoder.slots.clear()
    torch.cuda.empty_cache()
    held = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    engine.draft(inputs[:1])
    one = torch.cuda.max_memory_allocated() - held
    engine.decoder.slots.clear()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    engine.draft(inputs)
    eight = torch.cuda.max_memory_allocated() - held
    engine.decoder.slots.clear()
    torch.cuda.empty_cache()
    assert eight > 2 * one
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((held + (one + eight) / 2) / total)
    try:
        got = engine.draft(inputs)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert engine.batch_size < 8
    # Smaller batches pad the rows differently, so a random model's drafts may differ in a
    # token: each image gets one all the same.
    assert len(got) == len(want) == 8 and all(g.raw for g in got)
    engine.close()


@pytest.mark.gpu
def test_a_closed_engine_gives_its_caches_memory_back() -> None:
    import torch

    from tests.support.random_model import build

    model, processor = build("tiny", device="cuda", dtype=torch.float32)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    engine = LocalEngine(model, processor, batch_size=4, max_new_tokens=40)
    engine.draft(images())
    assert torch.cuda.memory_allocated() > before
    engine.close()
    assert torch.cuda.memory_allocated() <= before


def test_a_batch_taken_as_it_decodes_is_prepared_ahead_and_drafts_the_same(
    tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.engines.local import engine as engine_module

    monkeypatch.setattr(engine_module, "PREPARE_PART", 2)  # five images: parts of 2, 2, 1
    engine = tiny_engine(tiny_qwen2vl, batch_size=8)
    inputs = images() + images()[:1]
    want = engine.draft(inputs)
    prepared: list[int] = []
    whole = engine._prepare

    def counted(batch: list[DraftInput]) -> Any:
        prepared.append(len(batch))
        return whole(batch)

    monkeypatch.setattr(engine, "_prepare", counted)
    taken = engine.prefetch_decoded(iter(inputs), len(inputs))
    assert taken == inputs and engine._ahead is not None
    got = engine.draft(taken)
    assert not prepared  # the batch made from the parts was the one drafted
    assert [g.raw for g in got] == [w.raw for w in want]

    # Preparing in parts fails: the batch is prepared again in line, and drafts the same.
    def broken(*args: Any) -> Any:
        raise ValueError("a part the processor cannot put together")

    monkeypatch.setattr(engine, "_prepare_parts", broken)
    taken = engine.prefetch_decoded(iter(inputs), len(inputs))
    got = engine.draft(taken)
    assert prepared == [len(inputs)]
    assert [g.raw for g in got] == [w.raw for w in want]
    monkeypatch.undo()
    # More than a batch: taken as it is, nothing prepared ahead.
    engine.batch_size = 2
    assert engine.prefetch_decoded(iter(inputs), len(inputs)) == inputs
    assert engine._ahead is None
    engine.close()
