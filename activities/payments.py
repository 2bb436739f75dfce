"""Debits through Stripe's API (the official SDK; the stand-in or real Stripe alike).

A decline is a *result*, not an error (DESIGN.md decision 2): the workflow decides what
to do next from the policy. Only transport faults (network, 5xx, 429) raise, and Temporal
retries them with the same idempotency key, so a retried activity never debits twice
(decision 3).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import stripe
from sqlalchemy import Insert, Row, Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.ratelimit import SharedRate
from core import metrics
from core.db import transaction
from core.models import Contract, PaymentAttempt
from core.sellers import SellerConfigError, SellerDirectory, StripeRoute
from core.settings import default_stripe_rate_limit
from domain import declines
from workflows.types import ChargeInput, ChargeResult, PaymentStatusInput

log = logging.getLogger(__name__)

FINAL_ATTEMPT_STATES = ("succeeded", "declined")

# Stripe keeps idempotency keys for at least 24 hours ("Idempotent requests", Stripe API
# reference); an hour less leaves room for clock skew between us and Stripe.
KEY_FRESH_FOR = timedelta(hours=23)

_attempts = cast(Table, PaymentAttempt.__table__)  # written in SQLAlchemy Core (issue 17)


def _new_attempt(inp: ChargeInput, now: datetime, **columns: Any) -> Insert:
    """The INSERT of a debit attempt's row: who and what from `inp`, and `columns`."""
    return insert(_attempts).values(
        contract_id=inp.contract_id,
        installment_seq=inp.installment_seq,
        attempt=inp.attempt,
        idempotency_key=inp.idempotency_key,
        amount=inp.amount,
        currency=inp.currency,
        attempted_at=inp.attempted_at or now,
        **columns,
    )


def _as_utc(t: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class TokenBucket:
    """A thread-safe token bucket: at most `rate` acquisitions per second on average, up to
    `burst` at once. One bucket is shared by all activity threads of a worker, so the worker
    as a whole stays under Stripe's rate limit (25/s test, 100/s live; issue 5 item 6).
    `clock` and `sleep` are injectable for tests."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 5)
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()
        # The Stripe account the bucket limits (StripeRoute.limit_key): the key of its
        # deployment-wide PaymentIntent create rate (activities/ratelimit.py)
        self.key = "platform"

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1 - 1e-9:  # float slack: a wait of ~0 s would spin
                    self._tokens = max(0.0, self._tokens - 1)
                    return waited
                wait = (1 - self._tokens) / self.rate
            self._sleep(wait)  # outside the lock: other threads refill and queue meanwhile
            waited += wait

    @classmethod
    def for_api_key(cls, api_key: str, rate: float | None = None) -> TokenBucket:
        """`rate` (MAHNWERK_STRIPE_RATE_LIMIT), else Stripe's default for the key's mode."""
        return cls(rate if rate is not None else default_stripe_rate_limit(api_key))


def _api_key_of(client: stripe.StripeClient) -> str:
    options = getattr(getattr(client, "_requestor", None), "_options", None)
    return str(getattr(options, "api_key", None) or "")


def make_stripe_client(
    api_key: str, api_base: str | None, stripe_account: str | None = None
) -> stripe.StripeClient:
    """`stripe_account`: Stripe Connect — every request carries `Stripe-Account`, so it acts
    on that connected account (its customers, methods, mandates, PaymentIntents)."""
    base: Any = {"api": api_base} if api_base else None
    # SDK-level retries stay off: Temporal's activity retry policy owns transport retries,
    # and the idempotency key makes each retry safe.
    return stripe.StripeClient(
        api_key, stripe_account=stripe_account, base_addresses=base, max_network_retries=0
    )


class StripeAccounts:
    """The Stripe client and the rate limit of each seller (issue 14, core/sellers.py).

    A seller on Stripe Connect gets a client whose requests carry its `Stripe-Account`; a
    seller with its own key a client with that key; everyone else the platform's client.
    Stripe limits requests per account, so each account has its own token bucket (the
    platform's is the worker's `limiter`); clients and buckets are made once per account.
    Temporal's task-queue-wide rate on the Stripe queue still caps the whole deployment
    (MAHNWERK_STRIPE_CREATE_RATE_LIMIT)."""

    def __init__(
        self,
        sellers: SellerDirectory,
        api_base: str | None,
        platform: stripe.StripeClient,
        limiter: TokenBucket,
        rate: float | None = None,
    ) -> None:
        self.sellers = sellers
        self.api_base = api_base
        self.rate = rate
        self._platform_key = _api_key_of(platform)
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str | None], stripe.StripeClient] = {
            (self._platform_key, None): platform
        }
        limiter.key = StripeRoute(self._platform_key).limit_key
        self._buckets: dict[str, TokenBucket] = {limiter.key: limiter}

    def for_contract(self, contract_id: str) -> tuple[stripe.StripeClient, TokenBucket]:
        """`for_seller` of the contract's seller (read from the ledger)."""
        with self.sellers.sessions() as s:
            seller_id = s.scalar(select(Contract.seller_id).where(Contract.id == contract_id))
        return self.for_seller(seller_id)

    def for_seller(self, seller_id: str | None) -> tuple[stripe.StripeClient, TokenBucket]:
        """Raises SellerConfigError when the seller is unknown or its key reference names
        no variable of this process."""
        route = self.sellers.route(seller_id)
        with self._lock:
            client = self._clients.get((route.api_key, route.account))
            if client is None:
                client = make_stripe_client(route.api_key, self.api_base, route.account)
                self._clients[(route.api_key, route.account)] = client
            bucket = self._buckets.get(route.limit_key)
            if bucket is None:
                bucket = TokenBucket.for_api_key(route.api_key, self.rate)
                bucket.key = route.limit_key
                self._buckets[route.limit_key] = bucket
        return client, bucket


# Stripe refused the request itself (400/404, 401, 403): our integration error, never a
# decline (see `integration_error`).
REFUSED = (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError)

# Stripe's payment method types -> our scheme names (domain.declines, retry_timing).
_SCHEMES = {"card": "card", "sepa_debit": "sepa"}


def _type_of(obj: Any) -> str | None:
    """`type` of an expanded Stripe object (PaymentMethod, charge details); None for an id."""
    if obj is None or isinstance(obj, str):
        return None
    value = getattr(obj, "type", None)
    return str(value) if value else None


def scheme_of(pi: Any, hint: str | None = None) -> str:
    """Card or SEPA, from the payment method's *own* type (issue 10 item 4), never from
    `payment_method_types`, which lists every type the intent *may* use: a declined card on
    an intent that also allowed SEPA would otherwise be classified as a SEPA return.

    In order: the method of the last error (Stripe expands it in `last_payment_error`), the
    latest charge's `payment_method_details.type` (when expanded), the intent's method (when
    expanded), a single allowed type, and finally `hint` (what the workflow knows of the
    method it gave us) or card."""
    err = getattr(pi, "last_payment_error", None)
    for found in (
        _type_of(getattr(err, "payment_method", None)) if err else None,
        _type_of(getattr(getattr(pi, "latest_charge", None), "payment_method_details", None))
        if not isinstance(getattr(pi, "latest_charge", None), str)
        else None,
        _type_of(getattr(pi, "payment_method", None)),
    ):
        if found:
            return _SCHEMES.get(found, "card")
    types = list(getattr(pi, "payment_method_types", None) or [])
    if len(types) == 1:
        return _SCHEMES.get(str(types[0]), "card")
    if hint:
        return _SCHEMES.get(hint, hint if hint in ("card", "sepa") else "card")
    return "card"


def _expected_debit_date(pi: Any) -> str | None:
    """A SEPA debit's `expected_debit_date` from its (expanded) charge, else None."""
    charge = getattr(pi, "latest_charge", None)
    if charge is None or isinstance(charge, str):
        return None
    sepa = getattr(getattr(charge, "payment_method_details", None), "sepa_debit", None)
    value = getattr(sepa, "expected_debit_date", None)
    return str(value) if value else None


def result_from_intent(pi: Any, scheme_hint: str | None = None) -> ChargeResult:
    """Map a PaymentIntent to our outcome vocabulary."""
    status = pi.status
    amount = int(pi.amount or 0)
    scheme = scheme_of(pi, scheme_hint)
    if status == "succeeded":
        return ChargeResult("succeeded", pi.id, amount=amount, scheme=scheme)
    if status == "processing":
        return ChargeResult(
            "processing",
            pi.id,
            amount=amount,
            scheme=scheme,
            expected_debit_date=_expected_debit_date(pi),
        )
    err = getattr(pi, "last_payment_error", None)
    if status in ("requires_confirmation", "requires_capture") or (
        status == "requires_payment_method" and not err
    ):
        # Only a PaymentIntent the platform created at checkout can be here: the customer
        # has not finished paying yet. Keep watching.
        return ChargeResult("pending", pi.id, amount=amount, scheme=scheme)
    code = None
    message = None
    if err:
        code = getattr(err, "decline_code", None) or getattr(err, "code", None)
        message = getattr(err, "message", None)
    if status == "requires_action":
        code = code or "authentication_required"
    if status in ("requires_payment_method", "requires_action", "canceled"):
        code = code or ("payment_intent_canceled" if status == "canceled" else "payment_failed")
        if not declines.is_known(code, scheme):
            # Treated as soft with capped retries (domain.retry_timing); worth adding to
            # the classification table once its meaning is known.
            log.warning(
                "unknown %s decline code %r on %s: soft, at most %d retries",
                scheme,
                code,
                pi.id,
                declines.MAX_UNKNOWN_RETRIES,
            )
        return ChargeResult(
            "declined",
            pi.id,
            code=code,
            failure_class=declines.classify(code, scheme),
            message=message,
            amount=amount,
            scheme=scheme,
        )
    raise ApplicationError(f"unexpected PaymentIntent status {status!r}", type="UnexpectedStatus")


def off_session_debit_params(inp: ChargeInput) -> dict[str, Any]:
    """The PaymentIntent Mahnwerk creates for a due amount: a merchant-initiated charge of a
    saved method, as Stripe documents it ("Charge the saved payment method later",
    docs.stripe.com/payments/save-and-reuse; API reference: Create a PaymentIntent):

    * `confirm=true, off_session=true`: the customer is not present;
    * the method's type named in `allowed_payment_method_types` (the request parameter at
      the pinned API version 2026-10-28; `payment_method_types` is only the response field
      listing what the intent may use), so Stripe never needs a `return_url` for a
      redirect-based method. When the type is unknown, automatic payment
      methods *without redirects* (`automatic_payment_methods[allow_redirects]=never`);
      with automatic methods and redirects allowed Stripe refuses to confirm without a
      `return_url`;
    * `customer`: a saved method is attached to a Customer, and Stripe requires that
      Customer on the intent;
    * SEPA: `mandate`, the Mandate the customer signed for this method (Stripe uses the
      method's mandate when omitted; naming it makes the debit fail loudly if it is gone).
    """
    params: dict[str, Any] = {
        "amount": inp.amount,
        "currency": inp.currency,
        "payment_method": inp.payment_method,
        "confirm": True,
        "off_session": True,
        "description": inp.description,
        "metadata": {
            "contract_id": inp.contract_id,
            "installment": str(inp.installment_seq),
            "attempt": str(inp.attempt),
            "idempotency_key": inp.idempotency_key,
        },
        # the charge: the method's type, and a SEPA debit's expected_debit_date
        "expand": ["latest_charge"],
    }
    if inp.method_type in ("card", "sepa_debit"):
        params["allowed_payment_method_types"] = [inp.method_type]
    else:
        params["automatic_payment_methods"] = {"enabled": True, "allow_redirects": "never"}
    if inp.stripe_customer:
        params["customer"] = inp.stripe_customer
    if inp.method_type == "sepa_debit" and inp.mandate:
        params["mandate"] = inp.mandate
    return params


def integration_error(
    exc: stripe.StripeError, pi_id: str | None = None, seller: str | None = None
) -> ChargeResult:
    """Stripe refused the request itself (400/401/403/404, not a card or bank decline): our
    integration error — a parameter Stripe does not take, SEPA not enabled on the account, a
    method not attached to the customer, a revoked key. Never the customer's fault, so never
    a decline (issue 10 item 3; DESIGN.md decision 3): the workflow stalls the installment,
    alerts, and retries with backoff or when an admin says so."""
    code = getattr(exc, "code", None) or type(exc).__name__
    request_id = getattr(exc, "request_id", None)
    status = getattr(exc, "http_status", None)
    metrics.integration_error(code, seller)
    log.error(
        "stripe refused the request (integration error, not a decline): status=%s code=%s "
        "request_id=%s: %s",
        status,
        code,
        request_id,
        getattr(exc, "user_message", None) or str(exc),
    )
    return ChargeResult(
        "error",
        pi_id,
        code=code,
        message=(getattr(exc, "user_message", None) or str(exc))[:500],
        request_id=request_id,
        http_status=status,
    )


def _hint(inp: ChargeInput) -> str | None:
    return _SCHEMES.get(inp.method_type) if inp.method_type else None


def seller_config_error(exc: SellerConfigError, seller: str | None = None) -> ChargeResult:
    """The seller's Stripe credentials cannot be used (its key reference names no variable
    of this worker, or the seller is unknown): nothing was sent, nobody declined — our
    configuration error, handled as Stripe refusing our request (`integration_error`)."""
    metrics.integration_error("seller_config", seller)
    log.error("stripe not called, the seller's configuration is unusable: %s", exc)
    return ChargeResult("error", code="seller_config", message=str(exc)[:500])


class PaymentActivities:
    def __init__(
        self,
        stripe_client: stripe.StripeClient,
        session_factory: sessionmaker[Session],
        limiter: TokenBucket | None = None,
        accounts: StripeAccounts | None = None,
        create_rate: SharedRate | None = None,
    ) -> None:
        """`limiter`: the client-side rate limit shared by all activity threads (the worker
        passes `TokenBucket(settings.effective_stripe_rate_limit)`); by default Stripe's
        limit for the client's key mode. `accounts`: each seller's Stripe account (issue
        14); without it every debit uses `stripe_client`. `create_rate`: the PaymentIntent
        creates per second per Stripe account across every worker (issue 17; the worker
        passes MAHNWERK_STRIPE_CREATE_RATE_LIMIT's, shared through the ledger database)."""
        self.stripe = stripe_client
        self.sessions = session_factory
        self.limiter = limiter or TokenBucket.for_api_key(_api_key_of(stripe_client))
        self.accounts = accounts
        self.create_rate = create_rate

    def stripe_for(self, seller_id: str | None) -> tuple[stripe.StripeClient, TokenBucket]:
        """The seller's Stripe client and rate limit (SellerConfigError if unusable)."""
        if self.accounts is None:
            return self.stripe, self.limiter
        return self.accounts.for_seller(seller_id)

    def _throttle(self, limiter: TokenBucket | None = None) -> None:
        """Before every Stripe call, a token of the account's rate limit. Stripe's 429
        (RateLimitError), 5xx (APIError) and network faults (APIConnectionError) are never
        caught in this module: they raise out of the activity and Temporal's CHARGE retry
        policy retries with backoff, with the same idempotency key."""
        waited = (limiter or self.limiter).acquire()
        if waited > 0.5:
            log.info("stripe rate limit: waited %.2fs", waited)

    # -- helpers ---------------------------------------------------------------------------

    def _claim_key(self, inp: ChargeInput) -> Row[Any, Any] | None:
        """Write the attempt's ledger row (status `submitting`) *before* the first Stripe
        request with its idempotency key. Returns None when this call created the row (the
        key has never been sent), else the row an earlier try left (its `attempted_at` is no
        later than that try's first request). Raises when the database is away, so that no
        request is ever sent without its row: the row is the proof `_needs_search` relies on.

        One INSERT (SQLAlchemy Core, issue 17): a first try, by far the most common, writes
        and reads nothing else; a retry's INSERT meets the unique key and reads the row."""
        now = datetime.now(UTC)
        try:
            with transaction(self.sessions) as s:
                s.connection().execute(
                    _new_attempt(inp, now, payment_method=inp.payment_method, status="submitting")
                )
        except IntegrityError:  # an earlier (or concurrent) try of the same key wrote it
            with self.sessions() as s:
                row = (
                    s.connection()
                    .execute(
                        select(_attempts.c.attempted_at, _attempts.c.status).where(
                            _attempts.c.idempotency_key == inp.idempotency_key
                        )
                    )
                    .first()
                )
            if row is None:  # not the key: e.g. the contract is missing from the ledger
                raise
            return row
        return None

    @staticmethod
    def _needs_search(inp: ChargeInput, earlier: Row[Any, Any] | None) -> bool:
        """Must we look the key up in Stripe's metadata before creating (DESIGN.md 3)?

        Stripe keeps an idempotency key for at least 24 h: a request with a key it still
        holds and the same parameters returns the PaymentIntent of the first request instead
        of debiting again. So the search (a second Stripe request per debit, rate-limited and
        with a lagging index) is needed only when an earlier request with this key may be
        older than that, or may have had other parameters. Cases:

        * No row existed (`earlier is None`) and this is the activity's first attempt: no
          request with this key was ever sent — every send is preceded by the row
          (`_claim_key`) — so nothing can exist at Stripe. Create directly. Exception: a
          retry (attempt > 1) that had to create the row is the retry of a try that ran code
          without the row (before this rule existed) and may have sent: search.
        * A row existed and it is this activity execution's own earlier try: same
          `attempted_at` (the workflow time that scheduled it; a workflow reset or a later
          attempt has another) and thus the same input, and the execution's first attempt
          was scheduled less than `KEY_FRESH_FOR` ago (so was every request it sent): Stripe
          still holds the key. Create directly; Stripe answers with the same PaymentIntent.
        * Anything else — a row from another execution (a reset workflow re-issuing the
          key), an execution older than `KEY_FRESH_FOR`, no activity context (a direct
          call) or no `attempted_at` to compare: search first, as before.
        """
        try:
            info = activity.info()
        except RuntimeError:  # called outside an activity: know nothing, assume the worst
            return earlier is not None
        if earlier is None:
            return info.attempt > 1
        if inp.attempted_at is None:
            return True
        same_execution = abs(_as_utc(earlier.attempted_at) - _as_utc(inp.attempted_at)) < (
            timedelta(seconds=1)
        )
        # scheduled_time: when the *first* attempt of this execution was scheduled.
        young = datetime.now(UTC) - _as_utc(info.scheduled_time) < KEY_FRESH_FOR
        return not (same_execution and young)

    def _find_existing(
        self,
        key: str,
        client: stripe.StripeClient | None = None,
        limiter: TokenBucket | None = None,
    ) -> Any | None:
        """Stripe forgets idempotency keys after 24 h, so look for a PaymentIntent carrying
        the key in its metadata before creating one (DESIGN.md decision 3), whenever
        `_needs_search` cannot rule out an older request with this key. On the seller's
        account: a connected account's PaymentIntents are found there only."""
        self._throttle(limiter)
        found = (client or self.stripe).v1.payment_intents.search(
            params={
                "query": f"metadata['idempotency_key']:'{key}'",
                "limit": 1,
                # the charge tells the method's type (card or SEPA) for the classification
                "expand": ["data.latest_charge"],
            }
        )
        data = list(found.data)
        return data[0] if data else None

    def _record(self, inp: ChargeInput, res: ChargeResult) -> None:
        """The attempt's outcome on its row: one UPDATE (the row `_claim_key` wrote), or
        the row itself when there is none (no payment method, the seller's configuration)."""
        now = datetime.now(UTC)
        outcome: dict[str, Any] = {
            "payment_method": inp.payment_method,
            "payment_intent": res.payment_intent,
            "status": res.status,
            "decline_code": res.code,
            "failure_class": res.failure_class,
            "message": res.message,
        }
        if res.status == "succeeded":
            outcome["settled_at"] = now
        key = _attempts.c.idempotency_key == inp.idempotency_key
        with transaction(self.sessions) as s:
            updated = s.connection().execute(update(_attempts).where(key).values(outcome))
            if updated.rowcount:
                return
        try:
            with transaction(self.sessions) as s:
                s.connection().execute(_new_attempt(inp, now, **outcome))
        except IntegrityError:  # a concurrent retry recorded it first: same outcome
            log.info("attempt %s recorded by a concurrent try", inp.installment_seq)

    # -- activities ------------------------------------------------------------------------

    @activity.defn(name="charge")
    def charge(self, inp: ChargeInput) -> ChargeResult:
        """Debit `amount` off-session, exactly once per idempotency key."""
        if not inp.payment_method:
            res = ChargeResult(
                "declined",
                code="payment_method_missing",
                failure_class=declines.FIX_DATA,
                message="no payment method on file",
            )
            self._record(inp, res)
            metrics.debit_attempted(res.status, res.code, inp.seller_id)  # metrics (issue 4 item 7)
            return res
        try:
            client, limiter = self.stripe_for(inp.seller_id)
        except SellerConfigError as exc:
            res = seller_config_error(exc, inp.seller_id)
            self._record(inp, res)
            return res
        earlier = self._claim_key(inp)
        try:
            existing = (
                self._find_existing(inp.idempotency_key, client, limiter)
                if self._needs_search(inp, earlier)
                else None
            )
        except REFUSED as exc:
            res = integration_error(exc, seller=inp.seller_id)
            self._record(inp, res)
            return res
        if existing is not None:
            res = result_from_intent(existing, _hint(inp))
            self._record(inp, res)
            metrics.debit_attempted(res.status, res.code, inp.seller_id)  # metrics (issue 4 item 7)
            return res
        params = off_session_debit_params(inp)
        try:
            self._throttle(limiter)
            if self.create_rate is not None:
                waited = self.create_rate.acquire(limiter.key)
                if waited > 0.5:
                    log.info("stripe create rate: waited %.2fs", waited)
            pi = client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": inp.idempotency_key},
            )
            res = result_from_intent(pi, _hint(inp))
        except stripe.CardError as exc:
            # 402: the card or bank declined. The method's own type decides the scheme.
            err = exc.error
            code = (getattr(err, "decline_code", None) or exc.code) if err else exc.code
            pi_obj = getattr(err, "payment_intent", None) if err else None
            pm_obj = getattr(err, "payment_method", None) if err else None
            found = _type_of(pm_obj)
            scheme = _SCHEMES.get(found, "card") if found else (_hint(inp) or "card")
            res = ChargeResult(
                "declined",
                getattr(pi_obj, "id", None),
                code=code or "card_declined",
                failure_class=declines.classify(code, scheme),
                message=exc.user_message or str(exc),
                amount=inp.amount,
                scheme=scheme,
            )
        except stripe.IdempotencyError as exc:
            # Same key, different parameters: an earlier request with this key may have
            # debited. Never retry blindly with a fresh key: the workflow stalls the debit
            # with the same key, and the next try looks the key up at Stripe first.
            raise ApplicationError(
                str(exc), type="IdempotencyConflict", non_retryable=True
            ) from exc
        except REFUSED as exc:
            res = integration_error(exc, seller=inp.seller_id)
        if res.status == "error":
            self._record(inp, res)
            return res
        self._record(inp, res)
        metrics.debit_attempted(res.status, res.code, inp.seller_id)  # metrics (issue 4 item 7)
        log.info(
            "charge installment=%s attempt=%s status=%s code=%s",
            inp.installment_seq,
            inp.attempt,
            res.status,
            res.code,
            extra={
                "contract_id": inp.contract_id,
                "workflow_id": f"contract-{inp.contract_id}",
            },
        )
        return res

    @activity.defn(name="payment_status")
    def payment_status(self, inp: PaymentStatusInput) -> ChargeResult:
        """Poll a debit that is still `processing` (fallback when a webhook is lost)."""
        try:
            client, limiter = self.stripe_for(inp.seller_id)
        except SellerConfigError as exc:
            return dataclasses.replace(
                seller_config_error(exc, inp.seller_id), payment_intent=inp.payment_intent
            )
        self._throttle(limiter)
        try:
            pi = client.v1.payment_intents.retrieve(
                inp.payment_intent, params={"expand": ["latest_charge"]}
            )
        except REFUSED as exc:
            return integration_error(exc, inp.payment_intent, inp.seller_id)
        return result_from_intent(pi, inp.scheme)
