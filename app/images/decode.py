"""The one decode of an imported file: refuse bad input with a reason, else measure it,
store its bytes, and cache its thumbnail and perceptual hash.

Runs in worker processes during imports, so it takes plain paths and returns plain data.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import imagehash
from PIL import Image, ImageCms, UnidentifiedImageError

from app.images.store import ContentStore

# Pillow's parsers Atelier lets run on user files. (The JPEG parser also opens camera JPEGs
# with extra frames, which Pillow then names MPO.)
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
ACCEPTED_LABEL = "JPEG, PNG, WebP, TIFF, BMP and GIF"
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
)
MIME_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "GIF": "image/gif",
}
THUMB_BACKGROUND = (236, 236, 236)
# EXIF orientation -> the transpose that shows the image upright (the EXIF specification's table).
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class Refused(Exception):
    """The file cannot be imported; `reason` is the sentence shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Decoded:
    sha256: str
    byte_size: int
    format: str
    width: int
    height: int
    orientation: int
    mode: str
    has_icc: bool
    frames: int
    phash: str
    # The share of pixels not fully opaque (0.0 without an alpha channel or transparent colour).
    transparent: float = 0.0

    @property
    def megapixels(self) -> float:
        return round(self.width * self.height / 1_000_000, 3)

    @property
    def aspect_ratio(self) -> float:
        return round(self.width / self.height, 4)


@dataclass(frozen=True)
class FileLimits:
    max_bytes: int
    max_pixels: int
    thumb_size: int


def decode_file(path: Path, *, limits: FileLimits, store: ContentStore) -> Decoded:
    """Decodes `path` once; on success its bytes and thumbnail are in the store."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise Refused(f"it cannot be read ({e.strerror or e})") from e
    if size == 0:
        raise Refused("the file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise Refused(
            f"the file is {size / 2**20:.0f} MB, over the {limits.max_bytes // 2**20} MB limit"
            " (ATELIER_MAX_FILE_MB)"
        )
    data = path.read_bytes()
    return decode_bytes(data, limits=limits, store=store)


def decode_bytes(data: bytes, *, limits: FileLimits, store: ContentStore) -> Decoded:
    sha256 = hashlib.sha256(data).hexdigest()
    not_an_image = describe_non_image(data[:512])
    if not_an_image:
        raise Refused(not_an_image)

    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    with warnings.catch_warnings():
        # Pillow's own check stays armed (it raises past twice the limit); below that, the
        # explicit check after open names the image's size.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except Image.DecompressionBombError as e:
            raise Refused(_too_many_pixels(limits.max_pixels)) from e
        except UnidentifiedImageError as e:
            raise Refused(_unidentified(data)) from e
        except Exception as e:  # a parser choking on a corrupt header
            raise Refused(f"the file is corrupt ({_short(e)})") from e

        try:
            fmt, frames, icc, mode, orientation, (full_w, full_h), thumb, clear = _read(img, limits)
        except (Refused, MemoryError):
            raise
        except Exception as e:  # any parser tripping over a corrupt file past its header
            raise Refused(f"the file is truncated or corrupt ({_short(e)})") from e

    width, height = (full_h, full_w) if orientation in (5, 6, 7, 8) else (full_w, full_h)
    phash = perceptual_hash(thumb)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=82, optimize=False)
    store.put_blob(sha256, data)
    store.put_thumb(sha256, buf.getvalue())
    return Decoded(
        sha256=sha256,
        byte_size=len(data),
        format=fmt,
        width=width,
        height=height,
        orientation=orientation,
        mode=mode,
        has_icc=bool(icc),
        frames=frames,
        phash=phash,
        transparent=clear,
    )


class _Read(NamedTuple):
    format: str
    frames: int
    icc: bytes | None
    mode: str
    orientation: int
    size: tuple[int, int]
    thumb: Image.Image
    transparent: float


def _read(img: Image.Image, limits: FileLimits) -> _Read:
    """What the import records, and the thumbnail, from an opened image (closed after)."""
    with img:
        if img.width * img.height > limits.max_pixels:
            raise Refused(_too_many_pixels(limits.max_pixels, img.width, img.height))
        if img.width < 1 or img.height < 1:
            raise Refused("the image has no pixels")
        fmt = "JPEG" if img.format == "MPO" else str(img.format)
        frames = int(getattr(img, "n_frames", 1) or 1)
        icc = img.info.get("icc_profile")
        mode = img.mode
        orientation = orientation_of(img)
        full_w, full_h = img.size
        if fmt == "JPEG":
            # DCT scaling: libjpeg still reads the whole stream (truncation is caught)
            # but builds only the pixels the thumbnail and hash need.
            img.draft(None, (limits.thumb_size, limits.thumb_size))
        try:
            img.load()
        except Image.DecompressionBombError as e:
            raise Refused(_too_many_pixels(limits.max_pixels, full_w, full_h)) from e
        except Exception as e:
            raise Refused(f"the file is truncated or corrupt ({_short(e)})") from e
        thumb = _thumbnail(img, orientation=orientation, icc=icc, size=limits.thumb_size)
        clear = transparent_share(img)
        return _Read(fmt, frames, icc, mode, orientation, (full_w, full_h), thumb, clear)


def transparent_share(img: Image.Image) -> float:
    """The share of the image's pixels that are not fully opaque, rounded to 1/10,000."""
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = img.getchannel("A")
    elif "transparency" in img.info:  # a palette entry or one colour marked transparent
        try:
            alpha = to_8bit(img).convert("RGBA").getchannel("A")
        except (ValueError, OSError):
            return 0.0
    else:
        return 0.0
    opaque = alpha.histogram()[255]
    clear = 1 - opaque / (alpha.width * alpha.height)
    # Never rounded to nothing: one clear pixel is still a flattened one.
    return max(round(clear, 4), 0.0001) if clear > 0 else 0.0


def perceptual_hash(img: Image.Image) -> str:
    """imagehash's 64-bit pHash, fed a box-reduced grey copy (same hash, a tenth of the time)."""
    grey = img.convert("L")
    factor = max(1, min(grey.size) // 64)
    return str(imagehash.phash(grey.reduce(factor) if factor > 1 else grey))


def render_thumbnail(data: bytes, *, size: int) -> bytes:
    """A JPEG thumbnail of already-accepted image bytes (for a cache entry gone missing)."""
    buf = io.BytesIO()
    display_rgb(data, max_side=size).save(buf, "JPEG", quality=82)
    return buf.getvalue()


def display_rgb(data: bytes, *, max_side: int) -> Image.Image:
    """The image as shown: RGB in sRGB, EXIF orientation applied, at most `max_side` px."""
    with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as img:
        icc = img.info.get("icc_profile")
        orientation = orientation_of(img)
        img.draft(None, (max_side, max_side))
        img.load()
        return _thumbnail(img, orientation=orientation, icc=icc, size=max_side)


def describe_non_image(head: bytes) -> str | None:
    """A sentence naming what the bytes are when they are plainly not a raster image."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "it is an HTML page, not an image"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return f"it is an SVG drawing; Atelier accepts raster images only ({ACCEPTED_LABEL})"
    if text.startswith(b"<?xml"):
        return "it is an XML document, not an image"
    if text.startswith(b"%pdf"):
        return "it is a PDF document, not an image"
    if text.startswith(b"pk\x03\x04"):
        return "it is a zip archive, not an image"
    return None


def _unidentified(data: bytes) -> str:
    # Identify the format with every parser Pillow has, header only, to name it.
    try:
        with Image.open(io.BytesIO(data)) as other:
            return f"its format ({other.format}) is not supported; Atelier accepts {ACCEPTED_LABEL}"
    except Exception:
        pass
    if data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n":
        return "the file is truncated or corrupt (its header cannot be read)"
    return f"it is not an image Atelier can read (accepted: {ACCEPTED_LABEL})"


def _too_many_pixels(limit: int, w: int | None = None, h: int | None = None) -> str:
    dims = f"{w}x{h} pixels" if w and h else "the image"
    return (
        f"{dims} is over the limit of {limit / 1e6:.0f} megapixels (ATELIER_MAX_IMAGE_PIXELS);"
        " it may be a decompression bomb"
    )


def orientation_of(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def _thumbnail(img: Image.Image, *, orientation: int, icc: bytes | None, size: int) -> Image.Image:
    """An RGB thumbnail in sRGB, EXIF orientation applied, alpha flattened on light grey."""
    img = to_8bit(img)
    thumb = img.copy()
    # Bilinear (antialiased when shrinking) is near bicubic for a thumbnail at 60% of the cost.
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if thumb.mode in ("RGBA", "LA", "PA") or (thumb.mode == "P" and "transparency" in thumb.info):
        rgba = thumb.convert("RGBA")
        flat = Image.new("RGB", rgba.size, THUMB_BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        thumb = flat
    if icc and thumb.mode in ("RGB", "CMYK", "L"):
        thumb = to_srgb(thumb, icc)
    if thumb.mode != "RGB":
        thumb = thumb.convert("RGB")
    if orientation != 1:
        thumb = thumb.transpose(TRANSPOSE[orientation])
    return thumb


def to_8bit(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return img.convert("I").point(lambda v: v / 256).convert("L")
    if img.mode == "I":
        return img.point(lambda v: v / 256).convert("L")
    if img.mode == "F":
        return img.convert("L")
    return img


def to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        return out if out is not None else img
    except Exception:
        # A broken embedded profile only costs colour accuracy of the thumbnail.
        return img


def _short(e: Exception) -> str:
    msg = str(e).strip() or type(e).__name__
    return msg if len(msg) <= 160 else msg[:157] + "..."
