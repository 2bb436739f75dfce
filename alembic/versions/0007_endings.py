"""consents next to the terms; how each installment ended and what was refunded of it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 02:00:00

Written by hand (issue 12). `consents`: the digital-content (§ 356 (5) BGB) and service
(§ 357a (2) BGB) consents given at checkout, with the § 312f BGB confirmation, one row per
(contract, kind). `installments.ended`: how an installment ended ({"how", "reason", "at"};
GET /v1/contracts/{id} `schedule[].ended`) — the same column the hand-off side of issue 12
adds, so it is added here only if it is not there yet; `installments.refunded_amount`: what
was refunded of it (the receivables report shows refunds apart).
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _has_ended() -> bool:
    return "ended" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("installments")}


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contract_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contract_id", "kind", name="uq_consent_kind"),
    )
    op.create_index("ix_consents_contract_id", "consents", ["contract_id"])
    has_ended = _has_ended()
    with op.batch_alter_table("installments") as batch:
        if not has_ended:
            batch.add_column(sa.Column("ended", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("refunded_amount", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("installments") as batch:
        batch.drop_column("refunded_amount")
    op.drop_index("ix_consents_contract_id", table_name="consents")
    op.drop_table("consents")
    # `installments.ended` stays: the hand-off side of issue 12 may own it
