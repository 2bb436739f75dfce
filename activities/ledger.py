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
from typing import Any

from sqlalchemy import select
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
        """Apply the state and facts; returns how many new facts were recorded."""
        new_events = 0
        recorded = 0
        after_commit: list[Callable[[], None]] = []  # metrics (issue 4 item 7)
        with transaction(self.sessions) as s:
            contract = s.get(Contract, inp.contract_id)
            if contract is None:
                raise RuntimeError(f"contract {inp.contract_id} is not in the ledger")
            seller = contract.seller_id  # the metrics' `seller` label (issue 14 part 5)
            contract.status = inp.status
            contract.stage = inp.stage
            contract.access = inp.access
            contract.overdue_amount = inp.overdue_amount
            contract.fees = inp.fees
            contract.case_no = inp.case_no
            contract.case_opened_at = inp.case_opened_at
            contract.paused = inp.paused
            contract.paused_until = inp.paused_until
            contract.contested = inp.contested
            if inp.claim is not None:
                contract.claim = asdict(inp.claim)
            if inp.claim_facts is not None:
                contract.claim_facts = {
                    **asdict(inp.claim_facts),
                    # api.claims: what domain.claim.demanded leaves out as of any day
                    "collecting": list(inp.collecting),
                    "collecting_defaulted": list(inp.collecting_defaulted),
                }
            if inp.case is not None or inp.call_in is not None:
                # issue 12: the case at the partner (GET /v1/contracts/{id} → collection)
                contract.collection = _json(
                    {
                        "case": asdict(inp.case) if inp.case is not None else None,
                        "call_in": asdict(inp.call_in) if inp.call_in is not None else None,
                        "deliveries": [asdict(d) for d in inp.deliveries],
                    }
                )
            if inp.customer_address is not None:
                # support recorded the postal address: the case file reads it from here
                contract.customer = {**(contract.customer or {}), "address": inp.customer_address}

            if inp.installments:
                rows = {
                    r.seq: r
                    for r in s.scalars(
                        select(Installment).where(Installment.contract_id == inp.contract_id)
                    )
                }
                for st in inp.installments:
                    row = rows.get(st.seq)
                    if row is None:
                        row = Installment(
                            contract_id=inp.contract_id,
                            seq=st.seq,
                            due_at=st.due_at,
                            amount=st.amount,
                        )
                        s.add(row)
                    row.due_at = st.due_at
                    row.amount = st.amount
                    row.paid_amount = st.paid
                    # A due installment whose debit Stripe refused as our integration error
                    # (or could not be reached for) waits `stalled` (SPEC §4 installment
                    # statuses); one already in dunning stays `open`: its claim is real.
                    stalled = st.stalled_until is not None and st.status == "scheduled"
                    row.status = "stalled" if stalled else st.status
                    ended = getattr(st, "ended", None)
                    row.ended = _json(asdict(ended)) if ended is not None else None
                    if st.status == "paid" and row.paid_at is None:
                        row.paid_at = datetime.now(UTC)
                    row.refunded_amount = st.refunded  # issue 12: refunds apart

            access = s.get(AccessState, (contract.customer_id, contract.product_id))
            if inp.access != "none" or access is not None:
                if access is None:
                    access = AccessState(
                        customer_id=contract.customer_id,
                        product_id=contract.product_id,
                        contract_id=contract.id,
                        access=inp.access,
                    )
                    s.add(access)
                access.contract_id = contract.id
                access.access = inp.access

            for key, status, code in (tuple(o) for o in inp.attempt_outcomes):
                att = s.scalar(select(PaymentAttempt).where(PaymentAttempt.idempotency_key == key))
                if att is not None:
                    if att.status != status:  # metrics: a SEPA debit's outcome arrived
                        after_commit.append(
                            partial(metrics.debit_outcome, status, code or None, seller)
                        )
                    att.status = status
                    att.decline_code = code or None
                    if status == "succeeded" and att.settled_at is None:
                        att.settled_at = datetime.now(UTC)

            if inp.facts:
                keys = [f.key for f in inp.facts]
                known = set(s.scalars(select(TimelineEvent.key).where(TimelineEvent.key.in_(keys))))
                for fact in inp.facts:
                    if fact.key in known:
                        continue
                    known.add(fact.key)
                    recorded += 1
                    data = _json(fact.data)
                    if fact.type == "access.locked":  # metrics
                        after_commit.append(partial(metrics.access_locked, seller))
                    elif fact.type == "contract.handed_off":  # metrics
                        after_commit.append(partial(metrics.handed_off, data.get("route"), seller))
                    elif fact.type in metrics.ALERT_FACTS:  # metrics: waits on an outage
                        after_commit.append(partial(metrics.alert, fact.type, seller))
                    s.add(
                        TimelineEvent(
                            contract_id=inp.contract_id,
                            key=fact.key,
                            type=fact.type,
                            occurred_at=fact.occurred_at,
                            actor=fact.actor,
                            data=data,
                        )
                    )
                    if fact.event:
                        eid = event_id_for(fact.key)
                        s.add(
                            OutboxEvent(
                                event_id=eid,
                                contract_id=inp.contract_id,
                                type=fact.event,
                                payload={
                                    "id": eid,
                                    "type": fact.event,
                                    "created": fact.occurred_at.astimezone(UTC).isoformat(),
                                    "contract_id": inp.contract_id,
                                    # the contract's seller (issue 14)
                                    "seller_id": contract.seller_id,
                                    "customer_id": inp.customer_id or contract.customer_id,
                                    "product_id": inp.product_id or contract.product_id,
                                    "data": data,
                                },
                            )
                        )
                        new_events += 1

            # The first answer of each support action, kept for a retry with the same
            # Idempotency-Key (api/routes/contracts.py); only the API's row is completed.
            for outcome in inp.actions:
                action = s.get(SupportActionRequest, (inp.contract_id, outcome.update_id))
                if action is not None and action.state != "done":
                    action.state = "done"
                    action.http_status = outcome.http_status
                    action.response = _json(outcome.response)
                    action.completed_at = datetime.now(UTC)
        for count in after_commit:  # metrics (issue 4 item 7): only what was committed
            count()
        new_events += self._credit_notes(inp)
        if new_events and self.on_events is not None:
            self.on_events()
        return recorded

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
