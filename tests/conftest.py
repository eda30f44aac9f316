"""Fixtures every test can use: settings on a fresh data dir, the migrated database, the store,
the app over TestClient. Markers (pyproject.toml): `browser` (real Chromium), `gpu` (skipped
without CUDA), `slow` (left out of `make test-fast`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine, migrate
from app.images.store import content_store
from app.web.app import create_app


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the machine's ATELIER_* variables (a developer's token, data dir or
    drafting model): each starts without them and sets what it needs."""
    for name in list(os.environ):
        if name.upper().startswith("ATELIER_"):
            monkeypatch.delenv(name)
    # Starlette's TestClient sends "Host: testserver": allowed as a user allows their own names.
    monkeypatch.setenv("ATELIER_ALLOWED_HOSTS", "testserver")


@cache
def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("gpu") is not None and not has_cuda():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (run it on the device)"))


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file migrated to head once a run; each test starts from a copy of it
    (a fresh migration costs about 50 ms a test, a copy under 1)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("template"), _env_file=None)  # type: ignore[call-arg]
    engine = make_engine(settings)
    migrate(engine)
    engine.dispose()  # the last connection's close folds the WAL back into the file
    return settings.db_path


@pytest.fixture
def settings(tmp_path: Path, migrated_db: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", import_workers=2, _env_file=None)  # type: ignore[call-arg]
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_db, settings.db_path)
    return settings


@pytest.fixture
def engine(settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(settings)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        yield s


@pytest.fixture
def store(settings: Settings):  # type: ignore[no-untyped-def]
    return content_store(settings)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as c:
        yield c
    app.state.db.dispose()


@pytest.fixture
def dataset_id(client: TestClient) -> int:
    r = client.post("/api/datasets", json={"name": "Baroque Chiaroscuro", "trigger_word": "bcs"})
    assert r.status_code == 201, r.text
    return r.json()["id"]
