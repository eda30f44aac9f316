"""the prompt a drafting job drafted with

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 17:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("draftjob", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "prompt", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=""
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("draftjob", schema=None) as batch_op:
        batch_op.drop_column("prompt")
