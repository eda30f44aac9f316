"""Imports sources into a dataset: parallel decode, then one transaction for the rows.

Every file ends as exactly one outcome: imported, duplicate (same bytes already in the
dataset) or refused (with the reason). A refused file leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.captions.dialects import BoxFormat
from app.captions.sidecars import read_sidecars
from app.config import Settings
from app.images import history
from app.images.buckets import is_low_resolution, is_unusable, smallest_bucket
from app.images.decode import Decoded, FileLimits, Refused, decode_file
from app.images.decode_pool import decode_pool
from app.images.duplicates import close_pairs
from app.images.sources import Skipped, Source
from app.images.store import ContentStore, content_store
from app.images.transparency import transparency_effect
from app.models import Dataset, Image, NearDuplicate, utcnow

Result = Literal["imported", "duplicate", "refused"]
ImportOrigin = Literal["folder", "upload"]
ProgressFn = Callable[[int, int], None]


@dataclass
class Outcome:
    filename: str
    result: Result
    reason: str | None = None
    image_id: int | None = None
    sha256: str | None = None
    duplicate_of: int | None = None
    sidecar: str | None = None
    caption: str | None = None  # what became of the sidecar: read, or kept raw and why
    transparent_share: float | None = None  # of the pixels, where any is not fully opaque
    transparency: str | None = None  # what the trainer will see there, in a sentence
    # An imported image's size and what the grid will flag on it, as imported.
    width: int | None = None
    height: int | None = None
    byte_size: int | None = None
    low_resolution: bool | None = None
    unusable: bool | None = None  # smaller than the smallest training bucket
    ambiguous_boxes: bool | None = None
    near_duplicate_of: list[str] | None = None


@dataclass
class ImportReport:
    outcomes: list[Outcome] = field(default_factory=list)
    near_duplicates: list[tuple[int, int, int]] = field(default_factory=list)
    resolution: int | None = None  # the dataset's, when imported: what the flags measured
    record_id: int | None = None  # its row in the dataset's import history

    def of(self, result: Result) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == result]

    def as_dict(self) -> dict:
        def row(o: Outcome) -> dict:
            return {k: v for k, v in vars(o).items() if v is not None and k != "result"}

        return {
            # Refused first: what needs the user's attention before what went well.
            "refused": [row(o) for o in self.of("refused")],
            "imported": [row(o) for o in self.of("imported")],
            "duplicates": [row(o) for o in self.of("duplicate")],
            "near_duplicates": [
                {"image_a_id": a, "image_b_id": b, "distance": d}
                for a, b, d in self.near_duplicates
            ],
            "resolution": self.resolution,
            "smallest_bucket": smallest_bucket(self.resolution) if self.resolution else None,
            "record_id": self.record_id,
        }


def limits(settings: Settings) -> FileLimits:
    return FileLimits(
        max_bytes=settings.max_file_bytes,
        max_pixels=settings.max_image_pixels,
        thumb_size=settings.thumb_size,
    )


def _decode_one(source: Source, lim: FileLimits, store: ContentStore) -> Decoded | str:
    try:
        return decode_file(source.path, limits=lim, store=store)
    except Refused as r:
        return r.reason
    except MemoryError:
        return "the image is too large to decode in the memory available"


def import_sources(
    session: Session,
    *,
    settings: Settings,
    dataset: Dataset,
    sources: list[Source],
    skipped: Sequence[Skipped] = (),
    progress: ProgressFn | None = None,
    bbox_format: BoxFormat | None = None,
    origin: ImportOrigin = "folder",
    upload: str | None = None,
) -> ImportReport:
    """Decodes every source, then records the accepted ones in one transaction, and the
    report in the dataset's import history (`upload` groups the batches of one upload).

    Caption files are read into first revisions; `bbox_format` declares how to read boxes
    whose coordinates all lie within 0..1000 (see app/captions/sidecars.py).
    """
    store = content_store(settings)
    with store.importing():
        report = _import(session, settings, dataset, sources, progress, bbox_format, store)
    report.outcomes = [Outcome(s.filename, "refused", s.reason) for s in skipped] + report.outcomes
    report.resolution = dataset.resolution
    report.record_id = history.record(
        session, dataset=dataset, report=report.as_dict(), origin=origin, upload=upload
    )
    return report


def _import(
    session: Session,
    settings: Settings,
    dataset: Dataset,
    sources: list[Source],
    progress: ProgressFn | None,
    bbox_format: BoxFormat | None,
    store: ContentStore,
) -> ImportReport:
    lim = limits(settings)
    work = partial(_decode_one, lim=lim, store=store)
    pool = decode_pool(settings.import_workers) if len(sources) > 1 else None
    results: list[Decoded | str] = []
    mapped = pool.map(work, sources, chunksize=4) if pool else map(work, sources)
    for done, r in enumerate(mapped, 1):
        results.append(r)
        if progress:
            progress(done, len(sources))

    written = {r.sha256 for r in results if isinstance(r, Decoded)}
    for attempt in range(3):
        try:
            report = _record(
                session,
                settings=settings,
                dataset=dataset,
                sources=sources,
                results=results,
                bbox_format=bbox_format,
            )
            break
        except IntegrityError:
            # Another import into this dataset committed the same bytes meanwhile: re-read.
            session.rollback()
            if attempt == 2:
                _forget_unreferenced(session, store, written)
                raise
        except BaseException:
            session.rollback()
            _forget_unreferenced(session, store, written)
            raise
    return report


def _record(
    session: Session,
    *,
    settings: Settings,
    dataset: Dataset,
    sources: list[Source],
    results: list[Decoded | str],
    bbox_format: BoxFormat | None,
) -> ImportReport:
    assert dataset.id is not None
    existing: dict[str, int | None] = {}
    trashed: set[str] = set()
    for sha, image_id, trashed_at in session.exec(
        select(Image.sha256, Image.id, Image.trashed_at).where(Image.dataset_id == dataset.id)
    ):
        existing[sha] = image_id
        if trashed_at is not None:
            trashed.add(sha)
    position = session.exec(
        select(func.coalesce(func.max(Image.position), 0)).where(Image.dataset_id == dataset.id)
    ).one()
    report = ImportReport()
    new_rows: list[tuple[Outcome, Image]] = []
    batch_shas: dict[str, Outcome] = {}
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, str):
            report.outcomes.append(Outcome(source.filename, "refused", result))
            continue
        if result.sha256 in existing or result.sha256 in batch_shas:
            outcome = Outcome(
                source.filename,
                "duplicate",
                "the same file is in this dataset's trash: restore it from there"
                if result.sha256 in trashed
                else "the same file is already in this dataset",
                sha256=result.sha256,
                duplicate_of=existing.get(result.sha256),
            )
            report.outcomes.append(outcome)  # a twin in this batch: its id is known after flush
            continue
        position += 1
        outcome = Outcome(
            source.filename,
            "imported",
            sha256=result.sha256,
            sidecar=source.sidecar.ext if source.sidecar else None,
            transparent_share=result.transparent or None,
            transparency=transparency_effect(result.transparent) if result.transparent else None,
            width=result.width,
            height=result.height,
            byte_size=result.byte_size,
            low_resolution=is_low_resolution(
                result.width, result.height, resolution=dataset.resolution
            ),
            unusable=is_unusable(result.width, result.height, resolution=dataset.resolution),
            ambiguous_boxes=False,
            near_duplicate_of=[],
        )
        batch_shas[result.sha256] = outcome
        report.outcomes.append(outcome)
        new_rows.append((outcome, _image_row(dataset.id, position, source, result)))
    session.add_all([image for _, image in new_rows])
    session.flush()  # one multi-row INSERT; ids come back with it
    for outcome, image in new_rows:
        outcome.image_id = image.id
    with_sidecar = [image for _, image in new_rows if image.caption_raw is not None]
    if with_sidecar:
        read = read_sidecars(session, dataset=dataset, images=with_sidecar, bbox_format=bbox_format)
        for outcome, image in new_rows:
            if image.caption_raw is None:
                continue
            outcome.ambiguous_boxes = image.boxes_ambiguous
            if image.id in read.unreadable:
                outcome.caption = f"kept raw, not read: {read.unreadable[image.id]}"
            else:
                outcome.caption = "read"  # undecided boxes: said once, by ambiguous_boxes
    for outcome in report.outcomes:
        if outcome.result == "duplicate" and outcome.duplicate_of is None:
            outcome.duplicate_of = batch_shas[outcome.sha256].image_id  # type: ignore[index]

    if new_rows:
        new_ids = {img.id for _, img in new_rows}
        names = {img.id: img.filename for _, img in new_rows}
        older = []
        for i, h, name in session.exec(
            select(Image.id, Image.phash, Image.filename).where(Image.dataset_id == dataset.id)
        ):
            if i not in new_ids:
                older.append((i, h))
                names[i] = name
        report.near_duplicates = close_pairs(
            [(img.id, img.phash) for _, img in new_rows],  # type: ignore[misc]
            older,  # type: ignore[arg-type]
            max_distance=settings.near_duplicate_distance,
        )
        by_id = {img.id: outcome for outcome, img in new_rows}
        for a, b, _ in report.near_duplicates:
            for this, other in ((a, b), (b, a)):
                if this in by_id:
                    near = by_id[this].near_duplicate_of or []
                    by_id[this].near_duplicate_of = [*near, names[other]]
        for a, b, d in report.near_duplicates:
            session.add(
                NearDuplicate(dataset_id=dataset.id, image_a_id=a, image_b_id=b, distance=d)
            )
        dataset.updated_at = utcnow()
        session.add(dataset)
    session.commit()
    return report


def _image_row(dataset_id: int, position: int, source: Source, d: Decoded) -> Image:
    return Image(
        dataset_id=dataset_id,
        position=position,
        sha256=d.sha256,
        filename=source.filename,
        format=d.format,
        width=d.width,
        height=d.height,
        megapixels=d.megapixels,
        aspect_ratio=d.aspect_ratio,
        orientation=d.orientation,
        mode=d.mode,
        has_icc=d.has_icc,
        frames=d.frames,
        byte_size=d.byte_size,
        phash=d.phash,
        transparent_share=d.transparent,
        caption_raw=source.sidecar.text if source.sidecar else None,
        caption_raw_ext=source.sidecar.ext if source.sidecar else None,
    )


def _forget_unreferenced(session: Session, store: ContentStore, shas: set[str]) -> None:
    """Removes blobs this import wrote that no image row references."""
    if not shas:
        return
    referenced = set(session.exec(select(Image.sha256).where(Image.sha256.in_(shas))))  # type: ignore[attr-defined]
    for sha in shas - referenced:
        store.remove(sha)
