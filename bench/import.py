"""Import speed: `atelier import` of N generated 1024px JPEGs against plain Pillow decodes.

Prints the import time as a ratio to one plain single-core Pillow decode of the same files,
measured in the same run (goal: at most 1.5x, using every core).

    python bench/import.py [N]     (default 1000)
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter
from sqlmodel import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import datasets as ds  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine, migrate  # noqa: E402
from app.images.decode_pool import decode_pool  # noqa: E402
from app.images.importer import import_sources  # noqa: E402
from app.images.sources import walk_paths  # noqa: E402


def make_jpeg(args: tuple[Path, int]) -> None:
    """A painting-like 1024px JPEG: shapes, blur, grain (JPEG-typical entropy)."""
    path, seed = args
    rng = random.Random(seed)
    w, h = rng.choice([(1024, 1024), (1024, 1365), (1365, 1024)])
    img = Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = rng.randrange(w), rng.randrange(h)
        box = [x, y, x + rng.randrange(20, w // 2), y + rng.randrange(20, h // 2)]
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise((w, h), 24).convert("RGB")
    Image.blend(img, noise, 0.12).save(path, "JPEG", quality=90)


def write_jpegs(folder: Path, n: int) -> list[Path]:
    """`n` painting-like JPEGs (`make_jpeg`) written into `folder`, on every core."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.jpg" for i in range(n)]
    with ProcessPoolExecutor() as pool:
        list(pool.map(make_jpeg, [(p, i) for i, p in enumerate(paths)], chunksize=16))
    return paths


def plain_decode(paths: list[Path]) -> float:
    t = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            img.load()
    return time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        paths = write_jpegs(src, n)
        total_mb = sum(p.stat().st_size for p in paths) / 2**20

        plain_decode(paths[:20])  # warm the page cache and Pillow's plugins
        baseline = plain_decode(paths)

        settings = Settings(data_dir=Path(tmp) / "data")
        engine = make_engine(settings)
        migrate(engine)
        # The worker pool lives as long as the app: its one-time start is not per-import work.
        decode_pool(settings.import_workers)
        with Session(engine) as session:
            dataset = ds.create_dataset(session, name="bench")
            t = time.perf_counter()
            sources, skipped = walk_paths([src])
            report = import_sources(
                session, settings=settings, dataset=dataset, sources=sources, skipped=skipped
            )
            took = time.perf_counter() - t
        assert len(report.of("imported")) == n, report.of("refused")[:3]
        print(
            json.dumps(
                {
                    "images": n,
                    "source_MB": round(total_mb, 1),
                    "cores": os.cpu_count(),
                    "plain_pillow_decode_1_core_s": round(baseline, 2),
                    "atelier_import_s": round(took, 2),
                    "import_over_plain_decode": round(took / baseline, 2),
                    "goal": "<= 1.5",
                    "images_per_s": round(n / took, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
