"""HTML pages: datasets, the image grid with upload, near-duplicates, image view, login."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app import datasets as ds
from app.drafting import jobs
from app.errors import Invalid, UserError
from app.images import catalog
from app.models import CaptionStatus, Flag
from app.web.deps import SessionDep, SettingsDep, StoreDep
from app.web.security import TOKEN_COOKIE, local_path, token_matches
from app.web.templating import templates
from app.web.uploads import import_uploads

router = APIRouter(include_in_schema=False)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, session: SessionDep) -> Response:
    return templates.TemplateResponse(
        request, "index.html", {"summaries": ds.list_summaries(session), "error": None, "form": {}}
    )


@router.post("/datasets", response_class=HTMLResponse)
def create_dataset(
    request: Request,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    trigger_word: Annotated[str, Form()] = "",
    resolution: Annotated[int, Form()] = 1024,
    notes: Annotated[str, Form()] = "",
) -> Response:
    try:
        dataset = ds.create_dataset(
            session, name=name, trigger_word=trigger_word, resolution=resolution, notes=notes
        )
    except UserError as e:
        form = {
            "name": name,
            "trigger_word": trigger_word,
            "resolution": resolution,
            "notes": notes,
        }
        return templates.TemplateResponse(
            request,
            "index.html",
            {"summaries": ds.list_summaries(session), "error": e.message, "form": form},
            status_code=e.status_code,
        )
    return _see_other(f"/datasets/{dataset.id}")


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_grid(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    status: str = "",
    flag: str = "",
    page: int = 1,
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    status_filter = _parse(CaptionStatus, status, "status")
    flag_filter = _parse(Flag, flag, "flag")
    size = settings.page_size
    page = max(page, 1)
    rows, total = catalog.list_images(
        session,
        dataset=dataset,
        status=status_filter,
        flag=flag_filter,
        offset=(page - 1) * size,
        limit=size,
    )
    pages = max(1, math.ceil(total / size))
    counts = catalog.counts(session, dataset=dataset)
    active = jobs.active_job(session, dataset=dataset)
    first_ambiguous = None
    if counts[Flag.ambiguous_boxes.value]:
        first_ambiguous = catalog.list_images(
            session, dataset=dataset, flag=Flag.ambiguous_boxes, limit=1
        )[0][0].image.id

    def link(**changes: object) -> str:
        params = {"status": status, "flag": flag, "page": page} | changes
        query = urlencode({k: v for k, v in params.items() if v not in ("", None, 1)})
        return f"/datasets/{dataset_id}" + (f"?{query}" if query else "")

    context = {
        "dataset": dataset,
        "rows": rows,
        "total": total,
        "page": page,
        "pages": pages,
        "status": status,
        "flag": flag,
        "counts": counts,
        "first_ambiguous": first_ambiguous,
        "near_duplicates": ds.open_near_duplicate_count(session, dataset_id),
        "link": link,
        "max_file_mb": settings.max_file_mb,
        "draft_model": settings.draft_model,
        "draft_batch": settings.draft_batch,
        "active_job": active,
        "active_progress": jobs.progress(active) if active else None,
    }
    if request.headers.get("hx-request") and request.headers.get("hx-target") == "grid":
        return templates.TemplateResponse(request, "dataset.html", context, block_name="grid")
    return templates.TemplateResponse(request, "dataset.html", context)


@router.post("/datasets/{dataset_id}/import", response_class=HTMLResponse)
def import_form(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    files: list[UploadFile],
) -> Response:
    """The no-JavaScript upload: a plain multipart form post, answered with the report."""
    dataset = ds.get_dataset(session, dataset_id)
    report = import_uploads(session, settings=settings, dataset=dataset, files=files)
    return templates.TemplateResponse(
        request, "import_report.html", {"dataset": dataset, "report": report.as_dict()}
    )


@router.get("/datasets/{dataset_id}/settings", response_class=HTMLResponse)
def dataset_settings(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return templates.TemplateResponse(
        request, "dataset_settings.html", {"dataset": dataset, "error": None, "saved": False}
    )


@router.post("/datasets/{dataset_id}/settings", response_class=HTMLResponse)
def save_dataset_settings(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    name: Annotated[str, Form()],
    trigger_word: Annotated[str, Form()] = "",
    resolution: Annotated[int, Form()] = 1024,
    notes: Annotated[str, Form()] = "",
    draft_instructions: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    try:
        ds.update_dataset(
            session,
            dataset,
            name=name,
            trigger_word=trigger_word,
            resolution=resolution,
            notes=notes,
            draft_instructions=draft_instructions,
        )
    except UserError as e:
        session.rollback()
        session.refresh(dataset)
        return templates.TemplateResponse(
            request,
            "dataset_settings.html",
            {"dataset": dataset, "error": e.message, "saved": False},
            status_code=e.status_code,
        )
    return templates.TemplateResponse(
        request, "dataset_settings.html", {"dataset": dataset, "error": None, "saved": True}
    )


@router.get("/datasets/{dataset_id}/delete", response_class=HTMLResponse)
def confirm_delete(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    counts = catalog.counts(session, dataset=dataset)
    return templates.TemplateResponse(
        request, "dataset_delete.html", {"dataset": dataset, "count": counts["all"], "error": None}
    )


@router.post("/datasets/{dataset_id}/delete", response_class=HTMLResponse)
def delete_dataset(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    store: StoreDep,
    confirm_name: Annotated[str, Form()] = "",
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    if confirm_name.strip() != dataset.name:
        counts = catalog.counts(session, dataset=dataset)
        return templates.TemplateResponse(
            request,
            "dataset_delete.html",
            {
                "dataset": dataset,
                "count": counts["all"],
                "error": "Type the dataset's name exactly to confirm.",
            },
            status_code=422,
        )
    for sha in ds.delete_dataset(session, dataset):
        store.remove(sha)
    return _see_other("/")


@router.get("/datasets/{dataset_id}/duplicates", response_class=HTMLResponse)
def duplicates(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    pairs = catalog.open_pairs(session, dataset=dataset)
    context = {"dataset": dataset, "pairs": pairs}
    if request.headers.get("hx-request"):
        return templates.TemplateResponse(request, "duplicates.html", context, block_name="pairs")
    return templates.TemplateResponse(request, "duplicates.html", context)


@router.post("/near-duplicates/{pair_id}/resolve", response_class=HTMLResponse)
def resolve_pair(
    request: Request,
    pair_id: int,
    session: SessionDep,
    store: StoreDep,
    keep: Annotated[str, Form()],
    dataset_id: Annotated[int, Form()],
) -> Response:
    catalog.resolve_pair(session, store=store, pair_id=pair_id, keep=keep)
    return duplicates(request, dataset_id, session)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return templates.TemplateResponse(
        request, "login.html", {"next": local_path(next), "error": None}
    )


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    if settings.token is None or not token_matches(token, settings.token):
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": local_path(next), "error": "That token is not right."},
            status_code=401,
        )
    response = _see_other(local_path(next))
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response


E = TypeVar("E", bound=StrEnum)


def _parse(enum: type[E], value: str, what: str) -> E | None:
    if not value:
        return None
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise Invalid(f"Unknown {what} filter {value!r}; use one of {allowed}.") from None
