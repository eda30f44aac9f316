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

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Atelier: curate a style-LoRA dataset, caption it, export it for AI-Toolkit.",
)


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
