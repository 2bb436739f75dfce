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
``notice_date``; ``seller`` {name, address, email}; ``customer`` {id, name, email, type,
address, address_lines}; ``product`` {id, name}; ``lines`` [{label, seq, due_date, amount,
amount_minor}]; ``principal``, ``fees``, ``costs``, ``interest``, ``interest_paid``,
``subtotal`` (principal + fees + costs, without interest) and ``total`` (``subtotal`` +
``interest``) — formatted, each also as ``*_minor`` int; ``deadline``; ``payment_link``;
``route`` (``court`` | ``inkasso`` | None); ``debit`` (SEPA pre-notification only, else
None: {seq, attempt, amount, amount_minor, date, mandate_reference, creditor_id,
iban_last4, short_notice, represented}); and the helpers ``money(minor)`` and
``date(value)``.

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
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import jinja2

from core.settings import PROJECT_ROOT, Settings
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
from domain.money import format_amount, format_date
from domain.schedule import berlin_date
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
class RenderedNotice:
    subject: str
    text: str
    html: str
    locale: str = FALLBACK_LOCALE  # the locale actually rendered (after fallback)
    # The claim as rendered (JSON-safe): stored with the notice as evidence.
    data: dict[str, Any] = field(default_factory=dict)


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
    return _environment(tuple(_search_path(settings.template_dir)))


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


def line_label(line: ClaimLine, product_name: str, locale: str, *, kind: str | None) -> str:
    """The claim line's label in the customer's language.

    The workflow names lines in English code vocabulary (``installment 3 of 6``,
    ``period 4``, ``one-off payment``); the notice says "Rate 3 von 6" / "Installment 3 of
    6", and for a one-off purchase just the product, which is what the customer bought.
    Any other label is the workflow's own wording and is shown as given.
    """
    de = locale == "de"
    label = line.label.strip()
    if kind == "one_off" or label.lower() in _ONE_OFF:
        return product_name
    m = _INSTALLMENT_RE.match(label)
    if m:
        seq, count = m.group(1), m.group(2)
        if count:
            return f"Rate {seq} von {count}" if de else f"Installment {seq} of {count}"
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
    """``MAHNWERK_PAYMENT_LINK_URL`` with ``{contract_id}`` filled in.

    Plain substitution rather than ``str.format``: a URL may legitimately contain other
    braces, and contract ids are URL-safe by construction (``[A-Za-z0-9_.-]``).
    """
    return settings.payment_link_url.replace("{contract_id}", contract_id)


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
        return format_amount(minor, inp.currency, locale)

    def day(iso: str) -> str:
        return format_date(iso, locale)

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


def build_context(
    inp: NoticeInput, notice_number: str, settings: Settings, locale: str
) -> dict[str, Any]:
    """Everything a template may use, with amounts and dates already formatted."""
    return _build(inp, notice_number, settings, locale)[0]


def _build(
    inp: NoticeInput, notice_number: str, settings: Settings, locale: str
) -> tuple[dict[str, Any], NoticeInterest]:
    currency = inp.currency

    def money(minor: int) -> str:
        return format_amount(int(minor), currency, locale)

    def day(value: str | date | datetime) -> str:
        return format_date(value, locale)

    # Optional claim parts the workflow may add to NoticeInput later (fields with defaults);
    # read defensively so the renderer works with the input shape of today and tomorrow.
    kind: str | None = getattr(inp, "kind", None)
    route: str | None = getattr(inp, "route", None)
    costs = int(getattr(inp, "costs", 0) or 0)

    labels = [line_label(line, inp.product.name, locale, kind=kind) for line in inp.lines]
    lines = [
        {
            "label": label,
            "seq": line.seq,
            "due_date": day(line.due_at),
            "amount": money(line.amount),
            "amount_minor": line.amount,
        }
        for line, label in zip(inp.lines, labels, strict=True)
    ]
    principal = sum(line.amount for line in inp.lines)
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
        "seller": {
            "name": settings.seller_name,
            "address": settings.seller_address,
            "email": settings.seller_email,
        },
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
        "deadline": day(inp.deadline),
        "payment_link": link,
        "route": route,
        "debit": _debit_context(inp, settings, money, day),
        "money": money,
        "date": day,
    }
    return context, interest


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


def _evidence(
    inp: NoticeInput, context: dict[str, Any], interest: NoticeInterest, shown: bool
) -> dict[str, Any]:
    """The claim exactly as the customer saw it, JSON-safe, for the ledger row.

    ``interest`` and ``total`` are what the notice claimed: with ``interest_shown`` false
    (the friendly reminder) the total is the subtotal and the interest 0, while
    ``interest_detail`` keeps the computation either way (status, per line and period, the
    exact fractions, the rates applied, or why there is no amount).
    """
    return {
        "locale": context["locale"],
        "template": inp.template,
        "currency": inp.currency,
        "lines": [
            {
                "label": shown_line["label"],
                "seq": line.seq,
                "due_at": _iso(line.due_at),
                "amount": line.amount,
            }
            for line, shown_line in zip(inp.lines, context["lines"], strict=True)
        ],
        "principal": context["principal_minor"],
        "fees": inp.fees,
        "costs": context["costs_minor"],
        "interest_shown": shown,
        "interest": interest.net if shown else 0,
        "interest_detail": interest.evidence,
        "subtotal": context["subtotal_minor"],
        "total": context["total_minor"] if shown else context["subtotal_minor"],
        "deadline": _iso(inp.deadline),
        "payment_link": context["payment_link"],
        "route": context["route"],
        "debit": _debit_evidence(inp, context),
    }


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


def _one_line(subject: str) -> str:
    # A header must be one line: a newline in a template (or product name) would otherwise
    # end the Subject header early or inject headers.
    return " ".join(subject.split())


def render_notice(inp: NoticeInput, notice_number: str, settings: Settings) -> RenderedNotice:
    """Render notice ``inp.template`` in the customer's locale (fallback ``de``).

    Raises :class:`NoticeTemplateError` for an unknown notice, :class:`NoticeInputError` for
    an unusable input, and Jinja's errors for a broken template.
    """
    env = environment(settings)
    locale, templates = _load(env, inp.template, normalize_locale(inp.customer.locale))
    context, interest = _build(inp, notice_number, settings, locale)
    # The text part is rendered as a module so that its top-level `{% set show_interest %}`
    # — the template's decision to claim interest — can be recorded with the notice.
    try:
        text_module = templates["txt"].make_module(context)
    except Exception:
        env.handle_exception()  # re-raises with the template's file and line, like render()
    shown = bool(getattr(text_module, "show_interest", False))
    return RenderedNotice(
        subject=_one_line(templates["subject.txt"].render(context)),
        text=str(text_module),
        html=templates["html"].render(context),
        locale=locale,
        data=_evidence(inp, context, interest, shown),
    )
