"""Builds the FastAPI app: migrations run, stores ready, routes and middleware attached."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine, migrate
from app.drafting.worker import DraftWorker
from app.images.catalog import collect_garbage
from app.images.store import content_store
from app.training.jobs import TrainSupervisor
from app.web import (
    auth,
    captions,
    dataset_captions,
    datasets,
    draft_report,
    drafting,
    duplicates,
    export,
    images,
    spelling,
    training,
)
from app.web.errors import add_handlers
from app.web.security import SecurityMiddleware, Throttle
from app.web.templating import templates
from app.web.timing import ServerTiming
from app.web.uploads import remove_leftovers

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, over the data folder the settings name."""
    settings = settings or Settings()
    db = make_engine(settings)  # the database's (SQLAlchemy calls it an engine)
    migrate(db)
    store = content_store(settings)
    remove_leftovers(settings)  # uploads a killed server was receiving
    with Session(db) as session:
        collect_garbage(session, store=store)
    worker = DraftWorker(db=db, settings=settings)
    trainer = TrainSupervisor(db=db, settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The drafting process resumes any job a stopped server left unfinished.
        worker.start()
        trainer.start()  # re-attaches to training runs that outlived the last server
        yield
        trainer.stop()
        worker.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="Atelier",
        summary="Curate a style-LoRA dataset, caption it, export it for AI-Toolkit.",
        version="0.1.0",
        # The stock /docs pages load their scripts from a CDN; ours is rendered here, offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.store = store
    app.state.draft_worker = worker
    app.state.throttle = Throttle()
    app.add_middleware(
        SecurityMiddleware,
        token=settings.token,
        throttle=app.state.throttle,
        allowed_hosts=settings.allowed_hosts,
    )
    app.add_middleware(ServerTiming)  # outermost: counts the security checks too
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for feature in (
        datasets,
        images,
        captions,
        dataset_captions,
        duplicates,
        auth,
        drafting,
        draft_report,
        export,
        training,
        spelling,
    ):
        app.include_router(feature.router)
    add_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        return templates.TemplateResponse(request, "api_docs.html", {"spec": app.openapi()})

    return app
