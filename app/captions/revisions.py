"""Caption revisions: every save adds one; undo, redo and revert; optimistic concurrency.

A save names the revision it edits (`base`). The image row's `revision` column moves from
`base` to `base + 1` in one conditional UPDATE, so two saves of the same revision cannot
both land: the second gets StaleRevision (HTTP 409) with the newest caption to merge with.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from app.captions import diff
from app.captions.dialects import to_official
from app.captions.schema import Caption
from app.captions.style_block import block_of, effective, stored_form
from app.errors import Conflict, Invalid, NotFound
from app.models import Action, Author, CaptionRevision, CaptionStatus, Dataset, Image, utcnow

# The note of a revision that changed an approved caption (the image then needs review).
APPROVAL_WITHDRAWN = "changed after it was approved: needs review again"


class StaleRevision(Conflict):
    """The save named a revision that is no longer the newest."""


@dataclass(frozen=True)
class CaptionView:
    """An image's caption as the editor and the API show it."""

    revision: int
    status: CaptionStatus
    stored: Caption | None  # inherited style fields empty
    caption: Caption | None  # with the dataset's style block filled in
    head: CaptionRevision | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "status": self.status.value,
            "caption": to_official(self.caption) if self.caption is not None else None,
            "author": self.head.author.value if self.head else None,
            "saved_at": self.head.created_at.isoformat() if self.head else None,
        }


@dataclass(frozen=True)
class HistoryEntry:
    revision: CaptionRevision
    summary: str


def parse(rev: CaptionRevision) -> Caption:
    return Caption.model_validate_json(rev.caption)


def head(session: Session, image: Image) -> CaptionRevision | None:
    if image.revision == 0:
        return None
    return get_revision(session, image, image.revision)


def head_captions(session: Session, *, dataset: Dataset) -> list[tuple[Image, Caption | None]]:
    """Every image in dataset order with its newest stored caption (None if it has none)."""
    rows = session.exec(
        select(Image, CaptionRevision)
        .join(
            CaptionRevision,
            (col(CaptionRevision.image_id) == Image.id)
            & (col(CaptionRevision.number) == Image.revision),
            isouter=True,
        )
        # A trashed image is not part of the dataset any more: it is never exported.
        .where(Image.dataset_id == dataset.id, col(Image.trashed_at).is_(None))
        .order_by(col(Image.position))
    ).all()
    return [(img, parse(rev) if rev else None) for img, rev in rows]


def get_revision(session: Session, image: Image, number: int) -> CaptionRevision:
    rev = session.exec(
        select(CaptionRevision).where(
            CaptionRevision.image_id == image.id, CaptionRevision.number == number
        )
    ).first()
    if rev is None:
        raise NotFound(f"Image {image.id} has no caption revision {number}.")
    return rev


def view(session: Session, image: Image, dataset: Dataset) -> CaptionView:
    """The newest caption of the image, stored and effective."""
    session.refresh(image)
    rev = head(session, image)
    stored = parse(rev) if rev else None
    shown = effective(stored, block_of(dataset)) if stored else None
    return CaptionView(image.revision, CaptionStatus(image.status), stored, shown, rev)


def stored_for(caption: Caption, dataset: Dataset) -> Caption:
    """The form a caption is stored in: fields equal to the style block left to inherit."""
    return stored_form(caption, block_of(dataset))


def save(
    session: Session,
    *,
    image: Image,
    dataset: Dataset,
    caption: Caption,
    base: int,
    author: Author = Author.user,
    action: Action = Action.edit,
    status: CaptionStatus | None = None,
    note: str = "",
    batch: str | None = None,
    commit: bool = True,
    keep_approval: bool = False,
) -> CaptionView:
    """Saves `caption` (as the user sees it) over revision `base`; an unchanged save adds none.

    A change to an approved caption makes it need review again, unless `keep_approval`: the
    editor's own typing, made by the reviewer with the whole caption in view."""
    block = block_of(dataset)
    stored = stored_form(caption, block)
    current = head(session, image) if image.revision == base else None
    if current is not None and parse(current) == stored and status is None:
        return view(session, image, dataset)
    rev = append(
        session,
        image=image,
        stored=stored,
        base=base,
        author=author,
        action=action,
        undo_to=base or None,
        status=status,
        note=note,
        batch=batch,
        keep_approval=keep_approval,
    )
    # The view is what was just written: no need to read it back. Detached, the revision
    # keeps its values through the commit rather than being reloaded.
    session.expunge(rev)
    new_status = CaptionStatus(image.status)  # as append left it (an approval may be withdrawn)
    if commit:
        session.commit()
    stored = parse(rev)
    return CaptionView(rev.number, new_status, stored, effective(stored, block), rev)


class MergeConflict(Conflict):
    """A stale save could not be merged by itself: both sides changed the same parts."""

    def __init__(
        self, message: str, *, merged: diff.Merged, current: CaptionView, base: int, **extra: Any
    ) -> None:
        super().__init__(message, current=current.as_dict(), **extra)
        # For the editor's merge table; the API answers with `extra` alone.
        self.merged = merged
        self.current = current
        self.base = base


def merge_with_newest(
    session: Session,
    *,
    image: Image,
    dataset: Dataset,
    mine: Caption,
    base: int,
    keep_mine: frozenset[str] = frozenset(),
) -> tuple[diff.Merged, CaptionView]:
    """Three-way merge of `mine`, an edit of revision `base`, with the newest caption."""
    current = view(session, image, dataset)
    if not 0 <= base <= current.revision:
        raise _stale(session, image, base)
    block = block_of(dataset)
    start = effective(parse(get_revision(session, image, base)), block) if base else Caption()
    merged = diff.merge3(
        base=start, mine=mine, theirs=current.caption or Caption(), keep_mine=keep_mine
    )
    return merged, current


@dataclass(frozen=True)
class MergedSave:
    view: CaptionView
    merged: diff.Merged | None  # None when `base` was the newest
    theirs: int  # the revision merged with (or `base`)


def save_merging(
    session: Session,
    *,
    image: Image,
    dataset: Dataset,
    caption: Caption,
    base: int,
    keep_approval: bool = False,
) -> MergedSave:
    """Saves over `base`; when stale, merges with the newest unless both changed one part.

    Every caption save goes through here (the editor, the raw JSON, the API with `merge`);
    a merged caption is one nobody has seen whole, so it never keeps an approval."""
    try:
        view = save(
            session,
            image=image,
            dataset=dataset,
            caption=caption,
            base=base,
            keep_approval=keep_approval,
        )
        return MergedSave(view, None, base)
    except StaleRevision:
        session.rollback()
        merged, current = merge_with_newest(
            session, image=image, dataset=dataset, mine=caption, base=base
        )
        if merged.conflicts:
            labels = ", ".join(p.label for p in merged.conflicts)
            raise MergeConflict(
                f"You edited revision {base}, but revision {current.revision} was saved since"
                f" and both changed {labels}: choose yours or theirs for each and save again;"
                " everything else is merged already.",
                merged=merged,
                current=current,
                base=base,
                conflicts=[
                    {"part": p.label, "base": p.base, "yours": p.mine, "theirs": p.theirs}
                    for p in merged.conflicts
                ],
            ) from None
        saved = save(
            session,
            image=image,
            dataset=dataset,
            caption=merged.caption,
            base=current.revision,
            note=merged_note(current.revision),
        )
        return MergedSave(saved, merged, current.revision)


def merged_note(theirs: int) -> str:
    """The history's note on a save merged with revision `theirs`, saved meanwhile."""
    return f"merged with revision {theirs}, saved elsewhere"


def _next_status(image: Image, status: CaptionStatus | None, author: Author) -> CaptionStatus:
    """A new revision's status: as asked; else a person's save of a draft (or of nothing) is
    edited, and another first caption a draft; else unchanged."""
    if status is not None:
        return status
    # "draft" is the engine's word: once a person has saved, the reviewer should know it.
    if author == Author.user and image.status in (CaptionStatus.none, CaptionStatus.draft):
        return CaptionStatus.edited
    return CaptionStatus.draft if image.status == CaptionStatus.none else image.status


def append(
    session: Session,
    *,
    image: Image,
    stored: Caption,
    base: int,
    author: Author,
    action: Action,
    undo_to: int | None,
    redo_to: int | None = None,
    status: CaptionStatus | None = None,
    note: str = "",
    batch: str | None = None,
    keep_approval: bool = False,
) -> CaptionRevision:
    """Adds revision base + 1, or raises StaleRevision if `base` is not the newest."""
    number = base + 1
    asked = status
    # The status as stored now, not as this session last read it: an approval given in
    # another request counts.
    was = session.exec(select(Image.status).where(Image.id == image.id)).first()
    if was is not None:
        image.status = CaptionStatus(was)
    status = _next_status(image, status, author)
    moved = session.execute(
        update(Image)
        .where(col(Image.id) == image.id, col(Image.revision) == base)
        .values(revision=number, status=status)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise _stale(session, image, base)
    # Elements keep their ids through every kind of save; those that come without one (API,
    # model, sidecar, older revisions) are named after the element they replace.
    previous = parse(get_revision(session, image, base)) if base else None
    stored = diff.identify(stored, like=previous)
    withdrawn = _withdrawn(was, asked, keep_approval, stored, previous)
    if withdrawn is not None:
        session.execute(update(Image).where(col(Image.id) == image.id).values(status=withdrawn))
        if withdrawn == CaptionStatus.needs_review:
            note = "; ".join(n for n in (note, APPROVAL_WITHDRAWN) if n)
    rev = CaptionRevision(
        image_id=image.id,  # type: ignore[arg-type]
        number=number,
        caption=stored.model_dump_json(),
        author=author,
        action=action,
        undo_to=undo_to,
        redo_to=redo_to,
        note=note,
        batch=batch,
    )
    session.add(rev)
    session.flush()
    session.expire(image)
    return rev


def _withdrawn(
    was: str | None,
    asked: CaptionStatus | None,
    keep_approval: bool,
    stored: Caption,
    previous: Caption | None,
) -> CaptionStatus | None:
    """An approved caption's status after a change (None: no approval to withdraw)."""
    if was != CaptionStatus.approved or asked == CaptionStatus.approved or keep_approval:
        return None
    # What was approved is not what is stored now: a reviewer must look again, and the
    # history says why (a merge, a find and replace, a script, a re-draft, an undo...).
    # The same words again (a re-draft reading it alike) are still what was approved.
    return CaptionStatus.needs_review if stored != previous else CaptionStatus.approved


def heads_of(
    session: Session, image_ids: list[int]
) -> dict[int, tuple[Image, CaptionRevision | None]]:
    """Each image as stored now (its rows in the session refreshed) with its newest
    revision, in one query, for `append_read`."""
    rows = session.exec(
        select(Image, CaptionRevision)
        .join(
            CaptionRevision,
            (col(CaptionRevision.image_id) == Image.id)
            & (col(CaptionRevision.number) == Image.revision),
            isouter=True,
        )
        .where(col(Image.id).in_(image_ids))
        .execution_options(populate_existing=True)
    ).all()
    return {img.id: (img, rev) for img, rev in rows if img.id is not None}


def append_read(
    session: Session,
    *,
    image: Image,
    head: CaptionRevision | None,
    stored: Caption,
    author: Author,
    action: Action,
    status: CaptionStatus,
    note: str = "",
    doubts: str | None = None,
    values: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """`append` over the image and head `heads_of` read, for many images in one
    transaction: the image moves to its new revision and status (and `values`) in one
    conditional UPDATE; returns the revision's row for `insert_revisions`, or None if the
    image changed since it was read (its revision or status): then `append` must decide.

    `stored` is given with its elements named (`diff.identify` against the head), so that
    what is kept beside the revision (its doubts) can name them."""
    image_id, base = image.id, image.revision
    was = CaptionStatus(image.status)
    previous = parse(head) if head is not None else None
    final = _withdrawn(was, status, False, stored, previous) or _next_status(image, status, author)
    if final == CaptionStatus.needs_review and was == CaptionStatus.approved:
        note = "; ".join(n for n in (note, APPROVAL_WITHDRAWN) if n)
    # On the session's connection, as a plain statement built once: through the ORM, each
    # UPDATE flushed the session and looked for its rows among the loaded objects first.
    values = values or {}
    moved = session.connection().execute(
        _move_statement(tuple(sorted(values))),
        {"at": image_id, "base": base, "was": was, "revision": base + 1, "status": final, **values},
    )
    if moved.rowcount != 1:
        return None
    session.expire(image)
    return {
        "image_id": image_id,
        "number": base + 1,
        "caption": stored.model_dump_json(),
        "author": author,
        "action": action,
        "undo_to": base or None,
        "redo_to": None,
        "note": note,
        "batch": None,
        "doubts": doubts,
        "created_at": utcnow(),
    }


@functools.cache
def _move_statement(keys: tuple[str, ...]) -> Any:
    """The conditional UPDATE `append_read` moves an image with, setting its revision, its
    status and the columns `keys`, each a bound parameter of its own name."""
    image = Image.__table__  # type: ignore[attr-defined]
    return (
        update(image)
        .where(
            image.c.id == bindparam("at"),
            image.c.revision == bindparam("base"),
            image.c.status == bindparam("was"),
        )
        .values(revision=bindparam("revision"), status=bindparam("status"))
        .values({key: bindparam(key) for key in keys})
    )


def insert_revisions(session: Session, rows: list[dict[str, Any]]) -> None:
    """Adds the revisions `append_read` made, in one statement."""
    if rows:
        session.connection().execute(insert(CaptionRevision.__table__), rows)  # type: ignore[attr-defined]


def undo(session: Session, *, image: Image, dataset: Dataset, base: int) -> CaptionView:
    """Goes back to the caption before the newest change, as a new revision."""
    current = _newest(session, image, base)
    if current is None or current.undo_to is None:
        raise Invalid("There is nothing to undo: this is the caption's first revision.")
    target = get_revision(session, image, current.undo_to)
    return _restore(
        session, image=image, dataset=dataset, base=base, target=target,
        action=Action.undo, redo_to=current.number, note=f"back to revision {target.number}",
    )  # fmt: skip


def redo(session: Session, *, image: Image, dataset: Dataset, base: int) -> CaptionView:
    """Restores the change the newest undo took back, as a new revision."""
    current = _newest(session, image, base)
    if current is None or current.redo_to is None:
        raise Invalid("There is nothing to redo.")
    target = get_revision(session, image, current.redo_to)
    return _restore(
        session, image=image, dataset=dataset, base=base, target=target,
        action=Action.redo, redo_to=target.redo_to, note=f"forward to revision {target.number}",
    )  # fmt: skip


def _restore(
    session: Session,
    *,
    image: Image,
    dataset: Dataset,
    base: int,
    target: CaptionRevision,
    action: Action,
    redo_to: int | None,
    note: str,
) -> CaptionView:
    """Makes `target`'s caption the newest again; undo from there goes where target's went."""
    append(
        session,
        image=image,
        stored=parse(target),
        base=base,
        author=Author.user,
        action=action,
        undo_to=target.undo_to,
        redo_to=redo_to,
        note=note,
    )
    session.commit()
    return view(session, image, dataset)


def revert(session: Session, *, image: Image, dataset: Dataset, base: int, to: int) -> CaptionView:
    """Makes revision `to` the newest again, as a new revision (undo goes back to `base`)."""
    _newest(session, image, base)
    target = get_revision(session, image, to)
    append(
        session,
        image=image,
        stored=parse(target),
        base=base,
        author=Author.user,
        action=Action.revert,
        undo_to=base,
        note=f"reverted to revision {to}",
    )
    session.commit()
    return view(session, image, dataset)


def history(session: Session, image: Image) -> list[HistoryEntry]:
    """Every revision, newest first, each with what it changed."""
    revs = session.exec(
        select(CaptionRevision)
        .where(CaptionRevision.image_id == image.id)
        .order_by(col(CaptionRevision.number))
    ).all()
    entries = []
    previous: Caption | None = None
    for rev in revs:
        caption = parse(rev)
        entries.append(HistoryEntry(rev, diff.summary(previous, caption)))
        previous = caption
    return entries[::-1]


def weakness(caption: Caption | None) -> str | None:
    """Why an approved caption may teach the model little ('an empty background'), or None."""
    if caption is None:
        return None
    missing = []
    if not caption.high_level_description.strip():
        missing.append("an empty high-level description")
    if not caption.composition.background.strip():
        missing.append("an empty background")
    if not caption.composition.elements:
        missing.append("no elements")
    if not missing:
        return None
    listed = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
    return f"it has {listed} (the model learns the style from what the caption names)"


def set_status(session: Session, *, image: Image, status: CaptionStatus) -> None:
    if status == CaptionStatus.none:
        raise Invalid("'none' means the image has no caption; use draft, needs_review or approved.")
    if image.revision == 0:
        raise Invalid(f"Image {image.id} has no caption yet: write or draft one first.")
    image.status = status
    session.add(image)
    session.commit()


def _newest(session: Session, image: Image, base: int) -> CaptionRevision | None:
    session.refresh(image)
    if image.revision != base:
        raise _stale(session, image, base)
    return head(session, image)


def _stale(session: Session, image: Image, base: int) -> StaleRevision:
    session.expire(image)
    session.refresh(image)
    rev = head(session, image)
    dataset = session.get(Dataset, image.dataset_id)
    assert dataset is not None
    current = view(session, image, dataset)
    when = _time(rev.created_at) if rev else "?"
    who = rev.author.value if rev else "?"
    return StaleRevision(
        f"You edited revision {base}, but revision {image.revision} was saved since "
        f"(by {who} at {when}): merge your changes into it and save again.",
        current=current.as_dict(),
    )


def _time(t: datetime) -> str:
    return t.strftime("%H:%M:%S UTC")


class CopyPart(StrEnum):
    """What "copy from the previous image" takes from another caption."""

    style = "style"
    background = "background"


def copy_part(
    session: Session, *, image: Image, dataset: Dataset, source_id: int, part: CopyPart, base: int
) -> CaptionView:
    """Saves this caption with `part` taken from image `source_id` of the same dataset."""
    source = session.get(Image, source_id)
    if source is None or source.dataset_id != dataset.id or source.id == image.id:
        raise Invalid("The image to copy from is not another image of this dataset.")
    theirs = view(session, source, dataset).stored
    if theirs is None:
        raise Invalid(f"{source.filename} has no caption to copy from.")
    mine = view(session, image, dataset).stored or Caption()
    if part == CopyPart.style:
        # The palette stays: it is this painting's colours, not the dataset's style.
        style = theirs.style.model_copy(update={"color_palette": mine.style.color_palette})
        caption = mine.model_copy(update={"style": style})
    else:
        composition = mine.composition.model_copy(
            update={"background": theirs.composition.background}
        )
        caption = mine.model_copy(update={"composition": composition})
    return save_merging(session, image=image, dataset=dataset, caption=caption, base=base).view


def newest_draft(session: Session, image: Image) -> CaptionRevision | None:
    """The image's newest revision written by the drafting engine, if any."""
    return session.exec(
        select(CaptionRevision)
        .where(CaptionRevision.image_id == image.id, CaptionRevision.action == Action.draft)
        .order_by(col(CaptionRevision.number).desc())
        .limit(1)
    ).first()
