"""Render a dunning notice (subject, plain text, HTML) from Jinja2 templates (SPEC.md §6).

Templates live per locale and notice: ``{locale}/{name}.subject.txt``, ``.txt`` and
``.html`` (``name`` is the policy step's ``notice``, e.g. ``reminder``, ``mahnung_1``).
They are searched first in ``settings.template_dir`` (``MAHNWERK_TEMPLATE_DIR``) and then in
the shipped ``templates/`` directory, so a seller can override a single file — even just a
partial such as ``de/_claim.txt`` — without copying the rest.

An unsupported locale falls back to ``de`` (the seller's legal language: a German notice is
always valid evidence); a notice name that exists in neither raises
:class:`NoticeTemplateError`, because sending *some other* letter instead would be worse
than sending none.

Rendering is pure apart from reading templates: the same input gives the same bytes. That
matters because the rendered notice is stored as evidence before it is sent, and a retried
send must deliver exactly what was stored (DESIGN.md decision 4).

Template context (also the contract for overriding templates):

``locale``, ``stage``, ``template``, ``contract_id``, ``case_no``, ``notice_number``,
``notice_date``; ``seller`` {name, legal_name, address, email, legal_lines}; ``customer``
{id, name, email, type, address, address_lines}; ``product`` {id, name}; ``lines``
[{label, seq, due_date, amount, amount_minor}]; ``principal``, ``fees``, ``costs``,
``interest``, ``interest_paid``, ``subtotal`` (principal + fees + costs, without
interest) and ``total`` (``subtotal`` + ``interest``) — formatted, each also as
``*_minor`` int; ``deadline``; ``payment_link``; ``invoices_link`` (the payment page's list
of the contract's invoices, ``payment_link#invoices``, when the contract has invoices and the
link is Mahnwerk's own page; else None); ``route`` (``court`` | ``inkasso`` |
None); ``debit`` (SEPA pre-notification only, else
None: {seq, attempt, amount, amount_minor, date, mandate_reference, creditor_id,
iban_last4, short_notice, represented}); ``call_in`` (the § 498 BGB notice only, else None:
{arrears, future, installments, remainder} formatted, the amounts also as ``*_minor``); and
the helpers ``money(minor)``, ``date(value)``
(running text, "5. Dezember 2026") and ``numeric_date(value)`` (tables, "05.12.2026").
Presentation (docs/notices.md): ``salutation``; ``seller`` also has ``legal_name`` and
``legal_lines`` (the business-letter footer); ``bank`` (None without
``MAHNWERK_SELLER_IBAN``: {iban, iban_display, bic, account_holder, reference, amount,
amount_minor, qr: {payload, cid, size} | None}); ``amount_due`` (+ ``_minor``), what the
notice demands; ``free_of_charge`` (no fees, costs or lump sums).
Customer messages beyond dunning (issue 12, docs/endings.md): ``message`` (None for every
other notice; else {kind, at, installment, label, amount, code, failure_class,
decline_text, reason, reason_text, refund, refund_outside, cancelled, access, next_due,
next_amount, paid_total}, amounts formatted, each also as ``*_minor``).

Statutory default interest (§ 288 BGB, SPEC.md §2) is computed here, per open claim line,
with ``domain.interest.claim_interest``: on the line's outstanding ``amount`` from the day
after its due date (Europe/Berlin) up to and including the notice date (``created_at`` in
Berlin), at base rate + 5 pp (consumer) or + 9 pp (business), the base-rate table extended
by ``MAHNWERK_BASE_RATES``. Interest already received (``interest_paid`` on the input, if
the workflow passes it) is deducted. The context carries:

``interest_mode`` (``statutory`` | ``none`` | ``waived``, from the input);
``interest_status``: ``computed`` | ``unavailable`` (a § 247 base rate the table lacks: no
amount, never a guessed rate; the templates then say the interest is calculated separately)
| ``none`` | ``waived``; ``interest_lines`` [{label, seq, principal, principal_minor,
due_date, from, to, days, amount, amount_minor, rate (text when one rate applied throughout,
else None), periods [{from, to, days, rate, rate_pct, base_rate}]}] — only lines already in
default; ``interest_basis`` (``§ 288 Abs. 1 BGB``), ``interest_margin`` (``5 Prozentpunkte
über dem Basiszinssatz``); and for simple overrides ``interest_rate`` (when one rate applied
to everything), ``interest_from`` and ``interest_to`` (or None).

Whether a notice *shows* interest is the template's decision, not the code's: ``show_interest``
is false in the context and the stage templates that claim interest set it
(``{% set show_interest = true %}``: ``mahnung_1``, ``mahnung_2``, ``handoff``; the friendly
``reminder`` does not). The partials then show the interest block and ``total``, otherwise
``subtotal``. The text template's top-level ``show_interest`` is recorded with the notice.
"""

from __future__ import annotations

import functools
import io
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import babel.dates
import babel.numbers
import jinja2
import segno

from core import paylink
from core.seller import account_holder, format_iban, legal_footer, legal_name
from core.settings import PROJECT_ROOT, Settings
from domain.claim import Claim
from domain.interest import (
    BASE_RATES_LAST_CHECKED,
    CONSUMER,
    InterestResult,
    MissingBaseRate,
    check_customer_type,
    claim_interest,
    format_rate,
    margin_bp,
    rate_text,
    with_rates,
)
from domain.money import currency_exponent
from domain.schedule import BERLIN, berlin_date, due_instant
from workflows.types import ClaimLine, NoticeInput

log = logging.getLogger(__name__)

SHIPPED_TEMPLATES = PROJECT_ROOT / "templates"
SUPPORTED_LOCALES = ("de", "en")
FALLBACK_LOCALE = "de"
PARTS = ("subject.txt", "txt", "html")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


# NoticeInput.interest_mode: statutory (§ 288 BGB), none (the policy charges none), waived
# (support waived it for this contract).
INTEREST_MODES: Final = ("statutory", "none", "waived")


class NoticeTemplateError(LookupError):
    """A notice template that exists neither for the locale nor for the fallback ``de``."""


class NoticeInputError(ValueError):
    """The notice input itself is unusable (unknown interest mode or customer type)."""


@dataclass(frozen=True)
class InlineImage:
    """An image the HTML part shows by ``cid:`` (RFC 2392), sent in multipart/related."""

    cid: str  # without angle brackets
    content_type: str  # e.g. image/png
    data: bytes


@dataclass(frozen=True)
class RenderedNotice:
    subject: str
    text: str
    html: str
    locale: str = FALLBACK_LOCALE  # the locale actually rendered (after fallback)
    # The claim as rendered (JSON-safe): stored with the notice as evidence.
    data: dict[str, Any] = field(default_factory=dict)
    # Images the HTML references (the GiroCode); rebuilt from `data` for a stored notice.
    images: tuple[InlineImage, ...] = ()


# -- environment ---------------------------------------------------------------------------


def _search_path(template_dir: Path | None) -> list[str]:
    paths = [str(template_dir)] if template_dir is not None else []
    paths.append(str(SHIPPED_TEMPLATES))
    return paths


@functools.lru_cache(maxsize=8)
def _environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    """One Environment per search path: Jinja caches compiled templates inside it."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(search_path), encoding="utf-8"),
        # HTML is escaped (customer names are user input); text and subjects are not, or a
        # name like "Eve & Co" would arrive as "Eve &amp; Co" in the plain-text mail.
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html",), default_for_string=False, default=False
        ),
        undefined=jinja2.StrictUndefined,  # a typo in an override fails loudly, not blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def environment(settings: Settings) -> jinja2.Environment:
    """The templates: the seller's own overrides (issue 14), MAHNWERK_TEMPLATE_DIR's, the
    shipped ones, in that order."""
    path = _search_path(settings.template_dir)
    if settings.seller_template_dir is not None:
        path.insert(0, str(settings.seller_template_dir))
    return _environment(tuple(path))


def normalize_locale(locale: str | None) -> str:
    """``de-DE`` / ``en_GB`` → ``de`` / ``en``; anything unsupported → ``de``."""
    lang = (locale or "").strip().lower().replace("_", "-").split("-")[0]
    return lang if lang in SUPPORTED_LOCALES else FALLBACK_LOCALE


def _load(
    env: jinja2.Environment, name: str, locale: str
) -> tuple[str, dict[str, jinja2.Template]]:
    """The three parts of notice `name` for `locale`, falling back to ``de`` as a whole.

    Falling back per notice (not per part) keeps subject, text and HTML in one language.
    """
    if not _NAME_RE.match(name):
        raise NoticeTemplateError(f"invalid notice template name {name!r}")
    tried: list[str] = []
    for loc in dict.fromkeys((locale, FALLBACK_LOCALE)):
        try:
            return loc, {part: env.get_template(f"{loc}/{name}.{part}") for part in PARTS}
        except jinja2.TemplateNotFound as exc:
            tried.append(str(exc.name))
    where = ", ".join(getattr(env.loader, "searchpath", []))
    raise NoticeTemplateError(
        f"notice template {name!r} not found (tried {', '.join(tried)} in {where})"
    )


# -- labels and context --------------------------------------------------------------------

_INSTALLMENT_RE = re.compile(
    r"^\s*(?:installment|rate)\s+(\d+)(?:\s*(?:of|von|/)\s*(\d+))?\s*$", re.IGNORECASE
)
_PERIOD_RE = re.compile(r"^\s*period\s+(\d+)\s*$", re.IGNORECASE)
_ONE_OFF = {"one-off", "one_off", "one-off payment"}


def line_label(
    line: ClaimLine,
    product_name: str,
    locale: str,
    *,
    kind: str | None,
    count: int | None = None,
) -> str:
    """The claim line's label in the customer's language.

    Since issue 11 the workflow passes typed fields (``kind``, ``count``, the line's
    ``seq``) and no label: "Rate 3 von 6" / "Installment 3 of 6", "Beitrag Zeitraum 4",
    or for a one-off purchase the product. Notices of contracts started before carry an
    English label, read as follows.

    The workflow names lines in English code vocabulary (``installment 3 of 6``,
    ``period 4``, ``one-off payment``); the notice says "Rate 3 von 6" / "Installment 3 of
    6", and for a one-off purchase just the product, which is what the customer bought.
    Any other label is the workflow's own wording and is shown as given.
    """
    de = locale == "de"
    label = line.label.strip()
    if kind == "one_off" or label.lower() in _ONE_OFF:
        return product_name
    if not label and kind == "installments" and line.seq > 0:
        if count:
            return f"Rate {line.seq} von {count}" if de else f"Installment {line.seq} of {count}"
        return f"Rate {line.seq}" if de else f"Installment {line.seq}"
    m = _INSTALLMENT_RE.match(label)
    if m:
        seq, of = m.group(1), m.group(2)
        if of:
            return f"Rate {seq} von {of}" if de else f"Installment {seq} of {of}"
        return f"Rate {seq}" if de else f"Installment {seq}"
    m = _PERIOD_RE.match(label)
    if m:
        return f"Beitrag Zeitraum {m.group(1)}" if de else f"Subscription period {m.group(1)}"
    if label:
        return label
    if kind == "subscription":
        return f"Beitrag Zeitraum {line.seq}" if de else f"Subscription period {line.seq}"
    if line.seq > 0:
        return f"Rate {line.seq}" if de else f"Installment {line.seq}"
    return product_name


def payment_link(settings: Settings, contract_id: str) -> str:
    """``MAHNWERK_PAYMENT_LINK_URL`` with ``{token}`` (a signed, expiring token for
    Mahnwerk's own page ``/pay/{token}``, core/paylink.py) or ``{contract_id}`` (a page of
    the platform's) filled in.

    Plain substitution rather than ``str.format``: a URL may legitimately contain other
    braces, and contract ids are URL-safe by construction (``[A-Za-z0-9_.-]``), tokens too.
    """
    url = settings.payment_link_url
    if "{token}" in url:
        token = paylink.issue(settings.events_secret.get_secret_value(), contract_id)
        url = url.replace("{token}", token)
    return url.replace("{contract_id}", contract_id)


def _address_lines(address: dict[str, str]) -> list[str]:
    lines = [address.get("line1", ""), address.get("line2", "")]
    city = " ".join(p for p in (address.get("postal_code", ""), address.get("city", "")) if p)
    lines.append(city)
    country = address.get("country", "")
    if country and country.upper() != "DE":
        lines.append(country)
    return [ln for ln in (x.strip() for x in lines) if ln]


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


# -- statutory default interest (§ 288 BGB) -------------------------------------------------


@dataclass
class NoticeInterest:
    """The interest part of one notice: the template context and the evidence record."""

    context: dict[str, Any]
    evidence: dict[str, Any]
    net: int  # interest claimed: computed less interest already received, ≥ 0


def _interest_lines_evidence(
    inp: NoticeInput, labels: list[str], results: list[InterestResult]
) -> list[dict[str, Any]]:
    return [
        {
            "seq": line.seq,
            "label": label,
            "principal": r.principal,
            "due_date": r.due_date,
            "from": r.from_date,
            "to": r.to_date,
            "days": r.days,
            "amount": r.amount,
            "exact": r.exact,  # unrounded, minor units as a fraction
            "periods": [
                {
                    "from": p.start,
                    "to": p.end,
                    "days": p.days,
                    "base_rate_bp": p.base_bp,
                    "rate_bp": p.rate_bp,
                    "exact": p.exact,
                }
                for p in r.periods
            ],
        }
        for line, label, r in zip(inp.lines, labels, results, strict=True)
    ]


def notice_interest(
    inp: NoticeInput, notice_number: str, settings: Settings, locale: str, labels: list[str]
) -> NoticeInterest:
    """Statutory default interest per open claim line, as of the notice date.

    ``labels`` are the lines' labels as shown. A base rate missing from the table (and from
    ``MAHNWERK_BASE_RATES``) gives status ``unavailable`` with no amount — a rate is never
    guessed — and one warning in the log for this render.
    """
    mode = inp.interest_mode
    if mode not in INTEREST_MODES:
        raise NoticeInputError(
            f"interest_mode must be one of {', '.join(INTEREST_MODES)}, got {mode!r}"
        )
    try:
        customer_type = check_customer_type(inp.customer.type or CONSUMER)
    except ValueError as exc:
        raise NoticeInputError(str(exc)) from None
    de = locale == "de"
    as_of = berlin_date(inp.created_at)
    paid = max(0, int(getattr(inp, "interest_paid", 0) or 0))
    pp = margin_bp(customer_type) // 100
    paragraph = "1" if customer_type == CONSUMER else "2"
    margin_text = (
        f"{pp} Prozentpunkte über dem Basiszinssatz"
        if de
        else f"{pp} percentage points above the base rate"
    )

    def money(minor: int) -> str:
        return format_money(minor, inp.currency, locale)

    def day(iso: str) -> str:
        return format_day(iso, locale, numeric=True)  # the interest table's dates

    evidence: dict[str, Any] = {
        "mode": mode,
        "status": mode if mode != "statutory" else "computed",
        "as_of": as_of,
        "customer_type": customer_type,
        "rate_text": rate_text(customer_type, "de"),
        "rate_text_en": rate_text(customer_type, "en"),
        "base_rates_last_checked": BASE_RATES_LAST_CHECKED,
        "base_rates_configured": settings.base_rates or None,
        "items": [],
        "computed": 0,
        "paid": paid,
        "total": 0,
    }
    context: dict[str, Any] = {
        "interest_mode": mode,
        "interest_status": evidence["status"],
        "interest_lines": [],
        "interest_basis": f"§ 288 Abs. {paragraph} BGB" if de else f"§ 288 ({paragraph}) BGB",
        "interest_margin": margin_text,
        "interest_rate": None,
        "interest_from": None,
        "interest_to": None,
        "interest_paid": money(0),
        "interest_paid_minor": 0,
    }
    if mode != "statutory":
        return NoticeInterest(context, evidence, 0)

    items = [(line.amount, berlin_date(line.due_at)) for line in inp.lines]
    try:
        rates = with_rates(settings.extra_base_rates)
        results = claim_interest(items, as_of, customer_type, rates)
    except MissingBaseRate as exc:
        log.warning(
            "notice %s: statutory interest not computed, shown as calculated separately: %s "
            "(first day needing it: %s; supply the rate with MAHNWERK_BASE_RATES)",
            notice_number,
            exc,
            exc.needed_for,
        )
        evidence.update(
            status="unavailable",
            reason=str(exc),
            missing_base_rate=exc.rate_date,
            needed_for=exc.needed_for,
        )
        context["interest_status"] = "unavailable"
        return NoticeInterest(context, evidence, 0)

    computed = sum(r.amount for r in results)
    net = max(0, computed - paid)
    evidence.update(
        items=_interest_lines_evidence(inp, labels, results),
        computed=computed,
        paid=min(paid, computed),
        total=net,
    )
    shown: list[dict[str, Any]] = []
    for line, label, r in zip(inp.lines, labels, results, strict=True):
        if r.days == 0:  # not in default yet (due today): no interest line
            continue
        periods = [
            {
                "from": day(p.start),
                "to": day(p.end),
                "days": p.days,
                "rate": f"{format_rate(p.rate_bp, locale)} ({margin_text})",
                "rate_pct": format_rate(p.rate_bp, locale),
                "base_rate": format_rate(p.base_bp, locale),
            }
            for p in r.periods
        ]
        shown.append(
            {
                "label": label,
                "seq": line.seq,
                "principal": money(r.principal),
                "principal_minor": r.principal,
                "due_date": day(r.due_date),
                "from": day(r.from_date),
                "to": day(r.to_date),
                "days": r.days,
                "amount": money(r.amount),
                "amount_minor": r.amount,
                "rate": periods[0]["rate"] if len(periods) == 1 else None,
                "periods": periods,
            }
        )
    applied = {p.rate_bp for r in results for p in r.periods}
    context.update(
        interest_lines=shown,
        interest_rate=format_rate(applied.pop(), locale) if len(applied) == 1 else None,
        interest_from=min((r.from_date for r in results if r.days), default=None),
        interest_to=as_of if shown else None,
        interest_paid=money(min(paid, computed)),
        interest_paid_minor=min(paid, computed),
    )
    for key in ("interest_from", "interest_to"):
        if context[key] is not None:
            context[key] = day(context[key])
    return NoticeInterest(context, evidence, net)


# Labels of the claim's cost kinds in English (the German ones come with the claim).
_COST_LABELS_EN: Final[dict[str, str]] = {
    "return_debit": "Return-debit costs",
    "collection": "Collection costs",
    "information": "Information costs",
    "lump_sum": "Late-payment lump sum (section 288 (5) BGB)",
}


def claim_context(
    claim: Claim, locale: str, money: Callable[[int], str], day: Callable[[str], str]
) -> dict[str, Any]:
    """The amounts of a notice read from the claim (domain.claim), nothing computed again:
    fees, costs per kind, § 288 (5) lump sums (with what was credited against them),
    interest per installment and rate period, and the total (issue 11).

    Interest lines show what accrued (less any waived); interest already paid is one line
    of its own, so the lines add up to the claim's ``interest``."""
    de = locale == "de"
    costs: dict[str, int] = {}
    labels: dict[str, str] = {}
    for line in claim.cost_items:
        if line.open:
            costs[line.kind] = costs.get(line.kind, 0) + line.open
            labels[line.kind] = line.label if de else _COST_LABELS_EN.get(line.kind, line.kind)
    cost_lines = [
        {"kind": kind, "label": labels[kind], "amount": money(amount), "amount_minor": amount}
        for kind, amount in costs.items()
    ]
    lump_lines = [
        {
            "label": line.label if de else _COST_LABELS_EN["lump_sum"],
            "installment": line.installment,
            "amount": money(line.open),
            "amount_minor": line.open,
        }
        for line in claim.lump_sum_items
        if line.open
    ]
    interest_lines: list[dict[str, Any]] = []
    pp = 5 if claim.customer_type == "consumer" else 9
    margin = (
        f"{pp} Prozentpunkte über dem Basiszinssatz"
        if de
        else f"{pp} percentage points above the base rate"
    )
    for item in claim.items:
        amount = item.interest_accrued - item.interest_waived
        if not item.interest_periods or amount <= 0:
            continue
        periods = [
            {
                "from": day(p.start),
                "to": day(p.end),
                "days": p.days,
                "principal": money(p.principal),
                "rate": f"{format_rate(p.rate_bp, locale)} ({margin})",
                "rate_pct": format_rate(p.rate_bp, locale),
                "base_rate": format_rate(p.base_bp, locale),
            }
            for p in item.interest_periods
        ]
        interest_lines.append(
            {
                "seq": item.installment,
                "principal": money(item.amount),
                "principal_minor": item.amount,
                "due_date": day(item.due),
                "from": day(item.interest_periods[0].start),
                "to": day(item.interest_periods[-1].end),
                "days": sum(p.days for p in item.interest_periods),
                "amount": money(amount),
                "amount_minor": amount,
                "rate": periods[0]["rate"]
                if len({p.rate_bp for p in item.interest_periods}) == 1
                else None,
                "periods": periods,
            }
        )
    paid = sum(item.paid.interest for item in claim.items if item.interest_periods)
    if claim.interest_mode in ("none", "waived"):
        status = claim.interest_mode
    elif claim.missing_base_rate and not interest_lines:
        status = "unavailable"
    else:
        status = "computed"
    rates = {p.rate_bp for item in claim.items for p in item.interest_periods}
    return {
        "claim": claim,
        "principal": money(claim.principal),
        "principal_minor": claim.principal,
        "fees": money(claim.fees),
        "fees_minor": claim.fees,
        "costs": money(claim.costs),
        "costs_minor": claim.costs,
        "cost_lines": cost_lines,
        "lump_sums": money(claim.lump_sums),
        "lump_sums_minor": claim.lump_sums,
        "lump_sum_lines": lump_lines,
        "credited": money(claim.credited),
        "credited_minor": claim.credited,
        "interest_mode": claim.interest_mode,
        "interest_status": status,
        "interest_basis": (
            f"§ 288 Abs. {1 if pp == 5 else 2} BGB" if de else f"§ 288 ({1 if pp == 5 else 2}) BGB"
        ),
        "interest_margin": margin,
        "interest_lines": interest_lines,
        "interest_rate": format_rate(rates.pop(), locale) if len(rates) == 1 else None,
        "interest_from": interest_lines[0]["from"] if interest_lines else None,
        "interest_to": day(claim.interest_until)
        if claim.interest_until and interest_lines
        else None,
        # a § 247 BGB rate the table lacks: interest from this day is calculated separately
        "interest_missing_from": (
            day(claim.missing_base_rate) if claim.missing_base_rate else None
        ),
        "interest_paid": money(paid),
        "interest_paid_minor": paid,
        "interest": money(claim.interest),
        "interest_minor": claim.interest,
        "show_interest": True,  # every notice asks the claim as it is (issue 11)
        "subtotal": money(claim.total - claim.interest),
        "subtotal_minor": claim.total - claim.interest,
        "total": money(claim.total),
        "total_minor": claim.total,
    }


# Installment → (invoice number, invoice date ISO) of the contract's invoices (issue 15)
Invoices = Mapping[int, tuple[str, str]]


def _invoice_of(
    invoices: Invoices | None, seq: int, day: Callable[[str], str]
) -> dict[str, str | None]:
    number, issued = (invoices or {}).get(seq, ("", ""))
    return {"invoice_number": number or None, "invoice_date": day(issued) if issued else None}


def invoices_link(settings: Settings, link: str, invoices: Invoices | None) -> str | None:
    """Where the customer finds the contract's invoices (issue 15 item 4): the invoice list
    of Mahnwerk's payment page (``/pay/{token}#invoices``, each invoice a PDF download
    authorised by the same token). None without invoices, or when the payment link is a
    page of the platform's (``{contract_id}``), which Mahnwerk cannot vouch lists them."""
    if not invoices or "{token}" not in settings.payment_link_url:
        return None
    return f"{link}#invoices"


def build_context(
    inp: NoticeInput,
    notice_number: str,
    settings: Settings,
    locale: str,
    invoices: Invoices | None = None,
) -> dict[str, Any]:
    """Everything a template may use, with amounts and dates already formatted."""
    return _build(inp, notice_number, settings, locale, invoices)[0]


def _build(
    inp: NoticeInput,
    notice_number: str,
    settings: Settings,
    locale: str,
    invoices: Invoices | None = None,
) -> tuple[dict[str, Any], NoticeInterest]:
    currency = inp.currency

    def money(minor: int) -> str:
        return format_money(int(minor), currency, locale)

    def day(value: str | date | datetime) -> str:
        return format_day(value, locale)  # running text: "5. Dezember 2026"

    def numeric_day(value: str | date | datetime) -> str:
        return format_day(value, locale, numeric=True)  # tables: "05.12.2026"

    kind: str | None = inp.kind or None
    route: str | None = inp.route
    # legacy inputs (no claim) carried costs only in a subclass some callers used
    costs = int(getattr(inp, "costs", 0) or 0)

    labels = [
        line_label(line, inp.product.name, locale, kind=kind, count=inp.count) for line in inp.lines
    ]
    lines = [
        {
            "label": label,
            "seq": line.seq,
            "due_date": numeric_day(line.due_at),
            "amount": money(line.amount),
            "amount_minor": line.amount,
            # the invoice of the installment claimed (issue 15): its number and date
            **_invoice_of(invoices, line.seq, numeric_day),
        }
        for line, label in zip(inp.lines, labels, strict=True)
    ]
    principal = sum(line.amount for line in inp.lines)
    if inp.claim is not None:
        # The claim decides every amount; the legacy computation below is not run.
        interest = NoticeInterest({}, {"status": "claim"}, inp.claim.interest)
    else:
        interest = notice_interest(inp, notice_number, settings, locale, labels)
    # `inp.total` is the workflow's claim without interest (principal + fees + costs).
    subtotal = inp.total
    total = subtotal + interest.net
    link = payment_link(settings, inp.contract_id)
    address = dict(inp.customer.address or {})
    context: dict[str, Any] = {
        "locale": locale,
        "stage": inp.stage,
        "template": inp.template,
        "contract_id": inp.contract_id,
        "case_no": inp.case_no,
        "notice_number": notice_number,
        "notice_date": day(inp.created_at),
        "seller": seller_context(settings, locale),
        "salutation": salutation(inp.customer.type, inp.customer.name, locale),
        "customer": {
            "id": inp.customer.id,
            "name": inp.customer.name,
            "email": inp.customer.email,
            "type": inp.customer.type,
            "address": address,
            "address_lines": _address_lines(address),
        },
        "product": {"id": inp.product.id, "name": inp.product.name},
        "currency": currency,
        "lines": lines,
        "principal": money(principal),
        "principal_minor": principal,
        "fees": money(inp.fees),
        "fees_minor": inp.fees,
        "costs": money(costs),
        "costs_minor": costs,
        **interest.context,
        "interest": money(interest.net),
        "interest_minor": interest.net,
        "show_interest": False,  # the stage templates decide (module docstring)
        "subtotal": money(subtotal),
        "subtotal_minor": subtotal,
        "total": money(total),
        "total_minor": total,
        "deadline": day(inp.deadline_day or inp.deadline),
        # § 193 BGB moved the deadline off a weekend or holiday: why ("Sonntag", …), or ""
        "deadline_shift_reason": inp.deadline_shift_reason,
        "payment_link": link,
        "invoices_link": invoices_link(settings, link, invoices),
        "route": route,
        "debit": _debit_context(inp, settings, money, day),
        "call_in": _call_in_context(inp, money),
        "money": money,
        "date": day,
        "numeric_date": numeric_day,
        # filled in by render_notice once the template's `show_interest` is known
        "amount_due": money(subtotal),
        "amount_due_minor": subtotal,
        "bank": None,
        # typed claim parts (issue 11); without a claim (legacy notices) they stay empty
        "cost_lines": [],
        "lump_sums": money(0),
        "lump_sums_minor": 0,
        "lump_sum_lines": [],
        "credited": money(0),
        "credited_minor": 0,
        "interest_missing_from": None,
        "interest_until": None,  # claim: the last interest day, in running text
        "claim": None,
        # a customer message beyond dunning (issue 12): what happened, formatted
        "message": _message_context(inp, locale, money, day),
    }
    if inp.claim is not None:
        context.update(claim_context(inp.claim, locale, money, numeric_day))
        if inp.claim.interest_until:
            context["interest_until"] = day(inp.claim.interest_until)
        for line, item in zip(context["interest_lines"], _interest_items(inp.claim), strict=True):
            line["label"] = line_label(
                ClaimLine("", item, inp.deadline, 0),
                inp.product.name,
                locale,
                kind=kind,
                count=inp.count,
            )
    context["free_of_charge"] = charges_minor(context) == 0
    return context, interest


# Why a contract ended or a refund was made, as the customer reads it (issue 12): the
# cancellation reasons (domain.endings.REASONS) and Stripe's refund reasons.
_REASON_TEXT: Final[dict[str, tuple[str, str]]] = {
    "withdrawal": ("Widerruf", "withdrawal"),
    "cancellation_button": ("Kündigung", "cancellation"),
    "goodwill": ("Kulanz", "goodwill"),
    "fraud": ("Betrugsverdacht", "suspected fraud"),
    "other": ("Vertragsbeendigung", "termination of the contract"),
    "requested_by_customer": ("auf Ihren Wunsch", "at your request"),
    "duplicate": ("doppelte Zahlung", "duplicate payment"),
    "fraudulent": ("Betrugsverdacht", "suspected fraud"),
    "refunded at Stripe": ("", ""),  # a Dashboard refund gives no reason: none is shown
}
# Why a debit failed for good, by failure class (domain.declines), in the customer's words.
_DECLINE_TEXT: Final[dict[str, tuple[str, str]]] = {
    "fix_data": (
        "Die hinterlegten Zahlungsdaten sind nicht mehr gültig oder unvollständig "
        "(zum Beispiel eine abgelaufene Karte).",
        "The payment details on file are no longer valid or incomplete "
        "(for example, an expired card).",
    ),
    "never": (
        "Ihre Bank hat die Zahlung abgelehnt; diese Zahlungsmethode kann nicht mehr belastet "
        "werden.",
        "Your bank declined the payment; this payment method can no longer be charged.",
    ),
}


def _message_context(
    inp: NoticeInput,
    locale: str,
    money: Callable[[int], str],
    day: Callable[[str | date | datetime], str],
) -> dict[str, Any] | None:
    """A customer message's facts (payment failed, payment received, access restored, plan
    completed, withdrawal or refund confirmed), formatted; None for dunning notices."""
    m = inp.message
    if m is None:
        return None
    de = locale == "de"

    def text(table: Mapping[str, tuple[str, str]], key: str) -> str:
        pair = table.get(key)
        return (pair[0] if de else pair[1]) if pair is not None else key

    label = (
        line_label(
            ClaimLine("", m.installment, m.at, 0),
            inp.product.name,
            locale,
            kind=inp.kind or None,
            count=inp.count,
        )
        if m.installment
        else inp.product.name
    )
    return {
        "kind": m.kind,
        "at": day(m.at),
        "installment": m.installment,
        "label": label,
        "amount": money(m.amount),
        "amount_minor": m.amount,
        "code": m.code,
        "failure_class": m.failure_class,
        "decline_text": text(_DECLINE_TEXT, m.failure_class) if m.failure_class else "",
        "reason": m.reason,
        "reason_text": text(_REASON_TEXT, m.reason) if m.reason else "",
        "refund": money(m.refund),
        "refund_minor": m.refund,
        "refund_outside": money(m.refund_outside),
        "refund_outside_minor": m.refund_outside,
        "cancelled": list(m.cancelled),
        "access": m.access,
        "next_due": day(m.next_due) if m.next_due else None,
        "next_amount": money(m.next_amount),
        "next_amount_minor": m.next_amount,
        "paid_total": money(m.paid_total),
        "paid_total_minor": m.paid_total,
    }


def _message_evidence(inp: NoticeInput) -> dict[str, Any] | None:
    m = inp.message
    if m is None:
        return None
    out = asdict(m)
    out["at"] = _iso(m.at)
    return out


def _call_in_context(inp: NoticeInput, money: Callable[[int], str]) -> dict[str, Any] | None:
    """The § 498 BGB notice (template ``call_in``): the arrears, the installments not yet
    due, and the whole remainder that falls due if the deadline passes unpaid."""
    c = inp.call_in
    if c is None:
        return None
    return {
        "arrears": money(c.arrears),
        "arrears_minor": c.arrears,
        "future": money(c.future),
        "future_minor": c.future,
        "installments": c.installments,
        "remainder": money(c.remainder),
        "remainder_minor": c.remainder,
    }


def _debit_context(
    inp: NoticeInput,
    settings: Settings,
    money: Callable[[int], str],
    day: Callable[[str | date | datetime], str],
) -> dict[str, Any] | None:
    """The announced SEPA debit (pre-notification, DOMAIN.md §4): amount, date, mandate
    reference, creditor id, last four IBAN digits; None for every other notice."""
    d = inp.debit
    if d is None:
        return None
    return {
        "seq": d.seq,
        "attempt": d.attempt,
        "amount": money(d.amount),
        "amount_minor": d.amount,
        # the day the money leaves the account, as Stripe will collect it
        "date": day(d.collection_date or d.debit_at),
        "mandate_reference": d.mandate_reference,
        "creditor_id": settings.seller_creditor_id or None,
        "iban_last4": d.iban_last4,
        "short_notice": d.short_notice,
        "represented": d.attempt > 1,  # a re-presentation after a returned debit
    }


def _interest_items(claim: Claim) -> list[int]:
    """The installments of claim_context's interest lines, in their order."""
    return [
        item.installment
        for item in claim.items
        if item.interest_periods and item.interest_accrued - item.interest_waived > 0
    ]


def _evidence(
    inp: NoticeInput, context: dict[str, Any], interest: NoticeInterest, shown: bool
) -> dict[str, Any]:
    """The claim exactly as the customer saw it, JSON-safe, for the ledger row.

    ``interest`` and ``total`` are what the notice claimed: with ``interest_shown`` false
    (the friendly reminder) the total is the subtotal and the interest 0, while
    ``interest_detail`` keeps the computation either way (status, per line and period, the
    exact fractions, the rates applied, or why there is no amount).
    """
    claimed = inp.claim is not None
    return {
        "locale": context["locale"],
        "template": inp.template,
        "currency": inp.currency,
        # the claim exactly as the notice printed it (domain.claim; None before issue 11)
        "claim": asdict(inp.claim) if inp.claim is not None else None,
        "created_at": _iso(inp.created_at),  # when it went out (the workflow's clock)
        "deadline_day": inp.deadline_day or None,
        "deadline_shift_reason": inp.deadline_shift_reason or None,
        "lines": [
            {
                "label": shown_line["label"],
                "seq": line.seq,
                "due_at": _iso(line.due_at),
                "amount": line.amount,
                **(
                    {"invoice_number": shown_line["invoice_number"]}
                    if shown_line.get("invoice_number")
                    else {}
                ),
            }
            for line, shown_line in zip(inp.lines, context["lines"], strict=True)
        ],
        "principal": context["principal_minor"],
        "fees": inp.fees,
        "costs": context["costs_minor"],
        "interest_shown": shown or claimed,
        "interest": interest.net if shown or claimed else 0,
        "interest_detail": interest.evidence,
        "subtotal": context["subtotal_minor"],
        "total": context["total_minor"] if shown or claimed else context["subtotal_minor"],
        "deadline": _iso(inp.deadline),
        "payment_link": context["payment_link"],
        "route": context["route"],
        "debit": _debit_evidence(inp, context),
        "call_in": asdict(inp.call_in) if inp.call_in is not None else None,
    } | ({"message": _message_evidence(inp)} if inp.message is not None else {})


def _debit_evidence(inp: NoticeInput, context: dict[str, Any]) -> dict[str, Any] | None:
    d = inp.debit
    if d is None:
        return None
    return {
        "seq": d.seq,
        "attempt": d.attempt,
        "amount": d.amount,
        "debit_at": _iso(d.debit_at),
        "collection_date": d.collection_date,
        "mandate_reference": d.mandate_reference,
        "creditor_id": context["debit"]["creditor_id"],
        "iban_last4": d.iban_last4,
        "short_notice": d.short_notice,
    }


_BREAKING_SPACE = re.compile(r"[ \t\n\r\v\f\x1c-\x1f\x85\u2028\u2029]+")


def _one_line(subject: str) -> str:
    # A header must be one line: a newline in a template (or product name) would otherwise
    # end the Subject header early or inject headers. Only breaking whitespace collapses:
    # the no-break space in "99,00 €" stays (str.split() would turn it into a space).
    return _BREAKING_SPACE.sub(" ", subject).strip(" ")


# -- presentation: Babel formatting, salutation, seller footer, bank transfer ------------------
#
# Amounts and dates use Babel's CLDR data here, on the activity side: Babel reads its locale
# data from files, which the workflow sandbox (and tests/workflows/test_determinism.py) must
# not do, so domain/money.py keeps its own plain formatting for workflow summaries and events.

_BABEL_LOCALES: Final = {"de": "de_DE", "en": "en_GB"}
# Running text: "5. Dezember 2026" / "5 December 2026"; tables: "05.12.2026" / "5 December
# 2026" (an English numeric date is ambiguous between British and US readers).
_LONG_DATE: Final = {"de": "d. MMMM y", "en": "d MMMM y"}
_NUMERIC_DATE: Final = {"de": "dd.MM.y", "en": "d MMMM y"}


def _babel_locale(locale: str) -> str:
    return _BABEL_LOCALES.get(normalize_locale(locale), _BABEL_LOCALES[FALLBACK_LOCALE])


def format_money(minor: int, currency: str, locale: str) -> str:
    """``123456`` EUR → ``1.234,56\u00a0€`` (de) / ``€1,234.56`` (en), CLDR via Babel.

    The no-break space keeps amount and symbol on one line (DIN 5008 typography). Minor units
    become a Decimal exactly (``scaleb``), never a float.
    """
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"amount must be an int in minor units, got {minor!r}")
    value = Decimal(minor).scaleb(-currency_exponent(currency))
    return babel.numbers.format_currency(
        value, currency.strip().upper(), locale=_babel_locale(locale)
    )


def _calendar_day(value: str | date | datetime) -> date:
    """The calendar day people read: instants are shown as their date in Europe/Berlin."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"datetime must be timezone-aware, got {value.isoformat()}")
        return value.astimezone(BERLIN).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return due_instant(value).astimezone(BERLIN).date()
    raise TypeError(f"expected an ISO date string, date or datetime, got {value!r}")


def format_day(value: str | date | datetime, locale: str, *, numeric: bool = False) -> str:
    """``5. Dezember 2026`` (de) / ``5 December 2026`` (en); ``numeric``: ``05.12.2026``."""
    lang = normalize_locale(locale)
    pattern = (_NUMERIC_DATE if numeric else _LONG_DATE)[lang]
    return babel.dates.format_date(_calendar_day(value), pattern, locale=_babel_locale(lang))


def salutation(customer_type: str | None, name: str, locale: str) -> str:
    """A consumer by name; a business as a firm ("Guten Tag Muster GmbH" reads as a slip)."""
    business = (customer_type or "").strip().lower() == "business"
    if locale == "de":
        return "Sehr geehrte Damen und Herren," if business else f"Guten Tag {name},"
    return "Dear Sir or Madam," if business else f"Dear {name},"


def seller_context(settings: Settings, locale: str) -> dict[str, Any]:
    """The ``seller`` of the template context: contact and the business-letter details
    (``legal_lines``, see core/seller.py for what the law asks of each legal form)."""
    return {
        "name": settings.seller_name,
        "legal_name": legal_name(settings),
        "address": settings.seller_address,
        "email": settings.seller_email,
        "legal_lines": legal_footer(settings, locale),
    }


def charges_minor(context: Mapping[str, Any]) -> int:
    """Everything the notice charges besides principal and interest: fees, costs and any
    lump sums (``lump_sum*_minor``). A notice may call itself free only when this is 0."""
    total = int(context.get("fees_minor") or 0) + int(context.get("costs_minor") or 0)
    for key, value in context.items():
        if key.startswith("lump_sum") and key.endswith("_minor") and isinstance(value, int):
            total += value
    return total


# EPC069-12 "Quick Response Code: Guidelines to Enable Data Capture for the Initiation of a
# SEPA Credit Transfer" (the "GiroCode"), version 002: LF-separated elements, payload at most
# 331 bytes, error correction level M, QR version at most 13.
EPC_MAX_PAYLOAD = 331
EPC_MAX_AMOUNT = 99_999_999_999  # 999,999,999.99 EUR in cents
EPC_MAX_REMITTANCE = 140


def epc_payload(
    *, name: str, iban: str, bic: str | None, amount_minor: int, remittance: str
) -> str:
    """The EPC QR payload for a SEPA credit transfer of ``amount_minor`` euro cents.

    Elements: service tag ``BCD``, version ``002``, character set ``1`` (UTF-8),
    identification ``SCT``, BIC (optional in version 002 within the EEA), beneficiary name
    (≤ 70), IBAN, amount ``EUR`` + amount with a decimal point (0.01 – 999999999.99), purpose
    (empty), structured reference (empty: the notice number is no ISO 11649 RF reference),
    unstructured remittance text (≤ 140). Trailing empty elements are omitted, as allowed.
    """
    if not 0 < len(name) <= 70:
        raise ValueError(f"EPC beneficiary name must have 1–70 characters, got {len(name)}")
    if not 0 < len(remittance) <= EPC_MAX_REMITTANCE:
        raise ValueError(f"EPC remittance text must have 1–140 characters, got {remittance!r}")
    if not 1 <= amount_minor <= EPC_MAX_AMOUNT:
        raise ValueError(f"EPC amount must be 0.01–999999999.99 EUR, got {amount_minor} cents")
    if any(c in part for part in (name, remittance) for c in "\r\n"):
        raise ValueError("EPC elements must not contain line breaks")
    amount = f"EUR{Decimal(amount_minor).scaleb(-2):.2f}"
    payload = "\n".join(
        ("BCD", "002", "1", "SCT", bic or "", name, iban, amount, "", "", remittance)
    )
    if len(payload.encode("utf-8")) > EPC_MAX_PAYLOAD:
        raise ValueError(f"EPC payload longer than {EPC_MAX_PAYLOAD} bytes")
    return payload


def epc_qr(payload: str) -> segno.QRCode:
    """The QR code of an EPC payload: byte mode, UTF-8, error correction M (not boosted)."""
    qr = segno.make_qr(payload.encode("utf-8"), error="m", boost_error=False)
    if qr.version is None or int(qr.version) > 13:  # EPC069-12 allows versions 1–13
        raise ValueError(f"EPC QR code needs version {qr.designator}, at most 13 allowed")
    return qr


# Pixels per module: a version-8 code (49 modules + 2 × 4 quiet zone) is 228 px, readable
# from a phone screen; the deterministic PNG writer gives the same bytes for the same payload.
QR_SCALE = 4


def epc_qr_png(payload: str) -> bytes:
    buf = io.BytesIO()
    epc_qr(payload).save(buf, kind="png", scale=QR_SCALE, border=4)
    return buf.getvalue()


def qr_cid(notice_number: str) -> str:
    """The Content-ID of a notice's GiroCode (RFC 2392; notice numbers are URL-safe)."""
    return f"girocode.{notice_number}@mahnwerk"


def bank_context(
    settings: Settings, notice_number: str, currency: str, amount_minor: int, locale: str
) -> dict[str, Any] | None:
    """The bank-transfer block of a notice that asks for money, or None without an IBAN.

    The payment reference is the notice number: unique per notice, printed on it, and what
    the bank statement will show when the customer transfers. The GiroCode (``qr``) is
    offered for EUR amounts only — SEPA credit transfers are in euro.
    """
    if not settings.seller_iban:
        return None
    holder = account_holder(settings)
    qr: dict[str, Any] | None = None
    if currency.strip().lower() == "eur" and amount_minor > 0:
        payload = epc_payload(
            name=holder,
            iban=settings.seller_iban,
            bic=settings.seller_bic or None,
            amount_minor=amount_minor,
            remittance=notice_number,
        )
        side = (epc_qr(payload).symbol_size(scale=QR_SCALE, border=4))[0]
        qr = {"payload": payload, "cid": qr_cid(notice_number), "size": side}
    return {
        "iban": settings.seller_iban,
        "iban_display": format_iban(settings.seller_iban),
        "bic": settings.seller_bic or None,
        "account_holder": holder,
        "reference": notice_number,
        "amount": format_money(amount_minor, currency, locale),
        "amount_minor": amount_minor,
        "qr": qr,
    }


def _bank_evidence(bank: dict[str, Any] | None, text: str, html: str) -> dict[str, Any] | None:
    """The bank details as the customer saw them (None when the notice showed none).

    The GiroCode counts as shown when the HTML references it, even if an override left the
    IBAN out of the text: its image must then be attached, or the customer sees a hole.
    """
    if bank is None:
        return None
    qr = bank["qr"]
    shown_qr = qr is not None and f"cid:{qr['cid']}" in html
    if bank["iban_display"] not in text and not shown_qr:
        return None
    return {
        "iban": bank["iban"],
        "bic": bank["bic"],
        "account_holder": bank["account_holder"],
        "reference": bank["reference"],
        "amount": bank["amount_minor"],
        "epc_payload": qr["payload"] if shown_qr else None,
        "qr_cid": qr["cid"] if shown_qr else None,
    }


def inline_images(data: Mapping[str, Any]) -> tuple[InlineImage, ...]:
    """The images of a stored notice, rebuilt from its evidence record: the GiroCode is a
    pure function of the recorded EPC payload, so a retried send shows the same code."""
    bank = data.get("bank_transfer") or {}
    if not bank.get("qr_cid") or not bank.get("epc_payload"):
        return ()
    return (InlineImage(bank["qr_cid"], "image/png", epc_qr_png(bank["epc_payload"])),)


def render_notice(
    inp: NoticeInput,
    notice_number: str,
    settings: Settings,
    invoices: Invoices | None = None,
) -> RenderedNotice:
    """Render notice ``inp.template`` in the customer's locale (fallback ``de``); `invoices`
    names the invoices of the installments it claims (issue 15).

    Raises :class:`NoticeTemplateError` for an unknown notice, :class:`NoticeInputError` for
    an unusable input, and Jinja's errors for a broken template.
    """
    env = environment(settings)
    locale, templates = _load(env, inp.template, normalize_locale(inp.customer.locale))
    context, interest = _build(inp, notice_number, settings, locale, invoices)
    # The text part is rendered as a module so that its top-level `{% set show_interest %}`
    # — the template's decision to claim interest — can be recorded with the notice. A first
    # pass reads that decision; the amount due (and the GiroCode's amount) follow from it.
    text_module = _text_module(env, templates["txt"], context)
    shown = bool(getattr(text_module, "show_interest", False))
    # A notice with the claim asks for the claim of its moment, interest included (issue 11).
    claimed = shown or inp.claim is not None
    amount_due = context["total_minor"] if claimed else context["subtotal_minor"]
    context["amount_due"] = format_money(amount_due, inp.currency, locale)
    context["amount_due_minor"] = amount_due
    context["bank"] = bank_context(settings, notice_number, inp.currency, amount_due, locale)
    text = str(_text_module(env, templates["txt"], context))
    html = templates["html"].render(context)
    data = _evidence(inp, context, interest, shown)
    data["bank_transfer"] = _bank_evidence(context["bank"], text, html)
    return RenderedNotice(
        subject=_one_line(templates["subject.txt"].render(context)),
        text=text,
        html=html,
        locale=locale,
        data=data,
        images=inline_images(data),
    )


def _text_module(
    env: jinja2.Environment, template: jinja2.Template, context: dict[str, Any]
) -> Any:
    try:
        return template.make_module(context)
    except Exception:
        env.handle_exception()  # re-raises with the template's file and line, like render()
