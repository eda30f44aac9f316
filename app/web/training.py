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
from app.config import Settings
from app.errors import Conflict, Invalid, UserError
from app.export import profiles
from app.export.writer import ExportRefused, requested_out_dir
from app.models import Dataset, TrainJob
from app.training import board as boards
from app.training import checkout as checkouts
from app.training import jobs, trainer_check
from app.training import pick as picking
from app.training.chart import y_ticks
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


class ResumeIn(BaseModel):
    more_steps: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Steps to train beyond the run's end"
    )


class PickIn(BaseModel):
    step: int = Field(ge=0)
    to_dir: str = Field(max_length=4096, description="Folder to copy the LoRA into")
    dataset_id: int | None = None


def train_defaults(
    session: Session, settings: Settings, folder: Path | str | None = None
) -> dict[str, Any]:
    """What the Train form (_train_form.html) is filled with, for the routes whose pages show
    it: the checkout (`folder` when an export just wrote into one, the last, the setting)."""
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


templates.env.globals["loss_y_ticks"] = y_ticks


def _legs(session: Session, job: TrainJob) -> list[dict[str, Any]]:
    return [
        {"job": leg.job.id, "number": leg.number, "kind": leg.kind, "start": leg.start,
         "end": leg.end, "total": leg.job.total_steps, "status": leg.job.status.value,
         "restarted": leg.restarted}
        for leg in jobs.legs(session, job)
    ]  # fmt: skip


def _job_dict(job: TrainJob, session: Session | None = None) -> dict[str, Any]:
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
    } | ({"legs": _legs(session, job)} if session is not None else {})


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
    return _job_dict(_fresh(session, settings, job_id), session)


@router.post("/api/training/jobs/{job_id}/resume", tags=["training"], status_code=201)
def api_resume(job_id: int, body: ResumeIn, session: SessionDep, settings: SettingsDep) -> dict:
    """The run's next leg: a stopped run from its newest save; a finished one (more_steps)
    from its final checkpoint, that many steps further. Same run folder, same board."""
    job = jobs.resume_training(
        session, settings=settings, job=jobs.get_job(session, job_id), more_steps=body.more_steps
    )
    return _job_dict(job, session)


@router.post("/api/training/jobs/{job_id}/stop", tags=["training"])
def api_stop(job_id: int, session: SessionDep, settings: SettingsDep) -> dict:
    """Stops the trainer as Ctrl+C does; it is killed if it has not exited after the grace time."""
    job = jobs.request_stop(session, settings=settings, job=jobs.get_job(session, job_id))
    return _job_dict(job)


@router.post("/api/training/jobs/{job_id}/pick", tags=["training"], status_code=201)
def api_pick(job_id: int, body: PickIn, session: SessionDep, settings: SettingsDep) -> dict:
    """Copies the step's checkpoint into `to_dir`, named by dataset and step, and records it."""
    job = jobs.legs(session, jobs.get_job(session, job_id))[-1].job  # the run's newest YAML
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
    # A run resumed or continued is one run in legs: each job says which leg it is.
    by_run: dict[str, list[int]] = {}
    for j in sorted(found, key=lambda j: j.id or 0):
        by_run.setdefault(j.run_dir, []).append(j.id or 0)
    leg = {i: (n, len(ids)) for ids in by_run.values() for n, i in enumerate(ids, start=1)}
    context = {"jobs": found, "names": names, "leg": leg}
    return templates.TemplateResponse(request, "training.html", context)


@router.post("/datasets/{dataset_id}/train", include_in_schema=False)
def train_form(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    profile: Annotated[str, Form(max_length=40)] = profiles.DEFAULT_PROFILE,
    aitk_dir: Annotated[str, Form(max_length=4096)] = "",
    python: Annotated[str, Form(max_length=4096)] = "",
    steps: Annotated[str, Form(max_length=20)] = "",
    save_every: Annotated[str, Form(max_length=20)] = "",
    force: Annotated[bool, Form()] = False,
) -> Response:
    """Starts training; a refusal comes back as the form, saying why, with what was typed."""
    dataset = ds.get_dataset(session, dataset_id)
    values = {"aitk_dir": aitk_dir, "python": python, "steps": steps, "save_every": save_every,
              "profile": profile, "force": force}  # fmt: skip
    context: dict[str, Any] = {"dataset": dataset, "train_values": values,
                               "train": train_defaults(session, settings),
                               "train_error_checkout": False, "running_job": None}  # fmt: skip
    try:
        body = TrainIn(
            profile=profile, steps=_steps(steps, "Steps"),
            save_every=_steps(save_every, "Save and sample every"), aitk_dir=aitk_dir or None,
            python=python or None, force=force,
        )  # fmt: skip
        if body.profile not in profiles.PROFILES:
            raise Invalid(f"There is no GPU profile {body.profile!r}.")
        folder, py = checkouts.from_request(
            settings=settings, folder=body.aitk_dir, python=body.python
        )
        try:
            checkouts.resolve_checkout(settings=settings, folder=folder, python=py)
        except Invalid:
            context["train_error_checkout"] = True
            raise
        job = _start(session, settings, store, dataset, body)
    except UserError as e:
        if isinstance(e, ExportRefused):
            context["train_error"] = e.told("tick 'export anyway' below and train again")
        else:
            context["train_error"] = e.message
        if isinstance(e, Conflict):
            context["running_job"] = _running_job(session)
        hx = bool(request.headers.get("hx-request"))
        name = "_train_form.html" if hx else "train_start.html"
        return templates.TemplateResponse(request, name, context, status_code=e.status_code)
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": f"/training/jobs/{job.id}"})
    return RedirectResponse(f"/training/jobs/{job.id}", status_code=303)


def _steps(raw: str, what: str) -> int | None:
    """A step count typed in the form: empty is the default, else a whole number >= 1."""
    if not raw.strip():
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if not 1 <= n <= 1_000_000:
        raise Invalid(f"{what}: give a whole number of steps from 1 to 1,000,000, not {raw!r}.")
    return n


def _running_job(session: Session) -> int | None:
    found = session.exec(select(TrainJob).where(col(TrainJob.status).in_(jobs.ACTIVE))).first()
    return found.id if found else None


def _job_context(session: Session, job: TrainJob) -> dict[str, Any]:
    p = jobs.progress(job)
    chart = boards.loss_chart(p.loss_curve, saved=p.saved_steps, total=p.total)
    legs = jobs.legs(session, job)
    return {
        "job": job,
        "p": p,
        "chart": chart,
        "dataset": session.get(Dataset, job.dataset_id),
        "active": job.status in jobs.ACTIVE,
        "legs": legs,
        "newest_leg": legs[-1].job if legs else job,
        "resume_error": None,
        "more_steps": "",
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


@router.get(
    "/datasets/{dataset_id}/trainer-check", response_class=HTMLResponse, include_in_schema=False
)
def trainer_check_page(
    request: Request, dataset_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    """The trainer's own code on the export in the checkout: the partial for htmx, else a page."""
    dataset = ds.get_dataset(session, dataset_id)
    defaults = train_defaults(session, settings)
    context: dict[str, Any] = {"dataset": dataset, "check": None, "check_error": None,
                               "checked_commit": trainer_check.CHECKED_COMMIT,
                               "train": defaults}  # fmt: skip
    try:
        checkout = checkouts.resolve_checkout(
            settings=settings, folder=defaults["checkout"] or None
        )
        config = trainer_check.export_config(checkout.root, dataset.slug)
        context["check"] = trainer_check.check_export(checkout=checkout, config_path=config)
    except UserError as e:
        context["check_error"] = e.message
    name = "_trainer_check.html" if request.headers.get("hx-request") else "trainer_check.html"
    return templates.TemplateResponse(request, name, context)


class CheckIn(BaseModel):
    aitk_dir: str | None = Field(default=None, max_length=4096, description="AI-Toolkit checkout")
    python: str | None = Field(default=None, max_length=4096, description="Its venv's Python")


# POST, though it changes nothing: it runs a program the body may name, so it gets the Origin
# check that state-changing requests get (a GET could be sent by any web page).
@router.post("/api/datasets/{dataset_id}/trainer-check", tags=["training"])
def api_trainer_check(
    dataset_id: int, body: CheckIn, session: SessionDep, settings: SettingsDep
) -> dict:
    """Runs AI-Toolkit's own caption, trigger, bucket and sample-prompt code (in the checkout's
    Python; no model, no GPU) on the dataset's export in the checkout: per image and sample
    prompt the exact text its text encoder receives, tokens, buckets, differences."""
    dataset = ds.get_dataset(session, dataset_id)
    folder, py = checkouts.from_request(settings=settings, folder=body.aitk_dir, python=body.python)
    checkout = checkouts.resolve_checkout(settings=settings, folder=folder, python=py)
    config = trainer_check.export_config(checkout.root, dataset.slug)
    return trainer_check.check_export(checkout=checkout, config_path=config).as_dict()


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
    legs = jobs.legs(session, job) if job else []
    # A run in legs: its newest leg's YAML has the run's end and every sample's prompt.
    newest = jobs.refresh(session, settings=settings, job=legs[-1].job) if legs else job
    board = boards.build_board(
        run_dir,
        recorded_yaml=newest.config_yaml if newest else None,
        page=page,
        step_page=sp,
        live_job=(newest.status in jobs.ACTIVE) if newest else None,
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
        "legs": legs,
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
    found = jobs.legs(session, found)[-1].job if found else None
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
