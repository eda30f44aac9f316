"""Alembic environment: batch mode for SQLite, each migration one transaction (app.db)."""

from alembic import context
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from app.db import migration_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    engine = migration_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            # One transaction per migration, version row included: a kill part-way leaves the
            # database at the previous version, whole (SQLite's DDL is transactional).
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=True,
                transactional_ddl=True,
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
            # Batch mode copies tables with foreign keys off: check nothing was left dangling.
            problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(f"a migration left rows with broken references: {problems[:5]}")
    finally:
        engine.dispose()


run_migrations()
