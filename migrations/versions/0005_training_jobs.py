"""training jobs, run favourites and picks

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "trainjob",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("profile", _str(length=20), nullable=False),
        sa.Column("checkout", _str(), nullable=False),
        sa.Column("python", _str(), nullable=False),
        sa.Column("config_path", _str(), nullable=False),
        sa.Column("config_yaml", _str(), nullable=False),
        sa.Column("run_dir", _str(), nullable=False),
        sa.Column("log_path", _str(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("running", "stopping", "done", "stopped", "failed", name="trainstatus"),
            nullable=False,
        ),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pid_started", sa.Float(), nullable=True),
        sa.Column("total_steps", sa.Integer(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("stop_requested_at", _time(), nullable=True),
        sa.Column("error", _str(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("trainjob", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trainjob_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_trainjob_status"), ["status"], unique=False)

    op.create_table(
        "runfavourite",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_dir", _str(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_dir", "sample_index", "step", name="uq_runfavourite_sample"),
    )
    with op.batch_alter_table("runfavourite", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runfavourite_run_dir"), ["run_dir"], unique=False)

    op.create_table(
        "lorapick",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("run_dir", _str(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("checkpoint", _str(), nullable=False),
        sa.Column("copied_to", _str(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lorapick", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lorapick_dataset_id"), ["dataset_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lorapick", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lorapick_dataset_id"))
    op.drop_table("lorapick")
    with op.batch_alter_table("runfavourite", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runfavourite_run_dir"))
    op.drop_table("runfavourite")
    with op.batch_alter_table("trainjob", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trainjob_status"))
        batch_op.drop_index(batch_op.f("ix_trainjob_dataset_id"))
    op.drop_table("trainjob")
