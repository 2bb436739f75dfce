"""The support console's actions (issue 16 item 2): from a form to the API's own request.

Each action names the API route function it calls (api/routes/contracts.py), the roles the
API's route allows (admin may do everything, as api.deps.require), the request model the API
validates its JSON body with, and how the console's form fields become that body. The form's
strings are turned into the API's types here (euros to minor units, a date to 00:00
Europe/Berlin); everything else is the API's validation, with the API's messages
(`field: message`), and the API's refusals (409/422 from the workflow) are shown as the API
words them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from fastapi import Response
from pydantic import BaseModel, ValidationError

from api.errors import _field
from api.routes import contracts
from api.schemas import (
    CANCEL_REASONS,
    ApproveHandoffIn,
    CancelIn,
    DeferralIn,
    PauseIn,
    ReasonIn,
    ResumeIn,
    SettlementIn,
    WaiverIn,
)
from domain.schedule import BERLIN


class FormError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    kind: str = "text"  # text | textarea | date | money | select | checkbox
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()
    help: str = ""


@dataclass(frozen=True)
class Action:
    name: str  # the URL segment: /console/contracts/{id}/actions/{name}
    title: str
    effect: str  # what it does, shown on the confirmation page
    roles: tuple[str, ...]  # as the API route's dependency (admin implied)
    fields: tuple[FormField, ...] = ()
    model: type[BaseModel] | None = None
    build: Callable[[dict[str, str]], dict[str, Any]] | None = None
    route: Callable[..., Awaitable[Response]] | None = None
    danger: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def allowed(self, role: str) -> bool:
        return role == "admin" or role in self.roles

    def body(self, form: dict[str, str]) -> BaseModel | None:
        """The API's request body from the form: FormError / pydantic ValidationError."""
        if self.model is None or self.build is None:
            return None
        return self.model.model_validate(self.build(form))


def validation_messages(exc: ValidationError) -> list[str]:
    """The API's 422 wording (api/errors.py): `field: message` per error."""
    return [f"{_field(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors()]


_EUROS = re.compile(r"^(\d{1,9})(?:[.,](\d{1,2}))?$")


def euros_to_minor(field_name: str, text: str) -> int:
    """`101,50` / `101.50` / `101` euros → 10150 cents; FormError naming the field."""
    cleaned = text.strip().replace("\u00a0", "").replace(" ", "").removesuffix("€")
    m = _EUROS.fullmatch(cleaned)
    if not m:
        raise FormError(field_name, "enter an amount in euros, e.g. 101,50")
    cents = (m.group(2) or "0").ljust(2, "0")
    return int(m.group(1)) * 100 + int(cents)


def berlin_midnight(field_name: str, text: str) -> str:
    """An ISO date → 00:00 Europe/Berlin that day (RFC 3339), as the API takes times."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise FormError(field_name, "enter a date (YYYY-MM-DD)") from None
    return datetime.combine(day, time(0), BERLIN).isoformat()


def _text(form: dict[str, str], name: str) -> str:
    return form.get(name, "").strip()


def _pause(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": _text(form, "reason")}
    if _text(form, "until"):
        body["until"] = berlin_midnight("until", _text(form, "until"))
    return body


def _settle(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": euros_to_minor("amount", form.get("amount", "")),
        "method": _text(form, "method"),
        "reference": _text(form, "reference"),
    }
    if _text(form, "received_at"):
        body["received_at"] = berlin_midnight("received_at", _text(form, "received_at"))
    return body


def _waive(form: dict[str, str]) -> dict[str, Any]:
    return {
        "fees": form.get("fees") == "on",
        "interest": form.get("interest") == "on",
        "reason": _text(form, "reason"),
    }


def _cancel(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": _text(form, "reason"), "note": _text(form, "note")}
    when = _text(form, "at_period_end")
    if when in ("yes", "no"):
        body["at_period_end"] = when == "yes"
    if _text(form, "refund"):
        body["refund"] = euros_to_minor("refund", form.get("refund", ""))
    return body


def _approve(form: dict[str, str]) -> dict[str, Any]:
    route = _text(form, "route")
    return {"route": route} if route else {}


REASON = FormField("reason", "Reason (on the timeline)", "textarea", required=True)

ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "pause",
            "Pause",
            "No retries, notices, access locks or hand-offs until the date below (or until "
            "resumed); the dunning clock stands still.",
            ("support",),
            (
                FormField(
                    "until", "Resume by itself on (00:00 Berlin; empty: until resumed)", "date"
                ),
                REASON,
            ),
            PauseIn,
            _pause,
            contracts.pause,
        ),
        Action(
            "resume",
            "Resume",
            "Ends the pause now: dunning goes on from where it stood.",
            ("support",),
            (FormField("reason", "Reason (on the timeline)", "textarea"),),
            ResumeIn,
            lambda f: {"reason": _text(f, "reason")},
            contracts.resume,
        ),
        Action(
            "settle",
            "Record a payment (bank transfer, cash)",
            "A payment received outside Stripe, allocated costs → interest → principal, oldest "
            "first (§§ 366, 367 BGB); paying the claim ends the dunning case and unlocks access.",
            ("support",),
            (
                FormField("amount", "Amount in euros", "money", required=True),
                FormField(
                    "method",
                    "Method",
                    "select",
                    required=True,
                    options=(
                        ("bank_transfer", "bank transfer"),
                        ("cash", "cash"),
                        ("other", "other"),
                    ),
                ),
                FormField("reference", "Reference (bank statement line)", required=True),
                FormField("received_at", "Received on (empty: now)", "date"),
            ),
            SettlementIn,
            _settle,
            contracts.settle,
        ),
        Action(
            "defer",
            "Defer (Stundung)",
            "The overdue amount is due again on the date below (00:00 Berlin); no escalation "
            "before.",
            ("support",),
            (FormField("until", "Due again on", "date", required=True), REASON),
            DeferralIn,
            lambda f: {"until": _text(f, "until"), "reason": _text(f, "reason")},
            contracts.deferral,
        ),
        Action(
            "waive",
            "Waive fees / interest",
            "Waives the dunning fees (and costs) and/or the interest of the claim.",
            ("support",),
            (
                FormField("fees", "Waive dunning fees and costs", "checkbox"),
                FormField("interest", "Waive interest", "checkbox"),
                REASON,
            ),
            WaiverIn,
            _waive,
            contracts.waivers,
        ),
        Action(
            "contest",
            "Contest (customer disputes the claim)",
            "No automatic hand-off any more: the route becomes manual (an admin approves).",
            ("support",),
            (REASON,),
            ReasonIn,
            lambda f: {"reason": _text(f, "reason")},
            contracts.contest,
        ),
        Action(
            "cancel",
            "Cancel the contract",
            "Ends the contract (docs/endings.md): withdrawal, goodwill and fraud now, with a "
            "refund through Stripe where due; cancellation_button and other at the end of the "
            "period paid for unless 'now' is chosen.",
            ("platform", "support"),
            (
                FormField(
                    "reason",
                    "Reason",
                    "select",
                    required=True,
                    options=tuple((r, r) for r in CANCEL_REASONS),
                ),
                FormField(
                    "at_period_end",
                    "When",
                    "select",
                    options=(("", "as the reason says"), ("yes", "end of period"), ("no", "now")),
                ),
                FormField("refund", "Refund in euros (empty: as the policy says)", "money"),
                FormField("note", "Note (on the timeline)", "textarea"),
            ),
            CancelIn,
            _cancel,
            contracts.cancel,
            danger=True,
        ),
        Action(
            "write-off",
            "Write off",
            "Writes the claim off: the contract ends as written_off.",
            ("admin",),
            (REASON,),
            ReasonIn,
            lambda f: {"reason": _text(f, "reason")},
            contracts.write_off,
            danger=True,
        ),
        Action(
            "approve-handoff",
            "Approve the hand-off",
            "Hands the claim off (court or Inkasso) now that an admin approved it.",
            ("admin",),
            (
                FormField(
                    "route",
                    "Route",
                    "select",
                    options=(
                        ("", "the policy's route"),
                        ("court", "court"),
                        ("inkasso", "inkasso"),
                    ),
                ),
            ),
            ApproveHandoffIn,
            _approve,
            contracts.approve_handoff,
            danger=True,
        ),
        Action(
            "payment-link",
            "New payment link",
            "A fresh signed link to the customer's payment page (/pay/…), valid 60 days, to "
            "send to the customer. Nothing changes on the contract.",
            ("support",),
        ),
    )
}
