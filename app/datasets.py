"""Datasets: create, rename, edit, delete (undoably: restored, or gone for good after
DELETED_DAYS), and their counts."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.errors import Conflict, Invalid, NotFound
from app.models import CaptionStatus, Dataset, Image, NearDuplicate, utcnow

MIN_RESOLUTION, MAX_RESOLUTION = 256, 4096
DELETED_DAYS = 30  # as long as the images' trash keeps what it holds


@dataclass(frozen=True)
class DatasetSummary:
    dataset: Dataset
    image_count: int
    status_counts: dict[str, int]


def slugify(name: str) -> str:
    """A lowercase ASCII folder name for exports: letters, digits, '_' and '-'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    return slug[:80] or "dataset"


def check_trigger_word(word: str) -> None:
    """Refuses a trigger word the trainer's textual replacement would turn into broken JSON.

    AI-Toolkit replaces [trigger] and [name] inside the caption's raw text, and reads
    ${NAME} in its config as an environment variable: a quote, a backslash or a control
    character ends or breaks the JSON string the word lands in, and the caption silently
    becomes plain text.
    """
    bad = [c for c in word if c in '"\\' or unicodedata.category(c) == "Cc"]
    if bad:
        shown = ", ".join(sorted({repr(c) for c in bad}))
        raise Invalid(
            f"The trigger word may not hold {shown}: the trainer writes the word into the "
            "JSON captions as it is, and the captions would stop being JSON."
        )
    for placeholder in ("[trigger]", "[name]", "${"):
        if placeholder in word:
            raise Invalid(
                f"The trigger word may not hold {placeholder}: the trainer replaces that text "
                "itself."
            )


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"No dataset has id {dataset_id}.")
    if dataset.deleted_at is not None:
        raise NotFound(
            f"The dataset {dataset.name!r} was deleted: restore it from the home page's "
            "deleted datasets to use it again."
        )
    return dataset


def find_dataset(session: Session, name: str) -> Dataset:
    """The dataset named `name` (or with that slug)."""
    dataset = session.exec(
        select(Dataset).where((Dataset.name == name) | (Dataset.slug == name))
    ).first()
    if dataset is None:
        raise NotFound(f"No dataset is named {name!r}.")
    return get_dataset(session, dataset.id)  # type: ignore[arg-type]


def create_dataset(
    session: Session,
    *,
    name: str,
    trigger_word: str = "",
    resolution: int = 1024,
    notes: str = "",
) -> Dataset:
    name = _clean_name(name)
    _check_resolution(resolution)
    check_trigger_word(trigger_word.strip())
    _check_name_free(session, name)
    dataset = Dataset(
        name=name,
        slug=_free_slug(session, slugify(name)),
        trigger_word=trigger_word.strip(),
        resolution=resolution,
        notes=notes,
    )
    session.add(dataset)
    _commit_named(session, name)
    session.refresh(dataset)
    return dataset


def update_dataset(
    session: Session,
    dataset: Dataset,
    *,
    name: str | None = None,
    trigger_word: str | None = None,
    resolution: int | None = None,
    notes: str | None = None,
    draft_instructions: str | None = None,
    second_reading: bool | None = None,
) -> Dataset:
    if trigger_word is not None:
        check_trigger_word(trigger_word.strip())  # before anything changes
    if name is not None:
        name = _clean_name(name)
        if name != dataset.name:
            _check_name_free(session, name, exclude_id=dataset.id)
            dataset.name = name
            dataset.slug = _free_slug(session, slugify(name), exclude_id=dataset.id)
    if trigger_word is not None:
        dataset.trigger_word = trigger_word.strip()
    if resolution is not None:
        _check_resolution(resolution)
        dataset.resolution = resolution
    if notes is not None:
        dataset.notes = notes
    if draft_instructions is not None:
        dataset.draft_instructions = draft_instructions
    if second_reading is not None:
        dataset.second_reading = second_reading
    dataset.updated_at = utcnow()
    session.add(dataset)
    _commit_named(session, dataset.name)
    session.refresh(dataset)
    return dataset


def delete_dataset(session: Session, dataset: Dataset) -> None:
    """Moves the dataset out of every list, its images, captions and history kept (its files
    stay until it is deleted for good); `restore_dataset` brings it back. Its drafting jobs
    are the caller's to cancel (app/drafting/jobs.py cancel_dataset_jobs): the jobs know
    datasets, not the other way round."""
    dataset.deleted_at = utcnow()
    session.add(dataset)
    session.commit()


def deleted_datasets(session: Session) -> list[Dataset]:
    """Deleted datasets that can still be restored, the most recently deleted first."""
    return list(
        session.exec(
            select(Dataset)
            .where(col(Dataset.deleted_at).is_not(None))
            .order_by(col(Dataset.deleted_at).desc())
        )
    )


def gone_for_good_at(dataset: Dataset) -> datetime:
    assert dataset.deleted_at is not None
    return dataset.deleted_at + timedelta(days=DELETED_DAYS)


def restore_dataset(session: Session, dataset_id: int) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.deleted_at is None:
        raise NotFound(f"No deleted dataset has id {dataset_id}: there is nothing to restore.")
    dataset.deleted_at = None
    dataset.updated_at = utcnow()
    session.add(dataset)
    session.commit()
    session.refresh(dataset)
    return dataset


def delete_for_good(session: Session, dataset: Dataset) -> set[str]:
    """Deletes a deleted dataset's rows; returns the sha256 of images no dataset uses now."""
    if dataset.deleted_at is None:
        raise Invalid(f"Delete the dataset {dataset.name!r} first: it can be restored then.")
    shas = set(session.exec(select(Image.sha256).where(Image.dataset_id == dataset.id)))
    session.delete(dataset)
    session.commit()
    still_used = set(session.exec(select(Image.sha256).where(col(Image.sha256).in_(shas))))
    return shas - still_used


def purge_deleted(session: Session, *, now: datetime | None = None) -> set[str]:
    """Deletes for good what was deleted over DELETED_DAYS ago; the sha256 now unused."""
    cutoff = (now or utcnow()) - timedelta(days=DELETED_DAYS)
    freed: set[str] = set()
    for dataset in session.exec(select(Dataset).where(col(Dataset.deleted_at) < cutoff)).all():
        freed |= delete_for_good(session, dataset)
    return freed


def list_summaries(session: Session, *, only: Dataset | None = None) -> list[DatasetSummary]:
    """Every dataset (or only `only`) with its image counts by caption status."""
    query = (
        select(Dataset).where(col(Dataset.deleted_at).is_(None)).order_by(func.lower(Dataset.name))
    )
    count_query = (
        select(Image.dataset_id, Image.status, func.count())
        .where(col(Image.trashed_at).is_(None))
        .group_by(col(Image.dataset_id), col(Image.status))
    )
    if only is not None:
        query = query.where(Dataset.id == only.id)
        count_query = count_query.where(Image.dataset_id == only.id)
    datasets = session.exec(query).all()
    counts: dict[int, dict[str, int]] = {}
    for dataset_id, status, n in session.exec(count_query):
        counts.setdefault(dataset_id, {})[CaptionStatus(status).value] = n
    return [
        DatasetSummary(
            dataset=d,
            image_count=sum(counts.get(d.id or 0, {}).values()),
            status_counts={
                s.value: counts.get(d.id or 0, {}).get(s.value, 0) for s in CaptionStatus
            },
        )
        for d in datasets
    ]


def summarize(session: Session, dataset: Dataset) -> DatasetSummary:
    return list_summaries(session, only=dataset)[0]


def open_near_duplicate_count(session: Session, dataset_id: int) -> int:
    trashed = select(Image.id).where(col(Image.trashed_at).is_not(None))
    return session.exec(
        select(func.count())
        .select_from(NearDuplicate)
        .where(
            NearDuplicate.dataset_id == dataset_id,
            col(NearDuplicate.kept_both).is_(False),
            # A pair one of whose images is in the trash is not open; a restore reopens it.
            col(NearDuplicate.image_a_id).not_in(trashed),
            col(NearDuplicate.image_b_id).not_in(trashed),
        )
    ).one()


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise Invalid("A dataset needs a name.")
    if len(name) > 200:
        raise Invalid("A dataset name can be at most 200 characters long.")
    return name


def _check_resolution(resolution: int) -> None:
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise Invalid(
            f"The training resolution must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}"
            f" pixels, not {resolution}."
        )


def _check_name_free(session: Session, name: str, exclude_id: int | None = None) -> None:
    # Compared in Python: SQLite's lower() folds ASCII only, so "É" and "é" would both pass.
    wanted = name.casefold()
    for other_id, other, deleted in session.exec(
        select(Dataset.id, Dataset.name, Dataset.deleted_at)
    ):
        if other_id != exclude_id and other.casefold() == wanted:
            if deleted is not None:
                raise Conflict(
                    f"A deleted dataset is named {other!r}: restore it, or delete it for good "
                    "first, to use the name."
                )
            raise Conflict(f"A dataset named {other!r} already exists.")


def _commit_named(session: Session, name: str) -> None:
    """Commits; a name taken meanwhile by a concurrent request is a conflict, not a crash."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"A dataset named {name!r} already exists.") from None


def _free_slug(session: Session, base: str, exclude_id: int | None = None) -> str:
    taken = set(
        session.exec(
            select(Dataset.slug).where(col(Dataset.slug).startswith(base), Dataset.id != exclude_id)
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"
