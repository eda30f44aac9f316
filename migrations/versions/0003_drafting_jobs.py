"""drafting jobs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:23:58.665000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "draftjob",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("engine", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("overwrite_edited", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("queued", "running", "done", "cancelled", "failed", name="jobstatus"),
            nullable=False,
        ),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("drafting_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("draftjob", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_draftjob_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_draftjob_status"), ["status"], unique=False)

    op.create_table(
        "draftitem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("queued", "done", "failed", "skipped", name="itemstatus"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("raw_output", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["draftjob.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("draftitem", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_draftitem_image_id"), ["image_id"], unique=False)
        batch_op.create_index("ix_draftitem_job_status", ["job_id", "status"], unique=False)

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "draft_instructions",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default=sa.text("''"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("draft_instructions")

    with op.batch_alter_table("draftitem", schema=None) as batch_op:
        batch_op.drop_index("ix_draftitem_job_status")
        batch_op.drop_index(batch_op.f("ix_draftitem_image_id"))

    op.drop_table("draftitem")
    with op.batch_alter_table("draftjob", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_draftjob_status"))
        batch_op.drop_index(batch_op.f("ix_draftjob_dataset_id"))

    op.drop_table("draftjob")
