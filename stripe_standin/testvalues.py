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


SepaOutcome = Literal["succeed", "succeed_late", "fail", "fail_late", "dispute"]


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

# Stripe's SEPA Direct Debit test IBANs (docs.stripe.com/testing#sepa-direct-debit, "Test
# account numbers"): eight per country, in the docs' order. Their outcomes:
#   success             processing -> succeeded
#   successDelayed      processing -> succeeded "after at least three minutes"
#   failed              processing -> requires_payment_method
#   failedDelayed       processing -> requires_payment_method, after at least three minutes
#   disputed            processing -> succeeded, "but a dispute is immediately created"
#   exceedsWeeklyVolumeLimit       fails with `charge_exceeds_source_limit` ("payment amount
#                                  causing account to exceed its weekly payment volume limit")
#   exceedsWeeklyTransactionLimit  fails with `charge_exceeds_weekly_limit` ("payment amount
#                                  exceeding account's transaction volume limit")
#   insufficientFunds   fails with `insufficient_funds`
# The docs give no failure code for the plain `failed` IBANs; the stand-in reports
# `generic_could_not_process` for them. Delays are `sepa_delay` / `sepa_long_delay` here.
_SEPA_BEHAVIOURS: tuple[tuple[SepaOutcome, str | None], ...] = (
    ("succeed", None),
    ("succeed_late", None),
    ("fail", "generic_could_not_process"),
    ("fail_late", "generic_could_not_process"),
    ("dispute", None),
    ("fail", "charge_exceeds_source_limit"),
    ("fail", "charge_exceeds_weekly_limit"),
    ("fail", "insufficient_funds"),
)
_SEPA_TABLE: dict[str, tuple[str, ...]] = {
    "AT": ("AT611904300234573201", "AT321904300235473204", "AT861904300235473202",
           "AT051904300235473205", "AT591904300235473203", "AT981904300000343434",
           "AT601904300000121212", "AT981904300002222227"),
    "BE": ("BE62510007547061", "BE78510007547064", "BE68539007547034", "BE51510007547065",
           "BE08510007547063", "BE90510000343434", "BE52510000121212", "BE90510002222227"),
    "HR": ("HR7624020064583467589", "HR6323600002337876649", "HR2725000096983499248",
           "HR6723600004878117427", "HR8724840081455523553", "HR7424020060000343434",
           "HR3624020060000121212", "HR7424020060002222227"),
    "EE": ("EE382200221020145685", "EE222200221020145682", "EE762200221020145680",
           "EE922200221020145683", "EE492200221020145681", "EE672200000000343434",
           "EE292200000000121212", "EE672200000002222227"),
    "FI": ("FI2112345600000785", "FI3712345600000788", "FI9112345600000786",
           "FI1012345600000789", "FI6412345600000787", "FI6712345600343434",
           "FI2912345600121212", "FI6712345602222227"),
    "FR": ("FR1420041010050500013M02606", "FR3020041010050500013M02609",
           "FR8420041010050500013M02607", "FR7920041010050500013M02600",
           "FR5720041010050500013M02608", "FR9720041010050000000343434",
           "FR5920041010050000000121212", "FR9720041010050000002222227"),
    "DE": ("DE89370400440532013000", "DE08370400440532013003", "DE62370400440532013001",
           "DE78370400440532013004", "DE35370400440532013002", "DE65370400440000343434",
           "DE27370400440000121212", "DE65370400440002222227"),
    "GI": ("GI60MPFS599327643783385", "GI08RRNW626436291644533", "GI41SAFA461293238477751",
           "GI50LROG772261344693297", "GI26KJBC361883934534696", "GI14NWBK000000000343434",
           "GI73NWBK000000000121212", "GI14NWBK000000002222227"),
    "IE": ("IE29AIBK93115212345678", "IE24AIBK93115212345671", "IE02AIBK93115212345679",
           "IE94AIBK93115212345672", "IE51AIBK93115212345670", "IE10AIBK93115200343434",
           "IE69AIBK93115200121212", "IE10AIBK93115202222227"),
    "LI": ("LI0508800636123378777", "LI4408800387787111369", "LI1208800143823175626",
           "LI4908800356441975566", "LI7708800125525347723", "LI2408800000000343434",
           "LI8308800000000121212", "LI2408800000002222227"),
    "LT": ("LT121000011101001000", "LT281000011101001003", "LT821000011101001001",
           "LT981000011101001004", "LT551000011101001002", "LT591000000000343434",
           "LT211000000000121212", "LT591000000002222227"),
    "LU": ("LU280019400644750000", "LU440019400644750003", "LU980019400644750001",
           "LU170019400644750004", "LU710019400644750002", "LU900010000000343434",
           "LU520010000000121212", "LU900010000002222227"),
    "NL": ("NL39RABO0300065264", "NL55RABO0300065267", "NL91ABNA0417164300",
           "NL28RABO0300065268", "NL82RABO0300065266", "NL27RABO0000343434",
           "NL86RABO0000121212", "NL27RABO0002222227"),
    "NO": ("NO9386011117947", "NO8886011117940", "NO6686011117948", "NO6186011117941",
           "NO3986011117949", "NO0586010343434", "NO6486010121212", "NO0586012222227"),
    "PT": ("PT50000201231234567890154", "PT66000201231234567890157",
           "PT23000201231234567890155", "PT39000201231234567890158",
           "PT93000201231234567890156", "PT05000201230000000343434",
           "PT64000201230000000121212", "PT05000201230000002222227"),
    "ES": ("ES0700120345030000067890", "ES2300120345030000067893", "ES9121000418450200051332",
           "ES9300120345030000067894", "ES5000120345030000067892", "ES1700120345000000343434",
           "ES7600120345000000121212", "ES1700120345000002222227"),
    "SE": ("SE3550000000054910000003", "SE5150000000054910000006", "SE0850000000054910000004",
           "SE2450000000054910000007", "SE7850000000054910000005", "SE2850000000000000343434",
           "SE8750000000000000121212", "SE2850000000000002222227"),
    "CH": ("CH9300762011623852957", "CH8656663438253651553", "CH5362200119938136497",
           "CH1843597160341964438", "CH1260378413965193069", "CH1800762000000343434",
           "CH7700762000000121212", "CH1800762000002222227"),
    "GB": ("GB82WEST12345698765432", "GB98WEST12345698765435", "GB55WEST12345698765433",
           "GB71WEST12345698765436", "GB28WEST12345698765434", "GB70WEST12345600343434",
           "GB32WEST12345600121212", "GB70WEST12345602222227"),
}  # fmt: skip

SEPA_TEST_IBANS: dict[str, SepaProfile] = {
    iban: SepaProfile(iban, outcome, code)
    for ibans in _SEPA_TABLE.values()
    for iban, (outcome, code) in zip(ibans, _SEPA_BEHAVIOURS, strict=True)
}

# `failure_message` of a failed SEPA charge. Stripe's exact wording is not published for
# every code; these paraphrase the descriptions of docs.stripe.com/error-codes and the test
# IBAN table above.
SEPA_FAILURE_MESSAGES = {
    "generic_could_not_process": "The payment could not be processed.",
    "insufficient_funds": "The customer's account has insufficient funds to cover this payment.",
    "account_closed": "The customer's bank account has been closed.",
    "debit_not_authorized": "The customer has notified their bank that this payment was "
    "unauthorized.",
    "charge_exceeds_source_limit": "This payment would exceed the account's weekly payment "
    "volume limit for SEPA Direct Debit.",
    "charge_exceeds_weekly_limit": "This payment exceeds the account's transaction volume "
    "limit for SEPA Direct Debit.",
}


def sepa_failure_message(code: str) -> str:
    return SEPA_FAILURE_MESSAGES.get(code, "The payment could not be processed.")


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
