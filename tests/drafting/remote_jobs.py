"""A dataset drafted through the openai engine against fake servers, in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine as DBEngine
from sqlmodel import Session

from app import datasets as ds
from app.config import Settings
from app.db import make_engine, migrate
from app.drafting import jobs, pipeline
from app.drafting.open_engine import open_engine
from app.engines.interface import Engine
from app.images.importer import import_sources
from app.images.sources import walk_paths
from app.images.store import content_store
from app.models import DraftJob
from tests import imagefiles as f


def remote_settings(tmp: Path, urls: list[str], **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp / "data",
        "import_workers": 2,
        "draft_engine": "openai",
        "draft_model": "qwen2-vl-7b",
        "draft_base_url": ",".join(urls),
    }
    return Settings(**(values | kw), _env_file=None)  # type: ignore[call-arg]


def claimed_job(
    db: DBEngine, settings: Settings, folder: Path, *, images: int, name: str = "Remote"
) -> int:
    """`images` pictures written to `folder`, imported into a new dataset, and a job drafting
    them all claimed by this process; its id."""
    folder.mkdir(exist_ok=True)
    for i in range(images):
        f.jpeg(folder / f"{i:02d}.jpg", i, (480 + 40 * i, 360))
    with Session(db) as session:
        dataset = ds.create_dataset(session, name=name, trigger_word="rmx style")
        sources, _ = walk_paths([folder])
        import_sources(session, settings=settings, dataset=dataset, sources=sources)
        job = jobs.create_job(
            session,
            dataset=dataset,
            engine="openai",
            model=settings.draft_model,
            batch_size=0,
            worker=jobs.worker_id(),
        )
        assert job.id is not None
        return job.id


def run(db: DBEngine, settings: Settings, job_id: int, engine: Engine) -> DraftJob:
    """The claimed job run to its end by `engine`."""
    return pipeline.run_job(
        db,
        job_id=job_id,
        engine=engine,
        store=content_store(settings),
        max_pixels=settings.draft_max_pixels,
    )


def draft_dataset(
    tmp: Path, urls: list[str], *, images: int = 4, settings: Settings | None = None
) -> tuple[DraftJob, Settings]:
    """Imports `images` pictures into a new dataset and drafts them all; the job as it ended."""
    settings = settings or remote_settings(tmp, urls)
    db = make_engine(settings)
    migrate(db)
    try:
        job_id = claimed_job(db, settings, tmp / "src", images=images)
        engine = open_engine(settings)
        try:
            ended = run(db, settings, job_id, engine)
        finally:
            engine.close()
        return ended, settings
    finally:
        db.dispose()
