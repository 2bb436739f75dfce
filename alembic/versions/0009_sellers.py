"""sellers: the creditors of a multi-seller platform; every contract names one

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 10:00:00

Written by hand (issue 14). The `sellers` table holds each seller's legal and bank details,
sender, allowed policies, template overrides and Stripe account (core/sellers.py). Its row
`default` (source `settings`) stands for the deployment's own seller, whose details stay the
MAHNWERK_SELLER_* settings; `contracts.seller_id` is added NOT NULL with the server default
`default`, so every existing contract belongs to the default seller and none is lost. The
index (seller_id, created_at, id) serves the listing of one seller's contracts.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    sellers = op.create_table(
        "sellers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("legal_form", sa.String(64), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("seat", sa.String(200), nullable=True),
        sa.Column("register_court", sa.String(200), nullable=True),
        sa.Column("register_number", sa.String(64), nullable=True),
        sa.Column("managing_directors", sa.Text(), nullable=True),
        sa.Column("supervisory_board_chair", sa.String(200), nullable=True),
        sa.Column("vat_id", sa.String(32), nullable=True),
        sa.Column("iban", sa.String(34), nullable=True),
        sa.Column("bic", sa.String(11), nullable=True),
        sa.Column("account_holder", sa.String(70), nullable=True),
        sa.Column("creditor_id", sa.String(35), nullable=True),
        sa.Column("mail_from", sa.String(320), nullable=True),
        sa.Column("reply_to", sa.String(320), nullable=True),
        sa.Column("locale", sa.String(8), nullable=True),
        sa.Column("state", sa.String(2), nullable=True),
        sa.Column("policies", sa.JSON(), nullable=True),
        sa.Column("templates", sa.String(64), nullable=True),
        sa.Column("stripe_account", sa.String(64), nullable=True),
        sa.Column("stripe_api_key_ref", sa.String(132), nullable=True),
        sa.Column("stripe_webhook_secret_ref", sa.String(132), nullable=True),
        sa.Column("collection_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sellers_stripe_account", "sellers", ["stripe_account"])
    now = datetime.now(UTC)
    op.bulk_insert(
        sellers,
        [{"id": "default", "source": "settings", "created_at": now, "updated_at": now}],
    )
    with op.batch_alter_table("contracts") as batch:
        batch.add_column(
            sa.Column("seller_id", sa.String(64), nullable=False, server_default="default")
        )
    op.create_index(
        "ix_contracts_seller_created", "contracts", ["seller_id", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_contracts_seller_created", table_name="contracts")
    # Not batch mode: on SQLite it would copy `contracts` and drop the original, which the
    # foreign keys of installments, notices, … refuse. SQLite ≥ 3.35 drops a plain column.
    op.drop_column("contracts", "seller_id")
    op.drop_index("ix_sellers_stripe_account", table_name="sellers")
    op.drop_table("sellers")
