"""Browser uploads: spooled into the data dir, captions paired with their images, imported."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import UploadFile
from sqlmodel import Session

from app.config import Settings
from app.images.importer import ImportReport, import_sources
from app.images.sources import MAX_SIDECAR_BYTES, SIDECAR_SUFFIXES, Sidecar, Skipped, Source
from app.models import Dataset


def import_uploads(
    session: Session, *, settings: Settings, dataset: Dataset, files: list[UploadFile]
) -> ImportReport:
    """Spools the uploads into the data dir's tmp folder, pairs captions, imports."""
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.tmp_dir, prefix="upload-") as tmp:
        by_stem: dict[str, Sidecar] = {}
        images: list[tuple[Path, str]] = []
        skipped: list[Skipped] = []
        for n, upload in enumerate(files):
            # The client's name is a label only; the spooled copy gets a name of ours.
            name = Path((upload.filename or f"file-{n}").replace("\\", "/")).name or f"file-{n}"
            suffix = Path(name).suffix.lower()
            if upload.size is not None and upload.size > settings.max_file_bytes:
                skipped.append(
                    Skipped(
                        name,
                        f"the file is {upload.size / 2**20:.0f} MB, over the "
                        f"{settings.max_file_mb} MB limit (ATELIER_MAX_FILE_MB)",
                    )
                )
                continue
            if suffix in SIDECAR_SUFFIXES:
                raw = upload.file.read(MAX_SIDECAR_BYTES + 1)
                if len(raw) > MAX_SIDECAR_BYTES:
                    skipped.append(Skipped(name, "the caption file is over 1 MB"))
                    continue
                stem = Path(name).stem
                if stem not in by_stem or suffix == ".json":
                    by_stem[stem] = Sidecar(raw.decode("utf-8-sig", errors="replace"), suffix[1:])
                continue
            path = Path(tmp) / f"{n:06d}{suffix[:10]}"
            with path.open("wb") as out:
                shutil.copyfileobj(upload.file, out, 1024 * 1024)
            images.append((path, name))
        sources = [Source(path, name, by_stem.pop(Path(name).stem, None)) for path, name in images]
        skipped += [
            Skipped(f"{stem}.{sc.ext}", "a caption file with no image of the same name")
            for stem, sc in by_stem.items()
        ]
        return import_sources(
            session, settings=settings, dataset=dataset, sources=sources, skipped=skipped
        )
