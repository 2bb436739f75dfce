"""per-customer data keys and the erasure log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:00:00

Written by hand (issue 13 item 7). `customer_keys`: one data key per customer for the
Temporal payload codec, wrapped with the master key ring; deleting a row shreds that
customer's histories. `customer_erasures`: that a customer was erased, when and by whom,
with the answer of `POST /v1/customers/{id}/erase` (ids and counts only). New tables only,
so it runs unchanged on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("wrap_key_id", sa.String(length=64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id"),
    )
    op.create_table(
        "customer_erasures",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_by", sa.String(length=128), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )


def downgrade() -> None:
    op.drop_table("customer_erasures")
    op.drop_table("customer_keys")
