"""What the contract workflow's parts share: its state, the facts it records, and small
helpers both the debits and the dunning part use (workflows/contract.py assembles them).

Pure workflow code: imported inside the workflow sandbox with the workflow.
"""

from __future__ import annotations

from datetime import datetime, timedelta

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
