"""collection_cases: the hand-off case file per contract and dunning case (SPEC.md §6)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 09:00:00

Written by hand. Only a CREATE TABLE (no ALTER), so it runs unchanged on SQLite and
PostgreSQL; the unique key (contract_id, case_no) is what makes `build_case_file`
idempotent, and its leading column serves the look-up by contract.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collection_cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contract_id", sa.String(length=64), nullable=False),
        sa.Column("case_no", sa.Integer(), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("file", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contract_id", "case_no", name="uq_collection_case"),
    )


def downgrade() -> None:
    op.drop_table("collection_cases")
