"""The seller's details on every notice: bank account and mandatory business-letter details.

A Mahnung is a business letter ("Geschäftsbrief"), and e-mails are business letters too
("gleichviel welcher Form", wording since the EHUG of 10 Nov 2006). What must appear depends
on the legal form:

- GmbH and UG (haftungsbeschränkt): legal form, seat, register court, register number and
  *all* managing directors with surname and at least one first name written out
  (§ 35a Abs. 1 GmbHG; the UG is a GmbH, § 5a GmbHG); the chair of a supervisory board if
  the company has one.
- AG: the same, the board members ("Vorstand", its chair named as such) and the chair of the
  supervisory board (§ 80 Abs. 1 AktG).
- eG: legal form, seat, register court and cooperative register number, all board members
  and the chair of the supervisory board (§ 25a Abs. 1 GenG).
- Registered merchant (e.K.): the firm with "e.K.", the place of business, register court
  and register number (§ 37a Abs. 1 HGB).
- OHG and KG: legal form, seat, register court and register number; when no partner is a
  natural person (GmbH & Co. KG) also the general partner's firm with its § 35a GmbHG /
  § 80 AktG details (§ 125 HGB as amended by the MoPeG from 1 Jan 2024; before, §§ 125a,
  177a HGB).
- A sole trader without a register entry ("Einzelunternehmen", Kleingewerbe, freelancer):
  no register details, but the owner's surname with at least one first name written out and
  an address for service (IHK leaflets "Geschäftsbriefbogen des Kleingewerbetreibenden",
  citing § 15b GewO).

The VAT id (USt-IdNr.) is not required on letters, only on invoices (§ 14 Abs. 4 Nr. 2
UStG); it is shown when configured and checked for its format.

§ 35a Abs. 2 GmbHG (and its siblings) exempt forms sent within an existing business
relationship; whether a Mahnung qualifies is disputed, so the details are always printed —
they cost one footer.

Nothing here does I/O except ``schwifty``'s bundled bank registry (package data).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import schwifty
from schwifty.exceptions import SchwiftyException

if TYPE_CHECKING:
    from core.settings import Settings


class SellerDetails(Protocol):
    """What the functions below read: the `MAHNWERK_SELLER_*` settings (core.settings) or
    one seller of a multi-seller platform (core.sellers.SellerProfile, issue 14)."""

    @property
    def seller_name(self) -> str: ...
    @property
    def seller_address(self) -> str: ...
    @property
    def seller_email(self) -> str: ...
    @property
    def seller_iban(self) -> str: ...
    @property
    def seller_account_holder(self) -> str: ...
    @property
    def seller_legal_form(self) -> str: ...
    @property
    def seller_seat(self) -> str: ...
    @property
    def seller_register_court(self) -> str: ...
    @property
    def seller_register_number(self) -> str: ...
    @property
    def seller_managing_directors(self) -> str: ...
    @property
    def seller_supervisory_board_chair(self) -> str: ...
    @property
    def seller_vat_id(self) -> str: ...


@dataclass(frozen=True)
class LegalForm:
    key: str
    designation: str | None  # how the firm shows the form ("GmbH"); None: no Firma
    register: bool  # register court and number are mandatory
    representatives: bool  # managing directors / board / owner are mandatory
    supervisory_chair: bool  # the chair of the supervisory board is mandatory
    source: str
    # how the footer labels MAHNWERK_SELLER_MANAGING_DIRECTORS, de / en
    label_de: str
    label_en: str


LEGAL_FORMS: Final[dict[str, LegalForm]] = {
    f.key: f
    for f in (
        LegalForm(
            "GmbH",
            "GmbH",
            True,
            True,
            False,
            "§ 35a GmbHG",
            "Geschäftsführer",
            "Managing directors",
        ),
        LegalForm(
            "UG (haftungsbeschränkt)",
            "UG (haftungsbeschränkt)",
            True,
            True,
            False,
            "§ 35a GmbHG, § 5a GmbHG",
            "Geschäftsführer",
            "Managing directors",
        ),
        LegalForm("AG", "AG", True, True, True, "§ 80 AktG", "Vorstand", "Management board"),
        LegalForm("eG", "eG", True, True, True, "§ 25a GenG", "Vorstand", "Management board"),
        LegalForm("e.K.", "e.K.", True, False, False, "§ 37a HGB", "Inhaber", "Owner"),
        LegalForm("OHG", "OHG", True, False, False, "§ 125 HGB", "Gesellschafter", "Partners"),
        LegalForm("KG", "KG", True, False, False, "§ 125 HGB", "Komplementär", "General partner"),
        LegalForm(
            "GmbH & Co. KG",
            "GmbH & Co. KG",
            True,
            True,  # the general partner GmbH and its managing directors (§ 125 Abs. 1 S. 2)
            False,
            "§ 125 HGB, § 35a GmbHG",
            "Persönlich haftende Gesellschafterin",
            "General partner",
        ),
        LegalForm(
            "Einzelunternehmen",
            None,
            False,  # not registered; a registered sole trader is an e.K.
            True,  # the owner's name with a first name written out
            False,
            "IHK, § 15b GewO",
            "Inhaber",
            "Owner",
        ),
    )
}

_FORM_ALIASES: Final[dict[str, str]] = {
    "gmbh": "GmbH",
    "ug": "UG (haftungsbeschränkt)",
    "ug (haftungsbeschränkt)": "UG (haftungsbeschränkt)",
    "ug (haftungsbeschraenkt)": "UG (haftungsbeschränkt)",
    "ag": "AG",
    "eg": "eG",
    "e.k.": "e.K.",
    "ek": "e.K.",
    "e. k.": "e.K.",
    "e.kfr.": "e.K.",
    "e. kfr.": "e.K.",
    "ohg": "OHG",
    "kg": "KG",
    "gmbh & co. kg": "GmbH & Co. KG",
    "gmbh & co kg": "GmbH & Co. KG",
    "einzelunternehmen": "Einzelunternehmen",
    "sole_trader": "Einzelunternehmen",
    "sole trader": "Einzelunternehmen",
}


def parse_legal_form(raw: str) -> str:
    """``gmbh`` → ``GmbH``; an unknown form raises ValueError listing the known ones."""
    key = " ".join(raw.strip().lower().split())
    if key in _FORM_ALIASES:
        return _FORM_ALIASES[key]
    raise ValueError(f"unknown legal form {raw.strip()!r} (one of {', '.join(LEGAL_FORMS)})")


def parse_iban(raw: str) -> str:
    """The IBAN in electronic form (no spaces), checked by ``schwifty``: country, length,
    checksum and, where the registry knows it, the national bank code."""
    try:
        return str(schwifty.IBAN(raw).compact)
    except SchwiftyException as exc:
        raise ValueError(f"not a valid IBAN ({exc})") from None


def format_iban(iban: str) -> str:
    """``DE89 3704 0044 0532 0130 00``: the paper form in groups of four (EPC guidance)."""
    return str(schwifty.IBAN(iban).formatted)


def parse_bic(raw: str) -> str:
    try:
        return str(schwifty.BIC(raw).compact)
    except SchwiftyException as exc:
        raise ValueError(f"not a valid BIC ({exc})") from None


_CREDITOR_ID_RE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{3}[A-Z0-9]{1,28}")


def creditor_id_check_digits(creditor_id: str) -> int:
    """The check digits of a SEPA creditor identifier: ISO 7064 MOD 97-10 over the national
    identifier followed by the country code and ``00``, letters as 10..35, with the 3-character
    business code left out (EPC262-08 "Creditor Identifier Overview"; Bundesbank,
    "Gläubiger-Identifikationsnummer": ``DE98ZZZ09999999999``)."""
    national = creditor_id[7:]
    digits = "".join(str(int(ch, 36)) for ch in national + creditor_id[:2] + "00")
    return 98 - int(digits) % 97


def parse_creditor_id(raw: str) -> str:
    """A SEPA creditor id (Gläubiger-ID): country, 2 check digits, 3-character business code,
    national part; German ones have 18 characters; the check digits must match."""
    v = re.sub(r"\s", "", raw).upper()
    if not _CREDITOR_ID_RE.fullmatch(v):
        raise ValueError("must be a SEPA creditor id, e.g. DE98ZZZ09999999999")
    if v.startswith("DE") and len(v) != 18:
        raise ValueError(f"a German creditor id has 18 characters, got {len(v)}")
    expected = creditor_id_check_digits(v)
    if int(v[2:4]) != expected:
        raise ValueError(
            f"{v} fails the check digits (ISO 7064 MOD 97-10: expected {expected:02d})"
        )
    return v


def _de_vat_check_digit_ok(digits: str) -> bool:
    # The Bundeszentralamt für Steuern's check digit for the USt-IdNr.: ISO/IEC 7064
    # MOD 11,10 over the first 8 digits (the 9th is the check digit).
    product = 10
    for d in digits[:8]:
        total = (int(d) + product) % 10 or 10
        product = (2 * total) % 11
    return (11 - product) % 10 == int(digits[8])


_VAT_RE = re.compile(r"[A-Z]{2}[0-9A-Z+*]{2,13}")


def parse_vat_id(raw: str) -> str:
    """A VAT id (USt-IdNr.): German ones are ``DE`` + 9 digits with a check digit; other EU
    ones are checked for their general shape (country code + 2–13 characters)."""
    v = re.sub(r"[\s.\-]", "", raw).upper()
    if v.startswith("DE"):
        digits = v[2:]
        if not re.fullmatch(r"[0-9]{9}", digits):
            raise ValueError("a German VAT id is DE followed by 9 digits, e.g. DE999999995")
        if not _de_vat_check_digit_ok(digits):
            raise ValueError(f"{v} fails the USt-IdNr. check digit")
        return v
    if not _VAT_RE.fullmatch(v):
        raise ValueError("must be a VAT id: country code and number, e.g. DE999999995")
    return v


# Handelsregister A/B, Genossenschafts-, Partnerschafts-, Vereins-, Gesellschaftsregister;
# Berlin (Charlottenburg) appends a letter: "HRB 123456 B".
_REGISTER_RE = re.compile(r"(HRA|HRB|GnR|GenR|PR|VR|GsR)\s?[0-9]{1,7}(\s?[A-Z]{1,3})?")


def parse_register_number(raw: str) -> str:
    v = " ".join(raw.split())
    if not _REGISTER_RE.fullmatch(v):
        raise ValueError("must be a register number such as 'HRB 123456' or 'HRB 123456 B'")
    return v


# The EPC QR code's beneficiary name has at most 70 characters (EPC069-12, element 6).
ACCOUNT_HOLDER_MAX = 70

_CITY_RE = re.compile(r"\b\d{4,5}\s+([^,\d][^,]*)$")


def seat_of(settings: SellerDetails) -> str | None:
    """MAHNWERK_SELLER_SEAT, else the town of MAHNWERK_SELLER_ADDRESS ("…, 10115 Berlin")."""
    if settings.seller_seat:
        return settings.seller_seat
    m = _CITY_RE.search(settings.seller_address.strip())
    return m.group(1).strip() if m else None


def legal_form_of(settings: SellerDetails) -> LegalForm | None:
    return LEGAL_FORMS.get(settings.seller_legal_form or "")


def legal_name(settings: SellerDetails) -> str:
    """The firm as on the register: the name, with the legal form appended if the name
    does not already carry it (§ 4 GmbHG, § 19 HGB require it in the firm)."""
    form = legal_form_of(settings)
    name = settings.seller_name.strip()
    if form is None or form.designation is None or name.endswith(form.designation):
        return name
    return f"{name} {form.designation}"


def account_holder(settings: SellerDetails) -> str:
    return settings.seller_account_holder or legal_name(settings)


def _env_var(var: str) -> str:
    return f"MAHNWERK_SELLER_{var}"


def seller_legal_problems(
    settings: SellerDetails, name: Callable[[str], str] = _env_var
) -> list[str]:
    """What a production start-up refuses: one line per missing or unusable seller detail,
    each naming its variable. Empty when the notices can be sent as they are.

    `name` maps the detail (``NAME``, ``IBAN``, ``REGISTER_COURT``, …) to what the line names:
    the environment variable by default, an API field for a seller created through
    ``/v1/sellers`` (api.schemas.seller_problem_field)."""
    problems: list[str] = []

    def need(var: str, value: object, why: str) -> None:
        if not value:
            problems.append(f"{name(var)}: not set ({why})")

    need("NAME", settings.seller_name.strip(), "the seller's name on every notice")
    need("ADDRESS", settings.seller_address.strip(), "an address for service on every notice")
    need("EMAIL", settings.seller_email.strip(), "where customers reply")
    need(
        "IBAN",
        settings.seller_iban,
        "every notice that asks for money names the account to transfer to",
    )
    form = legal_form_of(settings)
    if form is None:
        need(
            "LEGAL_FORM",
            None,
            f"the business-letter details depend on it; one of {', '.join(LEGAL_FORMS)}",
        )
    else:
        if form.register:
            need("REGISTER_COURT", settings.seller_register_court, f"required by {form.source}")
            need("REGISTER_NUMBER", settings.seller_register_number, f"required by {form.source}")
            if seat_of(settings) is None:
                need("SEAT", None, f"the seat is required by {form.source}")
        if form.representatives:
            need(
                "MANAGING_DIRECTORS",
                settings.seller_managing_directors,
                f"{form.label_de} with first and last name, required by {form.source}",
            )
        if form.supervisory_chair:
            need(
                "SUPERVISORY_BOARD_CHAIR",
                settings.seller_supervisory_board_chair,
                f"required by {form.source}",
            )
    if len(account_holder(settings)) > ACCOUNT_HOLDER_MAX:
        problems.append(
            f"{name('ACCOUNT_HOLDER')}: the account holder "
            f"{account_holder(settings)!r} is longer than {ACCOUNT_HOLDER_MAX} characters "
            "(EPC QR code limit); set a shorter one"
        )
    return problems


def require_complete_seller(settings: Settings) -> None:
    """Refuse a production start (`mahnwerk api`, `mahnwerk worker`) while a mandatory
    seller detail is missing: one line naming every variable. The dev stack sets complete
    demo values (DEMO_SELLER_ENV), so it passes."""
    from core.settings import ConfigError  # core.settings imports this module

    problems = seller_legal_problems(settings)
    if problems:
        raise ConfigError("configuration error: " + "; ".join(problems))


def legal_footer(settings: SellerDetails, locale: str) -> list[str]:
    """The business-letter details as footer lines in `locale` (``de`` | ``en``)."""
    de = locale == "de"
    form = legal_form_of(settings)
    lines = [f"{legal_name(settings)} · {settings.seller_address}"]
    register: list[str] = []
    seat = seat_of(settings)
    if form is not None and form.register:
        if seat:
            if form.key == "e.K.":  # § 37a HGB: "Ort seiner Handelsniederlassung"
                register.append(
                    f"Ort der Niederlassung: {seat}" if de else f"Place of business: {seat}"
                )
            else:
                register.append(f"Sitz: {seat}" if de else f"Registered office: {seat}")
    if settings.seller_register_court and settings.seller_register_number:
        court = settings.seller_register_court
        number = settings.seller_register_number
        register.append(
            f"Registergericht: {court}, {number}" if de else f"Register court: {court}, {number}"
        )
    if register:
        lines.append(" · ".join(register))
    people: list[str] = []
    if settings.seller_managing_directors:
        if form is not None:
            label = form.label_de if de else form.label_en
        else:
            label = "Vertreten durch" if de else "Represented by"
        people.append(f"{label}: {settings.seller_managing_directors}")
    if settings.seller_supervisory_board_chair:
        label = "Vorsitzende(r) des Aufsichtsrats" if de else "Chair of the supervisory board"
        people.append(f"{label}: {settings.seller_supervisory_board_chair}")
    if people:
        lines.append(" · ".join(people))
    if settings.seller_vat_id:
        vat = settings.seller_vat_id
        lines.append(f"USt-IdNr.: {vat}" if de else f"VAT ID: {vat}")
    return lines


# Complete, plausible demo values for `mahnwerk dev` (core/devstack.py) and the tests that
# start `mahnwerk api`/`worker` processes. The IBAN is the ISO 13616 registry's example for
# Germany; the VAT id is made up and only passes the check digit.
DEMO_SELLER_ENV: Final[dict[str, str]] = {
    "MAHNWERK_SELLER_LEGAL_FORM": "GmbH",
    "MAHNWERK_SELLER_REGISTER_COURT": "Amtsgericht Charlottenburg",
    "MAHNWERK_SELLER_REGISTER_NUMBER": "HRB 999999 B",
    "MAHNWERK_SELLER_MANAGING_DIRECTORS": "Erika Beispiel, Max Muster",
    "MAHNWERK_SELLER_VAT_ID": "DE999999995",
    "MAHNWERK_SELLER_IBAN": "DE89370400440532013000",
    "MAHNWERK_SELLER_BIC": "COBADEFFXXX",
}
