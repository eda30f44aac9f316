"""The draft report: every draft a person then edited or approved, compared with what they
kept (app/captions/draft_quality.py), grouped by the engine, model and prompt that drafted it."""

from __future__ import annotations

import hashlib

from sqlmodel import Session, col, select

from app.captions import revisions
from app.captions.draft_quality import GroupReport, compare
from app.captions.style_block import block_of, effective
from app.models import (
    Author,
    CaptionRevision,
    CaptionStatus,
    Dataset,
    DraftItem,
    DraftJob,
    Image,
    ItemStatus,
)


def prompt_label(prompt: str) -> str:
    """A short name for a job's prompt: the first characters of its digest."""
    if not prompt:
        return "not recorded"
    return "prompt " + hashlib.sha256(prompt.encode()).hexdigest()[:8]


def draft_report(session: Session, *, dataset: Dataset) -> list[GroupReport]:
    """One group per engine, model and prompt, most images first.

    An image counts when its newest draft was followed by a person's save, or it was
    approved as drafted; the draft is compared with the image's caption now.
    """
    rows = session.exec(
        select(DraftItem, DraftJob, Image)
        .join(DraftJob, col(DraftItem.job_id) == DraftJob.id)
        .join(Image, col(DraftItem.image_id) == Image.id)
        .where(
            DraftJob.dataset_id == dataset.id,
            DraftItem.status == ItemStatus.done,
            col(DraftItem.revision).is_not(None),
            col(Image.trashed_at).is_(None),
        )
    ).all()
    newest: dict[int, tuple[int, DraftJob, Image]] = {}
    for item, job, image in rows:
        number = item.revision or 0
        if image.id not in newest or number > newest[image.id][0]:  # type: ignore[index]
            newest[image.id] = (number, job, image)  # type: ignore[index]

    block = block_of(dataset)
    groups: dict[tuple[str, str, str], GroupReport] = {}
    for number, job, image in newest.values():
        head = revisions.head(session, image)
        if head is None or head.number < number:
            continue
        touched = session.exec(
            select(CaptionRevision.id).where(
                CaptionRevision.image_id == image.id,
                CaptionRevision.number > number,
                CaptionRevision.author == Author.user,
            )
        ).first()
        if touched is None and image.status != CaptionStatus.approved:
            continue
        drafted = revisions.parse(revisions.get_revision(session, image, number))
        kept = revisions.parse(head)
        key = (job.engine, job.model, job.prompt)
        if key not in groups:
            groups[key] = GroupReport(engine=job.engine, model=job.model, prompt=job.prompt)
        groups[key].comparisons.append(
            compare(drafted=effective(drafted, block), kept=effective(kept, block))
        )
    return sorted(groups.values(), key=lambda g: (-g.images, g.model))
