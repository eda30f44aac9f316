"""Drafting from the browser and the API: start a job, follow it, cancel it, re-draft one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from app import datasets as ds
from app.config import Settings
from app.drafting import available, jobs
from app.engines.interface import DraftError, engine_name
from app.engines.openai_engine import list_models, split_urls
from app.gpu import local_gpu_gb
from app.images import catalog
from app.models import Dataset, DraftJob, ItemStatus, JobStatus
from app.web.deps import SessionDep, SettingsDep
from app.web.render import is_htmx, render, see_other
from app.web.templating import templates

router = APIRouter()


class DraftIn(BaseModel):
    scope: jobs.Scope = Field(
        default="uncaptioned",
        description="uncaptioned images, all images, or the `image_ids` given",
    )
    image_ids: list[int] | None = None
    overwrite_edited: bool = Field(
        default=False,
        description="Also replace captions written or approved by a person (as new "
        "revisions: undo brings them back)",
    )
    engine: str | None = Field(default=None, description="local or openai (default: settings)")
    model: str | None = Field(default=None, max_length=500)
    batch_size: int | None = Field(default=None, ge=0, le=256)  # 0: chosen by the engine


def start(
    request: Request,
    session: Session,
    settings: Settings,
    dataset: Dataset,
    body: DraftIn,
) -> DraftJob:
    engine = engine_name(body.engine or settings.draft_engine)
    job = jobs.create_job(
        session,
        dataset=dataset,
        engine=engine,
        model=body.model or settings.draft_model,
        batch_size=body.batch_size or settings.draft_batch,
        scope=body.scope,
        image_ids=body.image_ids,
        overwrite_edited=body.overwrite_edited,
    )
    request.app.state.draft_worker.wake()
    return job


def servers_of(settings: Settings, job: DraftJob) -> list[dict]:
    """The servers an openai job drafts on, with each one's progress once it has some."""
    if job.engine != "openai":
        return []
    stats = jobs.read_server_stats(job)
    if stats:
        return stats
    try:
        return [{"url": url} for url in split_urls(settings.draft_base_url)]
    except DraftError:
        return []


def _job_out(session: Session, settings: Settings, job: DraftJob) -> dict:
    out = jobs.progress(job).as_dict()
    out["servers"] = servers_of(settings, job)
    out["problems"] = problems_of(session, job)
    return out


# The JSON API


@router.post("/api/datasets/{dataset_id}/draft", status_code=202, tags=["drafting"])
def api_start(
    request: Request,
    dataset_id: int,
    body: DraftIn,
    session: SessionDep,
    settings: SettingsDep,
) -> dict:
    """Queues a drafting job; the worker runs it. Follow it at /api/draft-jobs/{id}."""
    job = start(request, session, settings, ds.get_dataset(session, dataset_id), body)
    return _job_out(session, settings, job)


@router.get("/api/draft-jobs/{job_id}", tags=["drafting"])
def api_job(job_id: int, session: SessionDep, settings: SettingsDep) -> dict:
    """Progress (images done, images/s, ETA, and per server for the openai engine) and every
    image that failed or was kept."""
    return _job_out(session, settings, jobs.get_job(session, job_id))


@router.post("/api/draft-jobs/{job_id}/cancel", tags=["drafting"])
def api_cancel(job_id: int, session: SessionDep, settings: SettingsDep) -> dict:
    """Stops the job after the batch in progress; drafts already made stay."""
    job = jobs.cancel_job(session, jobs.get_job(session, job_id))
    return _job_out(session, settings, job)


def engine_view(settings: Settings) -> dict:
    """The engine drafting uses, its servers and the models they list (the openai engine)."""
    view: dict = {"engine": settings.draft_engine, "model": settings.draft_model}
    if warning := available.cpu_warning(settings):
        view["cpu_warning"] = warning
    if settings.draft_engine != "openai":
        view["device"] = settings.draft_device or "cuda if any, else cpu"
        return view
    try:
        urls = split_urls(settings.draft_base_url)
    except DraftError as e:
        view["error"] = e.message
        return view
    view["servers"] = [
        {"url": url, "models": models, "error": error}
        for url, models, error in list_models(urls, api_key=settings.draft_api_key)
    ]
    view["models"] = sorted({m for s in view["servers"] for m in s["models"]})
    return view


@router.get("/api/draft/engine", tags=["drafting"])
def api_engine(settings: SettingsDep) -> dict:
    """The drafting engine and, for openai, each server with the models its /v1/models lists."""
    return engine_view(settings)


@router.get("/api/draft/models", tags=["drafting"])
def api_models(session: SessionDep) -> list[dict]:
    """Models the local engine can load without a download (the Hugging Face cache, folders
    past jobs used), each with its size in GiB and whether it fits this GPU (null: unknown)."""
    return [m.as_dict() for m in available.models_on_disk(session, gpu_gb=local_gpu_gb())]


@router.get("/api/datasets/{dataset_id}/draft-jobs", tags=["drafting"])
def api_jobs(dataset_id: int, session: SessionDep) -> list[dict]:
    dataset = ds.get_dataset(session, dataset_id)
    return [jobs.progress(j).as_dict() for j in jobs.latest_jobs(session, dataset=dataset)]


# The newest job a dataset page shows when none runs: one that failed, until dismissed.
DISMISSED_COOKIE = "atelier_dismissed_job_{}"
HISTORY_JOBS = 50


def shown_job(request: Request, session: Session, dataset: Dataset) -> DraftJob | None:
    """The running job, else the newest if it failed (or failed images) and is not dismissed."""
    active = jobs.active_job(session, dataset=dataset)
    if active is not None:
        return active
    latest = jobs.latest_jobs(session, dataset=dataset, limit=1)
    if not latest or not (latest[0].status == JobStatus.failed or latest[0].failed):
        return None
    dismissed = request.cookies.get(DISMISSED_COOKIE.format(dataset.id), "")
    return None if dismissed == str(latest[0].id) else latest[0]


def problems_of(session: Session, job: DraftJob) -> list[dict]:
    return [
        {
            "image_id": item.image_id,
            "filename": image.filename,
            "error": item.error,
            "status": item.status.value,
            "raw_output": item.raw_output,
        }
        for item, image in jobs.items(session, job)
        if item.status in (ItemStatus.failed, ItemStatus.skipped)
    ]


# Pages


def _job_partial(
    request: Request, session: Session, settings: Settings, job: DraftJob, status_code: int = 200
) -> Response:
    out = _job_out(session, settings, job)
    response = templates.TemplateResponse(
        request,
        "_draft_job.html",
        {
            "job": job,
            "p": jobs.progress(job),
            "problems": out["problems"],
            "servers": out["servers"],
        },
        status_code=status_code,
    )
    if job.status not in (JobStatus.queued, JobStatus.running):
        response.headers["HX-Trigger"] = "captionsDrafted"
    return response


@router.post("/datasets/{dataset_id}/draft", response_class=HTMLResponse, include_in_schema=False)
def page_start(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    scope: Annotated[jobs.Scope, Form()] = "uncaptioned",
    overwrite_edited: Annotated[bool, Form()] = False,
    engine: Annotated[str, Form()] = "",
    model: Annotated[str, Form(max_length=500)] = "",
    batch_size: Annotated[int | None, Form(ge=0, le=256)] = None,
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    body = DraftIn(
        scope=scope,
        overwrite_edited=overwrite_edited,
        engine=engine or None,
        model=model.strip() or None,
        batch_size=batch_size,
    )
    job = start(request, session, settings, dataset, body)
    if not is_htmx(request):
        return see_other(f"/datasets/{dataset_id}")
    return _job_partial(request, session, settings, job)


@router.get("/draft-jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def page_job(request: Request, job_id: int, session: SessionDep, settings: SettingsDep) -> Response:
    return _job_partial(request, session, settings, jobs.get_job(session, job_id))


@router.post("/draft-jobs/{job_id}/cancel", response_class=HTMLResponse, include_in_schema=False)
def page_cancel(
    request: Request, job_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    job = jobs.cancel_job(session, jobs.get_job(session, job_id))
    if not is_htmx(request):
        return see_other(f"/datasets/{job.dataset_id}")
    return _job_partial(request, session, settings, job)


@router.post("/draft-jobs/{job_id}/dismiss", response_class=HTMLResponse, include_in_schema=False)
def page_dismiss(request: Request, job_id: int, session: SessionDep) -> Response:
    """Hides a finished job's report from its dataset page (the history keeps it)."""
    job = jobs.get_job(session, job_id)
    response: Response = (
        templates.TemplateResponse(request, "_draft_job.html", {"job": None})
        if is_htmx(request)
        else see_other(f"/datasets/{job.dataset_id}")
    )
    response.set_cookie(
        DISMISSED_COOKIE.format(job.dataset_id), str(job.id), httponly=True, samesite="strict"
    )
    return response


@router.get(
    "/datasets/{dataset_id}/draft-jobs", response_class=HTMLResponse, include_in_schema=False
)
def page_history(request: Request, dataset_id: int, session: SessionDep) -> Response:
    """Every drafting job of the dataset, newest first, with the images each did not draft."""
    dataset = ds.get_dataset(session, dataset_id)
    rows = [
        (job, jobs.progress(job), problems_of(session, job))
        for job in jobs.latest_jobs(session, dataset=dataset, limit=HISTORY_JOBS)
    ]
    return render(request, "dataset_draft_jobs.html", {"dataset": dataset, "rows": rows})


@router.get("/draft/engine", response_class=HTMLResponse, include_in_schema=False)
def page_engine(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The drafting card's engine line and the models to pick from: a server's, or those on
    disk (loaded after the page, so a slow server or a large cache does not hold it up)."""
    view = engine_view(settings)
    on_disk = []
    if settings.draft_engine == "local":
        on_disk = available.models_on_disk(session, gpu_gb=local_gpu_gb())
    return templates.TemplateResponse(
        request, "_draft_engine.html", {"e": view, "on_disk": on_disk, "gpu_gb": local_gpu_gb()}
    )


@router.post("/images/{image_id}/draft", response_class=HTMLResponse, include_in_schema=False)
def page_redraft(
    request: Request, image_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    """Re-drafts this one image, replacing its caption as a new revision (undo brings it back)."""
    image = catalog.get_image(session, image_id)
    dataset = ds.get_dataset(session, image.dataset_id)
    body = DraftIn(scope="selection", image_ids=[image_id], overwrite_edited=True)
    job = start(request, session, settings, dataset, body)
    if not is_htmx(request):
        return see_other(f"/images/{image_id}")
    return templates.TemplateResponse(request, "_redraft.html", {"job": job, "image": image})


@router.get("/draft-jobs/{job_id}/redraft", response_class=HTMLResponse, include_in_schema=False)
def page_redraft_state(
    request: Request, job_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    job = jobs.get_job(session, job_id)
    item_rows = jobs.items(session, job)
    image = item_rows[0][1] if item_rows else None
    problems = _job_out(session, settings, job)["problems"]
    return templates.TemplateResponse(
        request, "_redraft.html", {"job": job, "image": image, "problems": problems}
    )
