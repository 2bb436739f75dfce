"""`mahnwerk demo`: a handful of contracts on the `demo` policy (seconds, not days), so a
newcomer watches every path in the Temporal UI within two minutes.

It talks to a running stack only from the outside: the HTTP API (as the platform and as a
support agent) and the Stripe API of the stand-in (to create a SEPA payment method and to
script one soft decline). It follows the contracts and prints their state until they
settle.

Two more sellers join the default one (issue 14, docs/sellers.md): `demo-kursschmiede` and
`demo-yogaraum`, each on its own connected account of the stand-in with its own bank details
and tax settings, and a contract each, debited on its account and invoiced in its own
series; the Yogaraum's customer withdraws (`POST …/cancel`, reason `withdrawal`,
docs/endings.md) after the first installment is paid and gets the policy's refund.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import stripe
from rich.console import Console
from rich.live import Live
from rich.table import Table

from core.settings import load_settings

console = Console()


@dataclass
class Scenario:
    key: str
    title: str
    payment_method: str
    kind: str = "installments"
    count: int = 2
    amount: int = 9900
    # (seconds after start, action, argument)
    actions: list[tuple[float, str, Any]] = field(default_factory=list)
    contract_id: str = ""
    stripe_customer: str | None = None
    seller: str | None = None  # a seller of DEMO_SELLERS; None: the default seller


def _body(sc: Scenario, stamp: str) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    body: dict[str, Any] = {
        "contract_id": sc.contract_id,
        "kind": sc.kind,
        "policy": "demo",
        "customer": {
            "id": f"demo-{sc.key}-{stamp}",
            "name": "Erika Mustermann",
            "email": f"erika+{sc.key}-{stamp}@example.org",
            "locale": "de",
            "type": "consumer",
            "address": {
                "line1": "Musterstr. 1",
                "postal_code": "10115",
                "city": "Berlin",
                "country": "DE",
            },
        },
        "product": {"id": f"course-{sc.key}", "name": "Online-Kurs Bauchredner"},
        "currency": "eur",
        "payment": {"payment_method": sc.payment_method, "stripe_customer": sc.stripe_customer},
        "terms": {
            "version": "agb-2026-10",
            "accepted_at": now,
            "ip": "203.0.113.7",
            "text_sha256": "ab" * 32,
        },
    }
    if sc.seller is not None:
        body["seller_id"] = sc.seller
    if sc.kind == "one_off":
        body["one_off"] = {"amount": sc.amount}
    else:
        # due now, then every minute: the whole plan runs while you watch
        body["installments"] = {
            "count": sc.count,
            "amount": sc.amount,
            "interval": "PT1M",
            "first_due": now,
        }
    return body


def scenarios(stripe_client: stripe.StripeClient | None) -> list[Scenario]:
    out = [
        Scenario("paid", "3 installments, card, all succeed", "pm_card_visa", count=3),
        Scenario(
            "soft",
            "soft decline (insufficient funds), the retry succeeds",
            "pm_card_visa",
            actions=[(0, "script", ["insufficient_funds"])],
        ),
        Scenario(
            "hard",
            "lost card → reminder → lock → new card → unlock",
            "pm_card_visa_chargeDeclinedLostCard",
            actions=[(40, "payment_method", "pm_card_visa")],
        ),
        Scenario(
            "settle",
            "expired card → Mahnung → bank transfer settles",
            "pm_card_chargeDeclinedExpiredCard",
            count=1,
            actions=[(35, "settle", None)],
        ),
        Scenario(
            "collection",
            "card declined every time → whole ladder → hand-off",
            "pm_card_chargeCustomerFail",
            count=1,
        ),
        Scenario(
            "paid_after_handoff",
            "whole ladder → hand-off → the customer pays the seller: recorded, partner told",
            "pm_card_chargeCustomerFail",
            count=1,
            actions=[(0, "settle_after_handoff", None)],
        ),
        Scenario(
            "auth",
            "authentication required → link e-mail, no retries → new card pays",
            "pm_card_authenticationRequired",
            count=1,
            actions=[(20, "payment_method", "pm_card_visa")],
        ),
    ]
    if stripe_client is not None:
        sepa: list[tuple[str, str, str, dict[str, Any]]] = [
            ("sepa_ok", "SEPA: announced, processing, then paid", "DE89370400440532013000", {}),
            (
                "sepa",
                "SEPA one-off: announced, processing, returned → costs → dunning",
                "DE62370400440532013001",
                {"kind": "one_off", "amount": 49700},
            ),
            (
                "sepa_am04",
                "SEPA insufficient funds → announced again → re-presented once → dunning",
                "DE65370400440002222227",
                {"count": 1},
            ),
            (
                "chargeback",
                "SEPA paid, then the debtor's bank reclaims it → reopened with costs",
                "DE35370400440532013002",
                {"count": 1},
            ),
        ]
        try:
            for key, title, iban, extra in sepa:
                customer, pm = sepa_mandate(stripe_client, iban)
                out.append(Scenario(key, title, pm, stripe_customer=customer, **extra))
        except stripe.StripeError as exc:
            console.print(f"[yellow]SEPA scenarios skipped: {exc}")
    return out


# Two sellers of the platform: different connected accounts, bank details and tax settings.
DEMO_SELLERS: list[dict[str, Any]] = [
    {
        "id": "demo-kursschmiede",
        "name": "Kursschmiede",
        "legal_form": "GmbH",
        "address": "Hauptstraße 5, 80331 München",
        "register_court": "Amtsgericht München",
        "register_number": "HRB 123456",
        "managing_directors": "Erika Beispiel",
        "vat_id": "DE999999995",
        "tax_number": "143/123/45678",
        "iban": "DE89370400440532013000",
        "bic": "COBADEFFXXX",
        "creditor_id": "DE98ZZZ09999999999",
        "mail_from": "Kursschmiede <billing@kursschmiede.example>",
        "reply_to": "support@kursschmiede.example",
        "state": "BY",
        "stripe_account": "acct_DemoKursschmiede",
        "invoice_prefix": "KS-",
        "credit_note_prefix": "KS-K-",
    },
    {
        "id": "demo-yogaraum",
        "name": "Yogaraum Jana Beispiel",
        "legal_form": "Einzelunternehmen",
        "address": "Lindenallee 7, 50667 Köln",
        "managing_directors": "Jana Beispiel",
        "tax_number": "2181508150",
        "small_business": True,
        "iban": "DE02120300000000202051",
        "mail_from": "Yogaraum <kurse@yogaraum.example>",
        "reply_to": "jana@yogaraum.example",
        "state": "NW",
        "stripe_account": "acct_DemoYogaraum",
        "invoice_prefix": "YR-",
        "credit_note_series": "invoice",
    },
]


def seller_scenarios(
    stripe_key: str, standin_url: str, http: httpx.Client, api_key: str
) -> list[Scenario]:
    """The two demo sellers (their connected accounts at the stand-in, then
    `POST /v1/sellers`) and a contract each, its card on the seller's own account."""
    out: list[Scenario] = []
    plans = {
        "demo-kursschmiede": (
            "seller_a",
            "Kursschmiede (own account, own invoices KS-…): 2 installments paid",
            [],
        ),
        "demo-yogaraum": (
            "seller_b",
            "Yogaraum (§ 19, invoices YR-…): 1st paid, then withdrawal → refund",
            [(25, "withdrawal", None)],
        ),
    }
    for seller in DEMO_SELLERS:
        account = seller["stripe_account"]
        # exists already after an earlier run: the answer does not matter
        httpx.post(
            f"{standin_url}/_standin/accounts",
            json={"id": account, "type": "connected", "creditor_id": seller.get("creditor_id")},
        )
        resp = http.post("/v1/sellers", json=seller, headers={"Authorization": f"Bearer {api_key}"})
        if resp.status_code not in (200, 201, 409):  # 409: created before with other details
            console.print(f"[yellow]seller {seller['id']}: {resp.status_code} {resp.text[:300]}")
            continue
        # as the platform's checkout does it: on the connected account (Stripe-Account)
        on_account = stripe.StripeClient(
            stripe_key, stripe_account=account, base_addresses={"api": standin_url}
        )
        customer = on_account.v1.customers.create(params={"email": "erika@example.org"})
        pm = on_account.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
        key, title, actions = plans[seller["id"]]
        out.append(
            Scenario(
                key,
                title,
                pm.id,
                count=2 if key == "seller_a" else 3,
                amount=14900 if key == "seller_a" else 4900,
                actions=list(actions),
                stripe_customer=customer.id,
                seller=seller["id"],
            )
        )
    return out


def sepa_mandate(client: stripe.StripeClient, iban: str) -> tuple[str, str]:
    """A customer with a SEPA method and its mandate, set up as a platform does at checkout
    (SetupIntent): (customer id, payment method id)."""
    customer = client.v1.customers.create(params={"email": "erika@example.org"})
    pm = client.v1.payment_methods.create(
        params={
            "type": "sepa_debit",
            "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Erika Mustermann", "email": "erika@example.org"},
        }
    )
    client.v1.setup_intents.create(
        params={
            "customer": customer.id,
            "payment_method": pm.id,
            "allowed_payment_method_types": ["sepa_debit"],
            "confirm": True,
            "mandate_data": {
                "customer_acceptance": {
                    "type": "online",
                    "online": {"ip_address": "203.0.113.7", "user_agent": "mahnwerk demo"},
                }
            },
        }
    )
    return customer.id, pm.id


async def run(api_url: str, api_key: str, support_key: str, standin_url: str | None) -> int:
    stamp = datetime.now(UTC).strftime("%H%M%S")
    stripe_client = None
    stripe_key = os.environ.get("STRIPE_API_KEY", "sk_test_mahnwerk_dev")
    if standin_url:
        stripe_client = stripe.StripeClient(stripe_key, base_addresses={"api": standin_url})
    scs = scenarios(stripe_client)
    if stripe_client is not None and standin_url:
        try:
            with httpx.Client(base_url=api_url, timeout=30) as sync_http:
                scs += seller_scenarios(stripe_key, standin_url, sync_http, api_key)
        except (stripe.StripeError, httpx.HTTPError) as exc:
            console.print(f"[yellow]seller scenarios skipped: {exc}")
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for sc in scs:
            sc.contract_id = f"demo-{sc.key}-{stamp}"
            for at, action, arg in sc.actions:
                if action == "script" and at == 0 and standin_url:
                    # The stand-in's test route: the next debits of this contract decline.
                    httpx.post(
                        f"{standin_url}/_standin/scenarios",
                        json={"metadata": {"contract_id": sc.contract_id}, "outcomes": arg},
                    )
            resp = await http.post(
                "/v1/contracts",
                json=_body(sc, stamp),
                headers={"Authorization": f"Bearer {api_key}"},
            )
            if resp.status_code not in (200, 201):
                console.print(f"[red]could not start {sc.key}: {resp.status_code} {resp.text}")
                return 1
        done: set[tuple[str, float]] = set()
        table_rows: dict[str, dict[str, Any]] = {}
        with Live(console=console, refresh_per_second=2) as live:
            while time.monotonic() - started < 150:
                elapsed = time.monotonic() - started
                for sc in scs:
                    for at, action, arg in sc.actions:
                        if action == "script" or (sc.key, at) in done or elapsed < at:
                            continue
                        row = table_rows.get(sc.key) or {}
                        if action == "settle_after_handoff" and row.get("status") != "handed_off":
                            continue  # issue 12: a payment once the case is at the partner
                        done.add((sc.key, at))
                        hdr = {"Authorization": f"Bearer {support_key}"}
                        if action == "payment_method":
                            await http.post(
                                f"/v1/contracts/{sc.contract_id}/payment-method",
                                json={"payment_method": arg},
                                headers=hdr,
                            )
                        elif action == "withdrawal":
                            # the customer withdraws (§ 355 BGB): support records it
                            await http.post(
                                f"/v1/contracts/{sc.contract_id}/cancel",
                                json={
                                    "reason": "withdrawal",
                                    "note": "Widerruf per E-Mail (demo)",
                                },
                                headers=hdr,
                            )
                        elif action in ("settle", "settle_after_handoff"):
                            c = table_rows.get(sc.key) or {}
                            total = (c.get("claim") or {}).get("total") or sc.amount
                            await http.post(
                                f"/v1/contracts/{sc.contract_id}/settlements",
                                json={
                                    "amount": total,
                                    "method": "bank_transfer",
                                    "reference": "demo transfer",
                                },
                                headers=hdr,
                            )
                    resp = await http.get(
                        f"/v1/contracts/{sc.contract_id}",
                        headers={"Authorization": f"Bearer {api_key}"},
                    )
                    if resp.status_code == 200:
                        table_rows[sc.key] = resp.json()
                live.update(_table(scs, table_rows, elapsed))
                terminal = ("completed", "handed_off", "written_off", "failed", "cancelled")
                waiting = {  # a payment after the hand-off is still to come
                    sc.key
                    for sc in scs
                    if any(a == "settle_after_handoff" for _, a, _ in sc.actions)
                    and not any((sc.key, at) in done for at, _, _ in sc.actions)
                }
                if not waiting and all(
                    (table_rows.get(sc.key) or {}).get("status") in terminal for sc in scs
                ):
                    break
                await asyncio.sleep(1)
    console.print("Each contract's story in the Temporal UI:")
    for sc in scs:
        console.print(f"  {(table_rows.get(sc.key) or {}).get('temporal_ui', sc.contract_id)}")
    console.print('Filter in the UI, e.g.: DunningStage = "collection" AND AccessLocked = true')
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        await _save_invoices(http, api_key, scs)
    return 0


async def _save_invoices(http: httpx.AsyncClient, api_key: str, scs: list[Scenario]) -> None:
    """Each contract's invoices (issue 15), saved as PDFs to open: var/invoices/."""
    from core.settings import PROJECT_ROOT

    folder = PROJECT_ROOT / "var" / "invoices"
    saved: list[str] = []
    auth = {"Authorization": f"Bearer {api_key}"}
    for sc in scs:
        resp = await http.get(f"/v1/contracts/{sc.contract_id}/invoices", headers=auth)
        if resp.status_code != 200:
            continue
        for inv in resp.json()["data"]:
            # numbers are unique per seller: name the seller
            pdf = await http.get(
                f"/v1/invoices/{inv['number']}?seller_id={inv['seller_id']}",
                headers={**auth, "Accept": "application/pdf"},
            )
            if pdf.status_code == 200:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{inv['seller_id']}-{inv['number']}.pdf"
                path.write_bytes(pdf.content)
                what = "credit note" if inv["kind"] == "credit_note" else "invoice"
                saved.append(f"  {path}  ({sc.key}: {what}, installment {inv['installment']})")
    if saved:
        console.print("Invoices issued (GET /v1/invoices/{number}, Accept: application/pdf):")
        for line in saved:
            console.print(line)


def _table(scs: list[Scenario], rows: dict[str, dict[str, Any]], elapsed: float) -> Table:
    t = Table(title=f"Mahnwerk demo — {elapsed:.0f} s")
    for col in ("contract", "scenario", "status", "stage", "access", "overdue"):
        t.add_column(col)
    for sc in scs:
        c = rows.get(sc.key) or {}
        t.add_row(
            sc.contract_id,
            sc.title,
            c.get("status", "…"),
            (c.get("dunning") or {}).get("stage", "…"),
            c.get("access", "…"),
            f"{(c.get('claim') or {}).get('total', 0) / 100:.2f} €",
        )
    return t


def main(args: argparse.Namespace) -> int:
    settings = load_settings()
    keys = {k.role: k.key for k in settings.parsed_api_keys}
    api_key = getattr(args, "api_key", None) or keys.get("platform") or keys.get("admin")
    support_key = keys.get("support") or keys.get("admin") or api_key
    if not api_key:
        console.print("error: no API key: pass --api-key or set MAHNWERK_API_KEYS")
        return 2
    api_url = getattr(args, "api_url", None) or settings.public_url
    standin = settings.stripe_api_base or f"http://127.0.0.1:{settings.stripe_standin_port}"
    return asyncio.run(run(api_url, api_key, support_key or api_key, standin))


def seed(api_url: str, platform_key: str) -> list[str]:
    """Seed data for `mahnwerk dev`: a few contracts on the *default* policy so the Temporal
    UI and the API have something to show on the first start. Idempotent: the ids carry the
    date, so a restart the same day replays the same checkouts (200) and starts nothing new.
    """
    day = datetime.now(UTC).date().isoformat()
    base = _body(Scenario("seed", "", "pm_card_visa", count=6), day.replace("-", ""))
    plans = [
        ("plan", "pm_card_visa", "installments"),
        ("subscription", "pm_card_visa", "subscription"),
        ("lost-card", "pm_card_visa_chargeDeclinedLostCard", "installments"),
    ]
    out: list[str] = []
    with httpx.Client(base_url=api_url, timeout=30) as http:
        for key, pm, kind in plans:
            body = dict(base)
            body["contract_id"] = f"seed-{day}-{key}"
            body["policy"] = "default"
            body["kind"] = kind
            body["customer"] = dict(base["customer"], id=f"seed-{key}", email=f"{key}@example.org")
            body["product"] = {"id": f"seed-{key}", "name": "Online-Kurs Bauchredner"}
            body["payment"] = {"payment_method": pm}
            body["terms"] = dict(base["terms"], accepted_at=f"{day}T00:00:00+00:00")
            body.pop("installments", None)
            if kind == "subscription":
                body["subscription"] = {"amount": 2900, "interval": "P1M", "start": day}
            else:
                body["installments"] = {
                    "count": 6,
                    "amount": 9900,
                    "interval": "P1M",
                    "first_due": day,
                }
            resp = http.post(
                "/v1/contracts", json=body, headers={"Authorization": f"Bearer {platform_key}"}
            )
            if resp.status_code in (200, 201):
                out.append(body["contract_id"])
            else:
                console.print(f"[yellow]seed {key}: {resp.status_code} {resp.text[:200]}")
    return out
