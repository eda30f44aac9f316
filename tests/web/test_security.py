"""Token mode, Origin checks and the loopback default."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings, is_exposed_host
from app.web.app import create_app
from app.web.security import Throttle

TOKEN = "correct-horse-battery-staple"


@pytest.fixture
def locked(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "d", host="0.0.0.0", token=TOKEN)
    with TestClient(create_app(settings), base_url="http://atelier.lan:8000") as c:
        yield c


def test_default_bind_is_loopback() -> None:
    assert Settings().host == "127.0.0.1"
    assert not is_exposed_host("127.0.0.1") and not is_exposed_host("::1")
    assert is_exposed_host("0.0.0.0") and is_exposed_host("192.168.1.20")


def test_token_mode_refuses_requests_without_token(locked: TestClient) -> None:
    r = locked.get("/api/datasets")
    assert r.status_code == 401 and "token" in r.json()["detail"]
    assert locked.get("/api/datasets", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (
        locked.get("/api/datasets", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    )
    assert locked.get("/healthz").status_code == 200


def test_token_mode_pages_redirect_to_login(locked: TestClient) -> None:
    r = locked.get("/datasets/1", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/datasets/1"


def test_login_sets_cookie(locked: TestClient) -> None:
    bad = locked.post("/login", data={"token": "nope", "next": "/"})
    assert bad.status_code == 401
    r = locked.post("/login", data={"token": TOKEN, "next": "//evil.com/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert locked.get("/api/datasets").status_code == 200  # the cookie now travels


def test_cross_origin_write_refused(client: TestClient) -> None:
    r = client.post("/api/datasets", json={"name": "x"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = client.post("/api/datasets", json={"name": "x"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    ok = client.post("/api/datasets", json={"name": "x"}, headers={"Origin": "http://testserver"})
    assert ok.status_code == 201
    assert client.get("/api/datasets", headers={"Origin": "http://evil.example"}).status_code == 200


def test_oversized_bodies_are_refused_before_they_are_read(client: TestClient) -> None:
    from app.web.security import MAX_BODY_BYTES

    big = b'{"name": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    r = client.post("/api/datasets", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "over 16 MB" in r.json()["detail"]

    def chunked():  # type: ignore[no-untyped-def]  # no content-length: sent in pieces
        for _ in range(17):
            yield b"x" * (1024 * 1024)

    r = client.post(
        "/api/datasets", content=chunked(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    # A small chunked body still arrives whole.
    r = client.post(
        "/api/datasets",
        content=iter([b'{"name": "Chun', b'ked"}']),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app/config.py",
        "/static/%2e%2e/app/config.py",
        "/static/..%2fapp%2fconfig.py",
        "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static//etc/passwd",
    ],
)
def test_no_path_serves_a_file_outside_static_or_the_store(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert "Settings" not in r.text and "root:" not in r.text


def test_a_wrong_token_and_a_missing_one_are_answered_alike(locked: TestClient) -> None:
    missing = locked.get("/api/datasets")
    wrong = locked.get("/api/datasets", headers={"Authorization": "Bearer not-the-token"})
    assert (missing.status_code, missing.json()) == (wrong.status_code, wrong.json())
    page_missing = locked.post("/login", data={"next": "/"})
    page_wrong = locked.post("/login", data={"token": "not-the-token", "next": "/"})
    assert page_missing.status_code == page_wrong.status_code == 401
    assert page_missing.text == page_wrong.text


def test_refused_tokens_are_slowed_per_client_within_a_bound() -> None:
    t = Throttle()
    waits = [t.wait_s(n) for n in range(1, 16)]
    assert waits[: Throttle.FREE_FAILURES] == [0.0] * Throttle.FREE_FAILURES
    grown = waits[Throttle.FREE_FAILURES :]
    assert grown == sorted(grown) and grown[0] > 0 and grown[1] == 2 * grown[0]
    assert max(waits) == Throttle.MAX_WAIT_S  # bounded: the owner is never locked out


def test_guesses_wait_their_penalty_and_the_right_token_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "d", host="0.0.0.0", token=TOKEN)
    app = create_app(settings)
    throttle: Throttle = app.state.throttle
    throttle.FIRST_WAIT_S = 0.2  # type: ignore[misc]
    with TestClient(app, base_url="http://atelier.lan:8000") as c, caplog.at_level("WARNING"):
        for n in range(Throttle.FREE_FAILURES):
            c.post("/login", data={"token": f"guess-{n}", "next": "/"})
        started = time.monotonic()
        assert c.get("/api/datasets", headers={"Authorization": "Bearer guess"}).status_code == 401
        assert time.monotonic() - started >= 0.2  # the first failure past the free ones
        # The owner, from the same address, is let in, and that clears the count.
        ok = c.get("/api/datasets", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert throttle.wait_s(throttle._client("testclient").failures + 1) == 0.0
    refusals = [r for r in caplog.records if "without the right token" in r.getMessage()]
    assert len(refusals) == Throttle.FREE_FAILURES + 1
    assert TOKEN not in caplog.text and "guess-0" not in caplog.text


def test_the_drafting_process_never_sees_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.db import make_engine, migrate
    from app.drafting.worker import DraftWorker

    monkeypatch.setenv("ATELIER_TOKEN", TOKEN)
    monkeypatch.setenv("ATELIER_DRAFT_API_KEY", "sk-secret-key")
    settings = Settings(data_dir=tmp_path / "d", host="0.0.0.0")
    assert settings.token == TOKEN
    db = make_engine(settings)
    migrate(db)
    worker = DraftWorker(db=db, settings=settings)
    proc = worker._spawn()
    try:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0] for e in environ}
        assert b"ATELIER_TOKEN" not in names and b"ATELIER_DRAFT_API_KEY" not in names
        assert not any(TOKEN.encode() in e for e in environ)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
        db.dispose()


def test_no_request_body_names_a_server_to_call(client: TestClient) -> None:
    # The bodies that name a program (training's checkout and Python) or a drafting server
    # (the drafting card's base_url) are refused in token mode
    # (tests/training/test_token_mode.py, tests/web/test_engine_choice.py).
    spec = client.get("/openapi.json").json()
    named: set[str] = set()
    for schema in spec["components"]["schemas"].values():
        for prop in schema.get("properties", {}):
            if any(word in prop.lower() for word in ("url", "host", "python", "command", "aitk")):
                named.add(prop)
    assert named == {"aitk_dir", "python", "base_url"}, named


def test_the_favicon_needs_no_token(locked: TestClient) -> None:
    locked.headers.pop("Authorization", None)
    assert locked.get("/favicon.ico").status_code == 200
    assert locked.get("/api/datasets").status_code == 401


# --- issue 26: rebinding, framing, token on loopback, multipart bodies ----------------------


@pytest.fixture
def loopback(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The default mode as `atelier serve` runs it: loopback, no token, no extra host names."""
    settings = Settings(data_dir=tmp_path / "d", allowed_hosts=[])
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example:8000",
        "attacker.example",
        "127.attacker.example:8000",
        "127.0.0.1.attacker.example",
        "localhost.attacker.example:8000",
        "[::2]:8000",
        "127.0.0.1:80x",
    ],
)
def test_a_rebound_page_is_refused_before_any_route(loopback: TestClient, host: str) -> None:
    origin = {"Host": host, "Origin": f"http://{host}"}
    r = loopback.post("/api/datasets", json={"name": "x"}, headers=origin)
    assert r.status_code == 400 and "answers only at 127.0.0.1" in r.json()["detail"]
    assert loopback.get("/api/datasets", headers={"Host": host}).status_code == 400
    assert loopback.get("/", headers={"Host": host}).status_code == 400
    r = loopback.post("/api/datasets/1/train", json={"python": "/bin/echo"}, headers=origin)
    assert r.status_code == 400
    assert loopback.get("/api/datasets").json() == []  # nothing was made


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"])
def test_loopback_host_names_are_answered(loopback: TestClient, host: str) -> None:
    origin = {"Host": host, "Origin": f"http://{host}"}
    assert loopback.post("/api/datasets", json={"name": host}, headers=origin).status_code == 201


def test_names_the_user_allows_are_answered(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", allowed_hosts="atelier.home, Box.LAN")  # type: ignore[arg-type]
    assert settings.allowed_hosts == ["atelier.home", "box.lan"]
    with TestClient(create_app(settings), base_url="http://box.lan:8000") as c:
        assert c.get("/api/datasets").status_code == 200
        assert c.get("/api/datasets", headers={"Host": "atelier.home"}).status_code == 200
        assert c.get("/api/datasets", headers={"Host": "other.lan"}).status_code == 400


EXPECTED_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


@pytest.mark.parametrize("mode", ["loopback", "locked"])
def test_every_response_forbids_framing_and_sniffing(
    request: pytest.FixtureRequest, mode: str
) -> None:
    c: TestClient = request.getfixturevalue(mode)
    answers = [
        c.get("/"),
        c.get("/api/datasets"),
        c.get("/static/css/atelier.css"),
        c.get("/no/such/page"),
        c.post("/api/datasets", json={"name": "y"}, headers={"Origin": "http://evil.example"}),
        c.get("/healthz"),
        c.get("/", headers={"Host": "attacker.example"}),
    ]
    for r in answers:
        for name, value in EXPECTED_HEADERS.items():
            assert r.headers.get(name) == value, (r.request.url, name, r.status_code)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-eval" not in csp and "script-src 'self' 'unsafe-inline'" not in csp


def test_a_token_on_loopback_gets_the_exposed_mode_s_limits(tmp_path: Path) -> None:
    """The reverse-proxy and SSH-tunnel set-up: bound to loopback, a token set."""
    from tests.training.conftest import make_checkout, make_dataset
    from tests.training.runfolders import make_run

    own = make_checkout(tmp_path / "owner-aitk")
    outside_run = make_run(tmp_path / "elsewhere-aitk")
    settings = Settings(data_dir=tmp_path / "d", token=TOKEN, aitk_dir=own)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000", headers=auth) as c:
        dataset_id = make_dataset(c)
        r = c.post(f"/api/datasets/{dataset_id}/train", json={"python": "/bin/echo"})
        assert r.status_code == 403 and "set by its owner" in r.json()["detail"]
        out = tmp_path / "anywhere"
        r = c.post(f"/api/datasets/{dataset_id}/export", json={"out_dir": str(out), "force": True})
        assert r.status_code == 422 and "exports only under" in r.json()["detail"]
        assert not out.exists()
        r = c.get("/board", params={"run": str(outside_run)})
        assert r.status_code == 422 and "reads runs only under" in r.text
        # Inside the roots, a missing folder and one that is no run are answered alike.
        (own / "output" / "not-a-run").mkdir(parents=True)
        missing = c.get("/board", params={"run": str(own / "output" / "nothing")})
        plain = c.get("/board", params={"run": str(own / "output" / "not-a-run")})
        assert missing.status_code == plain.status_code == 404
        assert missing.text.replace("nothing", "X") == plain.text.replace("not-a-run", "X")


def test_multipart_bodies_keep_the_form_limit_except_uploads(client: TestClient) -> None:
    from app.web.security import MAX_BODY_BYTES

    dataset_id = client.post("/api/datasets", json={"name": "Multi"}).json()["id"]
    big = b"x" * (MAX_BODY_BYTES + 1024)
    files = {"notes": ("notes.txt", big, "text/plain")}
    r = client.post(f"/datasets/{dataset_id}/settings", data={"name": "Multi"}, files=files)
    assert r.status_code == 413 and "over 16 MB" in r.json()["detail"]
    # The upload routes read their bodies as they stream, under their own limits.
    r = client.post(f"/api/datasets/{dataset_id}/images", files={"files": ("a.png", big)})
    assert r.status_code != 413 or "16 MB" not in r.text
