"""What a reviewer should check first: one image's draft doubts as the API and the editor read
them, and a dataset's drafts with parts still to check, least sure first (the API, the
`atelier doubts` command)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlmodel import Session, col, select

from app.captions import doubts, revisions
from app.captions.schema import Caption
from app.models import Dataset, Image


def image_doubts(session: Session, image: Image) -> dict[str, Any]:
    """The newest draft's doubts as stored (each field's and element's least likely token and
    mean probability, its second readings of text), and `shown`: the unsure parts that still
    read as drafted, least sure first, and the readings that still differ."""
    draft = revisions.newest_draft(session, image)
    found = doubts.Doubts.from_json(draft.doubts) if draft else None
    head = revisions.head(session, image)
    now = revisions.parse(head) if head else Caption()
    drafted = revisions.parse(draft) if draft else now
    return {
        "revision": draft.number if draft else None,
        "least": found.least if found else None,
        "confidence": found.confidence if found else {},
        "readings": {k: asdict(v) | {"differs": v.differs} for k, v in found.readings.items()}
        if found
        else {},
        "shown": [asdict(d) for d in doubts.shown(found, drafted=drafted, now=now)],
        "readings_that_differ": [
            {"element": n, "drafted": r.drafted, "read": r.read, "cer": r.cer}
            for n, r in doubts.readings_that_differ(found, now=now)
        ],
    }


def to_check(session: Session, *, dataset: Dataset, limit: int | None = None) -> list[dict]:
    """The dataset's images whose draft still has an unsure part or a differing second
    reading, least sure first (the grid's "least sure first" order), up to `limit`; each with
    its id, file name, status and `image_doubts`."""
    images = session.exec(
        select(Image)
        .where(Image.dataset_id == dataset.id, col(Image.trashed_at).is_(None))
        .where(col(Image.draft_least).is_not(None))
        .order_by(col(Image.draft_least), col(Image.position))
    ).all()
    out = []
    for image in images:
        found = image_doubts(session, image)
        if not found["shown"] and not found["readings_that_differ"]:
            continue
        out.append(
            {"id": image.id, "filename": image.filename, "status": image.status.value} | found
        )
        if limit is not None and len(out) >= limit:
            break
    return out
