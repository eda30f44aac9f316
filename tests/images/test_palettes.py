"""Palettes from the pixels: the same whether made from the file or from the decoded image."""

import io

from PIL import Image

from app.images.decode import display_rgb
from app.images.palettes import WORK_SIDE, Pixels

COLOURS = [(200, 30, 30), (20, 40, 220), (240, 220, 60), (30, 160, 90)]


def quadrants_jpeg_rotated() -> bytes:
    """2000x1000 in four colours of four different areas, stored sideways with an EXIF
    orientation (6) to undo."""
    img = Image.new("RGB", (2000, 1000), COLOURS[0])
    img.paste(COLOURS[1], (1300, 0, 2000, 600))
    img.paste(COLOURS[2], (0, 600, 1300, 1000))
    img.paste(COLOURS[3], (1300, 600, 2000, 1000))
    stored = img.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def rgb(colour: str) -> tuple[int, ...]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def test_a_job_palette_from_the_decoded_image_matches_the_one_from_the_file() -> None:
    data = quadrants_jpeg_rotated()
    from_file = Pixels(data)
    # A drafting job decodes each image once, for the model, and makes the palette from it.
    from_decoded = Pixels(display_rgb(data, max_side=1536))
    assert from_file.img.size == from_decoded.img.size == (WORK_SIDE, WORK_SIDE // 2)
    # The same colours in the same order, give or take JPEG's rounding.
    assert len(from_decoded.palette) == len(from_file.palette) == 4
    for ours, theirs in zip(from_decoded.palette, from_file.palette, strict=True):
        assert max(abs(a - b) for a, b in zip(rgb(ours), rgb(theirs), strict=True)) <= 3
    # The orientation was applied once: red is top left, green bottom right.
    assert from_decoded.img.getpixel((10, 10)) == from_file.img.getpixel((10, 10))
    r, g, b = from_decoded.img.getpixel((WORK_SIDE - 10, WORK_SIDE // 2 - 10))
    assert g > 120 and r < 80 and b < 130
