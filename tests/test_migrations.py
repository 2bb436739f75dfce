"""The migrations build exactly the schema the models describe (tables, columns, indexes)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text

from alembic import command
from core.db import make_engine, make_session_factory
from core.migrate import alembic_config
from core.models import Base, Contract, Seller


def test_migrations_match_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], diff


# -- 0009: an existing single-seller database becomes one default seller (issue 14) ----------


@contextlib.contextmanager
def _database_at(revision: str, tmp_path: Path) -> Iterator[str]:
    """An empty database migrated up to `revision` only: PostgreSQL (a schema of its own)
    when DATABASE_URL is set, else SQLite."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = f"sqlite:///{tmp_path / 'before.db'}"
        command.upgrade(alembic_config(url), revision)
        yield url
        return
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"mahnwerk_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    try:
        command.upgrade(alembic_config(scoped), revision)
        yield scoped
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _old_contract(conn: Connection, cid: str, status: str) -> None:
    """A contract as the schema of 0008 stores it, with an installment, an attempt, a notice
    and a timeline row (what a running single-seller deployment has)."""
    now = datetime(2026, 11, 27, 10, tzinfo=UTC)
    conn.execute(
        text(
            "INSERT INTO contracts (id, kind, policy_name, policy, customer_id, customer, "
            "product_id, product, currency, terms, payment, request, request_hash, "
            "workflow_id, status, stage, access, paused, contested, overdue_amount, fees, "
            "case_no, created_at, updated_at) VALUES (:id, 'installments', 'default', '{}', "
            ":cus, '{}', 'course-x', '{}', 'eur', '{}', '{}', '{}', 'h', :wf, :status, "
            "'none', 'none', false, false, 9900, 0, 0, :now, :now)"
        ),
        {"id": cid, "cus": f"cus-{cid}", "wf": f"contract-{cid}", "status": status, "now": now},
    )
    conn.execute(
        text(
            "INSERT INTO installments (contract_id, seq, due_at, amount, paid_amount, status, "
            "updated_at) VALUES (:id, 1, :now, 9900, 0, 'open', :now)"
        ),
        {"id": cid, "now": now},
    )
    conn.execute(
        text(
            "INSERT INTO timeline_events (contract_id, key, type, occurred_at, data) "
            "VALUES (:id, :key, 'contract.started', :now, '{}')"
        ),
        {"id": cid, "key": f"{cid}:started", "now": now},
    )


def test_migration_0009_gives_every_existing_contract_to_the_default_seller(
    tmp_path: Path,
) -> None:
    with _database_at("0008", tmp_path) as url:
        engine = make_engine(url)
        try:
            ids = [f"old-{n}" for n in range(5)]
            with engine.begin() as conn:
                assert "sellers" not in inspect(conn).get_table_names()
                for n, cid in enumerate(ids):
                    _old_contract(conn, cid, ("active", "in_dunning", "completed")[n % 3])
            command.upgrade(alembic_config(url), "head")
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT id, seller_id, status FROM contracts ORDER BY id")
                ).all()
                sellers = conn.execute(text("SELECT id, source FROM sellers")).all()
                insts = conn.execute(text("SELECT count(*) FROM installments")).scalar_one()
                timeline = conn.execute(text("SELECT count(*) FROM timeline_events")).scalar_one()
                diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert [r.id for r in rows] == ids  # no contract lost
            assert {r.seller_id for r in rows} == {"default"}
            assert [r.status for r in rows] == (["active", "in_dunning", "completed"] * 2)[:5]
            assert [(s.id, s.source) for s in sellers] == [("default", "settings")]
            assert insts == 5 and timeline == 5
            assert diff == [], diff
            # the ORM reads the migrated rows, and a new contract row defaults to the seller
            sessions = make_session_factory(engine)
            with sessions() as s:
                assert s.get(Contract, "old-0") is not None
                assert s.get(Contract, "old-0").seller_id == "default"  # type: ignore[union-attr]
                seller = s.get(Seller, "default")
                assert seller is not None and seller.source == "settings"
            # and down again: the column and the table go, the contracts stay
            command.downgrade(alembic_config(url), "0008")
            with engine.connect() as conn:
                assert "sellers" not in inspect(conn).get_table_names()
                cols = {c["name"] for c in inspect(conn).get_columns("contracts")}
                assert "seller_id" not in cols
                assert conn.execute(text("SELECT count(*) FROM contracts")).scalar_one() == 5
        finally:
            engine.dispose()


def test_migration_0011_keeps_existing_sellers_without_invoices(tmp_path: Path) -> None:
    """A seller created before sellers had tax settings keeps `invoicing = false` (its
    invoices would name no tax number); the default seller's flag is the settings' own."""
    with _database_at("0010", tmp_path) as url:
        engine = make_engine(url)
        try:
            now = datetime(2026, 12, 1, 10, tzinfo=UTC)
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO sellers (id, source, name, created_at, updated_at) "
                        "VALUES ('old-seller', 'api', 'Alt', :now, :now)"
                    ),
                    {"now": now},
                )
            command.upgrade(alembic_config(url), "head")
            with engine.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == [], diff
            sessions = make_session_factory(engine)
            with sessions() as s, s.begin():
                old = s.get(Seller, "old-seller")
                assert old is not None and old.invoicing is False
                assert old.small_business is False and old.tax_number is None
                default = s.get(Seller, "default")
                assert default is not None and default.invoicing is True
                s.add(Seller(id="new-seller", source="api", name="Neu"))
            with sessions() as s:
                new = s.get(Seller, "new-seller")
                assert new is not None and new.invoicing is True and new.oss is False
            command.downgrade(alembic_config(url), "0010")
            with engine.connect() as conn:
                cols = {c["name"] for c in inspect(conn).get_columns("sellers")}
                assert "tax_number" not in cols and "invoicing" not in cols
                assert conn.execute(text("SELECT count(*) FROM sellers")).scalar_one() == 3
        finally:
            engine.dispose()
