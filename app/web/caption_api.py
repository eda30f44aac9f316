"""The caption API: read and save captions, revisions, review status, dataset-wide edits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlmodel import Session

from app import datasets as ds
from app.captions import revisions, sidecars
from app.captions.dataset_edits import (
    Applied,
    ImageChanges,
    ReplaceField,
    apply_replace,
    apply_style,
    preview_replace,
    preview_style,
    undo_batch,
)
from app.captions.dialects import BoxFormat, Dialect, read_submitted, to_official
from app.captions.schema import Caption
from app.captions.style_block import block_of, effective, set_block
from app.errors import Invalid, NotFound
from app.images import catalog
from app.images.palettes import fill_palettes
from app.models import Action, CaptionStatus, Image, utcnow
from app.web.deps import SessionDep, StoreDep

router = APIRouter(prefix="/api", tags=["captions"])


class CaptionPut(BaseModel):
    revision: int = Field(ge=0, description="The revision this caption edits (0: none yet)")
    caption: dict[str, Any]
    dialect: Dialect = "official"
    merge: bool = Field(
        default=False,
        description="When `revision` is stale, merge with the newest caption: the parts "
        "only you changed are yours, the rest theirs; 409 listing the parts both changed",
    )


class RevisionIn(BaseModel):
    revision: int = Field(ge=0, description="The newest revision, as the client last saw it")


class RevertIn(RevisionIn):
    to: int = Field(ge=1, description="The revision to make the newest again")


class StatusIn(BaseModel):
    status: CaptionStatus


class StyleBlockIn(BaseModel):
    aesthetics: str = Field(default="", max_length=4000)
    lighting: str = Field(default="", max_length=4000)
    medium: str | None = None
    render: str = Field(default="", max_length=4000)


class ReplaceIn(BaseModel):
    find: str = Field(min_length=1, max_length=1000)
    replace: str = Field(default="", max_length=4000)
    field: ReplaceField = "all"
    case_sensitive: bool = True
    regex: bool = False
    previewed: dict[int, int] | None = Field(
        default=None,
        description="To apply: image id -> revision, as the preview listed them; "
        "leave out to get the preview",
    )


class ApplyStyleIn(BaseModel):
    previewed: dict[int, int] | None = Field(
        default=None, description="To apply: image id -> revision from the preview"
    )


class BoxFormatIn(BaseModel):
    format: BoxFormat


def _image(session: Session, image_id: int) -> tuple[Image, Any]:
    image = catalog.get_image(session, image_id)
    return image, ds.get_dataset(session, image.dataset_id)


@router.get("/images/{image_id}/caption")
def get_caption(image_id: int, session: SessionDep) -> dict:
    """The newest caption in the official dialect, with its revision and review status."""
    image, dataset = _image(session, image_id)
    return revisions.view(session, image, dataset).as_dict()


@router.put("/images/{image_id}/caption")
def put_caption(image_id: int, body: CaptionPut, session: SessionDep) -> dict:
    """Saves a caption over `revision`: 409 if stale (unless `merge` can), 422 if invalid."""
    image, dataset = _image(session, image_id)
    caption = read_submitted(
        body.caption, dialect=body.dialect, width=image.width, height=image.height
    )
    if not body.merge:
        return revisions.save(
            session, image=image, dataset=dataset, caption=caption, base=body.revision
        ).as_dict()
    result = revisions.save_merging(
        session, image=image, dataset=dataset, caption=caption, base=body.revision
    )
    out = result.view.as_dict()
    if result.merged is not None:
        out["merged"] = {
            "with_revision": result.theirs,
            "yours": result.merged.from_mine,
            "theirs": result.merged.from_theirs,
        }
    return out


@router.post("/images/{image_id}/status")
def set_status(image_id: int, body: StatusIn, session: SessionDep) -> dict:
    image, dataset = _image(session, image_id)
    revisions.set_status(session, image=image, status=body.status)
    view = revisions.view(session, image, dataset)
    out = view.as_dict()
    weak = revisions.weakness(view.caption) if body.status == CaptionStatus.approved else None
    if weak is not None:
        out["warning"] = f"Approved, but it may be weak: {weak}."
    return out


@router.get("/images/{image_id}/caption/revisions")
def list_revisions(image_id: int, session: SessionDep) -> list[dict]:
    """Every revision, newest first, with who saved it, when, and what it changed."""
    image, _ = _image(session, image_id)
    return [
        {
            "revision": e.revision.number,
            "author": e.revision.author.value,
            "action": e.revision.action.value,
            "saved_at": e.revision.created_at.isoformat(),
            "changed": e.summary,
            "note": e.revision.note,
            "batch": e.revision.batch,
        }
        for e in revisions.history(session, image)
    ]


@router.get("/images/{image_id}/caption/revisions/{number}")
def get_revision(image_id: int, number: int, session: SessionDep) -> dict:
    """One revision's caption in the official dialect (with today's dataset style block)."""
    image, dataset = _image(session, image_id)
    rev = revisions.get_revision(session, image, number)
    caption = effective(revisions.parse(rev), block_of(dataset))
    return {
        "revision": rev.number,
        "author": rev.author.value,
        "saved_at": rev.created_at.isoformat(),
        "caption": to_official(caption),
    }


@router.post("/images/{image_id}/caption/undo")
def undo(image_id: int, body: RevisionIn, session: SessionDep) -> dict:
    image, dataset = _image(session, image_id)
    return revisions.undo(session, image=image, dataset=dataset, base=body.revision).as_dict()


@router.post("/images/{image_id}/caption/redo")
def redo(image_id: int, body: RevisionIn, session: SessionDep) -> dict:
    image, dataset = _image(session, image_id)
    return revisions.redo(session, image=image, dataset=dataset, base=body.revision).as_dict()


@router.post("/images/{image_id}/caption/revert")
def revert(image_id: int, body: RevertIn, session: SessionDep) -> dict:
    image, dataset = _image(session, image_id)
    return revisions.revert(
        session, image=image, dataset=dataset, base=body.revision, to=body.to
    ).as_dict()


@router.post("/images/{image_id}/caption/palettes")
def fill_caption_palettes(
    image_id: int, body: RevisionIn, session: SessionDep, store: StoreDep
) -> dict:
    """Fills the image palette and every boxed element's palette from the pixels."""
    image, dataset = _image(session, image_id)
    current = revisions.view(session, image, dataset)
    if current.revision != body.revision:
        raise revisions.StaleRevision(
            f"You edited revision {body.revision}, but revision {current.revision} is newest.",
            current=current.as_dict(),
        )
    blob = store.blob_path(image.sha256)
    if not blob.is_file():
        raise NotFound(f"The stored file of image {image_id} is missing from the data dir.")
    filled = fill_palettes(current.caption or Caption(), blob.read_bytes())
    return revisions.save(
        session,
        image=image,
        dataset=dataset,
        caption=filled,
        base=body.revision,
        action=Action.palettes,
    ).as_dict()


@router.get("/datasets/{dataset_id}/style")
def get_style_block(dataset_id: int, session: SessionDep) -> dict:
    """The style block every caption of the dataset inherits unless it overrides a field."""
    dataset = ds.get_dataset(session, dataset_id)
    return {"medium": None, "aesthetics": "", "lighting": "", "render": ""} | block_of(dataset)


@router.put("/datasets/{dataset_id}/style")
def put_style_block(dataset_id: int, body: StyleBlockIn, session: SessionDep) -> dict:
    dataset = ds.get_dataset(session, dataset_id)
    set_block(dataset, **body.model_dump())
    dataset.updated_at = utcnow()
    session.add(dataset)
    session.commit()
    return get_style_block(dataset_id, session)


def _changes_out(items: list[ImageChanges]) -> list[dict]:
    return [
        {
            "image_id": i.image_id,
            "filename": i.filename,
            "revision": i.revision,
            "changes": [{"field": c.path, "before": c.before, "after": c.after} for c in i.changes],
        }
        for i in items
    ]


def _applied_out(a: Applied) -> dict:
    return {"batch": a.batch, "changed": a.changed, "skipped": a.skipped}


@router.post("/datasets/{dataset_id}/style/apply")
def apply_style_block(dataset_id: int, session: SessionDep, body: ApplyStyleIn) -> dict:
    """Without `previewed`: the diff of every caption that overrides the block. With: apply."""
    dataset = ds.get_dataset(session, dataset_id)
    if body.previewed is None:
        return {"preview": _changes_out(preview_style(session, dataset=dataset))}
    return _applied_out(apply_style(session, dataset=dataset, previewed=body.previewed))


@router.post("/datasets/{dataset_id}/replace")
def find_replace(dataset_id: int, body: ReplaceIn, session: SessionDep) -> dict:
    """Without `previewed`: every change it would make. With: one revision per caption."""
    dataset = ds.get_dataset(session, dataset_id)
    options = body.model_dump(exclude={"previewed"})
    if body.previewed is None:
        return {"preview": _changes_out(preview_replace(session, dataset=dataset, **options))}
    return _applied_out(
        apply_replace(session, dataset=dataset, previewed=body.previewed, **options)
    )


@router.post("/datasets/{dataset_id}/batches/{batch}/undo")
def undo_dataset_batch(dataset_id: int, batch: str, session: SessionDep) -> dict:
    """Undoes a find and replace or a style apply, caption by caption where still newest."""
    dataset = ds.get_dataset(session, dataset_id)
    return _applied_out(undo_batch(session, dataset=dataset, batch=batch))


@router.post("/datasets/{dataset_id}/box-format")
def choose_box_format(dataset_id: int, body: BoxFormatIn, session: SessionDep) -> dict:
    """Says how to read imported boxes that could be 0..1000 or pixels, for the dataset."""
    dataset = ds.get_dataset(session, dataset_id)
    pending = len(sidecars.ambiguous_images(session, dataset=dataset))
    if not pending:
        raise Invalid("No image of this dataset has boxes of an undecided format.")
    changed = sidecars.choose_box_format(session, dataset=dataset, box_format=body.format)
    return {"images": pending, "captions_changed": changed}
