"""Datasets: the home page listing them, creating one, its settings, deleting it; /api/datasets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from app import datasets as ds
from app.errors import UserError
from app.images import catalog
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


# The API.


@router.get("/api/datasets", tags=["api"], response_model=list[DatasetOut])
def list_datasets(session: SessionDep) -> list[DatasetOut]:
    return [_dataset_out(s) for s in ds.list_summaries(session)]


@router.post("/api/datasets", tags=["api"], response_model=DatasetOut, status_code=201)
def create_dataset(body: DatasetIn, session: SessionDep) -> DatasetOut:
    dataset = ds.create_dataset(session, **body.model_dump())
    return _dataset_out(ds.summarize(session, dataset))


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
def delete_dataset(dataset_id: int, session: SessionDep, store: StoreDep) -> Response:
    for sha in ds.delete_dataset(session, ds.get_dataset(session, dataset_id)):
        store.remove(sha)
    return Response(status_code=204)


# The pages.


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request, session: SessionDep) -> Response:
    return render(
        request, "index.html", {"summaries": ds.list_summaries(session), "error": None, "form": {}}
    )


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
            {"summaries": ds.list_summaries(session), "error": e.message, "form": form},
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
        request, "dataset_delete.html", {"dataset": dataset, "count": counts["all"], "error": None}
    )


@router.post("/datasets/{dataset_id}/delete", response_class=HTMLResponse, include_in_schema=False)
def delete_dataset_form(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    store: StoreDep,
    confirm_name: Annotated[str, Form()] = "",
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    if confirm_name.strip() != dataset.name:
        counts = catalog.counts(session, dataset=dataset)
        return render(
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
    return see_other("/")
