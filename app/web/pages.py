"""HTML pages: datasets, the image grid with upload, near-duplicates, image view, login."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from app import datasets as ds
from app.drafting import jobs
from app.errors import Invalid, UserError
from app.images import catalog, trash
from app.models import CaptionStatus, Dataset, Flag, Image
from app.web.deps import SessionDep, SettingsDep, StoreDep
from app.web.security import TOKEN_COOKIE, client_key, local_path, token_matches
from app.web.templating import templates
from app.web.uploads import import_uploads, received_files

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
    store: StoreDep,
    status: str = "",
    flag: str = "",
    page: int = 1,
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    # A server left running still keeps the trash's promise: nothing stays past 30 days.
    trash.purge_expired(session, store=store)
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
        **_trash_context(session, dataset),
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
) -> Response:
    """The no-JavaScript upload: a plain multipart form post, answered with the report."""
    dataset = ds.get_dataset(session, dataset_id)
    with received_files(request, settings=settings) as files:
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
def duplicates(
    request: Request, dataset_id: int, session: SessionDep, trashed: int | None = None
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    pairs = catalog.open_pairs(session, dataset=dataset)
    moved = session.get(Image, trashed) if trashed is not None else None
    if moved is not None and (moved.dataset_id != dataset.id or moved.trashed_at is None):
        moved = None
    context = {"dataset": dataset, "pairs": pairs, "moved": moved}
    if request.headers.get("hx-request"):
        return templates.TemplateResponse(request, "duplicates.html", context, block_name="pairs")
    return templates.TemplateResponse(request, "duplicates.html", context)


@router.post("/near-duplicates/{pair_id}/resolve", response_class=HTMLResponse)
def resolve_pair(
    request: Request,
    pair_id: int,
    session: SessionDep,
    keep: Annotated[str, Form()],
    dataset_id: Annotated[int, Form()],
) -> Response:
    """Keeps one (the other goes to the trash, with an undo) or both."""
    moved = catalog.resolve_pair(session, pair_id=pair_id, keep=keep)
    trashed = moved.id if moved is not None else None
    if not request.headers.get("hx-request"):
        query = f"?trashed={trashed}" if trashed is not None else ""
        return _see_other(f"/datasets/{dataset_id}/duplicates{query}")
    return duplicates(request, dataset_id, session, trashed=trashed)


def _back(request: Request, back: str, dataset_id: int) -> Response:
    """After a trash action: htmx refreshes the grid and the trash; a plain form goes back."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Trigger": "trashChanged"})
    return _see_other(local_path(back) if back else f"/datasets/{dataset_id}#trash")


@router.get("/datasets/{dataset_id}/trash", response_class=HTMLResponse)
def trash_list(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return templates.TemplateResponse(request, "_trash.html", _trash_context(session, dataset))


def _trash_context(session: Session, dataset: Dataset) -> dict[str, Any]:
    items = [(i, trash.expires_at(i)) for i in trash.in_trash(session, dataset=dataset)]
    return {"dataset": dataset, "trashed": items, "trash_days": trash.TRASH_DAYS}


@router.post("/images/{image_id}/trash", response_class=HTMLResponse)
def move_to_trash(
    request: Request, image_id: int, session: SessionDep, back: Annotated[str, Form()] = ""
) -> Response:
    image = catalog.get_image(session, image_id)
    trash.move_to_trash(session, images=[image])
    return _back(request, back, image.dataset_id)


@router.post("/datasets/{dataset_id}/trash/restore", response_class=HTMLResponse)
def restore_from_trash(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    image_id: Annotated[list[int], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    back: Annotated[str, Form()] = "",
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    trash.restore(session, dataset=dataset, image_ids=image_id)
    return _back(request, back, dataset_id)


@router.post("/datasets/{dataset_id}/trash/empty", response_class=HTMLResponse)
def empty_trash(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    store: StoreDep,
    image_id: Annotated[list[int] | None, Form()] = None,
) -> Response:
    """Deletes for good every trashed image, or the one named."""
    dataset = ds.get_dataset(session, dataset_id)
    trash.empty(session, store=store, dataset=dataset, image_ids=image_id or None)
    return _back(request, "", dataset_id)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return templates.TemplateResponse(
        request, "login.html", {"next": local_path(next), "error": None}
    )


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=4096)] = "",
    next: Annotated[str, Form(max_length=4096)] = "/",
) -> Response:
    # A missing token is answered as a wrong one, after the same penalty (security.Throttle).
    if settings.token is None or not token_matches(token, settings.token):
        await request.app.state.throttle.refused(client_key(request), "/login")
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": local_path(next), "error": "That token is not right."},
            status_code=401,
        )
    request.app.state.throttle.succeeded(client_key(request))
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
