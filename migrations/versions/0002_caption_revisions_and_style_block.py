"""caption revisions and style block

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 20:59:53.897983
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "captionrevision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("caption", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("author", sa.Enum("user", "engine", "sidecar", name="author"), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "edit",
                "draft",
                "sidecar",
                "undo",
                "redo",
                "revert",
                "find_replace",
                "apply_style",
                "palettes",
                "box_format",
                name="action",
            ),
            nullable=False,
        ),
        sa.Column("undo_to", sa.Integer(), nullable=True),
        sa.Column("redo_to", sa.Integer(), nullable=True),
        sa.Column("batch", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("image_id", "number", name="uq_revision_image_number"),
    )
    with op.batch_alter_table("captionrevision", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_captionrevision_batch"), ["batch"], unique=False)
        batch_op.create_index(batch_op.f("ix_captionrevision_image_id"), ["image_id"], unique=False)

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "style_aesthetics",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default=sa.text("''"),
            )
        )
        batch_op.add_column(
            sa.Column(
                "style_lighting",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default=sa.text("''"),
            )
        )
        batch_op.add_column(
            sa.Column("style_medium", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "style_render",
                sqlmodel.sql.sqltypes.AutoString(),
                nullable=False,
                server_default=sa.text("''"),
            )
        )

    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("caption_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "boxes_ambiguous", sa.Boolean(), nullable=False, server_default=sa.text("'0'")
            )
        )
        batch_op.add_column(
            sa.Column("revision", sa.Integer(), nullable=False, server_default=sa.text("'0'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("revision")
        batch_op.drop_column("boxes_ambiguous")
        batch_op.drop_column("caption_error")

    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("style_render")
        batch_op.drop_column("style_medium")
        batch_op.drop_column("style_lighting")
        batch_op.drop_column("style_aesthetics")

    with op.batch_alter_table("captionrevision", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_captionrevision_image_id"))
        batch_op.drop_index(batch_op.f("ix_captionrevision_batch"))

    op.drop_table("captionrevision")
