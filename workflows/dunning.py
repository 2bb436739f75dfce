"""Dunning: the ladder of notices, fees and locks, the hand-off and write-off — the
escalation part of the contract workflow (workflows/contract.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.claim import (
        RESIDUAL_WRITE_OFF,
        Claim,
        FeeFact,
        WaiverFact,
        residual_action,
    )
    from domain.collection import AWAIT_APPROVAL, COURT, WRITE_OFF, decide_handoff
    from domain.deadlines import Deadline, deadline_after, deadline_before
    from domain.policy import LadderStep
    from domain.schedule import berlin_date, due_instant
    from workflows import retry_policies as rp
    from workflows.base import (
        APPROVAL_REMINDER_EVERY,
        NOTICE_PERMANENT_ERRORS,
        NOTICE_RETRY_FIRST,
        NOTICE_RETRY_MAX,
        PATCH_DELIVERY_WAITS,
        PATCH_NOTICE_RETRY,
        TERMINAL,
        ContractBase,
        address_missing,
    )
    from workflows.types import (
        CaseFileInput,
        CaseFileResult,
        ClaimLine,
        NoticeAsked,
        NoticeInput,
        NoticeResult,
        NoticeRetry,
        ResidualState,
    )

# The period a final notice for what stayed open after the principal was paid gives
# (interest, fees, costs): two weeks, the customary "angemessene Frist" of a payment demand
# (the same the default ladder gives between its notices). Ladders counted in seconds (the
# demo) give their shortest step instead.
RESIDUAL_PERIOD_DAYS = 14
# A notice without a next step (the hand-off announcement) names a week to pay.
LAST_NOTICE_DAYS = 7


class Dunning(ContractBase):
    # -- dunning -----------------------------------------------------------------------------

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
        """The next rung and when it happens. Since PATCH_CLAIM (day-based ladders): after
        the last day to pay the previous notice printed has ended, moved by § 193 BGB, and
        within the send window (domain.deadlines)."""
        plan = self._next_ladder_plan()
        if plan is None or not self._exact:
            return plan
        step, planned = plan
        return step, self._step_time(planned)

    def _step_deadline(self, planned: datetime) -> Deadline:
        return deadline_before(planned, self.inp.seller_state, self.policy.day_based())

    def _step_time(self, planned: datetime) -> datetime:
        return self._send_time(self._step_deadline(planned).next_step_at)

    def _next_ladder_plan(self) -> tuple[LadderStep, datetime] | None:
        """The next rung and its planned time (the due date of the oldest unpaid amount
        plus the step's offset plus the time the case stood still)."""
        if not self._case_open() or self.s.status in TERMINAL:
            return None
        oldest = self._open()
        if not oldest:
            return None
        if self.s.awaiting_approval or self.s.needs_address:
            return None  # the hand-off waits for an admin (or an address), durably
        if self._ladder_held():
            return None  # a rung's notice is undelivered: no escalation past it
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
            template = await self._enter_stage(step, now)
            if not (self._exact and template):
                continue
            # Since PATCH_CLAIM the rung's one notice goes out here — unless the last day to
            # pay it would print has already passed: rungs due at the same moment (a § 193
            # shift, the send window or a pause moved one onto the next) are all entered,
            # and the next one's notice, asking for the whole claim, speaks for them.
            plan = self._next_ladder_plan()
            if plan is not None and self._step_deadline(plan[1]).last_day < berlin_date(now):
                continue
            await self._send_notice(step.stage, template, now)

    async def _enter_stage(self, step: LadderStep, now: datetime) -> str | None:
        """Enter the rung: stage, fee, lock, hand-off. Before PATCH_CLAIM it sends its
        notices itself; since, it returns the one notice of the step for `_walk_ladder`."""
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
            if self._exact:
                self.s.claim_fees.append(
                    FeeFact(
                        f"{case}:{step.stage}",
                        berlin_date(now),
                        step.fee,
                        stage=step.stage,
                        order=self._bump(),
                    )
                )
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
        if self._exact:
            # One notice per step: the step's own, or for a step that only locks the
            # access_locked notice (issue 11: never two contradicting mails at once).
            return step.notice or ("access_locked" if locks_now else None)
        if step.notice:
            await self._send_notice(step.stage, step.notice, now)
        if locks_now and self.s.access == "locked":
            # The customer learns at once why the course is closed and how to reopen it.
            # (Not if a payment unlocked it while the stage's notice was being sent.)
            await self._send_notice("access_locked", "access_locked", now)
        return None

    def _principal(self) -> int:
        if self._exact:
            return self._principal_overdue(self._claim())
        return sum(i.outstanding for i in self._open())

    def _reach_handoff(self, now: datetime) -> None:
        """The last rung: write off a small claim, wait for an admin where the policy or a
        contest requires it, else hand off on the policy's route."""
        if self._exact:
            self._reach_handoff_exact(now)
            return
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

    def _reach_handoff_exact(self, now: datetime) -> None:
        """domain.collection.decide_handoff decides (write-off, wait for an admin, or the
        route); a court route without the debtor's postal address waits for it."""
        coll = self.policy.collection
        principal = self._principal()
        decision = decide_handoff(
            principal, coll.write_off_below, coll.route, self.s.contested, coll.require_approval
        )
        if decision.action == WRITE_OFF:
            self._write_off(
                now, None, f"principal {self._money(principal)} below the write-off threshold"
            )
        elif decision.action == AWAIT_APPROVAL:
            self.s.awaiting_approval = True
            self.s.approval_requested_at = now
            self.s.approval_reminders = 0
            self._fact(
                "handoff.approval_required",
                f"approval:{self.inp.contract_id}:{self.s.case_no}",
                now,
                {
                    "case": self.s.case_no,
                    "reason": decision.reason,
                    "route_offered": decision.route,
                    "overdue_amount": self._overdue(),
                },
                event="handoff.approval_required",
            )
        else:
            self._hand_off_or_wait(now, decision.route, None)

    def _hand_off_or_wait(self, now: datetime, route: str, actor: str | None) -> bool:
        """Hand off on `route`; for the court, only with the debtor's postal address (§ 690
        (1) Nr. 1 ZPO): without it the contract waits in `needs_address` until support adds
        it (POST /v1/contracts/{id}/address). True when handed off."""
        missing = address_missing(self.inp.customer.address) if route == COURT else []
        if not missing:
            self._hand_off(now, route, actor)
            return True
        self.s.awaiting_approval = False
        self.s.needs_address = True
        self.s.route = route
        previous, self.s.stage = self.s.stage, "needs_address"
        cid, case = self.inp.contract_id, self.s.case_no
        self._fact(
            "dunning.stage_changed",
            f"stage:{cid}:{case}:needs_address",
            now,
            {"case": case, "stage": "needs_address", "from": previous},
            event="dunning.stage_changed",
        )
        self._fact(
            "handoff.address_required",
            f"address_required:{cid}:{case}",
            now,
            {
                "case": case,
                "route": route,
                "missing": missing,
                "overdue_amount": self._overdue(),
                "reason": "a court hand-off needs the debtor's postal address (§ 690 ZPO)",
            },
            event="handoff.address_required",
            actor=actor,
        )
        return False

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
        if self._after:
            self.s.needs_address = False
        if self.s.stage == "needs_address":
            self.s.stage = self.s.stages_done[-1] if self.s.stages_done else "none"
        after: dict[str, object] = {}
        if self._after:  # issue 12: which installments go, and what happens to the rest
            after = {
                "installments": [i.seq for i in self.s.installments if i.status == "open"],
                "on_default": self.policy.on_default,
            }
        self._fact(
            "contract.handed_off",
            f"handed_off:{self.inp.contract_id}:{self.s.case_no}",
            now,
            {
                "case": self.s.case_no,
                "overdue_amount": self._overdue(),
                "principal": self._principal(),
                "fees": self._claim(now).fees if self._exact else self._fees_open(),
                "route": route,
            }
            | (self._claim_parts(now) if self._exact else {})
            | after,
            event="contract.handed_off",
            actor=actor,
        )
        if self._after:
            self._open_partner_case(now, route)

    async def _deliver_case_file(self) -> None:
        """Build the collection case file (SPEC.md §6) and deliver it to the partner,
        retried until acknowledged (issue 3). Since PATCH_DELIVERY_WAITS a failure waits and
        is tried again instead of failing the workflow (workflows.collection)."""
        if self._patched(PATCH_DELIVERY_WAITS):
            await self._deliver_case_file_waiting()
            return
        route = self.s.route or "court"
        fees_open = self._fees_open()
        costs = min(self.s.return_debit_costs, fees_open)
        claim = self._dunning_view(self._claim()) if self._exact else None
        res: CaseFileResult = await workflow.execute_activity(
            "build_case_file",
            CaseFileInput(
                contract_id=self.inp.contract_id,
                case_no=self.s.case_no,
                route=route,
                as_of=workflow.now(),
                fees=claim.fees if claim is not None else fees_open - costs,
                costs=[("Rücklastschriftkosten", costs)] if costs and claim is None else [],
                interest_waived=self.s.interest_waived or self.policy.interest == "none",
                claim=claim,
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
        self.s.needs_address = False
        after: dict[str, object] = {}
        if self._after:  # issue 12: which installments are written off, and the rest
            after = {
                "installments": [
                    i.seq for i in self.s.installments if i.status == "open" and i.outstanding
                ],
                "on_default": self.policy.on_default,
            }
        self._fact(
            "contract.written_off",
            f"written_off:{self.inp.contract_id}"
            + (f":{self.s.case_no}" if self._after and self.s.case_no > 1 else ""),
            now,
            {
                "case": self.s.case_no,
                "amount": self._overdue(),
                "principal": self._principal(),
                "reason": reason,
            }
            | (self._claim_parts(now) if self._exact else {})
            | after,
            event="contract.written_off",
            actor=actor,
        )
        if self._after:
            self._written_off_after(now, reason)

    def _claim_parts(self, now: datetime) -> dict[str, object]:
        """The claim's parts for an event or timeline row (as of `now`'s Berlin day)."""
        claim = self._dunning_view(self._claim(now))
        return {
            "claim": {
                "as_of": claim.as_of,
                "principal": claim.principal,
                "interest": claim.interest,
                "fees": claim.fees,
                "costs": claim.costs,
                "lump_sums": claim.lump_sums,
                "total": claim.total,
            }
        }

    def _notice_deadline(self, now: datetime) -> Deadline:
        """The last day to pay a notice sent `now` prints: the last day before the next rung
        (domain.deadlines.deadline_before, § 193 BGB with the seller's Land), or a week from
        now (§§ 187, 188, 193 BGB) when no rung follows."""
        plan = self._next_ladder_plan()
        if plan is not None and plan[1] > now:
            return self._step_deadline(plan[1])
        return deadline_after(now, LAST_NOTICE_DAYS, self.inp.seller_state)

    # -- notices the mail server did not take (issue 13 item 4) --------------------------------

    def _ladder_held(self) -> bool:
        return any(
            r.held_since is not None and r.case_no == self.s.case_no for r in self.s.notice_retries
        )

    def _notice_failed(
        self, stage: str, template: str, err: ActivityError, started: datetime
    ) -> None:
        """The notice failed through every activity retry. Since PATCH_NOTICE_RETRY: an
        event to the platform (and the alert metric, activities.ledger) each time; a fault
        that waiting can cure (SMTP down) is re-sent later, and a rung's notice holds the
        ladder meanwhile. Before: on the timeline only, and the ladder went on."""
        now = workflow.now()
        cause = err.cause
        error = str(cause or err)[:500]
        cid, case = self.inp.contract_id, self.s.case_no
        if not self._patched(PATCH_NOTICE_RETRY):
            self._fact(
                "notice.failed",
                f"notice_failed:{cid}:{case}:{stage}",
                now,
                {"stage": stage, "error": error},
            )
            return
        permanent = isinstance(cause, ApplicationError) and cause.type in NOTICE_PERMANENT_ERRORS
        known = next((r for r in self.s.notice_retries if r.stage == stage), None)
        attempts = known.attempts + 1 if known is not None else 1
        rung = not permanent and stage in self.s.stages_done and self._case_open()
        if permanent:
            if known is not None:
                self.s.notice_retries.remove(known)
            retry_at = None
        else:
            retry_at = now + min(NOTICE_RETRY_FIRST * 2 ** (attempts - 1), NOTICE_RETRY_MAX)
            if known is None:
                self.s.notice_retries.append(
                    NoticeRetry(
                        stage=stage,
                        template=template,
                        case_no=case,
                        failed_at=now,
                        retry_at=retry_at,
                        held_since=started if rung else None,
                    )
                )
            else:
                known.attempts, known.retry_at, known.error = attempts, retry_at, error
        known = next((r for r in self.s.notice_retries if r.stage == stage), None)
        if known is not None:
            known.error = error
        self._fact(
            "notice.failed",
            f"notice_failed:{cid}:{case}:{stage}" + (f":{attempts}" if attempts > 1 else ""),
            now,
            {
                "stage": stage,
                "template": template,
                "error": error,
                "attempt": attempts,
                "permanent": permanent,
                "retry_at": retry_at,
                "ladder_held": rung,
            },
            event="notice.failed",
        )

    def _notice_moot(self, r: NoticeRetry) -> str | None:
        """Why a failed notice need not be sent any more, if so."""
        if self._terminal():
            return f"contract {self.s.status}"
        if r.template == "handoff" and self._after:  # issue 12: the workflow goes on
            return None if self._case_at_partner() is not None else "case no longer at partner"
        if r.held_since is not None and (r.case_no != self.s.case_no or not self._case_open()):
            return "dunning case closed"
        if r.template == "residual" and (
            self.s.residual is None or f"residual_{self.s.residual.case_no}" != r.stage
        ):
            return "nothing left to claim"
        if not self._open() and r.template != "residual":
            return "nothing open"
        return None

    def _bank_notice_holds(self, now: datetime, *, count: bool = True) -> None:
        """The ladder stood still from `held_since` until `now`: later rungs move by it
        (`count`), like a pause (a pause banks its own time: `count=False` at its end)."""
        for r in self.s.notice_retries:
            if r.held_since is None:
                continue
            if count and self._case_open() and r.case_no == self.s.case_no:
                self.s.ladder_delay_seconds += max(int((now - r.held_since).total_seconds()), 0)
            r.held_since = now

    def _notice_retry_wake(self) -> tuple[datetime, str] | None:
        due = [r for r in self.s.notice_retries if not (self.s.paused and r.held_since)]
        if not due:
            return None
        r = min(due, key=lambda r: r.retry_at)
        return max(r.retry_at, self._send_time(r.retry_at)), f"re-send the {r.template} notice"

    async def _retry_notices(self, now: datetime) -> None:
        """Send again what the mail server did not take (PATCH_NOTICE_RETRY), oldest first."""
        for r in sorted(self.s.notice_retries, key=lambda r: r.retry_at):
            if r not in self.s.notice_retries or r.retry_at > now:
                continue
            why = self._notice_moot(r)
            if why is not None:
                self.s.notice_retries.remove(r)
                self._fact(
                    "notice.abandoned",
                    f"notice_abandoned:{self.inp.contract_id}:{r.case_no}:{r.stage}",
                    now,
                    {"stage": r.stage, "attempts": r.attempts, "reason": why},
                )
                continue
            if (self.s.paused and r.held_since is not None) or not self._may_send(now):
                continue
            # The ladder stood still until now; the notice's last day to pay is counted
            # from now, and the next rung follows it by the ladder's own gap.
            self._bank_notice_holds(now)
            self.s.notice_retries.remove(r)
            if r.template == "residual" and self.s.residual is not None:
                self.s.residual.sent_at = None  # _residual_step sends it with a new deadline
                continue
            # r stays listed (`_notice_failed` counts on from it if this send fails too),
            # but does not hold the ladder while it is sent: its deadline is planned anew.
            self.s.notice_retries.append(r)
            held, r.held_since = r.held_since, None
            attempts = r.attempts
            await self._send_notice(r.stage, r.template, now, rerender=True)
            if r not in self.s.notice_retries:
                continue  # failed for good (`_notice_failed` announced it)
            if r.attempts > attempts:
                r.held_since = now if held is not None else None  # banked up to `now`
                continue
            self.s.notice_retries.remove(r)
            self._fact(
                "notice.delivered_late",
                f"notice_delivered_late:{self.inp.contract_id}:{r.case_no}:{r.stage}",
                workflow.now(),
                {"stage": r.stage, "failed_at": r.failed_at, "attempts": r.attempts},
                event="notice.delivered_late",
            )

    async def _send_notice(
        self,
        stage: str,
        template: str,
        now: datetime,
        until: Deadline | None = None,
        *,
        rerender: bool = False,
    ) -> None:
        if self._exact:
            await self._send_notice_exact(stage, template, now, until, rerender)
            return
        nxt = self._next_ladder_step()
        deadline = nxt[1] if nxt else now + timedelta(days=7)
        if deadline <= now:
            deadline = now + timedelta(days=7)
        lines = [
            ClaimLine(label=self._label(i), seq=i.seq, due_at=i.due_at, amount=i.outstanding)
            for i in self._open()
        ]
        try:
            await self._activity_outside(  # SMTP may be down for a day: never under the lock
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
                    rerender=rerender,
                ),
                result_type=NoticeResult,
                start_to_close_timeout=rp.NOTICE_START_TO_CLOSE,
                schedule_to_close_timeout=(
                    rp.NOTICE_RESEND_SCHEDULE_TO_CLOSE if rerender else rp.NOTICE_SCHEDULE_TO_CLOSE
                ),
                retry_policy=rp.NOTICE,
                summary=f"send {template} — claim {self._money(self._overdue())}",
            )
        except ActivityError as err:
            self._notice_failed(stage, template, err, now)

    async def _send_notice_exact(
        self,
        stage: str,
        template: str,
        now: datetime,
        deadline: Deadline | None,
        rerender: bool = False,
    ) -> None:
        """A notice whose every amount is the claim of this moment (domain.claim), with the
        last day to pay (domain.deadlines) as typed fields; remembered as what was asked."""
        deadline = deadline or self._notice_deadline(now)
        claim = self._dunning_view(self._claim(now))
        status = {i.seq: i for i in self.s.installments}
        lines = [
            ClaimLine("", item.installment, status[item.installment].due_at, item.principal)
            for item in claim.items
            if item.principal > 0 and item.installment in status
        ]
        try:
            await self._activity_outside(  # SMTP may be down for a day: never under the lock
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
                    fees=claim.fees,
                    total=claim.total,
                    deadline=due_instant(deadline.last_day),
                    created_at=now,
                    interest_mode=claim.interest_mode,
                    claim=claim,
                    deadline_day=deadline.last_day,
                    deadline_shift_reason=deadline.shift_reason,
                    kind=self.inp.kind,
                    count=self.inp.count if self.inp.kind == "installments" else None,
                    route=self.s.route if template == "handoff" else None,
                    rerender=rerender,
                ),
                result_type=NoticeResult,
                start_to_close_timeout=rp.NOTICE_START_TO_CLOSE,
                schedule_to_close_timeout=(
                    rp.NOTICE_RESEND_SCHEDULE_TO_CLOSE if rerender else rp.NOTICE_SCHEDULE_TO_CLOSE
                ),
                retry_policy=rp.NOTICE,
                summary=f"send {template} — claim {self._money(claim.total)}, "
                f"pay by {deadline.last_day}",
            )
        except ActivityError as err:
            self._notice_failed(stage, template, err, now)
            return
        if claim.total > 0:
            self.s.last_notice = NoticeAsked(stage, claim.as_of, claim.total, deadline.last_day)

    def _settle_case(self, now: datetime) -> None:
        """A payment that covers the claim ends the case and unlocks (SPEC.md §3).

        Since PATCH_CLAIM: once the principal in default is paid the case ends and access is
        unlocked (the seed's promise); what stays open (interest, fees, costs, lump sums) is
        written off by the policy's `residual.write_off_below` or claimed by a final notice
        (domain.claim.residual_action) — on the ledger and in an event either way."""
        if not self._case_open() or self.s.status in TERMINAL:
            return
        if not self._exact:
            if self._overdue() <= 0:
                self._close_case(now, "paid")
            return
        claim = self._dunning_view(self._claim(now))
        if claim.principal > 0:
            return
        rest = claim.total
        if rest <= 0:
            self._close_case(now, "paid")
            return
        case = self.s.case_no
        self._close_case(now, "principal paid")
        # The demanded claim has no principal left (what may still be open is being
        # collected), so residual_action judges exactly what stayed open.
        action = residual_action(claim, self.policy.residual.write_off_below)
        if action == RESIDUAL_WRITE_OFF:
            self._write_off_residual(now, claim, case, "below residual.write_off_below")
        else:
            self.s.residual = ResidualState(case_no=case, amount=rest)

    def _write_off_residual(self, now: datetime, claim: Claim, case: int, why: str) -> None:
        """Give up what stayed open once the principal was paid (a waiver fact: on the
        ledger, in the claim's `waived`, and in an event)."""
        self.s.claim_waivers.append(
            WaiverFact(
                f"residual:{case}",
                claim.as_of,
                fees=True,
                costs=True,
                lump_sums=True,
                interest=True,
                stop_interest=False,  # later installments may fall into default again
                order=self._bump(),
            )
        )
        self._fact(
            "claim.residual_written_off",
            f"residual_written_off:{self.inp.contract_id}:{case}",
            now,
            {
                "case": case,
                "amount": claim.total - claim.principal,
                "interest": claim.interest,
                "fees": claim.fees,
                "costs": claim.costs,
                "lump_sums": claim.lump_sums,
                "threshold": self.policy.residual.write_off_below,
                "reason": why,
            },
            event="claim.residual_written_off",
        )

    def _residual_period(self) -> timedelta:
        if self.policy.day_based():
            return timedelta(days=RESIDUAL_PERIOD_DAYS)
        offsets = sorted(step.offset() for step in self.policy.ladder)
        gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False) if b > a]
        return min(gaps, default=offsets[0] if offsets else timedelta(days=1))

    def _residual_wake(self) -> tuple[datetime, str] | None:
        r = self.s.residual
        if r is None or self.s.status in ("cancelled", "handed_off", "written_off", "failed"):
            return None
        if r.sent_at is None:
            return self._send_time(workflow.now()), "the send window (final notice)"
        if r.next_step_at is not None:
            return r.next_step_at, "the final notice's deadline"
        return None

    async def _residual_step(self, now: datetime) -> None:
        """The final notice for what stayed open once the principal was paid, then, after
        its deadline, the outcome: paid, or left open on the ledger with an event (never
        dropped silently; support may still waive or write it off)."""
        r = self.s.residual
        if r is None or self.s.status in ("cancelled", "handed_off", "written_off", "failed"):
            return
        if self._case_open():
            self.s.residual = None  # a new case's notices claim it with the rest
            return
        claim = self._dunning_view(self._claim(now))
        rest = claim.total - claim.principal
        if rest <= 0:
            self.s.residual = None  # paid (or waived) meanwhile
            self._check_completed(now)
            return
        if r.sent_at is None:
            if not self._may_send(now):
                return
            if self.policy.day_based():
                deadline = deadline_after(now, RESIDUAL_PERIOD_DAYS, self.inp.seller_state)
            else:
                at = now + self._residual_period()
                day = berlin_date(at)
                deadline = Deadline(last_day=day, next_step_at=at, unshifted=day)
            r.sent_at, r.deadline_day, r.next_step_at = (
                now,
                deadline.last_day,
                deadline.next_step_at,
            )
            r.amount = rest
            self._fact(
                "claim.residual_claimed",
                f"residual_claimed:{self.inp.contract_id}:{r.case_no}",
                now,
                {
                    "case": r.case_no,
                    "amount": rest,
                    "interest": claim.interest,
                    "fees": claim.fees,
                    "costs": claim.costs,
                    "lump_sums": claim.lump_sums,
                    "deadline": deadline.last_day,
                },
                event="claim.residual_claimed",
            )
            await self._flush()
            await self._send_notice(f"residual_{r.case_no}", "residual", now, deadline)
            return
        if r.next_step_at is not None and now >= r.next_step_at:
            self.s.residual = None
            self._fact(
                "claim.residual_unpaid",
                f"residual_unpaid:{self.inp.contract_id}:{r.case_no}",
                now,
                {"case": r.case_no, "amount": rest, "deadline": r.deadline_day},
                event="claim.residual_unpaid",
            )
            self._check_completed(now)

    def _check_completed(self, now: datetime) -> None:
        if self.s.status in TERMINAL:
            return
        if self._exact and self.s.residual is not None:
            return  # the final notice for what stayed open runs its course first
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
        done = ("paid", "waived", "refunded")
        if self.s.generated and all(i.status in done for i in self.s.installments):
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
        self.s.last_notice = None
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
