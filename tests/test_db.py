"""The schema comes from Alembic and matches the models; the pragmas are set."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from app.config import Settings
from app.db import make_engine, migrate


def test_migrations_match_models(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(Settings(data_dir=tmp_path))
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_migrate_twice_is_harmless(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(Settings(data_dir=tmp_path))
    migrate(engine)
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0001"


def test_connection_pragmas(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
