"""What the trainer's buckets do to each image: the size it trains at and the centre crop.

AI-Toolkit buckets by AREA (docs/trainer.md section 4, toolkit/buckets.py and setup_buckets in
toolkit/dataloader_mixins.py): an image keeps its own pixel count up to resolution squared,
its sides are rounded to multiples of the model's divisibility, then it is resized to cover
that bucket and centre-cropped. Written here from those facts, checked against its output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from app.captions.boxes import Box

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.sql.elements import SQLCoreOperations

    from app.captions.schema import Caption

# ideogram4's get_bucket_divisibility: the VAE downsamples by 8, the transformer patches by 2.
DIVISIBILITY = 16
# Lint's threshold: a box that loses more than this share of its area to the crop.
LOST_SHARE = 0.1


@overload
def is_low_resolution(width: int, height: int, *, resolution: int) -> bool: ...
@overload
def is_low_resolution(
    width: SQLCoreOperations[int], height: SQLCoreOperations[int], *, resolution: int
) -> ColumnElement[bool]: ...
def is_low_resolution(width: Any, height: Any, *, resolution: int) -> Any:
    """Whether the image trains in a smaller bucket than `resolution` (its area is below it)."""
    # One expression for Python ints and SQL columns alike: the grid's filter, its flags and
    # lint can never disagree.
    return width * height < resolution * resolution


# The smallest training resolution a profile writes (profiles.py: 512/768/1024 buckets).
SMALLEST_RESOLUTION = 512


def smallest_bucket(resolution: int) -> int:
    """The side of the smallest square bucket a dataset trained at `resolution` trains in."""
    return min(resolution, SMALLEST_RESOLUTION)


def is_unusable(width: int, height: int, *, resolution: int) -> bool:
    """Whether the image is smaller than the smallest training bucket: the trainer never
    enlarges it (get_bucket_for_image_size keeps its own area), so it would train in a tiny
    bucket of its own, far below every other image."""
    side = smallest_bucket(resolution)
    return width * height < side * side


def bucket_size(
    width: int, height: int, *, resolution: int, divisibility: int = DIVISIBILITY
) -> tuple[int, int]:
    """The (width, height) the trainer trains this image at for one training resolution."""
    area = width * height
    most = resolution * resolution
    target = min(area, most)
    scale = (target / area) ** 0.5
    # Sides in units of `divisibility`, before rounding either way.
    units_w = width * scale / divisibility
    units_h = height * scale / divisibility
    sides = [
        (math.floor(units_w) * divisibility, math.floor(units_h) * divisibility),
        (math.floor(units_w) * divisibility, math.ceil(units_h) * divisibility),
        (math.ceil(units_w) * divisibility, math.floor(units_h) * divisibility),
        (math.ceil(units_w) * divisibility, math.ceil(units_h) * divisibility),
    ]
    fitting = [(w, h) for w, h in sides if w > 0 and h > 0 and w * h <= most]
    if not fitting:  # an extreme aspect: one side rounds to nothing
        fitting = [(max(divisibility, sides[0][0]), max(divisibility, sides[0][1]))]
    # The first of the closest areas wins a tie, as in the trainer.
    return min(fitting, key=lambda wh: abs(wh[0] * wh[1] - target))


@dataclass(frozen=True)
class Fit:
    """One image at one training resolution: its bucket, the resize and the crop."""

    resolution: int
    width: int  # the image as exported
    height: int
    bucket_width: int
    bucket_height: int
    scaled_width: int  # the image resized to cover the bucket
    scaled_height: int
    crop_x: int  # the bucket's top-left corner in the resized image
    crop_y: int

    @property
    def window(self) -> Box:
        """The part of the image the trainer keeps, in the image's own 0..1 coordinates."""
        return Box(
            self.crop_x / self.scaled_width,
            self.crop_y / self.scaled_height,
            (self.crop_x + self.bucket_width) / self.scaled_width,
            (self.crop_y + self.bucket_height) / self.scaled_height,
        )

    @property
    def upscaled(self) -> bool:
        return self.scaled_width > self.width or self.scaled_height > self.height

    def lost_share(self, box: Box) -> float:
        """The share of a box's area that the crop cuts away (0 for a box with no area)."""
        if box.is_degenerate:
            return 0.0
        w = self.window
        kept_w = max(0.0, min(box.x1, w.x1) - max(box.x0, w.x0))
        kept_h = max(0.0, min(box.y1, w.y1) - max(box.y0, w.y0))
        area = (box.x1 - box.x0) * (box.y1 - box.y0)
        return max(0.0, 1.0 - kept_w * kept_h / area)

    def seen(self, box: Box) -> Box:
        """Where what `box` names lies in the cropped image, in that image's 0..1 coordinates."""
        # The caption is not rewritten for the crop: the difference is how far the box moved.
        w = self.window
        return Box.ordered(
            (box.x0 - w.x0) / (w.x1 - w.x0),
            (box.y0 - w.y0) / (w.y1 - w.y0),
            (box.x1 - w.x0) / (w.x1 - w.x0),
            (box.y1 - w.y0) / (w.y1 - w.y0),
        )


def fit(width: int, height: int, *, resolution: int, divisibility: int = DIVISIBILITY) -> Fit:
    """Where an image of this size lands at one training resolution (no random crop)."""
    bw, bh = bucket_size(width, height, resolution=resolution, divisibility=divisibility)
    # Resized by the larger of the two side ratios, so that it covers the bucket; sides round up.
    ratio = max(bw / width, bh / height)
    sw, sh = math.ceil(width * ratio), math.ceil(height * ratio)
    return Fit(
        resolution=resolution,
        width=width,
        height=height,
        bucket_width=bw,
        bucket_height=bh,
        scaled_width=sw,
        scaled_height=sh,
        crop_x=int((sw - bw) / 2),
        crop_y=int((sh - bh) / 2),
    )


@dataclass(frozen=True)
class CroppedBox:
    element: int  # 1-based, as the editor and lint number them
    resolution: int
    lost: float  # share of the box's area cut away


def cropped_boxes(
    caption: Caption, *, width: int, height: int, resolutions: list[int]
) -> list[CroppedBox]:
    """Boxes losing over LOST_SHARE of their area, each once, at the resolution it loses most."""
    fits = [fit(width, height, resolution=r) for r in resolutions]
    out = []
    for n, element in enumerate(caption.composition.elements, 1):
        if element.box is None:
            continue
        worst = max(
            (CroppedBox(n, f.resolution, f.lost_share(element.box)) for f in fits),
            key=lambda c: c.lost,
            default=None,
        )
        if worst is not None and worst.lost > LOST_SHARE:
            out.append(worst)
    return out
