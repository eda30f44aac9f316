"""Export and readiness from the browser and the API: lint, overview, folder or zip."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from app import datasets as ds
from app.captions.revisions import head_captions
from app.captions.schema import Caption
from app.captions.style_block import block_of, effective
from app.config import Settings
from app.errors import Invalid, UserError
from app.export import config_yaml, profiles, samples
from app.export.lint import lint_dataset
from app.export.overview import overview
from app.export.samples import SampleSet
from app.export.writer import (
    Dialect,
    ExportOptions,
    ExportRefused,
    TriggerPlacement,
    export_dataset,
    requested_out_dir,
    style_of,
)
from app.gpu import local_gpu_gb
from app.models import Dataset, Image
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


def _options(
    body: ExportIn, sample_set: SampleSet | None = None, seconds: float | None = None
) -> ExportOptions:
    return ExportOptions(
        samples=sample_set,
        sample_seconds=seconds,
        profile=body.profile,
        dialect=body.dialect,
        trigger_placement=body.trigger_placement,
        max_side=body.max_side,
        keep_alpha=body.keep_alpha,
        force=body.force,
    )


def _zip_response(
    session: Session, settings: Settings, store: Any, dataset: Dataset, body: ExportIn,
    background: BackgroundTasks, sample_set: SampleSet | None = None,
    seconds: float | None = None,
) -> FileResponse:  # fmt: skip
    tmp = settings.tmp_dir / f"export-{uuid.uuid4().hex}"
    report = export_dataset(
        session, settings=settings, store=store, dataset=dataset, out_dir=tmp,
        options=_options(body, sample_set, seconds), as_zip=True,
    )  # fmt: skip
    assert report.zip_path is not None

    def cleanup() -> None:
        report.zip_path.unlink(missing_ok=True)  # type: ignore[union-attr]
        tmp.rmdir()

    background.add_task(cleanup)
    return FileResponse(
        report.zip_path, media_type="application/zip", filename=f"{dataset.slug}.zip"
    )


@router.get("/api/datasets/{dataset_id}/samples", tags=["export"])
def api_samples(dataset_id: int, session: SessionDep) -> dict[str, Any]:
    """The sample set every export and training run writes: the one saved with the dataset,
    or (`saved` false) the guide's plan made from its captions."""
    dataset = ds.get_dataset(session, dataset_id)
    return _samples_out(session, dataset)


@router.put("/api/datasets/{dataset_id}/samples", tags=["export"])
def api_set_samples(
    dataset_id: int, session: SessionDep, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Saves the sample set: `prompts` (each a `kind`, a `prompt` as a structured caption, and
    `on`: false to keep it unticked), `seeds`, `strengths`, `seconds` (null: the profile's)."""
    dataset = ds.get_dataset(session, dataset_id)
    sample_set, seconds = samples.load_set(body)
    samples.save_set(session, dataset=dataset, sample_set=sample_set, seconds=seconds)
    return _samples_out(session, dataset)


@router.delete("/api/datasets/{dataset_id}/samples", tags=["export"])
def api_clear_samples(dataset_id: int, session: SessionDep) -> dict[str, Any]:
    """Back to the guide's plan, made afresh from the captions at each export."""
    dataset = ds.get_dataset(session, dataset_id)
    samples.clear_set(session, dataset=dataset)
    return _samples_out(session, dataset)


def _samples_out(session: Session, dataset: Dataset) -> dict[str, Any]:
    stored = samples.stored_set(dataset)
    chosen, seconds = stored or (_default(dataset, _captions(session, dataset)), None)
    out: dict[str, Any] = json.loads(samples.dump_set(chosen, seconds=seconds))
    return {"saved": stored is not None} | out


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
    session: Session, settings: Settings, store: Any, dataset: Dataset, body: ExportIn,
    sample_set: SampleSet | None = None, seconds: float | None = None,
) -> Any:  # fmt: skip
    """Exports into the folder the request names, once that folder is allowed."""
    if not body.out_dir:
        raise Invalid("Say which folder to write into (out_dir), or ask for a zip.")
    return export_dataset(
        session, settings=settings, store=store, dataset=dataset,
        out_dir=requested_out_dir(settings, body.out_dir),
        options=_options(body, sample_set, seconds),
    )  # fmt: skip


class ExportForm(BaseModel):
    """The export page's form: the export's options and the sample set as edited there."""

    action: str = "folder"
    out_dir: str = Field(default="", max_length=4096)
    profile: str = ""
    dialect: Dialect = "official"
    trigger_placement: TriggerPlacement = "aesthetics"
    max_side: int = Field(default=0, ge=0, le=16384)
    keep_alpha: bool = False
    force: bool = False
    sample_kind: list[str] = []
    sample_text: list[str] = []
    sample_source: list[str] = []
    sample_on: list[int] = []
    sample_seeds: str = ""
    sample_strengths: str = ""
    sample_seconds: str = ""

    def sample_set(self) -> SampleSet | None:
        """The edited sample set; None when the form carried none (the default then)."""
        if not self.sample_kind:
            return None
        return samples.parse_set(
            kinds=self.sample_kind, texts=self.sample_text, included=self.sample_on,
            seeds=self.sample_seeds, strengths=self.sample_strengths, sources=self.sample_source,
        )  # fmt: skip

    def seconds(self) -> float | None:
        try:
            value = float(self.sample_seconds) if self.sample_seconds.strip() else None
        except ValueError:
            raise Invalid(f"Seconds a sample {self.sample_seconds!r} is not a number.") from None
        if value is not None and not 0 < value <= 3600:
            raise Invalid("Seconds a sample must be above 0 and at most 3600.")
        return value


FormDep = Annotated[ExportForm, Form()]
_ROWS = ("sample_kind", "sample_text", "sample_source", "sample_on")
_OPTIONS = ("sample_seeds", "sample_strengths", "sample_seconds")


def _save_if_edited(session: Session, dataset: Dataset, form: ExportForm, *, always: bool) -> bool:
    """Saves the form's sample set with the dataset when it differs from the one in effect
    (saved, or else the default plan), so that an edit is never left behind in the form;
    `always`: the user asked to save, so a default set left as it was is saved too."""
    edited, seconds = form.sample_set(), form.seconds()
    if edited is None:
        return False
    stored = samples.stored_set(dataset)
    if stored:
        current, current_seconds = stored
    else:
        current, current_seconds = _default(dataset, _captions(session, dataset)), None
    if samples.same_set(edited, current) and seconds == current_seconds and (stored or not always):
        return False
    samples.save_set(session, dataset=dataset, sample_set=edited, seconds=seconds)
    return True


def _captions(session: Session, dataset: Dataset) -> list[tuple[Image, Caption]]:
    """Each captioned image with its caption as exported (the style block filled in)."""
    block = block_of(dataset)
    rows = head_captions(session, dataset=dataset)
    return [(img, effective(cap, block)) for img, cap in rows if cap is not None]


def _preview(
    dataset: Dataset, rows: list[tuple[Image, Caption]], form: ExportForm, profile: str
) -> config_yaml.Written:
    """The YAML the export would write with these options, from the stored images."""
    out = form.out_dir.strip()
    folder = f"{out.rstrip('/')}/datasets/{dataset.slug}" if out else f"datasets/{dataset.slug}"
    stored = samples.stored_set(dataset)
    return config_yaml.write(
        slug=dataset.slug,
        resolution=dataset.resolution,
        trigger_word=dataset.trigger_word,
        style=style_of(block_of(dataset)),
        captions=[(img.filename, cap) for img, cap in rows],
        sizes=[_shrunk(img.width, img.height, form.max_side) for img, _ in rows],
        folder_path=folder,
        profile=profile,
        placement=form.trigger_placement,
        sample_set=form.sample_set() or (stored[0] if stored else None),
        sample_seconds=form.seconds() or (stored[1] if stored else None),
        alpha_mask=form.keep_alpha,
        guide_dialect=form.dialect == "guide",
    )


def _sample_rows(
    form: ExportForm, dataset: Dataset, rows: list[tuple[Image, Caption]]
) -> list[dict[str, Any]]:
    """The sample editor's rows: as the user left them, the saved set's, or the default set's."""
    if form.sample_kind:
        sources = form.sample_source + [""] * len(form.sample_kind)
        return [
            {"kind": k, "text": t, "source": src or None, "on": n in form.sample_on}
            for n, (k, t, src) in enumerate(
                zip(form.sample_kind, form.sample_text, sources, strict=False)
            )
        ]
    stored = samples.stored_set(dataset)
    chosen = stored[0] if stored else _default(dataset, rows)
    return [{"kind": p.kind, "text": p.text, "source": p.source, "on": on} for p, on in chosen.rows]


def _sample_options(form: ExportForm, dataset: Dataset) -> dict[str, str]:
    """The seeds, strengths and seconds inputs: as sent, as saved, or the defaults."""
    stored = None if form.sample_kind else samples.stored_set(dataset)
    if stored:
        return {
            "seeds": ", ".join(str(x) for x in stored[0].seeds),
            "strengths": ", ".join(f"{x:g}" for x in stored[0].strengths),
            "seconds": f"{stored[1]:g}" if stored[1] else "",
        }
    return {
        "seeds": form.sample_seeds or ", ".join(str(x) for x in samples.SEEDS),
        "strengths": form.sample_strengths or ", ".join(str(x) for x in samples.STRENGTHS),
        "seconds": form.sample_seconds,
    }


def _default(dataset: Dataset, rows: list[tuple[Image, Caption]]) -> SampleSet:
    return samples.default_set(
        captions=[(img.filename, cap) for img, cap in rows], style=style_of(block_of(dataset))
    )


def _shrunk(width: int, height: int, max_side: int) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _page_context(
    session: Session,
    settings: Settings,
    dataset: Dataset,
    form: ExportForm | None = None,
    **extra: Any,
) -> dict[str, Any]:
    form = form or ExportForm()
    report = extra.get("report")
    gpu = local_gpu_gb()
    chosen = form.profile or (profiles.profile_for_gpu(gpu) if gpu else profiles.DEFAULT_PROFILE)
    profiles.get_profile(chosen)
    findings = lint_dataset(
        session, dataset=dataset, profile=chosen, placement=form.trigger_placement,
        dialect=form.dialect,
    )  # fmt: skip
    rows = _captions(session, dataset)
    sizes = [_shrunk(img.width, img.height, form.max_side) for img, _ in rows]
    written, plan_error = None, None
    try:
        written = _preview(dataset, rows, form, chosen)
    except UserError as e:
        plan_error = e.message
    return {
        "dataset": dataset,
        "findings": findings,
        "errors": [f for f in findings if f.severity == "error"],
        "warnings": [f for f in findings if f.severity == "warning"],
        "profiles": [
            (p, run.memory_gb, run.resolutions, run.batch)
            for p in profiles.PROFILES
            for run in [profiles.plan(profile=p, resolution=dataset.resolution, sizes=sizes)]
        ],
        "chosen_profile": chosen,
        "chosen_resolutions": profiles.get_profile(chosen).resolutions(dataset.resolution),
        "written": written,
        "sample_rows": _sample_rows(form, dataset, rows),
        "sample_options": _sample_options(form, dataset),
        "samples_saved": bool(dataset.sample_set),
        "plan_error": plan_error,
        "seconds": form.sample_seconds or (written.plan.profile.sample_seconds if written else ""),
        "gpu_gb": gpu,
        "overview": overview(session, dataset=dataset),
        # The Train form below, with the folder just exported into as its checkout.
        "train": train_defaults(session, settings, report.out_dir if report else None),
        "report": None,
        "error": None,
        "samples_note": None,
        "samples_dropped": None,
        "form": form.model_dump() | {"profile": chosen},
    } | extra


@router.get("/datasets/{dataset_id}/export", response_class=HTMLResponse, include_in_schema=False)
def export_page(
    request: Request, dataset_id: int, session: SessionDep, settings: SettingsDep
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    return render(request, "dataset_export.html", _page_context(session, settings, dataset))


@router.post("/datasets/{dataset_id}/export/plan", include_in_schema=False)
def export_plan(
    request: Request, dataset_id: int, session: SessionDep, settings: SettingsDep, form: FormDep
) -> Response:
    """The chosen profile's changes, memory, sample cost and YAML, for the form as it stands."""
    dataset = ds.get_dataset(session, dataset_id)
    return render(request, "_export_plan.html", _page_context(session, settings, dataset, form))


@router.post("/datasets/{dataset_id}/export/lint", include_in_schema=False)
def export_lint(
    request: Request, dataset_id: int, session: SessionDep, settings: SettingsDep, form: FormDep
) -> Response:
    """Lint judged at the chosen profile's resolutions, placement and dialect."""
    dataset = ds.get_dataset(session, dataset_id)
    return render(request, "_export_lint.html", _page_context(session, settings, dataset, form))


@router.post("/datasets/{dataset_id}/export/samples/restore", include_in_schema=False)
def export_restore_samples(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    saved: Annotated[str, Form(max_length=2_000_000)],
) -> Response:
    """Undoes 'back to the default plan': the dropped set, sent back by the page, saved again."""
    dataset = ds.get_dataset(session, dataset_id)
    try:
        value = json.loads(saved)
    except (ValueError, RecursionError):
        raise Invalid("The sample set to restore came damaged: save it again by hand.") from None
    sample_set, seconds = samples.load_set(value)
    samples.save_set(session, dataset=dataset, sample_set=sample_set, seconds=seconds)
    context = _page_context(session, settings, dataset, samples_note="restored")
    return render(request, "dataset_export.html", context)


@router.post("/datasets/{dataset_id}/export", include_in_schema=False, response_model=None)
def export_form(
    request: Request,
    dataset_id: int,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    background: BackgroundTasks,
    form: FormDep,
) -> Response:
    dataset = ds.get_dataset(session, dataset_id)
    if form.action == "preview":  # the page without JS: show the plan for these options
        context = _page_context(session, settings, dataset, form)
        return render(request, "dataset_export.html", context)
    if form.action == "default_samples":
        dropped = dataset.sample_set
        samples.clear_set(session, dataset=dataset)
        cleared = form.model_copy(update={k: [] for k in _ROWS} | {k: "" for k in _OPTIONS})
        context = _page_context(
            session, settings, dataset, cleared, samples_note="default", samples_dropped=dropped
        )
        return render(request, "dataset_export.html", context)
    try:
        if form.action == "save_samples" or form.action in ("folder", "zip"):
            saved = _save_if_edited(session, dataset, form, always=form.action == "save_samples")
        if form.action == "save_samples":
            note = "saved" if saved else "unchanged"
            context = _page_context(session, settings, dataset, form, samples_note=note)
            return render(request, "dataset_export.html", context)
        body = ExportIn(
            out_dir=form.out_dir or None, zip=form.action == "zip",
            profile=form.profile or profiles.DEFAULT_PROFILE, dialect=form.dialect,
            trigger_placement=form.trigger_placement, max_side=form.max_side,
            keep_alpha=form.keep_alpha, force=form.force,
        )  # fmt: skip
        sample_set, seconds = form.sample_set(), form.seconds()
        if body.zip:
            return _zip_response(
                session, settings, store, dataset, body, background, sample_set, seconds
            )
        report = _to_folder(session, settings, store, dataset, body, sample_set, seconds)
    except UserError as e:
        message = e.told("tick 'export anyway' and export again") if isinstance(
            e, ExportRefused
        ) else e.message  # fmt: skip
        try:
            context = _page_context(session, settings, dataset, form, error=message)
        except UserError:
            context = _page_context(session, settings, dataset, None, error=message)
        return render(request, "dataset_export.html", context, status_code=e.status_code)
    context = _page_context(session, settings, dataset, form, report=report)
    return render(request, "dataset_export.html", context)
