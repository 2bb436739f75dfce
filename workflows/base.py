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
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.claim import Claim, ClaimFacts, InstallmentFact, compute_claim, demanded
    from domain.deadlines import Deadline, next_send_time
    from domain.interest import BaseRate
    from domain.money import format_amount
    from domain.policy import LadderStep, Policy
    from domain.schedule import berlin_date
    from workflows import retry_policies as rp
    from workflows.types import (
        CaseState,
        ContractInput,
        ContractState,
        Fact,
        InstallmentEnd,
        InstallmentState,
        PaymentUpdate,
    )

TERMINAL = ("completed", "cancelled", "handed_off", "written_off", "failed")
# Statuses whose contract no longer takes actions at all (the API answers 409 without asking
# the workflow). Since PATCH_AFTER_HANDOFF a `handed_off` or `written_off` contract's
# workflow keeps running while anything is left (a plan debited on, the case at the
# partner): the workflow decides what it still accepts.
FINAL = ("completed", "cancelled", "failed")
# Since PATCH_AFTER_HANDOFF: statuses in TERMINAL whose workflow goes on (see `_terminal`).
AFTER = ("handed_off", "written_off")

# Patch id of issue 12 (every way a contract ends, parts 1 and 2): at a hand-off or write-off
# every installment ends with its reason (handed off, written off, cancelled) and the rest of
# the plan follows the policy's `on_default` (kept, called in by § 498 BGB, or stopped); the
# workflow keeps running after the hand-off: payments are recorded, allocated and reported
# to the partner, access unlocks per policy, later defaults join the case in follow-up case
# files, admins recall a case or record what the partner or the court reports; case files
# and messages to the partner are delivered by the loop, and a failed delivery waits and is
# tried again (1 h doubling up to a day) instead of failing the contract (issue 13 item 4).
# Decided once per run, at its start (`ContractBase._after`).
PATCH_AFTER_HANDOFF = "after-handoff"
# Patch id of issue 13 item 4 for contracts started before PATCH_AFTER_HANDOFF that reach the
# hand-off now: building or delivering the case file never fails the workflow; a failure is
# recorded (`collection.delivery_failed`), waits and is tried again until it succeeds.
PATCH_DELIVERY_WAITS = "collection-delivery-waits"
# A failed round of delivering to the collection partner waits this long, doubling, up to
# DELIVERY_WAIT_MAX, before the next round (each round retries within DELIVERY_ROUND).
DELIVERY_WAIT_FIRST = timedelta(hours=1)
DELIVERY_WAIT_MAX = timedelta(days=1)

# Patch id (workflow.patched) of prompt support actions (issue 13 item 3): the main loop no
# longer holds the lock across an activity that waits on the outside world (SMTP, Stripe);
# support actions that touch amounts wait only for a debit in flight; a new payment method
# is debited by the main loop; each action's answer is written to the ledger. Contracts
# started before it keep the old sequence.
PATCH_PROMPT_ACTIONS = "prompt-support-actions"

T = TypeVar("T")
# What a court needs to serve a Mahnbescheid: street, postal code and city (§ 690 (1) Nr. 1
# ZPO: "die Bezeichnung der Parteien", with a serviceable address, § 253 (2) Nr. 1 ZPO).
ADDRESS_FIELDS = ("line1", "postal_code", "city")


def never_defaulted(inst: InstallmentState) -> bool:
    """No debit of this installment failed and no chargeback reopened it: while unpaid, the
    creditor has not (successfully) tried to collect — no default (domain.claim.demanded,
    "Holschuld")."""
    return inst.last_code is None and inst.dunning_from is None


def address_missing(address: dict[str, str]) -> list[str]:
    """The postal-address fields missing or blank in `address` (empty: complete)."""
    return [
        f for f in ADDRESS_FIELDS if not isinstance(address.get(f), str) or not address[f].strip()
    ]


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
# Patch id of issue 11 (the claim, exact): the claim is computed by domain.claim from facts
# the workflow records (payments, fees, costs, waivers); debits, settlements, notices, the
# search attribute and the ledger read it; deadlines and the send window time the ladder;
# the lock has its own step; a court hand-off needs the debtor's address. Decided once per
# run, at its start (`ContractBase._exact`): contracts started before keep the old sequence.
PATCH_CLAIM = "claim-exact"
# Patch id of issue 13 item 4 (no outage fails a contract): a notice the mail server did not
# take for a whole day (the activity's schedule-to-close) is re-sent later (first after
# NOTICE_RETRY_FIRST, doubling up to NOTICE_RETRY_MAX) until it is delivered, with an event
# to the platform each time; while a dunning rung's notice is undelivered the ladder stands
# still (the customer is never escalated past a Mahnung they did not get), and the time it
# stood still moves the later rungs like a pause does.
PATCH_NOTICE_RETRY = "notice-retry"
NOTICE_RETRY_FIRST = timedelta(hours=1)
NOTICE_RETRY_MAX = timedelta(days=1)
# Notices that cannot succeed by waiting (no usable address, a missing template): recorded
# and announced, not retried; the ladder goes on (a new address or template is a fix support
# makes, and the next rung's notice asks for the whole claim).
NOTICE_PERMANENT_ERRORS = ("NoticeUndeliverable", "TemplateNotFound")
# Patch id of issue 12 items 3–5 (every way a contract ends): customer messages beyond
# dunning (payment failed, payment received, access restored, plan completed, refund
# confirmed) sent by the main loop, refunds made at Stripe recorded by their refund id, and a
# contract cancelled with a refund keeps listening for chargebacks. Decided once per run, at
# its start (`ContractWorkflow.run`, like PATCH_CLAIM): contracts started before keep the
# old sequence. The cancel update's new paths need no marker: a history holds their commands
# only if it holds such an update.
PATCH_ENDINGS = "contract-endings"
# Patch id of issue 15 (invoices): an installment, period or purchase is invoiced when it
# falls due (or once paid, ContractInput.invoice_timing) by the activity `issue_invoice`;
# the number is kept in the state. Contracts started before have no timing and issue none.
PATCH_INVOICES = "invoices"
# Patch id of issue 17 (close to bare Temporal): one marker instead of one per patch above —
# a run that records it takes every patch above without recording their markers (each cost
# a marker and a TemporalChangeVersion upsert: ~14 events per contract) — and the ledger's
# own activities (`sync_ledger`, `issue_invoice`, `base_rates`) run as local activities:
# one marker event each instead of an activity's three and a workflow task's three, and no
# round trip through the server. They are database writes the worker makes itself,
# idempotent by their keys, so running one again after a crash (a local activity's
# at-least-once) changes nothing. Decided once per run, at its start (`_lean`); runs started
# before keep their markers and activities.
PATCH_LEAN = "lean-history"


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

    # PATCH_LEAN, decided as the run's first step (`ContractWorkflow.run`)
    _lean: bool = False

    def _patched(self, patch_id: str) -> bool:
        """`workflow.patched(patch_id)`, but without a marker of its own in a run that
        recorded PATCH_LEAN: such a run started after every older patch existed."""
        return self._lean or workflow.patched(patch_id)

    async def _ledger_activity(
        self,
        activity: str,
        arg: object,
        *,
        result_type: type,
        retry_policy: RetryPolicy,
        summary: str,
    ) -> Any:
        """One of the ledger's own activities (a database write of this worker's): local
        since PATCH_LEAN, a normal activity in runs started before."""
        if self._lean:
            return await workflow.execute_local_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
                retry_policy=retry_policy,
                summary=summary,
            )
        return await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
            retry_policy=retry_policy,
            summary=summary,
        )

    def _prompt(self) -> bool:
        return self._patched(PATCH_PROMPT_ACTIONS)

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

    # PATCH_CLAIM for this run (set at the start of `run`; queries and validators read it)
    _exact: bool
    _claim_cache: tuple[tuple[object, ...], Claim] | None
    # PATCH_AFTER_HANDOFF for this run (set at the start of `run`, with PATCH_CLAIM only)
    _after: bool

    def _terminal(self) -> bool:
        """The contract has ended for the loop's purposes: no debits, no actions on its
        plan. Since PATCH_AFTER_HANDOFF a `handed_off` or `written_off` contract is not: its
        remaining installments are debited on (policy `on_default`), its case lives on."""
        return self.s.status in TERMINAL and not (self._after and self.s.status in AFTER)

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
        """What is overdue: the claim's total less principal whose debit is not in default
        (in flight, or not yet attempted). Before PATCH_CLAIM: open principal plus fees."""
        if self._exact:
            return self._overdue_of(self._claim())
        return sum(i.outstanding for i in self._open()) + self._fees_open()

    # -- the claim (domain.claim) --------------------------------------------------------------

    def _bump(self) -> int:
        """The next fact order (also the claim cache's version: bump on every change)."""
        self.s.fact_order += 1
        return self.s.fact_order

    def _rates(self) -> list[BaseRate]:
        return self.s.base_rates or list(self.inp.base_rates)

    def _claim(self, now: datetime | None = None) -> Claim:
        """The claim as of `now`'s Berlin day (default: workflow time), from the facts.

        Cached per (day, facts, installments): notices, the search attribute, the ledger and
        the decisions of one pass all read the same object."""
        day = berlin_date(now or workflow.now())
        insts = tuple(
            (i.seq, i.due_at, i.claim_due, i.amount)
            for i in self.s.installments
            if i.status != "cancelled"
        )
        key: tuple[object, ...] = (day, self.s.fact_order, insts, len(self._rates()))
        cached = getattr(self, "_claim_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        claim = compute_claim(self._claim_facts(), day)
        self._claim_cache = (key, claim)
        return claim

    def _claim_facts(self) -> ClaimFacts:
        """The facts of the claim (also stored in the ledger, so the API computes the claim
        as of any day with the same function)."""
        return ClaimFacts(
            customer_type=self.inp.customer.type,
            installments=[
                InstallmentFact(i.seq, i.claim_due or berlin_date(i.due_at), i.amount)
                for i in self.s.installments
                if i.status != "cancelled"
            ],
            payments=list(self.s.claim_payments),
            fees=list(self.s.claim_fees),
            costs=list(self.s.claim_costs),
            waivers=list(self.s.claim_waivers),
            interest=self.policy.interest,
            rates=self._rates(),
        )

    def _collecting(self) -> dict[int, bool]:
        """Installments being collected (a debit in flight or not attempted yet), each with
        whether it was in default before (domain.claim.demanded)."""
        return {
            i.seq: not never_defaulted(i)
            for i in self.s.installments
            if i.status in ("scheduled", "processing")
        }

    def _sync_paid(self, claim: Claim, now: datetime) -> None:
        """The installments' paid amounts as the claim allocated the payments (a settlement
        or a debit's excess may pay several, a prepayment one not due yet); one paid in
        full is `paid`. An installment whose debit is in flight keeps its status."""
        paid: dict[int, int] = {}
        for payment in claim.payments:
            for part in payment.parts:
                if part.part == "principal":
                    paid[part.installment] = paid.get(part.installment, 0) + part.amount
        for inst in self.s.installments:
            if inst.status in ("cancelled", "written_off"):
                continue  # (written off: its principal was waived, not paid)
            inst.paid = paid.get(inst.seq, 0)
            if inst.outstanding <= 0 and inst.status in ("open", "scheduled", "handed_off"):
                if inst.status == "handed_off":  # issue 12: paid after the hand-off
                    inst.ended = InstallmentEnd("paid", "paid after the hand-off", now)
                inst.status = "paid"
                inst.next_retry_at = None
                inst.paid_at = now

    def _send_time(self, now: datetime) -> datetime:
        """The next instant notices may go out (policy send_window, the seller's Land)."""
        return next_send_time(now, self.policy.send_window, self.inp.seller_state)

    def _may_send(self, now: datetime) -> bool:
        return not self._exact or self._send_time(now) <= now

    def _overdue_of(self, claim: Claim) -> int:
        return self._dunning_view(claim).total

    def _dunning_view(self, claim: Claim) -> Claim:
        """The claim as notices demand it, the API shows it and OverdueAmount counts it
        (domain.claim.demanded): without what is being collected."""
        return demanded(claim, self._collecting())

    def _principal_overdue(self, claim: Claim) -> int:
        return self._dunning_view(claim).principal

    def _installment_ended(
        self, inst: InstallmentState, how: str, reason: str, now: datetime
    ) -> None:
        """Record how `inst` ended (`schedule[].ended`) with an `installment.ended` fact and
        event (issue 12): the one record the hand-off, write-off, cancel and refund paths
        share — never silently."""
        inst.ended = InstallmentEnd(how, reason, now)
        self._fact(
            "installment.ended",
            f"ended:{self.inp.contract_id}:{inst.seq}:{how}:{self.s.case_no}",
            now,
            {
                "installment": inst.seq,
                "how": how,
                "reason": reason,
                "amount": inst.amount,
                "outstanding": inst.outstanding,
                "due_at": inst.due_at,
                "case": self.s.case_no,
            },
            event="installment.ended",
        )

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

    def _open_partner_case(self, now: datetime, route: str) -> None:
        raise NotImplementedError

    def _written_off_after(self, now: datetime, reason: str) -> None:
        raise NotImplementedError

    def _close_stage(self, now: datetime, why: str) -> None:
        raise NotImplementedError

    def _after_payment(
        self, now: datetime, key: str, amount: int, source: str, data: dict[str, object]
    ) -> None:
        raise NotImplementedError

    async def _deliver_case_file_waiting(self) -> None:
        raise NotImplementedError

    def _case_at_partner(self) -> CaseState | None:
        raise NotImplementedError

    def _ask_message(self, kind: str, stage: str, **fields: Any) -> None:
        raise NotImplementedError

    async def _send_notice(
        self, stage: str, template: str, now: datetime, until: Deadline | None = None
    ) -> None:
        raise NotImplementedError
