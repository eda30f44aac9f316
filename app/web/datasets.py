"""Datasets: the home page listing them, creating one, its settings, deleting it; /api/datasets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from app import datasets as ds
from app.drafting import jobs
from app.errors import Invalid, UserError
from app.images import catalog
from app.models import Dataset
from app.web.deps import SessionDep, StoreDep
from app.web.render import render, see_other

router = APIRouter()


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
    second_reading: bool | None = Field(
        default=None,
        description="After a draft, read each text element's box again alone and flag "
        "transcriptions that differ (one more short request per text element)",
    )


class DatasetOut(BaseModel):
    id: int
    name: str
    slug: str
    trigger_word: str
    resolution: int
    notes: str
    draft_instructions: str
    second_reading: bool
    image_count: int
    status_counts: dict[str, int]
    created_at: datetime
    updated_at: datetime


class DeletedOut(BaseModel):
    id: int
    name: str
    deleted_at: datetime
    gone_for_good_at: datetime = Field(
        description=f"Deleted for good then ({ds.DELETED_DAYS} days on), unless restored"
    )


DATASET_FIELDS = {
    "id",
    "name",
    "slug",
    "trigger_word",
    "resolution",
    "notes",
    "draft_instructions",
    "second_reading",
    "created_at",
    "updated_at",
}


def _dataset_out(summary: ds.DatasetSummary) -> DatasetOut:
    return DatasetOut(
        **summary.dataset.model_dump(include=DATASET_FIELDS),
        image_count=summary.image_count,
        status_counts=summary.status_counts,
    )


# The API.


@router.get("/api/datasets", tags=["api"], response_model=list[DatasetOut])
def list_datasets(session: SessionDep) -> list[DatasetOut]:
    return [_dataset_out(s) for s in ds.list_summaries(session)]


@router.post("/api/datasets", tags=["api"], response_model=DatasetOut, status_code=201)
def create_dataset(body: DatasetIn, session: SessionDep) -> DatasetOut:
    dataset = ds.create_dataset(session, **body.model_dump())
    return _dataset_out(ds.summarize(session, dataset))


# Before /api/datasets/{dataset_id}, which would read `deleted` as an id.
@router.get("/api/datasets/deleted", tags=["api"], response_model=list[DeletedOut])
def list_deleted(session: SessionDep) -> list[DeletedOut]:
    """Deleted datasets that can still be restored, the most recently deleted first."""
    return [_deleted_out(d) for d in ds.deleted_datasets(session)]


@router.get("/api/datasets/{dataset_id}", tags=["api"], response_model=DatasetOut)
def get_dataset(dataset_id: int, session: SessionDep) -> DatasetOut:
    return _dataset_out(ds.summarize(session, ds.get_dataset(session, dataset_id)))


@router.patch("/api/datasets/{dataset_id}", tags=["api"], response_model=DatasetOut)
def update_dataset(dataset_id: int, body: DatasetPatch, session: SessionDep) -> DatasetOut:
    dataset = ds.update_dataset(
        session, ds.get_dataset(session, dataset_id), **body.model_dump(exclude_unset=True)
    )
    return _dataset_out(ds.summarize(session, dataset))


@router.delete("/api/datasets/{dataset_id}", tags=["api"], status_code=204)
def delete_dataset(
    dataset_id: int,
    session: SessionDep,
    store: StoreDep,
    for_good: Annotated[
        bool, Query(description="Delete it for good now (a deleted one or a live one)")
    ] = False,
) -> Response:
    """Moves the dataset away, restorable for 30 days; `for_good=true` deletes it (a dataset
    already deleted, or a live one) with its images and captions: this cannot be undone."""
    if not for_good:
        _delete(session, ds.get_dataset(session, dataset_id))
        return Response(status_code=204)
    dataset = _deleted_or_live(session, dataset_id)
    if dataset.deleted_at is None:
        _delete(session, dataset)
    for sha in ds.delete_for_good(session, dataset):
        store.remove(sha)
    return Response(status_code=204)


@router.post("/api/datasets/{dataset_id}/restore", tags=["api"], response_model=DatasetOut)
def restore_dataset(dataset_id: int, session: SessionDep) -> DatasetOut:
    """Brings a deleted dataset back with its images, captions and history."""
    dataset = ds.restore_dataset(session, dataset_id)
    return _dataset_out(ds.summarize(session, dataset))


def _deleted_out(dataset: Dataset) -> DeletedOut:
    assert dataset.id is not None and dataset.deleted_at is not None
    return DeletedOut(
        id=dataset.id,
        name=dataset.name,
        deleted_at=dataset.deleted_at,
        gone_for_good_at=ds.gone_for_good_at(dataset),
    )


def _delete(session: Session, dataset: Dataset) -> None:
    """Moves the dataset away and cancels its drafting jobs."""
    ds.delete_dataset(session, dataset)
    jobs.cancel_dataset_jobs(session, dataset=dataset)


def _deleted_or_live(session: Session, dataset_id: int) -> Dataset:
    """A deleted dataset by id, or else the live one (NotFound when neither)."""
    for dataset in ds.deleted_datasets(session):
        if dataset.id == dataset_id:
            return dataset
    return ds.get_dataset(session, dataset_id)


def _deleted(session: Session, dataset_id: int) -> Dataset:
    dataset = _deleted_or_live(session, dataset_id)
    if dataset.deleted_at is None:
        raise Invalid(f"Delete the dataset {dataset.name!r} first: it can be restored then.")
    return dataset


# The pages.

FAVICON = Path(__file__).resolve().parent.parent.parent / "static" / "favicon.ico"


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """Browsers ask every page's server for it at this path."""
    return FileResponse(
        FAVICON, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"}
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request, session: SessionDep) -> Response:
    return render(request, "index.html", _index_context(session, error=None, form={}))


def _index_context(session: Session, *, error: str | None, form: dict) -> dict:
    deleted = [(d, ds.gone_for_good_at(d)) for d in ds.deleted_datasets(session)]
    return {
        "summaries": ds.list_summaries(session),
        "deleted": deleted,
        "deleted_days": ds.DELETED_DAYS,
        "error": error,
        "form": form,
    }


@router.post("/datasets", response_class=HTMLResponse, include_in_schema=False)
def create_dataset_form(
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
        return render(
            request,
            "index.html",
            _index_context(session, error=e.message, form=form),
            status_code=e.status_code,
        )
    return see_other(f"/datasets/{dataset.id}")


@router.get("/datasets/{dataset_id}/settings", response_class=HTMLResponse, include_in_schema=False)
def dataset_settings(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return render(
        request, "dataset_settings.html", {"dataset": dataset, "error": None, "saved": False}
    )


@router.post(
    "/datasets/{dataset_id}/settings", response_class=HTMLResponse, include_in_schema=False
)
def save_dataset_settings(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    name: Annotated[str, Form()],
    trigger_word: Annotated[str, Form()] = "",
    resolution: Annotated[int, Form()] = 1024,
    notes: Annotated[str, Form()] = "",
    draft_instructions: Annotated[str, Form(max_length=4000)] = "",
    second_reading: Annotated[bool, Form()] = False,
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
            second_reading=second_reading,
        )
    except UserError as e:
        session.rollback()
        session.refresh(dataset)
        return render(
            request,
            "dataset_settings.html",
            {"dataset": dataset, "error": e.message, "saved": False},
            status_code=e.status_code,
        )
    return render(
        request, "dataset_settings.html", {"dataset": dataset, "error": None, "saved": True}
    )


@router.get("/datasets/{dataset_id}/delete", response_class=HTMLResponse, include_in_schema=False)
def confirm_delete(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    counts = catalog.counts(session, dataset=dataset)
    return render(
        request,
        "dataset_delete.html",
        {"dataset": dataset, "count": counts["all"], "deleted_days": ds.DELETED_DAYS},
    )


@router.post("/datasets/{dataset_id}/delete", response_class=HTMLResponse, include_in_schema=False)
def delete_dataset_form(dataset_id: int, session: SessionDep) -> Response:
    """Moves the dataset away; the home page lists it for DELETED_DAYS, to restore."""
    _delete(session, ds.get_dataset(session, dataset_id))
    return see_other("/#deleted")


@router.post("/datasets/{dataset_id}/restore", response_class=HTMLResponse, include_in_schema=False)
def restore_dataset_form(dataset_id: int, session: SessionDep) -> Response:
    dataset = ds.restore_dataset(session, dataset_id)
    return see_other(f"/datasets/{dataset.id}")


@router.get(
    "/datasets/{dataset_id}/delete-for-good", response_class=HTMLResponse, include_in_schema=False
)
def confirm_delete_for_good(request: Request, dataset_id: int, session: SessionDep) -> Response:
    dataset = _deleted(session, dataset_id)
    return render(request, "dataset_delete_for_good.html", {"dataset": dataset, "error": None})


@router.post(
    "/datasets/{dataset_id}/delete-for-good", response_class=HTMLResponse, include_in_schema=False
)
def delete_for_good_form(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    store: StoreDep,
    confirm_name: Annotated[str, Form()] = "",
) -> Response:
    dataset = _deleted(session, dataset_id)
    if confirm_name.strip() != dataset.name:
        return render(
            request,
            "dataset_delete_for_good.html",
            {"dataset": dataset, "error": "Type the dataset's name exactly to confirm."},
            status_code=422,
        )
    for sha in ds.delete_for_good(session, dataset):
        store.remove(sha)
    return see_other("/")
