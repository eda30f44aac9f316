"""The JSON API (documented at /docs), used by scripts, the upload widget and the tests."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from app import datasets as ds
from app.errors import NotFound
from app.images import catalog, trash
from app.images.decode import MIME_TYPES, render_thumbnail
from app.images.trash import TRASH_DAYS
from app.models import CaptionStatus, Flag
from app.web.deps import SessionDep, SettingsDep, StoreDep
from app.web.uploads import UPLOAD_BODY, import_uploads, received_files

router = APIRouter(prefix="/api", tags=["api"])


class DatasetIn(BaseModel):
    name: str = Field(max_length=200)
    trigger_word: str = Field(default="", max_length=200)
    resolution: int = 1024
    notes: str = Field(default="", max_length=100_000)


class DatasetPatch(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    trigger_word: str | None = Field(default=None, max_length=200)
    resolution: int | None = None
    notes: str | None = Field(default=None, max_length=100_000)
    draft_instructions: str | None = Field(
        default=None, max_length=4000, description="Extra instructions for the drafting model"
    )


class DatasetOut(BaseModel):
    id: int
    name: str
    slug: str
    trigger_word: str
    resolution: int
    notes: str
    draft_instructions: str
    image_count: int
    status_counts: dict[str, int]
    created_at: datetime
    updated_at: datetime


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


class ResolveIn(BaseModel):
    keep: Literal["a", "b", "both"]


DATASET_FIELDS = {
    "id",
    "name",
    "slug",
    "trigger_word",
    "resolution",
    "notes",
    "draft_instructions",
    "created_at",
    "updated_at",
}


def _dataset_out(summary: ds.DatasetSummary) -> DatasetOut:
    return DatasetOut(
        **summary.dataset.model_dump(include=DATASET_FIELDS),
        image_count=summary.image_count,
        status_counts=summary.status_counts,
    )


@router.get("/datasets", response_model=list[DatasetOut])
def list_datasets(session: SessionDep) -> list[DatasetOut]:
    return [_dataset_out(s) for s in ds.list_summaries(session)]


@router.post("/datasets", response_model=DatasetOut, status_code=201)
def create_dataset(body: DatasetIn, session: SessionDep) -> DatasetOut:
    dataset = ds.create_dataset(session, **body.model_dump())
    return _dataset_out(ds.summarize(session, dataset))


@router.get("/datasets/{dataset_id}", response_model=DatasetOut)
def get_dataset(dataset_id: int, session: SessionDep) -> DatasetOut:
    return _dataset_out(ds.summarize(session, ds.get_dataset(session, dataset_id)))


@router.patch("/datasets/{dataset_id}", response_model=DatasetOut)
def update_dataset(dataset_id: int, body: DatasetPatch, session: SessionDep) -> DatasetOut:
    dataset = ds.update_dataset(
        session, ds.get_dataset(session, dataset_id), **body.model_dump(exclude_unset=True)
    )
    return _dataset_out(ds.summarize(session, dataset))


@router.delete("/datasets/{dataset_id}", status_code=204)
def delete_dataset(dataset_id: int, session: SessionDep, store: StoreDep) -> Response:
    for sha in ds.delete_dataset(session, ds.get_dataset(session, dataset_id)):
        store.remove(sha)
    return Response(status_code=204)


@router.get("/datasets/{dataset_id}/images", response_model=list[ImageOut])
def list_images(
    dataset_id: int,
    session: SessionDep,
    response: Response,
    status: CaptionStatus | None = None,
    flag: Flag | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> list[dict]:
    """The dataset's images in order; the total matching is in the X-Total-Count header."""
    dataset = ds.get_dataset(session, dataset_id)
    rows, total = catalog.list_images(
        session, dataset=dataset, status=status, flag=flag, offset=offset, limit=limit
    )
    response.headers["X-Total-Count"] = str(total)
    return [r.as_dict() for r in rows]


@router.post("/datasets/{dataset_id}/images", openapi_extra=UPLOAD_BODY)
def upload_images(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
) -> dict:
    """Imports the uploaded files; says per file what was imported, duplicate or refused.

    413 when a file passes ATELIER_MAX_FILE_MB or the request ATELIER_MAX_UPLOAD_MB: reading
    stops there and nothing of the request is imported."""
    dataset = ds.get_dataset(session, dataset_id)
    with received_files(request, settings=settings) as files:
        report = import_uploads(session, settings=settings, dataset=dataset, files=files)
    return report.as_dict()


@router.get("/images/{image_id}", response_model=ImageOut)
def get_image(image_id: int, session: SessionDep) -> dict:
    image = catalog.get_image(session, image_id)
    dataset = ds.get_dataset(session, image.dataset_id)
    return catalog.ImageRow(image, catalog.image_flags(session, image, dataset)).as_dict()


@router.get("/images/{image_id}/file", response_class=FileResponse)
def image_file(image_id: int, session: SessionDep, store: StoreDep) -> FileResponse:
    """The original bytes as imported."""
    image = catalog.get_image(session, image_id)
    path = store.blob_path(image.sha256)
    if not path.is_file():
        raise NotFound(f"The stored file of image {image_id} is missing from the data dir.")
    return FileResponse(
        path,
        media_type=MIME_TYPES.get(image.format, "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=31536000, immutable"},
    )


@router.get("/images/{image_id}/thumb", response_class=FileResponse)
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


@router.delete("/images/{image_id}", status_code=204)
def delete_image(image_id: int, session: SessionDep) -> Response:
    """Moves the image, caption and history with it, to its dataset's trash (restorable)."""
    trash.move_to_trash(session, images=[catalog.get_image(session, image_id)])
    return Response(status_code=204)


class TrashOut(BaseModel):
    id: int
    filename: str
    trashed_at: datetime
    expires_at: datetime = Field(description=f"Deleted for good then ({TRASH_DAYS} days on)")


class TrashIn(BaseModel):
    image_ids: list[int] = Field(min_length=1, max_length=10_000)


class EmptyTrashIn(BaseModel):
    image_ids: list[int] | None = Field(
        default=None, max_length=10_000, description="Only these; leave out to empty it all"
    )


@router.get("/datasets/{dataset_id}/trash", response_model=list[TrashOut])
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


@router.post("/datasets/{dataset_id}/trash/restore")
def restore_from_trash(dataset_id: int, body: TrashIn, session: SessionDep) -> dict:
    """Puts trashed images back where they were in the dataset, captions and all."""
    dataset = ds.get_dataset(session, dataset_id)
    return {"restored": trash.restore(session, dataset=dataset, image_ids=body.image_ids)}


@router.post("/datasets/{dataset_id}/trash/empty")
def empty_trash(
    dataset_id: int, session: SessionDep, store: StoreDep, body: EmptyTrashIn | None = None
) -> dict:
    """Deletes trashed images for good (all, or those named): this cannot be undone."""
    dataset = ds.get_dataset(session, dataset_id)
    ids = body.image_ids if body is not None else None
    return {"deleted": trash.empty(session, store=store, dataset=dataset, image_ids=ids)}


@router.get("/datasets/{dataset_id}/near-duplicates")
def near_duplicates(dataset_id: int, session: SessionDep) -> list[dict]:
    """Open near-duplicate pairs, for the user to resolve."""
    dataset = ds.get_dataset(session, dataset_id)
    return [
        {
            "id": p.id,
            "distance": p.distance,
            "image_a": {"id": a.id, "filename": a.filename},
            "image_b": {"id": b.id, "filename": b.filename},
        }
        for p, a, b in catalog.open_pairs(session, dataset=dataset)
    ]


@router.post("/near-duplicates/{pair_id}/resolve", status_code=204)
def resolve_near_duplicate(pair_id: int, body: ResolveIn, session: SessionDep) -> Response:
    """keep 'a' or 'b' moves the other image to the trash; 'both' keeps both, closing the pair."""
    catalog.resolve_pair(session, pair_id=pair_id, keep=body.keep)
    return Response(status_code=204)
