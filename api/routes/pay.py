"""`/pay/{token}`: the customer's payment page (issue 16 item 1), linked from every notice.

Public (no API key): the signed, expiring token (core/paylink.py) is the credential. The page
is server-rendered (Jinja2, `templates/pages/pay.html`), German or English by the contract's
locale, and shows the seller, what is open (the claim broken down as of today, as the API's
`claim`), how to pay by bank transfer (IBAN, reference, GiroCode), and the contract's
invoices and credit notes (issue 15 item 4), each a PDF at
`/pay/{token}/invoices/{number}.pdf` with the same token. A tampered or unknown link and an
expired one get a page that says so (404 / 410), never a stack trace.

Read-only: it answers from the ledger like every read (no Temporal call).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import jinja2
import stripe
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.notice_render import (
    bank_context,
    epc_qr,
    format_day,
    format_money,
    line_label,
    seller_context,
)
from api.claims import claim_as_of
from api.deps import StateDep
from core import paylink
from core.invoice_documents import default_pdf
from core.invoicing import invoices_of, verified
from core.models import Contract, Invoice, Notice
from core.sellers import SellerConfigError, seller_settings
from core.settings import PROJECT_ROOT, Settings
from domain.invoice import INVOICE
from domain.schedule import berlin_date
from workflows.base import TERMINAL
from workflows.types import ClaimLine

log = logging.getLogger(__name__)
router = APIRouter(tags=["pay"])

PAGES = PROJECT_ROOT / "templates" / "pages"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(PAGES)),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# The page's words, by locale (the notices' templates are per locale; a page has few words).
TEXT: dict[str, dict[str, str]] = {
    "de": {
        "title": "Zahlung",
        "open_title": "Offener Betrag",
        "paid_title": "Bezahlt",
        "paid_text": "Für diesen Vertrag ist nichts mehr offen: alles bezahlt. Vielen Dank!",
        "principal": "Hauptforderung",
        "interest": "Verzugszinsen",
        "fees": "Mahngebühren",
        "costs": "Kosten",
        "lump_sums": "Verzugspauschale",
        "total": "Gesamt",
        "as_of": "Stand",
        "transfer_title": "Per Überweisung bezahlen",
        "holder": "Empfänger",
        "iban": "IBAN",
        "bic": "BIC",
        "amount": "Betrag",
        "reference": "Verwendungszweck",
        "girocode": "GiroCode: mit der Banking-App scannen",
        "no_iban": "Bitte wenden Sie sich für die Zahlung an uns.",
        "product": "Produkt",
        "contract": "Vertrag",
        "contact": "Fragen? Schreiben Sie uns",
        "invalid_title": "Dieser Link ist ungültig",
        "invalid_text": "Bitte öffnen Sie den Link aus Ihrer letzten E-Mail von uns "
        "unverändert. / This link is not valid: please open the link from our latest "
        "e-mail as it is.",
        "expired_title": "Dieser Link ist abgelaufen",
        "expired_text": "Bitte nutzen Sie den Link aus unserer neuesten E-Mail, oder "
        "schreiben Sie uns.",
        "online_title": "Online bezahlen",
        "pay_now": "Jetzt mit Karte oder SEPA-Lastschrift bezahlen",
        "online_text": "Die Zahlungsmethode wird für künftige Raten gespeichert.",
        "setup_title": "Zahlungsmethode ändern",
        "setup_text": "Nur die Zahlungsmethode ersetzen; offene Beträge werden damit eingezogen.",
        "setup_button": "Neue Zahlungsmethode hinterlegen",
        "pending_title": "Zahlung in Bearbeitung",
        "pending_text": "Vielen Dank! Ihre Zahlung wird verarbeitet; diese Seite "
        "aktualisiert sich.",
        "saved_text": "Ihre neue Zahlungsmethode ist gespeichert.",
        "stripe_down": "Die Online-Zahlung ist gerade nicht erreichbar. Bitte versuchen Sie "
        "es gleich noch einmal oder zahlen Sie per Überweisung.",
        "invoices_title": "Ihre Rechnungen",
        "invoice": "Rechnung",
        "credit_note": "Rechnungskorrektur",
        "invoice_number": "Nummer",
        "invoice_date": "Datum",
        "invoice_gross": "Betrag (brutto)",
        "download": "PDF herunterladen",
    },
    "en": {
        "title": "Payment",
        "open_title": "Amount due",
        "paid_title": "Paid",
        "paid_text": "Nothing is open for this contract any more: paid in full. Thank you!",
        "principal": "Principal",
        "interest": "Default interest",
        "fees": "Dunning fees",
        "costs": "Costs",
        "lump_sums": "Late-payment lump sum",
        "total": "Total",
        "as_of": "As of",
        "transfer_title": "Pay by bank transfer",
        "holder": "Beneficiary",
        "iban": "IBAN",
        "bic": "BIC",
        "amount": "Amount",
        "reference": "Reference",
        "girocode": "GiroCode: scan it with your banking app",
        "no_iban": "Please contact us to pay.",
        "product": "Product",
        "contract": "Contract",
        "contact": "Questions? Write to us",
        "invalid_title": "This link is not valid",
        "invalid_text": "Please open the link from our latest e-mail as it is. / Bitte "
        "öffnen Sie den Link aus Ihrer letzten E-Mail von uns unverändert.",
        "expired_title": "This link has expired",
        "expired_text": "Please use the link in our latest e-mail, or write to us.",
        "online_title": "Pay online",
        "pay_now": "Pay now by card or SEPA Direct Debit",
        "online_text": "The payment method is saved for future installments.",
        "setup_title": "Change the payment method",
        "setup_text": "Only replace the payment method; open amounts are collected with it.",
        "setup_button": "Add a new payment method",
        "pending_title": "Payment processing",
        "pending_text": "Thank you! Your payment is being processed; this page refreshes.",
        "saved_text": "Your new payment method has been saved.",
        "stripe_down": "Online payment is not available right now. Please try again in a "
        "moment or pay by bank transfer.",
        "invoices_title": "Your invoices",
        "invoice": "Invoice",
        "credit_note": "Credit note",
        "invoice_number": "Number",
        "invoice_date": "Date",
        "invoice_gross": "Amount (gross)",
        "download": "Download PDF",
    },
}


@dataclass
class Line:
    label: str
    amount: str


@dataclass
class InvoiceLine:
    """One of the contract's invoices or credit notes as the page lists it."""

    number: str
    kind: str  # the word: Rechnung / Rechnungskorrektur
    date: str
    gross: str


def _locale(contract: Contract | None, request: Request) -> str:
    if contract is not None:
        locale = str((contract.customer or {}).get("locale") or "de")
        return locale if locale in TEXT else "de"
    accept = request.headers.get("accept-language", "")
    return "en" if accept.lower().startswith("en") else "de"


def _page(status: int, template: str, locale: str, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(locale=locale, t=TEXT[locale], **context)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            # A page with personal data behind a secret link: never cached, never referred.
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex",
        },
    )


def _reference(s: Session, contract: Contract) -> str:
    """The bank transfer's reference: the newest notice's number (what the customer's
    letters show and support matches payments by), else the contract id."""
    number = s.scalar(
        select(Notice.notice_number)
        .where(Notice.contract_id == contract.id)
        .order_by(Notice.created_at.desc(), Notice.id.desc())
        .limit(1)
    )
    return number or contract.id


def _view(s: Session, settings: Settings, contract: Contract, locale: str) -> dict[str, Any]:
    currency = contract.currency
    money = lambda minor: format_money(minor, currency, locale)  # noqa: E731
    product = (contract.product or {}).get("name") or contract.product_id
    lines: list[Line] = []
    if contract.claim_facts:
        claim = claim_as_of(contract.claim_facts, written=contract.claim)
        for item in claim.items:
            if item.principal > 0:
                line = ClaimLine("", item.installment, datetime.now(UTC), item.principal)
                label = line_label(line, product, locale, kind=contract.kind)
                lines.append(Line(f"{TEXT[locale]['principal']} — {label}", money(item.principal)))
        for part in ("interest", "fees", "costs", "lump_sums"):
            amount = getattr(claim, part)
            if amount > 0:
                lines.append(Line(TEXT[locale][part], money(amount)))
        total, as_of = claim.total, claim.as_of
    else:  # a contract from before the claim model: its last overdue amount
        total, as_of = contract.overdue_amount, berlin_date(datetime.now(UTC))
        if total > 0:
            lines.append(Line(TEXT[locale]["principal"], money(total)))
    if contract.status in ("cancelled", "written_off", "failed"):
        total = 0  # nothing to pay through this page
    bank = None
    qr_svg = None
    if total > 0:
        bank = bank_context(settings, _reference(s, contract), currency, total, locale)
        if bank is not None and bank.get("qr"):
            qr_svg = epc_qr(bank["qr"]["payload"]).svg_data_uri(scale=4, border=4)
    online = contract.status not in TERMINAL and bool(_stripe_customer(contract))
    invoices = [
        InvoiceLine(
            row.number,
            TEXT[locale]["invoice" if row.kind == INVOICE else "credit_note"],
            format_day(row.issue_date, locale, numeric=True),
            format_money(row.gross, row.currency, locale),
        )
        for row in invoices_of(s, contract.id)
    ]
    return {
        "seller": seller_context(settings, locale),
        "product": product,
        "contract_id": contract.id,
        "lines": lines,
        "total": money(total) if total > 0 else None,
        "as_of": format_day(as_of, locale),
        "bank": bank,
        "qr": qr_svg,
        "can_pay": online and total > 0,
        "can_setup": online,
        "invoices": invoices,
        # for the Checkout Session (not shown)
        "total_minor": total,
        "as_of_day": str(as_of),
        "currency": currency,
    }


def _stripe_customer(contract: Contract) -> str | None:
    customer = (contract.payment or {}).get("stripe_customer")
    return customer if isinstance(customer, str) and customer.startswith("cus_") else None


def _load(
    state: StateDep, link: paylink.PayLink, token: str
) -> tuple[Contract | None, dict[str, Any]]:
    with state.sessions() as s:
        contract = s.get(Contract, link.contract_id)
        if contract is None:
            return None, {}
        locale = str((contract.customer or {}).get("locale") or "de")
        locale = locale if locale in TEXT else "de"
        view = _view(s, _seller_settings(state, contract), contract, locale)
        view["contract_token_action"] = f"{token}/checkout"  # relative to /pay/
        view["invoice_base"] = f"{token}/invoices/"  # relative to /pay/
        return contract, view


def _seller_settings(state: StateDep, contract: Contract | None) -> Settings:
    """The contract's seller's name, details and bank account (issue 14); the default
    seller's when the contract is unknown."""
    profile = state.sellers().get(contract.seller_id) if contract is not None else None
    return seller_settings(state.settings, profile or state.sellers().default)


async def _verified(
    token: str, request: Request, state: StateDep
) -> tuple[paylink.PayLink | None, HTMLResponse | None]:
    """The link, or the page that says why it is not one (expired / invalid)."""
    secret = state.settings.events_secret.get_secret_value()
    try:
        return paylink.verify(secret, token), None
    except paylink.ExpiredToken as exc:
        contract = await run_in_threadpool(_contract, state, exc.contract_id)
        locale = _locale(contract, request)
        seller_of = await run_in_threadpool(_seller_settings, state, contract)
        seller = seller_context(seller_of, locale)
        return None, _page(410, "pay_error.html", locale, kind="expired", seller=seller)
    except paylink.InvalidToken:
        return None, _invalid(state, request)


def _invalid(state: StateDep, request: Request) -> HTMLResponse:
    locale = _locale(None, request)
    seller = seller_context(state.settings, locale)
    return _page(404, "pay_error.html", locale, kind="invalid", seller=seller)


@router.get("/pay/{token}", include_in_schema=False, response_class=HTMLResponse)
async def pay_page(
    token: str, request: Request, state: StateDep, checkout: str | None = None
) -> HTMLResponse:
    """`checkout`: the Checkout Session the customer comes back from (its `success_url`);
    the page then says the payment is processing until the ledger has it (or that the new
    method is saved)."""
    link, refused = await _verified(token, request, state)
    if link is None:
        assert refused is not None
        return refused
    contract, view = await run_in_threadpool(_load, state, link, token)
    if contract is None:  # a genuine link to a contract this database does not hold
        return _invalid(state, request)
    view["returned"], view["error"] = None, None
    if checkout and _SESSION_ID.fullmatch(checkout):
        session = await run_in_threadpool(_session, state, contract, checkout)
        if session is not None and session.get("status") == "complete":
            view["returned"] = "saved" if session.get("mode") == "setup" else "pending"
    return _page(200, "pay.html", _locale(contract, request), **view)


@router.post("/pay/{token}/checkout", include_in_schema=False, response_class=HTMLResponse)
async def start_checkout(token: str, request: Request, state: StateDep) -> Response:
    """The page's buttons: a Stripe Checkout Session for the claim as of today (mode
    `payment`, the method saved for later debits) or for a new method only (mode `setup`),
    then off to Stripe's page (303). A double click gets the same session: the
    Idempotency-Key is the contract, the mode and the claim as of today."""
    link, refused = await _verified(token, request, state)
    if link is None:
        assert refused is not None
        return refused
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    mode = (form.get("mode") or [""])[0]
    contract, view = await run_in_threadpool(_load, state, link, token)
    if contract is None:
        return _invalid(state, request)
    locale = _locale(contract, request)
    if mode not in ("payment", "setup"):
        return _page(422, "pay.html", locale, **view, returned=None, error="mode")
    allowed = view["can_pay"] if mode == "payment" else view["can_setup"]
    page_url = str(request.url_for("pay_page", token=token))
    if not allowed:  # paid meanwhile, or no longer running: the page says how things are
        return RedirectResponse(page_url, status_code=303)
    try:
        url = await run_in_threadpool(
            create_checkout_session, state, contract, view, mode, page_url, locale
        )
    except (stripe.StripeError, SellerConfigError) as exc:
        log.warning("checkout session for %s failed: %s", contract.id, exc)
        return _page(503, "pay.html", locale, **view, returned=None, error="stripe_down")
    return RedirectResponse(url, status_code=303)


_NUMBER = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _invoice_pdf(state: StateDep, contract_id: str, number: str) -> tuple[str, bytes] | None:
    """The PDF of invoice or credit note `number` if it is `contract_id`'s (None if not:
    another customer's invoice is as unknown as a made-up number), checked against the hash
    it was issued with and rendered as `GET /v1/invoices/{number}` renders it."""
    with state.sessions() as s:
        row = s.scalar(
            select(Invoice)
            .where(Invoice.contract_id == contract_id, Invoice.number == number)
            .limit(1)
        )
        if row is None:
            return None
        return row.number, default_pdf(verified(row), None)


@router.get(
    "/pay/{token}/invoices/{number}.pdf",
    include_in_schema=False,
    response_class=Response,
    name="pay_invoice_pdf",
)
async def invoice_pdf(token: str, number: str, request: Request, state: StateDep) -> Response:
    """One of the contract's invoices or credit notes as PDF (issue 15 item 4), for the
    customer: the page's token is the credential; an invoice of another contract, or none,
    is 404 (the invalid-link page), an expired link 410 as on the page."""
    link, refused = await _verified(token, request, state)
    if link is None:
        assert refused is not None
        return refused
    if not _NUMBER.fullmatch(number):
        return _invalid(state, request)
    found = await run_in_threadpool(_invoice_pdf, state, link.contract_id, number)
    if found is None:
        return _invalid(state, request)
    filename, data = found
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}.pdf"',
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex",
        },
    )


_SESSION_ID = re.compile(r"cs_(test|live)_[A-Za-z0-9]{1,200}")


def _client(state: StateDep, contract: Contract) -> stripe.StripeClient:
    """The contract's seller's Stripe account (issue 14): Connect, own key, or the
    platform's."""
    route = state.sellers().route(contract.seller_id)
    return state.stripe(api_key=route.api_key, account=route.account)


def create_checkout_session(
    state: StateDep,
    contract: Contract,
    view: dict[str, Any],
    mode: str,
    page_url: str,
    locale: str,
) -> str:
    """The Checkout Session's `url`. Metadata names the contract (`contract_id`) and marks
    the session and its PaymentIntent as the payment page's (`mahnwerk_checkout`): the
    webhook records such a payment as a settlement, never as one of the contract's debits."""
    marker = {"contract_id": contract.id, "mahnwerk_checkout": mode}
    params: dict[str, Any] = {
        "mode": mode,
        "customer": _stripe_customer(contract),
        "client_reference_id": contract.id,
        "allowed_payment_method_types": ["card", "sepa_debit"],
        "locale": locale,
        "metadata": marker,
        "success_url": page_url + "?checkout={CHECKOUT_SESSION_ID}",
        "cancel_url": page_url,
    }
    if mode == "payment":
        total = int(view["total_minor"])
        params["line_items"] = [
            {
                "quantity": 1,
                "price_data": {
                    "currency": view["currency"],
                    "unit_amount": total,
                    "product_data": {"name": f"{view['product']} ({contract.id})"},
                },
            }
        ]
        params["payment_intent_data"] = {
            # saved for the installments still to come (debited off session)
            "setup_future_usage": "off_session",
            "metadata": marker,
            "description": f"{contract.id}: {view['product']}",
        }
        key = f"mahnwerk-checkout:{contract.id}:payment:{view['as_of_day']}:{total}"
    else:
        params["currency"] = view["currency"]
        key = f"mahnwerk-checkout:{contract.id}:setup:{view['as_of_day']}"
    session = _client(state, contract).v1.checkout.sessions.create(
        params=params,  # type: ignore[arg-type]
        options={"idempotency_key": key},
    )
    return str(session.url)


def _session(state: StateDep, contract: Contract, session_id: str) -> dict[str, Any] | None:
    """The session the customer returns from, if it is this contract's."""
    try:
        session = _client(state, contract).v1.checkout.sessions.retrieve(session_id).to_dict()
    except (stripe.StripeError, SellerConfigError):
        return None
    if (session.get("metadata") or {}).get("contract_id") != contract.id:
        return None
    return session


def _contract(state: StateDep, contract_id: str) -> Contract | None:
    with state.sessions() as s:
        return s.get(Contract, contract_id)
