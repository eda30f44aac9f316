"""The schema comes from Alembic and matches the models; the pragmas are set."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

from app.config import Settings
from app.db import alembic_config, make_engine, migrate


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
        version = conn.execute(text("select version_num from alembic_version")).scalar()
    assert version == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def test_upgrade_keeps_rows_of_an_older_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(Settings(data_dir=tmp_path))
    command.upgrade(alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into dataset (name, slug, trigger_word, resolution, notes, created_at,"
                " updated_at) values ('Old', 'old', '', 1024, '', '2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "insert into image (dataset_id, position, sha256, filename, format, width,"
                " height, megapixels, aspect_ratio, orientation, mode, has_icc, frames,"
                " byte_size, phash, status, created_at) values (1, 1, 'ab', 'a.png', 'PNG',"
                " 10, 10, 0.0001, 1.0, 1, 'RGB', 0, 1, 10, '0000000000000000', 'none',"
                " '2026-01-01')"
            )
        )
    migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(text("select revision, boxes_ambiguous from image")).one()
        style = conn.execute(text("select style_aesthetics from dataset")).scalar()
    assert tuple(row) == (0, 0) and style == ""


def test_connection_pragmas(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
