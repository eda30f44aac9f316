"""The dataset's trash: deleted images wait here, captions and history with them, to be restored.

A trashed image keeps its row, its revisions and its stored bytes (garbage collection counts it
as referenced); listings, counts, lint, export and new drafting jobs leave it out. It is
deleted for good when the trash is emptied, or `TRASH_DAYS` after it was put there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from app.errors import Invalid
from app.images.store import ContentStore
from app.models import Dataset, Image, utcnow

TRASH_DAYS = 30
CHUNK = 500


def move_to_trash(session: Session, *, images: list[Image], now: datetime | None = None) -> int:
    """Puts the images in their dataset's trash; returns how many were not there already."""
    when = now or utcnow()
    moved = 0
    for image in images:
        if image.trashed_at is None:
            image.trashed_at = when
            session.add(image)
            moved += 1
    session.commit()
    return moved


def in_trash(session: Session, *, dataset: Dataset) -> list[Image]:
    """The dataset's trashed images, the most recently trashed first."""
    return list(
        session.exec(
            select(Image)
            .where(Image.dataset_id == dataset.id, col(Image.trashed_at).is_not(None))
            .order_by(col(Image.trashed_at).desc(), col(Image.position))
        )
    )


def expires_at(image: Image) -> datetime:
    """When the image leaves the trash for good unless restored."""
    assert image.trashed_at is not None
    return _aware(image.trashed_at) + timedelta(days=TRASH_DAYS)


def restore(session: Session, *, dataset: Dataset, image_ids: list[int]) -> int:
    """Takes the images out of the trash, back to their place in the dataset."""
    images = _chosen(session, dataset=dataset, image_ids=image_ids)
    for image in images:
        image.trashed_at = None
        session.add(image)
    session.commit()
    return len(images)


def empty(
    session: Session, *, store: ContentStore, dataset: Dataset, image_ids: list[int] | None = None
) -> int:
    """Deletes for good the trashed images named (all of them when None); returns how many."""
    if image_ids is None:
        images = in_trash(session, dataset=dataset)
    else:
        images = _chosen(session, dataset=dataset, image_ids=image_ids)
    delete_for_good(session, store=store, images=images)
    return len(images)


def purge_expired(session: Session, *, store: ContentStore, now: datetime | None = None) -> int:
    """Deletes for good every image trashed more than `TRASH_DAYS` ago, in any dataset."""
    cutoff = (now or utcnow()) - timedelta(days=TRASH_DAYS)
    images = list(session.exec(select(Image).where(col(Image.trashed_at) < cutoff)))
    delete_for_good(session, store=store, images=images)
    return len(images)


def delete_for_good(session: Session, *, store: ContentStore, images: list[Image]) -> None:
    """Deletes the rows (revisions and pairs go with them), then bytes no image still uses."""
    if not images:
        return
    shas = sorted({i.sha256 for i in images})
    for image in images:
        session.delete(image)
    session.commit()
    still_used: set[str] = set()
    for start in range(0, len(shas), CHUNK):
        chunk = shas[start : start + CHUNK]
        still_used |= set(session.exec(select(Image.sha256).where(col(Image.sha256).in_(chunk))))
    for sha in set(shas) - still_used:
        store.remove(sha)


def _chosen(session: Session, *, dataset: Dataset, image_ids: list[int]) -> list[Image]:
    if not image_ids:
        raise Invalid("Choose the images to take out of the trash.")
    wanted = sorted(set(image_ids))
    images: list[Image] = []
    # In slices: SQLite refuses a statement with more than 32766 parameters.
    for start in range(0, len(wanted), CHUNK):
        images += session.exec(
            select(Image).where(
                col(Image.id).in_(wanted[start : start + CHUNK]),
                Image.dataset_id == dataset.id,
                col(Image.trashed_at).is_not(None),
            )
        )
    missing = sorted(set(wanted) - {i.id for i in images})
    if missing:
        shown = ", ".join(map(str, missing[:5]))
        if len(missing) > 5:
            shown += f" and {len(missing) - 5} more"
        raise Invalid(
            f"Image{'s' if len(missing) > 1 else ''} {shown} "
            f"{'are' if len(missing) > 1 else 'is'} not in this dataset's trash."
        )
    return images


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
