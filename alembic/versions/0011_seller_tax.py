"""sellers: each seller's tax settings, so its contracts get invoices of its own

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14 10:00:00

Written by hand (issue 14 × issue 15). The columns hold what the MAHNWERK_SELLER_TAX_NUMBER,
_PHONE, _SMALL_BUSINESS, _EDUCATION_EXEMPT, _OSS and MAHNWERK_INVOICING, _INVOICE_PREFIX,
_CREDIT_NOTE_SERIES, _CREDIT_NOTE_PREFIX settings hold for the default seller
(core/invoice_seller.py). `NULL` prefixes and series mean the settings' ones.

Sellers created through the API before this revision have no tax settings, and their contracts
were checked out without invoicing: they keep `invoicing = false` (an invoice naming no tax
number, or 19 % VAT for a § 19 small business, would be wrong), until an admin sets their
tax settings and `invoicing: true` (PATCH /v1/sellers/{id}). New sellers invoice by default.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FLAGS = (("small_business", False), ("education_exempt", False), ("oss", False), ("invoicing", True))


def upgrade() -> None:
    with op.batch_alter_table("sellers") as batch:
        batch.add_column(sa.Column("tax_number", sa.String(20), nullable=True))
        batch.add_column(sa.Column("phone", sa.String(40), nullable=True))
        for name, default in _FLAGS:
            batch.add_column(
                sa.Column(
                    name,
                    sa.Boolean(),
                    nullable=False,
                    server_default=sa.true() if default else sa.false(),
                )
            )
        batch.add_column(sa.Column("invoice_prefix", sa.String(16), nullable=True))
        batch.add_column(sa.Column("credit_note_series", sa.String(8), nullable=True))
        batch.add_column(sa.Column("credit_note_prefix", sa.String(16), nullable=True))
    sellers = sa.table("sellers", sa.column("source", sa.String), sa.column("invoicing", sa.Boolean))
    op.execute(sellers.update().where(sellers.c.source == "api").values(invoicing=False))


def downgrade() -> None:
    with op.batch_alter_table("sellers") as batch:
        for name in (
            "credit_note_prefix",
            "credit_note_series",
            "invoice_prefix",
            *(n for n, _ in reversed(_FLAGS)),
            "phone",
            "tax_number",
        ):
            batch.drop_column(name)
