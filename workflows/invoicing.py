"""The contract's invoices (issue 15): the workflow's part is small — when an installment,
period or purchase falls due (or is paid, per ContractInput.invoice_timing) it asks the
activity `issue_invoice` for its invoice and remembers the number. The activity
(activities/invoices.py → core.invoicing) allocates the gapless number, stores the
immutable document and announces `invoice.issued`; asked again it returns the same
invoice, so a retry never takes a second number.

Pure workflow code (passed through the sandbox like the other parts).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from workflows import retry_policies as rp
    from workflows.base import PATCH_INVOICES, ContractBase
    from workflows.types import InvoiceRef, InvoiceRequest

TIMINGS = ("at_due", "at_payment")


class Invoicing(ContractBase):
    def _invoices_owed(self, now: datetime) -> list[int]:
        """The installments whose invoice is due now and not issued yet (by seq)."""
        timing = self.inp.invoice_timing
        if timing not in TIMINGS:
            return []
        done = {r.seq for r in self.s.invoices}
        owed = []
        for inst in sorted(self.s.installments, key=lambda i: i.seq):
            if inst.seq in done or inst.status == "cancelled":
                continue
            if timing == "at_due" and inst.due_at <= now:
                owed.append(inst.seq)
            elif timing == "at_payment" and inst.status in ("paid", "refunded"):
                owed.append(inst.seq)
        return owed

    async def _issue_invoices(self, now: datetime) -> None:
        """Issue what `_invoices_owed` names (PATCH_INVOICES): one activity per invoice, its
        number kept in the state; a refusal that waiting cannot fix is recorded once."""
        owed = self._invoices_owed(now)
        carried = {i.seq for i in self.s.installments}
        self.s.invoices = [r for r in self.s.invoices if r.seq in carried]
        if not owed or not self._patched(PATCH_INVOICES):
            return
        by_seq = {i.seq: i for i in self.s.installments}
        for seq in owed:
            inst = by_seq[seq]
            try:
                ref: InvoiceRef = await self._ledger_activity(
                    "issue_invoice",
                    InvoiceRequest(
                        contract_id=self.inp.contract_id,
                        seq=seq,
                        amount=inst.amount,
                        due_at=inst.due_at,
                        issued_at=workflow.now(),
                    ),
                    result_type=InvoiceRef,
                    retry_policy=rp.INVOICE,
                    summary=f"invoice {self._label(inst)} ({self._money(inst.amount)})",
                )
            except ActivityError as exc:
                cause = getattr(exc, "cause", None)
                self._fact(
                    "invoice.failed",
                    f"invoice_failed:{self.inp.contract_id}:{seq}",
                    workflow.now(),
                    {"installment": seq, "error": str(getattr(cause, "message", "") or exc)},
                )
                self.s.invoices.append(InvoiceRef(seq, ""))
                continue
            self.s.invoices.append(ref)
