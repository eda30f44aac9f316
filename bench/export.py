"""Export speed: `atelier export` of N images against the simplest work it could be.

- PNG sources (exported byte for byte): the export against `cp -r` of the same bytes,
  goal at most 1.5x (and against `cp -r` then `sync`, since the export syncs once);
- JPEG sources (converted to PNG on every core): the export against one core of plain Pillow
  (decode the JPEG, encode a PNG at the same level).
Both baselines run in the same process, on the same files.

    python bench/export.py [N]     (default 1000)
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from sqlmodel import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from app import datasets as ds  # noqa: E402
from app.captions import revisions  # noqa: E402
from app.captions.revisions import head_captions  # noqa: E402
from app.captions.schema import Caption  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine, migrate  # noqa: E402
from app.export.images import PNG_LEVEL  # noqa: E402
from app.export.writer import ExportOptions, export_dataset  # noqa: E402
from app.images.decode_pool import decode_pool  # noqa: E402
from app.images.importer import import_sources  # noqa: E402
from app.images.sources import walk_paths  # noqa: E402
from app.images.store import content_store  # noqa: E402

make_jpeg = __import__("import").make_jpeg  # bench/import.py's painting-like JPEGs


def to_png(path: Path) -> None:
    with Image.open(path) as img:
        img.save(path.with_suffix(".png"), "PNG", compress_level=PNG_LEVEL)
    path.unlink()


def plain_convert(paths: list[Path]) -> float:
    t = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            img.save(io.BytesIO(), "PNG", compress_level=PNG_LEVEL)
    return time.perf_counter() - t


def dataset_of(tmp: Path, name: str, src: Path) -> tuple[Settings, object, int]:
    settings = Settings(data_dir=tmp / f"data-{name}", _env_file=None)  # type: ignore[call-arg]
    engine = make_engine(settings)
    migrate(engine)
    with Session(engine) as session:
        dataset = ds.create_dataset(session, name=name, trigger_word="bench style")
        sources, _ = walk_paths([src])
        import_sources(session, settings=settings, dataset=dataset, sources=sources)
        for image, _ in head_captions(session, dataset=dataset):
            revisions.save(
                session,
                image=image,
                dataset=dataset,
                caption=Caption(high_level_description=f"image {image.position}"),
                base=0,
                commit=False,
            )
        session.commit()
        assert dataset.id is not None
        return settings, engine, dataset.id


def timed_export(settings: Settings, engine: object, dataset_id: int, out: Path) -> float:
    with Session(engine) as session:  # type: ignore[arg-type]
        dataset = ds.get_dataset(session, dataset_id)
        t = time.perf_counter()
        export_dataset(
            session,
            settings=settings,
            store=content_store(settings),
            dataset=dataset,
            out_dir=out,
            options=ExportOptions(force=True),
        )
        return time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        jpgs, pngs = tmp / "jpg", tmp / "png"
        jpgs.mkdir()
        pngs.mkdir()
        with ProcessPoolExecutor() as pool:
            args = [(jpgs / f"{i:05d}.jpg", i) for i in range(n)]
            list(pool.map(make_jpeg, args, chunksize=16))
            args = [(pngs / f"{i:05d}.jpg", i) for i in range(n)]
            list(pool.map(make_jpeg, args, chunksize=16))
            list(pool.map(to_png, sorted(pngs.iterdir()), chunksize=16))
        decode_pool(0)  # the app's worker pool outlives one export

        settings, engine, png_id = dataset_of(tmp, "png", pngs)
        store = content_store(settings)
        blobs = store.store_dir
        subprocess.run(["cp", "-r", str(blobs), str(tmp / "warm")], check=True)  # page cache
        t = time.perf_counter()
        subprocess.run(["cp", "-r", str(blobs), str(tmp / "copy")], check=True)
        cp_s = time.perf_counter() - t
        os.sync()
        # The export syncs before it renames into place; cp -r alone does not.
        t = time.perf_counter()
        subprocess.run(["cp", "-r", str(blobs), str(tmp / "copy2")], check=True)
        os.sync()
        cp_sync_s = time.perf_counter() - t
        png_s = timed_export(settings, engine, png_id, tmp / "out-png")

        settings, engine, jpg_id = dataset_of(tmp, "jpg", jpgs)
        sources = sorted(jpgs.iterdir())
        plain_convert(sources[:10])
        plain_s = plain_convert(sources)
        jpg_s = timed_export(settings, engine, jpg_id, tmp / "out-jpg")
    print(
        json.dumps(
            {
                "images": n,
                "cores": os.cpu_count(),
                "png_sources": {
                    "cp_r_s": round(cp_s, 2),
                    "export_s": round(png_s, 2),
                    "export_over_cp": round(png_s / cp_s, 2),
                    "cp_r_then_sync_s": round(cp_sync_s, 2),
                    "export_over_cp_then_sync": round(png_s / cp_sync_s, 2),
                    "goal": "<= 1.5",
                },
                "jpeg_sources": {
                    "plain_pillow_1_core_s": round(plain_s, 2),
                    "export_s": round(jpg_s, 2),
                    "export_over_plain": round(jpg_s / plain_s, 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
