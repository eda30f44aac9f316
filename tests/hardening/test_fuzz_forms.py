"""Every HTML form route, fuzzed with hostile input over HTTP: never a 5xx, a refusal always
says why, and a refused request changes nothing.

The JSON API is fuzzed from its OpenAPI document (test_fuzz_api.py); the form routes are not
in that document, so they are found here from the app's own routing table: every POST that
is not under /api, with its path parameters and form fields as FastAPI declares them. Each
gets huge fields, wrong types, missing and unknown fields, deeply nested names, path-like
values and bytes that are not UTF-8, both as a plain form post and as htmx sends it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from bs4 import BeautifulSoup
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from starlette.routing import Route

from app.config import Settings
from app.web.app import create_app
from tests.hardening.conftest import seed

EXAMPLES = int(os.environ.get("ATELIER_FUZZ_EXAMPLES", 25))  # cases per route
DERANDOMIZE = os.environ.get("ATELIER_FUZZ_RANDOM") != "1"

HOSTILE = [
    "",
    " ",
    "0",
    "-1",
    "1e309",
    "NaN",
    "true",
    "null",
    "99999999999999999999999999",
    "../../../etc/passwd",
    "/etc/passwd",
    "..\\..\\windows\\system32",
    "C:\\Windows",
    "\x00",
    "a\x00b",
    "%00",
    "%2e%2e%2f",
    "~/.ssh/id_rsa",
    "file:///etc/passwd",
    "<script>alert(1)</script>",
    '{"a": {"b": [[[[[[[[[[]]]]]]]]]]}}',
    "[" * 5000,
    "x" * 200_000,
    "é" * 30_000,
    "\ud800",
    "official",
    "pixel",
    "approved",
    "keep_a",
]
NESTED_NAMES = ["a[b][c][d][e]", "caption[elements][0][bbox]", "__proto__", "x" * 5000]


def form_routes(data_dir: Path) -> list[tuple[str, list[str], list[str]]]:
    """(path, path parameters, form fields) of every HTML form route, from the routing table."""
    app = create_app(Settings(data_dir=data_dir, _env_file=None))  # type: ignore[call-arg]
    found = []
    for route in _flattened(app.routes):
        if not isinstance(route, Route) or "POST" not in (route.methods or set()):
            continue
        if route.path.startswith("/api/"):
            continue
        params = list(route.param_convertors)
        dependant = getattr(route, "dependant", None)
        fields = [p.alias for p in dependant.body_params] if dependant else []
        found.append((route.path, params, fields))
    return found


def _flattened(routes: list[Any]) -> list[Any]:
    # FastAPI keeps an included router as one entry holding the router's own routes.
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out += _flattened(inner.routes) if inner is not None else [route]
    return out


def snapshot(settings: Settings) -> str:
    """A digest of everything a request could change: every row, every stored file."""
    con = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256()
        for line in con.iterdump():
            digest.update(line.encode("utf-8", "surrogatepass"))
    finally:
        con.close()
    for path in sorted(settings.store_dir.rglob("*")):
        digest.update(str(path).encode())
    return digest.hexdigest()


def sentence_in(response: httpx.Response) -> str:
    if response.headers.get("hx-trigger"):
        return response.headers["hx-trigger"]
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json().get("detail", ""))
    return BeautifulSoup(response.text, "html.parser").get_text(" ", strip=True)


@st.composite
def form_body(draw: Any, fields: list[str]) -> tuple[bytes, dict[str, str]]:
    """A urlencoded or multipart body over some of the fields, plus unknown ones."""
    values: list[tuple[str, str | bytes]] = []
    for name in fields:
        if draw(st.booleans()) or not draw(st.booleans()):  # three in four present
            values.append((name, draw(st.sampled_from(HOSTILE) | st.text(max_size=40))))
    for _ in range(draw(st.integers(0, 2))):
        values.append((draw(st.sampled_from(NESTED_NAMES)), draw(st.sampled_from(HOSTILE))))
    if fields and draw(st.integers(0, 4)) == 0:
        values.append((draw(st.sampled_from(fields)), b"\xff\xfe\xc0\xaf not utf-8"))
    if draw(st.integers(0, 5)) == 0:
        boundary = "fuzzb0undary"
        parts = []
        for name, value in values:
            raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
            parts.append(
                f'--{boundary}\r\ncontent-disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + raw
                + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return body, {"content-type": f"multipart/form-data; boundary={boundary}"}
    encoded = "&".join(
        f"{quote(n, safe='')}="
        + quote(v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v, safe="")
        for n, v in values
    )
    if draw(st.integers(0, 6)) == 0:
        return encoded.encode() + b"&raw=\xff\xfe", {
            "content-type": "application/x-www-form-urlencoded"
        }
    return encoded.encode(), {"content-type": "application/x-www-form-urlencoded"}


def fuzz_route(
    url: str,
    settings: Settings,
    route: tuple[str, list[str], list[str]],
    known: dict[str, int],
    statuses: Counter[int],
) -> None:
    """Runs the hostile cases against one route; an AssertionError names the first failure."""
    path, params, fields = route

    @given(
        body=form_body(fields),
        real=st.booleans(),
        odd_id=st.sampled_from(["0", "-1", "99999999999999999999", "abc", "1.5"]),
        htmx=st.booleans(),
    )
    @hsettings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(body: tuple[bytes, dict[str, str]], real: bool, odd_id: str, htmx: bool) -> None:
        target = path
        for name in params:
            value = str(known.get(name, 1)) if real else odd_id
            target = target.replace("{" + name + "}", quote(value, safe=""))
        content, headers = body
        if htmx:
            headers = headers | {"HX-Request": "true"}
        before = snapshot(settings)
        r = httpx.post(url + target, content=content, headers=headers, timeout=60)
        statuses[r.status_code] += 1
        where = f"POST {target} ({headers['content-type'][:20]}, htmx={htmx})"
        assert r.status_code < 500, f"{where} -> {r.status_code}: {r.text[:300]}"
        if 400 <= r.status_code < 500:
            said = sentence_in(r)
            assert re.search(r"[A-Za-z]{3,}.*[A-Za-z]{3,}", said), f"{where}: no sentence"
            assert snapshot(settings) == before, f"{where} -> {r.status_code} changed data"

    fuzz()


@pytest.mark.slow
def test_no_form_route_answers_with_a_server_error_or_changes_what_it_refuses(
    served: tuple[str, Settings], tmp_path: Path
) -> None:
    url, settings = served
    routes = form_routes(tmp_path / "routes-only")
    assert len(routes) > 20, routes  # the table was read, or this would prove nothing
    known = seed(url)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for route in routes:
        if httpx.get(f"{url}/api/images/{known['image_id']}").status_code == 404:
            known.update(seed(url))  # a fuzzed delete took the seed
        try:
            fuzz_route(url, settings, route, known, statuses)
        except AssertionError as e:
            failures.append(str(e).splitlines()[0][:400])
        except Exception as e:
            failures.append(f"{route[0]}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    assert not failures, "\n".join(failures)
    assert sum(n for s, n in statuses.items() if s < 400) > 0, statuses  # some got through
