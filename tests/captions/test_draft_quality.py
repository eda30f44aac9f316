"""One image's draft against the caption kept: matching, IoU, CER, edit ratio, palette."""

from __future__ import annotations

import pytest
from coloraide import Color

from app.captions.boxes import Box
from app.captions.draft_quality import (
    char_error_rate,
    compare,
    edit_ratio,
    iou,
    match_elements,
    palette_distance,
)
from app.captions.schema import Caption, Composition, Element


def test_iou_of_boxes() -> None:
    assert iou(Box(0, 0, 0.5, 0.5), Box(0, 0, 0.5, 0.25)) == pytest.approx(0.5)
    assert iou(Box(0, 0, 0.2, 0.2), Box(0.5, 0.5, 1, 1)) == 0
    assert iou(Box(0.1, 0.1, 0.3, 0.3), Box(0.1, 0.1, 0.3, 0.3)) == pytest.approx(1)


def test_character_error_rate_and_edit_ratio() -> None:
    assert char_error_rate("EXIT NOW", "EXIT NOW!") == pytest.approx(1 / 9)
    assert char_error_rate("", "") == 0 and char_error_rate("X", "") == 1
    assert edit_ratio("A cat by a sign.", "A cat beside a sign.") == pytest.approx(5 / 20)
    assert edit_ratio("same", "same") == 0


def test_palette_distance_is_ciede2000_to_the_nearest_drafted_colour() -> None:
    red_to_blue = Color("#0000FF").delta_e(Color("#FF0000"), method="2000")
    got = palette_distance(["#FF0000"], ["#FF0000", "#0000FF"])
    assert got == pytest.approx(red_to_blue / 2, abs=1e-6)
    assert palette_distance([], ["#FF0000"]) is None


def test_match_elements_pairs_by_box_and_leaves_poor_matches_out() -> None:
    drafted = [
        Element(box=Box(0, 0, 0.5, 0.5), desc="cat"),
        Element(box=Box(0.7, 0, 1, 0.2), desc="stars"),
        Element(type="text", box=Box(0.5, 0.5, 1, 1), text="HI", desc="sign"),
    ]
    kept = [
        Element(type="text", box=Box(0.5, 0.5, 1, 1), text="HI", desc="sign"),
        Element(box=Box(0, 0.6, 0.3, 0.9), desc="dog"),  # overlaps nothing drafted
        Element(box=Box(0, 0, 0.5, 0.4), desc="cat"),
    ]
    assert sorted(match_elements(drafted, kept)) == [(0, 2), (2, 0)]


def test_a_text_box_never_matches_an_object_box() -> None:
    drafted = [Element(type="text", box=Box(0, 0, 1, 1), text="A", desc="x")]
    kept = [Element(box=Box(0, 0, 1, 1), desc="x")]
    assert match_elements(drafted, kept) == []
    c = compare(
        drafted=Caption(composition=Composition(elements=drafted)),
        kept=Caption(composition=Composition(elements=kept)),
    )
    assert (c.added, c.removed, c.matched) == (1, 1, 0)
    assert c.changed == {"elements added", "elements removed"}
