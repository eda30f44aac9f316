"""transparent share of an image's pixels

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 17:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transparent_share", sa.Float(), nullable=True))
    # Images imported earlier were never measured (NULL), except where nothing can be clear:
    # a JPEG holds no alpha channel and no transparent colour.
    op.execute("UPDATE image SET transparent_share = 0.0 WHERE format = 'JPEG'")


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("transparent_share")
