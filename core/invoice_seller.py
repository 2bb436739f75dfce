"""The seller as an invoice names it, and the seller's tax settings (issue 15).

One accessor, :func:`invoice_seller`, for everything the invoices read about the seller:
today the `MAHNWERK_SELLER_*` and invoice settings (core/settings.py) for the one default
seller; a multi-seller platform (issue 14) backs it with its sellers table by `seller_id`,
so nothing else in invoicing reads seller settings directly. Invoice numbers are counted
per seller key (`default` for the settings' seller).

Not tax advice: whether the seller is a small business, holds the § 4 Nr. 21 certificate or
is registered for OSS is the seller's configuration (docs/invoices.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from core.seller import legal_footer, legal_name, seat_of
from domain.vat import SellerTax

if TYPE_CHECKING:
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


def invoice_seller(seller_id: str | None = None, settings: Settings | None = None) -> InvoiceSeller:
    """The seller `seller_id` (None: the default seller) as its invoices name it.

    Only the default seller exists until the sellers table (issue 14) backs this function;
    another id raises LookupError."""
    if settings is None:
        from core.settings import get_settings

        settings = get_settings()
    key = seller_id or DEFAULT_SELLER
    if key != DEFAULT_SELLER:
        raise LookupError(f"unknown seller {key!r}")
    address = {**split_address(settings.seller_address), "country": "DE"}
    if not address["city"]:
        address["city"] = seat_of(settings) or ""
    return InvoiceSeller(
        key=key,
        name=legal_name(settings),
        address=address,
        vat_id=settings.seller_vat_id,
        tax_number=settings.seller_tax_number,
        email=settings.seller_email,
        phone=settings.seller_phone,
        iban=settings.seller_iban,
        bic=settings.seller_bic,
        account_holder=settings.seller_account_holder or legal_name(settings),
        footer_de=tuple(legal_footer(settings, "de")),
        footer_en=tuple(legal_footer(settings, "en")),
        tax=SellerTax(
            small_business=settings.seller_small_business,
            education_certificate=settings.seller_education_exempt,
            oss=settings.seller_oss,
        ),
        invoice_timing=settings.invoice_timing,
        invoicing=settings.invoicing,
        invoice_prefix=settings.invoice_prefix,
        credit_note_series=settings.credit_note_series,
        credit_note_prefix=settings.credit_note_prefix,
        product_tax=settings.invoice_product_tax,
        electronic_services=settings.invoice_electronic_services,
    )


def invoice_problems(seller: InvoiceSeller) -> list[tuple[str, str]]:
    """What keeps the seller's invoices from being complete (§ 14 Abs. 4 UStG), as
    (variable, reason); empty when invoicing is off."""
    if not seller.invoicing:
        return []
    problems: list[tuple[str, str]] = []
    if not (seller.vat_id or seller.tax_number):
        problems.append(
            (
                "MAHNWERK_SELLER_TAX_NUMBER",
                "missing, and no MAHNWERK_SELLER_VAT_ID: an invoice names one "
                "(§ 14 Abs. 4 Nr. 2 UStG); or MAHNWERK_INVOICING=false",
            )
        )
    if seller.tax.oss and not seller.vat_id:
        problems.append(("MAHNWERK_SELLER_VAT_ID", "missing: OSS registration goes with one"))
    if not (seller.address.get("postal_code") and seller.address.get("city")):
        problems.append(
            (
                "MAHNWERK_SELLER_ADDRESS",
                "an invoice needs street, postal code and town ('Musterstraße 1, 10115 Berlin')",
            )
        )
    return problems
