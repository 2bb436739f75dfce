"""life after hand-off: the case at the partner, follow-up case files and messages to the
collection partner

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 10:00:00

Written by hand (issue 12 parts 1 and 2; `installments.ended`, how an installment ended,
came with 0007). `contracts.collection`: the case at the collection partner as the workflow
last wrote it (files, statuses reported, deliveries waiting, the § 498 call-in).
`collection_cases`
gets `file_no`: 0 is the file handed over at the hand-off, 1, 2, … follow-up files when
later installments join the case; the unique key becomes (contract, case, file).
`collection_messages`: what is POSTed to the partner besides case files (`case.payment`,
`case.recall`), each stored once by its key and delivered until acknowledged.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.add_column(sa.Column("collection", sa.JSON(), nullable=True))
    with op.batch_alter_table("collection_cases") as batch:
        batch.add_column(
            sa.Column("file_no", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.drop_constraint("uq_collection_case", type_="unique")
        batch.create_unique_constraint("uq_collection_case", ["contract_id", "case_no", "file_no"])
    op.create_table(
        "collection_messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contract_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["contract_id"], ["contracts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", name="uq_collection_message_key"),
    )
    with op.batch_alter_table("collection_messages") as batch:
        batch.create_index("ix_collection_messages_contract_id", ["contract_id"])


def downgrade() -> None:
    op.drop_table("collection_messages")
    # the follow-up files cannot stay under the old key (one file per contract and case)
    op.execute("DELETE FROM collection_cases WHERE file_no > 0")
    with op.batch_alter_table("collection_cases") as batch:
        batch.drop_constraint("uq_collection_case", type_="unique")
        batch.create_unique_constraint("uq_collection_case", ["contract_id", "case_no"])
        batch.drop_column("file_no")
    # Not batch mode: on SQLite it would copy `contracts` and drop the original, which the
    # foreign keys of installments, notices, … refuse. SQLite ≥ 3.35 drops a plain column.
    op.drop_column("contracts", "collection")
