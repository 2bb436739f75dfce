"""What the contract workflow's parts share: its state, the facts it records, and small
helpers both the debits and the dunning part use (workflows/contract.py assembles them).

Pure workflow code: imported inside the workflow sandbox with the workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.money import format_amount
    from domain.policy import LadderStep, Policy
    from workflows.types import (
        ContractInput,
        ContractState,
        Fact,
        InstallmentState,
        PaymentUpdate,
    )

TERMINAL = ("completed", "cancelled", "handed_off", "written_off", "failed")

# Patch id (workflow.patched) of prompt support actions (issue 13 item 3): the main loop no
# longer holds the lock across an activity that waits on the outside world (SMTP, Stripe);
# support actions that touch amounts wait only for a debit in flight; a new payment method
# is debited by the main loop; each action's answer is written to the ledger. Contracts
# started before it keep the old sequence.
PATCH_PROMPT_ACTIONS = "prompt-support-actions"

T = TypeVar("T")
APPROVAL_REMINDER_EVERY = timedelta(days=7)

# Patch id (workflow.patched) of the SEPA pre-notification (issue 5): announcing debits,
# the payment method lookup, the 14-business-day processing cap and stalled debits change
# the commands a contract issues; contracts started before it keep their old behaviour.
PATCH_PRE_NOTIFICATION = "sepa-pre-notification"
# Stripe reports a SEPA debit's outcome within 14 TARGET business days ([S-SEPA],
# DOMAIN.md §4); a debit still `processing` after that is flagged for a human.
SEPA_PROCESSING_CAP_BUSINESS_DAYS = 14
# A debit whose Stripe calls failed through all activity retries waits this long (doubling,
# up to a day) and is tried again with the same idempotency key.
STALL_FIRST = timedelta(hours=1)
STALL_MAX = timedelta(days=1)
# Patch id of issue 10 (real Stripe): a residue under Stripe's minimum charge is not
# debited, an inactive SEPA mandate is not debited, and a poll whose Stripe calls fail
# waits instead of failing the workflow.
PATCH_STRIPE_STRICT = "stripe-strict"


class ContractBase:
    """State and helpers shared by :class:`workflows.debits.Debits`,
    :class:`workflows.dunning.Dunning` and the workflow class itself."""

    inp: ContractInput
    policy: Policy
    s: ContractState
    _facts: list[Fact]
    _outcomes: list[list[str]]
    _updates: list[PaymentUpdate]
    _auth_notice_pending: bool
    _lock: asyncio.Lock
    # True while the main loop holds `_lock` for its pass (not while it lent it out)
    _loop_owns_lock: bool
    # Debits of the main loop in flight while it lent the lock out (see `_outside`)
    _debiting: int

    async def _activity_outside(self, activity: str, arg: object, **options: Any) -> Any:
        """`workflow.execute_activity`, awaited without the lock (see `_outside`)."""
        return await self._outside(workflow.execute_activity(activity, arg, **options))

    def _prompt(self) -> bool:
        return workflow.patched(PATCH_PROMPT_ACTIONS)

    async def _outside(self, call: Awaitable[T], *, debit: bool = False) -> T:
        """Await an activity that waits on the outside world (an SMTP notice, a Stripe
        call) without holding the lock, so support actions are answered meanwhile
        (issue 13 item 3: SMTP down made them wait for a day).

        The main loop re-takes the lock before it goes on, so what it does with the result
        is serialised with the handlers as before. `debit`: a charge whose amount was
        computed before the call and is booked after it; actions that change amounts wait
        for it (`ContractWorkflow._acquire`) — they could not be allocated before its
        outcome is known (§ 366 BGB)."""
        if not (self._loop_owns_lock and self._prompt()):
            return await call
        self._debiting += debit
        self._loop_owns_lock = False
        self._lock.release()
        try:
            return await call
        finally:
            await self._lock.acquire()
            self._loop_owns_lock = True
            self._debiting -= debit

    def _fact(
        self,
        type_: str,
        key: str,
        now: datetime,
        data: dict,
        *,
        event: str | None = None,
        actor: str | None = None,
    ) -> None:
        self._facts.append(
            Fact(key=key, type=type_, occurred_at=now, data=data, actor=actor, event=event)
        )

    def _fees_open(self) -> int:
        return self.s.fees - self.s.fees_paid - self.s.fees_waived

    def _open(self) -> list[InstallmentState]:
        return sorted(
            (i for i in self.s.installments if i.status == "open"), key=lambda i: i.due_at
        )

    def _label(self, inst: InstallmentState) -> str:
        if self.inp.kind == "one_off":
            return "one-off payment"
        if self.inp.count:
            return f"installment {inst.seq} of {self.inp.count}"
        return f"period {inst.seq}"

    def _money(self, amount: int) -> str:
        return format_amount(amount, self.inp.currency, "de")

    def _case_open(self) -> bool:
        return self.s.stage != "none"

    def _overdue(self) -> int:
        return sum(i.outstanding for i in self._open()) + self._fees_open()

    # Defined by the other part (Debits / Dunning / the workflow); declared for each part.

    def _open_case(self, now: datetime) -> None:
        raise NotImplementedError

    def _grant_access(self, now: datetime, why: str) -> None:
        raise NotImplementedError

    def _settle_case(self, now: datetime) -> None:
        raise NotImplementedError

    def _check_completed(self, now: datetime) -> None:
        raise NotImplementedError

    async def _flush(self) -> None:
        raise NotImplementedError

    def _next_ladder_step(self) -> tuple[LadderStep, datetime] | None:
        raise NotImplementedError
