"""Builders for Stripe-shaped objects, and `expand[]`.

Only the fields Mahnwerk and the SDK read are filled with meaning; the rest carry Stripe's
defaults (mostly null) so code written against real responses finds the keys it expects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .errors import invalid_request
from .ids import new_id, secret_suffix
from .store import Obj, Store
from .testvalues import CardProfile, Decline, SepaProfile


def snapshot(obj: Obj) -> Obj:
    """A deep copy (events carry the object as it was when they happened)."""
    result: Obj = json.loads(json.dumps(obj))
    return result


def billing_details(name: str | None = None, email: str | None = None) -> Obj:
    return {
        "address": {
            "city": None,
            "country": None,
            "line1": None,
            "line2": None,
            "postal_code": None,
            "state": None,
        },
        "email": email,
        "name": name,
        "phone": None,
    }


def customer(
    cus_id: str,
    created: int,
    *,
    email: str | None,
    name: str | None,
    description: str | None,
    phone: str | None,
    metadata: dict[str, str],
    default_payment_method: str | None,
) -> Obj:
    return {
        "id": cus_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "invoice_prefix": cus_id[-8:].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": default_payment_method,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": metadata,
        "name": name,
        "next_invoice_sequence": 1,
        "phone": phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def _payment_method(
    pm_id: str, created: int, kind: str, details: Obj, billing: Obj, metadata: dict[str, str]
) -> Obj:
    return {
        "id": pm_id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": billing,
        "created": created,
        "customer": None,
        "livemode": False,
        "metadata": metadata,
        "type": kind,
        kind: details,
    }


def card_payment_method(
    created: int, profile: CardProfile, billing: Obj, metadata: dict[str, str], exp_year: int
) -> Obj:
    details = {
        "brand": profile.brand,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        "country": profile.country,
        "display_brand": profile.brand,
        "exp_month": 12,
        "exp_year": exp_year,
        "fingerprint": profile.fingerprint,
        "funding": profile.funding,
        "generated_from": None,
        "last4": profile.last4,
        "networks": {"available": [profile.brand], "preferred": None},
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    }
    return _payment_method(new_id("pm"), created, "card", details, billing, metadata)


def sepa_payment_method(
    created: int, profile: SepaProfile, billing: Obj, metadata: dict[str, str]
) -> Obj:
    details = {
        "bank_code": profile.bank_code,
        "branch_code": "",
        "country": profile.country,
        "fingerprint": profile.fingerprint,
        "generated_from": {"charge": None, "setup_attempt": None},
        "last4": profile.last4,
    }
    return _payment_method(new_id("pm"), created, "sepa_debit", details, billing, metadata)


def payment_intent(
    created: int,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    payment_method: str | None,
    description: str | None,
    metadata: dict[str, str],
    receipt_email: str | None,
    setup_future_usage: str | None,
    statement_descriptor: str | None,
) -> Obj:
    pi_id = new_id("pi")
    return {
        "id": pi_id,
        "object": "payment_intent",
        "allowed_payment_method_types": None,
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{pi_id}_secret_{secret_suffix()}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": [],
        "processing": None,
        "receipt_email": receipt_email,
        "review": None,
        "setup_future_usage": setup_future_usage,
        "shipping": None,
        "source": None,
        "statement_descriptor": statement_descriptor,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method" if payment_method is None else "requires_confirmation",
        "transfer_data": None,
        "transfer_group": None,
    }


def payment_method_details(
    pm: Obj, mandate: str | None, expected_debit_date: str | None = None
) -> Obj:
    kind = pm["type"]
    if kind == "card":
        card = pm["card"]
        details: Obj = {
            "amount_authorization": None,
            "brand": card["brand"],
            "checks": card["checks"],
            "country": card["country"],
            "exp_month": card["exp_month"],
            "exp_year": card["exp_year"],
            "fingerprint": card["fingerprint"],
            "funding": card["funding"],
            "last4": card["last4"],
            "mandate": None,
            "network": card["brand"],
            "network_token": {"used": False},
            "three_d_secure": None,
            "wallet": None,
        }
    else:
        sepa = pm["sepa_debit"]
        details = {
            "bank_code": sepa["bank_code"],
            "branch_code": sepa["branch_code"],
            "country": sepa["country"],
            "expected_debit_date": expected_debit_date,
            "fingerprint": sepa["fingerprint"],
            "last4": sepa["last4"],
            "mandate": mandate,
        }
    return {"type": kind, kind: details}


def charge(
    created: int,
    pi: Obj,
    pm: Obj,
    status: str,
    mandate: str | None = None,
    expected_debit_date: str | None = None,
) -> Obj:
    return {
        "id": new_id("py" if pm["type"] == "sepa_debit" else "ch"),
        "object": "charge",
        "amount": pi["amount"],
        "amount_captured": pi["amount"] if status == "succeeded" else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "authorization_code": None,
        "balance_transaction": new_id("txn") if status == "succeeded" else None,
        "billing_details": pm["billing_details"],
        "calculated_statement_descriptor": "MAHNWERK",
        "captured": status == "succeeded",
        "created": created,
        "currency": pi["currency"],
        "customer": pi["customer"],
        "description": pi["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(pi["metadata"]),
        "on_behalf_of": None,
        "outcome": _outcome(status),
        "paid": status == "succeeded",
        "payment_intent": pi["id"],
        "payment_method": pm["id"],
        "payment_method_details": payment_method_details(pm, mandate, expected_debit_date),
        "receipt_email": pi["receipt_email"],
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": pi["statement_descriptor"],
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def approved_outcome() -> Obj | None:
    return _outcome("succeeded")


def _outcome(status: str, decline: Decline | None = None) -> Obj | None:
    if status == "pending":
        return None
    if decline is None:
        return {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 20,
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
    return {
        "network_status": "declined_by_network",
        "reason": decline.decline_code,
        "risk_level": "normal",
        "risk_score": 20,
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }


def fail_charge(ch: Obj, code: str, message: str, decline: Decline | None) -> None:
    ch.update(
        status="failed",
        paid=False,
        captured=False,
        amount_captured=0,
        balance_transaction=None,
        failure_code=code,
        failure_message=message,
        outcome=_outcome("failed", decline),
    )


def mandate(
    created: int, pm: Obj, customer_acceptance: Obj | None, single_use: Obj | None = None
) -> Obj:
    """A SEPA mandate (`single_use` with its amount and currency, else multi_use)."""
    mandate_id = new_id("mandate")
    reference = secret_suffix(16).upper()
    return {
        "id": mandate_id,
        "object": "mandate",
        "customer_acceptance": customer_acceptance
        or {"accepted_at": created, "offline": {}, "type": "offline"},
        "livemode": False,
        "multi_use": {} if single_use is None else None,
        "on_behalf_of": None,
        "payment_method": pm["id"],
        "payment_method_details": {
            "sepa_debit": {
                "reference": reference,
                "url": f"https://payments.stripe.com/sepa_debit/mandate/{mandate_id}",
            },
            "type": "sepa_debit",
        },
        "single_use": single_use,
        "status": "active",
        "type": "multi_use" if single_use is None else "single_use",
    }


def refund(created: int, ch: Obj, amount: int, reason: str | None, metadata: dict[str, str]) -> Obj:
    return {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": new_id("txn"),
        "charge": ch["id"],
        "created": created,
        "currency": ch["currency"],
        "destination_details": None,
        "metadata": metadata,
        "payment_intent": ch["payment_intent"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }


def balance_transaction(created: int, amount: int, currency: str, type_: str) -> Obj:
    """A dispute's balance transaction (negative when funds are withdrawn)."""
    return {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "created": created,
        "currency": currency,
        "fee": 0,
        "net": amount,
        "reporting_category": "dispute" if amount < 0 else "dispute_reversal",
        "status": "available",
        "type": type_,
    }


def dispute(created: int, ch: Obj, amount: int, reason: str) -> Obj:
    """Card disputes start `needs_response`; SEPA disputes are final, so they are `lost`."""
    is_sepa = ch["payment_method_details"]["type"] == "sepa_debit"
    return {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": ch["id"],
        "created": created,
        "currency": ch["currency"],
        "evidence": {},
        "evidence_details": {
            "due_by": None if is_sepa else created + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": ch["payment_intent"],
        "payment_method_details": {"type": ch["payment_method_details"]["type"]},
        "reason": reason,
        "status": "lost" if is_sepa else "needs_response",
    }


def event(
    created: int,
    type_: str,
    obj: Obj,
    api_version: str,
    pending_webhooks: int,
    request: Obj,
    previous_attributes: Obj | None = None,
    account: str | None = None,
) -> Obj:
    """The event envelope; serialize it at once, it references the live object. `account`:
    the connected account an event of Stripe Connect happened on (Connect endpoints get it;
    absent on the platform's own events)."""
    data: Obj = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    envelope: Obj = {"id": new_id("evt"), "object": "event"}
    if account is not None:
        envelope["account"] = account
    return envelope | {
        "api_version": api_version,
        "context": None,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": pending_webhooks,
        "request": request,
        "type": type_,
    }


def list_object(url: str, data: list[Obj], has_more: bool) -> Obj:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# --- expand[] ---------------------------------------------------------------------------


def expand(store: Store, obj: Obj, paths: Iterable[str]) -> Obj:
    """Replace id fields by the objects they name (`expand[]=latest_charge`,
    `expand[]=data.payment_method` on lists), copying instead of touching stored objects."""
    for path in paths:
        obj = _expand(store, obj, path.split("."), path)
    return obj


def _expand(store: Store, node: Any, parts: list[str], path: str) -> Any:
    if isinstance(node, list):
        return [_expand(store, item, parts, path) for item in node]
    if not isinstance(node, dict):
        return node
    key = parts[0]
    if key not in node:
        raise invalid_request(f"This property cannot be expanded ({path}).", param="expand")
    value = node[key]
    if isinstance(value, str) and value in store.objects:
        value = store.objects[value]
    if len(parts) > 1:
        value = _expand(store, value, parts[1:], path)
    copy = dict(node)
    copy[key] = value
    return copy
