"""the sent log keeps each paper's state when sent, and its one "worth another look"

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns only: SQLite adds them in place, without copying the table, and the
    # rows logged before stay NULL (their state then is unknown: never compared).
    with op.batch_alter_table("sent_papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upvotes_then", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("code_then", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("version_then", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("second_look_delivery_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sent_papers", schema=None) as batch_op:
        batch_op.drop_column("second_look_delivery_id")
        batch_op.drop_column("version_then")
        batch_op.drop_column("code_then")
        batch_op.drop_column("upvotes_then")
