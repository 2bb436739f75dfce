"""indexes for the contracts listing and the outbox's due scan

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:15:00

Written by hand. `GET /v1/contracts` pages newest first by (created_at, id), optionally
filtered by status: without an index every page sorted the whole table. The event
dispatcher loads undelivered events whose next_attempt_at has come: (delivered_at,
next_attempt_at) finds them without scanning events waiting out a backoff. CREATE INDEX
only, so it runs unchanged on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_contracts_created", "contracts", ["created_at", "id"])
    op.create_index("ix_contracts_status_created", "contracts", ["status", "created_at", "id"])
    op.create_index("ix_outbox_due", "outbox_events", ["delivered_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox_events")
    op.drop_index("ix_contracts_status_created", table_name="contracts")
    op.drop_index("ix_contracts_created", table_name="contracts")
