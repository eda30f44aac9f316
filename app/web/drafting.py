"""Drafting from the browser and the API: start a job, follow it, cancel it, re-draft one."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from app import datasets as ds
from app.config import Settings
from app.drafting import available, choice, jobs
from app.engines.interface import DraftError, engine_name
from app.engines.openai_engine import list_models, split_urls
from app.errors import Invalid
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
    *,
    trial_of: choice.Chosen | None = None,
) -> DraftJob:
    """Queues the job with the engine the drafting card chose (or the settings'); with
    `trial_of`, a test of that engine whose draft is shown, not saved."""
    chosen = trial_of or choice.current(session, settings)
    engine = engine_name(body.engine or chosen.engine)
    job = jobs.create_job(
        session,
        dataset=dataset,
        engine=engine,
        model=body.model or (chosen.model if engine == chosen.engine else settings.draft_model),
        batch_size=body.batch_size or settings.draft_batch,
        scope=body.scope,
        image_ids=body.image_ids,
        overwrite_edited=body.overwrite_edited,
        base_url=chosen.base_url if engine == "openai" and chosen.from_page else None,
        trial=trial_of is not None,
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
        return [{"url": url} for url in split_urls(job.base_url or settings.draft_base_url)]
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


def engine_view(session: Session, settings: Settings) -> dict:
    """The engine drafting uses, its servers and the models they list (the openai engine)."""
    chosen = choice.current(session, settings)
    view: dict = {"engine": chosen.engine, "model": chosen.model, "from_page": chosen.from_page}
    if warning := available.cpu_warning(settings, chosen.engine):
        view["cpu_warning"] = warning
    if chosen.engine != "openai":
        view["device"] = settings.draft_device or "cuda if any, else cpu"
        return view
    try:
        urls = split_urls(chosen.base_url)
    except DraftError as e:
        view["error"] = e.message
        return view
    view["servers"] = [
        {"url": url, "models": models, "error": error}
        for url, models, error in list_models(urls, api_key=settings.draft_api_key)
    ]
    view["models"] = sorted({m for s in view["servers"] for m in s["models"]})
    view["convention"] = settings.draft_box_convention or available.guess_convention(chosen.model)
    return view


@router.get("/api/draft/engine", tags=["drafting"])
def api_engine(session: SessionDep, settings: SettingsDep) -> dict:
    """The drafting engine and, for openai, each server with the models its /v1/models lists."""
    return engine_view(session, settings)


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


class ChoiceIn(BaseModel):
    engine: str = Field(description="local (a model on this machine) or openai (a server)")
    model: str = Field(
        max_length=500,
        description="A Hugging Face id in the cache, a folder, or the model the server lists",
    )
    base_url: str | None = Field(
        default=None,
        max_length=2000,
        description="The server's OpenAI-compatible address (http://127.0.0.1:11434/v1); "
        "several separated by commas",
    )


class TrialIn(BaseModel):
    engine: str | None = Field(default=None, description="default: the engine chosen now")
    model: str | None = Field(default=None, max_length=500)
    base_url: str | None = Field(default=None, max_length=2000)
    image_id: int | None = Field(default=None, description="default: the dataset's first image")


def _choice_out(session: Session, settings: Settings) -> dict:
    chosen = choice.current(session, settings)
    on_disk = _on_disk(session, chosen)
    ready = choice.check(chosen, settings=settings, on_disk=on_disk, api_key=settings.draft_api_key)
    return chosen.as_dict() | {"ready": ready.ready, "sentence": ready.sentence}


def _on_disk(session: Session, chosen: choice.Chosen) -> list[available.ModelOnDisk]:
    also = (chosen.model,) if chosen.engine == "local" else ()
    return available.models_on_disk(session, gpu_gb=local_gpu_gb(), also=also)


@router.get("/api/draft/choice", tags=["drafting"])
def api_choice(session: SessionDep, settings: SettingsDep) -> dict:
    """The engine, model and server drafting uses now (`from_page`: chosen on the drafting
    card, else the ATELIER_DRAFT_* settings), and whether it can draft (`ready`, `sentence`)."""
    return _choice_out(session, settings)


@router.put("/api/draft/choice", tags=["drafting"])
def api_choose(body: ChoiceIn, session: SessionDep, settings: SettingsDep) -> dict:
    """Chooses the drafting engine for the whole app, at once (no restart); 422 with a
    sentence for a folder that holds no model or a server address that is not one."""
    choice.choose(
        session, settings=settings, engine=body.engine, model=body.model, base_url=body.base_url
    )
    return _choice_out(session, settings)


@router.delete("/api/draft/choice", tags=["drafting"])
def api_unchoose(session: SessionDep, settings: SettingsDep) -> dict:
    """Forgets the card's choice: the ATELIER_DRAFT_* settings decide again."""
    choice.reset(session)
    return _choice_out(session, settings)


def _trial(
    request: Request,
    session: Session,
    settings: Settings,
    dataset: Dataset,
    *,
    engine: str,
    model: str,
    base_url: str | None,
    image_id: int | None = None,
) -> DraftJob:
    """A test of an engine on one image of the dataset (its first, unless named)."""
    kind, name, url = choice.validate(
        settings=settings, engine=engine, model=model, base_url=base_url
    )
    if image_id is None:
        first = catalog.list_images(session, dataset=dataset, limit=1)[0]
        if not first:
            raise Invalid("Add an image to this dataset first: the test drafts one of them.")
        image_id = first[0].image.id
    tried = choice.Chosen(kind, name, url or settings.draft_base_url, from_page=True)
    body = DraftIn(scope="selection", image_ids=[image_id])  # type: ignore[list-item]
    return start(request, session, settings, dataset, body, trial_of=tried)


def trial_view(session: Session, settings: Settings, job: DraftJob) -> dict:
    """A test job as the card shows it: the image, the draft or why there is none."""
    rows = jobs.items(session, job)
    item, image = rows[0] if rows else (None, None)
    draft = None
    if item is not None and item.status == ItemStatus.done and item.raw_output:
        draft = json.loads(item.raw_output)
    ahead = None
    if job.status == JobStatus.queued:
        ahead = session.exec(
            select(DraftJob.id)
            .where(col(DraftJob.status) == JobStatus.running, col(DraftJob.trial).is_(False))
            .limit(1)
        ).first()
    return {
        "job": job,
        "image": image,
        "draft": draft,
        "error": job.error or (item.error if item is not None else None),
        "raw_output": item.raw_output if item is not None and draft is None else None,
        "ahead": ahead,
        "seconds": job.drafting_seconds,
        "chosen": choice.current(session, settings),
    }


@router.post("/api/datasets/{dataset_id}/draft/test", status_code=202, tags=["drafting"])
def api_trial(
    request: Request, dataset_id: int, body: TrialIn, session: SessionDep, settings: SettingsDep
) -> dict:
    """Tests an engine (the chosen one unless given) on one image: a job whose draft is
    kept in its item, never saved as a caption. Follow it at /api/draft-jobs/{id}/test."""
    chosen = choice.current(session, settings)
    dataset = ds.get_dataset(session, dataset_id)
    job = _trial(
        request,
        session,
        settings,
        dataset,
        engine=body.engine or chosen.engine,
        model=body.model or chosen.model,
        base_url=body.base_url or (chosen.base_url if chosen.engine == "openai" else None),
        image_id=body.image_id,
    )
    return jobs.progress(job).as_dict()


@router.get("/api/draft-jobs/{job_id}/test", tags=["drafting"])
def api_trial_state(job_id: int, session: SessionDep, settings: SettingsDep) -> dict:
    """A test's state and, once done, the draft it made (or why it made none)."""
    view = trial_view(session, settings, jobs.get_job(session, job_id))
    image = view["image"]
    return jobs.progress(view["job"]).as_dict() | {
        "image_id": image.id if image is not None else None,
        "draft": view["draft"],
        "error": view["error"],
    }


def card_context(
    session: Session,
    settings: Settings,
    *,
    dataset_id: int | None,
    error: str | None = None,
    typed: dict | None = None,
    trial: DraftJob | None = None,
    notice: str | None = None,
) -> dict:
    """What the drafting card shows: the engine chosen and whether it can draft, the models
    on this machine, the one to recommend or propose, the form to choose another."""
    chosen = choice.current(session, settings)
    gpu_gb = local_gpu_gb()
    on_disk = _on_disk(session, chosen)
    view = engine_view(session, settings)
    ready = choice.check(chosen, settings=settings, on_disk=on_disk, api_key=settings.draft_api_key)
    cpu = available.cpu_warning(settings, "local") is not None  # a local model would be on the CPU
    # A server chosen on purpose is not second-guessed; the settings' or a local model is.
    best = (
        available.recommended(on_disk, on_cpu=cpu)
        if chosen.engine == "local" or not chosen.from_page
        else None
    )
    propose = None
    small_needed = cpu or available.too_large(chosen.model, on_disk, gpu_gb=gpu_gb)
    if chosen.engine == "local" and chosen.model != available.SMALL_MODEL and small_needed:
        small = available.locate(available.SMALL_MODEL, on_disk)
        propose = {
            "model": available.SMALL_MODEL,
            "on_disk": small is not None and small.complete,
            "why": "Without a GPU, a smaller model is the one to draft with."
            if cpu
            else f"{chosen.model} needs more memory than this GPU's {gpu_gb or 0:.0f} GiB.",
        }
    dataset = ds.get_dataset(session, dataset_id) if dataset_id is not None else None
    has_images = bool(dataset and catalog.list_images(session, dataset=dataset, limit=1)[1])
    typed = typed or {}
    source = typed.get("source") or (
        "server"
        if chosen.engine == "openai"
        else "folder"
        if available.is_folder_name(chosen.model)
        and not any(m.name == chosen.model and m.where == "cache" for m in on_disk)
        else "disk"
    )
    return {
        "e": view,
        "chosen": chosen,
        "ready": ready,
        "on_disk": on_disk,
        "gpu_gb": gpu_gb,
        "recommend": best if best is not None and best.name != chosen.model else None,
        "propose": propose,
        "dataset_id": dataset_id,
        "has_images": has_images,
        "error": error,
        "notice": notice,
        "source": source,
        "typed": typed,
        "trial": trial_view(session, settings, trial) if trial is not None else None,
        "hf_cache": available.hf_cache_dir(),
    }


@router.get("/draft/engine", response_class=HTMLResponse, include_in_schema=False)
def page_engine(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    dataset_id: Annotated[int | None, Query()] = None,
) -> Response:
    """The drafting card's engine part: the engine chosen and whether it can draft, the
    models on disk, the form to choose (loaded after the page: a slow server or a large
    cache does not hold it up)."""
    context = card_context(session, settings, dataset_id=dataset_id)
    return templates.TemplateResponse(request, "_draft_engine.html", context)


ChoiceSource = Literal["disk", "folder", "server", "settings"]


@router.post("/draft/engine", response_class=HTMLResponse, include_in_schema=False)
def page_choose(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    source: Annotated[ChoiceSource, Form()] = "disk",
    action: Annotated[Literal["use", "test"], Form()] = "use",
    model_disk: Annotated[str, Form(max_length=500)] = "",
    folder: Annotated[str, Form(max_length=500)] = "",
    base_url: Annotated[str, Form(max_length=2000)] = "",
    server_model: Annotated[str, Form(max_length=500)] = "",
    dataset_id: Annotated[int | None, Form()] = None,
) -> Response:
    """Chooses the engine (for the whole app, at once), or tests one on an image first."""
    typed = {
        "source": source,
        "model_disk": model_disk,
        "folder": folder,
        "base_url": base_url,
        "server_model": server_model,
    }
    engine = "openai" if source == "server" else "local"
    model = {"disk": model_disk, "folder": folder, "server": server_model}.get(source, "")
    trial = None
    notice = None
    try:
        if source == "settings":
            choice.reset(session)
            notice = "Drafting follows the settings (ATELIER_DRAFT_*) again."
            typed = {}
        elif action == "test":
            if dataset_id is None:
                raise Invalid("Test from a dataset's page: the test drafts one of its images.")
            dataset = ds.get_dataset(session, dataset_id)
            trial = _trial(
                request,
                session,
                settings,
                dataset,
                engine=engine,
                model=model,
                base_url=base_url or None,
            )
        else:
            chosen = choice.choose(
                session, settings=settings, engine=engine, model=model, base_url=base_url
            )
            notice = f"Drafting now uses {chosen.model}, for every dataset."
            typed = {}
    except Invalid as e:
        if not is_htmx(request):
            raise
        context = card_context(
            session, settings, dataset_id=dataset_id, error=e.message, typed=typed
        )
        return templates.TemplateResponse(
            request, "_draft_engine.html", context, status_code=e.status_code
        )
    if not is_htmx(request):
        return see_other(f"/datasets/{dataset_id}" if dataset_id is not None else "/")
    context = card_context(
        session, settings, dataset_id=dataset_id, typed=typed, trial=trial, notice=notice
    )
    response = templates.TemplateResponse(request, "_draft_engine.html", context)
    if notice:  # the card's summary says again whether drafting runs on the CPU
        response.headers["HX-Trigger"] = "draftEngineChanged"
    return response


@router.get("/draft-jobs/{job_id}/test", response_class=HTMLResponse, include_in_schema=False)
def page_trial(
    request: Request, job_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    """A test's state on the card, polled while it runs."""
    view = trial_view(session, settings, jobs.get_job(session, job_id))
    return templates.TemplateResponse(request, "_draft_trial.html", {"trial": view})


@router.get("/images/{image_id}/draft/check", response_class=HTMLResponse, include_in_schema=False)
def page_redraft_check(
    request: Request, image_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    """Before "Replace this caption?": whether the engine can draft at all. If not, why and
    where to choose another; if so, the question (or, with no caption to replace, the draft)."""
    image = catalog.get_image(session, image_id)
    chosen = choice.current(session, settings)
    ready = choice.check(
        chosen,
        settings=settings,
        on_disk=_on_disk(session, chosen),
        api_key=settings.draft_api_key,
    )
    return templates.TemplateResponse(
        request,
        "_redraft.html",
        {"job": None, "image": image, "ready": ready, "chosen": chosen},
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
