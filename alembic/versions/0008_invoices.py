"""invoices and credit notes, their gapless counters

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00

Written by hand (issue 15). `invoice_counters`: the last number given per seller and series
(locked while an invoice is stored: numbers are gapless and unique). `invoices`: every
invoice and credit note as issued, immutable, with the SHA-256 of its document.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invoice_counters",
        sa.Column("seller_key", sa.String(length=64), nullable=False),
        sa.Column("series", sa.String(length=32), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seller_key", "series"),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("seller_key", sa.String(length=64), nullable=False),
        sa.Column("series", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("contract_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("refers_to", sa.String(length=64), nullable=True),
        sa.Column("issue_date", sa.String(length=10), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("net", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("gross", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("seller_key", "number", name="uq_invoice_number"),
        sa.UniqueConstraint("seller_key", "series", "sequence", name="uq_invoice_sequence"),
    )
    op.create_index("ix_invoices_number", "invoices", ["number"])
    op.create_index("ix_invoices_contract", "invoices", ["contract_id", "seq"])
    op.create_index("ix_invoices_seller_issued", "invoices", ["seller_key", "issue_date"])


def downgrade() -> None:
    op.drop_index("ix_invoices_seller_issued", table_name="invoices")
    op.drop_index("ix_invoices_contract", table_name="invoices")
    op.drop_index("ix_invoices_number", table_name="invoices")
    op.drop_table("invoices")
    op.drop_table("invoice_counters")
