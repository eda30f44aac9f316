"""Reading official, guide-shaped and .txt captions; writing the official dialect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.captions.boxes import Box
from app.captions.dialects import CaptionParseError, dumps_official, medium_token, read_caption
from app.captions.schema import Caption, Composition, Element, Style

GUIDE_001 = (Path(__file__).parent / "guide_001.json").read_text()


def test_guide_example_with_pixel_boxes_reads_into_official() -> None:
    reading = read_caption(GUIDE_001, ext="json", width=1200, height=1000, bbox_format="pixel")
    official = json.loads(dumps_official(reading.caption))
    style = official["style_description"]
    assert list(style) == ["aesthetics", "lighting", "medium", "art_style", "color_palette"]
    assert style["medium"] == "painting"
    assert style["art_style"].startswith("Oil on canvas")
    elements = official["compositional_deconstruction"]["elements"]
    # Guide pixel [x1, y1, x2, y2] = [180, 90, 760, 720] on 1200x1000 -> y-first 0..1000.
    assert elements[0]["bbox"] == [90, 150, 720, 633]
    assert elements[1]["bbox"] == [600, 100, 880, 433]
    assert elements[2]["bbox"] == [200, 517, 760, 750]
    assert list(elements[0]) == ["type", "bbox", "desc", "color_palette"]
    assert not reading.ambiguous
    assert any("'Oil painting.'" in n for n in reading.notes)


def test_guide_example_undeclared_reads_as_pixels_by_its_tells() -> None:
    # The guide's shape ("Oil painting.", a painting's technique under 'photo', element
    # palettes before their descriptions) is the guide's, whose boxes are pixels: no question.
    reading = read_caption(GUIDE_001, ext="json", width=1200, height=1000)
    assert not reading.ambiguous and reading.box_format == "pixel"
    assert reading.caption.composition.elements[0].box == Box(0.15, 0.09, 760 / 1200, 0.72)
    assert any("guide's shape" in n for n in reading.notes)


def test_boxes_without_the_guide_s_tells_stay_a_question() -> None:
    data = json.loads(GUIDE_001)
    style = data["style_description"]
    style["medium"] = "painting"
    style["art_style"] = style.pop("photo")
    for e in data["compositional_deconstruction"]["elements"]:
        e["color_palette"] = e.pop("color_palette", [])  # after desc, as the trainer writes
    reading = read_caption(json.dumps(data), ext="json", width=1200, height=1000)
    assert reading.ambiguous and reading.other_reading is not None
    assert reading.caption.composition.elements[0].box == Box(0.09, 0.18, 0.72, 0.76)
    assert reading.other_reading.composition.elements[0].box == Box(0.15, 0.09, 760 / 1200, 0.72)


def test_boxes_that_would_leave_the_image_as_pixels_are_official() -> None:
    raw = json.dumps(
        {
            "compositional_deconstruction": {
                "elements": [{"type": "obj", "bbox": [100, 200, 900, 800], "desc": "x"}]
            }
        }
    )
    # As pixel [x1, y1, x2, y2] on a 640x480 image, x2 = 900 would leave it.
    reading = read_caption(raw, ext="json", width=640, height=480)
    assert reading.box_format == "official" and not reading.ambiguous


def test_coordinates_above_1000_are_pixels() -> None:
    raw = json.dumps(
        {
            "compositional_deconstruction": {
                "elements": [{"type": "obj", "bbox": [100, 200, 1500, 900], "desc": "x"}]
            }
        }
    )
    reading = read_caption(raw, ext="json", width=2000, height=1000)
    assert reading.box_format == "pixel" and not reading.ambiguous
    assert reading.caption.composition.elements[0].box == Box(0.05, 0.2, 0.75, 0.9)
    with pytest.raises(CaptionParseError, match="above 1000"):
        read_caption(raw, ext="json", width=2000, height=1000, bbox_format="official")


def test_official_round_trip() -> None:
    caption = Caption(
        high_level_description="Une femme lit une lettre, café au lait",
        style=Style(
            aesthetics="tenebrist",
            lighting="one candle",
            medium="photograph",
            render="85mm, f/1.8",
            color_palette=["#abc", "#A1b2C3"],
        ),
        composition=Composition(
            background="dark room",
            elements=[
                Element(
                    type="text",
                    box=Box(0.1, 0.2, 0.3, 0.4),
                    text="LETTRE\nII",
                    desc="a note",
                    color_palette=["#FFFFFF"],
                ),
                Element(desc="the reader"),
            ],
        ),
    )
    text = dumps_official(caption)
    assert "café" in text
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    data = json.loads(text)
    assert list(data["style_description"]) == [
        "aesthetics",
        "lighting",
        "photo",
        "medium",
        "color_palette",
    ]
    assert data["style_description"]["color_palette"] == ["#AABBCC", "#A1B2C3"]
    assert data["compositional_deconstruction"]["elements"][0] == {
        "type": "text",
        "bbox": [200, 100, 400, 300],
        "text": "LETTRE\nII",
        "desc": "a note",
        "color_palette": ["#FFFFFF"],
    }
    again = read_caption(text, ext="json", width=640, height=480, bbox_format="official")
    assert again.caption == caption


def test_txt_caption_is_the_high_level_description() -> None:
    reading = read_caption("  a knight in armour, oil painting \n", ext="txt", width=1, height=1)
    assert reading.caption.high_level_description == "a knight in armour, oil painting"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an object"),
        ('{"compositional_deconstruction": {"elements": [{"bbox": [1, 2, 3]}]}}', "bbox"),
        ('{"compositional_deconstruction": {"elements": [{"bbox": [1, 2, NaN, 4]}]}}', "JSON"),
        ('{"compositional_deconstruction": {"elements": [{"type": "shape"}]}}', "'obj' or 'text'"),
        ('{"style_description": "painterly"}', "should be an object"),
        ('{"high_level_description": 42}', "should be text"),
    ],
)
def test_unreadable_captions_raise_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(CaptionParseError, match=reason):
        read_caption(raw, ext="json", width=100, height=100)


def test_bad_colours_dropped_with_note_and_palettes_capped() -> None:
    raw = json.dumps(
        {
            "style_description": {
                "color_palette": ["#fff", "red"] + [f"#{i:06X}" for i in range(20)]
            },
            "compositional_deconstruction": {},
        }
    )
    reading = read_caption(raw, ext="json", width=10, height=10)
    assert reading.caption.style.color_palette[0] == "#FFFFFF"
    assert len(reading.caption.style.color_palette) == 16
    assert any("'red'" in n for n in reading.notes) and any("first 16" in n for n in reading.notes)


@pytest.mark.parametrize(
    ("spelling", "token"),
    [
        ("Oil painting.", "painting"),
        ("3D render.", "3d_render"),
        ("photograph", "photograph"),
        ("Graphic design", "graphic_design"),
        ("ink illustration", "illustration"),
        ("Watercolour", "painting"),
        ("mosaic", None),
    ],
)
def test_medium_spellings(spelling: str, token: str | None) -> None:
    assert medium_token(spelling) == token


def test_schema_palettes_normalised_and_bounded() -> None:
    from pydantic import ValidationError

    assert Element(color_palette=["#abc", "#AABBCC", "#123456"]).color_palette == [
        "#AABBCC",
        "#123456",
    ]
    with pytest.raises(ValidationError, match="at most 5 colours"):
        Element(color_palette=[f"#{i:06X}" for i in range(6)])
    with pytest.raises(ValidationError, match="at most 16 colours"):
        Style(color_palette=[f"#{i:06X}" for i in range(17)])


def test_export_trigger_placeholder_dropped_on_read() -> None:
    raw = json.dumps(
        {
            "style_description": {"aesthetics": "[trigger], tenebrist"},
            "compositional_deconstruction": {},
        }
    )
    reading = read_caption(raw, ext="json", width=10, height=10)
    assert reading.caption.style.aesthetics == "tenebrist"
    assert "dropped the [trigger] placeholder from aesthetics" in reading.notes


def test_a_sidecar_nested_too_deeply_is_refused_with_a_sentence() -> None:
    with pytest.raises(CaptionParseError, match="nested too deeply"):
        read_caption("[" * 100_000, ext="json", width=100, height=100)
