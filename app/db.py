"""The SQLite engine (WAL, foreign keys, busy timeout) and Alembic upgrades at start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from sqlmodel import create_engine

from app.config import Settings
from app.errors import UserError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
BUSY_TIMEOUT_MS = 30_000


def make_engine(settings: Settings) -> Engine:
    """An engine on the data dir's SQLite file, every connection set up with our pragmas."""
    settings.prepare_dirs()
    engine = create_engine(
        f"sqlite:///{settings.db_path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", str(engine.url))
    return cfg


def migration_engine(url: str) -> Engine:
    """An engine for migrations only, on which each migration is one SQLite transaction.

    Python's sqlite3 opens transactions before INSERT and UPDATE but not before DDL, so a
    migration's CREATE and ALTER statements each committed on their own: a kill part-way left
    a database that no later start could upgrade. Here the driver is left in autocommit and
    SQLAlchemy's begin emits BEGIN IMMEDIATE itself, so SQLite's transactional DDL applies.
    Foreign keys are off for batch mode's table copies (the pragma is ignored in a transaction).
    """
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys=OFF")
        dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class MigrationFailed(UserError):
    """A migration that could not apply; nothing of it was (each is one transaction)."""


def migrate(engine: Engine) -> None:
    """Brings the database to the newest schema, each migration whole or not at all."""
    try:
        command.upgrade(alembic_config(engine), "head")
    except OperationalError as e:
        raise MigrationFailed(_failed_sentence(engine, e)) from None


def _failed_sentence(engine: Engine, error: OperationalError) -> str:
    with engine.connect() as conn:
        try:
            at = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except OperationalError:
            at = None
    script = ScriptDirectory.from_config(alembic_config(engine))
    upgrades = list(reversed(list(script.iterate_revisions("head", at))))
    step = upgrades[0] if upgrades else None
    which = f"migration {step.revision} ({step.doc})" if step else "a migration"
    reason = str(error.orig).strip()
    half = any(w in reason for w in ("already exists", "duplicate column"))
    if half:
        return (
            f"The database {engine.url.database} cannot be upgraded: an earlier start of an "
            f"older Atelier was stopped part-way through {which} and left part of it behind "
            f"({reason}). Nothing was changed now. Restore atelier.db from a copy made before "
            "that start, or remove what that migration adds (migrations/versions/"
            f"{step.revision if step else ''}*.py: its new tables, columns and indexes hold "
            "nothing yet; keep any table named _alembic_tmp_*, which may hold your rows) and "
            "start again."
        )
    return (
        f"The database {engine.url.database} cannot be upgraded: {which} failed with "
        f"{reason!r} and nothing of it was applied. Check that the disk holding it is not "
        "full and that it is writable, then start again."
    )
