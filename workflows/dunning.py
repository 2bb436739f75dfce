"""Dunning: the ladder of notices, fees and locks, the hand-off and write-off — the
escalation part of the contract workflow (workflows/contract.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain.policy import LadderStep
    from workflows import retry_policies as rp
    from workflows.base import APPROVAL_REMINDER_EVERY, TERMINAL, ContractBase
    from workflows.types import (
        CaseFileInput,
        CaseFileResult,
        ClaimLine,
        NoticeInput,
        NoticeResult,
    )


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
        if locks_now and self.s.access == "locked":
            # The customer learns at once why the course is closed and how to reopen it.
            # (Not if a payment unlocked it while the stage's notice was being sent.)
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
