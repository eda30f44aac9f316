"""Palettes from the real pixels: median cut, near-identical colours merged, most pixels first."""

from __future__ import annotations

from coloraide import Color
from PIL import Image
from sqlmodel import Session

from app.captions import boxes, revisions
from app.captions.schema import ELEMENT_PALETTE_MAX, IMAGE_PALETTE_MAX, Caption
from app.errors import NotFound
from app.images.decode import display_rgb
from app.images.store import ContentStore
from app.models import Action, Dataset
from app.models import Image as ImageRow

# Palettes describe colour, not detail: 512 px keeps every region a box can name.
WORK_SIDE = 512
# Colours covering less than this share of the pixels are noise, not palette.
MIN_SHARE = 0.01
# Median cut spends its boxes where the pixels are, so a dark painting's blacks take most of
# them: quantise to this many times the palette's size, then merge what the eye cannot tell
# apart, so that small but distinct colours (a candle, a red sleeve) still get a place.
CANDIDATES_PER_COLOUR = 3
# CIEDE2000 (coloraide) below this is one colour for a palette: about 1 is just noticeable side
# by side, and a caption's palette names colours, not the shades of one.
MERGE_DELTA_E = 6.0


def dominant_colours(img: Image.Image, *, limit: int) -> list[str]:
    """Up to `limit` perceptually distinct uppercase #RRGGBB colours, most pixels first."""
    if img.width == 0 or img.height == 0:
        return []
    candidates = limit * CANDIDATES_PER_COLOUR
    quantised = img.quantize(
        colors=candidates, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    palette = quantised.getpalette() or []
    # Each cluster: its colour (its most dominant member), that colour in Lab, its pixels.
    clusters: list[tuple[str, Color, int]] = []
    for count, index in sorted(quantised.getcolors(candidates) or [], reverse=True):
        i = int(index)  # type: ignore[call-overload]
        r, g, b = palette[i * 3 : i * 3 + 3]
        lab = Color("srgb", [r / 255, g / 255, b / 255]).convert("lab-d65")
        near = _nearest(lab, [c[1] for c in clusters])
        if near is None:
            clusters.append((f"#{r:02X}{g:02X}{b:02X}", lab, count))
        else:
            colour, near_lab, pixels = clusters[near]
            clusters[near] = (colour, near_lab, pixels + count)
    total = img.width * img.height
    ranked = sorted(clusters, key=lambda c: c[2], reverse=True)
    out = [ranked[0][0]] if ranked else []
    out += [colour for colour, _, pixels in ranked[1:] if pixels / total >= MIN_SHARE]
    return out[:limit]


def _nearest(lab: Color, others: list[Color]) -> int | None:
    """The index of the closest of `others` within MERGE_DELTA_E (CIEDE2000), if any."""
    best, best_delta = None, MERGE_DELTA_E
    for n, other in enumerate(others):
        delta = lab.delta_e(other, method="2000")
        if delta < best_delta:
            best, best_delta = n, delta
    return best


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


def fill_palettes(caption: Caption, image: bytes | Pixels) -> Caption:
    """The caption with the image palette and each boxed element's palette from the pixels."""
    pixels = image if isinstance(image, Pixels) else Pixels(image)
    img = pixels.img
    elements = []
    for e in caption.composition.elements:
        if e.box is None or e.box.is_degenerate:
            elements.append(e)
            continue
        x0, y0, x1, y1 = boxes.to_pixels(e.box, width=img.width, height=img.height)
        region = img.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))
        colours = dominant_colours(region, limit=ELEMENT_PALETTE_MAX)
        elements.append(e.model_copy(update={"color_palette": colours}))
    style = caption.style.model_copy(update={"color_palette": list(pixels.palette)})
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
