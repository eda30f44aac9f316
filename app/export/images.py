"""The PNG each image is exported as: copied byte for byte when it is already what the
trainer should see, else converted (orientation applied, sRGB, alpha flattened, resized)."""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.images.decode import ACCEPTED_FORMATS, TRANSPOSE, orientation_of, to_8bit, to_srgb
from app.images.transparency import BACKGROUND

PNG_LEVEL = 3  # zlib level: a fair trade of size for speed; the trainer does not care


@dataclass(frozen=True)
class Exported:
    width: int
    height: int
    sha256: str
    copied: bool


def export_png(
    src: Path,
    dst: Path,
    *,
    orientation: int | None = None,
    keep_alpha: bool = False,
    max_side: int = 0,
) -> Exported:
    """Writes `dst` (a PNG) from the stored original `src`.

    `orientation` is the EXIF orientation recorded at import; reading it again from a PNG
    would decode the whole image, since its EXIF chunk may follow the pixels.
    """
    with Image.open(src, formats=ACCEPTED_FORMATS) as img:
        if orientation is None:
            orientation = orientation_of(img)
        icc = img.info.get("icc_profile")
        has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        too_big = bool(max_side) and max(img.size) > max_side
        as_is = (
            img.format == "PNG"
            and orientation == 1
            and not icc
            and not too_big
            and getattr(img, "n_frames", 1) == 1
            # With alpha kept the trainer (alpha_mask: true) reads channel 4 of every image:
            # an RGB one fails to load and is skipped, a greyscale one crashes latent caching.
            and img.mode in (("RGBA",) if keep_alpha else ("RGB", "L"))
            and (keep_alpha or not has_alpha)
        )
        if as_is:
            # The store names each file by the sha256 of its bytes: no need to hash again.
            shutil.copyfile(src, dst)
            return Exported(img.width, img.height, src.name, True)
        img.load()
        out = to_8bit(img)
        if has_alpha:
            rgba = out.convert("RGBA")
            if keep_alpha:
                out = rgba
            else:
                out = Image.new("RGB", rgba.size, BACKGROUND)
                out.paste(rgba, mask=rgba.getchannel("A"))
        if icc and out.mode in ("RGB", "CMYK", "L"):
            out = to_srgb(out, icc)
        if out.mode not in ("RGB", "RGBA"):
            out = out.convert("RGB")
        if keep_alpha and out.mode != "RGBA":
            out = out.convert("RGBA")  # opaque: the mask trains the whole image
        if orientation != 1:
            out = out.transpose(TRANSPOSE[orientation])
        if too_big:
            out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, "PNG", compress_level=PNG_LEVEL)
    encoded = buf.getvalue()
    _write(dst, encoded)
    return Exported(out.width, out.height, hashlib.sha256(encoded).hexdigest(), False)


def _write(dst: Path, data: bytes) -> None:
    # No fsync per file: the writer syncs once before the export is renamed into place.
    dst.write_bytes(data)
