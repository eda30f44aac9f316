"""Pages for changes across a dataset's captions: the style block, find and replace, and
the box format of imported captions."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from app import datasets as ds
from app.captions import dataset_edits as edits
from app.captions import sidecars
from app.captions.dialects import BoxFormat
from app.captions.schema import MEDIA
from app.captions.style_block import block_of, set_block
from app.errors import Invalid
from app.models import utcnow
from app.web.deps import SessionDep
from app.web.security import local_path
from app.web.templating import templates

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=4000)]


def _previewed(value: str) -> dict[int, int]:
    try:
        data = json.loads(value)
        return {int(k): int(v) for k, v in data.items()}
    except (ValueError, TypeError, AttributeError, RecursionError):
        raise Invalid("The preview sent back is damaged; preview again.") from None


def _render(
    request: Request, name: str, context: dict[str, Any], block: str | None = None
) -> Response:
    if block and request.headers.get("hx-request"):
        return templates.TemplateResponse(request, name, context, block_name=block)
    return templates.TemplateResponse(request, name, context)


@router.get("/datasets/{dataset_id}/style", response_class=HTMLResponse)
def style_page(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return _render(request, "dataset_style.html", _style_context(dataset, saved=False))


def _style_context(dataset: Any, **extra: Any) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "block": block_of(dataset),
        "media": MEDIA,
        "preview": None,
        "applied": None,
        "error": None,
    } | extra


@router.post("/datasets/{dataset_id}/style", response_class=HTMLResponse)
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
    set_block(dataset, aesthetics=aesthetics, lighting=lighting, medium=medium, render=render)
    dataset.updated_at = utcnow()
    session.add(dataset)
    session.commit()
    return _render(request, "dataset_style.html", _style_context(dataset, saved=True))


@router.post("/datasets/{dataset_id}/style/preview", response_class=HTMLResponse)
def style_preview(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    preview = edits.preview_style(session, dataset=dataset)
    context = _style_context(dataset, saved=False, preview=preview)
    return _render(request, "dataset_style.html", context, block="apply")


@router.post("/datasets/{dataset_id}/style/apply", response_class=HTMLResponse)
def style_apply(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    previewed: Annotated[str, Form()],
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    applied = edits.apply_style(session, dataset=dataset, previewed=_previewed(previewed))
    context = _style_context(dataset, saved=False, applied=applied)
    return _render(request, "dataset_style.html", context, block="apply")


@router.get("/datasets/{dataset_id}/replace", response_class=HTMLResponse)
def replace_page(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return _render(request, "dataset_replace.html", _replace_context(dataset, {}))


def _replace_context(dataset: Any, form: dict[str, Any], **extra: Any) -> dict[str, Any]:
    defaults = {"find": "", "replace": "", "field": "all", "case_sensitive": True, "regex": False}
    return {
        "dataset": dataset,
        "form": defaults | form,
        "fields": edits.REPLACE_FIELDS,
        "preview": None,
        "applied": None,
        "block_matches": [],
    } | extra


class ReplaceForm(BaseModel):
    find: str = Field(default="", max_length=1000)  # empty: the service says what is wrong
    replace: str = Field(default="", max_length=4000)
    field: edits.ReplaceField = "all"
    case_sensitive: bool = False
    regex: bool = False


class ReplaceApplyForm(ReplaceForm):
    previewed: str


@router.post("/datasets/{dataset_id}/replace/preview", response_class=HTMLResponse)
def replace_preview(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    body: Annotated[ReplaceForm, Form()],
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    form = body.model_dump()
    preview = edits.preview_replace(session, dataset=dataset, **form)
    # Inherited style fields live in the dataset's block, not in the captions.
    needle = body.find if body.case_sensitive else body.find.lower()
    block_matches = [
        k
        for k, v in block_of(dataset).items()
        if body.field in ("all", k)
        and not body.regex
        and needle in (v if body.case_sensitive else v.lower())
    ]
    context = _replace_context(dataset, form, preview=preview, block_matches=block_matches)
    return _render(request, "dataset_replace.html", context, block="result")


@router.post("/datasets/{dataset_id}/replace/apply", response_class=HTMLResponse)
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
    return _render(request, "dataset_replace.html", context, block="result")


@router.post("/datasets/{dataset_id}/batches/{batch}/undo", response_class=HTMLResponse)
def undo_batch(
    request: Request,
    dataset_id: int,
    batch: str,
    session: SessionDep,
    back: Annotated[str, Form()] = "",
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    undone = edits.undo_batch(session, dataset=dataset, batch=batch)
    return templates.TemplateResponse(
        request,
        "_batch_undone.html",
        {
            "dataset": dataset,
            "undone": undone,
            "back": local_path(back or f"/datasets/{dataset_id}"),
        },
    )


@router.post("/datasets/{dataset_id}/box-format", response_class=HTMLResponse)
def choose_box_format(
    dataset_id: int,
    session: SessionDep,
    format: Annotated[BoxFormat, Form()],
    back: Annotated[str, Form()] = "",
) -> Response:
    """The user's choice, after comparing both readings: how the imported boxes were written."""
    dataset = ds.get_dataset(session, dataset_id)
    sidecars.choose_box_format(session, dataset=dataset, box_format=format)
    return RedirectResponse(local_path(back or f"/datasets/{dataset_id}"), status_code=303)
