"""Training from the browser and the API: start, follow, stop; the board; the pick."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from app import datasets as ds
from app.errors import Invalid
from app.export import profiles
from app.export.writer import requested_out_dir
from app.models import Dataset, TrainJob
from app.training import board as boards
from app.training import checkout as checkouts
from app.training import jobs
from app.training import pick as picking
from app.web.deps import SessionDep, SettingsDep, StoreDep
from app.web.templating import templates

router = APIRouter()


class TrainIn(BaseModel):
    profile: str = profiles.DEFAULT_PROFILE
    steps: int | None = Field(default=None, ge=1, le=1_000_000)
    save_every: int | None = Field(default=None, ge=1, le=1_000_000)
    aitk_dir: str | None = Field(default=None, max_length=4096, description="AI-Toolkit checkout")
    python: str | None = Field(default=None, max_length=4096, description="Its venv's Python")
    force: bool = False


class PickIn(BaseModel):
    step: int = Field(ge=0)
    to_dir: str = Field(max_length=4096, description="Folder to copy the LoRA into")
    dataset_id: int | None = None


def train_defaults(request: Request, folder: Any = None) -> dict[str, Any]:
    """What the Train form is filled with: the checkout (this export's, the last, the setting)."""
    settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        last = jobs.latest_checkout(session)
    target = Path(str(folder)) if folder else None
    if target is not None and checkouts.is_checkout(target):
        chosen: str | None = str(target)
    else:
        chosen = str(settings.aitk_dir) if settings.aitk_dir else last
    return {
        "checkout": chosen or "",
        "python": str(settings.aitk_python) if settings.aitk_python else "",
        "note": checkouts.checkout_note(target) if target else None,
        "profiles": profiles.PROFILES,
        "profile": profiles.DEFAULT_PROFILE,
        # Exposed on a network, the program to run is the owner's setting, shown, not asked.
        "fixed": settings.is_exposed,
    }


templates.env.globals["train_defaults"] = train_defaults


def _job_dict(job: TrainJob) -> dict[str, Any]:
    p = jobs.progress(job)
    return {
        "id": job.id,
        "dataset_id": job.dataset_id,
        "status": job.status.value,
        "profile": job.profile,
        "checkout": job.checkout,
        "config": job.config_path,
        "run_dir": job.run_dir,
        "log": job.log_path,
        "pid": job.pid,
        "error": job.error,
        "step": p.step,
        "total": p.total,
        "steps_per_s": p.rate,
        "eta_s": p.eta_s,
        "loss": p.loss,
        "gpu_memory": p.gpu,
        "samples": p.samples,
        "saved_steps": p.saved_steps,
    }


def _start(
    session: Session, settings: Any, store: Any, dataset: Dataset, body: TrainIn
) -> TrainJob:
    folder, python = checkouts.from_request(
        settings=settings, folder=body.aitk_dir, python=body.python
    )
    return jobs.start_training(
        session,
        settings=settings,
        store=store,
        dataset=dataset,
        profile=body.profile,
        steps=body.steps,
        save_every=body.save_every,
        checkout_dir=folder,
        python=python,
        force=body.force,
    )


def _fresh(session: Session, settings: Any, job_id: int) -> TrainJob:
    return jobs.refresh(session, settings=settings, job=jobs.get_job(session, job_id))


# --- API ---------------------------------------------------------------------------------


@router.post("/api/datasets/{dataset_id}/train", tags=["training"], status_code=201)
def api_train(
    dataset_id: int, body: TrainIn, session: SessionDep, settings: SettingsDep, store: StoreDep
) -> dict:
    """Exports into the AI-Toolkit checkout and starts `python run.py config/<slug>.yaml`."""
    return _job_dict(_start(session, settings, store, ds.get_dataset(session, dataset_id), body))


@router.get("/api/training/jobs", tags=["training"])
def api_jobs(session: SessionDep, settings: SettingsDep, dataset_id: int | None = None) -> list:
    """Training jobs, newest first (those still running checked against their process)."""
    found = jobs.list_jobs(session, dataset_id=dataset_id)
    return [_job_dict(jobs.refresh(session, settings=settings, job=j)) for j in found]


@router.get("/api/training/jobs/{job_id}", tags=["training"])
def api_job(job_id: int, session: SessionDep, settings: SettingsDep) -> dict:
    """Status and progress: step of total, speed, time left, loss, GPU memory, saves."""
    return _job_dict(_fresh(session, settings, job_id))


@router.post("/api/training/jobs/{job_id}/stop", tags=["training"])
def api_stop(job_id: int, session: SessionDep, settings: SettingsDep) -> dict:
    """Stops the trainer as Ctrl+C does; it is killed if it has not exited after the grace time."""
    job = jobs.request_stop(session, settings=settings, job=jobs.get_job(session, job_id))
    return _job_dict(job)


@router.post("/api/training/jobs/{job_id}/pick", tags=["training"], status_code=201)
def api_pick(job_id: int, body: PickIn, session: SessionDep, settings: SettingsDep) -> dict:
    """Copies the step's checkpoint into `to_dir`, named by dataset and step, and records it."""
    job = jobs.get_job(session, job_id)
    dataset = ds.get_dataset(session, body.dataset_id or job.dataset_id)
    chosen = picking.use_step(
        session,
        dataset=dataset,
        run_dir=Path(job.run_dir),
        step=body.step,
        to_dir=requested_out_dir(settings, body.to_dir),
        recorded_yaml=job.config_yaml,
    )
    return {"step": chosen.step, "checkpoint": chosen.checkpoint, "copied_to": chosen.copied_to}


# --- pages -------------------------------------------------------------------------------


@router.get("/training", response_class=HTMLResponse, include_in_schema=False)
def training_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    found = [jobs.refresh(session, settings=settings, job=j) for j in jobs.list_jobs(session)]
    names = {d.id: d.name for d in session.exec(select(Dataset))}
    return templates.TemplateResponse(request, "training.html", {"jobs": found, "names": names})


@router.post("/datasets/{dataset_id}/train", include_in_schema=False)
def train_form(
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    profile: Annotated[str, Form()] = profiles.DEFAULT_PROFILE,
    aitk_dir: Annotated[str, Form(max_length=4096)] = "",
    python: Annotated[str, Form(max_length=4096)] = "",
    steps: Annotated[int | None, Form(ge=1, le=1_000_000)] = None,
    save_every: Annotated[int | None, Form(ge=1, le=1_000_000)] = None,
    force: Annotated[bool, Form()] = False,
) -> Response:
    body = TrainIn(
        profile=profile, steps=steps, save_every=save_every, aitk_dir=aitk_dir or None,
        python=python or None, force=force,
    )  # fmt: skip
    job = _start(session, settings, store, ds.get_dataset(session, dataset_id), body)
    return RedirectResponse(f"/training/jobs/{job.id}", status_code=303)


def _job_context(session: Session, job: TrainJob) -> dict[str, Any]:
    p = jobs.progress(job)
    chart = boards.loss_chart(p.loss_curve, saved=p.saved_steps, total=p.total)
    return {
        "job": job,
        "p": p,
        "chart": chart,
        "dataset": session.get(Dataset, job.dataset_id),
        "active": job.status in jobs.ACTIVE,
    }


@router.get("/training/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
def job_page(request: Request, job_id: int, session: SessionDep, settings: SettingsDep) -> Response:
    job = _fresh(session, settings, job_id)
    return templates.TemplateResponse(request, "train_job.html", _job_context(session, job))


@router.get("/training/jobs/{job_id}/progress", include_in_schema=False)
def job_fragment(
    request: Request, job_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    job = _fresh(session, settings, job_id)
    return templates.TemplateResponse(request, "_train_job.html", _job_context(session, job))


@router.post("/training/jobs/{job_id}/stop", include_in_schema=False)
def stop_form(
    request: Request, job_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    job = jobs.request_stop(session, settings=settings, job=jobs.get_job(session, job_id))
    if request.headers.get("hx-request"):
        return templates.TemplateResponse(request, "_train_job.html", _job_context(session, job))
    return RedirectResponse(f"/training/jobs/{job_id}", status_code=303)


# --- the board ---------------------------------------------------------------------------


def _run(
    session: Session, settings: Any, run: str | None, job_id: int | None
) -> tuple[Path, TrainJob | None]:
    if job_id is not None:
        job = _fresh(session, settings, job_id)
        return Path(job.run_dir), job
    if not run:
        raise Invalid("Say which run to show: a run folder (run=) or a training job (job=).")
    path = boards.open_run(settings, run)
    recorded = session.exec(
        select(TrainJob).where(TrainJob.run_dir == str(path)).order_by(col(TrainJob.id).desc())
    ).first()
    return path, recorded


def _board_context(
    request: Request, session: Session, settings: Any, run: str | None, job_id: int | None,
    page: int, sp: int | None,
) -> dict[str, Any]:  # fmt: skip
    run_dir, job = _run(session, settings, run, job_id)
    if not run_dir.is_dir():
        raise Invalid(f"The run folder {run_dir} is not there (yet): the trainer makes it.")
    board = boards.build_board(
        run_dir,
        recorded_yaml=job.config_yaml if job else None,
        page=page,
        step_page=sp,
        live_job=(job.status in jobs.ACTIVE) if job else None,
    )
    boards.drop_unreadable(settings, board)
    total = board.config.steps if board.config else (board.all_steps[-1] if board.all_steps else 0)
    chart = boards.loss_chart(board.loss, saved=board.saved_steps, total=total)
    datasets = list(session.exec(select(Dataset).order_by(col(Dataset.name))))
    query = f"job={job.id}" if (job and job_id is not None) else urlencode({"run": str(run_dir)})
    return {
        "query": query,
        "page_query": f"page={board.page}&sp={board.step_page}",
        "board": board,
        "job": job,
        "run": str(run_dir),
        "chart": chart,
        "favourites": picking.favourites(session, run_dir=run_dir),
        "favourite_steps": picking.favourite_steps(session, run_dir=run_dir),
        "datasets": datasets,
        "picks": picking.picks(session, dataset_id=job.dataset_id) if job else [],
        "pickable": set(board.saved_steps) | ({board.final_step} if board.final_step else set()),
    }


@router.get("/board", response_class=HTMLResponse, include_in_schema=False)
def board_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    run: str | None = None,
    job: int | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    sp: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> Response:
    if run is None and job is None:
        return templates.TemplateResponse(request, "board_open.html", {})
    context = _board_context(request, session, settings, run, job, page, sp)
    return templates.TemplateResponse(request, "board.html", context)


@router.get("/board/grid", response_class=HTMLResponse, include_in_schema=False)
def board_grid(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    run: str | None = None,
    job: int | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    sp: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> Response:
    context = _board_context(request, session, settings, run, job, page, sp)
    return templates.TemplateResponse(request, "_board_grid.html", context)


@router.get("/board/sample", include_in_schema=False)
def board_sample(
    session: SessionDep, settings: SettingsDep, name: str, run: str | None = None,
    job: int | None = None,
) -> FileResponse:  # fmt: skip
    run_dir, _ = _run(session, settings, run, job)
    return FileResponse(boards.sample_path(settings, run_dir, name))


@router.get("/board/thumb", include_in_schema=False)
def board_thumb(
    session: SessionDep, settings: SettingsDep, name: str, run: str | None = None,
    job: int | None = None,
) -> FileResponse:  # fmt: skip
    run_dir, _ = _run(session, settings, run, job)
    thumb = boards.thumbnail(settings, boards.sample_path(settings, run_dir, name))
    # The name holds the time it was written: a sample file never changes under its name.
    return FileResponse(thumb, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})


@router.get("/board/compare", response_class=HTMLResponse, include_in_schema=False)
def board_compare(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    s: Annotated[list[str], Query()],
    run: str | None = None,
    job: int | None = None,
) -> Response:
    if not 2 <= len(s) <= 4:
        raise Invalid("Compare 2 to 4 samples.")
    run_dir, found = _run(session, settings, run, job)
    config = boards.runs.read_config(run_dir, found.config_yaml if found else None)
    specs = {sp.index: sp for sp in config.samples} if config else {}
    items: list[dict[str, Any]] = []
    chosen: list[boards.runs.Sample] = []
    for name in s:
        boards.sample_path(settings, run_dir, name)
        sample = boards.runs.parse_sample_name(name)
        assert sample is not None
        chosen.append(sample)
        spec = specs.get(sample.index)
        view = (
            boards.parse_prompt(spec.prompt, width=spec.width, height=spec.height) if spec else None
        )
        items.append({"sample": sample, "spec": spec, "view": view})
    query = f"job={found.id}" if (found and job is not None) else urlencode({"run": str(run_dir)})
    # The LoRA-off picture of the first prompt, offered when it is not in the comparison.
    reference = None
    if len(s) < 4 and all(c.step != 0 for c in chosen):
        first = chosen[0].index
        reference = next(
            (x.name for x in boards.runs.list_samples(run_dir) if x.step == 0 and x.index == first),
            None,
        )
    with_reference = (
        f"/board/compare?{query}" + "".join(f"&s={quote(n)}" for n in [reference, *s])
        if reference
        else None
    )
    return templates.TemplateResponse(
        request,
        "board_compare.html",
        {"items": items, "run": str(run_dir), "job": found if job is not None else None,
         "query": query, "datasets": list(session.exec(select(Dataset))),
         "with_reference": with_reference},
    )  # fmt: skip


@router.post("/board/favourite", include_in_schema=False)
def board_favourite(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    index: Annotated[int, Form(ge=0)],
    step: Annotated[int, Form(ge=0)],
    run: Annotated[str | None, Form()] = None,
    job: Annotated[int | None, Form()] = None,
) -> Response:
    run_dir, _ = _run(session, settings, run, job)
    on = picking.toggle_favourite(session, run_dir=run_dir, sample_index=index, step=step)
    if request.headers.get("hx-request"):
        return templates.TemplateResponse(
            request, "_favourite.html", {"on": on, "index": index, "step": step, "run": run,
                                         "job_id": job},
        )  # fmt: skip
    back = f"/board?job={job}" if job is not None else f"/board?run={run_dir}"
    return RedirectResponse(back, status_code=303)


@router.post("/board/pick", response_class=HTMLResponse, include_in_schema=False)
def board_pick(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    step: Annotated[int, Form(ge=0)],
    to_dir: Annotated[str, Form(max_length=4096)],
    run: Annotated[str | None, Form()] = None,
    job: Annotated[int | None, Form()] = None,
    dataset_id: Annotated[int | None, Form()] = None,
) -> Response:
    run_dir, found = _run(session, settings, run, job)
    chosen_id = dataset_id or (found.dataset_id if found else None)
    if chosen_id is None:
        raise Invalid("Choose the dataset this LoRA is for.")
    chosen = picking.use_step(
        session,
        dataset=ds.get_dataset(session, chosen_id),
        run_dir=run_dir,
        step=step,
        to_dir=requested_out_dir(settings, to_dir),
        recorded_yaml=found.config_yaml if found else None,
    )
    return templates.TemplateResponse(request, "_pick_result.html", {"pick": chosen})
