"""Write the workflow's state and facts to the ledger (DESIGN.md decision 1).

One activity, one transaction: the contract row, its installments, the access state, the
timeline and the platform events (outbox) change together or not at all. Every fact has
a key derived from business ids, so a retried activity is a no-op the second time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from core import metrics
from core.db import transaction
from core.models import (
    AccessState,
    Contract,
    Installment,
    OutboxEvent,
    PaymentAttempt,
    SupportActionRequest,
    TimelineEvent,
)
from workflows.types import LedgerSync

log = logging.getLogger(__name__)

# The tables, for the Core statements of the ledger write.
_contracts = cast(Table, Contract.__table__)
_installments = cast(Table, Installment.__table__)
_access = cast(Table, AccessState.__table__)
_attempts = cast(Table, PaymentAttempt.__table__)
_timeline = cast(Table, TimelineEvent.__table__)
_outbox = cast(Table, OutboxEvent.__table__)
_actions = cast(Table, SupportActionRequest.__table__)
# What the workflow sets of an installment (besides `paid_at`, set once when it is paid).
_INSTALLMENT = ("due_at", "amount", "paid_amount", "status", "ended", "refunded_amount")

_EVENT_NS = uuid.UUID("6f1c1d0e-8a43-4c52-9a5e-6d61686e7765")


def event_id_for(fact_key: str) -> str:
    """Stable event id: the platform de-duplicates on it (SPEC.md §5)."""
    return "evt_" + uuid.uuid5(_EVENT_NS, fact_key).hex


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


class LedgerActivities:
    def __init__(
        self, session_factory: sessionmaker[Session], on_events: Any = None, settings: Any = None
    ) -> None:
        self.sessions = session_factory
        # Called after commit when platform events were written (wakes the dispatcher).
        self.on_events = on_events
        self.settings = settings  # core.settings.Settings for credit notes (None: the process's)

    @activity.defn(name="sync_ledger")
    def sync_ledger(self, inp: LedgerSync) -> int:
        """Apply the state and facts; returns how many new facts were recorded.

        Written in SQLAlchemy Core, one statement per table (issue 17: through the ORM this
        write was most of its worker time in a due-date wave, loading every column of the
        contract to change a few). Rows change only where a value differs, as the ORM did,
        except the contract's own row, which every write sets (one UPDATE … RETURNING)."""
        cid = inp.contract_id
        recorded = 0
        new_events = 0
        after_commit: list[Callable[[], None]] = []  # metrics (issue 4 item 7)
        now = datetime.now(UTC)
        with transaction(self.sessions) as s:
            conn = s.connection()
            head = self._write_contract(conn, inp)
            seller = head.seller_id  # the metrics' `seller` label (issue 14 part 5)
            if inp.installments:
                self._write_installments(conn, inp, now)
            self._write_access(conn, inp, head.customer_id, head.product_id)
            if inp.attempt_outcomes:
                self._write_attempts(conn, inp, now, seller, after_commit)
            if inp.facts:
                recorded, new_events = self._write_facts(conn, inp, head, after_commit)
            # The first answer of each support action, kept for a retry with the same
            # Idempotency-Key (api/routes/contracts.py); only the API's row is completed.
            for outcome in inp.actions:
                conn.execute(
                    update(_actions)
                    .where(
                        _actions.c.contract_id == cid,
                        _actions.c.idempotency_key == outcome.update_id,
                        _actions.c.state != "done",
                    )
                    .values(
                        state="done",
                        http_status=outcome.http_status,
                        response=_json(outcome.response),
                        completed_at=now,
                    )
                )
        for count in after_commit:  # metrics (issue 4 item 7): only what was committed
            count()
        new_events += self._credit_notes(inp)
        if new_events and self.on_events is not None:
            self.on_events()
        return recorded

    @staticmethod
    def _write_contract(conn: Connection, inp: LedgerSync) -> Row[Any]:
        """The contract's state; returns its seller, customer and product."""
        values: dict[str, Any] = {
            "status": inp.status,
            "stage": inp.stage,
            "access": inp.access,
            "overdue_amount": inp.overdue_amount,
            "fees": inp.fees,
            "case_no": inp.case_no,
            "case_opened_at": inp.case_opened_at,
            "paused": inp.paused,
            "paused_until": inp.paused_until,
            "contested": inp.contested,
        }
        if inp.claim is not None:
            values["claim"] = asdict(inp.claim)
        if inp.claim_facts is not None:
            values["claim_facts"] = {
                **asdict(inp.claim_facts),
                # api.claims: what domain.claim.demanded leaves out as of any day
                "collecting": list(inp.collecting),
                "collecting_defaulted": list(inp.collecting_defaulted),
            }
        if inp.case is not None or inp.call_in is not None:
            # issue 12: the case at the partner (GET /v1/contracts/{id} → collection)
            values["collection"] = _json(
                {
                    "case": asdict(inp.case) if inp.case is not None else None,
                    "call_in": asdict(inp.call_in) if inp.call_in is not None else None,
                    "deliveries": [asdict(d) for d in inp.deliveries],
                }
            )
        if inp.customer_address is not None:
            # support recorded the postal address: the case file reads it from here
            customer = conn.scalar(
                select(_contracts.c.customer).where(_contracts.c.id == inp.contract_id)
            )
            values["customer"] = {**(customer or {}), "address": inp.customer_address}
        head_columns = (_contracts.c.seller_id, _contracts.c.customer_id, _contracts.c.product_id)
        where = _contracts.c.id == inp.contract_id
        if conn.dialect.update_returning:
            stmt = update(_contracts).where(where).values(values).returning(*head_columns)
            head = conn.execute(stmt).first()
        else:  # SQLite before 3.35
            conn.execute(update(_contracts).where(where).values(values))
            head = conn.execute(select(*head_columns).where(where)).first()
        if head is None:
            raise RuntimeError(f"contract {inp.contract_id} is not in the ledger")
        return head

    @staticmethod
    def _write_installments(conn: Connection, inp: LedgerSync, now: datetime) -> None:
        """Every installment the workflow knows; a row is written only when it differs."""
        rows = {
            r.seq: r
            for r in conn.execute(
                select(
                    *(_installments.c[name] for name in ("seq", "paid_at", *_INSTALLMENT))
                ).where(_installments.c.contract_id == inp.contract_id)
            )
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for st in inp.installments:
            # A due installment whose debit Stripe refused as our integration error (or
            # could not be reached for) waits `stalled` (SPEC §4 installment statuses); one
            # already in dunning stays `open`: its claim is real.
            stalled = st.stalled_until is not None and st.status == "scheduled"
            ended = getattr(st, "ended", None)
            want: dict[str, Any] = {
                "due_at": st.due_at,
                "amount": st.amount,
                "paid_amount": st.paid,
                "status": "stalled" if stalled else st.status,
                "ended": _json(asdict(ended)) if ended is not None else None,
                "refunded_amount": st.refunded,  # issue 12: refunds apart
            }
            row = rows.get(st.seq)
            paid_at = row.paid_at if row is not None else None
            if st.status == "paid" and paid_at is None:
                paid_at = now
            if row is None:
                inserts.append(
                    {"contract_id": inp.contract_id, "seq": st.seq, "paid_at": paid_at, **want}
                )
            elif paid_at != row.paid_at or any(getattr(row, k) != v for k, v in want.items()):
                updates.append({"b_seq": st.seq, "paid_at": paid_at, **want})
        if inserts:
            conn.execute(insert(_installments), inserts)
        if updates:
            conn.execute(
                update(_installments).where(
                    _installments.c.contract_id == inp.contract_id,
                    _installments.c.seq == bindparam("b_seq"),
                ),
                updates,
            )

    @staticmethod
    def _write_access(conn: Connection, inp: LedgerSync, customer_id: str, product_id: str) -> None:
        key = (_access.c.customer_id == customer_id, _access.c.product_id == product_id)
        row = conn.execute(select(_access.c.contract_id, _access.c.access).where(*key)).first()
        if row is None:
            if inp.access != "none":
                conn.execute(
                    insert(_access).values(
                        customer_id=customer_id,
                        product_id=product_id,
                        contract_id=inp.contract_id,
                        access=inp.access,
                    )
                )
        elif row.contract_id != inp.contract_id or row.access != inp.access:
            conn.execute(
                update(_access).where(*key).values(contract_id=inp.contract_id, access=inp.access)
            )

    @staticmethod
    def _write_attempts(
        conn: Connection,
        inp: LedgerSync,
        now: datetime,
        seller: str,
        after_commit: list[Callable[[], None]],
    ) -> None:
        """Outcomes of debits that arrived after the attempt was recorded (SEPA)."""
        outcomes = [tuple(o) for o in inp.attempt_outcomes]
        current = {
            r.idempotency_key: [r.status, r.decline_code, r.settled_at]
            for r in conn.execute(
                select(
                    _attempts.c.idempotency_key,
                    _attempts.c.status,
                    _attempts.c.decline_code,
                    _attempts.c.settled_at,
                ).where(_attempts.c.idempotency_key.in_({o[0] for o in outcomes}))
            )
        }
        changed: set[str] = set()
        for key, status, code in outcomes:
            att = current.get(key)
            if att is None:
                continue
            if att[0] != status:  # metrics: a SEPA debit's outcome arrived
                after_commit.append(partial(metrics.debit_outcome, status, code or None, seller))
            settled = now if status == "succeeded" and att[2] is None else att[2]
            if [status, code or None, settled] != att:
                current[key] = [status, code or None, settled]
                changed.add(key)
        if changed:
            conn.execute(
                update(_attempts).where(_attempts.c.idempotency_key == bindparam("b_key")),
                [
                    {"b_key": k, "status": v[0], "decline_code": v[1], "settled_at": v[2]}
                    for k, v in current.items()
                    if k in changed
                ],
            )

    @staticmethod
    def _write_facts(
        conn: Connection,
        inp: LedgerSync,
        head: Row[Any],
        after_commit: list[Callable[[], None]],
    ) -> tuple[int, int]:
        """The timeline and the platform events (outbox) of the facts not recorded yet;
        returns how many facts and events were new."""
        seller = head.seller_id
        keys = [f.key for f in inp.facts]
        known = set(conn.scalars(select(_timeline.c.key).where(_timeline.c.key.in_(keys))))
        timeline: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        for fact in inp.facts:
            if fact.key in known:
                continue
            known.add(fact.key)
            data = _json(fact.data)
            if fact.type == "access.locked":  # metrics
                after_commit.append(partial(metrics.access_locked, seller))
            elif fact.type == "contract.handed_off":  # metrics
                after_commit.append(partial(metrics.handed_off, data.get("route"), seller))
            elif fact.type in metrics.ALERT_FACTS:  # metrics: waits on an outage
                after_commit.append(partial(metrics.alert, fact.type, seller))
            timeline.append(
                {
                    "contract_id": inp.contract_id,
                    "key": fact.key,
                    "type": fact.type,
                    "occurred_at": fact.occurred_at,
                    "actor": fact.actor,
                    "data": data,
                }
            )
            if fact.event:
                eid = event_id_for(fact.key)
                outbox.append(
                    {
                        "event_id": eid,
                        "contract_id": inp.contract_id,
                        "type": fact.event,
                        "payload": {
                            "id": eid,
                            "type": fact.event,
                            "created": fact.occurred_at.astimezone(UTC).isoformat(),
                            "contract_id": inp.contract_id,
                            "seller_id": seller,  # the contract's seller (issue 14)
                            "customer_id": inp.customer_id or head.customer_id,
                            "product_id": inp.product_id or head.product_id,
                            "data": data,
                        },
                    }
                )
        # In the facts' order: the dispatcher delivers a contract's events by id.
        if timeline:
            conn.execute(insert(_timeline), timeline)
        if outbox:
            conn.execute(insert(_outbox), outbox)
        return len(timeline), len(outbox)

    def _credit_notes(self, inp: LedgerSync) -> int:
        """A refund of an invoiced installment gets its credit note (issue 15): for every
        `refund.created` fact of this sync — also the ones a retried sync finds recorded
        already, since the credit note is idempotent by the fact's key. A refund of an
        installment without an invoice (invoicing off, or a contract from before) has none.
        The fact's `reason` (withdrawal, cancellation, goodwill, …) names it; default
        `refund`. Returns how many were issued."""
        from core.invoicing import CREDIT_REASONS_DE, InvoiceError, issue_credit_note

        issued = 0
        for fact in inp.facts:
            if fact.type != "refund.created":
                continue
            seq, amount = fact.data.get("installment"), fact.data.get("amount")
            if not isinstance(seq, int) or not isinstance(amount, int) or amount <= 0:
                continue
            reason = fact.data.get("reason")
            try:
                note = issue_credit_note(
                    self.sessions,
                    contract_id=inp.contract_id,
                    seq=seq,
                    amount=amount,
                    reason=reason if reason in CREDIT_REASONS_DE else "refund",
                    ref=fact.key,
                    issued_at=fact.occurred_at,
                    settings=self.settings,
                )
            except InvoiceError as exc:
                log.info("no credit note for %s: %s", fact.key, exc)
                continue
            issued += note.created
        return issued
