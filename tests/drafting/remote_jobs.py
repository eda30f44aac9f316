"""A dataset drafted through the openai engine against fake servers, in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session

from app import datasets as ds
from app.config import Settings
from app.db import make_engine, migrate
from app.drafting import jobs, pipeline
from app.drafting.open_engine import open_engine
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


def draft_dataset(
    tmp: Path, urls: list[str], *, images: int = 4, settings: Settings | None = None
) -> tuple[DraftJob, Settings]:
    """Imports `images` pictures into a new dataset and drafts them all; the job as it ended."""
    settings = settings or remote_settings(tmp, urls)
    db = make_engine(settings)
    migrate(db)
    folder = tmp / "src"
    folder.mkdir(exist_ok=True)
    for i in range(images):
        f.jpeg(folder / f"{i:02d}.jpg", i, (480 + 40 * i, 360))
    try:
        with Session(db) as session:
            dataset = ds.create_dataset(session, name="Remote", trigger_word="rmx style")
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
            job_id = job.id
        engine = open_engine(settings)
        try:
            ended = pipeline.run_job(
                db,
                job_id=job_id,
                engine=engine,
                store=content_store(settings),
                max_pixels=settings.draft_max_pixels,
            )
        finally:
            engine.close()
        return ended, settings
    finally:
        db.dispose()
