"""Debits: charging, retries, SEPA's slow truth and pre-notification, chargebacks — the
payment part of the contract workflow (workflows/contract.py). `domain/` decides,
activities act; this part only sequences.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain import declines
    from domain.calendar import add_target_business_days, sepa_collection_date
    from domain.claim import RETURN_DEBIT, CostFact, PaymentFact, debit_amount
    from domain.fees import RETURN_DEBIT_COST_DEFAULT
    from domain.money import stripe_minimum_charge
    from domain.policy import COLLECT_PRINCIPAL
    from domain.retry_timing import RetryPlanInput, next_retry
    from domain.schedule import berlin_date
    from workflows import retry_policies as rp
    from workflows.base import (
        PATCH_PRE_NOTIFICATION,
        PATCH_STRIPE_STRICT,
        SEPA_PROCESSING_CAP_BUSINESS_DAYS,
        STALL_FIRST,
        STALL_MAX,
        ContractBase,
        never_defaulted,
    )
    from workflows.types import (
        ChargeInput,
        ChargeResult,
        ClaimLine,
        DebitAnnouncement,
        InstallmentState,
        MandateUpdate,
        NoticeInput,
        NoticeResult,
        PaymentMethodInfo,
        PaymentMethodLookup,
        PaymentStatusInput,
        PaymentUpdate,
    )


class Debits(ContractBase):
    # -- debits ------------------------------------------------------------------------------

    def _fee_carrier(self, now: datetime) -> InstallmentState | None:
        """The oldest due, unpaid installment: its debit also collects the dunning fees."""
        due = [
            i
            for i in self.s.installments
            if i.status == "open" or (i.status == "scheduled" and i.due_at <= now)
        ]
        return min(due, key=lambda i: (i.due_at, i.seq)) if due else None

    def _fee_part(self, inst: InstallmentState, at: datetime) -> int:
        """What a debit of `inst` at `at` takes beyond the installment's principal.

        Since PATCH_CLAIM the policy's `collect` decides (domain.claim.debit_amount):
        `principal` (the default) takes nothing more — the card or mandate authorises the
        agreed amounts; `claim` lets the oldest due debit take the rest of the claim
        (interest, fees, costs, lump sums) too. Before: the oldest due debit took the open
        fees, so one successful debit cleared the whole claim (§ 367 BGB allocates costs
        first)."""
        in_flight = sum(i.fee_part for i in self.s.installments if i.status == "processing")
        if self._fee_carrier(at) is not inst:
            return 0
        if not self._exact:
            return max(self._fees_open() - in_flight, 0)
        claim = self._dunning_view(self._claim(at))
        own = claim.item(inst.seq)
        whole = debit_amount(claim, self.policy.collect, inst.seq)
        if self.policy.collect == COLLECT_PRINCIPAL:
            return 0  # whole == the installment's open principal
        # `claim`: the whole claim less the other installments' principal (each of them is
        # debited on its own) and less what debits in flight already take.
        others = claim.principal - (own.principal if own is not None else 0)
        return max(whole - others - (own.principal if own is not None else 0) - in_flight, 0)

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
        if inst.integration_errors:
            # Stripe refused the earlier request of this attempt (4xx: no money moved) and
            # saved that answer under its key for 24 h: the next try needs a fresh key.
            key += f":e{inst.integration_errors}"
        method: PaymentMethodInfo | None = None
        if self._announcing():
            method = await self._method()
            if method is None:
                return self._stall(inst, now, key, "payment method lookup failed")
            if method.is_sepa and method.mandate_status == "inactive":
                if self._patched(PATCH_STRIPE_STRICT):
                    return self._mandate_inactive(inst, now, key, method, scheduled)
            if method.is_sepa and self._mahnwerk_announces():
                if inst.announced_attempt != attempt:
                    # Not announced in time (due at checkout, a new method): announce now.
                    await self._announce(inst, now, method, inst.outstanding + fee_part)
                # Never take more than the customer was told (fees added since are not
                # part of this debit; they stay open for the next one).
                fee_part = min(fee_part, max(inst.announced_amount - inst.outstanding, 0))
        amount = inst.outstanding + fee_part
        if amount < stripe_minimum_charge(self.inp.currency) and self._patched(PATCH_STRIPE_STRICT):
            return self._below_minimum(inst, now, amount)
        summary = f"charge {self._money(amount)} — {self._label(inst)}, attempt {attempt}"
        if fee_part:
            summary += f" (incl. {self._money(fee_part)} fees)"
        try:
            res = await self._charge_activity(inst, attempt, key, amount, now, summary, method)
        except ActivityError as err:
            if not self._announcing():
                raise  # contracts started before the patch fail as they always did
            return self._stall(inst, now, key, str(err.cause or err))
        if res.status == "error":
            return self._integration_error(inst, now, key, res)
        if inst.integration_errors:
            self._fact(
                "installment.unstalled",
                f"unstalled:{key}",
                now,
                {"installment": inst.seq, "attempt": attempt, "after": inst.integration_errors},
            )
        inst.stalled_until = None
        inst.stalls = 0
        inst.stall_error = None
        inst.integration_errors = 0
        if res.scheme:
            inst.scheme = res.scheme
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
            if res.expected_debit_date:
                data = data | {"expected_debit_date": res.expected_debit_date}
            self._fact("payment.processing", f"processing:{key}", now, data)
            announced = inst.announced_collection
            if res.expected_debit_date and announced and res.expected_debit_date != announced:
                # Stripe collects on another day than the pre-notification said: on record
                # for support (the announcement stays valid within the mandate's terms only
                # if the customer is not debited earlier).
                workflow.logger.warning(
                    "SEPA debit %s of %s collected on %s, announced for %s",
                    res.payment_intent,
                    self.inp.contract_id,
                    res.expected_debit_date,
                    announced,
                )
                self._fact(
                    "sepa.debit_date_differs",
                    f"debit_date_differs:{key}",
                    now,
                    {
                        "installment": inst.seq,
                        "announced": announced,
                        "expected_debit_date": res.expected_debit_date,
                    },
                )
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
        method: PaymentMethodInfo | None = None,
    ) -> ChargeResult:
        if method is not None and method.kind not in ("card", "sepa_debit"):
            method = None  # unknown to Stripe: let the debit tell (automatic methods)
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
                method_type=method.kind if method is not None else None,
                mandate=method.mandate if method is not None and method.is_sepa else None,
                seller_id=self.inp.seller_id,
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
            event="payment.stalled",
        )
        return ChargeResult("stalled", None, message=error[:500])

    def _integration_error(
        self, inst: InstallmentState, now: datetime, key: str, res: ChargeResult
    ) -> ChargeResult:
        """Stripe refused our request (400/401/403/404, not a decline): our integration error,
        never the customer's (issue 10 item 3). Nothing is decided about the customer — no
        notice, no fee, no lock, no retry count used: the installment waits `stalled`, with
        the error, an `integration.error` event for the platform and a metric (counted by
        the activity), and is tried again with backoff (1 h doubling up to a day), or at once
        when an admin says so (`retry_debit`)."""
        wait = min(STALL_FIRST * (2**inst.stalls), STALL_MAX)
        first = inst.integration_errors == 0
        inst.stalls += 1
        inst.integration_errors += 1
        inst.stalled_until = now + wait
        inst.stall_error = f"{res.code}: {res.message or ''}"[:500]
        data = {
            "installment": inst.seq,
            "attempt": inst.attempts + 1,
            "code": res.code,
            "message": res.message,
            "http_status": res.http_status,
            "request_id": res.request_id,
            "retry_at": inst.stalled_until,
        }
        workflow.logger.error(
            "Stripe refused the debit of installment %s of %s (integration error %s, request %s)",
            inst.seq,
            self.inp.contract_id,
            res.code,
            res.request_id,
        )
        self._fact(
            "integration.error", f"integration_error:{key}", now, data, event="integration.error"
        )
        if first:
            self._fact(
                "installment.stalled",
                f"installment_stalled:{key}",
                now,
                data,
                event="installment.stalled",
            )
        return res

    def _below_minimum(self, inst: InstallmentState, now: datetime, amount: int) -> ChargeResult:
        """Stripe does not debit less than its minimum charge (50 cents in EUR): such a
        residue (left by a partial settlement) is not sent to Stripe, which would refuse it.
        It stays open in the claim, without retries: the customer is asked to pay it with
        the rest of the claim (issue 10 item 1)."""
        key = f"{self.inp.contract_id}:{inst.seq}:{inst.attempts}"
        if inst.status != "open":
            inst.status = "open"
            inst.first_failed_at = now
            self._open_case(now)
        inst.next_retry_at = None
        inst.retry_reason = "below Stripe's minimum charge: collected with the claim"
        self._fact(
            "payment.below_minimum",
            f"below_minimum:{key}",
            now,
            {
                "installment": inst.seq,
                "amount": amount,
                "minimum": stripe_minimum_charge(self.inp.currency),
            },
        )
        return ChargeResult("below_minimum", None, amount=amount)

    def _mandate_inactive(
        self,
        inst: InstallmentState,
        now: datetime,
        key: str,
        method: PaymentMethodInfo,
        scheduled: datetime,
    ) -> ChargeResult:
        """The SEPA mandate is no longer active (revoked by the debtor, or the method was
        detached): no debit may be collected under it (SEPA rulebook; Stripe marks the Mandate
        `inactive`). Not sent to Stripe; the customer is asked for a new payment method at
        once, as for a hard decline (SPEC §3: revoked mandate)."""
        res = ChargeResult(
            "declined",
            None,
            code="payment_intent_mandate_invalid",
            failure_class=declines.classify("payment_intent_mandate_invalid", "sepa"),
            message=f"SEPA mandate {method.mandate} is inactive",
            amount=inst.outstanding,
            scheme="sepa",
        )
        inst.scheme = "sepa"
        data = {
            "installment": inst.seq,
            "attempt": inst.attempts,
            "amount": inst.outstanding,
            "mandate": method.mandate,
            "reason": "mandate inactive",
        }
        self._declined(inst, res, now, data, f"{key}:mandate", failed_at=scheduled)
        return res

    # -- SEPA pre-notification (DOMAIN.md §4) ------------------------------------------------

    def _announcing(self) -> bool:
        return self._patched(PATCH_PRE_NOTIFICATION)

    def _current_method(self) -> PaymentMethodInfo | None:
        m = self.s.method
        return m if m is not None and m.payment_method == self.s.payment_method else None

    async def _method(self) -> PaymentMethodInfo | None:
        """The payment method as Stripe describes it, looked up once per method; None if
        Stripe could not be asked (tried again next time)."""
        current = self._current_method()
        if current is not None:
            return current
        # Since PATCH_LEAN a local activity: a read (the method and its mandate, through the
        # worker's own Stripe rate limit), not a debit — the Stripe queue's deployment-wide
        # rate stays the debits' (workflows/queues.py), and the contract's first workflow
        # task needs no second one.
        execute = workflow.execute_local_activity if self._lean else workflow.execute_activity
        try:
            info: PaymentMethodInfo = await execute(  # type: ignore[operator]
                "describe_payment_method",
                PaymentMethodLookup(
                    self.inp.contract_id,
                    self.inp.stripe_customer,
                    self.s.payment_method,
                    seller_id=self.inp.seller_id,
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

    def _mahnwerk_announces(self) -> bool:
        """Mahnwerk sends SEPA pre-notifications itself, unless the operator lets Stripe's
        own debit notification e-mails do it (MAHNWERK_SEPA_PRENOTIFICATION=stripe): never
        both, or the customer gets two announcements of every debit."""
        return self.inp.sepa_prenotification_by != "stripe"

    def _unannounced_debits(self) -> list[tuple[InstallmentState, datetime]]:
        """SEPA debits ahead whose attempt has not been announced yet."""
        if self._terminal() or not self._announcing() or not self._mahnwerk_announces():
            return []
        method = self._current_method()
        if method is None or not method.is_sepa:
            return []
        return [(i, at) for i, at in self._debit_plan() if i.announced_attempt != i.attempts + 1]

    async def _announce_debits(self, now: datetime) -> None:
        """Send the pre-notification of every SEPA debit due within the policy's lead."""
        debits = self._unannounced_debits()
        method = self._current_method()
        if not debits or method is None:
            return
        lead = self.policy.sepa.lead()
        for inst, at in sorted(debits, key=lambda d: (d[1], d[0].seq)):
            if at - lead <= now:
                at = max(at, now)
                await self._announce(inst, at, method, inst.outstanding + self._fee_part(inst, at))

    async def _announce(
        self, inst: InstallmentState, at: datetime, method: PaymentMethodInfo, amount: int
    ) -> None:
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
            collection_date=sepa_collection_date(
                date.fromisoformat(berlin_date(max(at, now)))
            ).isoformat(),
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
                event="notice.failed",
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
                "collection_date": announcement.collection_date,
                "mandate_reference": method.mandate_reference,
                "short_notice": short,
            },
        )
        inst.announced_collection = announcement.collection_date or ""

    async def _poll(self, inst: InstallmentState) -> None:
        if inst.payment_intent is None:
            return
        strict = self._patched(PATCH_STRIPE_STRICT)
        try:
            res: ChargeResult = await workflow.execute_activity(
                "payment_status",
                PaymentStatusInput(
                    self.inp.contract_id,
                    inst.payment_intent,
                    inst.scheme,
                    seller_id=self.inp.seller_id,
                ),
                result_type=ChargeResult,
                start_to_close_timeout=rp.CHARGE_START_TO_CLOSE,
                schedule_to_close_timeout=rp.CHARGE_SCHEDULE_TO_CLOSE if strict else None,
                retry_policy=rp.CHARGE,
                summary=f"check the debit of {self._label(inst)} ({inst.payment_intent})",
            )
        except ActivityError as err:
            if not strict:
                raise
            # Stripe unreachable through every retry: the debit is still in flight; ask
            # again later. Never a reason to fail the contract (DESIGN.md decision 15).
            now = workflow.now()
            inst.next_poll_at = now + min(STALL_FIRST * (2**inst.stalls), STALL_MAX)
            inst.stalls += 1
            self._fact(
                "payment.poll_failed",
                f"poll_failed:{self.inp.contract_id}:{inst.seq}:{inst.attempts}:{inst.stalls}",
                now,
                {
                    "installment": inst.seq,
                    "error": str(err.cause or err)[:500],
                    "retry_at": inst.next_poll_at,
                },
                event="payment.poll_failed",
            )
            return
        now = workflow.now()
        if res.status == "error":
            # Stripe refused the lookup (e.g. the PaymentIntent is unknown under this key):
            # ours to fix; keep the debit in flight and ask again later.
            inst.next_poll_at = now + min(STALL_FIRST * (2**inst.stalls), STALL_MAX)
            inst.stalls += 1
            self._fact(
                "integration.error",
                f"integration_error:poll:{self.inp.contract_id}:{inst.seq}:{inst.attempts}:"
                f"{inst.stalls}",
                now,
                {
                    "installment": inst.seq,
                    "code": res.code,
                    "message": res.message,
                    "request_id": res.request_id,
                    "http_status": res.http_status,
                    "retry_at": inst.next_poll_at,
                },
                event="integration.error",
            )
            return
        if strict:
            inst.stalls = 0
        if res.scheme:
            inst.scheme = res.scheme
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
            if pu.status in ("dispute_won", "dispute_lost", "refunded"):
                inst = next(
                    (i for i in self.s.installments if i.payment_intent == pu.payment_intent),
                    None,
                )
                if inst is not None:
                    if pu.status == "dispute_won":
                        self._dispute_won(inst, pu, now)
                    elif pu.status == "dispute_lost":
                        self._fact(
                            "payment.dispute_lost",
                            f"dispute_lost:{self.inp.contract_id}:{inst.seq}:{pu.dispute}",
                            now,
                            {
                                "installment": inst.seq,
                                "dispute": pu.dispute,
                                "amount": pu.amount,
                                "payment_intent": pu.payment_intent,
                            },
                        )
                    else:
                        self._refunded(inst, pu, now)
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
                if self._after and pu.external and pu.status == "succeeded":
                    self._external_payment(pu, now)
                continue  # already settled (duplicate, or the poll got there first)
            status = "succeeded" if pu.status == "succeeded" else "declined"
            self._outcome(inst, status, pu.code, now, source="webhook")

    def _external_payment(self, pu: PaymentUpdate, now: datetime) -> None:
        """The customer paid through Stripe outside our debits (a PaymentIntent the platform
        created for this contract, e.g. a payment link after the hand-off; issue 12): a
        payment of the claim like a settlement (§ 367 BGB), recorded once per PaymentIntent."""
        key = f"stripe:{pu.payment_intent}"
        if (
            pu.amount <= 0
            or self._terminal()
            or any(i.payment_intent == pu.payment_intent for i in self.s.installments)
        ):
            return
        if any(p.key == key for p in self.s.claim_payments):
            return
        day = berlin_date(now)
        fact = PaymentFact(key, day, pu.amount, 0, self._bump())
        self.s.claim_payments.append(fact)
        claim = self._claim(now)
        self._sync_paid(claim, now)
        allocation = next(p for p in claim.payments if p.key == key)
        alloc: dict[str, int] = {}
        for part in allocation.parts:
            name = {
                "principal": f"installment_{part.installment}",
                "interest": f"interest_{part.installment}",
            }.get(part.part, part.part)
            alloc[name] = alloc.get(name, 0) + part.amount
        if allocation.credit:
            alloc["credit"] = allocation.credit
        self.s.paid_total += pu.amount
        self._fact(
            "payment.succeeded",
            f"paid:{self.inp.contract_id}:{key}",
            now,
            {
                "amount": pu.amount,
                "payment_intent": pu.payment_intent,
                "method": "stripe",
                "source": "customer",
                "allocation": alloc,
            },
            event="payment.succeeded",
        )
        self._settle_case(now)
        self._after_payment(
            now,
            key,
            pu.amount,
            "customer",
            {"received_on": day, "method": "stripe", "allocation": alloc},
        )
        self._check_completed(now)

    def _dispute_won(self, inst: InstallmentState, pu: PaymentUpdate, now: datetime) -> None:
        """A dispute closed in the seller's favour (`charge.dispute.closed` with status `won`,
        or `charge.dispute.funds_reinstated`): the money is back, so the amount counts as paid
        again and the return-debit costs charged for it are released. Applied once per
        dispute, whichever of the two events comes first."""
        key = pu.dispute or pu.event_id
        if key in self.s.disputes_settled:
            return
        self.s.disputes_settled = [*self.s.disputes_settled, key][-50:]
        back = min(inst.disputed, pu.amount or inst.disputed)
        if self._exact and inst.reversed_payments:
            back = max(back, 1)  # the reversal may have taken fees only: restore it below
        if back <= 0:
            return  # the dispute never reopened this installment (e.g. it was unknown)
        applied = min(back, inst.outstanding)
        inst.disputed -= back
        inst.paid += applied
        self.s.paid_total += applied
        released = inst.dispute_costs
        if released:
            self.s.fees -= released
            self.s.return_debit_costs -= released
            inst.dispute_costs = 0
        if self._exact:
            # The money is back: the payments stand as made, the dispute's return-debit
            # costs are released (a paid part of them becomes credit).
            self._restore_payments(inst, pu.amount or sum(inst.reversed_payments.values()))
            inst.claim_due = ""
            prefix = f"dispute:{inst.seq}:"
            self.s.claim_costs = [c for c in self.s.claim_costs if not c.key.startswith(prefix)]
            self._sync_paid(self._claim(now), now)
        if inst.outstanding <= 0:
            inst.status = "paid"
            inst.next_retry_at = None
            inst.first_failed_at = None
            inst.dunning_from = None
        self._fact(
            "payment.dispute_won",
            f"dispute_won:{self.inp.contract_id}:{inst.seq}:{key}",
            now,
            {
                "installment": inst.seq,
                "dispute": pu.dispute,
                "amount": back,
                "credit": back - applied,  # paid again meanwhile: to be refunded
                "return_debit_costs_released": released,
                "payment_intent": pu.payment_intent,
            },
            event="payment.succeeded",
        )
        self._settle_case(now)
        self._check_completed(now)

    def _refunded(self, inst: InstallmentState, pu: PaymentUpdate, now: datetime) -> None:
        """A refund made at Stripe (the Dashboard, or the platform's own call): the seller
        gave this money back, so it is never claimed again. `amount` is the charge's
        cumulative `amount_refunded`: only an increase is new. A full refund marks the
        installment `refunded`; for a one-off purchase that ends the contract and its
        access (nothing was kept)."""
        new = pu.amount - inst.refunded
        if new <= 0:
            return
        inst.refunded = pu.amount
        self._fact(
            "refund.created",
            f"refund:{self.inp.contract_id}:{inst.seq}:{pu.amount}",
            now,
            {
                "installment": inst.seq,
                "amount": new,
                "refunded_total": inst.refunded,
                "payment_intent": pu.payment_intent,
                "source": "stripe",
            },
            event="refund.created",
        )
        if inst.refunded < inst.paid or inst.status != "paid":
            return
        inst.status = "refunded"
        if self.inp.kind == "one_off" and self.s.status not in ("cancelled", "failed"):
            self.s.status = "cancelled"
            if self.s.access != "none":
                self.s.access = "none"
                self._fact(
                    "access.revoked",
                    f"revoked:{self.inp.contract_id}:refund",
                    now,
                    {"reason": "purchase refunded in full"},
                    event="access.locked",
                )
            self._fact(
                "contract.cancelled",
                f"cancelled:{self.inp.contract_id}",
                now,
                {"reason": "refunded", "refunded_total": inst.refunded},
                event="contract.cancelled",
            )

    def _mandate_changed(self, mu: MandateUpdate, now: datetime) -> None:
        """`mandate.updated`: a revoked (inactive) mandate stops SEPA debits at once; the
        customer is asked for a new payment method (issue 10 item 5)."""
        method = self._current_method()
        if method is None or not method.is_sepa:
            return
        if method.mandate not in (None, mu.mandate) and mu.payment_method != method.payment_method:
            return
        if method.mandate_status == mu.status and method.mandate == mu.mandate:
            return
        method.mandate = mu.mandate
        method.mandate_status = mu.status
        self._fact(
            "mandate.updated",
            f"mandate:{self.inp.contract_id}:{mu.mandate}:{mu.event_id}",
            now,
            {"mandate": mu.mandate, "status": mu.status},
        )
        if mu.status != "inactive" or self._terminal():
            return
        if any(i.status in ("scheduled", "open") for i in self.s.installments):
            self._fact(
                "payment_method.required",
                f"pm_required:{self.inp.contract_id}:mandate:{mu.mandate}",
                now,
                {"code": "mandate_inactive", "mandate": mu.mandate},
                event="payment_method.required",
            )

    def _chargeback_watch_until(self) -> datetime | None:
        if self.s.status != "completed":
            return None
        paid = [i.paid_at for i in self.s.installments if i.paid_at is not None]
        if not paid:
            return None
        return max(paid) + timedelta(days=self.inp.chargeback_watch_days)

    def _charge_return_debit_costs(
        self, inst: InstallmentState, now: datetime, key: str | None, claim_key: str = ""
    ) -> int:
        cost = RETURN_DEBIT_COST_DEFAULT
        self.s.fees += cost
        self.s.return_debit_costs += cost
        if self._exact:
            # Bank costs of the returned debit: damage caused by the default (§§ 280, 286
            # BGB), costs apart from the dunning fees (domain.claim RETURN_DEBIT).
            self.s.claim_costs.append(
                CostFact(
                    claim_key or f"return_debit:{key}",
                    berlin_date(now),
                    cost,
                    RETURN_DEBIT,
                    installment=inst.seq,
                    order=self._bump(),
                )
            )
        if key is not None:
            self._fact(
                "costs.return_debit",
                f"return_debit:{key}",
                now,
                {"installment": inst.seq, "amount": cost},
            )
        return cost

    def _reverse_payments(self, inst: InstallmentState, back: int) -> None:
        """A chargeback takes `back` of this installment's payments back: the claim treats
        that much as never paid (the reversed debit was no performance, § 362 BGB), so
        interest on it runs from the due date again. The newest payments first; what was
        reduced is remembered so that a won dispute restores it."""
        left = back
        for n in range(len(self.s.claim_payments) - 1, -1, -1):
            fact = self.s.claim_payments[n]
            if left == 0:
                break
            if fact.installment != inst.seq or fact.amount == 0:
                continue
            take = min(left, fact.amount)
            self.s.claim_payments[n] = replace(fact, amount=fact.amount - take)
            inst.reversed_payments[fact.key] = inst.reversed_payments.get(fact.key, 0) + take
            left -= take
        self._bump()

    def _restore_payments(self, inst: InstallmentState, back: int) -> None:
        """A won dispute: the reversed payments stand again (up to `back`)."""
        left = back
        for n, fact in enumerate(self.s.claim_payments):
            taken = inst.reversed_payments.get(fact.key, 0)
            if left == 0:
                break
            if not taken:
                continue
            give = min(left, taken)
            self.s.claim_payments[n] = replace(fact, amount=fact.amount + give)
            inst.reversed_payments[fact.key] = taken - give
            left -= give
        inst.reversed_payments = {k: v for k, v in inst.reversed_payments.items() if v}
        self._bump()

    def _reopen(self, inst: InstallmentState, pu: PaymentUpdate, now: datetime) -> None:
        """A chargeback (SEPA refund by the debtor's bank, card dispute): the amount is
        unpaid again, the bank's return-debit costs join the claim, dunning starts anew."""
        if self._exact:
            # The whole disputed amount is reversed (with any excess it paid); the claim
            # then says how much principal is open again, due again from the chargeback
            # day (the seller had the money until then) — unless interest was already paid
            # on it: then from the agreed due date, so nothing paid turns into credit.
            before = inst.paid
            paid_interest = sum(
                part.amount
                for payment in self._claim(now).payments
                for part in payment.parts
                if part.part == "interest" and part.installment == inst.seq
            )
            if paid_interest == 0:
                inst.claim_due = berlin_date(now)
            self._reverse_payments(inst, pu.amount or inst.paid)
            self._sync_paid(self._claim(now), now)
            back = before - inst.paid
        else:
            back = min(inst.paid, pu.amount or inst.paid)
            inst.paid -= back
        inst.disputed += back
        self.s.paid_total -= back
        inst.status = "open"
        inst.dunning_from = now
        inst.first_failed_at = None
        inst.next_retry_at = None  # a reclaimed debit is not simply re-debited
        cost = (
            self._charge_return_debit_costs(inst, now, None, f"dispute:{inst.seq}:{pu.event_id}")
            if inst.scheme == "sepa"
            else 0
        )
        inst.dispute_costs += cost
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

    def _payment_day(self, inst: InstallmentState, now: datetime) -> str:
        """The day a successful debit paid (Berlin): a SEPA debit on the day it was
        submitted, not when Stripe reported it. A debit of an installment that was never in
        default (no debit of it failed, not reopened) counts as paid on its due date: a direct
        debit is collected by the creditor (a "Holschuld"), so a late attempt of ours —
        Stripe unreachable, our integration error — puts the debtor in no default."""
        at = inst.processing_since if inst.status == "processing" and inst.processing_since else now
        day = berlin_date(at)
        if never_defaulted(inst):
            day = min(day, berlin_date(inst.due_at))
        return day

    def _paid(
        self, inst: InstallmentState, amount: int, now: datetime, data: dict, key: str
    ) -> None:
        if self._exact:
            # A fact of the claim: the installment's principal first (the debtor's mandate
            # or card authorised it for this installment, § 366 (1) BGB), any excess by
            # § 367 BGB (domain.claim).
            if all(p.key != key for p in self.s.claim_payments):
                self.s.claim_payments.append(
                    PaymentFact(key, self._payment_day(inst, now), amount, inst.seq, self._bump())
                )
            self._sync_paid(self._claim(now), now)
            inst.fee_part = 0
            inst.status = "paid" if inst.outstanding <= 0 else "open"
        else:
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
                min_notice=self.policy.sepa.lead()
                if self._announcing() and self._mahnwerk_announces()
                else timedelta(0),
            )
        )
        inst.retry_reason = decision.reason
        return decision.at
