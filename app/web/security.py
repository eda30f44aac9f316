"""Token mode for network binds, the Host allow-list against DNS rebinding, the Origin check
on state-changing requests, body limits, and the security headers every response carries."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import is_loopback_name

TOKEN_COOKIE = "atelier_token"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = {"/login", "/healthz", "/favicon.ico"}
# JSON and form bodies (captions, settings) are small, multipart ones included; only the two
# upload routes (app/web/images.py) take more, limited per file and per request as they stream.
MAX_BODY_BYTES = 16 * 1024 * 1024
UPLOAD_PATHS = re.compile(r"^/(api/datasets/\d+/images|datasets/\d+/import)$")
# The app's pages load their scripts and styles from /static only (htmx included); style
# attributes stay allowed for the positions templates compute (boxes, bars), which CSS
# cannot inject script through. No page may be framed: a framed form is a click away.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
REFUSED = "This Atelier requires a token: send 'Authorization: Bearer <token>'."

log = logging.getLogger("atelier.security")


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class _Client:
    failures: int = 0
    last: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Throttle:
    """Slows down one client's refused tokens: the first FREE_FAILURES are answered at once,
    each later one after twice the wait of the one before, at most MAX_WAIT_S, one at a time.

    The penalty is small and bounded on purpose: a right token is never delayed, and a client
    quiet for FORGET_S starts afresh, so it cannot lock the owner out for long; answered one at
    a time, it still turns a guessing script's thousands of tries a second into one every few
    seconds. Wrong and missing tokens count alike, and are answered alike."""

    FREE_FAILURES = 5
    FIRST_WAIT_S = 0.25
    MAX_WAIT_S = 4.0
    FORGET_S = 300.0
    MAX_CLIENTS = 4096  # the oldest are forgotten first: memory stays bounded

    def __init__(self) -> None:
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def _client(self, key: str) -> _Client:
        now = time.monotonic()
        client = self._clients.pop(key, None)
        if client is None or now - client.last > self.FORGET_S:
            client = _Client()
        self._clients[key] = client
        while len(self._clients) > self.MAX_CLIENTS:
            self._clients.popitem(last=False)
        return client

    def wait_s(self, failures: int) -> float:
        """The wait before answering a client's `failures`-th refusal in a row."""
        over = failures - self.FREE_FAILURES
        return 0.0 if over <= 0 else min(self.MAX_WAIT_S, self.FIRST_WAIT_S * 2 ** (over - 1))

    async def refused(self, key: str, where: str) -> None:
        """Counts a refused token from `key` (an address) and waits its penalty out."""
        client = self._client(key)
        async with client.lock:
            client.failures += 1
            client.last = time.monotonic()
            wait = self.wait_s(client.failures)
            log.warning(
                "refused a request without the right token from %s (%s; %d in a row%s)",
                key,
                where,
                client.failures,
                f", answered after {wait:.2f} s" if wait else "",
            )
            if wait:
                await asyncio.sleep(wait)

    def succeeded(self, key: str) -> None:
        self._clients.pop(key, None)


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def host_allowed(host_header: str | None, *, extra: list[str]) -> bool:
    """True when the request's Host names this machine's loopback or a name the user allowed.

    A page that reached 127.0.0.1 through DNS rebinding still sends its own name as Host."""
    if host_header is None:
        return True  # no browser leaves it out, and only a browser page can be rebound
    host = host_header.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    if port and not port.isdigit():
        return False
    return is_loopback_name(name) or name in extra


class SecurityMiddleware:
    """Sends the security headers on every response; without a token, answers only to loopback
    Host names; refuses cross-origin writes and oversized bodies; with a token set, refuses
    requests that do not carry it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        throttle: Throttle,
        allowed_hosts: list[str] | None = None,
    ) -> None:
        self.app = app
        self.token = token
        self.throttle = throttle
        self.allowed_hosts = [h.lower() for h in allowed_hosts or []]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self._checked(scope, receive, send_with_headers)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        # Before anything else: a token-less Atelier is only safe while only this machine's
        # pages can reach it (a token is the defence otherwise: a rebound page lacks it).
        host = request.headers.get("host")
        if self.token is None and not host_allowed(host, extra=self.allowed_hosts):
            shown = (host or "")[:80]
            await _deny(
                400,
                f"This Atelier answers only at 127.0.0.1, localhost or [::1], not at {shown!r}: "
                "open it at http://127.0.0.1:<port>/, or add the name to "
                "ATELIER_ALLOWED_HOSTS.",
            )(scope, receive, send)
            return
        refusal = self._refusal(request)
        if refusal is not None and refusal.status_code == 401:
            await self.throttle.refused(client_key(request), request.url.path)
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
            self.throttle.succeeded(client_key(request))
            return None
        if request.method == "GET" and _wants_html(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return _deny(401, REFUSED)


async def _bounded_body(request: Request, receive: Receive) -> tuple[Response | None, Receive]:
    """Refuses a non-upload body over MAX_BODY_BYTES before the app reads it into memory."""
    if UPLOAD_PATHS.match(request.url.path):
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
