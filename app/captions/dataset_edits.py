"""Changes across a whole dataset's captions: find and replace, applying the style block,
filling the palettes captions lack from the pixels.

Each is previewed first and applied as one revision per caption changed, all sharing a batch
id so the whole change can be undone. Applying names the revision each preview was made
from: a caption edited in between is skipped and reported, never overwritten.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sqlmodel import Session, col, select

from app.captions import diff, revisions
from app.captions.schema import Caption
from app.captions.style_block import block_of, effective, without_overrides
from app.errors import Invalid, NotFound
from app.models import Action, Author, CaptionRevision, Dataset, Image

ReplaceField = Literal[
    "all",
    "high_level_description",
    "aesthetics",
    "lighting",
    "render",
    "background",
    "desc",
    "text",
]
REPLACE_FIELDS: tuple[str, ...] = ReplaceField.__args__  # type: ignore[attr-defined]
MAX_FIND = 1000


@dataclass
class ImageChanges:
    image_id: int
    filename: str
    revision: int
    changes: list[diff.Change]


@dataclass
class Applied:
    batch: str | None
    changed: int = 0
    skipped: list[str] = field(default_factory=list)  # filenames edited since the preview


def preview_replace(
    session: Session,
    *,
    dataset: Dataset,
    find: str,
    replace: str,
    field: ReplaceField = "all",
    case_sensitive: bool = True,
    regex: bool = False,
) -> list[ImageChanges]:
    """Every change a find and replace would make, caption by caption."""
    sub = _substitution(find, replace, case_sensitive=case_sensitive, regex=regex)
    out = []
    for image, stored in _captions(session, dataset):
        after = _replaced(stored, sub, field)
        if after != stored:
            out.append(_changes(image, stored, after))
    return out


def apply_replace(
    session: Session,
    *,
    dataset: Dataset,
    find: str,
    replace: str,
    previewed: dict[int, int],
    field: ReplaceField = "all",
    case_sensitive: bool = True,
    regex: bool = False,
) -> Applied:
    """Applies the replace to the captions previewed at the revisions given (image -> rev)."""
    sub = _substitution(find, replace, case_sensitive=case_sensitive, regex=regex)
    return _apply(
        session,
        dataset=dataset,
        previewed=previewed,
        change=lambda _, c: _replaced(c, sub, field),
        action=Action.find_replace,
        note=f"replaced {find!r} with {replace!r} in {field}",
    )


def preview_style(session: Session, *, dataset: Dataset) -> list[ImageChanges]:
    """The captions that override the style block, and how applying it changes them."""
    block = block_of(dataset)
    out = []
    for image, stored in _captions(session, dataset):
        before, after = effective(stored, block), effective(without_overrides(stored, block), block)
        if after != before:
            out.append(_changes(image, before, after))
    return out


def apply_style(session: Session, *, dataset: Dataset, previewed: dict[int, int]) -> Applied:
    """Makes every previewed caption inherit the whole style block again."""
    block = block_of(dataset)
    if not block:
        raise Invalid("The dataset's style block is empty: fill it in before applying it.")
    return _apply(
        session,
        dataset=dataset,
        previewed=previewed,
        change=lambda _, c: without_overrides(c, block),
        action=Action.apply_style,
        note="applied the dataset's style block",
    )


def without_palette(session: Session, *, dataset: Dataset) -> dict[int, int]:
    """The captions with no image palette: image id -> the revision that lacks it."""
    return {
        image.id: image.revision  # type: ignore[misc]
        for image, stored in _captions(session, dataset)
        if not stored.style.color_palette
    }


# How a caption's empty palettes are filled from its image's pixels: the caller passes
# app/images/palettes.py's fill_empty (captions know nothing of pixels).
Fill = Callable[[Image, Caption], Caption]


def preview_palettes(session: Session, *, dataset: Dataset, fill: Fill) -> list[ImageChanges]:
    """The palettes filling would write into the captions that have none."""
    missing = without_palette(session, dataset=dataset)
    out = []
    for image, stored in _captions(session, dataset):
        if image.id in missing:
            out.append(_changes(image, stored, fill(image, stored)))
    return out


def apply_palettes(
    session: Session, *, dataset: Dataset, fill: Fill, previewed: dict[int, int]
) -> Applied:
    """Fills the palettes of the captions named (image -> revision) from their pixels: the
    image palette and each boxed element's, where empty; palettes a caption holds stay."""
    return _apply(
        session,
        dataset=dataset,
        previewed=previewed,
        change=fill,
        action=Action.palettes,
        note="filled the empty palettes from the pixels",
    )


def undo_batch(session: Session, *, dataset: Dataset, batch: str) -> Applied:
    """Undoes every caption change of the batch that is still its caption's newest."""
    revs = session.exec(
        select(CaptionRevision, Image)
        .join(Image, col(Image.id) == CaptionRevision.image_id)
        .where(CaptionRevision.batch == batch, Image.dataset_id == dataset.id)
    ).all()
    if not revs:
        raise NotFound(f"Dataset {dataset.id} has no change batch {batch!r}.")
    result = Applied(batch=batch)
    for rev, image in revs:
        if image.revision != rev.number or rev.undo_to is None:
            result.skipped.append(image.filename)
            continue
        target = revisions.get_revision(session, image, rev.undo_to)
        revisions.append(
            session,
            image=image,
            stored=revisions.parse(target),
            base=rev.number,
            author=Author.user,
            action=Action.undo,
            undo_to=target.undo_to,
            redo_to=rev.number,
            note=f"undid {rev.note}",
        )
        result.changed += 1
    session.commit()
    return result


def _apply(
    session: Session,
    *,
    dataset: Dataset,
    previewed: dict[int, int],
    change: Callable[[Image, Caption], Caption],
    action: Action,
    note: str,
) -> Applied:
    batch = uuid.uuid4().hex
    result = Applied(batch=batch)
    for image, stored in _captions(session, dataset):
        if image.id not in previewed:
            continue
        if image.revision != previewed[image.id]:
            result.skipped.append(image.filename)
            continue
        after = change(image, stored)
        if after == stored:
            continue
        revisions.append(
            session,
            image=image,
            stored=after,
            base=image.revision,
            author=Author.user,
            action=action,
            undo_to=image.revision,
            note=note,
            batch=batch,
        )
        result.changed += 1
    session.commit()
    if not result.changed:
        result.batch = None
    return result


def _captions(session: Session, dataset: Dataset) -> list[tuple[Image, Caption]]:
    rows = session.exec(
        select(Image, CaptionRevision)
        .join(
            CaptionRevision,
            (col(CaptionRevision.image_id) == Image.id)
            & (col(CaptionRevision.number) == Image.revision),
        )
        .where(Image.dataset_id == dataset.id, col(Image.trashed_at).is_(None))
        .order_by(col(Image.position))
    ).all()
    return [(image, revisions.parse(rev)) for image, rev in rows]


def _changes(image: Image, before: Caption, after: Caption) -> ImageChanges:
    return ImageChanges(image.id, image.filename, image.revision, diff.changes(before, after))  # type: ignore[arg-type]


def _substitution(
    find: str, replace: str, *, case_sensitive: bool, regex: bool
) -> Callable[[str], str]:
    if not find:
        raise Invalid("Say what to find.")
    if len(find) > MAX_FIND:
        raise Invalid(f"What to find may be at most {MAX_FIND} characters long.")
    try:
        pattern = re.compile(
            find if regex else re.escape(find), 0 if case_sensitive else re.IGNORECASE
        )
    except re.error as e:
        raise Invalid(f"That regular expression is not valid: {e}.") from None
    template = replace if regex else replace.replace("\\", "\\\\")
    try:
        pattern.sub(template, "")
    except (re.error, IndexError) as e:
        raise Invalid(f"The replacement is not valid: {e}.") from None
    return lambda text: pattern.sub(template, text)


def _replaced(c: Caption, sub: Callable[[str], str], where: ReplaceField) -> Caption:
    def on(name: str) -> bool:
        return where in ("all", name)

    style = c.style.model_copy(
        update={k: sub(getattr(c.style, k)) for k in ("aesthetics", "lighting", "render") if on(k)}
    )
    elements = [
        e.model_copy(
            update={
                **({"desc": sub(e.desc)} if on("desc") else {}),
                **({"text": sub(e.text)} if on("text") and e.text is not None else {}),
            }
        )
        for e in c.composition.elements
    ]
    composition = c.composition.model_copy(
        update={
            "elements": elements,
            **({"background": sub(c.composition.background)} if on("background") else {}),
        }
    )
    top = (
        {"high_level_description": sub(c.high_level_description)}
        if on("high_level_description")
        else {}
    )
    return c.model_copy(update={**top, "style": style, "composition": composition})
