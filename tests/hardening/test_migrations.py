"""Migrations apply whole or not at all: a process killed (SIGKILL) before any one of the
statements that upgrade a database from 0003 leaves one that the next start upgrades, rows
kept; a database an older Atelier left half-upgraded gets a sentence, not a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from app.config import Settings
from app.db import alembic_config, make_engine, migrate

# Runs the start-up migration and kills its own process just before the n-th statement that
# changes the schema or the version row reaches SQLite: a kill -9 at that moment.
KILLED_AT = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy import Engine, event
    n, seen = int(sys.argv[2]), 0

    @event.listens_for(Engine, "before_cursor_execute")
    def _kill(conn, cursor, statement, *args):
        global seen
        words = statement.lstrip().upper()
        if words.startswith(("CREATE", "ALTER", "DROP", "INSERT", "UPDATE ALEMBIC_VERSION")):
            seen += 1
            if seen == n:
                os.kill(os.getpid(), signal.SIGKILL)

    from app.config import Settings
    from app.db import make_engine, migrate
    migrate(make_engine(Settings(data_dir=sys.argv[1])))
    print("statements", seen)
    """
)


@pytest.fixture(scope="module")
def at_0003(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database at revision 0003 holding a dataset of 200 images."""
    folder = tmp_path_factory.mktemp("at0003")
    engine = make_engine(Settings(data_dir=folder))
    command.upgrade(alembic_config(engine), "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into dataset (name, slug, trigger_word, resolution, notes, created_at,"
                " updated_at) values ('Old', 'old', '', 1024, '', '2026-01-01', '2026-01-01')"
            )
        )
        for i in range(200):
            conn.execute(
                text(
                    "insert into image (dataset_id, position, sha256, filename, format, width,"
                    " height, megapixels, aspect_ratio, orientation, mode, has_icc, frames,"
                    " byte_size, phash, status, created_at, revision, boxes_ambiguous) values"
                    " (1, :i, :sha, 'a.png', 'PNG', 10, 10, 0.0001, 1.0, 1, 'RGB', 0, 1, 10,"
                    " '0000000000000000', 'none', '2026-01-01', 0, 0)"
                ),
                {"i": i, "sha": f"{i:064x}"},
            )
    engine.dispose()
    return folder / "atelier.db"


def copy_of(db: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copyfile(db, folder / "atelier.db")
    return folder


def test_a_migration_killed_at_any_statement_leaves_a_database_the_next_start_upgrades(
    tmp_path: Path, at_0003: Path
) -> None:
    n, killed = 1, 0
    while True:
        data = copy_of(at_0003, tmp_path / f"kill-{n}")
        run = subprocess.run(
            [sys.executable, "-c", KILLED_AT, str(data), str(n)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        engine = make_engine(Settings(data_dir=data))
        migrate(engine)  # the restart: raises if the kill left a half-applied migration
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
            assert conn.execute(text("select count(*) from image")).scalar() == 200
        engine.dispose()
        if run.returncode == 0:
            break  # n passed the last statement: every one was tried
        assert run.returncode == -9, run.stderr[-2000:]
        killed += 1
        n += 1
    assert killed >= 10  # 0004 to head take more statements than that


def test_a_half_upgraded_database_from_an_older_atelier_gets_a_sentence(
    tmp_path: Path, at_0003: Path
) -> None:
    data = copy_of(at_0003, tmp_path / "half")
    engine = make_engine(Settings(data_dir=data))
    with engine.begin() as conn:  # what the old start left when killed inside 0004
        conn.execute(text("alter table image add column trashed_at DATETIME"))
    engine.dispose()
    r = subprocess.run(
        [sys.executable, "-m", "app", "datasets", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "stopped part-way through migration 0004" in r.stderr
    assert "duplicate column name: trashed_at" in r.stderr
