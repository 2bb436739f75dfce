"""Checkout Sessions (`/v1/checkout/sessions`) and a minimal hosted checkout page.

A platform creates a session (mode `payment` or `setup`) and sends the customer to its
`url`; the stand-in serves that page itself (`/_standin/checkout/{id}`, no auth: the
session id is the secret, as on Stripe's hosted page). The customer picks a test card
(Stripe's magic ids, docs/testing.md) or enters a test IBAN and an account holder; on
submit the stand-in does what Stripe's page does:

- mode `payment`: a PaymentIntent for `amount_total` with the session's `customer` and
  `payment_intent_data` (metadata, description, `setup_future_usage`), confirmed on session
  with the new method (a SEPA method accepts an online mandate). A declined card leaves the
  session `open` and shows the decline on the page; a card that succeeds completes it
  (`payment_status` `paid`); a SEPA debit completes it `unpaid` while the debit is
  `processing`, and `checkout.session.async_payment_succeeded` / `…_failed` follow with
  the bank's answer.
- mode `setup`: a SetupIntent for the method (attached to the customer; a SEPA mandate),
  the session completes `no_payment_required`.

Then `checkout.session.completed` is sent (besides the intents' own events) and the browser
is redirected (303) to `success_url`, `{CHECKOUT_SESSION_ID}` replaced by the id. The
cancel link goes to `cancel_url`. Events caused on the page have `request.id` null (the
customer acted, not an API request).

Subset: line items only with `price_data` (no Prices), `ui_mode` hosted; no expiry timer,
no 3-D Secure on the page (a card needing authentication is declined with
`authentication_required`), no promotion codes, taxes, shipping, or customer creation.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from . import objects
from .customers import _attach, build_payment_method, get_customer, resolve_payment_method
from .engine import NO_REQUEST, Engine
from .errors import StripeError, invalid_param, invalid_request, no_such
from .formparse import as_list
from .http import Call
from .ids import new_id
from .params import Params, apply_metadata
from .store import Obj
from .testvalues import iban_is_valid, normalize_iban

CHECKOUT_PATH = "/_standin/checkout/"
# The cards the hosted page offers (Stripe's magic PaymentMethod ids, docs/testing.md).
PAGE_CARDS = (
    ("pm_card_visa", "Visa 4242 — succeeds"),
    ("pm_card_mastercard", "Mastercard 4444 — succeeds"),
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "Visa 9995 — insufficient funds"),
    ("pm_card_visa_chargeDeclinedLostCard", "Visa 9987 — lost card"),
    ("pm_card_chargeDeclinedExpiredCard", "Visa 0069 — expired card"),
)
_TYPES = ("card", "sepa_debit")


def _get(engine: Engine, session_id: str) -> Obj:
    session = engine.store.get(session_id, "checkout.session")
    if session is None:
        raise no_such("checkout.session", session_id)
    return session


def _amount(p: Params, currency: str | None) -> tuple[int, str]:
    raw = p.data.get("line_items")
    items = as_list(raw) if raw is not None else None
    if not items:
        raise invalid_param(
            "You must specify `line_items` in `payment` mode.", "line_items", "parameter_missing"
        )
    total, cur = 0, currency
    for n, item in enumerate(items):
        line = Params(item if isinstance(item, dict) else {}, f"line_items[{n}]")
        price = line.sub("price_data")
        if not price.data:
            raise invalid_param(
                "The stand-in supports line items with `price_data` only.", line.name("price")
            )
        item_currency = price.req_str("currency").lower()
        if cur is not None and item_currency != cur:
            raise invalid_param(
                "All line items must have the same currency.", price.name("currency")
            )
        cur = item_currency
        unit = price.get_int("unit_amount")
        if unit is None:
            raise invalid_param(
                f"Missing required param: {price.name('unit_amount')}.",
                price.name("unit_amount"),
                "parameter_missing",
            )
        if not price.sub("product_data").get_str("name") and not price.get_str("product"):
            raise invalid_param(
                f"Missing required param: {price.name('product_data')}.",
                price.name("product_data"),
                "parameter_missing",
            )
        total += unit * (line.get_int("quantity") or 1)
    assert cur is not None
    return total, cur


def create_session(engine: Engine, call: Call) -> Obj:
    p = call.params
    mode = p.get_str("mode")
    if mode is None:
        raise invalid_param("Missing required param: mode.", "mode", "parameter_missing")
    if mode not in ("payment", "setup"):
        raise invalid_param(
            f"The stand-in serves Checkout Sessions in payment and setup mode, not {mode}.",
            "mode",
        )
    success_url = p.get_str("success_url")
    if not success_url:
        raise invalid_param(
            "Missing required param: success_url.", "success_url", "parameter_missing"
        )
    ui_mode = p.get_str("ui_mode") or "hosted_page"
    if ui_mode != "hosted_page":
        raise invalid_param("The stand-in serves the hosted page only.", "ui_mode")
    cus_id = p.get_str("customer") or None
    if cus_id:
        get_customer(engine, cus_id, "customer")
    currency = (p.get_str("currency") or "").lower() or None
    types = p.str_list("allowed_payment_method_types") or list(_TYPES)
    unknown = [t for t in types if t not in _TYPES]
    if unknown:
        raise invalid_param(
            f"The stand-in supports card and sepa_debit, not {unknown[0]}.",
            "allowed_payment_method_types",
        )
    pi_data = p.sub("payment_intent_data")
    amount = None
    if mode == "payment":
        amount, currency = _amount(p, currency)
    elif pi_data.data:
        raise invalid_param(
            "You can not pass `payment_intent_data` in `setup` mode.", "payment_intent_data"
        )
    elif currency is None:
        # Stripe needs a currency to pick the payment methods of a setup session.
        raise invalid_param("Missing required param: currency.", "currency", "parameter_missing")
    session_id = new_id("cs_test", 58)
    session: Obj = {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "cancel_url": p.get_str("cancel_url") or None,
        "client_reference_id": p.get_str("client_reference_id") or None,
        "created": engine.now(),
        "currency": currency,
        "customer": cus_id,
        "customer_email": p.get_str("customer_email") or None,
        "expires_at": engine.now() + 24 * 3600,
        "livemode": False,
        "locale": p.get_str("locale") or None,
        "metadata": apply_metadata({}, p.metadata()),
        "mode": mode,
        "payment_intent": None,
        "payment_method_types": types,
        "payment_status": "unpaid" if mode == "payment" else "no_payment_required",
        "setup_intent": None,
        "status": "open",
        "success_url": success_url,
        "ui_mode": ui_mode,
        "url": f"{call.base_url}{CHECKOUT_PATH}{session_id}",
        # Kept for the page; Stripe does not return payment_intent_data.
        "_payment_intent_data": {
            "metadata": apply_metadata({}, pi_data.metadata()),
            "description": pi_data.get_str("description") or None,
            "setup_future_usage": pi_data.enum("setup_future_usage", ("off_session", "on_session")),
        },
        "_error": None,
    }
    engine.store.put(session, "checkout.session")
    return public(session)


def public(session: Obj) -> Obj:
    return {k: v for k, v in session.items() if not k.startswith("_")}


def retrieve_session(engine: Engine, call: Call, id: str) -> Obj:
    return public(_get(engine, id))


# --- the hosted page -----------------------------------------------------------------------


def _page(session: Obj, error: str | None = None) -> str:
    amount = session["amount_total"]
    what = (
        f"{amount // 100},{amount % 100:02d} {str(session['currency']).upper()}"
        if amount is not None
        else "Zahlungsmethode speichern / Save a payment method"
    )
    cards = "".join(
        f'<label><input type="radio" name="method" value="{v}"{" checked" if n == 0 else ""}>'
        f" {html.escape(label)}</label><br>"
        for n, (v, label) in enumerate(PAGE_CARDS)
        if "card" in session["payment_method_types"]
    )
    sepa = ""
    if "sepa_debit" in session["payment_method_types"]:
        sepa = (
            '<label><input type="radio" name="method" value="sepa_debit"> SEPA-Lastschrift'
            "</label><br>"
            '<label>IBAN <input name="iban" autocomplete="off" '
            'placeholder="DE89370400440532013000"></label><br>'
            '<label>Kontoinhaber / Account holder <input name="name"></label><br>'
        )
    err = f'<p role="alert" class="error">{html.escape(error)}</p>' if error else ""
    cancel = (
        f'<p><a href="{html.escape(session["cancel_url"])}">Zurück / Back</a></p>'
        if session.get("cancel_url")
        else ""
    )
    button = "Bezahlen / Pay" if session["mode"] == "payment" else "Speichern / Save"
    return (
        '<!doctype html><html lang="de"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Stripe stand-in checkout</title></head><body>"
        f"<h1>Checkout (Stripe stand-in, test mode)</h1><p data-amount>{html.escape(what)}</p>"
        f'{err}<form method="post"><fieldset><legend>Test payment method</legend>'
        f'{cards}{sepa}</fieldset><button type="submit">{button}</button></form>{cancel}'
        "</body></html>"
    )


def _method_from_form(engine: Engine, form: dict[str, str]) -> Obj:
    choice = form.get("method", "")
    if choice == "sepa_debit":
        iban = normalize_iban(form.get("iban", ""))
        if not iban_is_valid(iban):
            raise invalid_param("The IBAN you provided appears to be invalid.", "iban")
        name = form.get("name", "").strip()
        if not name:
            raise invalid_param("Please enter the account holder's name.", "name")
        return build_payment_method(
            engine,
            Params(
                {
                    "type": "sepa_debit",
                    "sepa_debit": {"iban": iban},
                    "billing_details": {"name": name},
                }
            ),
        )
    if choice.startswith("pm_card_"):
        return resolve_payment_method(engine, choice, "payment_method")
    raise invalid_param("Please choose a payment method.", "method")


# What the page's own actions carry as their `request`: none (the customer acted).
_PAGE_CALL = Call("POST", CHECKOUT_PATH, Params({}), "", "", None, None)

_ONLINE = {
    "mandate_data": {
        "customer_acceptance": {
            "type": "online",
            "online": {"ip_address": "127.0.0.1", "user_agent": "stand-in checkout"},
        }
    }
}


def _complete(engine: Engine, session: Obj, pm: Obj) -> None:
    """Pay or set up with `pm` as the hosted page does; raises StripeError on a decline."""
    from .payments import _confirm
    from .setup_intents import _confirm as confirm_setup

    if session["mode"] == "payment":
        data = session["_payment_intent_data"]
        pi = engine.store.get(session["payment_intent"], "payment_intent")
        if pi is None:
            pi = objects.payment_intent(
                engine.now(),
                amount=session["amount_total"],
                currency=session["currency"],
                customer=session["customer"],
                payment_method=None,
                description=data["description"],
                metadata=dict(data["metadata"]),
                receipt_email=None,
                setup_future_usage=data["setup_future_usage"],
                statement_descriptor=None,
            )
            pi.update(
                allowed_payment_method_types=list(session["payment_method_types"]),
                automatic_payment_methods=None,
                excluded_payment_method_types=None,
                payment_method_types=list(session["payment_method_types"]),
            )
            indexes = ["payment_intent"]
            if session["customer"]:
                indexes.append(f"payment_intent:customer:{session['customer']}")
            engine.store.put(pi, *indexes)
            engine.store.index_pi_metadata(pi["id"], {}, pi["metadata"])
            engine.emit("payment_intent.created", pi, NO_REQUEST)
            session["payment_intent"] = pi["id"]
            engine.store.index(f"checkout.session:pi:{pi['id']}").add(session["id"])
        params = Params(_ONLINE if pm["type"] == "sepa_debit" else {})
        _confirm(engine, pi, pm["id"], params, NO_REQUEST, False)
        if pi["status"] == "requires_action":
            # No 3-D Secure on this page: give up the attempt as a failed authentication.
            from .payments import authenticate

            authenticate(engine, pi["id"], succeed=False)
            raise invalid_request(
                "This card needs authentication, which the stand-in's checkout page does "
                "not offer; choose another card.",
                code="authentication_required",
            )
        session["payment_status"] = "paid" if pi["status"] == "succeeded" else "unpaid"
    else:
        if session["customer"] and pm["customer"] is None:
            _attach(engine, pm, get_customer(engine, session["customer"], "customer"), NO_REQUEST)
        si_id = new_id("seti")
        si: Obj = {
            "id": si_id,
            "object": "setup_intent",
            "allowed_payment_method_types": list(session["payment_method_types"]),
            "automatic_payment_methods": None,
            "cancellation_reason": None,
            "client_secret": None,
            "created": engine.now(),
            "customer": session["customer"],
            "description": None,
            "last_setup_error": None,
            "livemode": False,
            "mandate": None,
            "metadata": dict(session["metadata"]),
            "next_action": None,
            "payment_method": pm["id"],
            "payment_method_types": list(session["payment_method_types"]),
            "status": "requires_confirmation",
            "usage": "off_session",
        }
        indexes = ["setup_intent", f"setup_intent:payment_method:{pm['id']}"]
        if session["customer"]:
            indexes.append(f"setup_intent:customer:{session['customer']}")
        engine.store.put(si, *indexes)
        engine.emit("setup_intent.created", si, NO_REQUEST)
        confirm_setup(engine, si, Params(_ONLINE), _PAGE_CALL)
        session["setup_intent"] = si_id
    session.update(status="complete", _error=None)
    engine.emit("checkout.session.completed", public(session), NO_REQUEST)


def payment_settled(engine: Engine, pi: Obj, succeeded: bool) -> None:
    """A delayed (SEPA) payment of a session has its answer: Stripe sends
    `checkout.session.async_payment_succeeded` or `…_failed`."""
    index = engine.store.indexes.get(f"checkout.session:pi:{pi['id']}")
    for session_id in list(index.newest_first()) if index is not None else []:
        session = engine.store.get(session_id, "checkout.session")
        if session is None or session["status"] != "complete":
            continue
        if succeeded:
            session["payment_status"] = "paid"
        kind = "succeeded" if succeeded else "failed"
        engine.emit(f"checkout.session.async_payment_{kind}", public(session), NO_REQUEST)


async def hosted_page(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    session_id = request.path_params["id"]
    account = engine.locate(session_id)
    with engine.acting_as(account):
        session = engine.store.get(session_id, "checkout.session")
        if session is None:
            return HTMLResponse("<h1>No such checkout session</h1>", status_code=404)
        if session["status"] == "complete":
            return RedirectResponse(_success_url(session), status_code=303)
        if request.method == "GET":
            return HTMLResponse(_page(session, session.get("_error")))
        raw = parse_qs((await request.body()).decode("utf-8", "replace"))
        form = {k: v[0] for k, v in raw.items() if v}
        try:
            pm = _method_from_form(engine, form)
            _complete(engine, session, pm)
        except StripeError as err:
            session["_error"] = str(err)
            return HTMLResponse(_page(session, str(err)), status_code=402)
        return RedirectResponse(_success_url(session), status_code=303)


def _success_url(session: Obj) -> str:
    return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])


CHECKOUT_PAGE_ROUTES = [
    Route(CHECKOUT_PATH + "{id}", hosted_page, methods=["GET", "POST"]),
]
