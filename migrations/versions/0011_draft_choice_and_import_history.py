"""the drafting card's engine choice, drafting jobs' server and trials, import history

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 17:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "draftchoice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("engine", _str(length=20), nullable=False),
        sa.Column("model", _str(length=500), nullable=False),
        sa.Column("base_url", _str(length=2000), nullable=True),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "importrecord",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("origin", _str(length=20), nullable=False),
        sa.Column("upload", _str(length=64), nullable=True),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("report", _str(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("importrecord", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_importrecord_dataset_id"), ["dataset_id"], unique=False
        )
    with op.batch_alter_table("draftjob", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_url", _str(length=2000), nullable=True))
        batch_op.add_column(
            sa.Column("trial", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("draftjob", schema=None) as batch_op:
        batch_op.drop_column("trial")
        batch_op.drop_column("base_url")
    with op.batch_alter_table("importrecord", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_importrecord_dataset_id"))
    op.drop_table("importrecord")
    op.drop_table("draftchoice")
