"""Logging in: the token form, and the cookie that carries the token afterwards."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from app.web.deps import SettingsDep
from app.web.render import render, see_other
from app.web.security import TOKEN_COOKIE, client_key, local_path, token_matches

router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": local_path(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=4096)] = "",
    next: Annotated[str, Form(max_length=4096)] = "/",
) -> Response:
    # A missing token is answered as a wrong one, after the same penalty (security.Throttle).
    if settings.token is None or not token_matches(token, settings.token):
        await request.app.state.throttle.refused(client_key(request), "/login")
        return render(
            request,
            "login.html",
            {"next": local_path(next), "error": "That token is not right."},
            status_code=401,
        )
    request.app.state.throttle.succeeded(client_key(request))
    response = see_other(local_path(next))
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response
