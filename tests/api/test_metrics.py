"""Prometheus metrics (issue 4 item 7): `GET /metrics` on the API, the business counters
counted where things happen (the real activities against the Stripe stand-in and the real
ledger), the ledger gauges computed on scrape, and the worker's Temporal runtime endpoint
with the SDK metrics next to ours."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import WorkflowEnvironment

from activities.ledger import LedgerActivities
from activities.notices import NoticeActivities
from activities.payments import PaymentActivities, make_stripe_client
from api.main import create_app
from core import metrics
from core.db import transaction
from core.models import Contract, OutboxEvent, PaymentAttempt
from core.settings import Settings
from core.temporal import connect_client
from domain.interest import BaseRate, base_rate_coverage, with_rates
from domain.schedule import berlin_date
from tests.conftest import api_client, insert_ledger_contract
from workflows.types import (
    ChargeInput,
    ClaimLine,
    Customer,
    Fact,
    LedgerSync,
    NoticeInput,
    Product,
)

NAMES = (
    "mahnwerk_debits_attempted_total",
    "mahnwerk_debits_succeeded_total",
    "mahnwerk_debits_failed_total",
    "mahnwerk_notices_sent_total",
    "mahnwerk_access_locks_total",
    "mahnwerk_handoffs_total",
    "mahnwerk_open_claim_amount",
    "mahnwerk_events_pending",
)


@pytest.fixture
async def http(settings: Settings, sessions: sessionmaker[Session]) -> AsyncIterator[Any]:
    async with api_client(create_app(settings, sessions)) as client:
        yield client


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


async def _scrape(http: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = await http.get("/metrics")  # no API key: Prometheus scrapes without one
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return _samples(resp.text)


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples with `labels` (over the labels not named: the `seller`
    label unless a test names it)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _contract(
    sessions: sessionmaker[Session],
    *,
    status: str = "in_dunning",
    overdue: int = 0,
    currency: str = "eur",
    seller_id: str = "default",
) -> str:
    cid = f"met-{uuid.uuid4().hex[:10]}"
    insert_ledger_contract(
        sessions, cid, status=status, currency=currency, overdue_amount=overdue, seller_id=seller_id
    )
    return cid


# -- the endpoint ------------------------------------------------------------------------------


async def test_metrics_answer_the_prometheus_text_format_with_every_name(
    http: httpx.AsyncClient,
) -> None:
    resp = await http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=")
    for name in NAMES:
        assert f"# TYPE {name} " in resp.text, name
    assert "# TYPE mahnwerk_debits_failed_total counter" in resp.text
    assert "# TYPE mahnwerk_open_claim_amount gauge" in resp.text
    # OpenMetrics for a scraper that asks for it
    resp = await http.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.rstrip().endswith("# EOF")


async def test_open_claim_gauge_and_pending_events_come_from_the_ledger(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    # XTS: the ISO 4217 code for tests, so no other contract of the run adds to it.
    before = await _scrape(http)
    assert _value(before, "mahnwerk_open_claim_amount", currency="xts") == 0
    first = _contract(sessions, overdue=12_345, currency="xts")
    _contract(sessions, overdue=600, currency="xts")
    _contract(sessions, status="active", overdue=99_999, currency="xts")  # not in dunning
    _contract(sessions, status="handed_off", overdue=77_777, currency="xts")
    with transaction(sessions) as s:
        s.add(
            OutboxEvent(event_id=f"evt_{uuid.uuid4().hex}", contract_id=first, type="x", payload={})
        )
    after = await _scrape(http)
    assert _value(after, "mahnwerk_open_claim_amount", currency="xts") == 12_945
    pending = _value(after, "mahnwerk_events_pending") - _value(before, "mahnwerk_events_pending")
    assert pending == 1
    # the ledger moves, the gauge follows (computed on scrape, not counted)
    with transaction(sessions) as s:
        contract = s.get(Contract, first)
        assert contract is not None
        contract.status = "completed"
    after = await _scrape(http)
    assert _value(after, "mahnwerk_open_claim_amount", currency="xts") == 600


# -- the counters, where things happen ---------------------------------------------------------


def _charge(pay: PaymentActivities, cid: str, pm: str | None, attempt: int = 1) -> Any:
    return pay.charge(
        ChargeInput(
            contract_id=cid,
            installment_seq=1,
            attempt=attempt,
            idempotency_key=f"{cid}:1:{attempt}",
            amount=9900,
            currency="eur",
            stripe_customer=None,
            payment_method=pm,
            description="metrics test",
        )
    )


async def test_debits_count_attempts_successes_and_failures_by_code(
    http: httpx.AsyncClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    pay = PaymentActivities(
        make_stripe_client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base),
        sessions,
    )
    cid = _contract(sessions)
    before = await _scrape(http)
    assert _charge(pay, cid, "pm_card_visa", 1).status == "succeeded"
    res = _charge(pay, cid, "pm_card_visa_chargeDeclinedInsufficientFunds", 2)
    assert (res.status, res.code) == ("declined", "insufficient_funds")
    assert _charge(pay, cid, None, 3).code == "payment_method_missing"
    after = await _scrape(http)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("mahnwerk_debits_attempted_total") == 3
    assert delta("mahnwerk_debits_succeeded_total") == 1
    assert delta("mahnwerk_debits_failed_total", code="insufficient_funds") == 1
    assert delta("mahnwerk_debits_failed_total", code="payment_method_missing") == 1


@pytest.fixture
def seller_labels() -> Iterator[metrics.SellerLabels]:
    """The process's seller labels, forgotten before and after the test."""
    metrics.SELLER_LABELS.reset()
    try:
        yield metrics.SELLER_LABELS
    finally:
        metrics.SELLER_LABELS.reset()
        metrics.SELLER_LABELS.configure(metrics.DEFAULT_SELLER_LABELS)


async def test_the_seller_label_names_the_first_sellers_and_then_other(
    settings: Settings, sessions: sessionmaker[Session], seller_labels: metrics.SellerLabels
) -> None:
    """Issue 14 part 5: counters and the open-claim gauge by seller, with at most
    MAHNWERK_METRICS_SELLER_LABELS sellers of their own (here 2), the rest `other`."""
    bounded = settings.model_copy(update={"metrics_seller_labels": 2})
    tag = uuid.uuid4().hex[:6]
    sellers = [f"s{n}-{tag}" for n in range(4)]
    pay = PaymentActivities(
        make_stripe_client(settings.stripe_api_key.get_secret_value(), settings.stripe_api_base),
        sessions,
    )
    async with api_client(create_app(bounded, sessions)) as http:
        assert seller_labels.limit == 2
        # the counters only: a scrape of /metrics would label the sellers of the contracts
        # in dunning first, and the first two sellers seen are the ones this test charges
        before = _samples(generate_latest(metrics.REGISTRY).decode())
        for seller_id in sellers:
            cid = _contract(sessions, seller_id=seller_id)
            res = pay.charge(
                ChargeInput(
                    contract_id=cid,
                    installment_seq=1,
                    attempt=1,
                    idempotency_key=f"{cid}:1:1",
                    amount=9900,
                    currency="eur",
                    stripe_customer=None,
                    payment_method=None,
                    description="metrics test",
                    seller_id=seller_id,
                )
            )
            assert res.code == "payment_method_missing"
        # contracts in dunning of a seller with a label and of one without
        _contract(sessions, overdue=700, currency="xsu", seller_id=sellers[0])
        _contract(sessions, overdue=300, currency="xsu", seller_id=sellers[3])
        after = await _scrape(http)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    failed = "mahnwerk_debits_failed_total"
    assert delta(failed, seller=sellers[0]) == 1
    assert delta(failed, seller=sellers[1]) == 1
    assert delta(failed, seller="other") == 2
    assert _value(after, failed, seller=sellers[2]) == 0  # no series of its own
    assert delta("mahnwerk_debits_attempted_total", seller="other") == 2
    labels = {
        dict(ls)["seller"]
        for (name, ls), _ in after.items()
        if name.startswith("mahnwerk_") and "seller" in dict(ls)
    }
    assert sellers[0] in labels and sellers[1] in labels and "other" in labels
    assert sellers[2] not in labels and sellers[3] not in labels, labels
    claim = "mahnwerk_open_claim_amount"
    assert _value(after, claim, currency="xsu", seller=sellers[0]) >= 700
    assert _value(after, claim, currency="xsu", seller=sellers[3]) == 0
    assert _value(after, claim, currency="xsu", seller="other") >= 300


def test_seller_labels_are_stable_and_bounded() -> None:
    labels = metrics.SellerLabels(limit=1)
    assert labels.label("") == "default"  # a contract from before sellers
    assert labels.label("a") == "other"
    assert labels.label(None) == "default" and labels.label("default") == "default"
    none = metrics.SellerLabels(limit=0)
    assert none.label("default") == "other"


async def test_ledger_counts_locks_handoffs_and_late_sepa_outcomes_once(
    http: httpx.AsyncClient, sessions: sessionmaker[Session]
) -> None:
    cid = _contract(sessions)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        for n in (1, 2):
            s.add(
                PaymentAttempt(
                    contract_id=cid,
                    installment_seq=n,
                    attempt=1,
                    idempotency_key=f"{cid}:{n}:1",
                    amount=9900,
                    currency="eur",
                    status="processing",  # SEPA: the outcome arrives days later
                )
            )
    sync = LedgerSync(
        contract_id=cid,
        status="handed_off",
        stage="mahnung_2",
        access="locked",
        overdue_amount=19800,
        fees=500,
        case_no=1,
        case_opened_at=now,
        facts=[
            Fact(f"lock:{cid}:1", "access.locked", now, {"case": 1}, event="access.locked"),
            Fact(f"handed_off:{cid}:1", "contract.handed_off", now, {"route": "inkasso"}),
            Fact(f"note:{cid}", "contract.paused", now, {}),
        ],
        attempt_outcomes=[[f"{cid}:1:1", "succeeded", ""], [f"{cid}:2:1", "declined", "AC04"]],
    )
    ledger = LedgerActivities(sessions)
    before = await _scrape(http)
    assert ledger.sync_ledger(sync) == 3
    assert ledger.sync_ledger(sync) == 0  # a retried activity: nothing new, nothing counted
    after = await _scrape(http)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("mahnwerk_access_locks_total") == 1
    assert delta("mahnwerk_handoffs_total", route="inkasso") == 1
    assert delta("mahnwerk_debits_succeeded_total") == 1
    assert delta("mahnwerk_debits_failed_total", code="AC04") == 1
    assert delta("mahnwerk_debits_attempted_total") == 0  # counted when the debit was made


async def test_notices_count_by_stage_once_per_notice(
    http: httpx.AsyncClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    cid = _contract(sessions)
    sent: list[str] = []
    acts = NoticeActivities(settings, sessions, mailer=lambda *args: sent.append(args[2]))
    inp = NoticeInput(
        contract_id=cid,
        case_no=1,
        stage="mahnung_1",
        template="mahnung_1",
        customer=Customer(id="cus-1", name="Erika Mustermann", email="erika@example.org"),
        product=Product(id="course-x", name="Kurs X"),
        currency="eur",
        lines=[ClaimLine("installment 1 of 3", 1, datetime(2026, 12, 1, tzinfo=UTC), 9900)],
        fees=250,
        total=10150,
        deadline=datetime(2026, 12, 20, 12, tzinfo=UTC),
        created_at=datetime(2026, 12, 15, 9, tzinfo=UTC),
    )
    before = await _scrape(http)
    assert acts.send_notice(inp).already_sent is False
    assert acts.send_notice(inp).already_sent is True  # not sent again, not counted again
    after = await _scrape(http)
    assert len(sent) == 1
    stage = {"stage": "mahnung_1"}
    assert (
        _value(after, "mahnwerk_notices_sent_total", **stage)
        - _value(before, "mahnwerk_notices_sent_total", **stage)
        == 1
    )


# -- the worker's endpoint: Temporal SDK metrics and ours --------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_worker_runtime_serves_sdk_metrics_and_the_business_counters(
    settings: Settings, ts_env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    assert metrics.worker_runtime(settings.model_copy(update={"worker_metrics_port": 0})) is None
    port = _free_port()
    worker_settings = settings.model_copy(update={"worker_metrics_port": port})
    runtime = metrics.worker_runtime(worker_settings)
    assert runtime is not None
    target = ts_env.client.service_client.config.target_host
    client = await connect_client(worker_settings, target=target, runtime=runtime)
    await client.workflow_service.get_system_info(GetSystemInfoRequest())
    metrics.debit_attempted("declined", "do_not_honor")
    async with httpx.AsyncClient() as web:
        text = (await web.get(f"http://127.0.0.1:{port}/metrics")).text
    names = {family.name for family in text_string_to_metric_families(text)}
    assert any(name.startswith("temporal_") for name in names), sorted(names)
    samples = _samples(text)
    failed = [
        v
        for (name, labels), v in samples.items()
        if name == "mahnwerk_debits_failed_total" and ("code", "do_not_honor") in labels
    ]
    assert failed and failed[0] >= 1
    assert any(name == "mahnwerk_debits_attempted_total" for name, _ in samples)

    # a second worker on the same host: no endpoint, a warning, the worker still runs
    assert metrics.worker_runtime(worker_settings) is None
    assert "worker metrics disabled" in caplog.text and str(port) in caplog.text


def _half_years_up_to(today: date) -> list[str]:
    """Every 1 January / 1 July from 2026-07-01 (the first half-year the built-in table
    lacks) up to and including today's half-year."""
    out, d = [], date(2026, 7, 1)
    while d <= today:
        out.append(d.isoformat())
        d = date(d.year, 7, 1) if d.month == 1 else date(d.year + 1, 1, 1)
    return out


def test_base_rate_gauges_say_whether_today_is_covered() -> None:
    today = date.fromisoformat(berlin_date(datetime.now(UTC)))
    covering = with_rates([BaseRate(d, 127, "TEST DATA") for d in _half_years_up_to(today)])
    # the table ends half a year before today: today and its half-year are missing
    ending = [r for r in covering if r.effective <= (today - timedelta(days=190)).isoformat()]
    for rates, covered, missing in ((covering, 1.0, 0.0), (ending, 0.0, 1.0)):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics.BaseRateCollector(rates))
        samples = _samples(generate_latest(registry).decode())
        assert _value(samples, "mahnwerk_base_rate_covered") == covered
        assert _value(samples, "mahnwerk_base_rate_missing_half_years") >= missing
        if covered:
            assert _value(samples, "mahnwerk_base_rate_missing_half_years") == 0.0


async def test_readyz_warns_without_todays_base_rate_and_stays_ready(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    today = date.fromisoformat(berlin_date(datetime.now(UTC)))
    full = settings.model_copy(
        update={"base_rates": ",".join(f"{d}:127" for d in _half_years_up_to(today))}
    )
    bare = settings.model_copy(update={"base_rates": ""})
    for cfg in (full, bare):
        coverage = base_rate_coverage(with_rates(cfg.extra_base_rates), today.isoformat())
        async with api_client(create_app(cfg, sessions)) as http:
            ready = await http.get("/readyz")
            scraped = await _scrape(http)
        body = ready.json()
        # the database answers; Temporal may not in this test: readiness is about them only
        assert body["checks"]["database"] == "ok"
        gap = not coverage.covered or bool(coverage.missing)
        assert ("warnings" in body) == gap, body
        if gap:
            assert "MAHNWERK_BASE_RATES" in body["warnings"]["base_rates"]
            for half_year in coverage.missing:
                assert half_year in body["warnings"]["base_rates"]
        assert _value(scraped, "mahnwerk_base_rate_covered") == float(coverage.covered)
    # the configured table covers today (so one of the two scrapes above said 1)
    assert base_rate_coverage(with_rates(full.extra_base_rates), today.isoformat()).covered
