"""After the hand-off (issue 12 parts 1 and 2): the part of the contract workflow that keeps
a contract alive once its claim went to the collection partner or was written off.

- Every installment ends with its reason: in default at the hand-off → `handed_off`, at a
  write-off → `written_off` (its principal waived), the rest by the policy's `on_default`:
  `keep_schedule` (debited on; each later default joins the case in a follow-up case file),
  `call_in` (§ 498 BGB for consumers, domain.call_in: a two-week notice, then the rest falls
  due and joins the case; business customers at once), `stop` (cancelled).
- Payments after the hand-off (the seller's settlement, the customer's Stripe payment, the
  partner's report) are facts of the claim like any other (§ 367 BGB); the partner hears of
  the ones it did not report itself (`case.payment`), access unlocks per `collection.unlock`,
  a claim paid in full closes the case.
- Admins recall a case or record what the partner or the court reports (objection,
  enforcement order, title, uncollectible).
- Case files and messages for the partner are delivered by the main loop; a failure waits,
  visibly (`collection.delivery_failed`, a metric), and is tried again with backoff (1 h
  doubling up to a day) until it succeeds — never failing the contract (issue 13 item 4).

Pure workflow code, passed through the sandbox like the other parts (workflows/contract.py).
All of it runs only under PATCH_AFTER_HANDOFF (`self._after`), but `_deliver_case_file_waiting`
(PATCH_DELIVERY_WAITS), which contracts started before it use at their hand-off.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain.call_in import NOTICE_PERIOD_DAYS, Arrears, check_call_in
    from domain.claim import WaiverFact
    from domain.collection import UNCOLLECTIBLE
    from domain.deadlines import deadline_after
    from domain.policy import (
        CALL_IN,
        STOP,
        UNLOCK_CLAIM_PAID,
        UNLOCK_PRINCIPAL_PAID,
    )
    from domain.schedule import berlin_date, due_instant
    from workflows import retry_policies as rp
    from workflows.base import (
        DELIVERY_WAIT_FIRST,
        DELIVERY_WAIT_MAX,
        ContractBase,
        never_defaulted,
    )
    from workflows.types import (
        CallInNotice,
        CallInState,
        CaseFileInput,
        CaseFileRef,
        CaseFileResult,
        CaseState,
        ClaimLine,
        CollectionMessageInput,
        InstallmentState,
        NoticeInput,
        NoticeResult,
        PartnerDelivery,
    )

# A § 498 notice that could not be sent is tried again this much later.
CALL_IN_NOTICE_RETRY = timedelta(days=1)


class Collection(ContractBase):
    # -- how installments end ----------------------------------------------------------------

    def _end(self, inst: InstallmentState, how: str, reason: str, now: datetime) -> None:
        """`inst` ends `how` (handed_off | written_off | cancelled): status, reason, and an
        `installment.ended` fact with its event — never silently."""
        inst.status = how
        inst.next_retry_at = None
        self._installment_ended(inst, how, reason, now)

    def _future(self) -> list[InstallmentState]:
        """The installments not yet due (not in flight): the rest of the plan."""
        return sorted(
            (i for i in self.s.installments if i.status == "scheduled"), key=lambda i: i.seq
        )

    def _apply_on_default(self, now: datetime, why: str) -> None:
        """The rest of the plan at a hand-off or write-off, by the policy's `on_default`."""
        future = self._future()
        mode = self.policy.on_default
        if not future:
            return
        seqs = [i.seq for i in future]
        if mode == STOP:
            reason = f"policy on_default: stop — the plan ends with the {why}"
            for inst in future:
                self._end(inst, "cancelled", reason, now)
            if self.inp.kind == "subscription":
                self.s.cancel_at = now  # no renewal after it
            return
        if mode == CALL_IN and why == "hand-off" and self.inp.kind == "installments":
            self._consider_call_in(now)
            if self.s.call_in is not None and self.s.call_in.status == "called_in":
                return
            reason = "policy on_default: call_in — kept until § 498 BGB allows calling it in"
        elif mode == CALL_IN:
            reason = f"policy on_default: call_in — not after a {why}: the schedule is kept"
        else:
            reason = "policy on_default: keep_schedule — debited as agreed"
        self._fact(
            "schedule.kept",
            f"schedule_kept:{self.inp.contract_id}:{self.s.case_no}:{why}",
            now,
            {"installments": seqs, "reason": reason, "after": why, "case": self.s.case_no},
        )

    # -- hand-off and write-off (called by workflows.dunning) --------------------------------

    def _open_partner_case(self, now: datetime, route: str) -> None:
        """The claim goes to the partner: the installments in default are handed off, the
        rest of the plan follows `on_default`; the announcement and file 0 follow in the
        loop (`_collection_step`)."""
        handed = [i for i in sorted(self.s.installments, key=lambda i: i.seq) if i.status == "open"]
        case_no = self.s.case_no
        self.s.case = CaseState(case_no=case_no, route=route, handed_off_at=now)
        self.s.call_in = None
        reason = f"handed off to the {route} partner (case {case_no})"
        for inst in handed:
            self._end(inst, "handed_off", reason, now)
        seqs = [i.seq for i in handed]
        self.s.case.installments = list(seqs)
        self.s.case.files = [CaseFileRef(0, list(seqs))]
        self._apply_on_default(now, "hand-off")

    def _written_off_after(self, now: datetime, reason: str) -> None:
        """A write-off (the collection rung below the threshold, an admin, or the partner's
        `uncollectible`): what is in default is written off — its principal and what is open
        besides (fees, costs, lump sums, interest) waived as of today —, the dunning stage
        ends, and the rest of the plan follows `on_default`. Access is left as it is."""
        targets = [
            i
            for i in sorted(self.s.installments, key=lambda i: i.seq)
            if i.status in ("open", "handed_off") and i.outstanding > 0
        ]
        for inst in targets:
            self._end(inst, "written_off", reason, now)
        self.s.claim_waivers.append(
            WaiverFact(
                f"write_off:{self.s.case_no}:{len(self.s.claim_waivers)}",
                berlin_date(now),
                fees=True,
                costs=True,
                lump_sums=True,
                interest=True,
                stop_interest=False,  # later installments may fall into default again
                order=self._bump(),
                principal=[i.seq for i in targets],
            )
        )
        self._close_stage(now, "written off")
        self._apply_on_default(now, "write-off")

    def _close_stage(self, now: datetime, why: str) -> None:
        """The dunning stage ends without changing the status or the access (a write-off,
        or the case at the partner closing)."""
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
        self.s.needs_address = False

    # -- the loop's step ---------------------------------------------------------------------

    def _case_at_partner(self) -> CaseState | None:
        case = self.s.case
        if case is None or case.closed or self.s.status != "handed_off":
            return None
        return case

    async def _collection_step(self, now: datetime) -> None:
        """What the loop does for a contract after its hand-off: announce it, let later
        defaults join the case, run the § 498 call-in, and close the case once its claim is
        paid. (What waits for the partner is delivered after each pass: `_deliver_due`.)"""
        case = self._case_at_partner()
        if case is not None and not case.notice_sent and self._may_send(now):
            await self._flush()
            # Announce the hand-off to the customer, then give the case to the partner.
            await self._send_notice("handoff", "handoff", now)
            case.notice_sent = True
            self._enqueue(PartnerDelivery(self._file_key(case, 0), "case_file", file_no=0))
        if case is not None:
            self._join_defaults(workflow.now())
        await self._call_in_step(workflow.now())
        self._settle_handed_off(workflow.now())

    def _file_key(self, case: CaseState, file_no: int) -> str:
        return f"case_file:{case.case_no}:{file_no}"

    def _enqueue(self, delivery: PartnerDelivery) -> None:
        if all(d.key != delivery.key for d in self.s.deliveries):
            self.s.deliveries.append(delivery)

    def _join_defaults(self, now: datetime) -> None:
        """keep_schedule: an installment that fell into default after the hand-off (its
        debit failed and no retry is left) joins the case at the partner: a follow-up file."""
        case = self._case_at_partner()
        if case is None or self.s.paused:
            return
        joined = [
            i
            for i in sorted(self.s.installments, key=lambda i: i.seq)
            if i.status == "open" and i.next_retry_at is None and i.outstanding > 0
        ]
        if not joined:
            return
        self._add_to_case(case, joined, now, "fell into default after the hand-off")
        self._consider_call_in(now)

    def _add_to_case(
        self, case: CaseState, insts: list[InstallmentState], now: datetime, why: str
    ) -> None:
        """`insts` join `case`: with the hand-off's own file while it has not gone out, else
        in a follow-up file."""
        seqs = [i.seq for i in insts]
        first = case.files[0] if case.files else None
        if first is not None and len(case.files) == 1 and not case.notice_sent:
            first.installments += seqs  # file 0 is built after the announcement
            file_no = 0
        else:
            file_no = len(case.files)
            case.files.append(CaseFileRef(file_no, list(seqs)))
            if case.notice_sent:
                self._enqueue(PartnerDelivery(self._file_key(case, file_no), "case_file", file_no))
        case.installments += seqs
        reason = f"{why}: joins case {case.case_no} (case file {file_no})"
        for inst in insts:
            self._end(inst, "handed_off", reason, now)
        self._fact(
            "collection.installments_joined",
            f"joined:{self.inp.contract_id}:{case.case_no}:{file_no}:{','.join(map(str, seqs))}",
            now,
            {
                "case": case.case_no,
                "file_no": file_no,
                "installments": seqs,
                "principal": sum(i.outstanding for i in insts),
                "reason": why,
            },
        )

    # -- § 498 BGB: calling the rest in ------------------------------------------------------

    def _consider_call_in(self, now: datetime) -> None:
        """Policy `on_default: call_in`: may the rest of the plan be called in now
        (domain.call_in)? Business customers: at once. Consumers: when § 498 (1) Nr. 1
        allows it, the two-week notice goes out (`_call_in_step`); when not, the reasons are
        on the ledger and the schedule is kept — checked again at the next default."""
        if self.policy.on_default != CALL_IN or self.inp.kind != "installments":
            return
        case = self._case_at_partner()
        current = self.s.call_in
        if case is None or (current is not None and current.status != "not_allowed"):
            return
        if not self._future():
            return
        plan = [
            Arrears(
                i.seq,
                i.claim_due or berlin_date(i.due_at),
                i.amount,
                max(i.outstanding, 0)
                if i.status in ("open", "handed_off") and not never_defaulted(i)
                else 0,
            )
            for i in sorted(self.s.installments, key=lambda i: i.seq)
            if i.status != "cancelled"
        ]
        check = check_call_in(self.inp.customer.type, plan)
        if check.allowed and self.inp.customer.type == "business":
            self.s.call_in = CallInState(case.case_no, "business", checked=check.installments)
            self._call_in(now, check.basis)
            return
        if not check.allowed:
            if current is not None and current.checked == check.installments:
                return  # nothing new in default: the same answer is on the ledger
            self.s.call_in = CallInState(
                case.case_no, "not_allowed", reasons=check.reasons, checked=check.installments
            )
            self._fact(
                "call_in.not_allowed",
                f"call_in_not_allowed:{self.inp.contract_id}:{case.case_no}:"
                f"{','.join(map(str, check.installments))}",
                now,
                {
                    "case": case.case_no,
                    "reasons": check.reasons,
                    "basis": check.basis,
                    "consecutive": check.consecutive,
                    "arrears": check.arrears,
                    "threshold": check.threshold,
                    "nominal": check.nominal,
                    "installments": check.installments,
                    "kept": [i.seq for i in self._future()],
                },
            )
            return
        self.s.call_in = CallInState(
            case.case_no,
            "notice_due",
            checked=check.installments,
            arrears=check.arrears,
            arrears_installments=check.installments,
        )

    async def _call_in_step(self, now: datetime) -> None:
        ci = self.s.call_in
        if ci is None or self._case_at_partner() is None:
            return
        if ci.status == "notice_due" and ci.next_step_at is not None and ci.next_step_at > now:
            return  # the notice failed: tried again then
        if ci.status == "notice_due" and self._may_send(now):
            await self._send_call_in_notice(ci, now)
            return
        if ci.status != "noticed" or ci.next_step_at is None or now < ci.next_step_at:
            return
        paid = all(
            i.outstanding <= 0 or i.status == "paid"
            for i in self.s.installments
            if i.seq in ci.arrears_installments
        )
        if paid or not self._future():
            ci.status = "lapsed"
            why = "the arrears were paid in time" if paid else "nothing was left to call in"
            self._fact(
                "call_in.lapsed",
                f"call_in_lapsed:{self.inp.contract_id}:{ci.case_no}",
                now,
                {"case": ci.case_no, "reason": why, "deadline": ci.deadline_day},
            )
            return
        self._call_in(now, f"§ 498 Abs. 1 BGB: the deadline of {ci.deadline_day} passed unpaid")

    async def _send_call_in_notice(self, ci: CallInState, now: datetime) -> None:
        """The two-week deadline of § 498 (1) Nr. 2 BGB with the statement that the whole
        remainder falls due if the arrears are not paid (template `call_in`)."""
        deadline = deadline_after(now, NOTICE_PERIOD_DAYS, self.inp.seller_state)
        claim = self._dunning_view(self._claim(now))
        future = self._future()
        rest = sum(i.outstanding for i in future)
        status = {i.seq: i for i in self.s.installments}
        lines = [
            ClaimLine("", item.installment, status[item.installment].due_at, item.principal)
            for item in claim.items
            if item.principal > 0 and item.installment in status
        ]
        stage = f"call_in_{ci.case_no}"
        try:
            await self._activity_outside(
                "send_notice",
                NoticeInput(
                    contract_id=self.inp.contract_id,
                    case_no=self.s.case_no,
                    stage=stage,
                    template="call_in",
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
                    count=self.inp.count,
                    call_in=CallInNotice(
                        arrears=claim.total,
                        future=rest,
                        installments=len(future),
                        remainder=claim.total + rest,
                    ),
                ),
                result_type=NoticeResult,
                start_to_close_timeout=rp.NOTICE_START_TO_CLOSE,
                schedule_to_close_timeout=rp.NOTICE_SCHEDULE_TO_CLOSE,
                retry_policy=rp.NOTICE,
                summary=f"send the § 498 BGB notice — arrears {self._money(claim.total)}, "
                f"remainder {self._money(claim.total + rest)}, pay by {deadline.last_day}",
            )
        except ActivityError as err:
            # Without the notice there is no call-in (§ 498 (1) Nr. 2 BGB): try again.
            ci.notice_failures += 1
            ci.next_step_at = workflow.now() + CALL_IN_NOTICE_RETRY
            self._fact(
                "notice.failed",
                f"notice_failed:{self.inp.contract_id}:{self.s.case_no}:{stage}:"
                f"{ci.notice_failures}",
                workflow.now(),
                {"stage": stage, "error": str(err.cause or err), "retry_at": ci.next_step_at},
            )
            return
        ci.status = "noticed"
        ci.noticed_at = now
        ci.deadline_day = deadline.last_day
        ci.next_step_at = deadline.next_step_at
        ci.remainder = claim.total + rest
        self._fact(
            "call_in.noticed",
            f"call_in_noticed:{self.inp.contract_id}:{ci.case_no}",
            now,
            {
                "case": ci.case_no,
                "arrears": claim.total,
                "arrears_installments": ci.arrears_installments,
                "remainder": ci.remainder,
                "installments": [i.seq for i in future],
                "deadline": deadline.last_day,
                "basis": "§ 498 Abs. 1 Satz 1 Nr. 2 BGB",
            },
            event="call_in.noticed",
        )

    def _call_in(self, now: datetime, basis: str) -> None:
        """The rest of the plan falls due today and joins the case at the partner."""
        case = self._case_at_partner()
        ci = self.s.call_in
        future = self._future()
        if case is None or ci is None or not future:
            return
        day = berlin_date(now)
        for inst in future:
            inst.claim_due = day  # due today: in the claim from now on, interest from tomorrow
        self._bump()
        ci.status = "called_in"
        ci.called_in_at = now
        ci.installments = [i.seq for i in future]
        principal = sum(i.outstanding for i in future)
        self._add_to_case(case, future, now, f"called in ({basis})")
        self._fact(
            "contract.called_in",
            f"called_in:{self.inp.contract_id}:{case.case_no}",
            now,
            {
                "case": case.case_no,
                "installments": ci.installments,
                "principal": principal,
                "basis": basis,
                "deadline": ci.deadline_day or None,
            },
            event="contract.called_in",
        )

    # -- payments after the hand-off ---------------------------------------------------------

    def _after_payment(
        self, now: datetime, key: str, amount: int, source: str, data: dict[str, object]
    ) -> None:
        """A payment was recorded (seller, customer or partner): tell the partner about the
        ones it did not report itself (`case.payment`, once per payment), then close the
        case or unlock the access if the claim says so."""
        case = self._case_at_partner()
        if case is not None and source != "partner":
            claim = self._dunning_view(self._claim(now))
            first = case.files[0].case_id if case.files else None
            self._enqueue(
                PartnerDelivery(
                    f"payment:{key}",
                    "message",
                    message="case.payment",
                    data={
                        "case_no": case.case_no,
                        "case_id": first,
                        "payment": {"id": key, "amount": amount, "source": source} | data,
                        "claim_after": {
                            "as_of": claim.as_of,
                            "principal": claim.principal,
                            "interest": claim.interest,
                            "fees": claim.fees,
                            "costs": claim.costs,
                            "lump_sums": claim.lump_sums,
                            "total": claim.total,
                        },
                    },
                )
            )
            case.payments_told += 1
        self._settle_handed_off(now)

    def _settle_handed_off(self, now: datetime) -> None:
        """Access back per `collection.unlock`; a claim paid in full closes the case: the
        contract is `completed` if nothing else is left of the plan, else active again."""
        case = self._case_at_partner()
        if case is None:
            return
        claim = self._dunning_view(self._claim(now))
        mode = self.policy.collection.unlock
        paid = claim.total <= 0 and all(
            i.status == "paid" for i in self.s.installments if i.seq in case.installments
        )
        if self.s.access == "locked" and (
            (mode == UNLOCK_CLAIM_PAID and paid)
            or (mode == UNLOCK_PRINCIPAL_PAID and claim.principal <= 0)
        ):
            self.s.access = "granted"
            self._fact(
                "access.unlocked",
                f"unlock:{self.inp.contract_id}:{case.case_no}",
                now,
                {
                    "case": case.case_no,
                    "reason": f"paid after the hand-off (collection.unlock: {mode})",
                },
                event="access.unlocked",
            )
            # the customer messages of issue 12 item 4 (workflows/endings.py; policy switch)
            self._ask_message(
                "access_restored", f"access_restored_{case.case_no}", case_no=case.case_no
            )
        if not paid:
            return
        self._ask_message(
            "payment_received",
            f"payment_received_{case.case_no}",
            case_no=case.case_no,
            reason="paid",
        )
        case.closed = "paid"
        case.closed_at = now
        self._fact(
            "collection.case_closed",
            f"case_closed:{self.inp.contract_id}:{case.case_no}",
            now,
            {"case": case.case_no, "reason": "paid", "route": case.route},
            event="case.closed",
        )
        if self.s.call_in is not None and self.s.call_in.status in ("notice_due", "noticed"):
            self.s.call_in.status = "lapsed"
        self._close_stage(now, "paid after the hand-off")
        self.s.status = "active"
        if any(i.status == "open" for i in self.s.installments):
            self._open_case(now)
        self._check_completed(now)
        left = ("scheduled", "processing", "open", "stalled")
        if self.s.status == "active" and not any(i.status in left for i in self.s.installments):
            # the rest of the plan was stopped (on_default: stop): nothing is left to collect
            self.s.status = "completed"
            self._fact(
                "contract.completed",
                f"completed:{self.inp.contract_id}",
                now,
                {"paid_total": self.s.paid_total, "reason": "the claim handed off was paid"},
                event="contract.completed",
            )

    # -- admin actions -----------------------------------------------------------------------

    def _recall(self, now: datetime, actor: str, reason: str) -> str:
        """The case comes back from the partner: its installments still unpaid are open
        again (the contract `in_dunning`, the ladder done: support settles, defers or writes
        off), and the partner is told (`case.recall`)."""
        case = self._case_at_partner()
        if case is None:  # the validator refused it
            return "no case at the partner"
        case.closed = "recalled"
        case.closed_at = now
        back = []
        for inst in self.s.installments:
            if inst.status == "handed_off" and inst.outstanding > 0:
                inst.status = "open"
                inst.ended = None
                inst.next_retry_at = None
                back.append(inst.seq)
        if self.s.call_in is not None and self.s.call_in.status in ("notice_due", "noticed"):
            self.s.call_in.status = "lapsed"
        self.s.status = "in_dunning"
        undelivered = [
            d.key for d in self.s.deliveries if d.kind == "case_file"
        ]  # a recalled case's files are not sent any more
        self.s.deliveries = [d for d in self.s.deliveries if d.kind != "case_file"]
        first = case.files[0].case_id if case.files else None
        self._enqueue(
            PartnerDelivery(
                f"recall:{case.case_no}",
                "message",
                message="case.recall",
                data={"case_no": case.case_no, "case_id": first, "reason": reason},
            )
        )
        self._fact(
            "collection.recalled",
            f"recalled:{self.inp.contract_id}:{case.case_no}",
            now,
            {
                "case": case.case_no,
                "route": case.route,
                "installments": back,
                "reason": reason,
                "files_not_sent": undelivered,
                "overdue_amount": self._overdue(),
            },
            event="case.recalled",
            actor=actor,
        )
        return f"case {case.case_no} recalled from the {case.route} partner"

    def _uncollectible(self, now: datetime, on: str, actor: str) -> None:
        """The partner reports the claim uncollectible: it is written off."""
        case = self._case_at_partner()
        if case is None:
            return
        reason = f"the {case.route} partner reported the claim uncollectible on {on}"
        amount, principal = self._overdue(), self._principal_overdue(self._claim(now))
        case.closed = UNCOLLECTIBLE
        case.closed_at = now
        self.s.status = "written_off"
        self._fact(
            "contract.written_off",
            f"written_off:{self.inp.contract_id}:{case.case_no}:uncollectible",
            now,
            {
                "case": case.case_no,
                "amount": amount,
                "principal": principal,
                "reason": reason,
                "installments": [i.seq for i in self.s.installments if i.status == "handed_off"],
            },
            event="contract.written_off",
            actor=actor,
        )
        self._written_off_after(now, reason)

    # -- delivering to the partner -----------------------------------------------------------

    def _next_delivery(self) -> tuple[datetime, str] | None:
        waiting = [(d.next_try_at, d) for d in self.s.deliveries if d.next_try_at is not None]
        if not waiting:
            return None
        at, d = min(waiting, key=lambda w: w[0])
        return at, f"deliver {self._what(d)} to the partner again (round {d.tries + 1})"

    def _what(self, d: PartnerDelivery) -> str:
        return f"case file {d.file_no}" if d.kind == "case_file" else d.message

    async def _deliver_due(self, now: datetime) -> None:
        """Deliver what is due for the partner; a failure waits (1 h doubling up to a day)
        and is on the ledger (`collection.delivery_failed`) — the contract never fails."""
        for d in list(self.s.deliveries):
            if d.next_try_at is not None and d.next_try_at > now:
                continue
            error = await self._deliver_one(d)
            at = workflow.now()
            if error is None:
                self.s.deliveries = [x for x in self.s.deliveries if x.key != d.key]
                continue
            d.tries += 1
            d.last_error = error[:500]
            d.next_try_at = at + min(DELIVERY_WAIT_FIRST * (2 ** (d.tries - 1)), DELIVERY_WAIT_MAX)
            workflow.logger.warning(
                "%s of %s not delivered to the collection partner (round %s): retry at %s",
                self._what(d),
                self.inp.contract_id,
                d.tries,
                d.next_try_at,
            )
            self._fact(
                "collection.delivery_failed",
                f"delivery_failed:{self.inp.contract_id}:{d.key}:{d.tries}",
                at,
                {
                    "what": self._what(d),
                    "key": d.key,
                    "round": d.tries,
                    "error": d.last_error,
                    "retry_at": d.next_try_at,
                },
                event="collection.delivery_failed",
            )

    async def _deliver_one(self, d: PartnerDelivery) -> str | None:
        """One round: None when done (acknowledged, or no partner URL), else the error."""
        if d.kind != "case_file":
            try:
                delivered = await self._outside(
                    workflow.execute_activity(
                        "deliver_collection_message",
                        CollectionMessageInput(
                            self.inp.contract_id, d.key, d.message, d.data, workflow.now()
                        ),
                        result_type=bool,
                        start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
                        schedule_to_close_timeout=rp.DELIVERY_ROUND,
                        retry_policy=rp.DELIVERY,
                        summary=f"tell the partner: {d.message}",
                    )
                )
            except ActivityError as err:
                return str(err.cause or err)
            if delivered:
                self._fact(
                    "collection.message_delivered",
                    f"message_delivered:{self.inp.contract_id}:{d.key}",
                    workflow.now(),
                    {"type": d.message, "key": d.key, "rounds_failed": d.tries},
                )
            return None
        case = self.s.case
        if case is None or d.file_no >= len(case.files):
            return None  # nothing to deliver any more (a recall removed it)
        return await self._deliver_file(case, case.files[d.file_no], d.tries)

    def _case_file_input(self, case: CaseState, ref: CaseFileRef) -> CaseFileInput:
        interest_waived = self.s.interest_waived or self.policy.interest == "none"
        if not self._exact:  # a contract started before the claim model (PATCH_CLAIM)
            fees_open = self._fees_open()
            costs = min(self.s.return_debit_costs, fees_open)
            return CaseFileInput(
                contract_id=self.inp.contract_id,
                case_no=case.case_no,
                route=case.route,
                as_of=workflow.now(),
                fees=fees_open - costs,
                costs=[("Rücklastschriftkosten", costs)] if costs else [],
                interest_waived=interest_waived,
            )
        return CaseFileInput(
            contract_id=self.inp.contract_id,
            case_no=case.case_no,
            route=case.route,
            as_of=workflow.now(),
            fees=self._dunning_view(self._claim()).fees,
            interest_waived=interest_waived,
            claim=self._dunning_view(self._claim()),
            file_no=ref.file_no,
            joined=list(ref.installments) if ref.file_no else [],
        )

    async def _deliver_file(self, case: CaseState, ref: CaseFileRef, failed: int) -> str | None:
        if ref.case_id is None:
            try:
                res: CaseFileResult = await self._outside(
                    workflow.execute_activity(
                        "build_case_file",
                        self._case_file_input(case, ref),
                        result_type=CaseFileResult,
                        start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
                        schedule_to_close_timeout=rp.DELIVERY_ROUND,
                        retry_policy=rp.CASE_FILE,
                        summary=f"build the {case.route} case file {ref.file_no} — claim "
                        f"{self._money(self._overdue())}",
                    )
                )
            except ActivityError as err:
                return str(err.cause or err)
            ref.case_id = res.case_id
            if ref.file_no == 0:
                self.s.case_file_id = res.case_id
            self._case_file_built(case.case_no, ref.file_no, res)
            await self._flush()
        try:
            delivered: bool = await self._outside(
                workflow.execute_activity(
                    "deliver_case_file",
                    ref.case_id,
                    result_type=bool,
                    start_to_close_timeout=rp.LEDGER_START_TO_CLOSE,
                    schedule_to_close_timeout=rp.DELIVERY_ROUND,
                    retry_policy=rp.DELIVERY,
                    summary=f"deliver case file {ref.file_no} to the {case.route} partner",
                )
            )
        except ActivityError as err:
            return str(err.cause or err)
        if delivered:
            ref.delivered_at = workflow.now()
            self._fact(
                "collection.case_file_delivered",
                self._delivered_key(case.case_no, ref.file_no),
                workflow.now(),
                {
                    "case_id": ref.case_id,
                    "route": case.route,
                    "file_no": ref.file_no,
                    "rounds_failed": failed,
                },
            )
        return None

    def _delivered_key(self, case_no: int, file_no: int) -> str:
        key = f"case_file_delivered:{self.inp.contract_id}:{case_no}"
        return key if file_no == 0 else f"{key}:{file_no}"

    def _case_file_built(self, case_no: int, file_no: int, res: CaseFileResult) -> None:
        key = f"case_file:{self.inp.contract_id}:{case_no}"
        self._fact(
            "collection.case_file_built",
            key if file_no == 0 else f"{key}:{file_no}",
            workflow.now(),
            {
                "case_id": res.case_id,
                "route": res.route,
                "file_no": file_no,
                "principal": res.principal,
                "interest": res.interest,
                "fees": res.fees,
                "costs": res.costs,
                "total": res.total,
                "missing_base_rate": res.missing_base_rate,
            },
        )

    async def _deliver_case_file_waiting(self) -> None:
        """PATCH_DELIVERY_WAITS, for contracts started before PATCH_AFTER_HANDOFF, after their
        hand-off: the case file is built and delivered like the loop does it since, each
        failure waiting and tried again until it succeeds (never failing the workflow)."""
        route = self.s.route or "court"
        seqs = [i.seq for i in self.s.installments if i.status == "open"]
        case = CaseState(self.s.case_no, route, workflow.now(), installments=seqs)
        case.files = [CaseFileRef(0, list(seqs))]
        case.notice_sent = True
        self.s.case = case
        self.s.deliveries = [PartnerDelivery(self._file_key(case, 0), "case_file")]
        while self.s.deliveries:
            await self._deliver_due(workflow.now())
            await self._flush()
            nxt = self._next_delivery()
            if nxt is not None and nxt[0] > workflow.now():
                self._waiting_for = nxt[1]
                await workflow.sleep(nxt[0] - workflow.now(), summary=nxt[1])
