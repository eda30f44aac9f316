"""One way to answer with a page: htmx gets the block it swaps, everyone else the full page."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from app.web.templating import templates


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request (so it swaps the answer in, rather than showing it)."""
    return bool(request.headers.get("hx-request"))


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    block: str | None = None,
    status_code: int = 200,
) -> Response:
    """The template's `block` for htmx when one is named; the whole template otherwise."""
    if block is not None and is_htmx(request):
        return templates.TemplateResponse(
            request, template, context, block_name=block, status_code=status_code
        )
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def see_other(url: str) -> RedirectResponse:
    """A 303 to `url`: after a plain form's post, the browser gets the page anew."""
    return RedirectResponse(url, status_code=303)
