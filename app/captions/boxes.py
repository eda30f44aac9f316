"""Box conventions, converted at the edges to one canonical form.

Canonical form (`Box`): floats in [0, 1] relative to the displayed image (EXIF orientation
applied), x before y, origin top-left: (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1.
Each outside convention has one pair of functions here:
- official dialect: integers 0..1000, [y_min, x_min, y_max, x_max] (what the trainer reads);
- guide dialect: pixel [x1, y1, x2, y2] of the image;
- each Qwen-VL family's output (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).
The editor draws in fractions of the image, this canonical form (static/js/boxes.js, checked
in Chromium by tests/browser/test_box_geometry.py).
"""

from __future__ import annotations

from typing import NamedTuple

OFFICIAL_SCALE = 1000


class Box(NamedTuple):
    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def ordered(cls, xa: float, ya: float, xb: float, yb: float) -> Box:
        """A box from two corners in any order, clamped to the image."""
        xs = sorted((_clamp(xa), _clamp(xb)))
        ys = sorted((_clamp(ya), _clamp(yb)))
        return cls(xs[0], ys[0], xs[1], ys[1])

    @property
    def is_degenerate(self) -> bool:
        return self.x1 - self.x0 <= 0 or self.y1 - self.y0 <= 0


def from_official(values: list[int] | tuple[int, ...]) -> Box:
    y0, x0, y1, x1 = (v / OFFICIAL_SCALE for v in values)
    return Box.ordered(x0, y0, x1, y1)


def to_official(box: Box) -> list[int]:
    return [round(v * OFFICIAL_SCALE) for v in (box.y0, box.x0, box.y1, box.x1)]


def from_pixels(values: list[float] | tuple[float, ...], *, width: int, height: int) -> Box:
    x0, y0, x1, y1 = values
    return Box.ordered(x0 / width, y0 / height, x1 / width, y1 / height)


def to_pixels(box: Box, *, width: int, height: int) -> list[int]:
    return [
        round(box.x0 * width),
        round(box.y0 * height),
        round(box.x1 * width),
        round(box.y1 * height),
    ]


def _clamp(v: float) -> float:
    return min(1.0, max(0.0, v))


# Vision-language models' own conventions (every family puts x first):
# - Qwen2-VL and Qwen3-VL: integers 0..1000 normalised to the image, [x1, y1, x2, y2];
# - Qwen2.5-VL: absolute pixels of the processor-RESIZED input, [x1, y1, x2, y2].


def from_qwen2vl(values: list[int] | tuple[int, ...]) -> Box:
    x0, y0, x1, y1 = (v / OFFICIAL_SCALE for v in values)
    return Box.ordered(x0, y0, x1, y1)


def from_qwen3vl(values: list[int] | tuple[int, ...]) -> Box:
    return from_qwen2vl(values)


def from_qwen25vl(
    values: list[float] | tuple[float, ...], *, resized_width: int, resized_height: int
) -> Box:
    """Pixels of the resized model input; the ratio carries over to the original image."""
    return from_pixels(values, width=resized_width, height=resized_height)
