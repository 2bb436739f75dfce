"""`/pay/{token}`: the customer's payment page (issue 16 item 1), linked from every notice.

Public (no API key): the signed, expiring token (core/paylink.py) is the credential. The page
is server-rendered (Jinja2, `templates/pages/pay.html`), German or English by the contract's
locale, and shows the seller, what is open (the claim broken down as of today, as the API's
`claim`), and how to pay by bank transfer (IBAN, reference, GiroCode). A tampered or unknown
link and an expired one get a page that says so (404 / 410), never a stack trace.

Read-only: it answers from the ledger like every read (no Temporal call).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
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
from core.models import Contract, Notice
from core.sellers import seller_settings
from core.settings import PROJECT_ROOT, Settings
from domain.schedule import berlin_date
from workflows.types import ClaimLine

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
    },
}


@dataclass
class Line:
    label: str
    amount: str


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
    return {
        "seller": seller_context(settings, locale),
        "product": product,
        "contract_id": contract.id,
        "lines": lines,
        "total": money(total) if total > 0 else None,
        "as_of": format_day(as_of, locale),
        "bank": bank,
        "qr": qr_svg,
    }


def _load(state: StateDep, link: paylink.PayLink) -> tuple[Contract | None, dict[str, Any]]:
    with state.sessions() as s:
        contract = s.get(Contract, link.contract_id)
        if contract is None:
            return None, {}
        locale = str((contract.customer or {}).get("locale") or "de")
        locale = locale if locale in TEXT else "de"
        return contract, _view(s, _seller_settings(state, contract), contract, locale)


def _seller_settings(state: StateDep, contract: Contract | None) -> Settings:
    """The contract's seller's name, details and bank account (issue 14); the default
    seller's when the contract is unknown."""
    profile = state.sellers().get(contract.seller_id) if contract is not None else None
    return seller_settings(state.settings, profile or state.sellers().default)


@router.get("/pay/{token}", include_in_schema=False, response_class=HTMLResponse)
async def pay_page(token: str, request: Request, state: StateDep) -> HTMLResponse:
    secret = state.settings.events_secret.get_secret_value()
    try:
        link = paylink.verify(secret, token)
    except paylink.ExpiredToken as exc:
        contract = await run_in_threadpool(_contract, state, exc.contract_id)
        locale = _locale(contract, request)
        seller_of = await run_in_threadpool(_seller_settings, state, contract)
        seller = seller_context(seller_of, locale)
        return _page(410, "pay_error.html", locale, kind="expired", seller=seller)
    except paylink.InvalidToken:
        locale = _locale(None, request)
        seller = seller_context(state.settings, locale)
        return _page(404, "pay_error.html", locale, kind="invalid", seller=seller)
    contract, view = await run_in_threadpool(_load, state, link)
    if contract is None:  # a genuine link to a contract this database does not hold
        locale = _locale(None, request)
        seller = seller_context(state.settings, locale)
        return _page(404, "pay_error.html", locale, kind="invalid", seller=seller)
    return _page(200, "pay.html", _locale(contract, request), **view)


def _contract(state: StateDep, contract_id: str) -> Contract | None:
    with state.sessions() as s:
        return s.get(Contract, contract_id)
