"""Box conversions: each convention to the canonical form and back, exact to 1/1000."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.captions import boxes
from app.captions.boxes import Box

unit = st.integers(0, 1000)
sizes = st.integers(1, 12_000)


@st.composite
def official_boxes(draw) -> list[int]:  # type: ignore[no-untyped-def]
    y = sorted((draw(unit), draw(unit)))
    x = sorted((draw(unit), draw(unit)))
    return [y[0], x[0], y[1], x[1]]


@given(official_boxes())
def test_official_round_trip_is_exact(v: list[int]) -> None:
    assert boxes.to_official(boxes.from_official(v)) == v


def test_official_is_y_first() -> None:
    assert boxes.from_official([100, 200, 300, 400]) == Box(0.2, 0.1, 0.4, 0.3)


@given(sizes, sizes, st.data())
def test_pixel_round_trip_is_exact(w: int, h: int, data) -> None:  # type: ignore[no-untyped-def]
    xs = sorted(data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2)))
    ys = sorted(data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2)))
    px = [xs[0], ys[0], xs[1], ys[1]]
    assert boxes.to_pixels(boxes.from_pixels(px, width=w, height=h), width=w, height=h) == px


@given(official_boxes(), sizes, sizes)
def test_official_through_pixels_within_one_unit(v: list[int], w: int, h: int) -> None:
    px = boxes.to_pixels(boxes.from_official(v), width=w, height=h)
    back = boxes.to_official(boxes.from_pixels(px, width=w, height=h))
    # A pixel is coarser than 1/1000 on images under 1000 px: allow one pixel's worth.
    tolerance = [max(1, round(1000 / d)) for d in (h, w, h, w)]
    assert all(abs(a - b) <= t for a, b, t in zip(back, v, tolerance, strict=True))
