"""The contract workflow: one durable process per purchase (SPEC.md §2).

It sleeps until the next thing is due — an installment, a retry, a poll of a debit still
`processing`, or the next rung of the dunning ladder — does it, writes what happened to the
ledger, and sleeps again. Outside events (Stripe webhooks, support actions) arrive as
signals and updates and wake it up. `domain/` decides, activities act; this file only
sequences.

The workflow class is assembled from parts: `workflows/debits.py` (charging, retries, SEPA,
chargebacks), `workflows/dunning.py` (the ladder, notices, hand-off) and the shared state and
helpers in `workflows/base.py`; this file holds the loop, the ledger, the message handlers
(signals, updates with their validators, the query) and continue-as-new. The parts are pure
workflow code, passed through the sandbox like `domain/`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.allocation import Claim, Item, allocate
    from domain.claim import RETURN_DEBIT, CostFact, FeeFact, PaymentFact, WaiverFact
    from domain.collection import CASE_STATUSES, UNCOLLECTIBLE, approved_route
    from domain.durations import parse_interval
    from domain.endings import REASONS
    from domain.interest import BaseRate
    from domain.schedule import BERLIN, berlin_date, due_instant, installment_due_times, shift
    from workflows import retry_policies as rp
    from workflows.base import (
        AFTER,
        PATCH_AFTER_HANDOFF,
        PATCH_CLAIM,
        PATCH_ENDINGS,
        PATCH_LEAN,
        TERMINAL,
        address_missing,
    )
    from workflows.collection import Collection
    from workflows.endings import Endings
    from workflows.invoicing import Invoicing
    from workflows.types import (
        ActionOutcome,
        ActionResult,
        CaseStatusEntry,
        ChargeResult,
        ClaimLine,
        ContractInput,
        ContractState,
        ContractView,
        Fact,
        InstallmentState,
        InterestInput,
        InterestOutput,
        LedgerSync,
        MandateUpdate,
        NoticeAsked,
        PaymentMethodRequest,
        PaymentUpdate,
        SettlementRequest,
        SupportAction,
        action_error,
        action_response,
    )

# How many applied support actions a contract remembers by Update id (ContractState.
# done_actions): retries come within minutes, not after a hundred other actions.
DONE_ACTIONS_KEPT = 100

# Patch id: `_dirty` is cleared when a pass of the loop starts, no longer when it goes to
# sleep. Before, a signal that arrived during the pass (a SEPA webhook while the ledger sync
# ran, a new card from Stripe) set it after `_process` had looked and was cleared again by
# `_sleep_until`: the contract slept through it until its next wake-up (6 h for a SEPA
# debit, for ever when nothing was scheduled). Found by tests/chaos (issue 6).
PATCH_WAKE_ON_SIGNAL_DURING_PASS = "wake-on-signal-during-pass"

SA_STATUS = SearchAttributeKey.for_keyword("MahnwerkStatus")
SA_STAGE = SearchAttributeKey.for_keyword("DunningStage")
SA_CUSTOMER = SearchAttributeKey.for_keyword("CustomerId")
SA_OVERDUE = SearchAttributeKey.for_int("OverdueAmount")
SA_LOCKED = SearchAttributeKey.for_bool("AccessLocked")
# The contract's seller (issue 14): set by the API at start, never changed; carried over by
# continue-as-new like CustomerId. Contracts started before it get "default" (PATCH_SELLER_ID).
SA_SELLER = SearchAttributeKey.for_keyword("SellerId")
PATCH_SELLER_ID = "seller-id-attribute"


def search_attributes(
    customer_id: str,
    status: str,
    stage: str,
    overdue: int,
    locked: bool,
    seller_id: str | None = None,
) -> TypedSearchAttributes:
    """The SPEC.md §7 search attributes, also set by the API when it starts a contract."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(SA_CUSTOMER, customer_id),
        SearchAttributePair(SA_STATUS, status),
        SearchAttributePair(SA_STAGE, stage),
        SearchAttributePair(SA_OVERDUE, overdue),
        SearchAttributePair(SA_LOCKED, locked),
    ]
    if seller_id is not None:
        pairs.append(SearchAttributePair(SA_SELLER, seller_id))
    return TypedSearchAttributes(pairs)


@workflow.defn(name="contract")
class ContractWorkflow(Endings, Invoicing, Collection):
    @workflow.init
    def __init__(self, inp: ContractInput) -> None:
        self.inp = inp
        self.policy = inp.policy
        self.s = inp.state or ContractState(payment_method=inp.payment_method)
        self._lock = asyncio.Lock()
        self._dirty = False
        self._updates: list[PaymentUpdate] = []
        self._mandate_updates: list[MandateUpdate] = []
        self._facts: list[Fact] = []
        self._outcomes: list[list[str]] = []
        self._sa_last: tuple[str, str, int, bool] | None = None
        self._waiting_for = "starting"
        self._new_method: PaymentMethodRequest | None = None
        self._auth_notice_pending = False
        self._loop_owns_lock = False
        self._debiting = 0
        self._action_outcomes: list[ActionOutcome] = []
        # Payment methods support gave, debited by the main loop (not under the lock)
        self._pm_queue: list[tuple[str, PaymentMethodRequest]] = []
        self._pm_done: dict[str, list[ChargeResult]] = {}
        # PATCH_CLAIM, decided at the start of `run` (a query cannot record a marker); a new
        # contract takes the new path, so that is the default until `run` says otherwise.
        self._exact = True
        self._endings = True  # PATCH_ENDINGS, decided at the start of `run` like PATCH_CLAIM
        self._after = True  # PATCH_AFTER_HANDOFF, likewise
        self._claim_cache = None
        self._address_changed = False
        # Started before issue 14 (no seller): SellerId is set to "default" once (_flush)
        self._seller_sa_pending = not inp.seller_id

    # -- the loop ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ContractInput) -> ContractView:
        # First, before any other patch is asked: a run that records PATCH_LEAN takes every
        # older patch without a marker of its own (ContractBase._patched).
        self._lean = workflow.patched(PATCH_LEAN)
        self._exact = self._patched(PATCH_CLAIM)
        self._endings = self._patched(PATCH_ENDINGS)
        self._after = self._exact and self._patch_after_handoff()
        if inp.state is None:
            self._sa_last = ("active", "none", 0, False)  # set by the API at start
            if self._exact:
                self.s.claim_facts = True
                self.s.base_rates = list(inp.base_rates)
            self._start(workflow.now())
            if self._announcing():
                # Once per method: a SEPA method's debits are announced beforehand.
                await self._method()
        else:
            if self._exact and not self.s.claim_facts:
                self._convert_legacy_state(workflow.now())
            self._sa_last = self._sa_tuple()  # carried over by continue-as-new
        while True:
            async with self._lock:
                self._loop_owns_lock = True
                try:
                    if self._patched(PATCH_WAKE_ON_SIGNAL_DURING_PASS):
                        self._dirty = False  # from here on, a signal wakes the next sleep
                    # invoices due now exist before their debit, notice or case file (issue 15)
                    await self._issue_invoices(workflow.now())
                    await self._process(workflow.now())
                    await self._issue_invoices(workflow.now())  # paid or fallen due meanwhile
                    if self._after:  # also once the contract ended: what the partner is owed
                        await self._deliver_due(workflow.now())
                    await self._flush()
                    if self.s.messages_pending:  # issue 12: customer messages, without the lock
                        await self._send_messages()
                        await self._flush()
                finally:
                    self._loop_owns_lock = False
            if self._finished():
                watch = self._chargeback_watch_until()
                if watch is None or watch <= workflow.now():
                    break
                # Paid in full, but a debit can still be reclaimed: keep listening.
                await self._sleep_until(watch, "the chargeback window to close")
                continue
            if self._should_continue_as_new():
                # A payment-method action waits for this loop to debit: let it (it set
                # `_dirty`, so the loop runs another pass instead of continuing as new).
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or bool(self._pm_queue)
                )
                if not self._dirty:
                    workflow.continue_as_new(self._next_run_input())
                continue
            wake, why = self._next_wake()
            await self._sleep_until(wake, why)
        if self.s.status == "handed_off" and self.s.case_file_id is None and not self._after:
            if self._exact:
                # An admin's approval or support's address may come at any hour: the
                # announcement still goes out within the send window.
                at = self._send_time(workflow.now())
                if at > workflow.now():
                    await workflow.sleep(at - workflow.now(), summary="the send window")
            # Announce the hand-off to the customer, then give the case to the partner.
            await self._send_notice("handoff", "handoff", workflow.now())
            await self._deliver_case_file()
        self._waiting_for = f"nothing: contract {self.s.status}"
        workflow.set_current_details(f"Contract **{self.s.status}**.")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    def _patch_after_handoff(self) -> bool:
        """PATCH_AFTER_HANDOFF for this run (a method of its own: tests run a contract as
        one started before the patch by replacing it)."""
        return self._patched(PATCH_AFTER_HANDOFF)

    def _finished(self) -> bool:
        """The loop ends (but for the chargeback watch). Since PATCH_AFTER_HANDOFF a handed-off
        or written-off contract goes on while anything is left: installments to debit or in
        flight, the case at the partner, deliveries to it, a call-in, a payment method."""
        if self._after and (self.s.deliveries or self._case_at_partner() is not None):
            return False  # something is still owed to the partner, or it holds the case
        if not self._after or self.s.status not in AFTER:
            return self.s.status in TERMINAL
        if any(i.status in ("scheduled", "processing", "open") for i in self.s.installments):
            return False
        if self._pm_queue:
            return False
        return self.s.residual is None

    def _start(self, now: datetime) -> None:
        inp = self.inp
        if inp.kind == "one_off":
            inst = InstallmentState(seq=1, due_at=due_instant(inp.first_due), amount=inp.amount)
            if inp.payment_intent:
                # The platform created the PaymentIntent at checkout: watch it, never debit.
                inst.status = "processing"
                inst.payment_intent = inp.payment_intent
                inst.processing_since = now
                inst.next_poll_at = now
            self.s.installments = [inst]
            self.s.generated = 1
        elif inp.kind == "installments":
            if not (inp.interval and inp.count):  # the API checks it; never an assert here
                raise ApplicationError(
                    "an installment plan needs an interval and a count",
                    type="InvalidInput",
                    non_retryable=True,
                )
            dues = installment_due_times(inp.first_due, inp.interval, inp.count)
            self.s.installments = [
                InstallmentState(seq=i + 1, due_at=d, amount=inp.amount) for i, d in enumerate(dues)
            ]
            self.s.generated = inp.count
        else:
            self._generate_subscription_periods(now)
        self._fact("contract.started", f"started:{inp.contract_id}", now, {"kind": inp.kind})
        if inp.kind != "one_off":
            # Installment plans and subscriptions grant access at checkout; the ladder may
            # lock it later. A one-off grants it on payment (SPEC.md §2).
            self._grant_access(now, "contract started")

    def _convert_legacy_state(self, now: datetime) -> None:
        """A contract started before PATCH_CLAIM continues as new into a run that has it:
        its amounts become facts. Continue-as-new happens only without an open case, so
        what is carried is little: partial payments of the installments still scheduled,
        fees left open by a deferral (return-debit costs apart) and an interest waiver."""
        day = berlin_date(now)
        self.s.base_rates = list(self.inp.base_rates)
        for inst in self.s.installments:
            if inst.paid > 0:
                on = berlin_date(inst.paid_at or now)
                self.s.claim_payments.append(
                    PaymentFact(f"legacy:{inst.seq}", on, inst.paid, inst.seq, self._bump())
                )
        open_fees = max(self.s.fees - self.s.fees_paid - self.s.fees_waived, 0)
        costs = min(self.s.return_debit_costs, open_fees)
        if costs:
            self.s.claim_costs.append(
                CostFact("legacy:return_debit", day, costs, RETURN_DEBIT, order=self._bump())
            )
        if open_fees - costs:
            self.s.claim_fees.append(
                FeeFact("legacy:fees", day, open_fees - costs, order=self._bump())
            )
        if self.s.interest_waived:
            self.s.claim_waivers.append(
                WaiverFact("legacy:interest", day, interest=True, order=self._bump())
            )
        self.s.claim_facts = True

    def _generate_subscription_periods(self, now: datetime) -> None:
        """Subscriptions renew each interval: keep exactly one future period scheduled."""
        inp = self.inp
        if not inp.interval:  # the API checks it; never an assert here
            raise ApplicationError(
                "a subscription needs an interval", type="InvalidInput", non_retryable=True
            )
        first = due_instant(inp.first_due)
        interval = parse_interval(inp.interval)
        while not any(i.status == "scheduled" for i in self.s.installments):
            seq = self.s.generated + 1
            due = shift(first, interval, seq - 1)
            if self.s.cancel_at is not None and due >= self.s.cancel_at:
                return  # cancelled: no renewal at or after the cancellation
            self.s.installments.append(InstallmentState(seq=seq, due_at=due, amount=inp.amount))
            self.s.generated = seq

    async def _process(self, now: datetime) -> None:
        if self.s.paused and self.s.paused_until is not None and self.s.paused_until <= now:
            self._end_pause(now, actor=None, why="pause ended")
        self._apply_payment_updates(now)
        mandates, self._mandate_updates = self._mandate_updates, []
        for mu in mandates:
            self._mandate_changed(mu, now)
        while self._pm_queue and not self._terminal():
            ref, pm = self._pm_queue.pop(0)
            self._pm_done[ref] = await self._outside(
                self._use_new_method(pm, "payment method replaced by support"), debit=True
            )
        if self._new_method is not None and not self._terminal():
            req, self._new_method = self._new_method, None
            await self._outside(
                self._use_new_method(req, "payment method updated at Stripe"), debit=True
            )
        if self.inp.kind == "subscription" and not self._terminal():
            self._generate_subscription_periods(now)
        if self._exact:
            await self._refresh_rates(now)  # the worker's table, not an outside service
        await self._outside(self._announce_debits(now))  # SMTP: pre-notifications
        for inst in sorted(self.s.installments, key=lambda i: i.seq):
            if self._terminal():
                return
            if inst.stalled_until is not None and inst.stalled_until > now:
                continue  # Stripe was unreachable: tried again at stalled_until
            if inst.status == "scheduled" and inst.due_at <= now:
                if inst.outstanding <= 0:
                    inst.status = "paid"
                    continue
                await self._outside(self._charge(inst, "due"), debit=True)
            elif (
                inst.status == "open"
                and not self.s.paused
                and inst.next_retry_at
                and inst.next_retry_at <= now
            ):
                await self._outside(self._charge(inst, "retry"), debit=True)
            elif inst.status == "processing" and inst.next_poll_at and inst.next_poll_at <= now:
                # Not a `debit`: a settlement never touches an installment in `processing`.
                await self._outside(self._poll(inst))
        self._settle_case(workflow.now())
        if (
            self._auth_notice_pending
            and self._open()
            and not self.s.paused
            and self._may_send(workflow.now())
        ):
            # Off-session the bank wants the customer: send the link instead of retrying.
            self._auth_notice_pending = False
            await self._flush()
            await self._send_notice("authentication", "authentication_required", workflow.now())
        if self.s.notice_retries and not self._terminal():
            await self._retry_notices(workflow.now())  # SMTP was down for a day
        if self._case_open() and self.s.status not in TERMINAL and not self.s.paused:
            await self._walk_ladder()
        if self._exact and not self.s.paused:
            await self._residual_step(workflow.now())
        self._remind_approval(workflow.now())
        if self._after:
            await self._collection_step(workflow.now())
        self._check_completed(workflow.now())
        if self.inp.kind == "subscription" and not self._terminal():
            self._generate_subscription_periods(workflow.now())  # the next renewal

    def _next_wake(self) -> tuple[datetime | None, str]:
        candidates: list[tuple[datetime, str]] = []
        count = self.inp.count
        for inst in self.s.installments:
            label = f"installment {inst.seq}" + (f" of {count}" if count else "")
            stalled = inst.stalled_until
            if inst.status == "scheduled":
                at = max(inst.due_at, stalled) if stalled else inst.due_at
                candidates.append((at, f"{label} due"))
            elif inst.status == "open" and inst.next_retry_at and not self.s.paused:
                at = max(inst.next_retry_at, stalled) if stalled else inst.next_retry_at
                candidates.append((at, f"retry {inst.retries_done + 1} of {label}"))
            elif inst.status == "processing" and inst.next_poll_at:
                candidates.append((inst.next_poll_at, f"check the debit of {label}"))
        for inst, at in self._unannounced_debits():
            label = f"installment {inst.seq}" + (f" of {count}" if count else "")
            candidates.append((at - self.policy.sepa.lead(), f"SEPA pre-notification of {label}"))
        step = None if self.s.paused else self._next_ladder_step()
        if step is not None:
            candidates.append((step[1], f"dunning stage {step[0].stage}"))
        if self.s.paused and self.s.paused_until is not None:
            candidates.append((self.s.paused_until, "the end of the pause"))
        if self.s.cancel_at is not None and self.s.cancel_at > workflow.now():
            # (only ahead: one already passed with something still open would wake the loop
            # at once, again and again, until the workflow task timed out)
            candidates.append((self.s.cancel_at, "the end of the contract (cancelled)"))
        reminder = self._next_approval_reminder()
        if reminder is not None:
            candidates.append((reminder, "a reminder to admins: hand-off awaits approval"))
        if self._exact and not self.s.paused:
            if self._auth_notice_pending and self._open():
                candidates.append((self._send_time(workflow.now()), "the send window"))
            residual = self._residual_wake()
            if residual is not None:
                candidates.append(residual)
        retry = self._notice_retry_wake()
        if retry is not None:
            candidates.append(retry)
        if self._after:
            candidates += self._collection_wakes()
        if self.s.awaiting_approval:
            why = "an admin's approval of the hand-off (or a payment)"
            return min(candidates, key=lambda c: c[0]) if candidates else (None, why)
        case = self._case_at_partner() if self._after else None
        if case is not None and not candidates:
            return None, (
                f"a payment, the partner's report or an admin's action (case {case.case_no} "
                f"at the {case.route} partner)"
            )
        if not candidates:
            return None, "a payment or a support action"
        return min(candidates, key=lambda c: c[0])

    def _collection_wakes(self) -> list[tuple[datetime, str]]:
        """When the after-hand-off part (workflows.collection) has something to do."""
        out: list[tuple[datetime, str]] = []
        now = workflow.now()
        case = self._case_at_partner()
        if case is not None and not case.notice_sent:
            out.append((self._send_time(now), "the send window (hand-off announcement)"))
        nxt = self._next_delivery()
        if nxt is not None:
            out.append(nxt)
        if any(d.next_try_at is None for d in self.s.deliveries):
            out.append((now, "a delivery to the partner"))
        ci = self.s.call_in
        if ci is not None and case is not None:
            if ci.status == "notice_due":
                at = max(self._send_time(now), ci.next_step_at or now)
                out.append((at, "the send window (§ 498 BGB notice)"))
            elif ci.status == "noticed" and ci.next_step_at is not None:
                out.append(
                    (ci.next_step_at, "the § 498 BGB deadline: the rest falls due if unpaid")
                )
        return out

    async def _sleep_until(self, wake: datetime | None, why: str) -> None:
        if not self._patched(PATCH_WAKE_ON_SIGNAL_DURING_PASS):
            self._dirty = False  # before the patch: a signal during the pass was slept through
        if wake is None:
            self._waiting_for = why
            workflow.set_current_details(f"Waiting for {why}.")
            await workflow.wait_condition(lambda: self._dirty)
            return
        delta = wake - workflow.now()
        if delta <= timedelta(0):
            return
        when = wake.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M:%S")
        self._waiting_for = f"{why} at {when} Europe/Berlin"
        workflow.set_current_details(f"Waiting until **{when}** (Europe/Berlin): {why}.")
        try:
            await workflow.wait_condition(
                lambda: self._dirty, timeout=delta, timeout_summary=f"wait until {when} ({why})"
            )
        except TimeoutError:
            pass

    # -- continue-as-new ---------------------------------------------------------------------

    def _should_continue_as_new(self) -> bool:
        if self._case_open() or any(i.status == "processing" for i in self.s.installments):
            return False
        if self._exact and (
            self.s.residual is not None or self.s.needs_address or self._claim().total > 0
        ):
            return False  # the facts are compacted below only when nothing is open
        paid = sum(1 for i in self.s.installments if i.status == "paid")
        if self.inp.kind == "subscription" and paid >= self.inp.periods_per_run:
            return True
        return workflow.info().is_continue_as_new_suggested() and paid > 0

    def _next_run_input(self) -> ContractInput:
        # Paid periods live on in the ledger; the next run carries only what is still open.
        if self._exact:
            self._compact_facts(workflow.now())
        ended = ("paid", "cancelled", "written_off") if self._after else ("paid",)
        self.s.installments = [i for i in self.s.installments if i.status not in ended]
        self.s.run += 1
        inp = self.inp
        inp.state = self.s
        return inp

    def _compact_facts(self, now: datetime) -> None:
        """Nothing is open (checked above): the facts of the next run are the partial
        payments of the installments it carries; paid installments, settled fees and costs,
        and waivers go with this run's history (and stay in the ledger)."""
        day = berlin_date(now)
        ended = ("paid", "cancelled", "written_off") if self._after else ("paid",)
        kept = [i for i in self.s.installments if i.status not in ended]
        self.s.claim_payments = [
            PaymentFact(f"carried:{self.s.run}:{i.seq}", day, i.paid, i.seq, self._bump())
            for i in kept
            if i.paid > 0
        ]
        self.s.claim_fees, self.s.claim_costs, self.s.claim_waivers = [], [], []
        self.s.last_notice = None
        self._bump()

    async def _refresh_rates(self, now: datetime) -> None:
        """A half-year the claim needs has no § 247 BGB rate in the pinned table: ask the
        worker's table (MAHNWERK_BASE_RATES, added by the operator once the Bundesbank
        published it), at most once a Berlin day. The answer is recorded in the history, so
        replays compute the same claim."""
        day = berlin_date(now)
        claim = self._claim(now)
        if self.s.rates_checked_on == day or not claim.missing_base_rate:
            return
        if self._lean and not any(item.due < claim.as_of for item in claim.items):
            # Since PATCH_LEAN: asked only when interest runs (something open since before
            # today); the table's gap matters to no claim before that.
            return
        self.s.rates_checked_on = day
        try:
            rates: list[BaseRate] = await self._ledger_activity(
                "base_rates",
                day,
                result_type=list[BaseRate],
                retry_policy=rp.LEDGER,
                summary="look up § 247 BGB base rates (one is missing)",
            )
        except ActivityError:
            return  # tried again tomorrow; the claim says what is missing meanwhile
        if len(rates) > len(self._rates()):
            self.s.base_rates = rates
            self._bump()

    # -- ledger ------------------------------------------------------------------------------

    def _sa_tuple(self) -> tuple[str, str, int, bool]:
        return (self.s.status, self.s.stage, self._overdue(), self.s.access == "locked")

    async def _flush(self) -> None:
        """Write state and new facts to the ledger; keep the search attributes current."""
        if (
            self._seller_sa_pending
            and self.inp.search_attributes
            and self._patched(PATCH_SELLER_ID)
        ):
            # A contract started before sellers (issue 14) belongs to the default seller.
            workflow.upsert_search_attributes([SA_SELLER.value_set("default")])
            self._seller_sa_pending = False
        sa = self._sa_tuple()
        if sa != self._sa_last:
            if self.inp.search_attributes:
                workflow.upsert_search_attributes(
                    [
                        SA_STATUS.value_set(sa[0]),
                        SA_STAGE.value_set(sa[1]),
                        SA_OVERDUE.value_set(sa[2]),
                        SA_LOCKED.value_set(sa[3]),
                    ]
                )
            changed = True
            self._sa_last = sa
        else:
            changed = False
        if not self._facts and not self._outcomes and not changed and not self._action_outcomes:
            return
        facts, self._facts = self._facts, []
        outcomes, self._outcomes = self._outcomes, []
        actions, self._action_outcomes = self._action_outcomes, []
        summary = ", ".join(dict.fromkeys(f.type for f in facts)) or "state"
        await self._ledger_activity(
            "sync_ledger",
            LedgerSync(
                contract_id=self.inp.contract_id,
                status=self.s.status,
                stage=self.s.stage,
                access=self.s.access,
                overdue_amount=self._overdue(),
                fees=self._claim().fees if self._exact else self.s.fees,
                case_no=self.s.case_no,
                case_opened_at=self.s.case_opened_at,
                claim=self._dunning_view(self._claim()) if self._exact else None,
                claim_facts=self._claim_facts() if self._exact else None,
                collecting=sorted(self._collecting()) if self._exact else [],
                collecting_defaulted=sorted(k for k, v in self._collecting().items() if v)
                if self._exact
                else [],
                customer_address=self._take_address_change(),
                case=self.s.case,
                call_in=self.s.call_in,
                deliveries=self.s.deliveries,
                paused=self.s.paused,
                paused_until=self.s.paused_until,
                contested=self.s.contested,
                installments=self.s.installments,
                facts=facts,
                customer_id=self.inp.customer.id,
                product_id=self.inp.product.id,
                attempt_outcomes=outcomes,
                actions=actions,
            ),
            result_type=int,
            retry_policy=rp.LEDGER,
            summary=f"record {summary}",
        )

    # -- messages ----------------------------------------------------------------------------

    @workflow.signal(name="payment_update")
    def payment_update(self, pu: PaymentUpdate) -> None:
        if pu.event_id and pu.event_id in self.s.seen_payment_events:
            return
        if pu.event_id:
            self.s.seen_payment_events = (self.s.seen_payment_events + [pu.event_id])[-50:]
        self._updates.append(pu)
        self._dirty = True

    @workflow.signal(name="mandate_updated")
    def mandate_updated(self, mu: MandateUpdate) -> None:
        if mu.event_id and mu.event_id in self.s.seen_payment_events:
            return
        if mu.event_id:
            self.s.seen_payment_events = (self.s.seen_payment_events + [mu.event_id])[-50:]
        self._mandate_updates.append(mu)
        self._dirty = True

    @workflow.signal(name="payment_method_updated")
    def payment_method_updated(self, req: PaymentMethodRequest) -> None:
        """Stripe updated the card (`payment_method.automatically_updated`) or the customer
        attached a new default method: open amounts are debited again at once."""
        self._new_method = req
        self._dirty = True

    @workflow.update(name="settle")
    async def settle(self, req: SettlementRequest) -> ActionResult:
        if not self._prompt():
            async with self._lock:
                return await self._settle(req, None)
        ref = self._action_ref(req)
        if ref in self.s.done_actions:
            return self._result("settlement already recorded (same Idempotency-Key)")
        await self._acquire(money=True)
        try:
            return await self._settle(req, ref)
        finally:
            self._lock.release()

    @workflow.update(name="partner_payment")
    async def partner_payment(self, req: SettlementRequest) -> ActionResult:
        """The collection partner reports a payment it received (POST /v1/webhooks/collection,
        signed): recorded and allocated like a settlement (§ 367 BGB); not reported back."""
        ref = self._action_ref(req)
        if ref in self.s.done_actions:
            return self._result("payment already recorded (same payment id)")
        await self._acquire(money=True)
        try:
            return await self._settle_exact(req, ref, source="partner")
        finally:
            self._lock.release()

    @partner_payment.validator
    def _validate_partner_payment(self, req: SettlementRequest) -> None:
        if self._repeated(req):
            return
        if not self._after or self.s.case is None:
            raise ApplicationError(
                "this contract was never handed off to the collection partner",
                type="InvalidState",
            )
        self._validate_settle(req)

    async def _settle(self, req: SettlementRequest, ref: str | None) -> ActionResult:
        """Allocate a settlement (§§ 366, 367 BGB). `ref`: the action's Update id — the
        amount is checked again here, against the state it is applied to: two settlements
        validated against the same state must not both be applied beyond what is open."""
        if self._exact:
            return await self._settle_exact(req, ref)
        now = workflow.now()
        received = req.received_at or now
        lines = self._open()
        interest, note = await self._interest_due(lines, received)
        if ref is not None:
            # What is payable now, with the interest to the day of receipt (the validator
            # could only bound it); without a base rate for the period, the bound again.
            payable = self._payable_principal_and_fees() + (
                self._interest_bound() if note else sum(interest)
            )
            if req.amount > payable:
                await self._refuse(
                    ref,
                    f"amount {req.amount} exceeds what is still payable ({payable})",
                    "SettlementExceedsClaim",
                )
        oldest_day = berlin_date(lines[0].due_at) if lines else berlin_date(now)
        claim = Claim(
            costs=[Item("fees", self._fees_open(), oldest_day)] if self._fees_open() else [],
            interest=[
                Item(f"interest_{i.seq}", amount, berlin_date(i.due_at))
                for i, amount in zip(lines, interest, strict=True)
                if amount > 0
            ],
            principal=[
                Item(f"installment_{i.seq}", i.outstanding, berlin_date(i.due_at)) for i in lines
            ],
        )
        # §§ 366 (2), 367 (1) BGB: costs, then interest, then principal, oldest first.
        result = allocate(req.amount, claim)
        alloc: dict[str, int] = {}
        by_seq = {i.seq: i for i in self.s.installments}
        for part in result.parts:
            alloc[part.key] = alloc.get(part.key, 0) + part.amount
            if part.kind == "costs":
                self.s.fees_paid += part.amount
            elif part.kind == "interest":
                self.s.interest_paid += part.amount
            else:
                self._apply_payment(by_seq[int(part.key.split("_")[1])], part.amount)
        remaining = result.remainder
        # What is left pays the next installments in advance (they are not debited then).
        for inst in sorted(
            (i for i in self.s.installments if i.status == "scheduled"), key=lambda i: i.due_at
        ):
            if remaining <= 0:
                break
            part_amount = min(remaining, inst.outstanding)
            self._apply_payment(inst, part_amount)
            remaining -= part_amount
            alloc[f"installment_{inst.seq}"] = part_amount
        if remaining > 0:
            alloc["credit"] = remaining  # overpaid: to be refunded, shown on the timeline
        if note:
            alloc["interest_not_allocated"] = 0
        self.s.paid_total += req.amount
        uid = workflow.current_update_info()
        fact_ref = req.request_id or (uid.id if uid else str(workflow.uuid4()))
        self._fact(
            "settlement.recorded",
            f"settlement:{self.inp.contract_id}:{fact_ref}",
            now,
            {
                "amount": req.amount,
                "method": req.method,
                "reference": req.reference,
                "received_at": req.received_at or now,
                "allocation": alloc,
                "interest_note": note,
            },
            event="payment.succeeded",
            actor=req.actor,
        )
        self._settle_case(now)
        self._check_completed(now)
        res = self._result(f"settlement of {self._money(req.amount)} recorded", alloc=alloc)
        if ref is not None:
            self._answered(ref, res)
        await self._flush()
        self._dirty = True
        return res

    async def _settle_exact(
        self, req: SettlementRequest, ref: str | None, *, source: str = "seller"
    ) -> ActionResult:
        """A payment received outside Stripe: one more fact of the claim, allocated by
        domain.claim (§§ 366, 367 BGB: costs → interest → principal, oldest first; the rest
        prepays what is not due yet, beyond that it is credit). `ref`: the action's Update
        id (prompt actions): the amount is checked again against the state it applies to."""
        now = workflow.now()
        received = req.received_at or now
        if ref is not None and req.amount > self._payable():
            await self._refuse(
                ref,
                f"amount {req.amount} exceeds what is still payable ({self._payable()})",
                "SettlementExceedsClaim",
            )
        uid = workflow.current_update_info()
        fact_ref = req.request_id or (uid.id if uid else str(workflow.uuid4()))
        # A receipt dated ahead of the workflow's clock is booked today: the claim is as of
        # today, and interest up to a future day is not owed yet.
        day = min(berlin_date(received), berlin_date(now))
        booked, asked = self._paid_as_asked(req.amount, day)
        fact = PaymentFact(f"settlement:{fact_ref}", booked, req.amount, 0, self._bump())
        self.s.claim_payments.append(fact)
        claim = self._claim(now)
        self._sync_paid(claim, now)
        allocation = next(p for p in claim.payments if p.key == fact.key)
        alloc: dict[str, int] = {}
        for part in allocation.parts:
            name = {
                "principal": f"installment_{part.installment}",
                "interest": f"interest_{part.installment}",
            }.get(part.part, part.part)
            alloc[name] = alloc.get(name, 0) + part.amount
        if allocation.credit:
            alloc["credit"] = allocation.credit  # overpaid: to be refunded
        self.s.paid_total += req.amount
        data: dict = {
            "amount": req.amount,
            "method": req.method,
            "reference": req.reference,
            "received_at": received,
            "allocation": alloc,
            "claim_after": {"total": claim.total, "as_of": claim.as_of},
        }
        if asked is not None:
            # The customer paid exactly what the notice asked, in time: booked as of the
            # notice's day, so the interest accrued since is not claimed (issue 11).
            data["paid_as_asked"] = {"stage": asked.stage, "booked_on": booked}
        if self._after:
            if source == "seller" and req.actor == "customer":
                source = "customer"  # the payment page's Stripe Checkout (issue 16)
            data["source"] = source
        self._fact(
            "settlement.recorded" if source != "partner" else "collection.payment_received",
            f"settlement:{self.inp.contract_id}:{fact_ref}",
            now,
            data,
            event="payment.succeeded",
            actor=req.actor,
        )
        self._settle_case(now)
        if self._after:
            self._after_payment(
                now,
                fact.key,
                req.amount,
                source,
                # (not the free-text reference: nothing personal goes to the partner)
                {"received_on": day, "method": req.method, "allocation": dict(alloc)},
            )
        self._check_completed(now)
        res = self._result(f"settlement of {self._money(req.amount)} recorded", alloc=alloc)
        if ref is not None:
            self._answered(ref, res)
        await self._flush()
        self._dirty = True
        return res

    def _payable(self) -> int:
        """What a settlement may pay (PATCH_CLAIM): what is demanded, plus every scheduled
        installment — it may be paid early or instead of a stalled debit; never one whose
        debit is in flight."""
        return self._overdue_of(self._claim()) + sum(
            i.outstanding for i in self.s.installments if i.status == "scheduled"
        )

    def _paid_as_asked(self, amount: int, day: str) -> tuple[str, NoticeAsked | None]:
        """The day to book a settlement received on `day`: the last notice's day if it pays
        exactly the total that notice asked for (recomputed now, as of that day) by its
        deadline; else `day` itself."""
        asked = self.s.last_notice
        if asked is None or not (asked.as_of <= day <= asked.deadline_day):
            return day, None
        if amount != asked.total:
            return day, None
        claim = self._claim(due_instant(asked.as_of))
        if self._overdue_of(claim) != amount:
            return day, None
        return asked.as_of, asked

    def _apply_payment(self, inst: InstallmentState, amount: int) -> None:
        inst.paid += amount
        if inst.outstanding <= 0:
            inst.status = "paid"
            inst.next_retry_at = None
            inst.paid_at = workflow.now()

    async def _interest_due(
        self, lines: list[InstallmentState], as_of: datetime
    ) -> tuple[list[int], str | None]:
        """Open statutory interest per line (§ 288 BGB), less what was already received."""
        zeros = [0] * len(lines)
        if not lines or self.policy.interest != "statutory" or self.s.interest_waived:
            return zeros, None
        out: InterestOutput = await workflow.execute_activity(
            "claim_interest",
            InterestInput(
                lines=[ClaimLine(self._label(i), i.seq, i.due_at, i.outstanding) for i in lines],
                as_of=as_of,
                customer_type=self.inp.customer.type,
            ),
            result_type=InterestOutput,
            start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
            retry_policy=rp.LEDGER,
            summary=f"statutory interest on {self._money(self._principal())} (§ 288 BGB)",
        )
        if out.unavailable:
            return zeros, out.unavailable
        amounts, paid = list(out.amounts), self.s.interest_paid
        for n, amount in enumerate(amounts):  # interest already received: oldest first
            used = min(amount, paid)
            amounts[n] -= used
            paid -= used
        return amounts, None

    @settle.validator
    def _validate_settle(self, req: SettlementRequest) -> None:
        if self._repeated(req):
            return
        self._require_reachable("record a settlement")
        if req.amount <= 0:
            raise ApplicationError("amount must be positive", type="InvalidInput")
        if self._exact:
            payable = self._payable()
            if req.amount > payable:
                raise ApplicationError(
                    f"amount {req.amount} exceeds what is still payable ({payable})",
                    type="SettlementExceedsClaim",
                )
            return
        payable = self._payable_principal_and_fees() + self._interest_bound()
        if req.amount > payable:
            raise ApplicationError(
                f"amount {req.amount} exceeds what is still payable ({payable})",
                type="SettlementExceedsClaim",
            )

    def _payable_principal_and_fees(self) -> int:
        """Open fees plus every installment not yet paid (future ones may be prepaid)."""
        return self._fees_open() + sum(
            i.outstanding for i in self.s.installments if i.status in ("open", "scheduled")
        )

    def _interest_bound(self) -> int:
        """Interest is computed by an activity; bound it generously for validation (25 % a
        year is far above base rate + 9 pp) so a payment that includes interest is never
        refused."""
        now = workflow.now()
        return sum(
            i.outstanding * max((now - i.due_at).days, 0) // (4 * 365) + 1 for i in self._open()
        )

    @workflow.update(name="replace_payment_method")
    async def replace_payment_method(self, req: PaymentMethodRequest) -> ActionResult:
        if not self._prompt():
            async with self._lock:
                debited = await self._use_new_method(req, "payment method replaced by support")
                self._settle_case(workflow.now())
                self._check_completed(workflow.now())
                await self._flush()
                self._dirty = True
                return self._result("payment method replaced", debited=debited)
        ref = self._action_ref(req)
        if ref in self.s.done_actions:
            return self._result("payment method already replaced (same Idempotency-Key)")
        # The debits go to Stripe: the main loop runs them, without the lock; this handler
        # waits for their outcome (the API answers 202 meanwhile if Stripe is slow).
        req.request_id = req.request_id or ref
        self._pm_queue.append((ref, req))
        self._dirty = True
        await workflow.wait_condition(lambda: ref in self._pm_done or self._terminal())
        await self._acquire(money=True)
        try:
            if ref not in self._pm_done:
                self._pm_queue = [(r, p) for r, p in self._pm_queue if r != ref]
                await self._refuse(
                    ref,
                    f"cannot replace the payment method: contract is {self.s.status}",
                    "ContractNotActive",
                )
            debited = self._pm_done.pop(ref)
            now = workflow.now()
            self._settle_case(now)
            self._check_completed(now)
            res = self._result("payment method replaced", debited=debited)
            self._answered(ref, res)
            await self._flush()
            self._dirty = True
            return res
        finally:
            self._lock.release()

    async def _use_new_method(self, req: PaymentMethodRequest, why: str) -> list[ChargeResult]:
        """Store the method and debit every open amount with it now (SPEC.md §3)."""
        self.s.payment_method = req.payment_method
        uid = workflow.current_update_info()
        ref = req.request_id or (uid.id if uid else str(workflow.uuid4()))
        self._fact(
            "payment_method.replaced",
            f"pm:{self.inp.contract_id}:{ref}",
            workflow.now(),
            {"payment_method": req.payment_method, "reason": why},
            actor=req.actor,
        )
        debited: list[ChargeResult] = []
        for inst in self._open():
            # A new payment method starts a fresh retry episode.
            inst.first_failed_at = None
            inst.retries_done = 0
            debited.append(await self._charge(inst, "new payment method"))
        return debited

    @replace_payment_method.validator
    def _validate_pm(self, req: PaymentMethodRequest) -> None:
        if self._repeated(req):
            return
        self._require_reachable("replace the payment method")
        if not req.payment_method.startswith("pm_"):
            raise ApplicationError("payment_method must be a Stripe pm_… id", type="InvalidInput")

    # -- support and admin actions (SPEC.md §4): Updates, validated before anything is written

    def _action_ref(self, req: SupportAction | SettlementRequest | PaymentMethodRequest) -> str:
        uid = workflow.current_update_info()
        return req.request_id or (uid.id if uid else str(workflow.uuid4()))

    def _repeated(self, req: SupportAction | SettlementRequest | PaymentMethodRequest) -> bool:
        """For validators: this action (by Update id) was applied already, in this run or
        one before continue-as-new; its handler answers without changing anything."""
        uid = workflow.current_update_info()
        ref = req.request_id or (uid.id if uid else None)
        return ref is not None and ref in self.s.done_actions

    async def _acquire(self, *, money: bool) -> None:
        """Take the lock for an action. `money`: the action changes amounts or installments,
        so it also waits while a debit of the main loop is in flight (`_outside`): what it
        allocates depends on that debit's outcome. Nothing else waits on Stripe or SMTP."""
        while True:
            if money:
                await workflow.wait_condition(lambda: self._debiting == 0)
            await self._lock.acquire()
            if not money or self._debiting == 0:
                return
            self._lock.release()  # a debit started before the lock came free: wait for it

    def _answered(self, ref: str, res: ActionResult) -> None:
        """Remember the action as applied and keep its answer with its facts (ledger)."""
        self.s.done_actions = (self.s.done_actions + [ref])[-DONE_ACTIONS_KEPT:]
        body = action_response(self.inp.contract_id, res)
        self._action_outcomes.append(ActionOutcome(ref, 200, body))

    async def _refuse(self, ref: str, message: str, type_: str) -> NoReturn:
        """Refuse an accepted action (the state changed since its validation): the refusal
        is its answer, kept like any other, and nothing else changes."""
        self.s.done_actions = (self.s.done_actions + [ref])[-DONE_ACTIONS_KEPT:]
        self._action_outcomes.append(ActionOutcome(ref, 409, action_error(409, type_, message)))
        await self._flush()
        raise ApplicationError(message, type=type_)

    async def _act(
        self, req: SupportAction, apply: Callable[[], str], *, money: bool
    ) -> ActionResult:
        """Run a support action: `apply` changes the state and returns the message."""
        if not self._prompt():
            async with self._lock:
                return await self._finish_action(apply())
        ref = self._action_ref(req)
        if ref in self.s.done_actions:
            return self._result("already applied (same Idempotency-Key)")
        await self._acquire(money=money)
        try:
            return await self._finish_action(apply(), ref)
        finally:
            self._lock.release()

    def _action_fact(
        self, type_: str, req: SupportAction, data: dict, *, event: str | None = None
    ) -> None:
        self._fact(
            type_,
            f"{type_}:{self.inp.contract_id}:{self._action_ref(req)}",
            workflow.now(),
            data | {"reason": req.reason},
            actor=req.actor,
            event=event,
        )

    async def _finish_action(self, message: str, ref: str | None = None) -> ActionResult:
        res = self._result(message)
        if ref is not None:
            self._answered(ref, res)
        await self._flush()
        self._dirty = True  # the main loop re-plans its next wake-up
        return res

    def _end_pause(self, now: datetime, actor: str | None, why: str) -> None:
        if self._case_open() and self.s.paused_at is not None:
            # The dunning clock stood still while the case was open: later rungs move by it.
            start = max(self.s.paused_at, self.s.case_opened_at or self.s.paused_at)
            self.s.ladder_delay_seconds += max(int((now - start).total_seconds()), 0)
        self._bank_notice_holds(now, count=False)  # held again from now, not during the pause
        self.s.paused = False
        self.s.paused_until = None
        self.s.paused_at = None
        self._fact(
            "contract.resumed",
            f"resumed:{self.inp.contract_id}:{now.isoformat()}",
            now,
            {"reason": why},
            actor=actor,
        )

    @workflow.update(name="pause")
    async def pause(self, req: SupportAction) -> ActionResult:
        def apply() -> str:
            now = workflow.now()
            self.s.paused = True
            self.s.paused_until = req.until
            self.s.paused_at = now
            self._bank_notice_holds(now)  # the pause banks its own time from here
            self._action_fact("contract.paused", req, {"until": req.until})
            until = f" until {req.until.isoformat()}" if req.until else ""
            return f"paused{until}"

        return await self._act(req, apply, money=False)

    @pause.validator
    def _validate_pause(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("pause")
        if self.s.paused:
            until = self.s.paused_until.isoformat() if self.s.paused_until else "resumed"
            raise ApplicationError(f"already paused (until {until})", type="InvalidState")
        if req.until is not None and req.until <= workflow.now():
            raise ApplicationError("until must be in the future", type="InvalidInput")
        self._require_reason(req)

    @workflow.update(name="resume")
    async def resume(self, req: SupportAction) -> ActionResult:
        def apply() -> str:
            self._end_pause(workflow.now(), req.actor, req.reason or "resumed by support")
            return "resumed"

        return await self._act(req, apply, money=False)

    @resume.validator
    def _validate_resume(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("resume")
        if not self.s.paused:
            raise ApplicationError("the contract is not paused", type="InvalidState")

    @workflow.update(name="defer")
    async def defer(self, req: SupportAction) -> ActionResult:
        """Stundung: the overdue amount is due again on `until`; no escalation before.

        A deferral agreed with the creditor ends the default (§ 286 BGB needs a due claim),
        so the case closes and a locked access is unlocked; the fees stay owed and are
        collected with the deferred debit."""

        def apply() -> str:
            now = workflow.now()
            if req.until is None:  # the validator rejects it; never an assert here
                raise ApplicationError("until is required", type="InvalidInput")
            moved = []
            for inst in self._open():
                inst.due_at = req.until
                inst.status = "scheduled"
                inst.next_retry_at = None
                inst.first_failed_at = None
                inst.retries_done = 0
                moved.append(inst.seq)
            self._action_fact("contract.deferred", req, {"until": req.until, "installments": moved})
            self._close_case(now, "deferred")
            return f"deferred until {req.until.isoformat()}"

        return await self._act(req, apply, money=True)

    @defer.validator
    def _validate_defer(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("defer")
        if req.until is None or req.until <= workflow.now():
            raise ApplicationError("until must be a future date", type="InvalidInput")
        if not self._open():
            raise ApplicationError("nothing is overdue to defer", type="InvalidState")
        self._require_reason(req)

    @workflow.update(name="waive")
    async def waive(self, req: SupportAction) -> ActionResult:
        def apply() -> str:
            if self._exact:
                return self._waive_exact(req)
            waived = self._fees_open() if req.fees else 0
            self.s.fees_waived += waived
            if req.interest:
                self.s.interest_waived = True
            self._action_fact("claim.waived", req, {"fees": waived, "interest": req.interest})
            self._settle_case(workflow.now())
            return f"waived {self._money(waived)} in fees"

        return await self._act(req, apply, money=True)

    def _waive_exact(self, req: SupportAction) -> str:
        """`fees: true` gives up the open dunning fees, costs and § 288 (5) lump sums — what
        the old `fees` held, all that is not principal or interest; `interest: true` the open
        interest, and no interest accrues afterwards (a waiver fact of the claim)."""
        now = workflow.now()
        before = self._claim(now)
        self.s.claim_waivers.append(
            WaiverFact(
                f"waiver:{self._action_ref(req)}",
                berlin_date(now),
                fees=req.fees,
                costs=req.fees,
                lump_sums=req.fees,
                interest=req.interest,
                order=self._bump(),
            )
        )
        if req.interest:
            self.s.interest_waived = True
        after = self._claim(now)
        waived = {
            part: getattr(after.waived, part) - getattr(before.waived, part)
            for part in ("fees", "costs", "lump_sums", "interest")
        }
        self._action_fact(
            "claim.waived", req, waived | {"fees_waived": req.fees, "interest_waived": req.interest}
        )
        self._settle_case(now)
        charges = waived["fees"] + waived["costs"] + waived["lump_sums"]
        interest = self._money(waived["interest"])
        return f"waived {self._money(charges)} in fees and costs, {interest} interest"

    @waive.validator
    def _validate_waive(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("waive")
        if not (req.fees or req.interest):
            raise ApplicationError("waive fees, interest or both", type="InvalidInput")
        if self._exact:
            claim = self._claim()
            if req.fees and not req.interest and claim.fees + claim.costs + claim.lump_sums == 0:
                raise ApplicationError("there are no open fees to waive", type="InvalidState")
            self._require_reason(req)
            return
        if req.fees and self._fees_open() == 0 and not req.interest:
            raise ApplicationError("there are no open fees to waive", type="InvalidState")
        self._require_reason(req)

    @workflow.update(name="contest")
    async def contest(self, req: SupportAction) -> ActionResult:
        def apply() -> str:
            self.s.contested = True
            self._action_fact("claim.contested", req, {})
            return "contested: no automatic hand-off"

        return await self._act(req, apply, money=False)

    @contest.validator
    def _validate_contest(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("contest")
        if self.s.contested:
            raise ApplicationError("the claim is already contested", type="InvalidState")
        self._require_reason(req)

    @workflow.update(name="write_off")
    async def write_off(self, req: SupportAction) -> ActionResult:
        def apply() -> str:
            self._write_off(workflow.now(), req.actor, req.reason)
            return "written off"

        return await self._act(req, apply, money=True)

    @write_off.validator
    def _validate_write_off(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("write off")
        if self._overdue() <= 0:
            raise ApplicationError("there is no open claim to write off", type="InvalidState")
        self._require_reason(req)

    @workflow.update(name="retry_debit")
    async def retry_debit(self, req: SupportAction) -> ActionResult:
        """An admin fixed what Stripe refused (issue 10 item 3): every stalled debit is tried
        again now, by the main loop (the lock is not held across the Stripe call)."""

        def apply() -> str:
            now = workflow.now()
            seqs = []
            for inst in self._stalled():
                inst.stalled_until = now
                if inst.status == "processing":
                    inst.next_poll_at = now
                seqs.append(inst.seq)
            self._action_fact("debit.retry_requested", req, {"installments": seqs})
            return f"debit of installment {', '.join(map(str, seqs))} retried now"

        return await self._act(req, apply, money=False)

    def _stalled(self) -> list[InstallmentState]:
        return [
            i
            for i in self.s.installments
            if i.status in ("scheduled", "open", "processing")
            and (i.stalled_until is not None or i.stalls > 0)
        ]

    @retry_debit.validator
    def _validate_retry_debit(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("retry a debit")
        if not self._stalled():
            raise ApplicationError("no debit of this contract is stalled", type="InvalidState")

    @workflow.update(name="approve_handoff")
    async def approve_handoff(self, req: SupportAction) -> ActionResult:
        def apply() -> str:
            if self._exact:
                # domain.collection: the route named, else the policy's — inkasso for a
                # contested claim even under `route: court` (an admin may still name court).
                route = approved_route(req.route, self.policy.collection.route, self.s.contested)
                if self._hand_off_or_wait(workflow.now(), route, req.actor):
                    return f"handed off ({route})"
                return "approved: the court route waits for the debtor's address"
            route = req.route or ("inkasso" if self.s.contested else "court")
            if self.policy.collection.route in ("court", "inkasso") and not req.route:
                route = self.policy.collection.route
            self._hand_off(workflow.now(), route, req.actor)
            return f"handed off ({route})"

        return await self._act(req, apply, money=True)

    @approve_handoff.validator
    def _validate_approve(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("approve a hand-off")
        if not self.s.awaiting_approval:
            raise ApplicationError("no hand-off is waiting for approval", type="InvalidState")
        if req.route not in (None, "court", "inkasso"):
            raise ApplicationError("route must be court or inkasso", type="InvalidInput")

    @workflow.update(name="set_address")
    async def set_address(self, req: SupportAction) -> ActionResult:
        """Support records the debtor's postal address (§ 690 (1) Nr. 1 ZPO: a Mahnantrag
        names the parties with their addresses). A court hand-off waiting for it
        (`needs_address`) proceeds at once."""

        def apply() -> str:
            address = dict(req.address or {})
            self.inp.customer.address = address
            self._address_changed = True
            self._action_fact("customer.address_updated", req, {"address": address})
            if self.s.needs_address:
                self.s.needs_address = False
                self._hand_off(workflow.now(), self.s.route or "court", req.actor)
                return "address recorded: handed off (court)"
            return "address recorded"

        return await self._act(req, apply, money=False)

    @set_address.validator
    def _validate_set_address(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_active("set the address")
        missing = address_missing(req.address or {})
        if missing:
            raise ApplicationError(
                f"address: {', '.join(missing)} required (a postal address for the court)",
                type="InvalidInput",
            )

    def _take_address_change(self) -> dict[str, str] | None:
        if not self._address_changed:
            return None
        self._address_changed = False
        return dict(self.inp.customer.address)

    @workflow.update(name="cancel")
    async def cancel(self, req: SupportAction) -> ActionResult:
        """End the contract early (issue 12; docs/endings.md): every kind, for a reason from
        domain.endings.REASONS, with a refund where one is due (workflows/endings.py). A
        subscription cancelled at the end of its period without a refund keeps the path
        below (SPEC.md §4: `at_period_end`, never before a minimum term ends)."""
        if self._ends_contract(req):
            return await self._cancel_contract(req)

        def apply() -> str:
            now = workflow.now()
            future = sorted(
                (i for i in self.s.installments if i.status == "scheduled" and i.due_at > now),
                key=lambda i: i.due_at,
            )
            end = self._minimum_term_end()
            if req.at_period_end and future:
                cancel_at = future[0].due_at  # the paid period runs out at the next renewal
            else:
                cancel_at = now
            if end is not None and cancel_at < end:
                cancel_at = end
            self.s.cancel_at = cancel_at
            if req.reason in REASONS:
                self.s.ended_reason = req.reason
            for inst in self.s.installments:
                if inst.status == "scheduled" and inst.due_at >= cancel_at:
                    inst.status = "cancelled"
                    self._installment_ended(inst, "cancelled", req.reason, now)
            self._action_fact(
                "contract.cancellation_requested",
                req,
                {"effective_at": cancel_at, "at_period_end": req.at_period_end}
                | ({"note": req.note} if req.note else {}),
            )
            self._check_completed(now)
            return f"cancelled effective {cancel_at.isoformat()}"

        return await self._act(req, apply, money=True)

    @cancel.validator
    def _validate_cancel(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        if self._ends_contract(req):
            self._validate_ending(req)
            return
        if self.inp.kind != "subscription":
            raise ApplicationError("only subscriptions can be cancelled", type="InvalidState")
        self._require_active("cancel")
        if self.s.cancel_at is not None:
            raise ApplicationError(
                f"already cancelled effective {self.s.cancel_at.isoformat()}", type="InvalidState"
            )
        self._require_reason(req)

    def _minimum_term_end(self) -> datetime | None:
        if not self.inp.minimum_term:
            return None
        return shift(due_instant(self.inp.first_due), parse_interval(self.inp.minimum_term), 1)

    def _require_reason(self, req: SupportAction) -> None:
        if not req.reason.strip():
            raise ApplicationError("reason is required", type="InvalidInput")

    def _require_active(self, what: str) -> None:
        if self.s.status in TERMINAL:
            raise ApplicationError(
                f"cannot {what}: contract is {self.s.status}", type="ContractNotActive"
            )

    def _require_reachable(self, what: str) -> None:
        """Since PATCH_AFTER_HANDOFF payments (and a new payment method for the rest of the
        plan) are taken after a hand-off or write-off too."""
        if self._terminal():
            raise ApplicationError(
                f"cannot {what}: contract is {self.s.status}", type="ContractNotActive"
            )

    # -- after the hand-off: admin actions on the case at the partner (issue 12) -------------

    def _require_case(self, what: str) -> None:
        if not self._after or self._case_at_partner() is None:
            raise ApplicationError(
                f"cannot {what}: no case of this contract is at the collection partner "
                f"(contract {self.s.status})",
                type="InvalidState",
            )

    @workflow.update(name="recall")
    async def recall(self, req: SupportAction) -> ActionResult:
        def apply() -> str:
            return self._recall(workflow.now(), req.actor, req.reason)

        return await self._act(req, apply, money=True)

    @recall.validator
    def _validate_recall(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_case("recall the case")
        self._require_reason(req)

    @workflow.update(name="case_status")
    async def case_status(self, req: SupportAction) -> ActionResult:
        """What the partner or the court reports: objection (Widerspruch), enforcement
        order (Vollstreckungsbescheid), title (a final title: 30-year limitation), or
        uncollectible (the claim is written off)."""

        def apply() -> str:
            now = workflow.now()
            case = self._case_at_partner()
            if case is None or req.case_status is None or req.on is None:
                return "no case at the partner"  # the validator refused it
            entry = CaseStatusEntry(
                req.case_status, req.on, req.reference, req.reason, req.actor, now
            )
            case.statuses.append(entry)
            self._action_fact(
                "collection.case_status",
                req,
                {
                    "case": case.case_no,
                    "status": req.case_status,
                    "on": req.on,
                    "reference": req.reference,
                },
                event="case.status_changed",
            )
            if req.case_status == "objection" and not self.s.contested:
                self.s.contested = True  # the debtor disputes the claim (§ 694 ZPO)
            if req.case_status == UNCOLLECTIBLE:
                self._uncollectible(now, req.on, req.actor)
                return f"case {case.case_no}: uncollectible on {req.on}, written off"
            return f"case {case.case_no}: {req.case_status} on {req.on} recorded"

        return await self._act(req, apply, money=req.case_status == UNCOLLECTIBLE)

    @case_status.validator
    def _validate_case_status(self, req: SupportAction) -> None:
        if self._repeated(req):
            return
        self._require_case("record a case status")
        case = self._case_at_partner()
        if req.case_status not in CASE_STATUSES:
            raise ApplicationError(
                f"status must be one of {', '.join(CASE_STATUSES)}", type="InvalidInput"
            )
        on = req.on or ""
        if len(on) != 10 or not on[:4].isdigit():
            raise ApplicationError("on must be an ISO date (YYYY-MM-DD)", type="InvalidInput")
        today = berlin_date(workflow.now())
        if on > today:
            raise ApplicationError(
                f"on must not be in the future (today {today})", type="InvalidInput"
            )
        if case is not None and on < berlin_date(case.handed_off_at):
            raise ApplicationError(
                f"on must not be before the hand-off ({berlin_date(case.handed_off_at)})",
                type="InvalidInput",
            )

    def _result(
        self,
        message: str,
        *,
        debited: list[ChargeResult] | None = None,
        alloc: dict[str, int] | None = None,
    ) -> ActionResult:
        return ActionResult(
            status=self.s.status,
            stage=self.s.stage,
            access=self.s.access,
            overdue_amount=self._overdue(),
            message=message,
            debited=debited or [],
            allocation=alloc or {},
        )

    @workflow.query(name="view")
    def view(self) -> ContractView:
        return ContractView(
            contract_id=self.inp.contract_id,
            status=self.s.status,
            stage=self.s.stage,
            access=self.s.access,
            overdue_amount=self._overdue(),
            fees=self.s.fees,
            waiting_for=self._waiting_for,
            installments=self.s.installments,
            claim=self._dunning_view(self._claim()) if self._exact else None,
            case=self.s.case,
            call_in=self.s.call_in,
            deliveries=self.s.deliveries,
        )
