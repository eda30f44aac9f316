"""drafting jobs keep each server's progress in their row

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("draftjob", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("server_stats", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("draftjob", schema=None) as batch_op:
        batch_op.drop_column("server_stats")
