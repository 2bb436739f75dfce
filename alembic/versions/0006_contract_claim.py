"""the claim on the contract row: its facts and the claim as last written

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 23:30:00

Written by hand (issue 11). `contracts.claim_facts` holds the facts the workflow computes
the claim from (domain.claim.ClaimFacts as JSON), so `GET /v1/contracts/{id}` and the
receivables report compute it as of today with the same function; `contracts.claim` the
claim as of the workflow's last write. Both nullable: contracts started before have none.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.add_column(sa.Column("claim_facts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("claim", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.drop_column("claim")
        batch.drop_column("claim_facts")
