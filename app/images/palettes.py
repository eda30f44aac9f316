"""Palettes from the real pixels: quantised, near-identical colours merged, most pixels first."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from sqlmodel import Session

from app.captions import boxes, revisions
from app.captions.schema import ELEMENT_PALETTE_MAX, IMAGE_PALETTE_MAX, Caption
from app.errors import NotFound
from app.images.decode import display_rgb
from app.images.delta_e import pairwise_2000
from app.images.lab import lab_of
from app.images.store import ContentStore
from app.models import Action, Dataset
from app.models import Image as ImageRow

# Palettes describe colour, not detail: 512 px keeps every region a box can name.
WORK_SIDE = 512
# Colours covering less than this share of the pixels are noise, not palette.
MIN_SHARE = 0.01
# Quantising spends its colours where the pixels are, so a dark painting's blacks take most of
# them: quantise to this many times the palette's size, then merge what the eye cannot tell
# apart, so that small but distinct colours (a candle, a red sleeve) still get a place.
CANDIDATES_PER_COLOUR = 3
# CIEDE2000 below this is one colour for a palette: about 1 is just noticeable side
# by side, and a caption's palette names colours, not the shades of one.
MERGE_DELTA_E = 6.0
# Quantising costs with the pixels it is given, far more than a palette needs them: it is
# given this many of an image's or crop's pixels for each colour of the palette at most (an
# image palette's 16: 16,384; an element's 5: 5,120), picked at random (the same ones each
# time). A colour over MIN_SHARE of a crop is then about 50 of the 5,120 or more. Picked,
# not averaged: a resized copy blends stripes, hatching and text into colours the picture
# does not hold. Measured with bench/palettes.py (painting-like pictures, photographs,
# smooth colour fields, stripes): see README's Benchmarks.
SAMPLED_PIXELS_PER_COLOUR = 1024
# Pillow's fast octree, not its median cut: as close to the pixels or closer, and its cost
# does not grow with the distinct colours, where the median cut's does (a crop of a smooth
# or photographic picture, about 4,800 distinct colours in 5,120 pixels, took 3.2 ms against
# 0.65 ms for one of about 700; the octree 0.2 ms for either). bench/palettes.py.
QUANTISE = Image.Quantize.FASTOCTREE


def dominant_colours(img: Image.Image, *, limit: int) -> list[str]:
    """Up to `limit` perceptually distinct uppercase #RRGGBB colours, most pixels first."""
    if img.width == 0 or img.height == 0:
        return []
    candidates = limit * CANDIDATES_PER_COLOUR
    img = _sampled(img, limit * SAMPLED_PIXELS_PER_COLOUR)
    quantised = img.quantize(colors=candidates, method=QUANTISE, dither=Image.Dither.NONE)
    palette = quantised.getpalette() or []
    counted = sorted(quantised.getcolors(candidates) or [], reverse=True)
    rgbs = [palette[int(i) * 3 : int(i) * 3 + 3] for _, i in counted]  # type: ignore[call-overload]
    distance = pairwise_2000(lab_of(np.array(rgbs, dtype=np.intp).reshape(-1, 3)))
    # Each cluster: its colour (its most dominant member), that member's index, its pixels.
    clusters: list[tuple[str, int, int]] = []
    for k, ((count, _), (r, g, b)) in enumerate(zip(counted, rgbs, strict=True)):
        near = _nearest(distance[k], [c[1] for c in clusters])
        if near is None:
            clusters.append((f"#{r:02X}{g:02X}{b:02X}", k, count))
        else:
            colour, member, pixels = clusters[near]
            clusters[near] = (colour, member, pixels + count)
    total = img.width * img.height
    ranked = sorted(clusters, key=lambda c: c[2], reverse=True)
    out = [ranked[0][0]] if ranked else []
    out += [colour for colour, _, pixels in ranked[1:] if pixels / total >= MIN_SHARE]
    return out[:limit]


def _sampled(img: Image.Image, most: int) -> Image.Image:
    """The image, or `most` of its pixels picked at random (a fixed seed, so one image always
    gives one palette) as a one-pixel-wide image."""
    pixels = img.width * img.height
    if pixels <= most:
        return img
    flat = np.asarray(img.convert("RGB")).reshape(-1, 3)
    # In the pixels' order: a mask costs less than sorting the picks (the same pixels).
    picked = np.zeros(pixels, dtype=bool)
    picked[np.random.default_rng(0).choice(pixels, most, replace=False)] = True
    return Image.fromarray(np.ascontiguousarray(flat[picked].reshape(-1, 1, 3)))


def _nearest(distances: np.ndarray, members: list[int]) -> int | None:
    """The index in `members` of the closest within MERGE_DELTA_E (CIEDE2000), if any:
    `distances` are from the colour at hand to every candidate."""
    if not members:
        return None
    near = int(np.argmin(distances[members]))  # the first of equals, as in `members`' order
    return near if distances[members[near]] < MERGE_DELTA_E else None


class Pixels:
    """An image's working copy for palettes, and its own palette, computed once.

    A drafting job makes it from the image it already decoded for the model, while the GPU
    drafts, so that only the element crops, which need the model's boxes, are left for after.
    """

    def __init__(self, image: bytes | Image.Image) -> None:
        if isinstance(image, bytes):
            self.img = display_rgb(image, max_side=WORK_SIDE)
        else:  # already decoded as shown (oriented, sRGB, RGB): only made smaller
            self.img = image.copy()
            self.img.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        self.palette = dominant_colours(self.img, limit=IMAGE_PALETTE_MAX)


def fill_palettes(caption: Caption, image: bytes | Pixels, *, only_empty: bool = False) -> Caption:
    """The caption with the image palette and each boxed element's palette from the pixels;
    with `only_empty`, the palettes it already holds stay as they are."""
    pixels = image if isinstance(image, Pixels) else Pixels(image)
    img = pixels.img
    elements = []
    for e in caption.composition.elements:
        if e.box is None or e.box.is_degenerate or (only_empty and e.color_palette):
            elements.append(e)
            continue
        x0, y0, x1, y1 = boxes.to_pixels(e.box, width=img.width, height=img.height)
        region = img.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))
        colours = dominant_colours(region, limit=ELEMENT_PALETTE_MAX)
        elements.append(e.model_copy(update={"color_palette": colours}))
    keep = only_empty and caption.style.color_palette
    style = caption.style.model_copy(
        update={"color_palette": list(caption.style.color_palette if keep else pixels.palette)}
    )
    composition = caption.composition.model_copy(update={"elements": elements})
    return caption.model_copy(update={"style": style, "composition": composition})


def fill_from_pixels(
    session: Session, *, store: ContentStore, image: ImageRow, dataset: Dataset, base: int
) -> revisions.CaptionView:
    """Saves the newest caption with every palette filled from the image's pixels."""
    current = revisions.view(session, image, dataset)
    if current.revision != base:
        raise revisions.StaleRevision(
            f"You edited revision {base}, but revision {current.revision} is newest.",
            current=current.as_dict(),
        )
    blob = store.blob_path(image.sha256)
    if not blob.is_file():
        raise NotFound(f"The stored file of image {image.id} is missing from the data dir.")
    filled = fill_palettes(current.caption or Caption(), blob.read_bytes())
    return revisions.save(
        session, image=image, dataset=dataset, caption=filled, base=base, action=Action.palettes
    )


def empty_filler(store: ContentStore) -> Callable[[ImageRow, Caption], Caption]:
    """Fills a caption's empty palettes (the image's and each boxed element's) from the
    stored pixels of its image; palettes it holds stay."""

    def fill(image: ImageRow, caption: Caption) -> Caption:
        blob = store.blob_path(image.sha256)
        if not blob.is_file():
            raise NotFound(f"The stored file of {image.filename} is missing from the data dir.")
        return fill_palettes(caption, blob.read_bytes(), only_empty=True)

    return fill
