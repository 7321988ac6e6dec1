"""delivery leases: handed over, sent index, bounce dedupe

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:46:15.730083
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_bounce_delivery_kind", ["delivery_id", "kind"])

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_deliveries_sent_at", ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_sent_at")
        batch_op.drop_column("handed_over_at")

    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.drop_constraint("uq_bounce_delivery_kind", type_="unique")
