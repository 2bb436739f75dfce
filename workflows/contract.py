"""The contract workflow: one durable process per purchase (SPEC.md §2).

It sleeps until the next thing is due — an installment, a retry, a poll of a debit still
`processing`, or the next rung of the dunning ladder — does it, writes what happened to the
ledger, and sleeps again. Outside events (Stripe webhooks, support actions) arrive as
signals and updates and wake it up. `domain/` decides, activities act; this file only
sequences.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain import declines
    from domain.durations import parse_interval
    from domain.money import format_amount
    from domain.policy import LadderStep
    from domain.schedule import BERLIN, due_instant, installment_due_times, shift
    from workflows import retry_policies as rp
    from workflows.types import (
        ActionResult,
        ChargeInput,
        ChargeResult,
        ClaimLine,
        ContractInput,
        ContractState,
        ContractView,
        Fact,
        InstallmentState,
        LedgerSync,
        NoticeInput,
        NoticeResult,
        PaymentMethodRequest,
        PaymentStatusInput,
        PaymentUpdate,
        SettlementRequest,
    )

TERMINAL = ("completed", "cancelled", "handed_off", "written_off", "failed")

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

    # -- the loop ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: ContractInput) -> ContractView:
        if inp.state is None:
            self._sa_last = ("active", "none", 0, False)  # set by the API at start
            self._start(workflow.now())
        else:
            self._sa_last = self._sa_tuple()  # carried over by continue-as-new
        while True:
            async with self._lock:
                await self._process(workflow.now())
                await self._flush()
            if self.s.status in TERMINAL:
                break
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._dirty:
                    workflow.continue_as_new(self._next_run_input())
                continue
            wake, why = self._next_wake()
            await self._sleep_until(wake, why)
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
            self.s.installments.append(
                InstallmentState(seq=seq, due_at=shift(first, interval, seq - 1), amount=inp.amount)
            )
            self.s.generated = seq

    async def _process(self, now: datetime) -> None:
        self._apply_payment_updates(now)
        if self.inp.kind == "subscription" and self.s.status not in TERMINAL:
            self._generate_subscription_periods(now)
        for inst in sorted(self.s.installments, key=lambda i: i.seq):
            if self.s.status in TERMINAL:
                return
            if inst.status == "scheduled" and inst.due_at <= now:
                if inst.outstanding <= 0:
                    inst.status = "paid"
                    continue
                await self._charge(inst, "due")
            elif inst.status == "open" and inst.next_retry_at and inst.next_retry_at <= now:
                await self._charge(inst, "retry")
            elif inst.status == "processing" and inst.next_poll_at and inst.next_poll_at <= now:
                await self._poll(inst)
        self._settle_case(workflow.now())
        if self._case_open() and self.s.status not in TERMINAL:
            await self._walk_ladder()
        self._check_completed(workflow.now())
        if self.inp.kind == "subscription" and self.s.status not in TERMINAL:
            self._generate_subscription_periods(workflow.now())  # the next renewal

    def _next_wake(self) -> tuple[datetime | None, str]:
        candidates: list[tuple[datetime, str]] = []
        count = self.inp.count
        for inst in self.s.installments:
            label = f"installment {inst.seq}" + (f" of {count}" if count else "")
            if inst.status == "scheduled":
                candidates.append((inst.due_at, f"{label} due"))
            elif inst.status == "open" and inst.next_retry_at:
                candidates.append((inst.next_retry_at, f"retry {inst.retries_done + 1} of {label}"))
            elif inst.status == "processing" and inst.next_poll_at:
                candidates.append((inst.next_poll_at, f"check the debit of {label}"))
        step = self._next_ladder_step()
        if step is not None:
            candidates.append((step[1], f"dunning stage {step[0].stage}"))
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
        return self.s.fees - self.s.fees_paid

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

    async def _charge(self, inst: InstallmentState, reason: str) -> ChargeResult:
        now = workflow.now()
        # When the attempt was due: retry offsets count from here, so retries keep the
        # schedule's time of day, and a retry and a ladder step due at the same moment run
        # retry first (a debit that clears the claim makes the notice unnecessary).
        scheduled = {"due": inst.due_at, "retry": inst.next_retry_at}.get(reason) or now
        if not (now - timedelta(hours=1) <= scheduled <= now):
            scheduled = now  # started late (e.g. a back-dated contract): count from now
        attempt = inst.attempts + 1
        oldest = self._open()
        # While a case is open the first debit also collects the dunning fees, so that one
        # successful debit clears the whole claim (§ 367 BGB allocates costs first).
        fee_part = self._fees_open() if oldest and oldest[0] is inst else 0
        amount = inst.outstanding + fee_part
        key = f"{self.inp.contract_id}:{inst.seq}:{attempt}"
        summary = f"charge {self._money(amount)} — {self._label(inst)}, attempt {attempt}"
        if fee_part:
            summary += f" (incl. {self._money(fee_part)} fees)"
        res: ChargeResult = await workflow.execute_activity(
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
        inst.attempts = attempt
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
            return
        self._outcome(inst, res.status, res.code, now, source="poll")

    def _apply_payment_updates(self, now: datetime) -> None:
        updates, self._updates = self._updates, []
        for pu in updates:
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
            self._declined(inst, res, now, data, key)

    def _paid(
        self, inst: InstallmentState, amount: int, now: datetime, data: dict, key: str
    ) -> None:
        fee_part = min(inst.fee_part, self._fees_open())
        self.s.fees_paid += fee_part
        inst.paid += amount - fee_part
        inst.fee_part = 0
        inst.status = "paid" if inst.outstanding <= 0 else "open"
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
        fail = data | {"code": res.code, "failure_class": cls, "message": res.message}
        self._fact("payment.failed", f"failed:{key}", now, fail, event="payment.failed")
        inst.next_retry_at = self._next_retry(inst, cls, res.code)
        if inst.next_retry_at is not None and inst.next_retry_at < now:
            inst.next_retry_at = now
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

    def _next_retry(self, inst: InstallmentState, cls: str, code: str | None) -> datetime | None:
        if cls != declines.SOFT or inst.first_failed_at is None:
            return None
        offsets = self.policy.retry_offsets()
        cap = len(offsets)
        if not declines.is_known(code, inst.scheme):
            cap = min(cap, declines.MAX_UNKNOWN_RETRIES)  # unknown codes: few retries
        if inst.retries_done >= cap:
            return None
        return inst.first_failed_at + offsets[inst.retries_done]

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
        for step in self.policy.ladder:
            if step.stage in self.s.stages_done:
                continue
            return step, oldest[0].due_at + step.offset()
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
        if step.lock_access and self.s.access != "locked":
            self.s.access = "locked"
            self._fact(
                "access.locked",
                f"lock:{cid}:{case}",
                now,
                {"case": case, "stage": step.stage, "overdue_amount": self._overdue()},
                event="access.locked",
            )
        if step.handoff:
            self.s.status = "handed_off"
            self._fact(
                "contract.handed_off",
                f"handed_off:{cid}:{case}",
                now,
                {
                    "case": case,
                    "overdue_amount": self._overdue(),
                    "route": self.policy.collection.route,
                },
                event="contract.handed_off",
            )
        await self._flush()
        if step.notice:
            await self._send_notice(step, now)

    async def _send_notice(self, step: LadderStep, now: datetime) -> None:
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
                    stage=step.stage,
                    template=step.notice or step.stage,
                    customer=self.inp.customer,
                    product=self.inp.product,
                    currency=self.inp.currency,
                    lines=lines,
                    fees=self._fees_open(),
                    total=self._overdue(),
                    deadline=deadline,
                    created_at=now,
                ),
                result_type=NoticeResult,
                start_to_close_timeout=rp.NOTICE_START_TO_CLOSE,
                schedule_to_close_timeout=rp.NOTICE_SCHEDULE_TO_CLOSE,
                retry_policy=rp.NOTICE,
                summary=f"send {step.notice} — claim {self._money(self._overdue())}",
            )
        except ActivityError as err:
            # An undeliverable notice must not stop the ladder; it is on the timeline.
            self._fact(
                "notice.failed",
                f"notice_failed:{self.inp.contract_id}:{self.s.case_no}:{step.stage}",
                workflow.now(),
                {"stage": step.stage, "error": str(err.cause or err)},
            )

    def _settle_case(self, now: datetime) -> None:
        """A payment that covers the claim ends the case and unlocks (SPEC.md §3)."""
        if not self._case_open() or self.s.status in TERMINAL or self._overdue() > 0:
            return
        cid, case = self.inp.contract_id, self.s.case_no
        self._fact(
            "dunning.stage_changed",
            f"stage:{cid}:{case}:closed",
            now,
            {"case": case, "stage": "none", "from": self.s.stage},
            event="dunning.stage_changed",
        )
        self.s.stage = "none"
        self.s.stages_done = []
        self.s.case_opened_at = None
        self.s.status = "active"
        if self.s.access == "locked":
            self.s.access = "granted"
            self._fact(
                "access.unlocked",
                f"unlock:{cid}:{case}",
                now,
                {"case": case},
                event="access.unlocked",
            )

    def _check_completed(self, now: datetime) -> None:
        if self.s.status in TERMINAL or self.inp.kind == "subscription":
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

    @workflow.update(name="settle")
    async def settle(self, req: SettlementRequest) -> ActionResult:
        async with self._lock:
            now = workflow.now()
            remaining = req.amount
            alloc: dict[str, int] = {}
            fee_part = min(remaining, self._fees_open())
            if fee_part:
                self.s.fees_paid += fee_part
                alloc["fees"] = fee_part
                remaining -= fee_part
            # § 366 (2), § 367 BGB: costs first, then the oldest debt.
            targets = self._open() + sorted(
                (i for i in self.s.installments if i.status == "scheduled"), key=lambda i: i.due_at
            )
            for inst in targets:
                if remaining <= 0:
                    break
                part = min(remaining, inst.outstanding)
                inst.paid += part
                remaining -= part
                alloc[f"installment_{inst.seq}"] = part
                if inst.outstanding <= 0:
                    inst.status = "paid"
                    inst.next_retry_at = None
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
                },
                event="payment.succeeded",
                actor=req.actor,
            )
            self._settle_case(now)
            self._check_completed(now)
            await self._flush()
            self._dirty = True
            return self._result(f"settlement of {self._money(req.amount)} recorded", alloc=alloc)

    @settle.validator
    def _validate_settle(self, req: SettlementRequest) -> None:
        self._require_active("record a settlement")
        if req.amount <= 0:
            raise ApplicationError("amount must be positive", type="InvalidInput")
        payable = self._fees_open() + sum(
            i.outstanding for i in self.s.installments if i.status in ("open", "scheduled")
        )
        if req.amount > payable:
            raise ApplicationError(
                f"amount {req.amount} exceeds what is still payable ({payable})",
                type="SettlementExceedsClaim",
            )

    @workflow.update(name="replace_payment_method")
    async def replace_payment_method(self, req: PaymentMethodRequest) -> ActionResult:
        async with self._lock:
            now = workflow.now()
            self.s.payment_method = req.payment_method
            uid = workflow.current_update_info()
            ref = req.request_id or (uid.id if uid else str(workflow.uuid4()))
            self._fact(
                "payment_method.replaced",
                f"pm:{self.inp.contract_id}:{ref}",
                now,
                {"payment_method": req.payment_method},
                actor=req.actor,
            )
            debited: list[ChargeResult] = []
            for inst in self._open():
                # A new payment method starts a fresh retry episode (SPEC.md §3).
                inst.first_failed_at = None
                inst.retries_done = 0
                debited.append(await self._charge(inst, "new payment method"))
            self._settle_case(workflow.now())
            self._check_completed(workflow.now())
            await self._flush()
            self._dirty = True
            return self._result("payment method replaced", debited=debited)

    @replace_payment_method.validator
    def _validate_pm(self, req: PaymentMethodRequest) -> None:
        self._require_active("replace the payment method")
        if not req.payment_method.startswith("pm_"):
            raise ApplicationError("payment_method must be a Stripe pm_… id", type="InvalidInput")

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
