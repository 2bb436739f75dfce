"""Stripe's documented test values and what they do (docs.stripe.com/testing).

Magic card PaymentMethod ids (`pm_card_visa`, `pm_card_visa_chargeDeclinedInsufficientFunds`,
...) and the SEPA test IBANs map to an outcome. A concrete PaymentMethod created from one of
them keeps that outcome (`store.profiles`).

Stand-in extension: `pm_card_decline_<decline_code>` (e.g. `pm_card_decline_do_not_honor`)
declines with `card_declined` and that decline code, so every decline code can be exercised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .ids import fingerprint

CardOutcome = Literal["succeed", "decline", "authenticate", "authenticate_on_session"]


@dataclass(frozen=True)
class Decline:
    """A card error as Stripe reports it (`code`, `decline_code`, message, failed param)."""

    code: str
    decline_code: str
    message: str
    param: str | None = None
    advice_code: str | None = None


@dataclass(frozen=True)
class CardProfile:
    brand: str
    last4: str
    country: str = "US"
    funding: str = "credit"
    outcome: CardOutcome = "succeed"
    decline: Decline | None = None
    # Real Stripe checks a card when it is attached; decline test cards fail there
    # (only used with StandinConfig.strict_attach).
    declines_on_attach: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint("card", self.brand, self.last4, self.country)


SepaOutcome = Literal["succeed", "succeed_late", "fail", "dispute"]


@dataclass(frozen=True)
class SepaProfile:
    iban: str
    outcome: SepaOutcome = "succeed"
    failure_code: str | None = None

    @property
    def country(self) -> str:
        return self.iban[:2]

    @property
    def last4(self) -> str:
        return self.iban[-4:]

    @property
    def bank_code(self) -> str:
        return self.iban[4:12] if self.country == "DE" else self.iban[4:8]

    @property
    def fingerprint(self) -> str:
        return fingerprint("sepa", self.iban)


_GENERIC = "Your card was declined."
_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "incorrect_number": "Your card number is incorrect.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}
_ADVICE = {
    "insufficient_funds": "try_again_later",
    "processing_error": "try_again_later",
    "try_again_later": "try_again_later",
    "lost_card": "do_not_try_again",
    "stolen_card": "do_not_try_again",
    "pickup_card": "do_not_try_again",
    "expired_card": "confirm_card_data",
    "incorrect_cvc": "confirm_card_data",
}


def card_declined(decline_code: str) -> Decline:
    """`card_declined` with a decline code, as issuers' declines are reported."""
    return Decline(
        "card_declined",
        decline_code,
        _MESSAGES.get(decline_code, _GENERIC),
        advice_code=_ADVICE.get(decline_code),
    )


def _own_code(code: str, param: str | None = None) -> Decline:
    """Errors Stripe reports with their own `code` (and the same decline_code)."""
    return Decline(code, code, _MESSAGES.get(code, _GENERIC), param, _ADVICE.get(code))


AUTHENTICATION_REQUIRED = _own_code("authentication_required")


def _declining(last4: str, decline: Decline, brand: str = "visa") -> CardProfile:
    return CardProfile(brand, last4, outcome="decline", decline=decline, declines_on_attach=True)


MAGIC_CARDS: dict[str, CardProfile] = {
    "pm_card_visa": CardProfile("visa", "4242"),
    "pm_card_visa_debit": CardProfile("visa", "5556", funding="debit"),
    "pm_card_mastercard": CardProfile("mastercard", "4444"),
    "pm_card_mastercard_debit": CardProfile("mastercard", "8210", funding="debit"),
    "pm_card_mastercard_prepaid": CardProfile("mastercard", "5100", funding="prepaid"),
    "pm_card_amex": CardProfile("amex", "8431"),
    "pm_card_discover": CardProfile("discover", "1117"),
    "pm_card_diners": CardProfile("diners", "0004"),
    "pm_card_jcb": CardProfile("jcb", "0505"),
    "pm_card_unionpay": CardProfile("unionpay", "0005"),
    "pm_card_chargeDeclined": _declining("0002", card_declined("generic_decline")),
    "pm_card_visa_chargeDeclined": _declining("0002", card_declined("generic_decline")),
    "pm_card_visa_chargeDeclinedInsufficientFunds": _declining(
        "9995", card_declined("insufficient_funds")
    ),
    "pm_card_chargeDeclinedInsufficientFunds": _declining(
        "9995", card_declined("insufficient_funds")
    ),
    "pm_card_visa_chargeDeclinedLostCard": _declining("9987", card_declined("lost_card")),
    "pm_card_chargeDeclinedLostCard": _declining("9987", card_declined("lost_card")),
    "pm_card_visa_chargeDeclinedStolenCard": _declining("9979", card_declined("stolen_card")),
    "pm_card_chargeDeclinedStolenCard": _declining("9979", card_declined("stolen_card")),
    "pm_card_chargeDeclinedExpiredCard": _declining("0069", _own_code("expired_card", "exp_month")),
    "pm_card_chargeDeclinedIncorrectCvc": _declining("0127", _own_code("incorrect_cvc", "cvc")),
    "pm_card_chargeDeclinedProcessingError": _declining("0119", _own_code("processing_error")),
    "pm_card_chargeDeclinedFraudulent": _declining("0019", card_declined("fraudulent")),
    "pm_card_riskLevelHighest": _declining("0019", card_declined("fraudulent")),
    "pm_card_chargeDeclinedVelocityLimitExceeded": _declining(
        "6975", card_declined("card_velocity_exceeded")
    ),
    "pm_card_chargeCustomerFail": CardProfile(
        "visa", "0341", outcome="decline", decline=card_declined("generic_decline")
    ),
    "pm_card_authenticationRequired": CardProfile(
        "visa", "3184", country="DE", outcome="authenticate"
    ),
    "pm_card_threeDSecure2Required": CardProfile("visa", "3220", outcome="authenticate"),
    "pm_card_authenticationRequiredOnSetup": CardProfile(
        "visa", "3155", outcome="authenticate_on_session"
    ),
}

# Country cards (`pm_card_de`, `pm_card_fr`, ...): Visa cards issued in that country.
_COUNTRY_LAST4 = {"de": "0016", "at": "0008", "fr": "0003", "nl": "0002", "gb": "0005"}
_COUNTRY = re.compile(r"^pm_card_([a-z]{2})$")
_DECLINE = re.compile(r"^pm_card_decline_([a-z_]{2,60})$")


def magic_card(pm_id: str) -> CardProfile | None:
    """The profile of a magic test PaymentMethod id, or None if `pm_id` is not one."""
    profile = MAGIC_CARDS.get(pm_id)
    if profile is not None:
        return profile
    match = _COUNTRY.match(pm_id)
    if match:
        code = match.group(1)
        return CardProfile("visa", _COUNTRY_LAST4.get(code, "0000"), country=code.upper())
    match = _DECLINE.match(pm_id)
    if match:
        return _declining("0002", card_declined(match.group(1)))
    return None


# --- SEPA -------------------------------------------------------------------------------

SEPA_TEST_IBANS: dict[str, SepaProfile] = {
    "DE89370400440532013000": SepaProfile("DE89370400440532013000", "succeed"),
    "DE08370400440532013003": SepaProfile("DE08370400440532013003", "succeed_late"),
    "DE62370400440532013001": SepaProfile(
        "DE62370400440532013001", "fail", "generic_could_not_process"
    ),
    "DE65370400440002222227": SepaProfile("DE65370400440002222227", "fail", "insufficient_funds"),
    "DE35370400440532013002": SepaProfile("DE35370400440532013002", "dispute"),
}

SEPA_FAILURE_MESSAGES = {
    "generic_could_not_process": "The payment could not be processed.",
    "insufficient_funds": "The customer's account has insufficient funds to cover this payment.",
    "account_closed": "The customer's bank account has been closed.",
    "debit_not_authorized": "The customer has notified their bank that this payment was "
    "unauthorized.",
}

# IBAN lengths of the SEPA countries (ISO 13616 registry).
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
    "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "VA": 22,
}  # fmt: skip


def normalize_iban(raw: str) -> str:
    return re.sub(r"\s+", "", raw).upper()


def iban_is_valid(iban: str) -> bool:
    """Country length and the ISO 7064 mod-97 check digits, as Stripe validates."""
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+", iban):
        return False
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def sepa_profile(iban: str) -> SepaProfile:
    return SEPA_TEST_IBANS.get(iban) or SepaProfile(iban, "succeed")
