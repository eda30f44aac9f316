"""The `atelier` command: serve the app, import images, list datasets."""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import IO, Annotated, Any, TypeVar, get_args

import typer
from pydantic import ValidationError

from app.captions.dialects import BoxFormat
from app.config import Settings, is_exposed_host
from app.engines.interface import ENGINE_NAMES
from app.export.caption_file import Dialect, TriggerPlacement
from app.export.profiles import PROFILES

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Atelier: curate a style-LoRA dataset, caption it, export it for AI-Toolkit.",
)


# Typer lists an Enum's values, not a Literal's: each choice is made of the domain's own.
EngineOption = StrEnum("EngineOption", {v: v for v in ENGINE_NAMES})  # type: ignore[misc]
ProfileOption = StrEnum("ProfileOption", {v: v for v in PROFILES})  # type: ignore[misc]
DialectOption = StrEnum("DialectOption", {v: v for v in get_args(Dialect)})  # type: ignore[misc]
PlacementOption = StrEnum(  # type: ignore[misc]
    "PlacementOption", {v: v for v in get_args(TriggerPlacement)}
)
BoxFormatOption = StrEnum("BoxFormatOption", {v: v for v in get_args(BoxFormat)})  # type: ignore[misc]
DEFAULT_PROFILE = ProfileOption("24gb")
DEFAULT_DIALECT = DialectOption("official")
DEFAULT_PLACEMENT = PlacementOption("aesthetics")


T = TypeVar("T")
DatasetName = Annotated[str, typer.Option("--dataset", help="Dataset name")]
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


def open_database(data_dir: Path | None) -> tuple[Settings, Any]:
    """The settings for `data_dir`, and its database, migrated to the newest schema."""
    from app.db import make_engine, migrate

    settings = settings_for(data_dir)
    db = make_engine(settings)
    migrate(db)
    return settings, db


def read_dataset(data_dir: Path | None, name: str, read: Callable[[Any, Any], T]) -> T:
    """`read(session, dataset)` for the dataset named `name` in `data_dir`'s database (a
    user error naming it where there is none)."""
    from sqlmodel import Session

    from app import datasets as ds

    _, db = open_database(data_dir)
    with Session(db) as session:
        return read(session, ds.find_dataset(session, name))


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
        typer.Option(
            help="The token every request must carry; better ATELIER_TOKEN or --token-file, "
            "as an argument shows in the process list"
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="A file whose first line is the token [env: ATELIER_TOKEN_FILE]"),
    ] = None,
) -> None:
    """Start the web app."""
    if token is not None:
        typer.secho(
            "warning: a token given with --token shows in the process list (/proc/PID/cmdline, "
            "readable by every user of this machine): set ATELIER_TOKEN or use --token-file.",
            err=True,
            fg=typer.colors.YELLOW,
        )
    settings = settings_for(data_dir, host=host, port=port, token=token, token_file=token_file)
    if is_exposed_host(host) and not settings.token:
        raise fail(
            f"binding {host} exposes Atelier to the network; give it a token with ATELIER_TOKEN "
            "or --token-file (every request must then carry it)"
        )
    if settings.token is not None and len(settings.token) < 16:
        raise fail("the token must be at least 16 characters long")
    if settings.token_file is not None and settings.token_file.stat().st_mode & 0o077:
        typer.secho(
            f"warning: other users of this machine may read the token file "
            f"{settings.token_file}: chmod 600 it.",
            err=True,
            fg=typer.colors.YELLOW,
        )

    import uvicorn

    from app.web.app import create_app

    settings.prepare_dirs()
    # Held until this process ends (a kill included): a second server on the same data dir
    # would clear the first one's uploads in flight as it starts.
    lock = hold_data_dir(settings.data_dir, about=f"http://{_shown(host)}:{port}/")
    app = create_app(settings)
    typer.echo(f"Atelier on http://{_shown(host)}:{port}/  (data: {settings.data_dir.resolve()})")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        lock.close()


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


LOCK_FILE = "atelier.lock"


def hold_data_dir(data_dir: Path, *, about: str) -> IO[str]:
    """The data dir's lock file, locked for this process (the lock goes when it ends); a sentence
    naming the process that holds it instead, when another server already serves this dir."""
    import fcntl
    import json
    import os
    import time

    f = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        try:
            other = json.loads(f.read() or "{}")
        except ValueError:
            other = {}
        f.close()
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(other.get("started", 0)))
        who = (
            f"process {other.get('pid')} ({other.get('url')}, since {since})"
            if other.get("pid")
            else "another process"
        )
        raise fail(
            f"the data dir {data_dir.resolve()} is in use by another Atelier: {who}. Stop it "
            "first, or give this one another --data-dir."
        ) from None
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "url": about, "started": time.time()}))
    f.flush()
    return f


@cli.command("import")
@user_errors
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders (recursive)")],
    dataset: DatasetName,
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
    from app.errors import NotFound
    from app.images.importer import import_sources
    from app.images.sources import walk_paths

    settings, db = open_database(data_dir)
    sources, skipped = walk_paths(paths)
    with Session(db) as session:
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
            bbox_format=bbox_format.value if bbox_format else None,  # type: ignore[arg-type]
        )
    for o in report.of("duplicate"):
        typer.echo(f"duplicate  {o.filename}: {o.reason} (image {o.duplicate_of})")
    for o in report.of("refused"):
        typer.echo(f"refused    {o.filename}: {o.reason}")
    imported = report.of("imported")
    for o in imported:
        if o.caption and o.caption != "read":
            typer.echo(f"caption    {o.filename}: {o.caption}")
        if o.transparency:
            typer.echo(f"transparent {o.filename}: {o.transparency}")
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
    dataset: DatasetName,
    engine: Annotated[
        EngineOption | None, typer.Option(help="local (this machine's GPU) or openai (a server)")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face id or local folder [default: the model chosen on the drafting "
            "card, else ATELIER_DRAFT_MODEL]"
        ),
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
    from app.drafting import choice, jobs, pipeline
    from app.drafting.open_engine import open_engine
    from app.engines.interface import DraftError
    from app.images.store import content_store

    settings, db = open_database(data_dir)
    worker = jobs.worker_id()
    with Session(db) as session:
        target = ds.find_dataset(session, dataset)
        chosen = choice.current(session, settings)  # the drafting card's, else the settings'
        kind = engine.value if engine else chosen.engine
        job = jobs.create_job(
            session,
            dataset=target,
            engine=kind,
            model=model or (chosen.model if kind == chosen.engine else settings.draft_model),
            batch_size=batch or settings.draft_batch,
            scope="all" if redraft else "uncaptioned",
            overwrite_edited=overwrite_edited,
            worker=worker,
            base_url=chosen.base_url if kind == "openai" and chosen.from_page else None,
        )
        job_id, total = job.id, job.total
        assert job_id is not None
    typer.echo(f"job {job_id}: drafting {total} image(s) with {job.engine} {job.model}", err=True)
    try:
        drafter = open_engine(
            settings,
            engine=job.engine,
            model=job.model,
            batch_size=job.batch_size,
            base_url=job.base_url,
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
    dataset: DatasetName,
    out: Annotated[
        Path, typer.Option("--out", help="Folder to write into, such as an AI-Toolkit checkout")
    ],
    profile: Annotated[
        ProfileOption, typer.Option(help="Your GPU's memory: tunes the training YAML")
    ] = DEFAULT_PROFILE,
    dialect: Annotated[DialectOption, typer.Option(help="Caption dialect")] = DEFAULT_DIALECT,
    trigger_placement: Annotated[
        PlacementOption,
        typer.Option(
            help="aesthetics: [trigger] at the start of style_description.aesthetics (the "
            "trainer then still reads the JSON); prefix: the trainer prepends the word, and "
            "stops treating captions as JSON; none"
        ),
    ] = DEFAULT_PLACEMENT,
    max_side: Annotated[
        int, typer.Option(help="Shrink larger images to this many pixels (0: keep)", min=0)
    ] = 0,
    keep_alpha: Annotated[
        bool,
        typer.Option(
            help="Keep transparency, as a loss mask (alpha_mask: true): transparent areas are "
            "not trained on. Without it transparency is flattened on white"
        ),
    ] = False,
    zip_: Annotated[bool, typer.Option("--zip", help="Write OUT/<slug>.zip instead")] = False,
    force: Annotated[
        bool, typer.Option(help="Export despite lint errors (and in the guide's dialect)")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Export PNG+JSON pairs and a training YAML where AI-Toolkit reads them."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.export.writer import ExportOptions, ExportRefused, export_dataset
    from app.images.store import content_store

    settings, db = open_database(data_dir)
    if trigger_placement == "prefix":
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
            e.message = e.told("export anyway with --force")
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
    if report.dataset_dir:
        typer.echo(
            f"stale trainer cache entries removed: {report.stale_cache} (their file names now "
            "hold other images)"
        )
    if report.config_path:
        typer.echo(f"training config: {report.config_path}")
        typer.echo(
            f"train with: cd {out.resolve()} && python run.py config/{report.config_path.name}"
        )


@cli.command("lint")
@user_errors
def lint(
    dataset: DatasetName,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of findings")] = False,
    data_dir: DataDir = None,
) -> None:
    """Check a dataset is ready to train: errors stop an export, warnings are worth a look."""
    from app.export.lint import as_json as findings_json
    from app.export.lint import lint_dataset

    findings = read_dataset(data_dir, dataset, lambda s, d: lint_dataset(s, dataset=d))
    if as_json:
        typer.echo(findings_json(findings))
    else:
        for f in findings:
            typer.echo(f"{f.severity:8} {f.code:18} {f.image or '(dataset)'}: {f.message}")
        errors = sum(f.severity == "error" for f in findings)
        typer.echo(f"{errors} error(s), {len(findings) - errors} warning(s)")
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(code=1)


@cli.command("draft-report")
@user_errors
def draft_report(
    dataset: DatasetName,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """How good the drafts were: each reviewed draft against what was kept, per model."""
    import json

    from app.drafting.report import draft_report as report_of
    from app.drafting.report import prompt_label

    groups = read_dataset(data_dir, dataset, lambda s, d: report_of(s, dataset=d))
    if as_json:
        rows = [g.as_dict() | {"prompt_label": prompt_label(g.prompt)} for g in groups]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not groups:
        typer.echo("No reviewed drafts yet: edit or approve some drafts, then ask again.")
        return

    def num(value: float | None, fmt: str = "{:.2f}") -> str:
        return "-" if value is None else fmt.format(value)

    for g in groups:
        typer.echo(f"{g.model} ({g.engine}, {prompt_label(g.prompt)})")
        typer.echo(f"  reviewed drafts        {g.images} ({g.kept_unchanged} kept as drafted)")
        typer.echo(f"  boxes kept in place    {num(g.mean_box_iou)} mean IoU")
        typer.echo(f"  elements added/image   {num(g.added_per_image)}")
        typer.echo(f"  elements removed/image {num(g.removed_per_image)}")
        typer.echo(
            f"  transcriptions         {num(g.mean_char_error_rate)} character error rate"
            f" ({g.transcriptions} read)"
        )
        typer.echo(f"  palette                {num(g.mean_palette_delta_e, '{:.1f}')} CIEDE2000")
        for name, share in g.rewritten():
            typer.echo(f"  rewritten: {name:22} {share:.0%} of images")


@cli.command("doubts")
@user_errors
def doubts_list(
    dataset: DatasetName,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many images")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="The list as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """Which drafts to check first: the parts the model was least sure of, and second
    readings of text that differ from the draft, least sure first."""
    import json

    from app.captions.review_first import to_check

    images = read_dataset(data_dir, dataset, lambda s, d: to_check(s, dataset=d, limit=limit))
    if as_json:
        typer.echo(json.dumps(images, indent=2))
        return
    if not images:
        typer.echo("Nothing to check first: no draft has an unsure part or a differing reading.")
        return
    for image in images:
        typer.echo(f"{image['filename']} (image {image['id']}, {image['status']})")
        for d in image["shown"]:
            typer.echo(f"  {d['where']:28} least {d['least']:.2f}, mean {d['mean']:.2f}")
        for r in image["readings_that_differ"]:
            read = "nothing" if not (r["read"] or "").strip() else json.dumps(r["read"])
            typer.echo(
                f"  element {r['element']} text{'':15} drafted {json.dumps(r['drafted'])}, "
                f"read again {read} (character error rate {r['cer']:.2f})"
            )


@cli.command("spelling")
@user_errors
def spelling_check(
    job_id: Annotated[int | None, typer.Option("--job", help="Training job")] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Any AI-Toolkit run folder instead of a job's")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Which checkpoint still spells right: each step's sample text, read back and scored."""
    from sqlmodel import Session

    from app.drafting import choice
    from app.drafting.open_engine import open_engine
    from app.training import jobs, runs, spelling
    from app.training.board import open_run

    settings, db = open_database(data_dir)
    with Session(db) as session:
        if job_id is not None:
            job = jobs.get_job(session, job_id)
            run_dir, recorded = Path(job.run_dir), job.config_yaml
        elif run is not None:
            run_dir, recorded = open_run(settings, str(run.expanduser().resolve())), None
        else:
            raise fail("Say which run: --job or --run.")
        chosen = choice.current(session, settings)  # the drafting card's, else the settings'
    config = runs.read_config(run_dir, recorded)
    if config is None or not spelling.targets(config):
        raise fail(f"No sample prompt of {run_dir} holds text: there is nothing to spell.")
    engine = open_engine(
        settings, engine=chosen.engine, model=chosen.model, base_url=chosen.base_url
    )
    try:
        results = spelling.check_run(
            run_dir=run_dir,
            config=config,
            training_dir=settings.training_dir,
            read=engine.read_texts,
        )
    except ValueError as e:
        raise fail(str(e)) from None
    finally:
        engine.close()
    for s in spelling.by_step(results):
        accuracy = "-" if s.accuracy is None else f"{s.accuracy:.0%}"
        blocked = f", {s.blocked} blocked" if s.blocked else ""
        mark = "  <- the text falls here" if s.falls else ""
        typer.echo(
            f"step {s.step:>6}  text read back right {accuracy:>5}  "
            f"({s.samples} samples{blocked}){mark}"
        )


@cli.command("palettes")
@user_errors
def palettes(
    dataset: DatasetName,
    undo: Annotated[
        str | None, typer.Option("--undo", help="Undo the fill of this batch instead")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Fill the palettes captions lack from the pixels, in one batch that can be undone."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.captions import dataset_edits as edits
    from app.images.palettes import empty_filler
    from app.images.store import content_store

    settings, db = open_database(data_dir)
    with Session(db) as session:
        found = ds.find_dataset(session, dataset)
        if undo is not None:
            undone = edits.undo_batch(session, dataset=found, batch=undo)
            typer.echo(f"Undone: {undone.changed} caption(s) back as they were.")
            return
        missing = edits.without_palette(session, dataset=found)
        applied = edits.apply_palettes(
            session, dataset=found, fill=empty_filler(content_store(settings)), previewed=missing
        )
    typer.echo(f"Filled the palettes of {applied.changed} captions from their pixels.")
    if applied.batch:
        typer.echo(f"undo with: atelier palettes --dataset {dataset!r} --undo {applied.batch}")


@cli.command("datasets")
@user_errors
def list_datasets(data_dir: DataDir = None) -> None:
    """List datasets with their image counts."""
    from sqlmodel import Session

    from app import datasets as ds

    _, db = open_database(data_dir)
    with Session(db) as session:
        summaries = ds.list_summaries(session)
    if not summaries:
        typer.echo("No datasets yet.")
        return
    typer.echo(
        f"{'NAME':30} {'IMAGES':>6} {'APPROVED':>8} {'REVIEW':>6} {'EDITED':>6} {'DRAFT':>6}"
        "  TRIGGER"
    )
    for s in summaries:
        c = s.status_counts
        typer.echo(
            f"{s.dataset.name[:30]:30} {s.image_count:>6} {c['approved']:>8} "
            f"{c['needs_review']:>6} {c['edited']:>6} {c['draft']:>6}  {s.dataset.trigger_word}"
        )


@cli.command("train")
@user_errors
def train(
    dataset: DatasetName,
    profile: Annotated[
        ProfileOption, typer.Option(help="Your GPU's memory: tunes the training YAML")
    ] = DEFAULT_PROFILE,
    steps: Annotated[
        int | None,
        typer.Option(help="Training steps [default: the profile's: 2,500 images seen]", min=1),
    ] = None,
    save_every: Annotated[
        int | None,
        typer.Option(help="Save (and sample) every N steps [default: every 250 images]", min=1),
    ] = None,
    aitk_dir: Annotated[
        Path | None,
        typer.Option("--aitk-dir", help="AI-Toolkit checkout [default: ATELIER_AITK_DIR]"),
    ] = None,
    python: Annotated[
        Path | None,
        typer.Option(help="Python of AI-Toolkit's venv [default: ATELIER_AITK_PYTHON or its venv]"),
    ] = None,
    detach: Annotated[
        bool, typer.Option(help="Start it and return; the run goes on without this command")
    ] = False,
    force: Annotated[bool, typer.Option(help="Export despite lint errors")] = False,
    data_dir: DataDir = None,
) -> None:
    """Export into the AI-Toolkit checkout and train there, following it until it ends."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.images.store import content_store
    from app.training import jobs

    settings, db = open_database(data_dir)
    with Session(db) as session:
        job = jobs.start_training(
            session,
            settings=settings,
            store=content_store(settings),
            dataset=ds.find_dataset(session, dataset),
            profile=profile.value,
            steps=steps,
            save_every=save_every,
            checkout_dir=str(aitk_dir) if aitk_dir else None,
            python=str(python) if python else None,
            force=force,
        )
    typer.echo(f"job {job.id}: training in {job.checkout} (pid {job.pid}, log {job.log_path})")
    typer.echo(f"run folder: {job.run_dir}")
    if detach:
        typer.echo(f"follow it with: atelier runs; stop it with: atelier stop {job.id}")
        return
    _follow(db, settings, job.id)  # type: ignore[arg-type]


def _follow(db: Any, settings: Settings, job_id: int) -> None:
    import time

    from sqlmodel import Session

    from app.models import TrainStatus
    from app.training import jobs

    shown = ""
    stopping = False
    while True:
        try:
            with Session(db) as session:
                job = jobs.refresh(session, settings=settings, job=jobs.get_job(session, job_id))
                if job.status not in jobs.ACTIVE:
                    break
                line = _progress_line(jobs.progress(job))
                if line != shown:
                    typer.echo(line, err=True)
                    shown = line
            time.sleep(1)
        except KeyboardInterrupt:
            if stopping:
                typer.echo(f"left job {job_id} stopping; see it with: atelier runs", err=True)
                return
            stopping = True
            typer.echo("stopping the training (Ctrl+C again to leave it)", err=True)
            with Session(db) as session:
                jobs.request_stop(session, settings=settings, job=jobs.get_job(session, job_id))
    if job.status is TrainStatus.failed:
        raise fail(job.error or "the training failed")
    typer.echo(f"job {job_id} {job.status.value} at step {job.last_step} of {job.total_steps}")
    if job.status is TrainStatus.done:
        typer.echo(f"pick a step with: atelier pick --job {job_id} --step N --to DIR")


def _progress_line(p: Any) -> str:
    if not p.total or p.step == 0 and p.rate is None:
        return p.phase
    parts = [f"step {p.step}/{p.total}"]
    if p.rate:
        parts.append(f"{p.rate:.2f} steps/s")
    if p.eta_s is not None:
        parts.append(f"{p.eta_s / 60:.0f} min left")
    if p.loss is not None:
        parts.append(f"loss {p.loss:.4f}")
    if p.gpu:
        parts.append(f"GPU {p.gpu}")
    return " · ".join(parts)


@cli.command("runs")
@user_errors
def list_runs(data_dir: DataDir = None) -> None:
    """List training jobs, newest first."""
    from sqlmodel import Session

    from app.models import Dataset
    from app.training import jobs

    settings, db = open_database(data_dir)
    with Session(db) as session:
        found = jobs.list_jobs(session)
        if not found:
            typer.echo("No training jobs yet.")
            return
        typer.echo(f"{'JOB':>4} {'DATASET':24} {'STATUS':9} {'STEP':>11}  RUN FOLDER")
        for job in found:
            job = jobs.refresh(session, settings=settings, job=job)
            dataset = session.get(Dataset, job.dataset_id)
            name = dataset.name if dataset else "?"
            step = f"{job.last_step}/{job.total_steps}"
            typer.echo(f"{job.id:>4} {name[:24]:24} {job.status.value:9} {step:>11}  {job.run_dir}")
            if job.error:
                typer.echo(f"     {job.error}")


@cli.command("stop")
@user_errors
def stop_run(
    job_id: Annotated[int, typer.Argument(help="The training job (see atelier runs)")],
    data_dir: DataDir = None,
) -> None:
    """Stop a training job cleanly (as Ctrl+C), killing it after the grace time."""
    import time

    from sqlmodel import Session

    from app.training import jobs

    settings, db = open_database(data_dir)
    with Session(db) as session:
        job = jobs.request_stop(session, settings=settings, job=jobs.get_job(session, job_id))
        deadline = time.monotonic() + settings.train_stop_grace_s + 5
        while job.status in jobs.ACTIVE and time.monotonic() < deadline:
            time.sleep(0.2)
            job = jobs.refresh(session, settings=settings, job=job)
    typer.echo(f"job {job_id} {job.status.value} at step {job.last_step} of {job.total_steps}")


@cli.command("pick")
@user_errors
def pick(
    step: Annotated[int, typer.Option("--step", help="The step whose LoRA to use", min=0)],
    to: Annotated[Path, typer.Option("--to", help="Folder to copy it into (ComfyUI models/loras)")],
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset name [default: the job's]")
    ] = None,
    job_id: Annotated[
        int | None, typer.Option("--job", help="Training job [default: the dataset's last]")
    ] = None,
    run: Annotated[
        Path | None, typer.Option("--run", help="Any AI-Toolkit run folder instead of a job's")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Copy one step's checkpoint out, named with the dataset and step, and record the choice."""
    from sqlmodel import Session

    from app import datasets as ds
    from app.errors import Invalid
    from app.models import Dataset
    from app.training import jobs
    from app.training import pick as picking

    settings, db = open_database(data_dir)
    with Session(db) as session:
        target = ds.find_dataset(session, dataset) if dataset else None
        recorded = None
        if run is None:
            if job_id is not None:
                job = jobs.get_job(session, job_id)
            elif target is not None:
                found = jobs.list_jobs(session, dataset_id=target.id, limit=1)
                if not found:
                    raise Invalid(f"{target.name} has no training job: name a run with --run.")
                job = found[0]
            else:
                raise Invalid("Say which run: --dataset, --job or --run.")
            run, recorded = Path(job.run_dir), job.config_yaml
            target = target or session.get(Dataset, job.dataset_id)
        if target is None:
            raise Invalid("Say which dataset the LoRA is for (--dataset).")
        chosen = picking.use_step(
            session,
            dataset=target,
            run_dir=run.expanduser().resolve(),
            step=step,
            to_dir=to.expanduser().resolve(),
            recorded_yaml=recorded,
        )
    typer.echo(f"step {step}: {chosen.checkpoint} copied to {chosen.copied_to}")


@cli.command("resume")
@user_errors
def resume_run(
    job_id: Annotated[int, typer.Argument(help="The training job (see atelier runs)")],
    more_steps: Annotated[
        int | None,
        typer.Option("--more-steps", help="Train this many steps beyond the run's end", min=1),
    ] = None,
    detach: Annotated[
        bool, typer.Option(help="Start it and return; the run goes on without this command")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Resume a stopped run from its newest save, or continue a finished one for more steps
    (same run folder, same board), following it until it ends."""
    from sqlmodel import Session

    from app.training import jobs

    settings, db = open_database(data_dir)
    with Session(db) as session:
        job = jobs.resume_training(
            session, settings=settings, job=jobs.get_job(session, job_id), more_steps=more_steps
        )
    typer.echo(
        f"job {job.id}: resuming the run of job {job_id} at step {job.last_step} of "
        f"{job.total_steps} (pid {job.pid}, log {job.log_path})"
    )
    if detach:
        typer.echo(f"follow it with: atelier runs; stop it with: atelier stop {job.id}")
        return
    _follow(db, settings, job.id)  # type: ignore[arg-type]


@cli.command("check-export")
@user_errors
def check_export(
    dataset: DatasetName,
    folder: Annotated[
        Path | None,
        typer.Option(
            help="Where it was exported (holding config/<slug>.yaml) [default: the checkout]"
        ),
    ] = None,
    aitk_dir: Annotated[
        Path | None,
        typer.Option("--aitk-dir", help="AI-Toolkit checkout [default: ATELIER_AITK_DIR]"),
    ] = None,
    python: Annotated[
        Path | None,
        typer.Option(help="Python of AI-Toolkit's venv [default: ATELIER_AITK_PYTHON or its venv]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as JSON")] = False,
    brief: Annotated[
        bool, typer.Option("--brief", help="One line each, without the encoder's text")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Run the trainer's own caption, trigger, bucket and sample-prompt code on the export
    (in the checkout's Python; no model, no GPU): what its text encoder will receive."""
    import json as json_

    from sqlmodel import Session

    from app import datasets as ds
    from app.training.checkout import resolve_checkout
    from app.training.trainer_check import check_export as run_check
    from app.training.trainer_check import export_config

    settings, db = open_database(data_dir)
    with Session(db) as session:
        target = ds.find_dataset(session, dataset)
    checkout = resolve_checkout(
        settings=settings, folder=str(aitk_dir) if aitk_dir else None,
        python=str(python) if python else None,
    )  # fmt: skip
    where = folder.expanduser().resolve() if folder else checkout.root
    report = run_check(checkout=checkout, config_path=export_config(where, target.slug))
    if as_json:
        typer.echo(json_.dumps(report.as_dict(), ensure_ascii=False, indent=1))
    else:
        typer.echo(f"trainer code: {checkout.root} run by {checkout.python}")
        if report.version_note:
            typer.secho(report.version_note, fg=typer.colors.YELLOW)
        for note in report.notes:
            typer.echo(f"note: {note}")
        if report.tokenizer_note:
            typer.echo(f"tokens: {report.tokenizer_note}; Atelier's own count is shown instead")
        for c in [*report.images, *report.samples]:
            mark = "DIFFERS" if c.differences else "same"
            size = ", ".join(f"{b.width}x{b.height}" for b in c.buckets)
            tokens = f"{c.tokens}{'' if c.tokens_exact else ' (estimate)'} tokens"
            kind = "JSON" if c.structured else "plain text"
            typer.echo(f"{c.name:10} {mark:7} {kind:10} {tokens:22} {size}")
            for d in c.differences:
                typer.echo(f"           {d}")
            if not brief:
                typer.echo(f"           encoder receives: {c.encoder_text}")
        typer.echo(
            f"{len(report.images)} captions and {len(report.samples)} sample prompts read by the "
            f"trainer's code; {report.differing} differ from what was saved"
        )
    if report.differing:
        raise typer.Exit(code=1)


def main() -> None:
    cli()
