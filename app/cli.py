"""The `atelier` command: serve the app, import images, list datasets."""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from app.config import Settings
from app.drafting.engine import ENGINE_NAMES

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Atelier: curate a style-LoRA dataset, caption it, export it for AI-Toolkit.",
)


EngineOption = StrEnum("EngineOption", {name: name for name in ENGINE_NAMES})  # type: ignore[misc]


class ProfileOption(StrEnum):
    p12 = "12gb"
    p16 = "16gb"
    p24 = "24gb"
    p32 = "32gb"
    p48 = "48gb"
    p80 = "80gb"
    p96 = "96gb"


class DialectOption(StrEnum):
    official = "official"
    guide = "guide"


class PlacementOption(StrEnum):
    aesthetics = "aesthetics"
    prefix = "prefix"
    none = "none"


class BoxFormatOption(StrEnum):
    official = "official"
    pixel = "pixel"


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where Atelier keeps its database and images "
        "[default: ATELIER_DATA_DIR or ./atelier-data]",
    ),
]


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turns the errors a user can cause into one sentence and exit status 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from app.errors import UserError

        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise fail(e.message) from None
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise fail(f"invalid setting {field}: {first['msg']}") from None
        except PermissionError as e:
            raise fail(f"permission denied: {e.filename}") from None

    return wrapper


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    settings = Settings(**values)
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise fail(f"the data dir {settings.data_dir} is a file, not a folder")
    return settings


@cli.command()
@user_errors
def serve(
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs a token")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    data_dir: DataDir = None,
    token: Annotated[
        str | None,
        typer.Option(help="Required when binding a network address [env: ATELIER_TOKEN]"),
    ] = None,
) -> None:
    """Start the web app."""
    settings = settings_for(data_dir, host=host, port=port, token=token)
    if settings.is_exposed and not settings.token:
        raise fail(
            f"binding {host} exposes Atelier to the network; give it a token with --token or "
            "ATELIER_TOKEN (every request must then carry it)"
        )
    if settings.token is not None and len(settings.token) < 16:
        raise fail("the token must be at least 16 characters long")

    import uvicorn

    from app.web.app import create_app

    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"Atelier on http://{shown}:{port}/  (data: {settings.data_dir.resolve()})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@cli.command("import")
@user_errors
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders (recursive)")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name")],
    create: Annotated[bool, typer.Option(help="Create the dataset if it does not exist")] = False,
    bbox_format: Annotated[
        BoxFormatOption | None,
        typer.Option(
            "--bbox-format",
            help="How the caption files' boxes are written: 'official' (0..1000, y first) or "
            "'pixel' ([x1, y1, x2, y2] in pixels, as in the guide). Left out, boxes with a "
            "coordinate above 1000 are read as pixels and the rest are flagged for you to choose.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Import images (and their AI-Toolkit .json/.txt captions) into a dataset."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.db import make_engine, migrate
    from app.errors import NotFound
    from app.images.importer import import_sources
    from app.images.sources import walk_paths

    settings = settings_for(data_dir)
    sources, skipped = walk_paths(paths)
    engine = make_engine(settings)
    migrate(engine)
    with Session(engine) as session:
        try:
            target = ds.find_dataset(session, dataset)
        except NotFound:
            if not create:
                raise fail(f"no dataset is named {dataset!r}; add --create to make it") from None
            target = ds.create_dataset(session, name=dataset)
        if not sources:
            raise fail("no image files found in " + ", ".join(str(p) for p in paths))

        def progress(done: int, total: int) -> None:
            if sys.stderr.isatty() or done == total:
                typer.echo(f"\rdecoded {done}/{total}", err=True, nl=done == total)

        name = target.name
        report = import_sources(
            session,
            settings=settings,
            dataset=target,
            sources=sources,
            skipped=skipped,
            progress=progress,
            bbox_format=bbox_format.value if bbox_format else None,
        )
    for o in report.of("duplicate"):
        typer.echo(f"duplicate  {o.filename}: {o.reason} (image {o.duplicate_of})")
    for o in report.of("refused"):
        typer.echo(f"refused    {o.filename}: {o.reason}")
    imported = report.of("imported")
    for o in imported:
        if o.caption and o.caption != "read":
            typer.echo(f"caption    {o.filename}: {o.caption}")
    if any(o.caption and "choose" in o.caption for o in imported):
        typer.echo(
            "Some boxes could be 0..1000 or pixels: open the dataset to compare both readings "
            "and choose, or import again with --bbox-format."
        )
    with_caption = sum(1 for o in imported if o.sidecar)
    typer.echo(
        f"{name}: {len(imported)} imported ({with_caption} with a caption file), "
        f"{len(report.of('duplicate'))} duplicate, {len(report.of('refused'))} refused, "
        f"{len(report.near_duplicates)} near-duplicate pair(s) to resolve."
    )


@cli.command("draft")
@user_errors
def draft(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name")],
    engine: Annotated[
        EngineOption | None, typer.Option(help="local (this machine's GPU) or openai (a server)")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Hugging Face id or local folder [default: ATELIER_DRAFT_MODEL]"),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch",
            min=0,
            max=256,
            help="Images drafted at once; 0 lets the local engine choose from the GPU's memory "
            "[default: ATELIER_DRAFT_BATCH]",
        ),
    ] = None,
    redraft: Annotated[
        bool, typer.Option(help="Draft every image again, not only those without a caption")
    ] = False,
    overwrite_edited: Annotated[
        bool,
        typer.Option(help="Also replace captions edited or approved by hand (kept in history)"),
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Draft captions with a vision-language model (progress, images/s and ETA as it goes)."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.db import make_engine, migrate
    from app.drafting import jobs, pipeline
    from app.drafting.engine import DraftError
    from app.drafting.open_engine import open_engine
    from app.images.importer import content_store

    settings = settings_for(data_dir)
    db = make_engine(settings)
    migrate(db)
    worker = jobs.worker_id()
    with Session(db) as session:
        target = ds.find_dataset(session, dataset)
        job = jobs.create_job(
            session,
            dataset=target,
            engine=engine.value if engine else settings.draft_engine,
            model=model or settings.draft_model,
            batch_size=batch or settings.draft_batch,
            scope="all" if redraft else "uncaptioned",
            overwrite_edited=overwrite_edited,
            worker=worker,
        )
        job_id, total = job.id, job.total
        assert job_id is not None
    typer.echo(f"job {job_id}: drafting {total} image(s) with {job.engine} {job.model}", err=True)
    try:
        drafter = open_engine(
            settings, engine=job.engine, model=job.model, batch_size=job.batch_size
        )
    except DraftError as e:
        jobs.mark_failed(db, job_id, e.message)
        raise fail(e.message) from None

    def show(p: jobs.Progress) -> None:
        j = p.job
        rate = f" · {p.rate:.2f} images/s" if p.rate else ""
        eta = f" · ETA {p.eta_s:.0f} s" if p.eta_s is not None else ""
        typer.echo(f"drafted {j.done + j.failed + j.skipped}/{j.total}{rate}{eta}", err=True)

    try:
        ended = pipeline.run_job(
            db,
            job_id=job_id,
            engine=drafter,
            store=content_store(settings),
            max_pixels=settings.draft_max_pixels,
            worker=worker,
            on_progress=show,
        )
    except KeyboardInterrupt:
        with Session(db) as session:
            jobs.cancel_job(session, jobs.get_job(session, job_id))
        raise fail(f"cancelled; the drafts made so far are kept (job {job_id})") from None
    finally:
        drafter.close()
    with Session(db) as session:
        for item, image in jobs.items(session, jobs.get_job(session, job_id)):
            if item.error and item.status.value in ("failed", "skipped"):
                typer.echo(f"{item.status.value:8} {image.filename}: {item.error}")
    p = jobs.progress(ended)
    rate = f", {p.rate:.2f} images/s" if p.rate else ""
    typer.echo(
        f"job {job_id} {ended.status.value}: {ended.done} drafted, {ended.failed} failed, "
        f"{ended.skipped} kept as they were{rate}."
    )
    if ended.error:
        raise fail(ended.error)


@cli.command("export")
@user_errors
def export(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name")],
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write into, such as an AI-Toolkit checkout")
    ],
    profile: Annotated[
        ProfileOption, typer.Option(help="Your GPU's memory: tunes the training YAML")
    ] = ProfileOption.p24,
    dialect: Annotated[DialectOption, typer.Option(help="Caption dialect")] = (
        DialectOption.official
    ),
    trigger_placement: Annotated[
        PlacementOption,
        typer.Option(
            help="aesthetics: [trigger] at the start of style_description.aesthetics (the "
            "trainer then still reads the JSON); prefix: the trainer prepends the word, and "
            "stops treating captions as JSON; none"
        ),
    ] = PlacementOption.aesthetics,
    max_side: Annotated[
        int, typer.Option(help="Shrink larger images to this many pixels (0: keep)", min=0)
    ] = 0,
    keep_alpha: Annotated[bool, typer.Option(help="Keep transparency instead of white")] = False,
    zip_: Annotated[bool, typer.Option("--zip", help="Write OUT/<slug>.zip instead")] = False,
    force: Annotated[bool, typer.Option(help="Export despite lint errors")] = False,
    data_dir: DataDir = None,
) -> None:
    """Export PNG+JSON pairs and a training YAML where AI-Toolkit reads them."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.db import make_engine, migrate
    from app.export.writer import ExportOptions, ExportRefused, export_dataset
    from app.images.importer import content_store

    settings = settings_for(data_dir)
    db = make_engine(settings)
    migrate(db)
    if trigger_placement is PlacementOption.prefix:
        typer.secho(
            "warning: with the trigger word prefixed, the trainer no longer reads the captions "
            "as JSON (it normalises only text that starts with '{').",
            err=True,
            fg=typer.colors.YELLOW,
        )
    with Session(db) as session:
        target = ds.find_dataset(session, dataset)
        options = ExportOptions(
            profile=profile.value,
            dialect=dialect.value,  # type: ignore[arg-type]
            trigger_placement=trigger_placement.value,  # type: ignore[arg-type]
            max_side=max_side,
            keep_alpha=keep_alpha,
            force=force,
        )
        try:
            report = export_dataset(
                session,
                settings=settings,
                store=content_store(settings),
                dataset=target,
                out_dir=out,
                options=options,
                as_zip=zip_,
            )
        except ExportRefused as e:
            for f in e.extra.get("findings", []):
                if f["severity"] == "error":
                    typer.echo(f"error    {f['image'] or '(dataset)'}: {f['message']}", err=True)
            raise
    for w in report.warnings:
        typer.echo(f"warning  {w.image or '(dataset)'}: {w.message}", err=True)
    for name in report.skipped:
        typer.echo(f"skipped  {name}: no caption", err=True)
    where = report.zip_path or report.dataset_dir
    typer.echo(
        f"exported {report.images} images ({report.copied} PNGs copied as they were) to "
        f"{where} in {report.seconds:.1f} s"
    )
    if report.config_path:
        typer.echo(f"training config: {report.config_path}")
        typer.echo(
            f"train with: cd {out.resolve()} && python run.py config/{report.config_path.name}"
        )


@cli.command("lint")
@user_errors
def lint(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name")],
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of findings")] = False,
    data_dir: DataDir = None,
) -> None:
    """Check a dataset is ready to train: errors stop an export, warnings are worth a look."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.db import make_engine, migrate
    from app.lint import as_json as findings_json
    from app.lint import lint_dataset

    db = make_engine(settings_for(data_dir))
    migrate(db)
    with Session(db) as session:
        findings = lint_dataset(session, dataset=ds.find_dataset(session, dataset))
    if as_json:
        typer.echo(findings_json(findings))
    else:
        for f in findings:
            typer.echo(f"{f.severity:8} {f.code:18} {f.image or '(dataset)'}: {f.message}")
        errors = sum(f.severity == "error" for f in findings)
        typer.echo(f"{errors} error(s), {len(findings) - errors} warning(s)")
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(code=1)


@cli.command("datasets")
@user_errors
def list_datasets(data_dir: DataDir = None) -> None:
    """List datasets with their image counts."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.db import make_engine, migrate

    engine = make_engine(settings_for(data_dir))
    migrate(engine)
    with Session(engine) as session:
        summaries = ds.list_summaries(session)
    if not summaries:
        typer.echo("No datasets yet.")
        return
    typer.echo(f"{'NAME':30} {'IMAGES':>6} {'APPROVED':>8} {'REVIEW':>6} {'DRAFT':>6}  TRIGGER")
    for s in summaries:
        c = s.status_counts
        typer.echo(
            f"{s.dataset.name[:30]:30} {s.image_count:>6} {c['approved']:>8} "
            f"{c['needs_review']:>6} {c['draft']:>6}  {s.dataset.trigger_word}"
        )


def main() -> None:
    cli()
