import pytest

from domain.declines import (
    CLASSIFICATION,
    CUSTOMER_ACTION,
    FAILURE_CLASSES,
    FIX_DATA,
    MAX_UNKNOWN_RETRIES,
    NEVER,
    SOFT,
    classify,
    decline_key,
    is_hard,
    is_known,
    lookup,
)

# Every Stripe card decline code on docs.stripe.com/declines/codes, plus Stripe error codes
# that carry a card decline and the Smart Retries non-retryable list (DOMAIN.md §5).
CARD_CODES = [
    "approve_with_id",
    "authentication_required",
    "call_issuer",
    "card_declined",
    "card_not_supported",
    "card_velocity_exceeded",
    "currency_not_supported",
    "do_not_honor",
    "do_not_try_again",
    "duplicate_transaction",
    "expired_card",
    "fraudulent",
    "generic_decline",
    "highest_risk_level",
    "incorrect_address",
    "incorrect_cvc",
    "incorrect_number",
    "incorrect_pin",
    "incorrect_zip",
    "insufficient_funds",
    "invalid_account",
    "invalid_amount",
    "invalid_cvc",
    "invalid_expiry_month",
    "invalid_expiry_year",
    "invalid_number",
    "invalid_pin",
    "issuer_not_available",
    "lost_card",
    "merchant_blacklist",
    "new_account_information_available",
    "no_action_taken",
    "not_permitted",
    "offline_pin_required",
    "online_or_offline_pin_required",
    "pickup_card",
    "pin_try_exceeded",
    "processing_error",
    "reenter_transaction",
    "restricted_card",
    "revocation_of_all_authorizations",
    "revocation_of_authorization",
    "security_violation",
    "service_not_allowed",
    "stolen_card",
    "stop_payment_order",
    "testmode_decline",
    "transaction_not_allowed",
    "try_again_later",
    "withdrawal_count_limit_exceeded",
]

# Stripe SEPA Direct Debit failure_code values (DOMAIN.md §5 "SEPA via Stripe").
SEPA_CODES = [
    "refer_to_customer",
    "insufficient_funds",
    "debit_disputed",
    "authorization_revoked",
    "debit_not_authorized",
    "account_closed",
    "bank_account_restricted",
    "debit_authorization_not_match",
    "recipient_deceased",
    "branch_does_not_exist",
    "incorrect_account_holder_name",
    "invalid_account_number",
    "generic_could_not_process",
]


@pytest.mark.parametrize("code", CARD_CODES)
def test_every_card_code_is_classified(code: str) -> None:
    row = lookup(code, "card")
    assert row is not None, f"card code {code} missing from CLASSIFICATION"
    assert row.code == code and row.scheme == "card"


@pytest.mark.parametrize("code", SEPA_CODES)
def test_every_sepa_code_is_classified(code: str) -> None:
    row = lookup(code, "sepa")
    assert row is not None, f"SEPA code {code} missing from CLASSIFICATION"
    assert row.code == code and row.scheme == "sepa"


def test_every_row_is_well_formed() -> None:
    for key, row in CLASSIFICATION.items():
        assert key == decline_key(row.code, row.scheme) == f"{row.scheme}:{row.code}"
        assert row.scheme in ("card", "sepa")
        assert row.failure_class in FAILURE_CLASSES
        assert row.source.strip(), f"{key} names no source"


# SPEC §3: "A hard failure (lost/stolen card, closed account, revoked mandate,
# authentication required, expired card) skips the remaining retries".
@pytest.mark.parametrize(
    ("code", "scheme", "expected"),
    [
        ("lost_card", "card", NEVER),
        ("stolen_card", "card", NEVER),
        ("pickup_card", "card", NEVER),
        ("expired_card", "card", FIX_DATA),
        ("authentication_required", "card", CUSTOMER_ACTION),
        ("account_closed", "sepa", NEVER),
        ("debit_not_authorized", "sepa", NEVER),
        ("authorization_revoked", "sepa", NEVER),
        ("recipient_deceased", "sepa", NEVER),
        ("invalid_account_number", "sepa", FIX_DATA),
    ],
)
def test_spec_hard_failures(code: str, scheme: str, expected: str) -> None:
    assert classify(code, scheme) == expected
    assert is_hard(classify(code, scheme))


# Stripe Smart Retries never retries these (DOMAIN.md §5, [S-RETRY]).
@pytest.mark.parametrize(
    "code",
    [
        "incorrect_number",
        "lost_card",
        "pickup_card",
        "stolen_card",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "authentication_required",
        "highest_risk_level",
    ],
)
def test_stripe_non_retryable_codes_are_hard(code: str) -> None:
    assert is_hard(classify(code))


@pytest.mark.parametrize(
    ("code", "scheme"),
    [
        ("insufficient_funds", "card"),  # Visa 51, category 2: retry later
        ("insufficient_funds", "sepa"),  # AM04: re-present after payday
        ("do_not_honor", "card"),
        ("generic_decline", "card"),
        ("processing_error", "card"),
        ("try_again_later", "card"),
        ("card_velocity_exceeded", "card"),
        ("card_declined", "card"),
    ],
)
def test_soft_failures(code: str, scheme: str) -> None:
    assert classify(code, scheme) == SOFT
    assert not is_hard(SOFT)


# The Stripe stand-in's test payment methods (SPEC §8) and the class each outcome gets.
@pytest.mark.parametrize(
    ("code", "hard"),
    [
        ("insufficient_funds", False),  # pm_card_visa_chargeDeclinedInsufficientFunds
        ("lost_card", True),  # pm_card_visa_chargeDeclinedLostCard
        ("stolen_card", True),  # pm_card_visa_chargeDeclinedStolenCard
        ("expired_card", True),  # pm_card_chargeDeclinedExpiredCard
        ("processing_error", False),  # pm_card_chargeDeclinedProcessingError
        ("authentication_required", True),  # pm_card_authenticationRequired
        ("card_declined", False),  # pm_card_chargeCustomerFail
    ],
)
def test_standin_outcomes(code: str, hard: bool) -> None:
    assert is_hard(classify(code, "card")) is hard


@pytest.mark.parametrize("code", [None, "", "some_new_code_from_2027", "R99"])
def test_unknown_codes_are_soft(code: str | None) -> None:
    assert classify(code) == SOFT
    assert classify(code, "sepa") == SOFT
    assert not is_known(code)
    assert MAX_UNKNOWN_RETRIES == 2


def test_same_code_differs_by_scheme() -> None:
    # account_closed is a SEPA failure_code; for cards it is not a decline code at all
    assert classify("account_closed", "sepa") == NEVER
    assert classify("account_closed", "card") == SOFT
    assert not is_known("account_closed", "card")


def test_scheme_alias_and_case() -> None:
    assert classify("account_closed", "sepa_debit") == NEVER
    assert classify("LOST_CARD") == NEVER
    assert classify(" expired_card ", "CARD") == FIX_DATA
    assert classify("lost_card", "paypal") == SOFT  # unknown scheme: unknown code, never raises


@pytest.mark.parametrize(
    ("failure_class", "hard"),
    [(SOFT, False), (FIX_DATA, True), (NEVER, True), (CUSTOMER_ACTION, True), ("other", True)],
)
def test_is_hard(failure_class: str, hard: bool) -> None:
    assert is_hard(failure_class) is hard
