"""Failure classification of declined debits, as data (DOMAIN.md §§ 4–5, SPEC §3).

A declined card or a returned SEPA debit is a *business* result, not an error: the workflow
asks :func:`classify` what kind of failure it is and acts on the class:

* ``soft``            – retry later on the policy's retry schedule;
* ``fix_data``        – the payment data is wrong or out of date: ask for a new or corrected
                        payment method at once, no more retries on this one;
* ``never``           – this payment method will never be approved (lost/stolen card, closed
                        account, revoked mandate): stop, never debit it again;
* ``customer_action`` – the customer must act first (authenticate, enter a PIN): send a
                        payment link.

Every class except ``soft`` is *hard* (SPEC §3): remaining retries are skipped, the customer
is asked for a new payment method, and the case enters the ladder.

Sources (keys as in DOMAIN.md):

* [S-DECL]  Stripe "Decline codes" – docs.stripe.com/declines/codes (stored crawl
            tanisss46/firecrawl docs_stripe_com_declines_codes.md)
* [S-ERR]   Stripe "Error codes" – docs.stripe.com/error-codes (same crawl)
* [S-RETRY] Stripe Smart Retries – docs.stripe.com/billing/revenue-recovery/smart-retries:
            non-retryable incorrect_number, lost_card, pickup_card, stolen_card,
            revocation_of_authorization, revocation_of_all_authorizations,
            authentication_required, highest_risk_level
* [IFD]     IanFoxDev/decline-codes data/{stripe,visa,reasons}.json: Stripe code → reason →
            class; Visa Core Rules 2026-04-18 ID# 0030640 decline categories
            (cat. 1 never; cat. 2 later; cat. 3 fix data; cat. 4 generic/later)
* [SEPA]    DOMAIN.md §4 R-code table (EPC R-transactions via lemonway, Adyen, MultiSafepay);
            the Stripe failure_code ↔ R-code mapping there is *inferred, unverified*
* [S-SEPA]  Stripe SEPA Direct Debit – docs.stripe.com/payments/sepa-debit

The classes are our decision for *off-session* debits (the customer is not present), which
is why data errors (CVC, expiry) are hard here although Visa allows reattempts after the
data has been revalidated.
"""

from dataclasses import dataclass
from typing import Final, Literal

SOFT: Final = "soft"
FIX_DATA: Final = "fix_data"
NEVER: Final = "never"
CUSTOMER_ACTION: Final = "customer_action"
FAILURE_CLASSES: Final = (SOFT, FIX_DATA, NEVER, CUSTOMER_ACTION)

FailureClass = Literal["soft", "fix_data", "never", "customer_action"]
Scheme = Literal["card", "sepa"]
SCHEMES: Final = ("card", "sepa")

# An unknown code is treated as soft (it may be new and temporary), but the caller retries it
# at most this many times before treating it as hard: unknown codes must not burn through
# the whole retry schedule (Visa: at most 20 reattempts in 30 days [IFD]).
MAX_UNKNOWN_RETRIES: Final = 2

# SEPA AM04 (insufficient funds): re-present once after payday, after a fresh
# pre-notification (DOMAIN.md §6 "Derived defaults", not from a source).
MAX_SEPA_RETRIES: Final = 1


@dataclass(frozen=True)
class Decline:
    code: str  # Stripe decline_code / error code (card) or failure_code (SEPA)
    scheme: str  # "card" | "sepa"
    failure_class: str  # one of FAILURE_CLASSES
    source: str  # where the classification comes from


def _card(code: str, failure_class: str, source: str) -> Decline:
    return Decline(code=code, scheme="card", failure_class=failure_class, source=source)


def _sepa(code: str, failure_class: str, source: str) -> Decline:
    return Decline(code=code, scheme="sepa", failure_class=failure_class, source=source)


_D = "Stripe declines/codes"
_E = "Stripe error-codes"
_R = "Stripe smart-retries non-retryable list"
_IFD = "(IanFoxDev/decline-codes)"

_ROWS: Final[tuple[Decline, ...]] = (
    # --- card: issuer says "not now" → soft ---------------------------------------------
    _card("insufficient_funds", SOFT, f"{_D}; Visa 51 cat. 2, reason class later {_IFD}"),
    _card("do_not_honor", SOFT, f"{_D}; Visa 05 cat. 4 generic, class later {_IFD}"),
    _card("generic_decline", SOFT, f"{_D}; class later {_IFD}"),
    _card("no_action_taken", SOFT, f"{_D}; reason generic_decline, class later {_IFD}"),
    _card(
        "try_again_later",
        SOFT,
        f"{_D} (deprecated: 'attempt the payment again'); reason generic_decline {_IFD}",
    ),
    _card("call_issuer", SOFT, f"{_D}; Visa 01 cat. 4 refer to issuer, class later {_IFD}"),
    _card("card_velocity_exceeded", SOFT, f"{_D}; Visa 61/65 cat. 2 limit exceeded {_IFD}"),
    _card(
        "withdrawal_count_limit_exceeded",
        SOFT,
        f"{_D}; reason card_velocity_exceeded, Visa 65 cat. 2 {_IFD}",
    ),
    _card("invalid_amount", SOFT, f"{_D}; Visa 13 cat. 4 / Z5 cat. 2, class later {_IFD}"),
    _card("restricted_card", SOFT, f"{_D}; Visa 62 cat. 2 (moved from cat. 1 in 2021) {_IFD}"),
    _card("security_violation", SOFT, f"{_D}; reason suspected_fraud, Visa 63 cat. 4 {_IFD}"),
    _card(
        "transaction_not_allowed",
        SOFT,
        f"{_D}; reason transaction_not_allowed, class later (Visa 58 cat. 4) {_IFD}",
    ),
    _card("not_permitted", SOFT, f"{_D}; reason transaction_not_allowed, class later {_IFD}"),
    _card("service_not_allowed", SOFT, f"{_D}; reason transaction_not_allowed, class later {_IFD}"),
    _card("pin_try_exceeded", SOFT, f"{_D}; Visa 75 cat. 2, class later {_IFD}"),
    _card(
        "duplicate_transaction",
        SOFT,
        f"{_D} ('check to see if a recent payment already exists'); the next attempt "
        "looks the earlier PaymentIntent up first",
    ),
    _card(
        "card_declined",
        SOFT,
        f"{_E} (generic card error; the reason is in decline_code) — treated as generic_decline",
    ),
    _card(
        "card_decline_rate_limit_exceeded",
        SOFT,
        f"{_E} ('try to charge this card again after 24 hours')",
    ),
    _card(
        "payment_method_provider_decline",
        SOFT,
        f"{_E} (declined by issuer; details in last_payment_error) — treated as generic_decline",
    ),
    # --- card: technical, try again → soft ------------------------------------------------
    _card("processing_error", SOFT, f"{_D} ('attempt again'); Visa 96 cat. 2 technical {_IFD}"),
    _card("issuer_not_available", SOFT, f"{_D}; Visa 91 cat. 2 technical {_IFD}"),
    _card("reenter_transaction", SOFT, f"{_D}; Visa 19 cat. 2 technical {_IFD}"),
    _card("approve_with_id", SOFT, f"{_D} ('attempt again'); reason reenter_transaction {_IFD}"),
    # --- card: data wrong or out of date → fix_data ---------------------------------------
    _card("expired_card", FIX_DATA, f"{_D} ('use another card'); Visa 54 cat. 3 {_IFD}"),
    _card("incorrect_cvc", FIX_DATA, f"{_D}; Visa 82/N7 cat. 3 {_IFD}"),
    _card("invalid_cvc", FIX_DATA, f"{_D}; reason incorrect_cvc, cat. 3 {_IFD}"),
    _card("invalid_expiry_month", FIX_DATA, f"{_D}; reason invalid_expiry, cat. 3 {_IFD}"),
    _card("invalid_expiry_year", FIX_DATA, f"{_D}; reason invalid_expiry, cat. 3 {_IFD}"),
    _card("incorrect_pin", FIX_DATA, f"{_D}; Visa 55 cat. 3 {_IFD}"),
    _card("invalid_pin", FIX_DATA, f"{_D}; reason incorrect_pin, cat. 3 {_IFD}"),
    _card("incorrect_zip", FIX_DATA, f"{_D}; reason incorrect_address, class fix_data {_IFD}"),
    _card("incorrect_address", FIX_DATA, f"{_D}; Visa 6P cat. 3 cardholder data mismatch {_IFD}"),
    _card(
        "card_not_supported",
        FIX_DATA,
        f"{_D} ('card does not support this type of purchase'): a property of the card, so "
        "another payment method is needed (our reading; IFD maps it to class later)",
    ),
    _card(
        "currency_not_supported",
        FIX_DATA,
        f"{_D} ('card does not support the specified currency'): another payment method "
        "is needed (our reading)",
    ),
    # --- card: the customer must act → customer_action ------------------------------------
    _card(
        "authentication_required",
        CUSTOMER_ACTION,
        f"{_D} (off-session: 'request the customer to retry'); {_R}; Visa 1A {_IFD}",
    ),
    _card(
        "authentication_not_handled",
        CUSTOMER_ACTION,
        f"reason authentication_required {_IFD}",
    ),
    _card(
        "mobile_device_authentication_required",
        CUSTOMER_ACTION,
        f"reason authentication_required {_IFD}",
    ),
    _card(
        "payment_intent_authentication_failure",
        CUSTOMER_ACTION,
        f"{_E} ('the payment method has failed authentication')",
    ),
    _card("offline_pin_required", CUSTOMER_ACTION, f"{_D}; reason pin_required, Visa 70 {_IFD}"),
    _card(
        "online_or_offline_pin_required",
        CUSTOMER_ACTION,
        f"{_D}; reason pin_required, Visa 70 {_IFD}",
    ),
    _card(
        "new_account_information_available",
        CUSTOMER_ACTION,
        f"{_D}; reason new_account_information, class customer_action {_IFD}",
    ),
    # --- card: will never be approved → never ---------------------------------------------
    _card("lost_card", NEVER, f"{_D}; {_R}; Visa 41 cat. 1 {_IFD}"),
    _card("stolen_card", NEVER, f"{_D}; {_R}; Visa 43 cat. 1 {_IFD}"),
    _card("pickup_card", NEVER, f"{_D}; {_R}; Visa 04 cat. 1 {_IFD}"),
    _card("incorrect_number", NEVER, f"{_D}; {_R}; Visa 14 cat. 1 {_IFD}"),
    _card("invalid_number", NEVER, f"{_D}; Visa 14 cat. 1 {_IFD}"),
    _card("revocation_of_authorization", NEVER, f"{_D}; {_R}; Visa R1 cat. 1 {_IFD}"),
    _card("revocation_of_all_authorizations", NEVER, f"{_D}; {_R}; Visa R3 cat. 1 {_IFD}"),
    _card("stop_payment_order", NEVER, f"{_D}; Visa R0 cat. 1 {_IFD}"),
    _card("fraudulent", NEVER, f"{_D}; Visa 07 cat. 1 {_IFD}"),
    _card("invalid_account", NEVER, f"{_D}; Visa 15/46 cat. 1 no such issuer / closed {_IFD}"),
    _card("highest_risk_level", NEVER, f"{_R} (Radar risk)"),
    _card(
        "merchant_blacklist",
        NEVER,
        f"{_D} (matches our own Stripe block list; retrying cannot change that)",
    ),
    _card(
        "do_not_try_again",
        NEVER,
        f"{_D} (deprecated) and Stripe advice code do_not_try_again {_IFD}",
    ),
    _card(
        "testmode_decline",
        NEVER,
        f"{_D} ('a Stripe test card number was used; a genuine card must be used')",
    ),
    # --- SEPA Direct Debit failure_code values [S-SEPA] -----------------------------------
    _sepa(
        "insufficient_funds",
        SOFT,
        "AM04 insufficient funds: retry after the next payday [SEPA]; Stripe failure_code [S-SEPA]",
    ),
    _sepa(
        "generic_could_not_process",
        SOFT,
        "Stripe SEPA failure_code [S-SEPA]; no R-code given — treated as unknown (soft, "
        "retries capped by the caller)",
    ),
    _sepa(
        "account_closed",
        NEVER,
        "AC04 account closed: no retry, new IBAN and mandate [SEPA]; Stripe error-codes",
    ),
    _sepa(
        "bank_account_restricted",
        FIX_DATA,
        "AC06 blocked / AG01 debits forbidden / SL01 creditor blocked: no retry until the "
        "customer changes account or bank settings [SEPA]; Stripe error-codes",
    ),
    _sepa(
        "invalid_account_number",
        FIX_DATA,
        "AC01 wrong IBAN: correct it, new mandate [SEPA]",
    ),
    _sepa(
        "branch_does_not_exist",
        FIX_DATA,
        "Stripe SEPA failure_code [S-SEPA]: bank identifier invalid — new IBAN needed",
    ),
    _sepa(
        "incorrect_account_holder_name",
        FIX_DATA,
        "Stripe SEPA failure_code [S-SEPA]: name does not match the account — corrected "
        "mandate needed",
    ),
    _sepa(
        "debit_authorization_not_match",
        FIX_DATA,
        "Stripe SEPA failure_code [S-SEPA]: mandate data does not match — new mandate needed",
    ),
    _sepa(
        "refer_to_customer",
        FIX_DATA,
        "MS02/MS03 refused by debtor: no retry before contact [SEPA]; Stripe error-codes "
        "('stopped the payment with their bank; contact them')",
    ),
    _sepa(
        "debit_not_authorized",
        NEVER,
        "MD01 no or unauthorised mandate: new mandate [SEPA]; Stripe error-codes ('notified "
        "their bank that this payment was unauthorized')",
    ),
    _sepa(
        "authorization_revoked",
        NEVER,
        "MS02 mandate revoked by debtor: no retry, new mandate [SEPA]",
    ),
    _sepa(
        "debit_disputed",
        NEVER,
        "MD06 debtor refund within 8 weeks (§ 675x BGB): no retry, contact then dunning "
        "[SEPA]; Stripe: disputes are final, the mandate may be deactivated [S-SEPA]",
    ),
    _sepa(
        "recipient_deceased",
        NEVER,
        "MD07 debtor deceased: never retry [SEPA]",
    ),
    _sepa(
        "payment_intent_mandate_invalid",
        FIX_DATA,
        f"{_E} ('the provided mandate is invalid') — new mandate needed",
    ),
)

_SCHEME_ALIASES: Final[dict[str, str]] = {
    "card": "card",
    "sepa": "sepa",
    "sepa_debit": "sepa",  # Stripe's PaymentMethod type
}


def decline_key(code: str, scheme: str) -> str:
    """Key of a row in :data:`CLASSIFICATION`: ``"card:lost_card"``, ``"sepa:account_closed"``.

    The table is keyed by scheme and code because Stripe uses some codes (e.g.
    ``insufficient_funds``) for both cards and SEPA debits.
    """
    return f"{_SCHEME_ALIASES.get(scheme.strip().lower(), scheme)}:{code.strip().lower()}"


CLASSIFICATION: Final[dict[str, Decline]] = {decline_key(d.code, d.scheme): d for d in _ROWS}


def lookup(code: str | None, scheme: str = "card") -> Decline | None:
    """The classification row for ``code`` under ``scheme``, or None if the code is unknown."""
    if not code:
        return None
    return CLASSIFICATION.get(decline_key(code, scheme))


def classify(code: str | None, scheme: str = "card") -> str:
    """The failure class of a decline code (``soft``, ``fix_data``, ``never``, ``customer_action``).

    For cards pass Stripe's ``decline_code`` when present, else the error ``code``; for SEPA
    the charge's ``failure_code``. ``scheme`` is ``card`` or ``sepa`` (``sepa_debit`` too).
    Unknown or missing codes are ``soft``: the caller caps them at
    :data:`MAX_UNKNOWN_RETRIES` retries. Never raises, so it is safe inside a workflow.
    """
    row = lookup(code, scheme)
    return row.failure_class if row is not None else SOFT


def is_known(code: str | None, scheme: str = "card") -> bool:
    """Whether the code is in the table (unknown soft codes get capped retries)."""
    return lookup(code, scheme) is not None


def is_hard(failure_class: str) -> bool:
    """Everything but ``soft`` is hard: skip remaining retries, ask for a new payment method."""
    return failure_class != SOFT
