"""Palettes from the pixels: speed and fit of `dominant_colours` with its pixel cap, against the
same function with the cap off (quantising the whole 512 px working copy, as before
2026-12-01), and against Pillow's median cut in place of its fast octree (as before
2026-12-07), in the same run.

For each picture: the image palette (16 colours) and eight element palettes (5 colours, crops
of a tenth to half the picture). Fit is the pixels' mean distance to their nearest palette
colour (CIE76 in Lab, lower is better); a palette that got faster but fits worse shows here.
The pictures are painting-like 1024 px JPEGs (bench/import.py's); --smooth adds smooth colour
fields (bench/draft_job.py's job pictures: thousands of distinct colours a crop), --folder
your own; each set is measured apart.
Four pictures of fine detail (stripes, thin lines, a check) are measured apart: a cap that
blended pixels would show there, as colours the picture does not hold.

    python bench/palettes.py [--pictures 24] [--smooth 24] [--folder DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.images import palettes  # noqa: E402
from app.images.decode import display_rgb  # noqa: E402

write_jpegs = importlib.import_module("bench.import").write_jpegs

BOXES = [
    (0.0, 0.0, 1.0, 0.4),
    (0.1, 0.5, 0.6, 1.0),
    (0.6, 0.5, 0.9, 0.9),
    (0.2, 0.2, 0.3, 0.3),
    (0.4, 0.1, 0.5, 0.3),
    (0.7, 0.1, 0.95, 0.3),
    (0.05, 0.45, 0.2, 0.6),
    (0.3, 0.6, 0.4, 0.7),
]


def fine_detail() -> list[Image.Image]:
    """Pictures a resized copy would blend: 1 px and 3 px stripes of two colours, thin red
    lines on grey, a fine two-colour check (cloth, hatching, halftone)."""
    stripes1 = np.zeros((512, 512, 3), np.uint8)
    stripes1[:, 0::2], stripes1[:, 1::2] = (220, 20, 20), (20, 20, 220)
    stripes3 = np.zeros((512, 512, 3), np.uint8)
    for x in range(512):
        stripes3[:, x] = (230, 200, 40) if (x // 3) % 2 else (20, 30, 90)
    lines = np.full((512, 512, 3), 40, np.uint8)
    lines[::20] = (255, 0, 0)
    check = np.zeros((512, 512, 3), np.uint8)
    yy, xx = np.mgrid[:512, :512]
    check[(yy + xx) % 2 == 0], check[(yy + xx) % 2 == 1] = (240, 240, 230), (30, 90, 40)
    return [Image.fromarray(a) for a in (stripes1, stripes3, lines, check)]


def lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0..255) to CIE Lab, D65."""
    c = rgb.astype(np.float64) / 255
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
    )


def fit(img: Image.Image, palette: list[str]) -> float:
    """The pixels' mean CIE76 distance to the nearest colour of `palette`."""
    pixels = lab(np.asarray(img).reshape(-1, 3))
    colours = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in palette], np.uint8)
    distance = np.sqrt(((pixels[:, None, :] - lab(colours)[None]) ** 2).sum(-1))
    return float(distance.min(1).mean())


def measure(works: list[Image.Image]) -> dict[str, float]:
    image_s = crops_s = image_fit = crops_fit = 0.0
    for work in works:
        t = time.perf_counter()
        palette = palettes.dominant_colours(work, limit=palettes.IMAGE_PALETTE_MAX)
        image_s += time.perf_counter() - t
        image_fit += fit(work, palette)
        for x0, y0, x1, y1 in BOXES:
            w, h = work.size
            crop = work.crop((int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)))
            t = time.perf_counter()
            colours = palettes.dominant_colours(crop, limit=palettes.ELEMENT_PALETTE_MAX)
            crops_s += time.perf_counter() - t
            crops_fit += fit(crop, colours)
    n = len(works)
    return {
        "image_ms": round(image_s / n * 1000, 1),
        "eight_crops_ms": round(crops_s / n * 1000, 1),
        "image_fit": round(image_fit / n, 2),
        "crop_fit": round(crops_fit / n / len(BOXES), 2),
    }


def main() -> None:
    from bench.draft_job import paintings

    ap = argparse.ArgumentParser()
    ap.add_argument("--pictures", type=int, default=24)
    ap.add_argument("--smooth", type=int, default=0, help="smooth colour fields, measured apart")
    ap.add_argument("--folder", type=Path, default=None, help="your own pictures, measured apart")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"painting_like": write_jpegs(Path(tmp) / "jpegs", args.pictures)}
        if args.smooth:
            sets["smooth"] = paintings(Path(tmp) / "smooth", args.smooth)
        if args.folder:
            sets["folder"] = sorted(q for q in args.folder.iterdir() if q.is_file())
        works = {
            name: [palettes.Pixels(display_rgb(p.read_bytes(), max_side=1536)).img for p in paths]
            for name, paths in sets.items()
        }
    works["fine_detail"] = fine_detail()
    report: dict[str, object] = {
        "pictures": {name: len(w) for name, w in works.items()},
        "cap_pixels_per_colour": palettes.SAMPLED_PIXELS_PER_COLOUR,
        "quantise": palettes.QUANTISE.name,
    }
    cap, method = palettes.SAMPLED_PIXELS_PER_COLOUR, palettes.QUANTISE
    for name, pictures in works.items():
        row = {"now": measure(pictures)}
        palettes.SAMPLED_PIXELS_PER_COLOUR = 1 << 58  # the cap off: the whole working copy
        row["cap_off"] = measure(pictures)
        palettes.SAMPLED_PIXELS_PER_COLOUR = cap
        palettes.QUANTISE = Image.Quantize.MEDIANCUT
        row["median_cut"] = measure(pictures)
        palettes.QUANTISE = method
        now = row["now"]
        for other in ("cap_off", "median_cut"):
            row[f"crops_speedup_vs_{other}"] = round(
                row[other]["eight_crops_ms"] / max(now["eight_crops_ms"], 0.01), 2
            )
        report[name] = row
    print(json.dumps(report))


if __name__ == "__main__":
    main()
