"""The contract workflow: one durable process per purchase (SPEC.md §2).

It sleeps until the next thing is due — an installment, a retry, a poll of a debit still
`processing`, or the next rung of the dunning ladder — does it, writes what happened to the
ledger, and sleeps again. Outside events (Stripe webhooks, support actions) arrive as
signals and updates and wake it up. `domain/` decides, activities act; this file only
sequences.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain import declines
    from domain.allocation import Claim, Item, allocate
    from domain.calendar import add_target_business_days
    from domain.durations import parse_interval
    from domain.fees import RETURN_DEBIT_COST_DEFAULT
    from domain.money import format_amount
    from domain.policy import LadderStep
    from domain.retry_timing import RetryPlanInput, next_retry
    from domain.schedule import BERLIN, berlin_date, due_instant, installment_due_times, shift
    from workflows import retry_policies as rp
    from workflows.types import (
        ActionResult,
        CaseFileInput,
        CaseFileResult,
        ChargeInput,
        ChargeResult,
        ClaimLine,
        ContractInput,
        ContractState,
        ContractView,
        DebitAnnouncement,
        Fact,
        InstallmentState,
        InterestInput,
        InterestOutput,
        LedgerSync,
        NoticeInput,
        NoticeResult,
        PaymentMethodInfo,
        PaymentMethodLookup,
        PaymentMethodRequest,
        PaymentStatusInput,
        PaymentUpdate,
        SettlementRequest,
        SupportAction,
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

SA_STATUS = SearchAttributeKey.for_keyword("MahnwerkStatus")
SA_STAGE = SearchAttributeKey.for_keyword("DunningStage")
SA_CUSTOMER = SearchAttributeKey.for_keyword("CustomerId")
SA_OVERDUE = SearchAttributeKey.for_int("OverdueAmount")
SA_LOCKED = SearchAttributeKey.for_bool("AccessLocked")


def search_attributes(
    customer_id: str, status: str, stage: str, overdue: int, locked: bool
) -> TypedSearchAttributes:
    """The SPEC.md §7 search attributes, also set by the API when it starts a contract."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(SA_CUSTOMER, customer_id),
            SearchAttributePair(SA_STATUS, status),
            SearchAttributePair(SA_STAGE, stage),
            SearchAttributePair(SA_OVERDUE, overdue),
            SearchAttributePair(SA_LOCKED, locked),
        ]
    )


@workflow.defn(name="contract")
class ContractWorkflow:
    @workflow.init
    def __init__(self, inp: ContractInput) -> None:
        self.inp = inp
        self.policy = inp.policy
        self.s = inp.state or ContractState(payment_method=inp.payment_method)
        self._lock = asyncio.Lock()
        self._dirty = False
        self._updates: list[PaymentUpdate] = []
        self._facts: list[Fact] = []
        self._outcomes: list[list[str]] = []
        self._sa_last: tuple[str, str, int, bool] | None = None
        self._waiting_for = "starting"
        self._new_method: PaymentMethodRequest | None = None
        self._auth_notice_pending = False

    # -- the loop ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ContractInput) -> ContractView:
        if inp.state is None:
            self._sa_last = ("active", "none", 0, False)  # set by the API at start
            self._start(workflow.now())
            if self._announcing():
                # Once per method: a SEPA method's debits are announced beforehand.
                await self._method()
        else:
            self._sa_last = self._sa_tuple()  # carried over by continue-as-new
        while True:
            async with self._lock:
                await self._process(workflow.now())
                await self._flush()
            if self.s.status in TERMINAL:
                watch = self._chargeback_watch_until()
                if watch is None or watch <= workflow.now():
                    break
                # Paid in full, but a debit can still be reclaimed: keep listening.
                await self._sleep_until(watch, "the chargeback window to close")
                continue
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._dirty:
                    workflow.continue_as_new(self._next_run_input())
                continue
            wake, why = self._next_wake()
            await self._sleep_until(wake, why)
        if self.s.status == "handed_off" and self.s.case_file_id is None:
            # Announce the hand-off to the customer, then give the case to the partner.
            await self._send_notice("handoff", "handoff", workflow.now())
            await self._deliver_case_file()
        self._waiting_for = f"nothing: contract {self.s.status}"
        workflow.set_current_details(f"Contract **{self.s.status}**.")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

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
            assert inp.interval and inp.count
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

    def _generate_subscription_periods(self, now: datetime) -> None:
        """Subscriptions renew each interval: keep exactly one future period scheduled."""
        inp = self.inp
        assert inp.interval
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
        if self._new_method is not None and self.s.status not in TERMINAL:
            req, self._new_method = self._new_method, None
            await self._use_new_method(req, "payment method updated at Stripe")
        if self.inp.kind == "subscription" and self.s.status not in TERMINAL:
            self._generate_subscription_periods(now)
        await self._announce_debits(now)
        for inst in sorted(self.s.installments, key=lambda i: i.seq):
            if self.s.status in TERMINAL:
                return
            if inst.stalled_until is not None and inst.stalled_until > now:
                continue  # Stripe was unreachable: tried again at stalled_until
            if inst.status == "scheduled" and inst.due_at <= now:
                if inst.outstanding <= 0:
                    inst.status = "paid"
                    continue
                await self._charge(inst, "due")
            elif (
                inst.status == "open"
                and not self.s.paused
                and inst.next_retry_at
                and inst.next_retry_at <= now
            ):
                await self._charge(inst, "retry")
            elif inst.status == "processing" and inst.next_poll_at and inst.next_poll_at <= now:
                await self._poll(inst)
        self._settle_case(workflow.now())
        if self._auth_notice_pending and self._open() and not self.s.paused:
            # Off-session the bank wants the customer: send the link instead of retrying.
            self._auth_notice_pending = False
            await self._flush()
            await self._send_notice("authentication", "authentication_required", workflow.now())
        if self._case_open() and self.s.status not in TERMINAL and not self.s.paused:
            await self._walk_ladder()
        self._remind_approval(workflow.now())
        self._check_completed(workflow.now())
        if self.inp.kind == "subscription" and self.s.status not in TERMINAL:
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
        if self.s.cancel_at is not None:
            candidates.append((self.s.cancel_at, "the end of the subscription"))
        reminder = self._next_approval_reminder()
        if reminder is not None:
            candidates.append((reminder, "a reminder to admins: hand-off awaits approval"))
        if self.s.awaiting_approval:
            why = "an admin's approval of the hand-off (or a payment)"
            return min(candidates, key=lambda c: c[0]) if candidates else (None, why)
        if not candidates:
            return None, "a payment or a support action"
        return min(candidates, key=lambda c: c[0])

    async def _sleep_until(self, wake: datetime | None, why: str) -> None:
        self._dirty = False
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

    # -- debits ------------------------------------------------------------------------------

    def _fees_open(self) -> int:
        return self.s.fees - self.s.fees_paid - self.s.fees_waived

    def _fee_carrier(self, now: datetime) -> InstallmentState | None:
        """The oldest due, unpaid installment: its debit also collects the dunning fees."""
        due = [
            i
            for i in self.s.installments
            if i.status == "open" or (i.status == "scheduled" and i.due_at <= now)
        ]
        return min(due, key=lambda i: (i.due_at, i.seq)) if due else None

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

    def _fee_part(self, inst: InstallmentState, at: datetime) -> int:
        """The dunning fees a debit of `inst` at `at` also collects: the oldest due debit
        takes the open fees, so one successful debit clears the whole claim (§ 367 BGB
        allocates costs first)."""
        in_flight = sum(i.fee_part for i in self.s.installments if i.status == "processing")
        return max(self._fees_open() - in_flight, 0) if self._fee_carrier(at) is inst else 0

    async def _charge(self, inst: InstallmentState, reason: str) -> ChargeResult:
        now = workflow.now()
        # When the attempt was due: retry offsets count from here, so retries keep the
        # schedule's time of day, and a retry and a ladder step due at the same moment run
        # retry first (a debit that clears the claim makes the notice unnecessary).
        scheduled = {"due": inst.due_at, "retry": inst.next_retry_at}.get(reason) or now
        if not (now - timedelta(hours=1) <= scheduled <= now):
            scheduled = now  # started late (e.g. a back-dated contract): count from now
        attempt = inst.attempts + 1
        fee_part = self._fee_part(inst, now)
        key = f"{self.inp.contract_id}:{inst.seq}:{attempt}"
        if self._announcing():
            method = await self._method()
            if method is None:
                return self._stall(inst, now, key, "payment method lookup failed")
            if method.is_sepa:
                if inst.announced_attempt != attempt:
                    # Not announced in time (due at checkout, a new method): announce now.
                    await self._announce(inst, now, method, inst.outstanding + fee_part)
                # Never take more than the customer was told (fees added since are not
                # part of this debit; they stay open for the next one).
                fee_part = min(fee_part, max(inst.announced_amount - inst.outstanding, 0))
        amount = inst.outstanding + fee_part
        summary = f"charge {self._money(amount)} — {self._label(inst)}, attempt {attempt}"
        if fee_part:
            summary += f" (incl. {self._money(fee_part)} fees)"
        try:
            res = await self._charge_activity(inst, attempt, key, amount, now, summary)
        except ActivityError as err:
            if not self._announcing():
                raise  # contracts started before the patch fail as they always did
            return self._stall(inst, now, key, str(err.cause or err))
        inst.stalled_until = None
        inst.stalls = 0
        inst.attempts = attempt
        inst.attempt_times = [*inst.attempt_times[-29:], now]
        inst.fee_part = fee_part
        data = {
            "installment": inst.seq,
            "attempt": attempt,
            "amount": amount,
            "fees": fee_part,
            "reason": reason,
            "payment_intent": res.payment_intent,
        }
        if res.status == "succeeded":
            self._paid(inst, amount, now, data | {"method": "stripe"}, f"{key}")
        elif res.status == "processing":
            inst.status = "processing"
            inst.scheme = "sepa"
            inst.payment_intent = res.payment_intent
            inst.processing_since = now
            inst.processing_overdue = False
            inst.next_poll_at = now + timedelta(seconds=self.inp.poll_interval_seconds)
            self._fact("payment.processing", f"processing:{key}", now, data)
            if self.inp.kind == "one_off":
                # SEPA: access is granted when the debit is submitted (SPEC.md §2).
                self._grant_access(now, "SEPA debit submitted")
        elif res.status == "pending":
            inst.status = "processing"
            inst.payment_intent = res.payment_intent
            inst.next_poll_at = now + timedelta(seconds=self.inp.poll_interval_seconds)
        else:
            self._declined(inst, res, now, data, key, failed_at=scheduled)
        return res

    async def _charge_activity(
        self,
        inst: InstallmentState,
        attempt: int,
        key: str,
        amount: int,
        now: datetime,
        summary: str,
    ) -> ChargeResult:
        return await workflow.execute_activity(
            "charge",
            ChargeInput(
                contract_id=self.inp.contract_id,
                installment_seq=inst.seq,
                attempt=attempt,
                idempotency_key=key,
                amount=amount,
                currency=self.inp.currency,
                stripe_customer=self.inp.stripe_customer,
                payment_method=self.s.payment_method,
                description=f"{self.inp.product.name} — {self._label(inst)}",
                customer_email=self.inp.customer.email,
                attempted_at=now,
            ),
            result_type=ChargeResult,
            start_to_close_timeout=rp.CHARGE_START_TO_CLOSE,
            schedule_to_close_timeout=rp.CHARGE_SCHEDULE_TO_CLOSE,
            retry_policy=rp.CHARGE,
            summary=summary,
        )

    def _stall(self, inst: InstallmentState, now: datetime, key: str, error: str) -> ChargeResult:
        """Stripe stayed unreachable through every retry of the debit's activity: nothing
        was decided, so nothing changes but the time of the next try (same idempotency key,
        and the charge activity looks the PaymentIntent up by metadata first)."""
        wait = min(STALL_FIRST * (2**inst.stalls), STALL_MAX)
        inst.stalls += 1
        inst.stalled_until = now + wait
        self._fact(
            "payment.stalled",
            f"stalled:{key}:{inst.stalls}",
            now,
            {"installment": inst.seq, "error": error[:500], "retry_at": inst.stalled_until},
        )
        return ChargeResult("stalled", None, message=error[:500])

    # -- SEPA pre-notification (DOMAIN.md §4) ------------------------------------------------

    def _announcing(self) -> bool:
        return workflow.patched(PATCH_PRE_NOTIFICATION)

    def _current_method(self) -> PaymentMethodInfo | None:
        m = self.s.method
        return m if m is not None and m.payment_method == self.s.payment_method else None

    async def _method(self) -> PaymentMethodInfo | None:
        """The payment method as Stripe describes it, looked up once per method; None if
        Stripe could not be asked (tried again next time)."""
        current = self._current_method()
        if current is not None:
            return current
        try:
            info: PaymentMethodInfo = await workflow.execute_activity(
                "describe_payment_method",
                PaymentMethodLookup(
                    self.inp.contract_id, self.inp.stripe_customer, self.s.payment_method
                ),
                result_type=PaymentMethodInfo,
                start_to_close_timeout=rp.CHARGE_START_TO_CLOSE,
                schedule_to_close_timeout=rp.CHARGE_SCHEDULE_TO_CLOSE,
                retry_policy=rp.CHARGE,
                summary=f"look up payment method {self.s.payment_method}",
            )
        except ActivityError:
            return None
        self.s.method = info
        return info

    def _debit_plan(self) -> list[tuple[InstallmentState, datetime]]:
        """The debits ahead: each scheduled installment at its due time, each open one at
        its retry (not while paused)."""
        plan: list[tuple[InstallmentState, datetime]] = []
        for inst in self.s.installments:
            if inst.outstanding <= 0:
                continue
            if inst.status == "scheduled":
                plan.append((inst, inst.due_at))
            elif inst.status == "open" and inst.next_retry_at and not self.s.paused:
                plan.append((inst, inst.next_retry_at))
        return plan

    def _unannounced_debits(self) -> list[tuple[InstallmentState, datetime]]:
        """SEPA debits ahead whose attempt has not been announced yet."""
        if self.s.status in TERMINAL or not self._announcing():
            return []
        method = self._current_method()
        if method is None or not method.is_sepa:
            return []
        return [(i, at) for i, at in self._debit_plan() if i.announced_attempt != i.attempts + 1]

    async def _announce_debits(self, now: datetime) -> None:
        """Send the pre-notification of every SEPA debit due within the policy's lead."""
        lead = self.policy.sepa.lead()
        for inst, at in sorted(self._unannounced_debits(), key=lambda d: (d[1], d[0].seq)):
            if at - lead <= now:
                at = max(at, now)
                await self._announce(
                    inst, at, self.s.method, inst.outstanding + self._fee_part(inst, at)
                )

    async def _announce(
        self, inst: InstallmentState, at: datetime, method: PaymentMethodInfo | None, amount: int
    ) -> None:
        assert method is not None
        now = workflow.now()
        attempt = inst.attempts + 1
        lead = self.policy.sepa.lead()
        # Timers fire on the dot, but a workflow task may start a little later.
        short = at - now < lead - min(lead / 10, timedelta(hours=1))
        stage = f"sepa_prenotification_{inst.seq}_{attempt}"
        announcement = DebitAnnouncement(
            seq=inst.seq,
            attempt=attempt,
            label=self._label(inst),
            amount=amount,
            debit_at=at,
            iban_last4=method.last4,
            mandate_reference=method.mandate_reference,
            short_notice=short,
        )
        try:
            await workflow.execute_activity(
                "send_notice",
                NoticeInput(
                    contract_id=self.inp.contract_id,
                    case_no=0,  # not part of a dunning case
                    stage=stage,
                    template="sepa_prenotification",
                    customer=self.inp.customer,
                    product=self.inp.product,
                    currency=self.inp.currency,
                    lines=[ClaimLine(self._label(inst), inst.seq, inst.due_at, inst.outstanding)],
                    fees=amount - inst.outstanding,
                    total=amount,
                    deadline=at,
                    created_at=now,
                    interest_mode="none",
                    debit=announcement,
                ),
                result_type=NoticeResult,
                start_to_close_timeout=rp.NOTICE_START_TO_CLOSE,
                schedule_to_close_timeout=rp.NOTICE_SCHEDULE_TO_CLOSE,
                retry_policy=rp.NOTICE,
                summary=f"announce SEPA debit of {self._money(amount)} on "
                f"{berlin_date(at)} — {self._label(inst)}",
            )
        except ActivityError as err:
            # Undeliverable (no usable address, SMTP down for a day): the debit still goes
            # out — the customer keeps the 8-week refund right — and the gap is on record.
            self._fact(
                "notice.failed",
                f"notice_failed:{self.inp.contract_id}:0:{stage}",
                workflow.now(),
                {"stage": stage, "error": str(err.cause or err)},
            )
        inst.announced_attempt = attempt
        inst.announced_amount = amount
        self._fact(
            "sepa.pre_notified",
            f"prenotified:{self.inp.contract_id}:{inst.seq}:{attempt}",
            now,
            {
                "installment": inst.seq,
                "attempt": attempt,
                "amount": amount,
                "debit_at": at,
                "mandate_reference": method.mandate_reference,
                "short_notice": short,
            },
        )

    async def _poll(self, inst: InstallmentState) -> None:
        assert inst.payment_intent
        res: ChargeResult = await workflow.execute_activity(
            "payment_status",
            PaymentStatusInput(self.inp.contract_id, inst.payment_intent),
            result_type=ChargeResult,
            start_to_close_timeout=rp.CHARGE_START_TO_CLOSE,
            retry_policy=rp.CHARGE,
            summary=f"check the debit of {self._label(inst)} ({inst.payment_intent})",
        )
        now = workflow.now()
        if res.status in ("processing", "pending"):
            inst.next_poll_at = now + timedelta(seconds=self.inp.poll_interval_seconds)
            self._check_processing_cap(inst, now)
            return
        self._outcome(inst, res.status, res.code, now, source="poll")

    def _check_processing_cap(self, inst: InstallmentState, now: datetime) -> None:
        """Stripe reports a SEPA debit's outcome within 14 TARGET business days. Still
        `processing` after that is an anomaly at Stripe or the bank: flag it for a human
        once. The debit stays in flight — debiting again or dunning could take the money
        twice — and the poll goes on."""
        if (
            inst.scheme != "sepa"
            or inst.processing_overdue
            or inst.processing_since is None
            or not self._announcing()
        ):
            return
        since = date.fromisoformat(berlin_date(inst.processing_since))
        cap = add_target_business_days(since, SEPA_PROCESSING_CAP_BUSINESS_DAYS)
        if date.fromisoformat(berlin_date(now)) <= cap:
            return
        inst.processing_overdue = True
        workflow.logger.warning(
            "SEPA debit %s of %s still processing after %d TARGET business days",
            inst.payment_intent,
            self.inp.contract_id,
            SEPA_PROCESSING_CAP_BUSINESS_DAYS,
        )
        self._fact(
            "payment.processing_overdue",
            f"processing_overdue:{self.inp.contract_id}:{inst.seq}:{inst.attempts}",
            now,
            {
                "installment": inst.seq,
                "payment_intent": inst.payment_intent,
                "processing_since": inst.processing_since,
                "business_days": SEPA_PROCESSING_CAP_BUSINESS_DAYS,
                "cap_date": cap.isoformat(),
            },
        )

    def _apply_payment_updates(self, now: datetime) -> None:
        updates, self._updates = self._updates, []
        for pu in updates:
            if pu.status == "disputed":
                paid = next(
                    (
                        i
                        for i in self.s.installments
                        if i.payment_intent == pu.payment_intent and i.status == "paid"
                    ),
                    None,
                )
                if paid is not None:
                    self._reopen(paid, pu, now)
                continue
            inst = next(
                (
                    i
                    for i in self.s.installments
                    if i.payment_intent == pu.payment_intent and i.status == "processing"
                ),
                None,
            )
            if inst is None:
                continue  # already settled (duplicate, or the poll got there first)
            status = "succeeded" if pu.status == "succeeded" else "declined"
            self._outcome(inst, status, pu.code, now, source="webhook")

    def _chargeback_watch_until(self) -> datetime | None:
        if self.s.status != "completed":
            return None
        paid = [i.paid_at for i in self.s.installments if i.paid_at is not None]
        if not paid:
            return None
        return max(paid) + timedelta(days=self.inp.chargeback_watch_days)

    def _charge_return_debit_costs(
        self, inst: InstallmentState, now: datetime, key: str | None
    ) -> int:
        cost = RETURN_DEBIT_COST_DEFAULT
        self.s.fees += cost
        self.s.return_debit_costs += cost
        if key is not None:
            self._fact(
                "costs.return_debit",
                f"return_debit:{key}",
                now,
                {"installment": inst.seq, "amount": cost},
            )
        return cost

    def _reopen(self, inst: InstallmentState, pu: PaymentUpdate, now: datetime) -> None:
        """A chargeback (SEPA refund by the debtor's bank, card dispute): the amount is
        unpaid again, the bank's return-debit costs join the claim, dunning starts anew."""
        back = min(inst.paid, pu.amount or inst.paid)
        inst.paid -= back
        self.s.paid_total -= back
        inst.status = "open"
        inst.dunning_from = now
        inst.first_failed_at = None
        inst.next_retry_at = None  # a reclaimed debit is not simply re-debited
        cost = self._charge_return_debit_costs(inst, now, None) if inst.scheme == "sepa" else 0
        self._fact(
            "payment.disputed",
            f"disputed:{self.inp.contract_id}:{inst.seq}:{pu.event_id}",
            now,
            {
                "installment": inst.seq,
                "amount": back,
                "code": pu.code,
                "payment_intent": pu.payment_intent,
                "return_debit_costs": cost,
            },
            event="payment.failed",
        )
        if self.s.status == "completed":
            self.s.status = "active"
        self._open_case(now)

    def _outcome(
        self, inst: InstallmentState, status: str, code: str | None, now: datetime, source: str
    ) -> None:
        """The final outcome of a debit that was `processing` (SEPA, or a platform PI)."""
        key = f"{self.inp.contract_id}:{inst.seq}:{inst.attempts}"
        amount = inst.outstanding + inst.fee_part
        data = {
            "installment": inst.seq,
            "attempt": inst.attempts,
            "amount": amount,
            "payment_intent": inst.payment_intent,
            "source": source,
        }
        self._outcomes.append(
            [key, "succeeded" if status == "succeeded" else "declined", code or ""]
        )
        inst.next_poll_at = None
        if status == "succeeded":
            self._paid(inst, amount, now, data | {"method": "stripe"}, key)
        else:
            res = ChargeResult(
                "declined",
                inst.payment_intent,
                code=code or "generic_could_not_process",
                failure_class=declines.classify(code, inst.scheme),
            )
            if inst.scheme == "sepa":
                # A returned direct debit (Rücklastschrift): the bank's costs join the claim
                # as damages caused by the default.
                self._charge_return_debit_costs(inst, now, key)
            self._declined(inst, res, now, data, key)

    def _paid(
        self, inst: InstallmentState, amount: int, now: datetime, data: dict, key: str
    ) -> None:
        fee_part = min(inst.fee_part, self._fees_open())
        self.s.fees_paid += fee_part
        inst.paid += amount - fee_part
        inst.fee_part = 0
        inst.status = "paid" if inst.outstanding <= 0 else "open"
        inst.paid_at = now
        inst.payment_intent = data.get("payment_intent") or inst.payment_intent
        inst.next_retry_at = None
        inst.first_failed_at = None
        inst.retries_done = 0
        inst.last_code = None
        self.s.paid_total += amount
        self._fact("payment.succeeded", f"paid:{key}", now, data, event="payment.succeeded")
        if self.inp.kind == "one_off":
            self._grant_access(now, "paid")

    def _declined(
        self,
        inst: InstallmentState,
        res: ChargeResult,
        now: datetime,
        data: dict,
        key: str,
        failed_at: datetime | None = None,
    ) -> None:
        cls = res.failure_class or declines.classify(res.code, inst.scheme)
        inst.last_code = res.code
        inst.failure_class = cls
        inst.fee_part = 0
        inst.payment_intent = None
        inst.status = "open"
        if inst.first_failed_at is None:
            inst.first_failed_at = failed_at or now
            inst.retries_done = 0
        else:
            inst.retries_done += 1
        inst.next_retry_at = self._next_retry(inst, cls, res.code, now)
        fail = data | {
            "code": res.code,
            "failure_class": cls,
            "message": res.message,
            "next_retry_at": inst.next_retry_at,
            "retry": inst.retry_reason,
        }
        self._fact("payment.failed", f"failed:{key}", now, fail, event="payment.failed")
        if cls == declines.CUSTOMER_ACTION:
            self._auth_notice_pending = True
        if cls != declines.SOFT:
            # Hard failure: no more retries, ask for a new payment method at once (SPEC §3).
            self._fact(
                "payment_method.required",
                f"pm_required:{key}",
                now,
                {"installment": inst.seq, "code": res.code, "failure_class": cls},
                event="payment_method.required",
            )
        if self.inp.kind == "one_off" and self.s.access != "granted":
            # A prepayment that never succeeded: nothing was delivered, nothing to dun.
            if inst.next_retry_at is None:
                self.s.status = "failed"
                self._fact("contract.failed", f"failed:{self.inp.contract_id}", now, fail)
            return
        self._open_case(now)

    def _next_retry(
        self, inst: InstallmentState, cls: str, code: str | None, now: datetime
    ) -> datetime | None:
        """When to retry (domain.retry_timing): policy offsets, moved to paydays / TARGET
        days, capped per card network rules; None with the reason to stop."""
        if inst.first_failed_at is None:
            return None
        window = now - timedelta(days=31)
        decision = next_retry(
            RetryPlanInput(
                scheme=inst.scheme,
                failure_class=cls,
                code=code,
                first_failed_at=inst.first_failed_at,
                # every attempt on this contract's card within Visa's 30-day window
                previous_attempts=sorted(
                    t for i in self.s.installments for t in i.attempt_times if t >= window
                ),
                offsets=self.policy.retry_offsets(),
                retries_done=inst.retries_done,
                payday_alignment=self.policy.retries.payday_alignment,
                now=now,
                # a re-presented SEPA debit is announced again beforehand
                min_notice=self.policy.sepa.lead() if self._announcing() else timedelta(0),
            )
        )
        inst.retry_reason = decision.reason
        return decision.at

    # -- dunning -----------------------------------------------------------------------------

    def _case_open(self) -> bool:
        return self.s.stage != "none"

    def _overdue(self) -> int:
        return sum(i.outstanding for i in self._open()) + self._fees_open()

    def _open_case(self, now: datetime) -> None:
        if self._case_open():
            return
        self.s.case_no += 1
        self.s.case_opened_at = now
        self.s.stage = "retrying"
        self.s.stages_done = []
        self.s.status = "in_dunning"
        self._fact(
            "dunning.stage_changed",
            f"stage:{self.inp.contract_id}:{self.s.case_no}:retrying",
            now,
            {"case": self.s.case_no, "stage": "retrying", "from": "none"},
            event="dunning.stage_changed",
        )

    def _next_ladder_step(self) -> tuple[LadderStep, datetime] | None:
        if not self._case_open() or self.s.status in TERMINAL:
            return None
        oldest = self._open()
        if not oldest:
            return None
        if self.s.awaiting_approval:
            return None  # the hand-off waits for an admin, durably
        delay = timedelta(seconds=self.s.ladder_delay_seconds)
        for step in self.policy.ladder:
            if step.stage in self.s.stages_done:
                continue
            base = max(oldest[0].due_at, oldest[0].dunning_from or oldest[0].due_at)
            return step, base + step.offset() + delay
        return None

    async def _walk_ladder(self) -> None:
        while True:
            nxt = self._next_ladder_step()
            if nxt is None:
                return
            step, at = nxt
            now = workflow.now()
            if at > now:
                return
            await self._enter_stage(step, now)

    async def _enter_stage(self, step: LadderStep, now: datetime) -> None:
        cid, case = self.inp.contract_id, self.s.case_no
        previous = self.s.stage
        self.s.stage = step.stage
        self.s.stages_done.append(step.stage)
        self._fact(
            "dunning.stage_changed",
            f"stage:{cid}:{case}:{step.stage}",
            now,
            {"case": case, "stage": step.stage, "from": previous},
            event="dunning.stage_changed",
        )
        if step.fee:
            self.s.fees += step.fee
            self._fact(
                "fee.charged",
                f"fee:{cid}:{case}:{step.stage}",
                now,
                {"case": case, "stage": step.stage, "amount": step.fee},
            )
        locks_now = step.lock_access and self.s.access != "locked"
        if locks_now:
            self.s.access = "locked"
            self._fact(
                "access.locked",
                f"lock:{cid}:{case}",
                now,
                {"case": case, "stage": step.stage, "overdue_amount": self._overdue()},
                event="access.locked",
            )
        if step.handoff:
            self._reach_handoff(now)
        await self._flush()
        if step.notice:
            await self._send_notice(step.stage, step.notice, now)
        if locks_now:
            # The customer learns at once why the course is closed and how to reopen it.
            await self._send_notice("access_locked", "access_locked", now)

    def _principal(self) -> int:
        return sum(i.outstanding for i in self._open())

    def _reach_handoff(self, now: datetime) -> None:
        """The last rung: write off a small claim, wait for an admin where the policy or a
        contest requires it, else hand off on the policy's route."""
        coll = self.policy.collection
        principal = self._principal()
        if principal < coll.write_off_below:
            self._write_off(
                now, None, f"principal {self._money(principal)} below the write-off threshold"
            )
            return
        if self.s.contested or coll.require_approval:
            self.s.awaiting_approval = True
            self.s.approval_requested_at = now
            self.s.approval_reminders = 0
            why = "claim contested" if self.s.contested else "policy requires approval"
            self._fact(
                "handoff.approval_required",
                f"approval:{self.inp.contract_id}:{self.s.case_no}",
                now,
                {"case": self.s.case_no, "reason": why, "overdue_amount": self._overdue()},
                event="handoff.approval_required",
            )
            return
        route = coll.route
        if route == "auto":
            route = "court"  # auto: court unless contested (contested claims wait above)
        self._hand_off(now, route, None)

    def _next_approval_reminder(self) -> datetime | None:
        if not self.s.awaiting_approval or self.s.approval_requested_at is None:
            return None
        return self.s.approval_requested_at + APPROVAL_REMINDER_EVERY * (
            self.s.approval_reminders + 1
        )

    def _remind_approval(self, now: datetime) -> None:
        """A hand-off may wait for weeks: remind the admins every week (SPEC.md §3 approval)."""
        due = self._next_approval_reminder()
        if due is None or due > now or self.s.status in TERMINAL:
            return
        self.s.approval_reminders += 1
        self._fact(
            "handoff.approval_reminder",
            f"approval:{self.inp.contract_id}:{self.s.case_no}:{self.s.approval_reminders}",
            now,
            {
                "case": self.s.case_no,
                "reminder": self.s.approval_reminders,
                "waiting_since": self.s.approval_requested_at,
                "overdue_amount": self._overdue(),
            },
            event="handoff.approval_required",
        )

    def _hand_off(self, now: datetime, route: str, actor: str | None) -> None:
        self.s.status = "handed_off"
        self.s.route = route
        self.s.awaiting_approval = False
        self._fact(
            "contract.handed_off",
            f"handed_off:{self.inp.contract_id}:{self.s.case_no}",
            now,
            {
                "case": self.s.case_no,
                "overdue_amount": self._overdue(),
                "principal": self._principal(),
                "fees": self._fees_open(),
                "route": route,
            },
            event="contract.handed_off",
            actor=actor,
        )

    async def _deliver_case_file(self) -> None:
        """Build the collection case file (SPEC.md §6) and deliver it to the partner,
        retried until acknowledged (issue 3)."""
        route = self.s.route or "court"
        fees_open = self._fees_open()
        costs = min(self.s.return_debit_costs, fees_open)
        res: CaseFileResult = await workflow.execute_activity(
            "build_case_file",
            CaseFileInput(
                contract_id=self.inp.contract_id,
                case_no=self.s.case_no,
                route=route,
                as_of=workflow.now(),
                fees=fees_open - costs,
                costs=[("Rücklastschriftkosten", costs)] if costs else [],
                interest_waived=self.s.interest_waived or self.policy.interest == "none",
            ),
            result_type=CaseFileResult,
            start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
            retry_policy=rp.CASE_FILE,
            summary=f"build the {route} case file — claim {self._money(self._overdue())}",
        )
        self.s.case_file_id = res.case_id
        now = workflow.now()
        self._fact(
            "collection.case_file_built",
            f"case_file:{self.inp.contract_id}:{self.s.case_no}",
            now,
            {
                "case_id": res.case_id,
                "route": res.route,
                "principal": res.principal,
                "interest": res.interest,
                "fees": res.fees,
                "costs": res.costs,
                "total": res.total,
                "missing_base_rate": res.missing_base_rate,
            },
        )
        await self._flush()
        delivered: bool = await workflow.execute_activity(
            "deliver_case_file",
            res.case_id,
            result_type=bool,
            start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
            schedule_to_close_timeout=rp.DELIVERY_SCHEDULE_TO_CLOSE,
            retry_policy=rp.DELIVERY,
            summary=f"deliver the case file to the {route} partner",
        )
        if delivered:
            self._fact(
                "collection.case_file_delivered",
                f"case_file_delivered:{self.inp.contract_id}:{self.s.case_no}",
                workflow.now(),
                {"case_id": res.case_id, "route": res.route},
            )
            await self._flush()

    def _write_off(self, now: datetime, actor: str | None, reason: str) -> None:
        self.s.status = "written_off"
        self.s.awaiting_approval = False
        self._fact(
            "contract.written_off",
            f"written_off:{self.inp.contract_id}",
            now,
            {
                "case": self.s.case_no,
                "amount": self._overdue(),
                "principal": self._principal(),
                "reason": reason,
            },
            event="contract.written_off",
            actor=actor,
        )

    async def _send_notice(self, stage: str, template: str, now: datetime) -> None:
        nxt = self._next_ladder_step()
        deadline = nxt[1] if nxt else now + timedelta(days=7)
        if deadline <= now:
            deadline = now + timedelta(days=7)
        lines = [
            ClaimLine(label=self._label(i), seq=i.seq, due_at=i.due_at, amount=i.outstanding)
            for i in self._open()
        ]
        try:
            await workflow.execute_activity(
                "send_notice",
                NoticeInput(
                    contract_id=self.inp.contract_id,
                    case_no=self.s.case_no,
                    stage=stage,
                    template=template,
                    customer=self.inp.customer,
                    product=self.inp.product,
                    currency=self.inp.currency,
                    lines=lines,
                    fees=self._fees_open(),
                    total=self._overdue(),
                    deadline=deadline,
                    created_at=now,
                    interest_mode=(
                        "waived"
                        if self.s.interest_waived
                        else ("none" if self.policy.interest == "none" else "statutory")
                    ),
                    interest_paid=self.s.interest_paid,
                ),
                result_type=NoticeResult,
                start_to_close_timeout=rp.NOTICE_START_TO_CLOSE,
                schedule_to_close_timeout=rp.NOTICE_SCHEDULE_TO_CLOSE,
                retry_policy=rp.NOTICE,
                summary=f"send {template} — claim {self._money(self._overdue())}",
            )
        except ActivityError as err:
            # An undeliverable notice must not stop the ladder; it is on the timeline.
            self._fact(
                "notice.failed",
                f"notice_failed:{self.inp.contract_id}:{self.s.case_no}:{stage}",
                workflow.now(),
                {"stage": stage, "error": str(err.cause or err)},
            )

    def _settle_case(self, now: datetime) -> None:
        """A payment that covers the claim ends the case and unlocks (SPEC.md §3)."""
        if not self._case_open() or self.s.status in TERMINAL or self._overdue() > 0:
            return
        self._close_case(now, "paid")

    def _check_completed(self, now: datetime) -> None:
        if self.s.status in TERMINAL:
            return
        if self.inp.kind == "subscription":
            unpaid = ("open", "processing", "scheduled")
            if (
                self.s.cancel_at is not None
                and now >= self.s.cancel_at
                and not any(i.status in unpaid for i in self.s.installments)
            ):
                self.s.status = "cancelled"
                self.s.access = "none"  # the subscription's last paid period is over
                self._fact(
                    "contract.cancelled",
                    f"cancelled:{self.inp.contract_id}",
                    now,
                    {"effective_at": self.s.cancel_at, "paid_total": self.s.paid_total},
                    event="contract.cancelled",
                )
            return
        if self.s.generated and all(i.status in ("paid", "waived") for i in self.s.installments):
            self.s.status = "completed"
            self._fact(
                "contract.completed",
                f"completed:{self.inp.contract_id}",
                now,
                {"paid_total": self.s.paid_total},
                event="contract.completed",
            )

    def _grant_access(self, now: datetime, why: str) -> None:
        if self.s.access == "granted":
            return
        self.s.access = "granted"
        self._fact(
            "access.granted",
            f"granted:{self.inp.contract_id}",
            now,
            {"reason": why},
            event="access.granted",
        )

    # -- continue-as-new ---------------------------------------------------------------------

    def _should_continue_as_new(self) -> bool:
        if self._case_open() or any(i.status == "processing" for i in self.s.installments):
            return False
        paid = sum(1 for i in self.s.installments if i.status == "paid")
        if self.inp.kind == "subscription" and paid >= self.inp.periods_per_run:
            return True
        return workflow.info().is_continue_as_new_suggested() and paid > 0

    def _next_run_input(self) -> ContractInput:
        # Paid periods live on in the ledger; the next run carries only what is still open.
        self.s.installments = [i for i in self.s.installments if i.status != "paid"]
        self.s.run += 1
        inp = self.inp
        inp.state = self.s
        return inp

    # -- ledger ------------------------------------------------------------------------------

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

    def _sa_tuple(self) -> tuple[str, str, int, bool]:
        return (self.s.status, self.s.stage, self._overdue(), self.s.access == "locked")

    async def _flush(self) -> None:
        """Write state and new facts to the ledger; keep the search attributes current."""
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
        if not self._facts and not self._outcomes and not changed:
            return
        facts, self._facts = self._facts, []
        outcomes, self._outcomes = self._outcomes, []
        summary = ", ".join(dict.fromkeys(f.type for f in facts)) or "state"
        await workflow.execute_activity(
            "sync_ledger",
            LedgerSync(
                contract_id=self.inp.contract_id,
                status=self.s.status,
                stage=self.s.stage,
                access=self.s.access,
                overdue_amount=self._overdue(),
                fees=self.s.fees,
                case_no=self.s.case_no,
                case_opened_at=self.s.case_opened_at,
                paused=self.s.paused,
                paused_until=self.s.paused_until,
                contested=self.s.contested,
                installments=self.s.installments,
                facts=facts,
                customer_id=self.inp.customer.id,
                product_id=self.inp.product.id,
                attempt_outcomes=outcomes,
            ),
            result_type=int,
            start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
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

    @workflow.signal(name="payment_method_updated")
    def payment_method_updated(self, req: PaymentMethodRequest) -> None:
        """Stripe updated the card (`payment_method.automatically_updated`) or the customer
        attached a new default method: open amounts are debited again at once."""
        self._new_method = req
        self._dirty = True

    @workflow.update(name="settle")
    async def settle(self, req: SettlementRequest) -> ActionResult:
        async with self._lock:
            now = workflow.now()
            received = req.received_at or now
            lines = self._open()
            interest, note = await self._interest_due(lines, received)
            oldest_day = berlin_date(lines[0].due_at) if lines else berlin_date(now)
            claim = Claim(
                costs=[Item("fees", self._fees_open(), oldest_day)] if self._fees_open() else [],
                interest=[
                    Item(f"interest_{i.seq}", amount, berlin_date(i.due_at))
                    for i, amount in zip(lines, interest, strict=True)
                    if amount > 0
                ],
                principal=[
                    Item(f"installment_{i.seq}", i.outstanding, berlin_date(i.due_at))
                    for i in lines
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
            ref = req.request_id or (uid.id if uid else str(workflow.uuid4()))
            self._fact(
                "settlement.recorded",
                f"settlement:{self.inp.contract_id}:{ref}",
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
            await self._flush()
            self._dirty = True
            return self._result(f"settlement of {self._money(req.amount)} recorded", alloc=alloc)

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
        self._require_active("record a settlement")
        if req.amount <= 0:
            raise ApplicationError("amount must be positive", type="InvalidInput")
        payable = self._fees_open() + sum(
            i.outstanding for i in self.s.installments if i.status in ("open", "scheduled")
        )
        # Interest is computed by an activity; bound it generously here (25 % a year is far
        # above base rate + 9 pp) so a payment that includes interest is never refused.
        now = workflow.now()
        payable += sum(
            i.outstanding * max((now - i.due_at).days, 0) // (4 * 365) + 1 for i in self._open()
        )
        if req.amount > payable:
            raise ApplicationError(
                f"amount {req.amount} exceeds what is still payable ({payable})",
                type="SettlementExceedsClaim",
            )

    @workflow.update(name="replace_payment_method")
    async def replace_payment_method(self, req: PaymentMethodRequest) -> ActionResult:
        async with self._lock:
            debited = await self._use_new_method(req, "payment method replaced by support")
            self._settle_case(workflow.now())
            self._check_completed(workflow.now())
            await self._flush()
            self._dirty = True
            return self._result("payment method replaced", debited=debited)

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
        self._require_active("replace the payment method")
        if not req.payment_method.startswith("pm_"):
            raise ApplicationError("payment_method must be a Stripe pm_… id", type="InvalidInput")

    # -- support and admin actions (SPEC.md §4): Updates, validated before anything is written

    def _action_ref(self, req: SupportAction) -> str:
        uid = workflow.current_update_info()
        return req.request_id or (uid.id if uid else str(workflow.uuid4()))

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

    async def _finish_action(self, message: str) -> ActionResult:
        await self._flush()
        self._dirty = True  # the main loop re-plans its next wake-up
        return self._result(message)

    def _end_pause(self, now: datetime, actor: str | None, why: str) -> None:
        if self._case_open() and self.s.paused_at is not None:
            # The dunning clock stood still while the case was open: later rungs move by it.
            start = max(self.s.paused_at, self.s.case_opened_at or self.s.paused_at)
            self.s.ladder_delay_seconds += max(int((now - start).total_seconds()), 0)
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
        async with self._lock:
            now = workflow.now()
            self.s.paused = True
            self.s.paused_until = req.until
            self.s.paused_at = now
            self._action_fact("contract.paused", req, {"until": req.until})
            until = f" until {req.until.isoformat()}" if req.until else ""
            return await self._finish_action(f"paused{until}")

    @pause.validator
    def _validate_pause(self, req: SupportAction) -> None:
        self._require_active("pause")
        if self.s.paused:
            until = self.s.paused_until.isoformat() if self.s.paused_until else "resumed"
            raise ApplicationError(f"already paused (until {until})", type="InvalidState")
        if req.until is not None and req.until <= workflow.now():
            raise ApplicationError("until must be in the future", type="InvalidInput")
        self._require_reason(req)

    @workflow.update(name="resume")
    async def resume(self, req: SupportAction) -> ActionResult:
        async with self._lock:
            self._end_pause(workflow.now(), req.actor, req.reason or "resumed by support")
            return await self._finish_action("resumed")

    @resume.validator
    def _validate_resume(self, req: SupportAction) -> None:
        self._require_active("resume")
        if not self.s.paused:
            raise ApplicationError("the contract is not paused", type="InvalidState")

    @workflow.update(name="defer")
    async def defer(self, req: SupportAction) -> ActionResult:
        """Stundung: the overdue amount is due again on `until`; no escalation before.

        A deferral agreed with the creditor ends the default (§ 286 BGB needs a due claim),
        so the case closes and a locked access is unlocked; the fees stay owed and are
        collected with the deferred debit."""
        async with self._lock:
            now = workflow.now()
            assert req.until is not None
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
            return await self._finish_action(f"deferred until {req.until.isoformat()}")

    @defer.validator
    def _validate_defer(self, req: SupportAction) -> None:
        self._require_active("defer")
        if req.until is None or req.until <= workflow.now():
            raise ApplicationError("until must be a future date", type="InvalidInput")
        if not self._open():
            raise ApplicationError("nothing is overdue to defer", type="InvalidState")
        self._require_reason(req)

    @workflow.update(name="waive")
    async def waive(self, req: SupportAction) -> ActionResult:
        async with self._lock:
            waived = self._fees_open() if req.fees else 0
            self.s.fees_waived += waived
            if req.interest:
                self.s.interest_waived = True
            self._action_fact("claim.waived", req, {"fees": waived, "interest": req.interest})
            self._settle_case(workflow.now())
            return await self._finish_action(f"waived {self._money(waived)} in fees")

    @waive.validator
    def _validate_waive(self, req: SupportAction) -> None:
        self._require_active("waive")
        if not (req.fees or req.interest):
            raise ApplicationError("waive fees, interest or both", type="InvalidInput")
        if req.fees and self._fees_open() == 0 and not req.interest:
            raise ApplicationError("there are no open fees to waive", type="InvalidState")
        self._require_reason(req)

    @workflow.update(name="contest")
    async def contest(self, req: SupportAction) -> ActionResult:
        async with self._lock:
            self.s.contested = True
            self._action_fact("claim.contested", req, {})
            return await self._finish_action("contested: no automatic hand-off")

    @contest.validator
    def _validate_contest(self, req: SupportAction) -> None:
        self._require_active("contest")
        if self.s.contested:
            raise ApplicationError("the claim is already contested", type="InvalidState")
        self._require_reason(req)

    @workflow.update(name="write_off")
    async def write_off(self, req: SupportAction) -> ActionResult:
        async with self._lock:
            self._write_off(workflow.now(), req.actor, req.reason)
            return await self._finish_action("written off")

    @write_off.validator
    def _validate_write_off(self, req: SupportAction) -> None:
        self._require_active("write off")
        if self._overdue() <= 0:
            raise ApplicationError("there is no open claim to write off", type="InvalidState")
        self._require_reason(req)

    @workflow.update(name="approve_handoff")
    async def approve_handoff(self, req: SupportAction) -> ActionResult:
        async with self._lock:
            route = req.route or ("inkasso" if self.s.contested else "court")
            if self.policy.collection.route in ("court", "inkasso") and not req.route:
                route = self.policy.collection.route
            self._hand_off(workflow.now(), route, req.actor)
            return await self._finish_action(f"handed off ({route})")

    @approve_handoff.validator
    def _validate_approve(self, req: SupportAction) -> None:
        self._require_active("approve a hand-off")
        if not self.s.awaiting_approval:
            raise ApplicationError("no hand-off is waiting for approval", type="InvalidState")
        if req.route not in (None, "court", "inkasso"):
            raise ApplicationError("route must be court or inkasso", type="InvalidInput")

    @workflow.update(name="cancel")
    async def cancel(self, req: SupportAction) -> ActionResult:
        async with self._lock:
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
            for inst in self.s.installments:
                if inst.status == "scheduled" and inst.due_at >= cancel_at:
                    inst.status = "cancelled"
            self._action_fact(
                "contract.cancellation_requested",
                req,
                {"effective_at": cancel_at, "at_period_end": req.at_period_end},
            )
            self._check_completed(now)
            return await self._finish_action(f"cancelled effective {cancel_at.isoformat()}")

    @cancel.validator
    def _validate_cancel(self, req: SupportAction) -> None:
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

    def _close_case(self, now: datetime, why: str) -> None:
        """End the dunning case (paid, or deferred): back to `active`, access unlocked."""
        if not self._case_open():
            return
        cid, case = self.inp.contract_id, self.s.case_no
        self._fact(
            "dunning.stage_changed",
            f"stage:{cid}:{case}:closed",
            now,
            {"case": case, "stage": "none", "from": self.s.stage, "reason": why},
            event="dunning.stage_changed",
        )
        self.s.stage = "none"
        self.s.stages_done = []
        self.s.case_opened_at = None
        self.s.ladder_delay_seconds = 0
        self.s.awaiting_approval = False
        self.s.status = "active"
        if self.s.access == "locked":
            self.s.access = "granted"
            self._fact(
                "access.unlocked",
                f"unlock:{cid}:{case}",
                now,
                {"case": case, "reason": why},
                event="access.unlocked",
            )

    def _require_active(self, what: str) -> None:
        if self.s.status in TERMINAL:
            raise ApplicationError(
                f"cannot {what}: contract is {self.s.status}", type="ContractNotActive"
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
        )
