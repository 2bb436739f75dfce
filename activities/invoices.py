"""Activities that issue invoices and credit notes (issue 15; core/invoicing.py does the
work). Both are idempotent: asked again for the same contract and installment (or the same
credit-note reference) they answer with the document already issued."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.invoicing import InvoiceError, issue_credit_note, issue_invoice
from core.settings import Settings
from domain.vat import VatRateMissing
from workflows.types import CreditNoteRequest, InvoiceRef, InvoiceRequest


def _refused(exc: Exception) -> ApplicationError:
    """What waiting cannot fix (a rate missing from the table, an unknown seller, a credit
    beyond the invoice): the workflow records it instead of retrying."""
    return ApplicationError(str(exc), type="InvoiceRefused", non_retryable=True)


class InvoiceActivities:
    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        on_events: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = session_factory
        self.on_events = on_events  # wakes the event dispatcher after an invoice.issued

    @activity.defn(name="issue_invoice")
    def issue_invoice(self, req: InvoiceRequest) -> InvoiceRef:
        try:
            issued = issue_invoice(
                self.sessions,
                contract_id=req.contract_id,
                seq=req.seq,
                amount=req.amount,
                due_at=req.due_at,
                issued_at=req.issued_at,
                settings=self.settings,
            )
        except (InvoiceError, VatRateMissing, LookupError) as exc:
            raise _refused(exc) from exc
        if issued.created and self.on_events is not None:
            self.on_events()
        return InvoiceRef(issued.seq, issued.number, issued.issue_date)

    @activity.defn(name="issue_credit_note")
    def issue_credit_note(self, req: CreditNoteRequest) -> InvoiceRef:
        """A credit note against installment `req.seq`'s invoice (for the refund,
        withdrawal and write-down code of the contract's endings, issue 12)."""
        try:
            issued = issue_credit_note(
                self.sessions,
                contract_id=req.contract_id,
                seq=req.seq,
                amount=req.amount,
                reason=req.reason,
                ref=req.ref,
                issued_at=req.issued_at,
                settings=self.settings,
            )
        except (InvoiceError, LookupError) as exc:
            raise _refused(exc) from exc
        if issued.created and self.on_events is not None:
            self.on_events()
        return InvoiceRef(issued.seq, issued.number, issued.issue_date)
