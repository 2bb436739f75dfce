"""rate_slots: the deployment-wide Stripe rate, one row per Stripe account

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 05:00:00

Written by hand (issue 17). Each row holds the next free instant of a rate shared by every
worker process (activities/ratelimit.py `SharedRate`, a GCRA): a debit moves it one
interval on and waits for its slot, so all workers together create at most the configured
number of PaymentIntents per second on a Stripe account.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_slots",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_slots")
