"""The batch pipeline that runs a claimed drafting job (app/drafting/jobs.py holds its state).

Batch by batch: the queued items are read from the store and decoded, drafted by the engine,
their palettes measured from the pixels, and each caption landed as a new revision, with the
job's progress recorded as it goes. While the engine drafts a batch, the next one is read,
decoded and handed to the engine as a hint (`Engine.prefetch`) on a thread. An item whose
output cannot be used is retried once, then marked failed with the raw output kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine as DBEngine
from sqlmodel import Session, col, select

from app.captions import diff, doubts, revisions
from app.captions.schema import Caption
from app.captions.style_block import block_of
from app.drafting.jobs import (
    Progress,
    get_job,
    mark_failed,
    progress,
    servers_json,
    worker_id,
    write_server_stats,
)
from app.engines.interface import DraftError, DraftInput, DraftOutput, Engine, read_crop
from app.engines.prompt import build_prompt
from app.images.decode import display_rgb
from app.images.decode_pool import decode_pool
from app.images.palettes import Pixels, fill_palettes
from app.images.store import ContentStore
from app.models import (
    Action,
    Author,
    CaptionRevision,
    CaptionStatus,
    Dataset,
    DraftItem,
    DraftJob,
    Image,
    ItemStatus,
    JobStatus,
    utcnow,
)

log = logging.getLogger("atelier.drafting")

MAX_ATTEMPTS = 2  # an item whose output cannot be used is drafted once more
LOAD_THREADS = 8  # images of a batch decoded at once
# Element palettes are made in processes from this many drafts a batch (threads below: a
# re-draft of a few images does not start a process a core).
POOL_FROM = 16

ProgressFn = Callable[[Progress], None]


def run_job(
    db: DBEngine,
    *,
    job_id: int,
    engine: Engine,
    store: ContentStore,
    max_pixels: int,
    worker: str | None = None,
    on_progress: ProgressFn | None = None,
    timings: dict[str, float] | None = None,
) -> DraftJob:
    """Drafts every queued item of a claimed job; returns the job as it ended.

    While the engine drafts a batch, the next one is read, decoded and handed to the engine
    as a hint (`Engine.prefetch`) on a thread, so the GPU does not wait on the CPU between
    batches. `timings`, if given, gets the seconds each part of the job's own thread took
    (`Clock`), which is where a job's time outside the engine goes.
    """
    clock = Clock(timings)
    worker = worker or worker_id()
    engine.new_job()  # an engine kept from an earlier job counts this one from zero
    write_server_stats(db, job_id, engine.server_stats())
    with ThreadPoolExecutor(1, thread_name_prefix="atelier-load") as pool:
        ahead: Future[_Loaded] | None = None
        while True:
            # Not expired on commit: the job returned is read after its session closes.
            with Session(db, expire_on_commit=False) as session:
                with clock("queue_s"):
                    job = get_job(session, job_id)
                if job.cancel_requested:
                    job.status, job.finished_at = JobStatus.cancelled, utcnow()
                    session.add(job)
                    session.commit()
                    return job
                size = job.batch_size or engine.batch_size
                with clock("queue_s"):
                    _skip_trashed(session, job)
                    batch = _queued(session, job, size)
                if not batch:
                    job.status, job.finished_at = JobStatus.done, utcnow()
                    session.add(job)
                    session.commit()
                    return job
                ids = [item.id for item in batch if item.id is not None]
                with clock("wait_ahead_s"):
                    loaded = _result(ahead)
                if loaded is None or loaded.item_ids != ids:
                    # In line (the first batch): the engine starts as soon as the images are
                    # decoded; their palettes are prepared on the thread while it drafts.
                    with clock("load_in_line_s"):
                        loaded = _load(
                            db, job_id, ids, engine, store, max_pixels, palettes=False, clock=clock
                        )
                    if len(loaded.inputs) >= POOL_FROM:
                        # Not before: on a few cores, starting them delayed the first batch.
                        _warm(_palette_pool())
                    loaded.palettes = pool.submit(_palettes, loaded, max_pixels)
                with clock("queue_s"):
                    following = _queued(session, job, size, leaving=ids)
                upcoming = [i.id for i in following if i.id is not None]
                ahead = (
                    pool.submit(_load, db, job_id, upcoming, engine, store, max_pixels, True)
                    if upcoming
                    else None
                )
                dataset = session.get(Dataset, job.dataset_id)
                assert dataset is not None
                try:
                    _draft_batch(session, job, dataset, batch, engine, loaded, clock)
                except DraftError as e:
                    session.rollback()
                    write_server_stats(db, job_id, engine.server_stats())
                    return mark_failed(db, job_id, e.message)
                if (servers := servers_json(engine.server_stats())) is not None:
                    job.server_stats = servers
                job.heartbeat_at = utcnow()
                session.add(job)
                with clock("commit_s"):
                    session.commit()
                if on_progress:
                    on_progress(progress(job))


class Clock:
    """Adds up the seconds each named part of a job takes, into `into` (if given)."""

    def __init__(self, into: dict[str, float] | None = None) -> None:
        self.into = into

    @contextlib.contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        if self.into is None:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        finally:
            self.into[key] = self.into.get(key, 0.0) + time.perf_counter() - started


def _skip_trashed(session: Session, job: DraftJob) -> None:
    """Images moved to the trash since the job was made are not drafted: skipped, saying so."""
    rows = session.exec(
        select(DraftItem)
        .join(Image, col(Image.id) == DraftItem.image_id)
        .where(DraftItem.job_id == job.id, DraftItem.status == ItemStatus.queued)
        .where(col(Image.trashed_at).is_not(None))
    ).all()
    for item in rows:
        _finish(job, item, ItemStatus.skipped, error="moved to the trash before it was drafted")
        session.add(item)


def _queued(
    session: Session, job: DraftJob, size: int, leaving: list[int] | None = None
) -> list[DraftItem]:
    """The job's next batch of `size`: queued items, fresh ones first, less those `leaving`
    (a job's batch size 0 means the engine's, which the local engine may raise after its
    first batch)."""
    return list(
        session.exec(
            select(DraftItem)
            .where(DraftItem.job_id == job.id, DraftItem.status == ItemStatus.queued)
            .where(col(DraftItem.id).not_in(leaving or []))
            .order_by(col(DraftItem.attempts), col(DraftItem.id))
            .limit(size)
        ).all()
    )


@dataclass
class _Loaded:
    """A batch's items read from the store and decoded, ready for the engine."""

    item_ids: list[int]
    inputs: list[DraftInput] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)  # the item ids of `inputs`, in order
    blobs: list[Path] = field(default_factory=list)  # the stored file of each of `inputs`
    missing: list[int] = field(default_factory=list)  # items whose stored file is gone
    # Each input's working copy and image palette, by item id (`_palettes`).
    palettes: Future[dict[int, Pixels]] | dict[int, Pixels] = field(default_factory=dict)

    def pixels(self) -> dict[int, Pixels]:
        return self.palettes.result() if isinstance(self.palettes, Future) else self.palettes


def _load(
    db: DBEngine,
    job_id: int,
    item_ids: list[int],
    engine: Engine,
    store: ContentStore,
    max_pixels: int,
    ahead: bool = False,
    palettes: bool = True,
    clock: Clock | None = None,
) -> _Loaded:
    """Reads and decodes a batch's images, several at a time (Pillow decodes and resizes
    without holding the GIL); loaded `ahead`, hands them to the engine to prepare, then
    prepares their palettes (unless not `palettes`). The batch's items and images are read
    in one query."""
    clock = clock or Clock()
    loaded = _Loaded(item_ids)
    side = decoded_side(max_pixels)
    found: list[tuple[int, Path, str]] = []
    with clock("load_read_s"), Session(db) as session:
        job = get_job(session, job_id)
        dataset = session.get(Dataset, job.dataset_id)
        assert dataset is not None
        block = block_of(dataset)
        images = {
            item_id: image
            for item_id, image in session.exec(
                select(DraftItem.id, Image)
                .join(Image, col(Image.id) == DraftItem.image_id)
                .where(col(DraftItem.id).in_(item_ids))
            )
        }
        for item_id in item_ids:
            image = images.get(item_id)
            blob = store.blob_path(image.sha256) if image else None
            if image is None or blob is None or not blob.is_file():
                loaded.missing.append(item_id)
                continue
            prompt = build_prompt(
                width=image.width,
                height=image.height,
                convention=engine.convention,
                style_block=block,
                instructions=dataset.draft_instructions,
            )
            found.append((item_id, blob, prompt))

    def decode(blob: Path) -> Any:
        return display_rgb(blob.read_bytes(), max_side=side)

    # In line, the GPU waits for these: every core, and the engine prepares the first ones
    # while the rest decode; ahead, it is drafting: fewer.
    with clock("load_decode_s"), _threads(len(found), every_core=not ahead) as pool:
        decoded = pool.map(decode, [blob for _, blob, _ in found])
        inputs = (
            DraftInput(rgb, prompt) for (_, _, prompt), rgb in zip(found, decoded, strict=True)
        )
        if ahead:
            loaded.inputs = list(inputs)
        else:
            loaded.inputs = engine.prefetch_decoded(inputs, len(found))
    for item_id, blob, _ in found:
        loaded.ready.append(item_id)
        loaded.blobs.append(blob)
    if ahead and loaded.inputs:
        engine.prefetch(loaded.inputs)
    if palettes:
        loaded.palettes = _palettes(loaded, max_pixels)
    return loaded


def decoded_side(max_pixels: int) -> int:
    """The longest side images are decoded at for a model seeing `max_pixels` at most (its
    processor resizes further, to its pixel budget)."""
    return int(max_pixels**0.5 * 1.5)


def _palettes(loaded: _Loaded, max_pixels: int) -> dict[int, Pixels]:
    """Each image's palette working copy, made from the image as decoded for the model.

    Made while the engine drafts: in the shared process pool from POOL_FROM images, each
    decoded again there (sending the decoded images would cost more), LOAD_THREADS at a time,
    so that neither the engine's thread nor the cores its step loop and grammar use wait
    for them; on threads, they held the engine's GIL (their sampling and merging are
    Python). Threads for a few images, or where there is no pool."""
    pool = _palette_pool() if len(loaded.inputs) >= POOL_FROM else None
    if pool is not None:
        return dict(zip(loaded.ready, _pixels_in(pool, loaded, max_pixels), strict=True))
    with _threads(len(loaded.inputs)) as threads:
        pixels = list(threads.map(Pixels, [i.image for i in loaded.inputs]))
    return dict(zip(loaded.ready, pixels, strict=True))


def _pixels_in(pool: Executor, loaded: _Loaded, max_pixels: int) -> list[Pixels]:
    """`_pixels_of` each of the batch's files in `pool`, LOAD_THREADS in flight at most."""
    room = threading.BoundedSemaphore(LOAD_THREADS)
    futures: list[Future[Pixels] | None] = []
    for blob in loaded.blobs:
        room.acquire()
        try:
            future = pool.submit(_pixels_of, blob, decoded_side(max_pixels))
        except (BrokenProcessPool, RuntimeError):
            room.release()
            futures.append(None)
            continue
        future.add_done_callback(lambda _: room.release())
        futures.append(future)
    return [_made(f, i.image) for f, i in zip(futures, loaded.inputs, strict=True)]


def _made(future: Future[Pixels] | None, image: Any) -> Pixels:
    """The working copy the pool made, or, where it could not (the file gone since it was
    loaded, the pool broken), one made here from the image decoded for the model."""
    if future is not None:
        try:
            return future.result()
        except Exception:
            log.warning("palettes: an image's working copy failed in the pool", exc_info=True)
    return Pixels(image)


def _pixels_of(blob: Path, side: int) -> Pixels:
    """The palette working copy of the image as `_load` decodes it for the model."""
    return Pixels(display_rgb(blob.read_bytes(), max_side=side))


def _threads(n: int, every_core: bool = False) -> ThreadPoolExecutor:
    """Threads for `n` images: LOAD_THREADS at most while the GPU drafts (its step loop
    needs a core), every core where the GPU waits for them."""
    cores = os.cpu_count() or 1
    workers = min(cores if every_core else LOAD_THREADS, cores, max(1, n))
    return ThreadPoolExecutor(workers, thread_name_prefix="atelier-decode")


def _result(ahead: Future[_Loaded] | None) -> _Loaded | None:
    """The batch loaded ahead, or None if there was none or loading it failed (the batch is
    then loaded again in line, where a failure is handled as any other)."""
    if ahead is None:
        return None
    try:
        return ahead.result()
    except Exception:
        log.debug("loading the next batch ahead failed", exc_info=True)
        return None


def _draft_batch(
    session: Session,
    job: DraftJob,
    dataset: Dataset,
    batch: list[DraftItem],
    engine: Engine,
    loaded: _Loaded,
    clock: Clock | None = None,
) -> None:
    clock = clock or Clock()
    items = {item.id: item for item in batch}
    for item_id in loaded.missing:
        _finish(job, items[item_id], ItemStatus.failed, error="the image's stored file is missing")
    if not loaded.inputs:
        return
    started = time.perf_counter()
    with clock("engine_s"):
        outputs = engine.draft(loaded.inputs)
    job.drafting_seconds += time.perf_counter() - started
    with clock("palettes_and_land_s"), clock("palettes_wait_image_s"):
        pixels = loaded.pixels()
    # The element palettes need the boxes only: made while the engine reads the texts again.
    filled = _filled(pixels, loaded, outputs)
    started = time.perf_counter()
    with clock("second_reading_s"):
        readings = _second_readings(engine, loaded, outputs) if dataset.second_reading else {}
    # The second readings are engine time too: the job's images/s counts them.
    job.drafting_seconds += time.perf_counter() - started
    with clock("palettes_and_land_s"):
        _land_all(session, job, dataset, items, loaded, outputs, filled, readings, clock)


def _land_all(
    session: Session,
    job: DraftJob,
    dataset: Dataset,
    items: dict[int | None, DraftItem],
    loaded: _Loaded,
    outputs: list[DraftOutput],
    filled: Iterator[Caption],
    readings: dict[int, dict[int, str | None]],
    clock: Clock | None = None,
) -> None:
    """Each output landed as its image's new revision (with its doubts), or its item retried
    or failed; `filled` gives the drafted captions with their palettes, in order, as they are
    made.

    The batch's images and their newest revisions are read in one query, each image moved
    to its new revision by one conditional UPDATE as its caption comes, and the revisions
    added in one statement at the end: one at a time through the ORM, landing 256 drafts
    took 1.3 s of the job's own thread on a 2-core machine (bench/draft_pipeline.py). An
    image that changed since it was read lands by `_land`, which reads it again."""
    clock = clock or Clock()
    drafted = [
        items[i].image_id
        for i, out in zip(loaded.ready, outputs, strict=True)
        if out.caption is not None
    ]
    with clock("land_s"):
        read = {} if job.trial else revisions.heads_of(session, drafted)
    rows: list[dict[str, Any]] = []
    landed: set[int] = set()
    for item_id, out in zip(loaded.ready, outputs, strict=True):
        item = items[item_id]
        item.attempts += 1
        if out.caption is None:
            if item.attempts < MAX_ATTEMPTS:
                item.error = out.error  # stays queued: tried once more in a later batch
            else:
                _finish(job, item, ItemStatus.failed, error=out.error, raw=out.raw)
            session.add(item)
            continue
        with clock("palettes_elements_s"):
            caption = next(filled)
        with clock("land_s"):
            pair = read.get(item.image_id) if item.image_id not in landed else None
            row = _land_read(session, job, item, pair, dataset, caption, out, readings.get(item_id))
            if row is False:
                image = session.get(Image, item.image_id)
                assert image is not None
                revisions.insert_revisions(session, rows)  # what `_land` reads must be there
                rows = []
                _land(
                    session,
                    job,
                    item,
                    image,
                    dataset,
                    caption,
                    confidence=out.confidence,
                    readings=readings.get(item_id),
                )
            elif row is not None:
                rows.append(row)
            landed.add(item.image_id)
        session.add(item)
    with clock("land_s"):
        revisions.insert_revisions(session, rows)


def _land_read(
    session: Session,
    job: DraftJob,
    item: DraftItem,
    pair: tuple[Image, CaptionRevision | None] | None,
    dataset: Dataset,
    caption: Caption,
    out: DraftOutput,
    readings: dict[int, str | None] | None,
) -> dict[str, Any] | None | Literal[False]:
    """`_land` for an image read with its newest revision by `revisions.heads_of`: the new
    revision's row to add; None if the item was skipped; False where `_land` must decide (the
    image was not read, or it changed since)."""
    if pair is None:
        return False
    image, head = pair
    human = head is not None and head.author == Author.user
    approved = image.status == CaptionStatus.approved
    if (human or approved) and not job.overwrite_edited:
        why = "approved" if approved else "edited by hand"
        _finish(job, item, ItemStatus.skipped, error=f"kept: the caption is {why}")
        return None
    stored = diff.identify(
        revisions.stored_for(caption, dataset),
        like=revisions.parse(head) if head is not None else None,
    )
    found = doubts.build(stored=stored, confidence=out.confidence, readings=readings)
    row = revisions.append_read(
        session,
        image=image,
        head=head,
        stored=stored,
        author=Author.engine,
        action=Action.draft,
        status=CaptionStatus.draft,
        note=f"{job.engine} {job.model}",
        doubts=found.to_json() if found else None,
        values={"draft_least": found.least if found else None},
    )
    if row is None:
        return False
    item.revision = row["number"]
    _finish(job, item, ItemStatus.done)
    return row


def _second_readings(
    engine: Engine, loaded: _Loaded, outputs: list[DraftOutput]
) -> dict[int, dict[int, str | None]]:
    """Each drafted text element read again from its box alone (by item id, then element
    index), one short request per text element for the whole batch; {} when the engine
    cannot read."""
    crops, where = [], []
    for (item_id, out), item in zip(
        zip(loaded.ready, outputs, strict=True), loaded.inputs, strict=True
    ):
        if out.caption is None:
            continue
        for i, e in enumerate(out.caption.composition.elements):
            if e.type != "text" or e.box is None:
                continue
            crops.append(read_crop(item.image, e.box))
            where.append((item_id, i))
    if not crops:
        return {}
    read = engine.read_texts(crops)
    if read is None:
        return {}
    out_by_item: dict[int, dict[int, str | None]] = {}
    for (item_id, i), text in zip(where, read, strict=True):
        out_by_item.setdefault(item_id, {})[i] = text
    return out_by_item


def _filled(
    pixels: dict[int, Pixels], loaded: _Loaded, outputs: list[DraftOutput]
) -> Iterator[Caption]:
    """Each drafted caption, in order, with its palettes filled from `pixels`: the image
    palette made while the batch drafted (`_palettes`), and each boxed element's from its
    crop, yielded as each is ready so that the captions before it land meanwhile.

    The element palettes are made in the shared process pool, on every core (the GPU waits
    for them), from the call on: their Python parts (sampling, CIELAB, merging) hold the GIL,
    so on threads a batch of 256 drafts with eight boxes each took 4.5 s after the engine on
    a 16-core H100 host, landing included (bench/draft_job.py --boxes 8). Threads, from the
    first caption asked for, where there is no pool."""
    drafted = [
        (item_id, out.caption)
        for item_id, out in zip(loaded.ready, outputs, strict=True)
        if out.caption is not None
    ]
    pool = _palette_pool() if len(drafted) >= POOL_FROM else None
    made: Iterator[Caption] | None = None
    if pool is not None:
        captions = [caption for _, caption in drafted]
        try:  # submitted now, every one
            made = pool.map(fill_palettes, captions, [pixels[i] for i, _ in drafted])
        except BrokenProcessPool:
            log.warning("palettes: the process pool broke; on threads", exc_info=True)
    return _yielded(made, drafted, pixels)


def _yielded(
    made: Iterator[Caption] | None, drafted: list[tuple[int, Caption]], pixels: dict[int, Pixels]
) -> Iterator[Caption]:
    """The captions `made` in the pool, and on threads those it did not make."""
    given = 0
    if made is not None:
        try:
            for caption in made:
                yield caption
                given += 1
            return
        except BrokenProcessPool:
            log.warning("palettes: the process pool broke; on threads from here", exc_info=True)

    def fill(pair: tuple[int, Caption]) -> Caption:
        item_id, caption = pair
        return fill_palettes(caption, pixels[item_id])

    with _threads(len(drafted) - given, every_core=True) as threads:
        yield from threads.map(fill, drafted[given:])


def _palette_pool() -> Executor | None:
    """The shared process pool, one process a core; None on one core."""
    return decode_pool(os.cpu_count() or 1)


def _warm(pool: Executor | None) -> None:
    """Has each of the pool's processes import the palette code now, not after a batch."""
    if pool is None:
        return
    try:
        for _ in range(os.cpu_count() or 1):
            pool.submit(_import_palettes)
    except (BrokenProcessPool, RuntimeError):
        log.debug("the palette processes could not be started ahead", exc_info=True)


def _import_palettes() -> None:
    import app.images.palettes  # noqa: F401


def _land(
    session: Session,
    job: DraftJob,
    item: DraftItem,
    image: Image,
    dataset: Dataset,
    caption: Caption,
    *,
    confidence: dict[str, Any] | None = None,
    readings: dict[int, str | None] | None = None,
) -> None:
    """The draft becomes a new revision, unless a person's work would be replaced; its
    doubts (confidences, second readings) are kept with it."""
    if job.trial:  # a test of the engine: the draft is shown, the caption left alone
        _finish(job, item, ItemStatus.done, raw=caption.model_dump_json())
        return
    session.refresh(image)
    head = revisions.head(session, image)
    human = head is not None and head.author == Author.user
    approved = image.status == CaptionStatus.approved
    if (human or approved) and not job.overwrite_edited:
        why = "approved" if approved else "edited by hand"
        _finish(job, item, ItemStatus.skipped, error=f"kept: the caption is {why}")
        return
    try:
        rev = revisions.append(
            session,
            image=image,
            stored=revisions.stored_for(caption, dataset),
            base=image.revision,
            author=Author.engine,
            action=Action.draft,
            undo_to=image.revision or None,
            status=CaptionStatus.draft,
            note=f"{job.engine} {job.model}",
        )
    except revisions.StaleRevision:
        _finish(job, item, ItemStatus.skipped, error="kept: the caption was saved meanwhile")
        return
    found = doubts.build(stored=revisions.parse(rev), confidence=confidence, readings=readings)
    rev.doubts = found.to_json() if found else None
    image.draft_least = found.least if found else None
    session.add_all([rev, image])
    item.revision = rev.number
    _finish(job, item, ItemStatus.done)


def _finish(
    job: DraftJob,
    item: DraftItem,
    status: ItemStatus,
    *,
    error: str | None = None,
    raw: str | None = None,
) -> None:
    item.status = status
    item.error = error
    item.raw_output = raw
    if status == ItemStatus.done:
        job.done += 1
    elif status == ItemStatus.failed:
        job.failed += 1
    else:
        job.skipped += 1
