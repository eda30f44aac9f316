"""The app's exception handlers: a refusal is a sentence, as JSON, as an htmx event or a page."""

from __future__ import annotations

import errno
import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError

from app.errors import Invalid, UserError
from app.web.render import is_htmx
from app.web.templating import templates


def add_handlers(app: FastAPI) -> None:
    """Attaches the handlers for what a user can get wrong."""
    app.add_exception_handler(UserError, user_error)  # type: ignore[arg-type]
    app.add_exception_handler(OverflowError, out_of_range)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(OSError, disk_full)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, disk_full)  # type: ignore[arg-type]


class DiskFull(UserError):
    status_code = 507


async def disk_full(request: Request, exc: OSError | OperationalError) -> Response:
    """A write that found the disk full, as a sentence naming the disk; anything else stays
    the server error it is."""
    data_dir = request.app.state.settings.data_dir.resolve()
    if isinstance(exc, OperationalError):
        if "database or disk is full" not in str(exc.orig):
            raise exc
        where = data_dir
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        written = Path(exc.filename).resolve() if exc.filename else data_dir
        where = data_dir if written.is_relative_to(data_dir) else written.parent
    else:
        raise exc
    return await user_error(
        request,
        DiskFull(
            f"The disk holding {where} is full: this request saved nothing (what was saved "
            "before is kept). Free some space on it, then try again."
        ),
    )


async def user_error(request: Request, exc: UserError) -> Response:
    if _is_api(request):
        return JSONResponse({"detail": exc.message, **exc.extra}, status_code=exc.status_code)
    if is_htmx(request):
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


async def out_of_range(request: Request, exc: OverflowError) -> Response:
    # SQLite integers are 64-bit; a larger id or number can name nothing stored.
    return await user_error(
        request, Invalid("A number in this request is out of range (the largest is 2^63-1).")
    )


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


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")
