from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.config import Settings
from app.db import make_engine, migrate
from app.images.importer import content_store
from app.web.app import create_app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", import_workers=2, _env_file=None)  # type: ignore[call-arg]


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
    app.state.engine.dispose()


@pytest.fixture
def dataset_id(client: TestClient) -> int:
    r = client.post("/api/datasets", json={"name": "Baroque Chiaroscuro", "trigger_word": "bcs"})
    assert r.status_code == 201, r.text
    return r.json()["id"]
