"""Palettes from the real pixels: Pillow's median-cut quantiser, most dominant colour first."""

from __future__ import annotations

from PIL import Image

from app.captions import boxes
from app.captions.schema import ELEMENT_PALETTE_MAX, IMAGE_PALETTE_MAX, Caption
from app.images.decode import display_rgb

# Palettes describe colour, not detail: 512 px keeps every region a box can name.
WORK_SIDE = 512
# Colours covering less than this share of the pixels are noise, not palette.
MIN_SHARE = 0.01


def dominant_colours(img: Image.Image, *, limit: int) -> list[str]:
    """Up to `limit` uppercase #RRGGBB colours of an RGB image, most pixels first."""
    if img.width == 0 or img.height == 0:
        return []
    quantised = img.quantize(
        colors=limit, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    palette = quantised.getpalette() or []
    total = img.width * img.height
    counts = sorted(quantised.getcolors(limit) or [], reverse=True)
    out: list[str] = []
    for count, index in counts:
        if out and count / total < MIN_SHARE:
            break
        i = int(index)  # type: ignore[call-overload]
        r, g, b = palette[i * 3 : i * 3 + 3]
        colour = f"#{r:02X}{g:02X}{b:02X}"
        if colour not in out:
            out.append(colour)
    return out


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
