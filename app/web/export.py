"""Export and readiness from the browser and the API: lint, overview, folder or zip."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from app import datasets as ds
from app.config import Settings
from app.errors import Invalid
from app.export import profiles
from app.export.lint import lint_dataset
from app.export.overview import overview
from app.export.writer import (
    Dialect,
    ExportOptions,
    ExportRefused,
    TriggerPlacement,
    export_dataset,
    requested_out_dir,
)
from app.gpu import local_gpu_gb
from app.models import Dataset
from app.web.deps import SessionDep, SettingsDep, StoreDep
from app.web.render import render
from app.web.training import train_defaults

router = APIRouter()


class ExportIn(BaseModel):
    out_dir: str | None = Field(default=None, description="Folder to write into (on this machine)")
    zip: bool = Field(default=False, description="Answer with a zip file instead")
    profile: str = profiles.DEFAULT_PROFILE
    dialect: Dialect = "official"
    trigger_placement: TriggerPlacement = "aesthetics"
    max_side: int = Field(default=0, ge=0, le=16384)
    keep_alpha: bool = False
    force: bool = False


def _options(body: ExportIn) -> ExportOptions:
    return ExportOptions(
        profile=body.profile,
        dialect=body.dialect,
        trigger_placement=body.trigger_placement,
        max_side=body.max_side,
        keep_alpha=body.keep_alpha,
        force=body.force,
    )


def _zip_response(
    session: Session, settings: Settings, store: Any, dataset: Dataset, body: ExportIn,
    background: BackgroundTasks,
) -> FileResponse:  # fmt: skip
    tmp = settings.tmp_dir / f"export-{uuid.uuid4().hex}"
    report = export_dataset(
        session, settings=settings, store=store, dataset=dataset, out_dir=tmp,
        options=_options(body), as_zip=True,
    )  # fmt: skip
    assert report.zip_path is not None

    def cleanup() -> None:
        report.zip_path.unlink(missing_ok=True)  # type: ignore[union-attr]
        tmp.rmdir()

    background.add_task(cleanup)
    return FileResponse(
        report.zip_path, media_type="application/zip", filename=f"{dataset.slug}.zip"
    )


@router.get("/api/datasets/{dataset_id}/lint", tags=["export"])
def api_lint(
    dataset_id: int, session: SessionDep, profile: str = profiles.DEFAULT_PROFILE
) -> list[dict]:
    """Findings: errors stop an export, warnings are listed with it (sizes: the profile's)."""
    dataset = ds.get_dataset(session, dataset_id)
    return [f.as_dict() for f in lint_dataset(session, dataset=dataset, profile=profile)]


@router.post("/api/datasets/{dataset_id}/export", tags=["export"], response_model=None)
def api_export(
    dataset_id: int,
    body: ExportIn,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    background: BackgroundTasks,
) -> dict | FileResponse:
    """Writes into `out_dir` (answering with the report), or answers with a zip."""
    dataset = ds.get_dataset(session, dataset_id)
    if body.zip:
        return _zip_response(session, settings, store, dataset, body, background)
    return _to_folder(session, settings, store, dataset, body).as_dict()


def _to_folder(
    session: Session, settings: Settings, store: Any, dataset: Dataset, body: ExportIn
) -> Any:
    """Exports into the folder the request names, once that folder is allowed."""
    if not body.out_dir:
        raise Invalid("Say which folder to write into (out_dir), or ask for a zip.")
    return export_dataset(
        session, settings=settings, store=store, dataset=dataset,
        out_dir=requested_out_dir(settings, body.out_dir), options=_options(body),
    )  # fmt: skip


def _page_context(
    session: Session, settings: Settings, dataset: Dataset, **extra: Any
) -> dict[str, Any]:
    gpu = local_gpu_gb()
    report = extra.get("report")
    chosen = profiles.profile_for_gpu(gpu) if gpu else profiles.DEFAULT_PROFILE
    findings = lint_dataset(session, dataset=dataset, profile=chosen)
    return {
        "dataset": dataset,
        "findings": findings,
        "errors": [f for f in findings if f.severity == "error"],
        "warnings": [f for f in findings if f.severity == "warning"],
        "profiles": [
            (
                p,
                profiles.get_profile(p).vram_estimate_gb(dataset.resolution),
                profiles.get_profile(p).resolutions(dataset.resolution),
            )
            for p in profiles.PROFILES
        ],
        "chosen_profile": chosen,
        "gpu_gb": gpu,
        "overview": overview(session, dataset=dataset),
        # The Train form below, with the folder just exported into as its checkout.
        "train": train_defaults(session, settings, report.out_dir if report else None),
        "report": None,
        "error": None,
        "form": {},
    } | extra


@router.get("/datasets/{dataset_id}/export", response_class=HTMLResponse, include_in_schema=False)
def export_page(
    request: Request, dataset_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return render(request, "dataset_export.html", _page_context(session, settings, dataset))


@router.post("/datasets/{dataset_id}/export", include_in_schema=False, response_model=None)
def export_form(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    background: BackgroundTasks,
    action: Annotated[str, Form()] = "folder",
    out_dir: Annotated[str, Form(max_length=4096)] = "",
    profile: Annotated[str, Form()] = profiles.DEFAULT_PROFILE,
    dialect: Annotated[Dialect, Form()] = "official",
    trigger_placement: Annotated[TriggerPlacement, Form()] = "aesthetics",
    max_side: Annotated[int, Form(ge=0, le=16384)] = 0,
    keep_alpha: Annotated[bool, Form()] = False,
    force: Annotated[bool, Form()] = False,
) -> Response:
    from app.errors import UserError

    dataset = ds.get_dataset(session, dataset_id)
    body = ExportIn(
        out_dir=out_dir or None, zip=action == "zip", profile=profile, dialect=dialect,
        trigger_placement=trigger_placement, max_side=max_side, keep_alpha=keep_alpha, force=force,
    )  # fmt: skip
    form = body.model_dump()
    try:
        if body.zip:
            return _zip_response(session, settings, store, dataset, body, background)
        report = _to_folder(session, settings, store, dataset, body)
    except UserError as e:
        message = e.told("tick 'export anyway' and export again") if isinstance(
            e, ExportRefused
        ) else e.message  # fmt: skip
        context = _page_context(session, settings, dataset, error=message, form=form)
        return render(request, "dataset_export.html", context, status_code=e.status_code)
    context = _page_context(session, settings, dataset, report=report, form=form)
    return render(request, "dataset_export.html", context)
