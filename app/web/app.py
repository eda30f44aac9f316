"""Builds the FastAPI app: migrations run, stores ready, routes and middleware attached."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine, migrate
from app.drafting.worker import DraftWorker
from app.errors import Invalid, UserError
from app.images.catalog import collect_garbage
from app.images.store import content_store
from app.training.jobs import TrainSupervisor
from app.web import api, caption_api, dataset_edits, drafting, editor, export, pages, training
from app.web.security import SecurityMiddleware, Throttle
from app.web.templating import templates
from app.web.timing import ServerTiming
from app.web.uploads import remove_leftovers

STATIC_DIR = Path(__file__).resolve().parent.parent.parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, over the data folder the settings name."""
    settings = settings or Settings()
    engine = make_engine(settings)
    migrate(engine)
    store = content_store(settings)
    remove_leftovers(settings)  # uploads a killed server was receiving
    with Session(engine) as session:
        collect_garbage(session, store=store)
    worker = DraftWorker(db=engine, settings=settings)
    trainer = TrainSupervisor(db=engine, settings=settings)

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
    app.state.engine = engine
    app.state.store = store
    app.state.draft_worker = worker
    app.state.throttle = Throttle()
    app.add_middleware(SecurityMiddleware, token=settings.token, throttle=app.state.throttle)
    app.add_middleware(ServerTiming)  # outermost: counts the security checks too
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api.router)
    app.include_router(caption_api.router)
    app.include_router(pages.router)
    app.include_router(editor.router)
    app.include_router(dataset_edits.router)
    app.include_router(drafting.router)
    app.include_router(export.router)
    app.include_router(training.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        return templates.TemplateResponse(request, "api_docs.html", {"spec": app.openapi()})

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": exc.message, **exc.extra}, status_code=exc.status_code)
        if request.headers.get("hx-request"):
            # Swap nothing; static/js/notify.js shows the sentence where the user is.
            return Response(
                status_code=exc.status_code,
                headers={
                    "HX-Reswap": "none",
                    "HX-Trigger": json.dumps({"atelier:error": {"message": exc.message}}),
                },
            )
        return templates.TemplateResponse(
            request, "error.html", {"message": exc.message}, status_code=exc.status_code
        )

    @app.exception_handler(OverflowError)
    async def out_of_range(request: Request, exc: OverflowError) -> Response:
        # SQLite integers are 64-bit; a larger id or number can name nothing stored.
        return await user_error(
            request, Invalid("A number in this request is out of range (the largest is 2^63-1).")
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        sentence = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        if _is_api(request):
            return JSONResponse(
                {"detail": f"Invalid request: {sentence}.", "errors": errors}, status_code=422
            )
        return templates.TemplateResponse(
            request, "error.html", {"message": f"Invalid request: {sentence}."}, status_code=422
        )

    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")
