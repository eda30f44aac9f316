"""Token mode for network binds, and the Origin check on state-changing requests."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "atelier_token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = {"/login", "/healthz"}
# JSON and form bodies (captions, settings) are small; uploads (multipart) are limited per
# file by the importer instead.
MAX_BODY_BYTES = 16 * 1024 * 1024


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class SecurityMiddleware:
    """Refuses cross-origin writes; with a token set, refuses requests that do not carry it."""

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is None and request.method in UNSAFE_METHODS:
            refusal, receive = await _bounded_body(request, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        if request.method in UNSAFE_METHODS and not same_origin(request):
            return _deny(403, "Cross-origin requests may not change anything here.")
        if (
            self.token is None
            or request.url.path in OPEN_PATHS
            or request.url.path.startswith("/static/")
        ):
            return None
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if token_matches(bearer, self.token) or token_matches(
            request.cookies.get(TOKEN_COOKIE), self.token
        ):
            return None
        if request.method == "GET" and _wants_html(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return _deny(401, "This Atelier requires a token: send 'Authorization: Bearer <token>'.")


async def _bounded_body(request: Request, receive: Receive) -> tuple[Response | None, Receive]:
    """Refuses a non-upload body over MAX_BODY_BYTES before the app reads it into memory."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return None, receive
    too_big = _deny(413, f"The request body is over {MAX_BODY_BYTES // 2**20} MB: refused.")
    length = request.headers.get("content-length")
    if length is not None:
        return (too_big if not length.isdigit() or int(length) > MAX_BODY_BYTES else None), receive
    # No length given (chunked): read it here, within the bound, and hand it on.
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY_BYTES:
            return too_big, receive
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return None, replay


def same_origin(request: Request) -> bool:
    """False when a browser says the request comes from another site."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        fetch_site = request.headers.get("sec-fetch-site")
        return fetch_site in (None, "same-origin", "none") and origin != "null"
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.lower()


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def _deny(status: int, message: str) -> Response:
    return JSONResponse({"detail": message}, status_code=status)


def local_path(url: str) -> str:
    """The URL if it is a path on this site, else '/': redirects never leave the app."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"
