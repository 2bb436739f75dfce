"""Formatting money and dates for notices, summaries and events (SPEC §§ 6, 7).

Money is an integer in minor units plus an ISO currency (SPEC §2), so formatting uses
integer arithmetic only: ``divmod(abs(minor), 10 ** exponent)``, never floats.

Patterns follow CLDR (the Unicode locale data behind every OS and browser):
``de``: ``#.##0,00 ¤`` → ``1.234,56 €``; ``en``: ``¤#,##0.00`` → ``€1,234.56``. Where the
currency has no symbol here the ISO code is used (``1.234,56 CHF`` / ``CHF 1,234.56``).
A plain space separates amount and symbol (CLDR uses U+00A0). This module serves workflow
summaries and events and must stay free of file reads (the workflow sandbox); notices are
formatted with Babel's CLDR data on the activity side instead (``format_money`` and
``format_day`` in activities/notice_render.py: no-break space, "5. Dezember 2026").
"""

from datetime import date, datetime
from typing import Final

from domain.schedule import BERLIN, due_instant

# Stripe "Zero-decimal currencies" and "Three-decimal currencies"
# (docs.stripe.com/currencies#zero-decimal): amounts are in the currency's minor unit,
# which for these is not 1/100.
_ZERO_DECIMAL: Final = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
_THREE_DECIMAL: Final = frozenset("bhd jod kwd omr tnd".split())

_SYMBOLS: Final[dict[str, str]] = {"eur": "€", "usd": "$", "gbp": "£"}

_MONTHS_EN: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def _language(locale: str) -> str:
    """``de``, ``de-DE``, ``de_AT`` → ``de``; anything else → ``en`` (the fallback locale)."""
    return "de" if locale.strip().lower()[:2] == "de" else "en"


def currency_exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (EUR 2, JPY 0, KWD 3)."""
    code = currency.strip().lower()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def _group(digits: str, separator: str) -> str:
    """Insert a thousands separator every three digits from the right."""
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return separator.join(parts)


def _check_minor(minor: object) -> None:
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"amount must be an int in minor units, got {minor!r}")


def format_number(minor: int, exponent: int, locale: str) -> str:
    """``123456`` with exponent 2 → ``1.234,56`` (de) / ``1,234.56`` (en); sign included."""
    _check_minor(minor)
    thousands, decimal = (".", ",") if _language(locale) == "de" else (",", ".")
    units, fraction = divmod(abs(minor), 10**exponent)
    text = _group(str(units), thousands)
    if exponent:
        text += decimal + str(fraction).rjust(exponent, "0")
    return f"-{text}" if minor < 0 else text


def format_amount(minor: int, currency: str, locale: str) -> str:
    """``format_amount(123456, "eur", "de")`` → ``1.234,56 €``; ``"en"`` → ``€1,234.56``.

    Negative amounts get a leading minus (``-2,50 €``, ``-€2.50``, as CLDR).
    """
    _check_minor(minor)
    code = currency.strip().lower()
    number = format_number(abs(minor), currency_exponent(code), locale)
    sign = "-" if minor < 0 else ""
    symbol = _SYMBOLS.get(code)
    if _language(locale) == "de":
        return f"{sign}{number} {symbol or code.upper()}"
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{code.upper()} {number}"


def format_date(iso_or_dt: str | date | datetime, locale: str) -> str:
    """A calendar date for people: ``01.12.2026`` (de) or ``1 December 2026`` (en).

    Accepts an ISO date string, an RFC 3339 date-time string, a ``date`` or an aware
    ``datetime``; instants are shown as their date in Europe/Berlin (SPEC §2).
    """
    day: date
    if isinstance(iso_or_dt, datetime):
        if iso_or_dt.tzinfo is None or iso_or_dt.utcoffset() is None:
            raise ValueError(f"datetime must be timezone-aware, got {iso_or_dt.isoformat()}")
        day = iso_or_dt.astimezone(BERLIN).date()
    elif isinstance(iso_or_dt, date):
        day = iso_or_dt
    elif isinstance(iso_or_dt, str):
        day = due_instant(iso_or_dt).astimezone(BERLIN).date()
    else:
        raise TypeError(f"expected an ISO date string, date or datetime, got {iso_or_dt!r}")
    if _language(locale) == "de":
        return f"{day.day:02d}.{day.month:02d}.{day.year:04d}"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


# Stripe's "Minimum and maximum charge amounts" (docs.stripe.com/currencies#minimum-and-
# maximum-charge-amounts): a PaymentIntent below the minimum is refused (400
# `amount_too_small`); the maximum for a PaymentIntent is 99,999,999 minor units
# (`amount_too_large`). Currencies not listed here are treated like EUR (50).
STRIPE_MINIMUM_CHARGE: Final[dict[str, int]] = {
    "eur": 50,
    "usd": 50,
    "chf": 50,
    "gbp": 30,
    "dkk": 250,
    "nok": 300,
    "sek": 300,
    "pln": 200,
    "czk": 1500,
    "huf": 17500,
}
STRIPE_MAXIMUM_CHARGE: Final = 99_999_999


def stripe_minimum_charge(currency: str) -> int:
    """The smallest amount Stripe debits in `currency` (minor units); a residue below it is
    not debited but stays in the claim (issue 10 item 1)."""
    return STRIPE_MINIMUM_CHARGE.get(currency.lower(), 50)
