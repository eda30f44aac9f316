"""Images: the dataset's grid page, uploads (form and API), an image's data, file and
thumbnail, and the trash (page and API)."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from app import datasets as ds
from app.captions.doubts import UNSURE_BELOW
from app.drafting import available, choice, jobs
from app.errors import Invalid, NotFound
from app.images import catalog, history, trash
from app.images.decode import MIME_TYPES, render_thumbnail
from app.images.trash import TRASH_DAYS
from app.models import CaptionStatus, Dataset, Flag
from app.web.deps import SessionDep, SettingsDep, StoreDep
from app.web.drafting import DraftIn, problems_of, shown_job, start
from app.web.render import is_htmx, render, see_other
from app.web.security import local_path
from app.web.training import train_defaults
from app.web.uploads import UPLOAD_BODY, import_uploads, received_files

router = APIRouter()

# An id list in one request: enough for any dataset's trash, short of a body that stalls.
MAX_IDS = 10_000


class ImageOut(BaseModel):
    id: int
    filename: str
    width: int
    height: int
    sha256: str
    format: str
    megapixels: float
    aspect_ratio: float
    byte_size: int
    orientation: int
    flags: list[Flag]
    status: CaptionStatus
    has_caption_file: bool
    caption_error: str | None = Field(
        description="Why the imported caption file could not be read (it is kept raw)"
    )
    revision: int = Field(description="The caption's newest revision, 0 when it has none")
    trashed_at: datetime | None = Field(
        default=None, description="When it was moved to the dataset's trash; null when it is not"
    )


class TrashOut(BaseModel):
    id: int
    filename: str
    trashed_at: datetime
    expires_at: datetime = Field(description=f"Deleted for good then ({TRASH_DAYS} days on)")


class TrashIn(BaseModel):
    image_ids: list[int] = Field(min_length=1, max_length=MAX_IDS)


class EmptyTrashIn(BaseModel):
    image_ids: list[int] | None = Field(
        default=None, max_length=MAX_IDS, description="Only these; leave out to empty it all"
    )


# The API.


@router.get("/api/datasets/{dataset_id}/images", tags=["api"], response_model=list[ImageOut])
def list_images(
    dataset_id: int,
    session: SessionDep,
    response: Response,
    status: CaptionStatus | None = None,
    flag: Flag | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=MAX_IDS)] = None,
) -> list[dict]:
    """The dataset's images in order; the total matching is in the X-Total-Count header."""
    dataset = ds.get_dataset(session, dataset_id)
    rows, total = catalog.list_images(
        session, dataset=dataset, status=status, flag=flag, offset=offset, limit=limit
    )
    response.headers["X-Total-Count"] = str(total)
    return [r.as_dict() for r in rows]


@router.post("/api/datasets/{dataset_id}/images", tags=["api"], openapi_extra=UPLOAD_BODY)
def upload_images(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    upload: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Names the upload these files are a batch of: the import history "
            "shows its batches as one import",
        ),
    ] = None,
) -> dict:
    """Imports the uploaded files; says per file what was imported, duplicate or refused
    (refused first), each imported image's size and flags; kept in the import history.

    413 when a file passes ATELIER_MAX_FILE_MB or the request ATELIER_MAX_UPLOAD_MB: reading
    stops there and nothing of the request is imported."""
    dataset = ds.get_dataset(session, dataset_id)
    with received_files(request, settings=settings) as files:
        report = import_uploads(
            session, settings=settings, dataset=dataset, files=files, upload=upload
        )
    return report.as_dict()


@router.get("/api/images/{image_id}", tags=["api"], response_model=ImageOut)
def get_image(image_id: int, session: SessionDep) -> dict:
    image, dataset = catalog.image_with_dataset(session, image_id=image_id)
    return catalog.ImageRow(image, catalog.image_flags(session, image, dataset)).as_dict()


@router.get("/api/images/{image_id}/file", tags=["api"], response_class=FileResponse)
def image_file(image_id: int, session: SessionDep, store: StoreDep) -> FileResponse:
    """The original bytes as imported."""
    image = catalog.get_image(session, image_id)
    path = store.blob_path(image.sha256)
    if not path.is_file():
        raise NotFound(f"The stored file of image {image_id} is missing from the data dir.")
    return FileResponse(
        path,
        media_type=MIME_TYPES.get(image.format, "application/octet-stream"),
        # The file of an id never changes: a re-import of other bytes is another image.
        headers={"Cache-Control": "private, max-age=31536000, immutable"},
    )


@router.get("/api/images/{image_id}/thumb", tags=["api"], response_class=FileResponse)
def image_thumb(
    image_id: int, session: SessionDep, store: StoreDep, settings: SettingsDep
) -> FileResponse:
    """A JPEG thumbnail, rebuilt from the original if the cache lost it."""
    image = catalog.get_image(session, image_id)
    thumb = store.thumb_path(image.sha256)
    if not thumb.is_file():
        blob = store.blob_path(image.sha256)
        if not blob.is_file():
            raise NotFound(f"The stored file of image {image_id} is missing from the data dir.")
        store.put_thumb(image.sha256, render_thumbnail(blob.read_bytes(), size=settings.thumb_size))
    return FileResponse(
        thumb, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.delete("/api/images/{image_id}", tags=["api"], status_code=204)
def delete_image(image_id: int, session: SessionDep) -> Response:
    """Moves the image, caption and history with it, to its dataset's trash (restorable)."""
    trash.move_to_trash(session, images=[catalog.get_image(session, image_id)])
    return Response(status_code=204)


@router.get("/api/datasets/{dataset_id}/trash", tags=["api"], response_model=list[TrashOut])
def list_trash(dataset_id: int, session: SessionDep) -> list[dict]:
    """The dataset's trashed images, most recently trashed first."""
    dataset = ds.get_dataset(session, dataset_id)
    return [
        {
            "id": i.id,
            "filename": i.filename,
            "trashed_at": i.trashed_at,
            "expires_at": trash.expires_at(i),
        }
        for i in trash.in_trash(session, dataset=dataset)
    ]


@router.post("/api/datasets/{dataset_id}/trash/restore", tags=["api"])
def restore_from_trash(dataset_id: int, body: TrashIn, session: SessionDep) -> dict:
    """Puts trashed images back where they were in the dataset, captions and all."""
    dataset = ds.get_dataset(session, dataset_id)
    return {"restored": trash.restore(session, dataset=dataset, image_ids=body.image_ids)}


@router.post("/api/datasets/{dataset_id}/trash/empty", tags=["api"])
def empty_trash(
    dataset_id: int, session: SessionDep, store: StoreDep, body: EmptyTrashIn | None = None
) -> dict:
    """Deletes trashed images for good (all, or those named): this cannot be undone."""
    dataset = ds.get_dataset(session, dataset_id)
    ids = body.image_ids if body is not None else None
    return {"deleted": trash.empty(session, store=store, dataset=dataset, image_ids=ids)}


# The pages.


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse, include_in_schema=False)
def dataset_grid(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    status: str = "",
    flag: str = "",
    q: str = "",
    sort: str = "",
    page: int = 1,
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    # A server left running still keeps the trash's promise: nothing stays past 30 days.
    trash.purge_expired(session, store=store)
    status_filter = _parse(CaptionStatus, status, "status")
    flag_filter = _parse(Flag, flag, "flag")
    size = settings.page_size
    page = max(page, 1)
    order = _parse(catalog.Sort, sort, "sort") or catalog.Sort.position
    rows, total = catalog.list_images(
        session,
        dataset=dataset,
        status=status_filter,
        flag=flag_filter,
        search=q,
        sort=order,
        offset=(page - 1) * size,
        limit=size,
    )
    pages = max(1, math.ceil(total / size))
    counts = catalog.counts(session, dataset=dataset)
    active = shown_job(request, session, dataset)
    first_ambiguous = None
    if counts[Flag.ambiguous_boxes.value]:
        first_ambiguous = catalog.list_images(
            session, dataset=dataset, flag=Flag.ambiguous_boxes, limit=1
        )[0][0].image.id

    def link(**changes: object) -> str:
        params = {"status": status, "flag": flag, "q": q, "sort": sort, "page": page} | changes
        query = urlencode({k: v for k, v in params.items() if v not in ("", None, 1)})
        return f"/datasets/{dataset_id}" + (f"?{query}" if query else "")

    # The editor's j/k walk the grid's filter and order.
    editor_query = urlencode(
        {k: v for k, v in {"status": status, "flag": flag, "sort": sort}.items() if v}
    )
    context = {
        "dataset": dataset,
        "rows": rows,
        "editor_query": f"?{editor_query}" if editor_query else "",
        "UNSURE_BELOW": UNSURE_BELOW,
        "total": total,
        "page": page,
        "pages": pages,
        "status": status,
        "flag": flag,
        "q": q,
        "sort": order.value,
        "SORTS": list(catalog.Sort),
        "bulk_notice": request.cookies.get(BULK_COOKIE),
        "bulk_undo": _read_undo(request.cookies.get(BULK_UNDO_COOKIE)),
        "counts": counts,
        "first_ambiguous": first_ambiguous,
        "near_duplicates": ds.open_near_duplicate_count(session, dataset_id),
        **_trash_context(session, dataset),
        "link": link,
        "max_file_mb": settings.max_file_mb,
        "draft_batch": settings.draft_batch,
        "active_job": active,
        "active_progress": jobs.progress(active) if active else None,
        "active_problems": problems_of(session, active) if active else [],
        "cpu_warning": available.cpu_warning(settings, choice.current(session, settings).engine),
        "train": train_defaults(session, settings),
    }
    # Only the grid's own refreshes and its boosted filter links swap the grid alone.
    grid_only = request.headers.get("hx-target") == "grid"
    response = render(request, "dataset.html", context, block="grid" if grid_only else None)
    if context["bulk_notice"]:
        response.delete_cookie(BULK_COOKIE)  # said once
        response.delete_cookie(BULK_UNDO_COOKIE)
    return response


# What a bulk action did, said once on the grid it goes back to, with how to undo it: the
# images to restore from the trash, or each image's status before ("id:status").
BULK_COOKIE = "atelier_bulk_notice"
BULK_UNDO_COOKIE = "atelier_bulk_undo"
# A browser keeps a cookie of about 4 KB: a larger undo is left out (the trash still restores).
MAX_UNDO_CHARS = 3500


def _undo_value(*, restore: list[int] | None = None, was: dict[int, str] | None = None) -> str:
    """The undo cookie's text: "restore 1 2 3" or "was 1:edited 2:draft"."""
    if restore:
        return "restore " + " ".join(map(str, restore))
    if was:
        return "was " + " ".join(f"{i}:{s}" for i, s in was.items())
    return ""


def _read_undo(value: str | None) -> dict[str, list[str]] | None:
    """The undo form's hidden fields from the cookie's text, or None."""
    if not value:
        return None
    kind, _, rest = value.partition(" ")
    if kind not in ("restore", "was") or not rest:
        return None
    return {kind: rest.split()}


def _said(response: Response, notice: str, undo: str = "") -> Response:
    """The response, with the sentence (and its undo) for the grid to show once."""
    response.set_cookie(BULK_COOKIE, notice, httponly=True, samesite="strict", max_age=60)
    if undo and len(undo) <= MAX_UNDO_CHARS:
        response.set_cookie(BULK_UNDO_COOKIE, undo, httponly=True, samesite="strict", max_age=60)
    else:
        response.delete_cookie(BULK_UNDO_COOKIE)
    return response


BULK_ACTIONS = {
    "approve": "approved",
    "needs_review": "marked needs review",
    "redraft": "queued for re-drafting",
    "trash": "moved to the trash",
}


@router.post("/datasets/{dataset_id}/bulk", response_class=HTMLResponse, include_in_schema=False)
def bulk_action(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    action: Annotated[str, Form()],
    image_id: Annotated[list[int], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    all_matching: Annotated[bool, Form()] = False,
    status: Annotated[str, Form()] = "",
    flag: Annotated[str, Form()] = "",
    q: Annotated[str, Form(max_length=catalog.MAX_SEARCH)] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    """The grid's selection (or every image the filter matches) approved, marked for review,
    re-drafted or moved to the trash; back to the grid with a sentence saying what was done."""
    dataset = ds.get_dataset(session, dataset_id)
    if action not in BULK_ACTIONS:
        raise Invalid(f"Unknown action {action!r}; use one of {', '.join(BULK_ACTIONS)}.")
    if all_matching:
        ids = catalog.matching_ids(
            session,
            dataset=dataset,
            status=_parse(CaptionStatus, status, "status"),
            flag=_parse(Flag, flag, "flag"),
            search=q,
        )
    else:
        ids = list(dict.fromkeys(image_id))
    if not ids:
        raise Invalid("Select at least one image first.")
    if len(ids) > MAX_IDS:
        raise Invalid(f"At most {MAX_IDS} images at once.")
    images = catalog.images_of(session, dataset=dataset, image_ids=ids)
    done = BULK_ACTIONS[action]
    undo = ""
    if action in ("approve", "needs_review"):
        wanted = CaptionStatus.approved if action == "approve" else CaptionStatus.needs_review
        was = {i.id: i.status.value for i in images if i.revision and i.status != wanted}
        notice = catalog.set_statuses(session, images=images, status=wanted).sentence(done)
        undo = _undo_value(was=was)  # type: ignore[arg-type]
    elif action == "trash":
        n = trash.move_to_trash(session, images=images)
        notice = f"{n} image{'s' if n != 1 else ''} {done}: restore them from the trash below."
        undo = _undo_value(restore=[i.id for i in images])  # type: ignore[misc]
    else:
        body = DraftIn(scope="selection", image_ids=ids, overwrite_edited=True)
        job = start(request, session, settings, dataset, body)
        notice = f"{len(ids)} image{'s' if len(ids) != 1 else ''} {done} (job {job.id})."
    response = see_other(local_path(back) if back else f"/datasets/{dataset_id}")
    return _said(response, notice, undo)


@router.post(
    "/datasets/{dataset_id}/bulk/undo", response_class=HTMLResponse, include_in_schema=False
)
def undo_bulk(
    dataset_id: int,
    session: SessionDep,
    restore: Annotated[list[int], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    was: Annotated[list[str], Form()] = [],  # noqa: B006
    back: Annotated[str, Form()] = "",
) -> Response:
    """Undoes the grid's last action: images back from the trash, or statuses as they were."""
    dataset = ds.get_dataset(session, dataset_id)
    if restore:
        trash.restore(session, dataset=dataset, image_ids=restore)
        notice = f"Undone: {len(restore)} image{'s' if len(restore) != 1 else ''} restored."
    else:
        before: dict[CaptionStatus, list[int]] = {}
        for pair in was:
            image_id, _, status = pair.partition(":")
            value = _parse(CaptionStatus, status, "status")
            if not image_id.isdigit() or value is None:
                raise Invalid(f"{pair!r} is not an image and its status.")
            before.setdefault(value, []).append(int(image_id))
        for status, ids in before.items():
            images = catalog.images_of(session, dataset=dataset, image_ids=ids)
            catalog.set_statuses(session, images=images, status=status)
        n = sum(len(ids) for ids in before.values())
        notice = f"Undone: {n} image{'s' if n != 1 else ''} back to the status they had."
    response = see_other(local_path(back) if back else f"/datasets/{dataset_id}")
    return _said(response, notice)


@router.post("/datasets/{dataset_id}/import", response_class=HTMLResponse, include_in_schema=False)
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
    return render(request, "import_report.html", {"dataset": dataset, "report": report.as_dict()})


@router.get("/api/datasets/{dataset_id}/imports", tags=["api"])
def api_imports(dataset_id: int, session: SessionDep) -> list[dict]:
    """The dataset's import history, newest first: each import's report as it was answered
    (an upload's batches merged into one)."""
    dataset = ds.get_dataset(session, dataset_id)
    return [
        {"created_at": i.created_at, "origin": i.origin} | i.report
        for i in history.imports(session, dataset=dataset)
    ]


@router.get("/datasets/{dataset_id}/imports", response_class=HTMLResponse, include_in_schema=False)
def page_imports(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    upload: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The dataset's import history: every import's report, refused files first."""
    dataset = ds.get_dataset(session, dataset_id)
    found = history.imports(session, dataset=dataset, upload=upload)
    return render(request, "import_history.html", {"dataset": dataset, "imports": found})


def _back(request: Request, back: str, dataset_id: int) -> Response:
    """After a trash action: htmx refreshes the grid and the trash; a plain form goes back."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Trigger": "trashChanged"})
    return see_other(local_path(back) if back else f"/datasets/{dataset_id}#trash")


@router.get("/datasets/{dataset_id}/trash", response_class=HTMLResponse, include_in_schema=False)
def trash_list(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return render(request, "_trash.html", _trash_context(session, dataset))


def _trash_context(session: Session, dataset: Dataset) -> dict[str, Any]:
    items = [(i, trash.expires_at(i)) for i in trash.in_trash(session, dataset=dataset)]
    return {"dataset": dataset, "trashed": items, "trash_days": trash.TRASH_DAYS}


@router.post("/images/{image_id}/trash", response_class=HTMLResponse, include_in_schema=False)
def move_to_trash(
    request: Request, image_id: int, session: SessionDep, back: Annotated[str, Form()] = ""
) -> Response:
    image = catalog.get_image(session, image_id)
    trash.move_to_trash(session, images=[image])
    # The grid refreshes on trashChanged and says it once, with an undo beside the sentence.
    notice = f"{image.filename} moved to the trash."
    return _said(_back(request, back, image.dataset_id), notice, _undo_value(restore=[image_id]))


@router.post(
    "/datasets/{dataset_id}/trash/restore", response_class=HTMLResponse, include_in_schema=False
)
def restore_from_trash_form(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    image_id: Annotated[list[int], Form()] = [],  # noqa: B006 (FastAPI copies defaults)
    back: Annotated[str, Form()] = "",
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    trash.restore(session, dataset=dataset, image_ids=image_id)
    return _back(request, back, dataset_id)


@router.post(
    "/datasets/{dataset_id}/trash/empty", response_class=HTMLResponse, include_in_schema=False
)
def empty_trash_form(
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


E = TypeVar("E", bound=StrEnum)


def _parse(enum: type[E], value: str, what: str) -> E | None:
    if not value:
        return None
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        raise Invalid(f"Unknown {what} filter {value!r}; use one of {allowed}.") from None
