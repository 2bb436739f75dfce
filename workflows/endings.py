"""Endings: cancelling a contract early (withdrawal, cancellation button, goodwill, fraud,
other), refunds (made by Mahnwerk or at Stripe) and the customer messages beyond dunning —
issue 12 items 3–5. Part of the contract workflow (workflows/contract.py), like
workflows/debits.py and workflows/dunning.py; `domain/endings.py` decides, the refund and
notice activities act.

The part hooks into the others by overriding a few of their methods and calling them first
(`_declined`, `_close_case`, `_check_completed`, `_refunded`, `_chargeback_watch_until`):
what the debits and dunning parts do is unchanged, this part only adds to it. Every added
command of the main loop is behind PATCH_ENDINGS (`self._endings`, decided at the start of
the run); the cancel update's new paths run only for updates sent since, so a recorded
history holds their commands only if it holds such an update.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain import declines
    from domain.claim import WaiverFact
    from domain.durations import parse_interval
    from domain.endings import (
        ACCESS_END,
        ACCESS_KEEP,
        FRAUD,
        OTHER,
        REASONS,
        REFUND_CALLER,
        RULES,
        WITHDRAWAL,
        CancelRule,
        Refundable,
        RefundPlan,
        allocate_refund,
        ends_now,
        refundable_total,
        rule_for,
        withdrawal_refund,
    )
    from domain.schedule import berlin_date, due_instant, shift
    from workflows import retry_policies as rp
    from workflows.base import TERMINAL
    from workflows.debits import Debits
    from workflows.dunning import Dunning
    from workflows.types import (
        ActionResult,
        ChargeResult,
        InstallmentState,
        MessageAsk,
        MessageInfo,
        NoticeInput,
        NoticeResult,
        PaymentUpdate,
        RefundInfo,
        RefundInput,
        RefundPartInput,
        RefundRecord,
        RefundResult,
        SupportAction,
    )

# A refund Stripe could not be asked for (unreachable through all activity retries) is asked
# again with the same idempotency keys, waiting an hour, doubling up to a day; after the 14
# days § 357 (1) BGB gives for the refund it is recorded as failed for a human.
REFUND_RETRY_FIRST = timedelta(hours=1)
REFUND_RETRY_MAX = timedelta(days=1)
REFUND_GIVE_UP = timedelta(days=14)
# Refunds Stripe counts as given (a SEPA refund stays `pending` for days; `failed` and
# `canceled` ones gave nothing back).
REFUND_COUNTED = ("succeeded", "pending", "requires_action")


class Endings(Debits, Dunning):
    # PATCH_ENDINGS for this run (set at the start of `run`; a new contract has it)
    _endings: bool
    _dirty: bool

    # Defined by the workflow class (workflows/contract.py): the support-action plumbing.

    def _action_ref(self, req: SupportAction) -> str:
        raise NotImplementedError

    async def _acquire(self, *, money: bool) -> None:
        raise NotImplementedError

    def _answered(self, ref: str, res: ActionResult) -> None:
        raise NotImplementedError

    async def _refuse(self, ref: str, message: str, type_: str) -> NoReturn:
        raise NotImplementedError

    def _result(
        self,
        message: str,
        *,
        debited: list[ChargeResult] | None = None,
        alloc: dict[str, int] | None = None,
    ) -> ActionResult:
        raise NotImplementedError

    # -- cancel: which path ------------------------------------------------------------------

    def _ends_contract(self, req: SupportAction) -> bool:
        """A cancellation this part handles: every kind but a subscription's end-of-period
        cancellation without a refund, which keeps its earlier path (SPEC.md §4) — and so
        does a cancel of a history recorded before (its `reason` was free text)."""
        if req.reason not in REASONS:
            return False
        return self.inp.kind != "subscription" or ends_now(req.reason) or bool(req.refund)

    def _ending_problem(self, req: SupportAction) -> tuple[str, str] | None:
        """Why this cancellation cannot be applied now (message, error type), or None."""
        rule = rule_for(req.reason)
        if rule is None:
            return (f"reason must be one of {', '.join(REASONS)}", "InvalidInput")
        if self.s.ended_reason and (not rule.now or ends_now(self.s.ended_reason)):
            return (f"already cancelled ({self.s.ended_reason})", "InvalidState")
        if self.s.cancel_at is not None and not rule.now:
            return (
                f"already cancelled effective {self.s.cancel_at.isoformat()}",
                "InvalidState",
            )
        status = self.s.status
        if status in TERMINAL and not (status == "completed" and rule.now):
            return (f"cannot cancel: contract is {status}", "ContractNotActive")
        if rule.now:
            flight = [i.seq for i in self.s.installments if i.status == "processing"]
            if flight:
                which = ", ".join(map(str, flight))
                return (
                    f"the debit of installment {which} is still in flight (SEPA takes days): "
                    "cancel once it has settled",
                    "InvalidState",
                )
        left = refundable_total(self._refundables())
        if req.refund is not None:
            if req.refund < 0:
                return ("refund: must not be negative", "InvalidInput")
            if req.refund > left:
                return (
                    f"refund: {req.refund} exceeds what was paid and not refunded ({left})",
                    "InvalidInput",
                )
        elif rule.policy_refund and self.policy.withdrawal.refund == REFUND_CALLER:
            return (
                "refund: required: the policy's withdrawal.refund is `caller` (name the amount)",
                "InvalidInput",
            )
        return None

    def _validate_ending(self, req: SupportAction) -> None:
        problem = self._ending_problem(req)
        if problem is not None:
            raise ApplicationError(problem[0], type=problem[1])

    # -- cancel: the update ------------------------------------------------------------------

    async def _cancel_contract(self, req: SupportAction) -> ActionResult:
        """Apply the cancellation (under the lock), refund through Stripe (without it: the
        main loop and other actions go on meanwhile), record the refunds, answer, and confirm
        to the customer. Each step's outcome is in the history: a retried update (same
        Idempotency-Key) never refunds twice, and the refund's idempotency keys are derived
        from the action's id."""
        ref = self._action_ref(req)
        if ref in self.s.done_actions:
            return self._result("already applied (same Idempotency-Key)")
        await self._acquire(money=True)
        try:
            problem = self._ending_problem(req)  # the state may have changed since validation
            if problem is not None:
                await self._refuse(ref, problem[0], problem[1])
            now = workflow.now()
            plan, message, cancelled = self._apply_ending(req, ref, now)
            await self._flush()
        finally:
            self._lock.release()
        outcome = await self._refund_through_stripe(req, ref, plan)
        await self._acquire(money=False)
        try:
            now = workflow.now()
            refund = self._record_cancel_refunds(req, ref, plan, outcome, now)
            if plan.amount:
                message += f"; refunded {self._money(refund['stripe'])} through Stripe"
                if refund["outside_stripe"]:
                    message += f", {self._money(refund['outside_stripe'])} to transfer"
            res = self._result(message)
            res.refund = refund
            self._answered(ref, res)
            await self._flush()
        finally:
            self._lock.release()
        await self._confirm(req, refund, cancelled)
        self._dirty = True  # the main loop re-plans (or ends)
        return res

    def _refundables(self) -> list[Refundable]:
        """What was paid and not refunded yet, per installment: through Stripe (its
        PaymentIntent) or not (a settlement: the seller transfers it back)."""
        out: list[Refundable] = []
        for inst in self.s.installments:
            left = inst.paid - inst.refunded
            if left <= 0:
                continue
            pi = inst.payment_intent if inst.status in ("paid", "refunded") else None
            out.append(Refundable(inst.seq, left, pi, inst.paid_at))
        return out

    def _refund_amount(self, req: SupportAction, rule: CancelRule, now: datetime) -> int:
        if req.refund is not None:
            return req.refund
        if not rule.policy_refund:
            return 0
        paid = sum(i.paid for i in self.s.installments)
        refunded = sum(i.refunded for i in self.s.installments)
        price, term = self._term()
        return withdrawal_refund(
            self.policy.withdrawal.refund, paid, refunded, price=price, term=term, at=now
        )

    def _term(self) -> tuple[int, tuple[datetime, datetime] | None]:
        """The agreed total price and the term it pays for (§ 357a (2) BGB, pro rata): a
        plan's whole schedule; for a subscription the periods begun so far; a one-off
        purchase has none."""
        inp = self.inp
        if inp.kind == "one_off" or not inp.interval:
            return inp.amount, None
        interval = parse_interval(inp.interval)
        first = due_instant(inp.first_due)
        if inp.kind == "installments" and inp.count:
            return inp.amount * inp.count, (first, shift(first, interval, inp.count))
        begun = [i for i in self.s.installments if i.status not in ("cancelled", "scheduled")]
        if not begun:
            return 0, None
        start = min(i.due_at for i in begun)
        last = max(begun, key=lambda i: i.due_at)
        return sum(i.amount for i in begun), (start, shift(last.due_at, interval, 1))

    def _apply_ending(
        self, req: SupportAction, ref: str, now: datetime
    ) -> tuple[RefundPlan, str, list[int]]:
        """Change the state: installments, the case, access, the refund planned; facts."""
        # `_ending_problem` refused an unknown reason already; never an assert in workflow code
        rule = rule_for(req.reason) or RULES[OTHER]
        cid = self.inp.contract_id
        amount = self._refund_amount(req, rule, now)
        self.s.ended_reason = req.reason
        if not rule.now:
            plan = allocate_refund(amount, self._refundables())
            message, ended = self._cancel_at_period_end(req, ref, now, plan)
            return plan, message, ended
        cancelled: list[int] = []
        reduced: dict[str, int] = {}
        for inst in sorted(self.s.installments, key=lambda i: i.seq):
            if inst.status in ("scheduled", "open"):
                cut = self._end_installment(inst, req.reason, now)
                if inst.status == "cancelled":
                    cancelled.append(inst.seq)
                elif cut:
                    reduced[str(inst.seq)] = cut
        # after the installments ended: one partly paid by a debit is `paid` now, so its
        # Stripe payment is refunded through Stripe
        plan = allocate_refund(amount, self._refundables())
        waived = self._end_dunning(now, req.reason, ref)
        self.s.status = "cancelled"
        self.s.cancel_at = now
        access = self._access_when_ended(rule, now, ref)
        data: dict[str, Any] = {
            "reason": req.reason,
            "note": req.note,
            "effective_at": now,
            "installments_cancelled": cancelled,
            "installments_reduced": reduced,  # partly paid: the rest is not owed any more
            "waived": waived,
            "refund": {
                "amount": plan.amount,
                "stripe": plan.stripe,
                "outside_stripe": plan.outside_stripe,
                "mode": self.policy.withdrawal.refund
                if rule.policy_refund and req.refund is None
                else "caller",
            },
            "access": access,
            "paid_total": self.s.paid_total,
            "source": rule.source,
        }
        self._fact(
            "contract.cancelled",
            f"cancelled:{cid}",
            now,
            data,
            event="contract.cancelled",
            actor=req.actor,
        )
        message = f"cancelled ({req.reason}): {len(cancelled)} installment(s) cancelled"
        return plan, message, cancelled

    def _cancel_at_period_end(
        self, req: SupportAction, ref: str, now: datetime, plan: RefundPlan
    ) -> tuple[str, list[int]]:
        """The contract ends at the end of the period paid for (the next due date; now with
        `at_period_end: false`): later installments are cancelled, what is due stays owed
        (and dunned); it is `cancelled` once nothing is open (`_cancellation_effective`)."""
        future = sorted(
            (i for i in self.s.installments if i.status == "scheduled" and i.due_at > now),
            key=lambda i: i.due_at,
        )
        cancel_at = future[0].due_at if req.at_period_end and future else now
        self.s.cancel_at = cancel_at
        cancelled: list[int] = []
        for inst in self.s.installments:
            if inst.status == "scheduled" and inst.due_at >= cancel_at:
                self._end_installment(inst, req.reason, now)
                if inst.status == "cancelled":
                    cancelled.append(inst.seq)
        self._fact(
            "contract.cancellation_requested",
            f"contract.cancellation_requested:{self.inp.contract_id}:{ref}",
            now,
            {
                "reason": req.reason,
                "note": req.note,
                "effective_at": cancel_at,
                "at_period_end": req.at_period_end,
                "installments_cancelled": cancelled,
                "refund": plan.amount,
            },
            actor=req.actor,
        )
        self._check_completed(now)
        return f"cancelled effective {cancel_at.isoformat()}", cancelled

    def _end_installment(self, inst: InstallmentState, reason: str, now: datetime) -> int:
        """No longer owed: `cancelled`; one partly paid keeps what was paid as its amount and
        is `paid` (the claim allocates its payments to it). Returns the amount cut."""
        inst.next_retry_at = None
        if inst.paid <= 0:
            inst.status = "cancelled"
            self._installment_ended(inst, "cancelled", reason, now)
            # The claim leaves a cancelled installment out: a payment fact naming it (one a
            # chargeback reduced to nothing) becomes a plain payment (§ 367 BGB), or
            # domain.claim would refuse the facts.
            if any(p.installment == inst.seq for p in self.s.claim_payments):
                self.s.claim_payments = [
                    replace(p, installment=0) if p.installment == inst.seq else p
                    for p in self.s.claim_payments
                ]
                self._bump()
            return 0
        cut = inst.amount - inst.paid
        inst.amount = inst.paid
        inst.status = "paid"
        inst.paid_at = inst.paid_at or now
        self._installment_ended(inst, "paid", f"{reason}: the unpaid rest cancelled", now)
        return cut

    def _end_dunning(self, now: datetime, reason: str, ref: str) -> dict[str, int]:
        """Dunning stops: the case closes (without unlocking: access follows the policy),
        what it added is given up (fees, costs, lump sums, interest: a waiver fact), a final
        notice for a residual or a hand-off waiting for approval or an address is dropped."""
        before = self._claim(now) if self._exact else None
        if self._exact:
            self.s.claim_waivers.append(
                WaiverFact(
                    f"cancel:{ref}",
                    berlin_date(now),
                    fees=True,
                    costs=True,
                    lump_sums=True,
                    interest=True,
                    order=self._bump(),
                )
            )
        else:
            self.s.fees_waived += max(self._fees_open(), 0)
        self.s.interest_waived = True
        self.s.residual = None
        self.s.awaiting_approval = False
        self.s.needs_address = False
        self.s.paused = False
        self.s.paused_until = None
        if self._case_open():
            cid, case = self.inp.contract_id, self.s.case_no
            self._fact(
                "dunning.stage_changed",
                f"stage:{cid}:{case}:closed",
                now,
                {"case": case, "stage": "none", "from": self.s.stage, "reason": reason},
                event="dunning.stage_changed",
            )
            self.s.stage = "none"
            self.s.stages_done = []
            self.s.last_notice = None
            self.s.case_opened_at = None
            self.s.ladder_delay_seconds = 0
        if before is None:
            return {}
        after = self._claim(now)
        return {
            part: getattr(after.waived, part) - getattr(before.waived, part)
            for part in ("fees", "costs", "lump_sums", "interest")
        }

    def _access_mode(self, rule: CancelRule) -> str:
        if rule.access == "withdrawal":
            return self.policy.withdrawal.access
        if rule.access == "cancellation":
            return self.policy.cancellation.access
        return ACCESS_END

    def _access_when_ended(self, rule: CancelRule, now: datetime, ref: str) -> str:
        """End access (`end`: `none`, event `access.locked`) or keep it (`keep`: a locked
        access is unlocked, nothing is owed any more)."""
        cid = self.inp.contract_id
        mode = self._access_mode(rule)
        if mode == ACCESS_KEEP and self.s.access == "locked":
            self.s.access = "granted"
            self._fact(
                "access.unlocked",
                f"unlock:{cid}:cancel:{ref}",
                now,
                {"reason": f"cancelled ({rule.reason}): access kept by policy"},
                event="access.unlocked",
            )
        elif mode == ACCESS_END and self.s.access != "none":
            self.s.access = "none"
            self._fact(
                "access.revoked",
                f"revoked:{cid}:cancel",
                now,
                {"reason": f"cancelled ({rule.reason})"},
                event="access.locked",
            )
        return self.s.access

    def _cancellation_effective(self, now: datetime) -> None:
        """A plan or one-off purchase cancelled at the end of its period ends `cancelled` once
        that time has come and nothing is open any more (a subscription: Dunning)."""
        if (
            self.inp.kind == "subscription"
            or self.s.cancel_at is None
            or self.s.status in TERMINAL
            or now < self.s.cancel_at
        ):
            return
        if any(i.status in ("open", "processing", "scheduled") for i in self.s.installments):
            return
        if self._exact and self.s.residual is not None:
            return
        rule = rule_for(self.s.ended_reason)
        if rule is None:
            return
        self.s.status = "cancelled"
        access = self._access_when_ended(rule, now, "effective")
        self._fact(
            "contract.cancelled",
            f"cancelled:{self.inp.contract_id}",
            now,
            {
                "reason": self.s.ended_reason,
                "effective_at": self.s.cancel_at,
                "paid_total": self.s.paid_total,
                "access": access,
            },
            event="contract.cancelled",
        )

    # -- refunds -----------------------------------------------------------------------------

    async def _refund_through_stripe(
        self, req: SupportAction, ref: str, plan: RefundPlan
    ) -> RefundResult:
        """The Stripe part of the plan, one refund per PaymentIntent, idempotent: the keys are
        derived from the contract, the action and the PaymentIntent. Stripe away through all
        of the activity's retries: asked again later with the same keys."""
        parts = [
            RefundPartInput(p.installment, p.amount, p.payment_intent)
            for p in plan.parts
            if p.payment_intent
        ]
        if not parts:
            return RefundResult()
        started = workflow.now()
        wait = REFUND_RETRY_FIRST
        total = sum(p.amount for p in parts)
        while True:
            try:
                result: RefundResult = await workflow.execute_activity(
                    "refund_payments",
                    RefundInput(self.inp.contract_id, ref, req.reason, self.inp.currency, parts),
                    result_type=RefundResult,
                    start_to_close_timeout=rp.CHARGE_START_TO_CLOSE,
                    schedule_to_close_timeout=rp.CHARGE_SCHEDULE_TO_CLOSE,
                    retry_policy=rp.CHARGE,
                    summary=f"refund {self._money(total)} through Stripe ({req.reason})",
                )
                return result
            except ActivityError as err:
                if workflow.now() - started >= REFUND_GIVE_UP:
                    why = str(err.cause or err)[:300]
                    return RefundResult(failed=[[p.payment_intent, why] for p in parts])
                await workflow.sleep(wait, summary="Stripe unreachable: refund again later")
                wait = min(wait * 2, REFUND_RETRY_MAX)

    def _record_cancel_refunds(
        self,
        req: SupportAction,
        ref: str,
        plan: RefundPlan,
        outcome: RefundResult,
        now: datetime,
    ) -> dict[str, Any]:
        """Record each refund Stripe gave (by its id: once, whether the activity or the
        `charge.refunded` webhook told first); what goes outside Stripe — payments received
        outside it, or a part Stripe refused — is recorded as `refund.required` for the
        seller to transfer."""
        by_seq = {i.seq: i for i in self.s.installments}
        stripe_parts = [p for p in plan.parts if p.payment_intent]
        failed = {f[0]: f[1] for f in outcome.failed if len(f) == 2}
        given: list[dict[str, Any]] = []
        done = iter(outcome.refunds)
        stripe_total = 0
        outside: list[tuple[int, int, str]] = [
            (p.installment, p.amount, "paid outside Stripe")
            for p in plan.parts
            if not p.payment_intent
        ]
        for part in stripe_parts:
            if part.payment_intent in failed:
                outside.append((part.installment, part.amount, failed[part.payment_intent]))
                continue
            info = next(done, None)
            if info is None:
                continue
            inst = by_seq.get(part.installment)
            if inst is not None:
                self._record_refund(inst, info, "mahnwerk", req.reason, ref, now)
            stripe_total += info.amount
            given.append(
                {
                    "id": info.id,
                    "installment": part.installment,
                    "amount": info.amount,
                    "payment_intent": part.payment_intent,
                    "status": info.status,
                }
            )
        for seq, amount, why in outside:
            self._fact(
                "refund.required",
                f"refund_required:{self.inp.contract_id}:{ref}:{seq}",
                now,
                {
                    "installment": seq,
                    "amount": amount,
                    "reason": req.reason,
                    "why": why,
                },
                event="refund.required",
                actor=req.actor,
            )
        return {
            "amount": plan.amount,
            "stripe": stripe_total,
            "outside_stripe": sum(a for _, a, _ in outside),
            "refunds": given,
        }

    def _record_refund(
        self,
        inst: InstallmentState,
        info: RefundInfo,
        source: str,
        reason: str,
        ref: str,
        now: datetime,
    ) -> bool:
        """One refund of `inst`, recorded once by its Stripe id (a refund Mahnwerk made and
        the `charge.refunded` webhook it causes are the same refund). A fully refunded
        installment is `refunded`. True when it was new."""
        if any(r.id == info.id for r in self.s.refunds):
            return False
        self.s.refunds.append(
            RefundRecord(
                id=info.id,
                installment=inst.seq,
                amount=info.amount,
                source=source,
                at=now,
                reason=reason,
                payment_intent=inst.payment_intent,
                ref=ref,
            )
        )
        inst.refunded += info.amount
        self._fact(
            "refund.created",
            f"refund:{self.inp.contract_id}:{info.id}",
            now,
            {
                "installment": inst.seq,
                "amount": info.amount,
                "refunded_total": inst.refunded,
                "refund": info.id,
                "status": info.status,
                "payment_intent": inst.payment_intent,
                "source": source,
                "reason": reason,
            },
            event="refund.created",
        )
        if inst.status == "paid" and inst.refunded >= inst.paid > 0:
            inst.status = "refunded"
            self._installment_ended(inst, "refunded", reason, now)
        return True

    def _refunded(self, inst: InstallmentState, pu: PaymentUpdate, now: datetime) -> None:
        """`charge.refunded`: since PATCH_ENDINGS each of the charge's refunds is recorded by
        its id (`_record_refund`: one Mahnwerk made is not counted again), the customer is told
        of a refund made at Stripe, and a one-off purchase refunded in full ends as before."""
        if not (self._endings and pu.refunds):
            super()._refunded(inst, pu, now)
            return
        for info in pu.refunds:
            if info.status not in REFUND_COUNTED or info.amount <= 0:
                continue
            source = "mahnwerk" if info.ref else "stripe"
            reason = info.reason or "refunded at Stripe"
            if not self._record_refund(inst, info, source, reason, info.ref, now):
                continue
            if source == "stripe":
                self.s.message_seq += 1
                self._ask_message(
                    "refund_confirmed",
                    f"refund_confirmed_{self.s.message_seq}",
                    installment=inst.seq,
                    amount=info.amount,
                    reason=reason,
                )
        if inst.status != "refunded" or self.inp.kind != "one_off":
            return
        if self.s.status in ("cancelled", "failed"):
            return
        cid = self.inp.contract_id
        self.s.status = "cancelled"
        self.s.ended_reason = self.s.ended_reason or "refunded"
        if self.s.access != "none":
            self.s.access = "none"
            self._fact(
                "access.revoked",
                f"revoked:{cid}:refund",
                now,
                {"reason": "purchase refunded in full"},
                event="access.locked",
            )
        self._fact(
            "contract.cancelled",
            f"cancelled:{cid}",
            now,
            {"reason": "refunded", "refunded_total": inst.refunded},
            event="contract.cancelled",
        )

    def _chargeback_watch_until(self) -> datetime | None:
        """A contract cancelled with money received keeps listening for chargebacks and
        refunds like a completed one (since PATCH_ENDINGS)."""
        watch = super()._chargeback_watch_until()
        if watch is not None or not self._endings or self.s.status != "cancelled":
            return watch
        paid = [i.paid_at for i in self.s.installments if i.paid_at is not None and i.paid > 0]
        if not paid or not self.s.ended_reason:
            return None
        return max(paid) + timedelta(days=self.inp.chargeback_watch_days)

    # -- customer messages (issue 12 item 4) -------------------------------------------------

    def _ask_message(self, kind: str, stage: str, **fields: Any) -> None:
        """Queue a message for the main loop (since PATCH_ENDINGS, if the policy sends it)."""
        if not self._endings or not self.policy.messages.enabled(kind):
            return
        if any(m.stage == stage for m in self.s.messages_pending):
            return
        self.s.messages_pending.append(MessageAsk(kind=kind, stage=stage, **fields))

    def _declined(
        self,
        inst: InstallmentState,
        res: ChargeResult,
        now: datetime,
        data: dict[str, Any],
        key: str,
        failed_at: datetime | None = None,
    ) -> None:
        """A hard decline the customer can fix (`fix_data`: expired card, wrong data) or that
        will never succeed with this method (`never`: lost card, closed account, revoked
        mandate): tell the customer at once, with the link to a new payment method — once per
        dunning case (a later failure in the same case is in the ladder's next notice)."""
        super()._declined(inst, res, now, data, key, failed_at)
        cls = inst.failure_class
        if not self._endings or cls not in (declines.FIX_DATA, declines.NEVER):
            return
        if self.s.status in TERMINAL or self.s.paused:
            return  # paused: no notices (SPEC.md §4); the ladder's own asks after the pause
        if self.s.told_case == self.s.case_no:
            return  # once per dunning case: the ladder's notices claim later failures too
        self.s.told_case = self.s.case_no
        self._ask_message(
            "payment_failed",
            f"payment_failed_{self.s.case_no}",
            installment=inst.seq,
            amount=int(data.get("amount") or inst.outstanding),
            code=res.code or "",
            failure_class=cls or "",
        )

    def _close_case(self, now: datetime, why: str) -> None:
        """A payment closed a dunning case the customer knew of (a notice of the ladder, or a
        payment-failed message): payment received; a locked access was unlocked: access
        restored. A case closed by a retry before the customer heard of it says nothing."""
        was_open = self._case_open()
        locked = self.s.access == "locked"
        case = self.s.case_no
        told = bool(self.s.stages_done) or self.s.told_case == case
        super()._close_case(now, why)
        if not was_open:
            return
        if why in ("paid", "principal paid") and told:
            # `reason`: what the thanks says — settled, or the rest claimed apart (a final
            # notice for what stayed open, Dunning._settle_case; decided when it is sent)
            self._ask_message(
                "payment_received", f"payment_received_{case}", case_no=case, reason=why
            )
        if locked and self.s.access == "granted":
            self._ask_message("access_restored", f"access_restored_{case}", case_no=case)

    def _check_completed(self, now: datetime) -> None:
        before = self.s.status
        super()._check_completed(now)
        if self.s.status == "completed" and before != "completed":
            if self.inp.kind == "installments":
                self._ask_message("plan_completed", "plan_completed")
        self._cancellation_effective(now)

    async def _send_messages(self) -> None:
        """Send the queued customer messages (the main loop, after its pass): without the
        lock, each exactly once (the notices row of its stage, activities/notices.py)."""
        while self.s.messages_pending:
            ask = self.s.messages_pending.pop(0)
            await self._send_message(ask.kind, ask.stage, self._message_info(ask))

    def _message_info(self, ask: MessageAsk) -> MessageInfo:
        nxt = sorted(
            (i for i in self.s.installments if i.status == "scheduled" and i.outstanding > 0),
            key=lambda i: i.due_at,
        )
        reason = ask.reason
        if ask.kind == "payment_received":
            # what stayed open (interest, fees) is claimed by a final notice of its own
            reason = "residual" if self.s.residual is not None else "paid"
        return MessageInfo(
            kind=ask.kind,
            at=workflow.now(),
            installment=ask.installment,
            amount=ask.amount,
            code=ask.code,
            failure_class=ask.failure_class,
            reason=reason,
            access=self.s.access,
            next_due=berlin_date(nxt[0].due_at) if nxt else "",
            next_amount=nxt[0].outstanding if nxt else 0,
            paid_total=self.s.paid_total,
        )

    async def _send_message(self, kind: str, stage: str, info: MessageInfo) -> None:
        now = workflow.now()
        try:
            await self._activity_outside(
                "send_notice",
                NoticeInput(
                    contract_id=self.inp.contract_id,
                    case_no=0,  # not part of a dunning case: the stage names it
                    stage=stage,
                    template=kind,
                    customer=self.inp.customer,
                    product=self.inp.product,
                    currency=self.inp.currency,
                    lines=[],
                    fees=0,
                    total=0,
                    deadline=now,
                    created_at=now,
                    interest_mode="none",
                    kind=self.inp.kind,
                    count=self.inp.count if self.inp.kind == "installments" else None,
                    message=info,
                ),
                result_type=NoticeResult,
                start_to_close_timeout=rp.NOTICE_START_TO_CLOSE,
                schedule_to_close_timeout=rp.NOTICE_SCHEDULE_TO_CLOSE,
                retry_policy=rp.NOTICE,
                summary=f"message {kind} to the customer",
            )
        except ActivityError as err:
            # Undeliverable (no address, SMTP down for a day): on the timeline, nothing stops.
            self._fact(
                "message.failed",
                f"message_failed:{self.inp.contract_id}:{stage}",
                workflow.now(),
                {"kind": kind, "stage": stage, "error": str(err.cause or err)[:500]},
                event="message.failed",
            )

    async def _confirm(
        self, req: SupportAction, refund: dict[str, Any], cancelled: list[int]
    ) -> None:
        """Confirm a withdrawal (with what is refunded) or a refund to the customer, from the
        update handler (not under the lock); a failure is flushed under it."""
        if req.reason == WITHDRAWAL:
            kind, stage = "withdrawal_confirmed", "withdrawal_confirmed"
        elif refund["amount"] > 0 and req.reason != FRAUD:
            self.s.message_seq += 1
            kind, stage = "refund_confirmed", f"refund_confirmed_{self.s.message_seq}"
        else:
            return
        if not self.policy.messages.enabled(kind):
            return
        info = MessageInfo(
            kind=kind,
            at=workflow.now(),
            amount=refund["amount"],
            reason=req.reason,
            refund=refund["stripe"],
            refund_outside=refund["outside_stripe"],
            cancelled=cancelled,
            access=self.s.access,
            paid_total=self.s.paid_total,
        )
        await self._send_message(kind, stage, info)
        if self._facts:
            await self._acquire(money=False)
            try:
                await self._flush()
            finally:
                self._lock.release()
