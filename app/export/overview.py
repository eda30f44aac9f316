"""What the export page shows a person to look at before training: the dataset's sizes,
aspects, box sizes, element counts, statuses and every palette, counted over head captions."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlmodel import Session

from app.captions.revisions import head_captions
from app.captions.style_block import block_of, effective
from app.models import CaptionStatus, Dataset

# Short sides in the training resolutions' steps: where a dataset sits against 512/768/1024.
SHORT_SIDE_EDGES = (512, 768, 1024, 1536, 2048)
# Width / height: narrower than 3:5 is tall, than 9:10 portrait; within about 10 % of 1:1
# square; up to 16:9 or so landscape, wider is wide.
TALL_BELOW, PORTRAIT_BELOW, SQUARE_UP_TO, LANDSCAPE_UP_TO = 0.6, 0.9, 1.11, 1.7
# A box's share of the image, below: under 2 % a detail, under 10 % a small object, under a
# third a figure, under 80 % the main subject; more is the whole picture.
BOX_AREAS = ((0.02, "tiny"), (0.1, "small"), (0.35, "medium"), (0.8, "large"))


def overview(session: Session, *, dataset: Dataset) -> dict[str, Any]:
    """What the export page shows to look at: sizes, aspects, palettes, compositions."""
    block = block_of(dataset)
    rows = head_captions(session, dataset=dataset)
    short_sides: Counter[str] = Counter()
    aspects: Counter[str] = Counter()
    elements: Counter[int] = Counter()
    box_sizes: Counter[str] = Counter()
    palettes = []
    statuses: Counter[str] = Counter()
    for img, stored in rows:
        short = min(img.width, img.height)
        short_sides[_bucket(short, SHORT_SIDE_EDGES)] += 1
        aspects[_aspect(img.width / img.height)] += 1
        statuses[CaptionStatus(img.status).label] += 1
        if stored is not None:
            caption = effective(stored, block)
            elements[len(caption.composition.elements)] += 1
            for e in caption.composition.elements:
                if e.box is not None:
                    area = (e.box.x1 - e.box.x0) * (e.box.y1 - e.box.y0)
                    box_sizes[_bucket_area(area)] += 1
            palettes.append((img, caption.style.color_palette))
    return {
        "short_sides": _ordered(short_sides, ["< 512", "512+", "768+", "1024+", "1536+", "2048+"]),
        "aspects": _ordered(aspects, ["tall", "portrait", "square", "landscape", "wide"]),
        "elements": sorted(elements.items()),
        "box_sizes": _ordered(box_sizes, ["tiny", "small", "medium", "large", "whole"]),
        "palettes": palettes,
        "statuses": statuses,
        "total": len(rows),
    }


def _bucket(v: int, edges: tuple[int, ...]) -> str:
    label = f"< {edges[0]}"
    for e in edges:
        if v >= e:
            label = f"{e}+"
    return label


def _aspect(r: float) -> str:
    if r < TALL_BELOW:
        return "tall"
    if r < PORTRAIT_BELOW:
        return "portrait"
    if r <= SQUARE_UP_TO:
        return "square"
    return "landscape" if r <= LANDSCAPE_UP_TO else "wide"


def _bucket_area(a: float) -> str:
    for upper, name in BOX_AREAS:
        if a < upper:
            return name
    return "whole"


def _ordered(c: Counter[str], order: list[str]) -> list[tuple[str, int]]:
    return [(k, c.get(k, 0)) for k in order]
