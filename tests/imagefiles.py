"""Real image files for tests: distinct paintings-like pictures, and every kind of bad file."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageCms, ImageDraw


def picture(seed: int, size: tuple[int, int] = (1200, 900)) -> Image.Image:
    """A smooth picture of random shapes: distinct seeds give perceptually distinct images."""
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(w // 8, w // 2), y0 + rng.randrange(h // 8, h // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return img


def save(img: Image.Image, path: Path, fmt: str | None = None, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


def jpeg(path: Path, seed: int, size: tuple[int, int] = (1200, 900), **kw: object) -> Path:
    return save(picture(seed, size), path, "JPEG", quality=90, **kw)


def png(path: Path, seed: int, size: tuple[int, int] = (1200, 900)) -> Path:
    return save(picture(seed, size), path, "PNG")


def jpeg_bytes(seed: int, size: tuple[int, int] = (1200, 900)) -> bytes:
    buf = io.BytesIO()
    picture(seed, size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def near_copy(src: Path, dst: Path) -> Path:
    """The same picture resized and recompressed: a near-duplicate, not an exact one."""
    with Image.open(src) as img:
        return save(img.resize((img.width * 3 // 4, img.height * 3 // 4)), dst, "JPEG", quality=70)


def rotated_exif_jpeg(path: Path, seed: int) -> Path:
    """A 1200x900 stored picture whose EXIF says 'rotate 90° clockwise' (orientation 6)."""
    img = picture(seed)
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(img, path, "JPEG", exif=exif.tobytes())


def icc_jpeg(path: Path, seed: int) -> Path:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return save(picture(seed), path, "JPEG", icc_profile=profile)


def animated_gif(path: Path) -> Path:
    frames = [picture(s, (1100, 1100)).convert("P") for s in (1, 2, 3)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def truncated(path: Path, source: bytes, keep: float = 0.5) -> Path:
    path.write_bytes(source[: int(len(source) * keep)])
    return path


def bomb_png(path: Path, side: int) -> Path:
    """A small file that decodes to side x side pixels."""
    return save(Image.new("L", (side, side)), path, "PNG", optimize=True)
