"""The engine's batches are exactly the processor's, tokenized once per text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.engines.interface import DraftError
from app.engines.local.model_inputs import ModelInputs
from app.engines.prompt import build_prompt


def _requests(processor: Any) -> tuple[list[str], list[Image.Image]]:
    sizes = [(320, 240), (240, 420), (320, 240), (500, 500), (33, 700)]
    texts, images = [], []
    for n, (w, h) in enumerate(sizes):
        prompt = build_prompt(width=w, height=h, convention="qwen2vl", style_block={})
        if n == 3:
            prompt += ' Its sign reads "CAFÉ\n1610" — a quote, a line, an accent.'
        content = [{"type": "image"}, {"type": "text", "text": prompt}]
        texts.append(
            processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
        )
        pixels = np.random.default_rng(n).integers(0, 255, (h, w, 3), dtype=np.uint8)
        images.append(Image.fromarray(pixels))  # every pixel its own: any mix-up shows
    return texts, images


def _same_as_the_processor(folder: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    texts, images = _requests(processor)
    expected = processor(
        text=texts, images=images, padding=True, padding_side="left", return_tensors="pt"
    )
    inputs = ModelInputs(processor)
    for _ in range(2):  # the second time from the texts' remembered ids
        got = inputs.batch(texts, images)
        assert set(got) == set(expected)
        for key, value in expected.items():
            assert got[key].dtype == value.dtype, key
            assert got[key].shape == value.shape, key
            assert bool((got[key] == value).all()), key
    assert len(inputs._ids) == len(set(texts))


@pytest.mark.parametrize("family", ["tiny_qwen2vl", "tiny_qwen25vl"])
def test_batches_are_the_processor_s_own(family: str, request: pytest.FixtureRequest) -> None:
    _same_as_the_processor(request.getfixturevalue(family))


@pytest.mark.parametrize("name", ["Qwen2.5-VL-7B-Instruct", "Qwen3-VL-4B-Instruct"])
def test_batches_are_the_real_processor_s_own(name: str, real_tiny: Any) -> None:
    _same_as_the_processor(real_tiny(name))


def test_a_prompt_holding_a_placeholder_of_its_own_is_refused(tiny_qwen2vl: Path) -> None:
    # A dataset's drafting instructions are the user's text: a placeholder in them would be
    # read as a second image, or a video the model has no frames for (its forward fails).
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_qwen2vl)
    inputs = ModelInputs(processor)
    texts, images = _requests(processor)
    for extra in ("<|video_pad|>", "<|image_pad|>"):
        with pytest.raises(DraftError, match=re.escape("remove it from the dataset's")):
            inputs.batch([texts[0] + extra], images[:1])
    with pytest.raises(DraftError):
        inputs.batch(["no image here"], images[:1])


def test_the_engine_says_so_rather_than_failing_in_the_model(tiny_qwen2vl: Path) -> None:
    from app.engines.interface import DraftInput
    from app.engines.local.engine import LocalEngine

    engine = LocalEngine.load(str(tiny_qwen2vl), device="cpu", max_new_tokens=8)
    with pytest.raises(DraftError, match="drafting instructions"):
        engine.draft([DraftInput(Image.new("RGB", (64, 64)), "Describe it. <|video_pad|>")])
    engine.close()


def _same_in_parts(folder: Path) -> None:
    """Images processed two and three at a time as they came, the batch in another order:
    the same tensors as the images processed together in that order."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    texts, images = _requests(processor)
    order = [3, 0, 4, 2, 1]
    inputs = ModelInputs(processor)
    want = inputs.batch([texts[i] for i in order], [images[i] for i in order])
    parts = [inputs.pixels(images[:2]), inputs.pixels(images[2:])]
    got = inputs.assemble([texts[i] for i in order], parts, order)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert bool((got[key] == value).all()), key
    # In the order they came, one part: the processor's output as it is.
    same = inputs.assemble(texts, [inputs.pixels(images)], list(range(len(texts))))
    assert bool((same["pixel_values"] == inputs.batch(texts, images)["pixel_values"]).all())


@pytest.mark.parametrize("family", ["tiny_qwen2vl", "tiny_qwen25vl"])
def test_a_batch_from_images_processed_in_parts_is_the_whole_batch(
    family: str, request: pytest.FixtureRequest
) -> None:
    _same_in_parts(request.getfixturevalue(family))


@pytest.mark.parametrize("name", ["Qwen2.5-VL-7B-Instruct", "Qwen3-VL-4B-Instruct"])
def test_a_batch_in_parts_is_the_whole_batch_with_the_real_processors(
    name: str, real_tiny: Any
) -> None:
    _same_in_parts(real_tiny(name))
