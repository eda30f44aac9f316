"""Changes across a dataset's captions: the style block every caption inherits, find and
replace, palettes filled from the pixels, undoing such a batch, and how imported boxes were
written (pages and API)."""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from app import datasets as ds
from app.captions import dataset_edits as edits
from app.captions import sidecars
from app.captions.dialects import BoxFormat
from app.captions.schema import MEDIA
from app.captions.style_block import block_of, save_block
from app.errors import Invalid, UserError
from app.images.palettes import empty_filler
from app.web.deps import SessionDep, StoreDep
from app.web.render import render, see_other
from app.web.security import local_path

router = APIRouter()
TAGS: list[str | Enum] = ["captions"]

# A style block field or a replacement: as long as the API allows (StyleBlockIn, ReplaceIn).
Text = Annotated[str, Form(max_length=4000)]


class StyleBlockIn(BaseModel):
    aesthetics: str = Field(default="", max_length=4000)
    lighting: str = Field(default="", max_length=4000)
    medium: str | None = None
    render: str = Field(default="", max_length=4000)


class ReplaceIn(BaseModel):
    find: str = Field(min_length=1, max_length=1000)
    replace: str = Field(default="", max_length=4000)
    field: edits.ReplaceField = "all"
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


class FillPalettesIn(BaseModel):
    previewed: dict[int, int] | None = Field(
        default=None,
        description="To apply: image id -> revision from the preview; leave out for the "
        "preview (the palettes each caption with no palette would get)",
    )


class BoxFormatIn(BaseModel):
    format: BoxFormat


# The API.


@router.get("/api/datasets/{dataset_id}/style", tags=TAGS)
def get_style_block(dataset_id: int, session: SessionDep) -> dict:
    """The style block every caption of the dataset inherits unless it overrides a field."""
    dataset = ds.get_dataset(session, dataset_id)
    return {"medium": None, "aesthetics": "", "lighting": "", "render": ""} | block_of(dataset)


@router.put("/api/datasets/{dataset_id}/style", tags=TAGS)
def put_style_block(dataset_id: int, body: StyleBlockIn, session: SessionDep) -> dict:
    dataset = ds.get_dataset(session, dataset_id)
    save_block(session, dataset=dataset, **body.model_dump())
    return get_style_block(dataset_id, session)


def _changes_out(items: list[edits.ImageChanges]) -> list[dict]:
    return [
        {
            "image_id": i.image_id,
            "filename": i.filename,
            "revision": i.revision,
            "changes": [
                {"field": c.path, "label": c.label, "before": c.before, "after": c.after}
                for c in i.changes
            ],
        }
        for i in items
    ]


def _applied_out(a: edits.Applied) -> dict:
    return {"batch": a.batch, "changed": a.changed, "skipped": a.skipped}


@router.post("/api/datasets/{dataset_id}/style/apply", tags=TAGS)
def apply_style_block(dataset_id: int, session: SessionDep, body: ApplyStyleIn) -> dict:
    """Without `previewed`: the diff of every caption that overrides the block. With: apply."""
    dataset = ds.get_dataset(session, dataset_id)
    if body.previewed is None:
        return {"preview": _changes_out(edits.preview_style(session, dataset=dataset))}
    return _applied_out(edits.apply_style(session, dataset=dataset, previewed=body.previewed))


@router.post("/api/datasets/{dataset_id}/replace", tags=TAGS)
def find_replace(dataset_id: int, body: ReplaceIn, session: SessionDep) -> dict:
    """Without `previewed`: every change it would make. With: one revision per caption."""
    dataset = ds.get_dataset(session, dataset_id)
    options = body.model_dump(exclude={"previewed"})
    if body.previewed is None:
        return {"preview": _changes_out(edits.preview_replace(session, dataset=dataset, **options))}
    return _applied_out(
        edits.apply_replace(session, dataset=dataset, previewed=body.previewed, **options)
    )


@router.post("/api/datasets/{dataset_id}/palettes/fill", tags=TAGS)
def fill_palettes(
    dataset_id: int, session: SessionDep, store: StoreDep, body: FillPalettesIn
) -> dict:
    """Without `previewed`: the palettes the captions with none would get. With: one batch,
    undoable; palettes a caption already holds stay as they are."""
    dataset = ds.get_dataset(session, dataset_id)
    if body.previewed is None:
        return {
            "preview": _changes_out(
                edits.preview_palettes(session, dataset=dataset, fill=empty_filler(store))
            )
        }
    return _applied_out(
        edits.apply_palettes(
            session, dataset=dataset, fill=empty_filler(store), previewed=body.previewed
        )
    )


@router.post("/api/datasets/{dataset_id}/batches/{batch}/undo", tags=TAGS)
def undo_dataset_batch(dataset_id: int, batch: str, session: SessionDep) -> dict:
    """Undoes a find and replace or a style apply, caption by caption where still newest."""
    dataset = ds.get_dataset(session, dataset_id)
    return _applied_out(edits.undo_batch(session, dataset=dataset, batch=batch))


@router.post("/api/datasets/{dataset_id}/box-format", tags=TAGS)
def choose_box_format(dataset_id: int, body: BoxFormatIn, session: SessionDep) -> dict:
    """Says how to read imported boxes that could be 0..1000 or pixels, for the dataset."""
    dataset = ds.get_dataset(session, dataset_id)
    pending = len(sidecars.ambiguous_images(session, dataset=dataset))
    if not pending:
        raise Invalid("No image of this dataset has boxes of an undecided format.")
    changed = sidecars.choose_box_format(session, dataset=dataset, box_format=body.format)
    return {"images": pending, "captions_changed": changed}


# The pages.


def _previewed(value: str) -> dict[int, int]:
    try:
        data = json.loads(value)
        return {int(k): int(v) for k, v in data.items()}
    except (ValueError, TypeError, AttributeError, RecursionError):
        raise Invalid("The preview sent back is damaged; preview again.") from None


@router.get("/datasets/{dataset_id}/style", response_class=HTMLResponse, include_in_schema=False)
def style_page(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return _style_page(request, dataset, saved=False)


def _style_page(request: Request, dataset: Any, *, saved: bool) -> Response:
    # A function of its own: the form's field `render` shadows the helper in save_style.
    return render(request, "dataset_style.html", _style_context(dataset, saved=saved))


def _style_context(dataset: Any, **extra: Any) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "block": block_of(dataset),
        "media": MEDIA,
        "preview": None,
        "applied": None,
        "error": None,
    } | extra


@router.post("/datasets/{dataset_id}/style", response_class=HTMLResponse, include_in_schema=False)
def save_style(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    aesthetics: Text = "",
    lighting: Text = "",
    medium: Annotated[str, Form()] = "",
    render: Text = "",
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    save_block(
        session,
        dataset=dataset,
        aesthetics=aesthetics,
        lighting=lighting,
        medium=medium,
        render=render,
    )
    return _style_page(request, dataset, saved=True)


@router.post(
    "/datasets/{dataset_id}/style/preview", response_class=HTMLResponse, include_in_schema=False
)
def style_preview(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    preview = edits.preview_style(session, dataset=dataset)
    context = _style_context(dataset, saved=False, preview=preview)
    return render(request, "dataset_style.html", context, block="apply")


@router.post(
    "/datasets/{dataset_id}/style/apply", response_class=HTMLResponse, include_in_schema=False
)
def style_apply(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    previewed: Annotated[str, Form()],
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    applied = edits.apply_style(session, dataset=dataset, previewed=_previewed(previewed))
    context = _style_context(dataset, saved=False, applied=applied)
    return render(request, "dataset_style.html", context, block="apply")


@router.get("/datasets/{dataset_id}/replace", response_class=HTMLResponse, include_in_schema=False)
def replace_page(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return render(request, "dataset_replace.html", _replace_context(dataset, {}))


def _replace_context(dataset: Any, form: dict[str, Any], **extra: Any) -> dict[str, Any]:
    defaults = {"find": "", "replace": "", "field": "all", "case_sensitive": True, "regex": False}
    return {
        "dataset": dataset,
        "form": defaults | form,
        "fields": edits.REPLACE_FIELDS,
        "preview": None,
        "applied": None,
        "block_matches": [],
        "marks": {},
        "error": None,
    } | extra


class ReplaceForm(BaseModel):
    find: str = Field(default="", max_length=1000)  # empty: the service says what is wrong
    replace: str = Field(default="", max_length=4000)
    field: edits.ReplaceField = "all"
    case_sensitive: bool = False
    regex: bool = False


class ReplaceApplyForm(ReplaceForm):
    previewed: str


@router.post(
    "/datasets/{dataset_id}/replace/preview", response_class=HTMLResponse, include_in_schema=False
)
def replace_preview(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    body: Annotated[ReplaceForm, Form()],
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    form = body.model_dump()
    try:
        preview = edits.preview_replace(session, dataset=dataset, **form)
    except UserError as e:
        # Said where the result was, which it replaces: no stale preview stays to apply.
        context = _replace_context(dataset, form, error=e.message)
        return render(
            request, "dataset_replace.html", context, block="result", status_code=e.status_code
        )
    # Inherited style fields live in the dataset's block, not in the captions.
    needle = body.find if body.case_sensitive else body.find.lower()
    block_matches = [
        k
        for k, v in block_of(dataset).items()
        if body.field in ("all", k)
        and not body.regex
        and needle in (v if body.case_sensitive else v.lower())
    ]
    marks = {
        (item.image_id, c.path): _marked(c.before, c.after, body)
        for item in preview
        for c in item.changes
    }
    context = _replace_context(
        dataset, form, preview=preview, block_matches=block_matches, marks=marks
    )
    return render(request, "dataset_replace.html", context, block="result")


Segments = list[tuple[str, bool]]


def _marked(before: str, after: str, body: ReplaceForm) -> tuple[Segments, Segments]:
    """The field before and after, cut into (text, is a match or its replacement) parts."""
    find = body.find if body.regex else re.escape(body.find)
    pattern = re.compile(find, 0 if body.case_sensitive else re.IGNORECASE)
    old: Segments = []
    new: Segments = []
    at = 0
    for m in pattern.finditer(before):
        if m.start() == m.end():
            continue  # an empty match marks nothing
        old += [(before[at : m.start()], False), (m.group(0), True)]
        added = m.expand(body.replace) if body.regex else body.replace
        new += [(before[at : m.start()], False), (added, True)]
        at = m.end()
    old.append((before[at:], False))
    new.append((before[at:], False))
    if "".join(t for t, _ in new) != after:  # the service's rules differ: show it plainly
        return [(before, False)], [(after, False)]
    return old, new


@router.post(
    "/datasets/{dataset_id}/replace/apply", response_class=HTMLResponse, include_in_schema=False
)
def replace_apply(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    body: Annotated[ReplaceApplyForm, Form()],
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    form = body.model_dump(exclude={"previewed"})
    previewed = _previewed(body.previewed)
    applied = edits.apply_replace(session, dataset=dataset, previewed=previewed, **form)
    context = _replace_context(dataset, form, applied=applied)
    return render(request, "dataset_replace.html", context, block="result")


@router.post(
    "/datasets/{dataset_id}/palettes/fill", response_class=HTMLResponse, include_in_schema=False
)
def fill_palettes_form(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    store: StoreDep,
    back: Annotated[str, Form()] = "",
) -> Response:
    """Lint's offer: fills every caption that has no palette, as it is now, in one batch."""
    dataset = ds.get_dataset(session, dataset_id)
    missing = edits.without_palette(session, dataset=dataset)
    applied = edits.apply_palettes(
        session, dataset=dataset, fill=empty_filler(store), previewed=missing
    )
    context = {
        "dataset": dataset,
        "applied": applied,
        "back": local_path(back or f"/datasets/{dataset_id}/export"),
    }
    return render(request, "palettes_filled.html", context, block="fill")


@router.post(
    "/datasets/{dataset_id}/batches/{batch}/undo",
    response_class=HTMLResponse,
    include_in_schema=False,
)
def undo_batch_form(
    request: Request,
    dataset_id: int,
    batch: str,
    session: SessionDep,
    back: Annotated[str, Form()] = "",
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    undone = edits.undo_batch(session, dataset=dataset, batch=batch)
    context = {
        "dataset": dataset,
        "undone": undone,
        "back": local_path(back or f"/datasets/{dataset_id}"),
    }
    return render(request, "batch_undone.html", context, block="undone")


@router.post(
    "/datasets/{dataset_id}/box-format", response_class=HTMLResponse, include_in_schema=False
)
def choose_box_format_form(
    dataset_id: int,
    session: SessionDep,
    format: Annotated[BoxFormat, Form()],
    back: Annotated[str, Form()] = "",
) -> Response:
    """The user's choice, after comparing both readings: how the imported boxes were written."""
    dataset = ds.get_dataset(session, dataset_id)
    sidecars.choose_box_format(session, dataset=dataset, box_format=format)
    return see_other(local_path(back or f"/datasets/{dataset_id}"))
