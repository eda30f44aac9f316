"""The drafting prompt carries the rules, the style block, the instructions and the shape."""

from __future__ import annotations

from app.engines.prompt import build_prompt


def test_prompt_names_what_the_model_must_know() -> None:
    text = build_prompt(
        width=1200,
        height=1600,
        convention="qwen2vl",
        style_block={"aesthetics": "Italian Baroque, tenebrist", "medium": "painting"},
        instructions="Name saints only by visible attributes.",
    )
    assert "1200x1600 pixels (portrait, aspect ratio 0.75)" in text
    assert "- aesthetics: Italian Baroque, tenebrist" in text
    assert "Name saints only by visible attributes." in text
    assert "0 to 1000" in text
    assert "exact words" in text
    assert "trigger word" in text


def test_qwen25vl_prompt_asks_for_pixels() -> None:
    text = build_prompt(width=800, height=800, convention="qwen25vl", style_block={})
    assert "in pixels of the image as you see it" in text
    assert "square" in text
    assert "shares one style" not in text
