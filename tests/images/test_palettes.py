"""Palettes from the pixels: the same from the file or the decoded image; distinct colours."""

import io

from coloraide import Color
from PIL import Image

from app.captions.boxes import Box
from app.captions.schema import Caption, Composition, Element
from app.images.decode import display_rgb
from app.images.palettes import MERGE_DELTA_E, WORK_SIDE, Pixels, dominant_colours, fill_palettes

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


def painted(areas: list[tuple[tuple[int, int, int], int]], *, side: int = 400) -> Image.Image:
    """Vertical bands of flat colour, each `width` columns wide, `side` rows tall."""
    img = Image.new("RGB", (sum(w for _, w in areas), side))
    x = 0
    for colour, width in areas:
        img.paste(colour, (x, 0, x + width, side))
        x += width
    return img


def delta_e(a: str, b: str) -> float:
    return Color(a).delta_e(b, method="2000")


def test_a_dark_painting_gives_distinct_colours_with_merged_blacks_first() -> None:
    # 42% of the canvas in seven near-blacks (6% each), then a red cloak, a flesh tone and a
    # candle: each black alone is smaller than the cloak, together they are the painting.
    blacks = [(8 + 2 * n, 6 + 2 * n, 5 + n) for n in range(7)]
    img = painted(
        [(c, 60) for c in blacks]
        + [((150, 30, 25), 250), ((205, 150, 110), 200), ((250, 170, 40), 130)]
    )
    palette = dominant_colours(img, limit=16)
    assert len(palette) == 4, palette
    for n, a in enumerate(palette):
        for b in palette[n + 1 :]:
            assert delta_e(a, b) >= MERGE_DELTA_E, (a, b)
    near_black, red, flesh, candle = (rgb(c) for c in palette)
    assert max(near_black) < 25
    assert red[0] > 130 and red[1] < 50
    assert flesh[0] > 190 and flesh[1] > 130
    assert candle[0] > 230 and candle[2] < 60


def test_a_dark_painting_with_grain_keeps_few_near_blacks() -> None:
    # Noise and gradients: the median cut alone gave 13 near-blacks of 16 on such a painting.
    import random

    rnd = random.Random(3)
    img = Image.new("RGB", (300, 200))
    px = img.load()
    assert px is not None
    for y in range(200):
        for x in range(300):
            v = 6 + x // 20 + rnd.randint(-3, 3)
            px[x, y] = (v + 3, v, max(v - 2, 0))
    img.paste((180, 40, 30), (200, 50, 260, 150))
    palette = dominant_colours(img, limit=16)
    darks = [c for c in palette if max(rgb(c)) < 40]
    assert 1 <= len(darks) <= 3, palette
    assert any(rgb(c)[0] > 150 and rgb(c)[1] < 60 for c in palette), palette
    for n, a in enumerate(palette):
        for b in palette[n + 1 :]:
            assert delta_e(a, b) >= MERGE_DELTA_E, (a, b)


def test_an_element_palette_holds_one_orange_not_three() -> None:
    oranges = [(230, 120, 30), (233, 123, 32), (227, 118, 34)]
    img = painted([(oranges[0], 100), (oranges[1], 90), (oranges[2], 80), ((40, 60, 140), 130)])
    buf = io.BytesIO()
    img.save(buf, "PNG")
    caption = Caption(
        composition=Composition(
            background="a wall",
            elements=[Element(box=Box(0.0, 0.0, 1.0, 1.0), desc="a cloth")],
        )
    )
    palette = fill_palettes(caption, buf.getvalue()).composition.elements[0].color_palette
    assert len(palette) == 2, palette
    orange, blue = (rgb(c) for c in palette)
    assert orange[0] > 220 and 110 <= orange[1] <= 130
    assert blue[2] > 120


def test_fine_stripes_give_their_own_colours_not_a_blend() -> None:
    # Larger than quantising is given (SAMPLED_PIXELS_PER_COLOUR): its pixels are
    # picked, never averaged, so 1 px stripes stay red and blue, not a purple the picture lacks.
    red, blue = (220, 20, 20), (20, 20, 220)
    img = Image.new("RGB", (512, 512), blue)
    for x in range(0, 512, 2):
        img.paste(red, (x, 0, x + 1, 512))
    assert sorted(dominant_colours(img, limit=16)) == ["#1414DC", "#DC1414"]
    # Thin lines over 5 % of a grey ground keep their pure red.
    lines = Image.new("RGB", (512, 512), (40, 40, 40))
    for y in range(0, 512, 20):
        lines.paste((255, 0, 0), (0, y, 512, y + 1))
    assert dominant_colours(lines, limit=16) == ["#282828", "#FF0000"]
