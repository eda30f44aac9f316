"""a draft's doubts: token confidences and second readings; the grid's least-sure order

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("captionrevision", schema=None) as batch_op:
        batch_op.add_column(sa.Column("doubts", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("draft_least", sa.Float(), nullable=True))
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("second_reading", sa.Boolean(), nullable=False, server_default="1")
        )


def downgrade() -> None:
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_column("second_reading")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("draft_least")
    with op.batch_alter_table("captionrevision", schema=None) as batch_op:
        batch_op.drop_column("doubts")
