"""The seller as an invoice names it, and the seller's tax settings (issue 15).

One accessor, :func:`invoice_seller`, for everything the invoices read about the seller:
the `MAHNWERK_SELLER_*` and invoice settings (core/settings.py) for the default seller, the
seller's row of the `sellers` table (issue 14, core/sellers.py: its legal and bank details
and its tax settings, migration 0010) for any other, so nothing else in invoicing reads
seller settings directly. Invoice numbers are counted per seller key (the seller id,
`default` for the settings' seller), each seller in its own series.

Not tax advice: whether the seller is a small business, holds the § 4 Nr. 21 certificate or
is registered for OSS is the seller's configuration (docs/invoices.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from core.seller import legal_footer, legal_name, seat_of
from domain.vat import SellerTax

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from core.sellers import SellerProfile
    from core.settings import Settings

DEFAULT_SELLER: Final = "default"
INVOICE_SERIES: Final = "invoice"
CREDIT_NOTE_SERIES: Final = "credit_note"


def parse_tax_number(raw: str) -> str:
    """A German tax number (Steuernummer): the Land's form with slashes (``21/815/08150``)
    or the 13-digit federal form (``1121081508150``); 10 to 13 digits."""
    v = re.sub(r"\s", "", raw)
    if not re.fullmatch(r"[0-9/]+", v):
        raise ValueError("a tax number has digits and '/' only, e.g. 21/815/08150")
    digits = v.replace("/", "")
    if not 10 <= len(digits) <= 13:
        raise ValueError(f"a tax number has 10 to 13 digits, got {len(digits)}")
    return v


NUMBER_PREFIX = r"[A-Za-z0-9_-]{0,16}"


def parse_number_prefix(raw: str) -> str:
    """The prefix of an invoice or credit-note number (``RE-``): it is part of the number,
    which the API reads in a path (``/v1/invoices/RE-000001``)."""
    if not re.fullmatch(NUMBER_PREFIX, raw):
        raise ValueError("at most 16 letters, digits, '-' or '_' (e.g. RE-)")
    return raw


def parse_phone(raw: str) -> str:
    """The seller's telephone number for XRechnung invoices (BR-DE-6), spaces collapsed."""
    v = " ".join(raw.split())
    if v and not re.fullmatch(r"\+?[0-9 ()/-]{5,30}", v):
        raise ValueError("must be a telephone number, e.g. +49 30 1234567")
    return v


def credit_note_prefix_problem(series: str, invoice_prefix: str, credit_prefix: str) -> str | None:
    """An own credit-note series needs a prefix of its own: the numbers of two gapless
    series must not look alike."""
    if series == "own" and credit_prefix == invoice_prefix:
        return (
            f"an own credit-note series needs its own prefix (both are {invoice_prefix!r}); "
            "or credit-note series `invoice`"
        )
    return None


_POSTAL_RE = re.compile(r"^(?P<street>.+?),\s*(?P<postal>\d{4,5})\s+(?P<city>[^,]+)$")


def split_address(address: str) -> dict[str, str]:
    """``Musterstraße 1, 10115 Berlin`` → line1, postal_code, city (the structured postal
    address EN 16931 wants, BG-5). What does not parse stays in line1."""
    m = _POSTAL_RE.match(" ".join(address.split()))
    if m is None:
        return {"line1": address.strip(), "postal_code": "", "city": ""}
    return {"line1": m["street"], "postal_code": m["postal"], "city": m["city"].strip()}


@dataclass(frozen=True)
class InvoiceSeller:
    key: str  # numbering key: the seller id, `default` for the settings' seller
    name: str  # the full name (§ 14 Abs. 4 Nr. 1 UStG), with the legal form
    address: dict[str, str]  # line1, postal_code, city, country
    vat_id: str
    tax_number: str
    email: str
    phone: str
    iban: str
    bic: str
    account_holder: str
    footer_de: tuple[str, ...]
    footer_en: tuple[str, ...]
    tax: SellerTax
    invoice_timing: str  # at_due | at_payment
    invoicing: bool
    invoice_prefix: str
    credit_note_series: str  # own | invoice
    credit_note_prefix: str
    product_tax: str  # standard | reduced | education
    electronic_services: bool

    def as_party(self) -> dict[str, Any]:
        """What an invoice document stores about the seller."""
        return {
            "key": self.key,
            "name": self.name,
            "address": dict(self.address),
            "vat_id": self.vat_id,
            "tax_number": self.tax_number,
            "email": self.email,
            "phone": self.phone,
            "iban": self.iban,
            "bic": self.bic,
            "account_holder": self.account_holder,
            "footer_de": list(self.footer_de),
            "footer_en": list(self.footer_en),
            "small_business": self.tax.small_business,
        }

    def series_for(self, kind: str) -> tuple[str, str]:
        """(counter series, number prefix) of an `invoice` or a `credit_note`."""
        if kind == "credit_note" and self.credit_note_series == "own":
            return CREDIT_NOTE_SERIES, self.credit_note_prefix
        return INVOICE_SERIES, self.invoice_prefix


def invoice_seller(
    seller_id: str | None = None,
    settings: Settings | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> InvoiceSeller:
    """The seller `seller_id` (None or ``default``: the settings' seller) as its invoices
    name it; any other seller is read from the `sellers` table through `sessions`.
    LookupError when there is no such seller."""
    if settings is None:
        from core.settings import get_settings

        settings = get_settings()
    from core.sellers import DEFAULT_SELLER_ID, SellerProfile

    key = seller_id or DEFAULT_SELLER
    if key == DEFAULT_SELLER_ID:
        return invoice_seller_of(SellerProfile.from_settings(settings), settings)
    if sessions is None:
        raise LookupError(f"unknown seller {key!r} (no sellers table to read)")
    from core.models import Seller

    with sessions() as s:
        row = s.get(Seller, key)
        if row is None:
            raise LookupError(f"unknown seller {key!r}")
        profile = SellerProfile.from_row(row)
    return invoice_seller_of(profile, settings)


def invoice_seller_of(profile: SellerProfile, settings: Settings) -> InvoiceSeller:
    """`profile` (the settings' seller or a row of `sellers`) as its invoices name it. The
    timing, the products' default tax category and whether they are electronic services
    are the platform's (settings); everything about the seller is the seller's."""
    address = {**split_address(profile.address), "country": "DE"}
    if not address["city"]:
        address["city"] = seat_of(profile) or ""
    name = legal_name(profile)
    series = profile.credit_note_series or settings.credit_note_series
    return InvoiceSeller(
        key=profile.id,
        name=name,
        address=address,
        vat_id=profile.vat_id,
        tax_number=profile.tax_number,
        email=profile.reply_to,
        phone=profile.phone,
        iban=profile.iban,
        bic=profile.bic,
        account_holder=profile.account_holder or name,
        footer_de=tuple(legal_footer(profile, "de")),
        footer_en=tuple(legal_footer(profile, "en")),
        tax=SellerTax(
            small_business=profile.small_business,
            education_certificate=profile.education_exempt,
            oss=profile.oss,
        ),
        invoice_timing=settings.invoice_timing,
        invoicing=settings.invoicing and profile.invoicing,
        invoice_prefix=(
            profile.invoice_prefix
            if profile.invoice_prefix is not None
            else settings.invoice_prefix
        ),
        credit_note_series=series,
        credit_note_prefix=(
            profile.credit_note_prefix
            if profile.credit_note_prefix is not None
            else settings.credit_note_prefix
        ),
        product_tax=settings.invoice_product_tax,
        electronic_services=settings.invoice_electronic_services,
    )


# What invoice_problems names: the settings' variables (the default seller) or the fields
# of /v1/sellers (a seller of the platform).
SETTINGS_NAMES: Final = {
    "tax_number": "MAHNWERK_SELLER_TAX_NUMBER",
    "vat_id": "MAHNWERK_SELLER_VAT_ID",
    "address": "MAHNWERK_SELLER_ADDRESS",
    "invoicing": "MAHNWERK_INVOICING",
}


def invoice_problems(
    seller: InvoiceSeller, name: Callable[[str], str] = SETTINGS_NAMES.__getitem__
) -> list[tuple[str, str]]:
    """What keeps the seller's invoices from being complete (§ 14 Abs. 4 UStG), as
    (variable or field, reason); empty when invoicing is off. `name` maps ``tax_number``,
    ``vat_id``, ``address`` and ``invoicing`` to what a problem names."""
    if not seller.invoicing:
        return []
    problems: list[tuple[str, str]] = []
    off = "=false" if name("invoicing").isupper() else ": false"
    if not (seller.vat_id or seller.tax_number):
        problems.append(
            (
                name("tax_number"),
                f"missing, and no {name('vat_id')}: an invoice names one "
                f"(§ 14 Abs. 4 Nr. 2 UStG); or {name('invoicing')}{off}",
            )
        )
    if seller.tax.oss and not seller.vat_id:
        problems.append((name("vat_id"), "missing: OSS registration goes with one"))
    if not (seller.address.get("postal_code") and seller.address.get("city")):
        problems.append(
            (
                name("address"),
                "an invoice needs street, postal code and town ('Musterstraße 1, 10115 Berlin')",
            )
        )
    return problems
