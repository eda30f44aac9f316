"""The draft schema is bounded, and each model family's boxes land in the canonical form."""

from __future__ import annotations

import json

import pytest

from app.captions import boxes
from app.drafting.schema import (
    DEFAULT_LIMITS,
    DraftLimits,
    DraftParseError,
    json_schema,
    to_caption,
    worst_case_chars,
)


def walk(node: object):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def test_every_string_and_array_is_bounded() -> None:
    schema = json_schema(DEFAULT_LIMITS)
    nodes = list(walk(schema))
    strings = [n for n in nodes if n.get("type") == "string"]
    arrays = [n for n in nodes if n.get("type") == "array"]
    assert strings and all("pattern" in n and "{0," in n["pattern"] for n in strings)
    assert arrays and all("maxItems" in n for n in arrays)
    assert all(n.get("additionalProperties") is False for n in nodes if n.get("type") == "object")


def test_worst_case_covers_a_maximal_draft() -> None:
    lim = DraftLimits.scaled(max_chars=12, max_elements=2)
    element = {"type": "text", "bbox_2d": [1000] * 4, "text": "x" * 12, "desc": "x" * 12}
    biggest = {
        "high_level_description": "x" * 24,
        "style_description": {
            "aesthetics": "x" * 12,
            "lighting": "x" * 12,
            "medium": "graphic_design",
            "technique": "x" * 12,
        },
        "compositional_deconstruction": {"background": "x" * 12, "elements": [element] * 2},
    }
    assert len(json.dumps(biggest)) <= worst_case_chars(lim)


def draft(bbox: list[int]) -> str:
    return json.dumps(
        {
            "high_level_description": "a man",
            "style_description": {
                "aesthetics": "baroque",
                "lighting": "candle",
                "medium": "painting",
                "technique": "oil",
            },
            "compositional_deconstruction": {
                "background": "dark",
                "elements": [
                    {"type": "obj", "bbox_2d": bbox, "desc": "a man"},
                    {"type": "text", "bbox_2d": bbox, "text": "AVE\nMARIA", "desc": "a sign"},
                ],
            },
        }
    )


@pytest.mark.parametrize("convention", ["qwen2vl", "qwen3vl"])
def test_normalised_x_first_families(convention: str) -> None:
    c = to_caption(draft([100, 200, 300, 600]), convention=convention)  # type: ignore[arg-type]
    assert c.composition.elements[0].box == boxes.Box(0.1, 0.2, 0.3, 0.6)
    assert boxes.to_official(c.composition.elements[0].box) == [200, 100, 600, 300]
    assert c.composition.elements[1].text == "AVE\nMARIA"
    assert c.style.render == "oil" and c.style.medium == "painting"


def test_qwen25vl_pixels_of_the_resized_input() -> None:
    # The model saw a 448x336 resize of the image: pixel boxes of that, whatever the original.
    c = to_caption(draft([112, 84, 336, 252]), convention="qwen25vl", resized=(448, 336))
    assert c.composition.elements[0].box == boxes.Box(0.25, 0.25, 0.75, 0.75)
    with pytest.raises(DraftParseError):
        to_caption(draft([1, 2, 3, 4]), convention="qwen25vl")


def test_reversed_corners_are_ordered_and_degenerate_boxes_dropped() -> None:
    c = to_caption(draft([600, 300, 200, 100]), convention="qwen2vl")
    assert c.composition.elements[0].box == boxes.Box(0.2, 0.1, 0.6, 0.3)
    flat = to_caption(draft([500, 100, 500, 300]), convention="qwen2vl")
    assert flat.composition.elements[0].box is None


@pytest.mark.parametrize(
    "raw",
    ['{"high_level_description": "cut', "[]", '{"compositional_deconstruction": {"elements": 5}}'],
)
def test_unusable_output_is_a_parse_error(raw: str) -> None:
    with pytest.raises(DraftParseError):
        to_caption(raw, convention="qwen2vl")


@pytest.mark.parametrize("convention", ["qwen2vl", "qwen25vl"])
def test_default_schema_compiles_and_holds_its_bounds(convention: str) -> None:
    import xgrammar as xgr

    from tests.support.random_model import tokenizer

    tok = tokenizer()
    limits = DEFAULT_LIMITS.for_convention(convention, max_side=8192)  # type: ignore[arg-type]
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok)))
    grammar = compiler.compile_json_schema(json.dumps(json_schema(limits)), any_whitespace=False)

    def accepts(description: str) -> bool:
        m = xgr.GrammarMatcher(grammar)
        return m.accept_string('{"high_level_description": "' + description + '", ')

    n = limits.description
    assert n > 128  # long enough to need the stepped bound
    assert accepts("x" * n) and accepts("x" * 127) and accepts("x" * 129)
    assert not accepts("x" * (n + 1))
    assert not accepts("a\\u0001")  # no escapes, no control characters
