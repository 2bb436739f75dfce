"""outbox claims, the dispatcher lease, support actions by Idempotency-Key

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00

Written by hand (issue 13 items 3 and 5). `outbox_events.claimed_by/claimed_until`: a
dispatcher claims rows before it posts them, so several workers never deliver one event
twice (PostgreSQL: SELECT … FOR UPDATE SKIP LOCKED). `leases`: on SQLite, which has no SKIP
LOCKED, one dispatcher at a time holds the `outbox-dispatcher` lease. `support_actions`:
the first answer to a support action per (contract, Idempotency-Key).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "support_actions",
        sa.Column("contract_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("contract_id", "idempotency_key"),
    )


def downgrade() -> None:
    op.drop_table("support_actions")
    op.drop_table("leases")
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("claimed_by")
