"""The one decode: every accepted format measured right, every bad file refused with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.images.decode import FileLimits, Refused, decode_file
from app.images.store import ContentStore
from tests import imagefiles as f

LIMITS = FileLimits(max_bytes=5 * 2**20, max_pixels=20_000_000, thumb_size=256)


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    for d in ("store", "thumbs", "tmp"):
        (tmp_path / d).mkdir()
    return ContentStore(
        store_dir=tmp_path / "store", thumbs_dir=tmp_path / "thumbs", tmp_dir=tmp_path / "tmp"
    )


def refusal(path: Path, store: ContentStore, limits: FileLimits = LIMITS) -> str:
    with pytest.raises(Refused) as info:
        decode_file(path, limits=limits, store=store)
    assert not any(store.store_dir.rglob("*")), "a refused file left bytes in the store"
    assert not any(store.thumbs_dir.rglob("*.jpg")), "a refused file left a thumbnail"
    return info.value.reason


@pytest.mark.parametrize(
    ("fmt", "suffix", "kw"),
    [
        ("JPEG", ".jpg", {"quality": 90}),
        ("PNG", ".png", {}),
        ("WEBP", ".webp", {"quality": 80}),
        ("TIFF", ".tif", {}),
        ("BMP", ".bmp", {}),
        ("GIF", ".gif", {}),
    ],
)
def test_decode_accepted_format(tmp_path: Path, store: ContentStore, fmt, suffix, kw) -> None:
    path = f.save(f.picture(1, (640, 480)), tmp_path / f"p{suffix}", fmt, **kw)
    d = decode_file(path, limits=LIMITS, store=store)
    assert (d.format, d.width, d.height) == (fmt, 640, 480)
    assert d.megapixels == pytest.approx(0.307, abs=0.001)
    assert d.aspect_ratio == pytest.approx(4 / 3, abs=1e-3)
    assert store.blob_path(d.sha256).read_bytes() == path.read_bytes()
    with Image.open(store.thumb_path(d.sha256)) as thumb:
        assert max(thumb.size) == 256
    assert len(d.phash) == 16


def test_decode_applies_exif_orientation(tmp_path: Path, store: ContentStore) -> None:
    d = decode_file(f.rotated_exif_jpeg(tmp_path / "r.jpg", 3), limits=LIMITS, store=store)
    assert d.orientation == 6
    assert (d.width, d.height) == (900, 1200)  # as displayed, not as stored
    with Image.open(store.thumb_path(d.sha256)) as thumb:
        assert thumb.height > thumb.width


def test_decode_keeps_icc_profile(tmp_path: Path, store: ContentStore) -> None:
    path = f.icc_jpeg(tmp_path / "icc.jpg", 4)
    d = decode_file(path, limits=LIMITS, store=store)
    assert d.has_icc
    with Image.open(store.blob_path(d.sha256)) as kept:
        assert kept.info["icc_profile"] == Image.open(path).info["icc_profile"]


def test_decode_animated_gif_uses_first_frame(tmp_path: Path, store: ContentStore) -> None:
    d = decode_file(f.animated_gif(tmp_path / "a.gif"), limits=LIMITS, store=store)
    assert (d.format, d.frames, d.width) == ("GIF", 3, 1100)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "LA", "P", "1"])
def test_decode_odd_modes(tmp_path: Path, store: ContentStore, mode: str) -> None:
    img = f.picture(5, (300, 200))
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 256)
    else:
        img = img.convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    path = f.save(img, tmp_path / f"m.{fmt.lower()}", fmt)
    d = decode_file(path, limits=LIMITS, store=store)
    assert (d.width, d.height) == (300, 200)


def test_refuse_zero_byte(tmp_path: Path, store: ContentStore) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty" in refusal(tmp_path / "empty.jpg", store)


def test_refuse_truncated_jpeg(tmp_path: Path, store: ContentStore) -> None:
    path = f.truncated(tmp_path / "t.jpg", f.jpeg_bytes(7), keep=0.6)
    assert "truncated" in refusal(path, store)


def test_refuse_truncated_png(tmp_path: Path, store: ContentStore) -> None:
    src = f.png(tmp_path / "src.png", 8).read_bytes()
    assert "truncated or corrupt" in refusal(f.truncated(tmp_path / "t.png", src, 0.5), store)


def test_refuse_text_file(tmp_path: Path, store: ContentStore) -> None:
    (tmp_path / "notes.jpg").write_text("just some notes, not a picture\n")
    assert "not an image" in refusal(tmp_path / "notes.jpg", store)


def test_refuse_html_named_png(tmp_path: Path, store: ContentStore) -> None:
    (tmp_path / "page.png").write_text("<!DOCTYPE html><html><body>404</body></html>")
    assert refusal(tmp_path / "page.png", store) == "it is an HTML page, not an image"


def test_refuse_svg_named_png(tmp_path: Path, store: ContentStore) -> None:
    (tmp_path / "d.png").write_text(
        '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'
    )
    assert "SVG" in refusal(tmp_path / "d.png", store)


def test_refuse_decompression_bomb(tmp_path: Path, store: ContentStore) -> None:
    path = f.bomb_png(tmp_path / "bomb.png", 6000)  # 36 MP in a file of a few KB
    assert path.stat().st_size < 200_000
    reason = refusal(path, store)
    assert "6000x6000" in reason and "megapixels" in reason


def test_refuse_far_over_pixel_limit(tmp_path: Path, store: ContentStore) -> None:
    # Over twice the limit Pillow itself raises: still one clear sentence.
    reason = refusal(f.bomb_png(tmp_path / "b.png", 3000), store, FileLimits(2**30, 1_000_000, 256))
    assert "megapixels" in reason


def test_refuse_over_size_limit(tmp_path: Path, store: ContentStore) -> None:
    path = f.jpeg(tmp_path / "big.jpg", 9)
    small = FileLimits(max_bytes=path.stat().st_size - 1, max_pixels=10**8, thumb_size=256)
    assert "MB limit" in refusal(path, store, small)


def test_refuse_unsupported_format(tmp_path: Path, store: ContentStore) -> None:
    path = f.save(f.picture(2, (64, 64)), tmp_path / "icon.png", "ICO")
    assert "(ICO) is not supported" in refusal(path, store)
