"""Prometheus metrics (issue 4, item 7): what the business does, and what Temporal does.

Three sources, two endpoints:

- **Business counters** (`mahnwerk_debits_*`, `mahnwerk_notices_sent_total`,
  `mahnwerk_access_locks_total`, `mahnwerk_handoffs_total`,
  `mahnwerk_collection_delivery_failures_total`) are counted where they happen —
  in the activities, i.e. in the *worker* process. Each `inc` goes to this module's
  prometheus-client `REGISTRY` and, once `worker_runtime()` has built the worker's Temporal
  runtime, to that runtime's metric meter too, so the worker's scrape endpoint
  (`MAHNWERK_WORKER_METRICS_PORT`, default 9464) serves them next to the Temporal SDK metrics.
- **Ledger gauges** (`mahnwerk_open_claim_amount`, `mahnwerk_events_pending`) are computed
  from the database on every scrape of the API's `GET /metrics` (`LedgerCollector`), so they
  are right whichever process wrote the rows and survive restarts.
- **Temporal SDK metrics** (workflow/activity task latencies, poller counts, request
  failures…) are exported by the SDK's core on the worker's endpoint
  (`temporalio.runtime.PrometheusConfig`).

Every business counter and the open-claim gauge carry a `seller` label (issue 14 part 5):
the seller id for the first `MAHNWERK_METRICS_SELLER_LABELS` (default 20) sellers a process
sees, `other` for the rest (`SellerLabels`), so a platform with thousands of sellers does not
make thousands of series per counter; contracts from before sellers are `default`'s. The
per-seller detail is in `GET /v1/reports/receivables?seller_id=…`.

The API's `/metrics` shows the counters of the API process too (zero in production, where
the API runs no activities; the real numbers in a test that runs worker and API in one
process). Scrape both: `job="mahnwerk-api"` for the ledger, `job="mahnwerk-worker"` for the
rest; counters summed over all worker instances give the totals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.common import MetricCounter, MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from core.models import Contract, OutboxEvent
from core.settings import Settings
from domain.interest import BASE_RATES, BaseRate, base_rate_coverage
from domain.schedule import berlin_date

log = logging.getLogger("mahnwerk.metrics")

# The business counters of this process. Not prometheus-client's global default registry:
# a library (or a test) registering the same names there cannot break us, and we expose
# exactly what is ours.
REGISTRY = CollectorRegistry(auto_describe=True)

_UNKNOWN = "unknown"
OTHER_SELLERS: Final = "other"
DEFAULT_SELLER_LABELS: Final = 20


class SellerLabels:
    """The `seller` label of a seller id, with bounded cardinality: the first `limit` sellers
    seen get their own id, every later one `other` (0: every seller is `other`). The choice
    lasts for the process's life, so a seller's series never changes its label."""

    def __init__(self, limit: int = DEFAULT_SELLER_LABELS) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._seen: dict[str, None] = {}

    def configure(self, limit: int) -> None:
        with self._lock:
            self.limit = limit

    def label(self, seller_id: str | None) -> str:
        sid = seller_id or "default"  # "": a contract started before sellers (issue 14)
        with self._lock:
            if sid in self._seen:
                return sid
            if len(self._seen) < self.limit:
                self._seen[sid] = None
                return sid
        return OTHER_SELLERS

    def reset(self) -> None:
        """Forget the sellers seen (tests)."""
        with self._lock:
            self._seen.clear()


SELLER_LABELS = SellerLabels()


def configure(settings: Settings) -> None:
    """Apply MAHNWERK_METRICS_SELLER_LABELS to this process's seller labels."""
    SELLER_LABELS.configure(settings.metrics_seller_labels)


class BusinessCounter:
    """A prometheus-client counter, mirrored to the Temporal runtime's meter when bound.

    `name` is the Prometheus base name; both exporters show it as `<name>_total`. Every
    counter has the `seller` label (`SellerLabels`) besides its own `labels`.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = (*labels, "seller")
        self._prom = Counter(name, documentation, self.labels, registry=REGISTRY)
        self._temporal: MetricCounter | None = None

    def bind(self, meter: MetricMeter) -> None:
        # PrometheusConfig(counters_total_suffix=False) exports custom names as given.
        self._temporal = meter.create_counter(f"{self.name}_total", self.documentation)

    def inc(self, seller: str | None = None, **labels: str | None) -> None:
        values = {k: (labels.get(k) or _UNKNOWN) for k in self.labels if k != "seller"}
        values["seller"] = SELLER_LABELS.label(seller)
        self._prom.labels(**values).inc()
        if self._temporal is not None:
            self._temporal.add(1, values)


DEBITS_ATTEMPTED = BusinessCounter(
    "mahnwerk_debits_attempted", "Debits sent to Stripe that came back with an outcome."
)
DEBITS_SUCCEEDED = BusinessCounter(
    "mahnwerk_debits_succeeded",
    "Debits that succeeded (cards at once, SEPA when the outcome arrives).",
)
DEBITS_FAILED = BusinessCounter(
    "mahnwerk_debits_failed", "Debits declined, by Stripe decline/failure code.", ["code"]
)
NOTICES_SENT = BusinessCounter(
    "mahnwerk_notices_sent", "Dunning notices handed to the mail server, by stage.", ["stage"]
)
ACCESS_LOCKS = BusinessCounter("mahnwerk_access_locks", "Product access locked for non-payment.")
HANDOFFS = BusinessCounter(
    "mahnwerk_handoffs", "Claims handed off for collection, by route.", ["route"]
)
INTEGRATION_ERRORS = BusinessCounter(
    "mahnwerk_stripe_integration_errors",
    "Stripe answered 400/401/403/404 (our integration error, not a decline): the debit "
    "is stalled and retried, the customer is not told. Alert on any increase.",
    ["code"],
)
# Fact types that mean a contract waits on an outage or a fault someone must look at (issue
# 13 item 4: every such path ends in a waiting, visible state with an alert). Counted once
# per recorded fact by activities.ledger.sync_ledger.
ALERT_FACTS = (
    "notice.failed",
    "payment.stalled",
    "payment.poll_failed",
    "installment.stalled",
    "collection.case_file_failed",
    "collection.delivery_failed",
    "message.failed",  # a customer message beyond dunning not delivered (issue 12)
)
ALERTS = BusinessCounter(
    "mahnwerk_alerts",
    "A contract waits on an outage or a fault (a notice the mail server did not take for a "
    "day, a debit whose status Stripe could not be asked for, a stalled debit, a case file "
    "not built or not delivered): it is retried, and nothing is lost, but alert on any "
    "increase. By fact type.",
    ["type"],
)

COLLECTION_DELIVERY_FAILURES = BusinessCounter(
    "mahnwerk_collection_delivery_failures",
    "A case file or message for the collection partner could not be built or was not "
    "acknowledged (by kind: case_file, case.payment, case.recall): the contract waits and "
    "tries again with backoff (event collection.delivery_failed). Alert on any increase.",
    ["kind"],
)

COUNTERS = (
    DEBITS_ATTEMPTED,
    DEBITS_SUCCEEDED,
    DEBITS_FAILED,
    NOTICES_SENT,
    ACCESS_LOCKS,
    HANDOFFS,
    INTEGRATION_ERRORS,
    ALERTS,
    COLLECTION_DELIVERY_FAILURES,
)


# -- helpers for the places where things happen -----------------------------------------------


def debit_outcome(status: str, code: str | None = None, seller: str | None = None) -> None:
    """A final debit outcome: `succeeded` or `declined` (anything else is not final yet)."""
    if status == "succeeded":
        DEBITS_SUCCEEDED.inc(seller)
    elif status == "declined":
        DEBITS_FAILED.inc(seller, code=code)


def debit_attempted(status: str, code: str | None = None, seller: str | None = None) -> None:
    """The `charge` activity got an answer: count the attempt and, if final, its outcome."""
    DEBITS_ATTEMPTED.inc(seller)
    debit_outcome(status, code, seller)


def integration_error(code: str | None, seller: str | None = None) -> None:
    INTEGRATION_ERRORS.inc(seller, code=code)


def alert(fact_type: str, seller: str | None = None) -> None:
    ALERTS.inc(seller, type=fact_type)


def collection_delivery_failed(kind: str, seller: str | None = None) -> None:
    COLLECTION_DELIVERY_FAILURES.inc(seller, kind=kind)


def notice_sent(stage: str, seller: str | None = None) -> None:
    NOTICES_SENT.inc(seller, stage=stage)


def access_locked(seller: str | None = None) -> None:
    ACCESS_LOCKS.inc(seller)


def handed_off(route: str | None, seller: str | None = None) -> None:
    HANDOFFS.inc(seller, route=route)


# -- ledger gauges, computed on scrape ---------------------------------------------------------


class LedgerCollector(Collector):
    """`mahnwerk_open_claim_amount{currency}` and `mahnwerk_events_pending`, from the ledger."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "mahnwerk_open_claim_amount",
                "Overdue amount of contracts in dunning, in minor units (cents), by currency "
                "and seller (the first MAHNWERK_METRICS_SELLER_LABELS sellers, then `other`).",
                labels=["currency", "seller"],
            ),
            GaugeMetricFamily(
                "mahnwerk_events_pending", "Platform events in the outbox not yet acknowledged."
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without a query: registering the collector must not touch the database.
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        claims, pending = self._families()
        try:
            with self.sessions() as s:
                rows = s.execute(
                    select(
                        Contract.currency,
                        Contract.seller_id,
                        func.coalesce(func.sum(Contract.overdue_amount), 0),
                    )
                    .where(Contract.status == "in_dunning")
                    .group_by(Contract.currency, Contract.seller_id)
                    .order_by(Contract.currency, Contract.seller_id)
                ).all()
                waiting = s.scalar(
                    select(func.count())
                    .select_from(OutboxEvent)
                    .where(OutboxEvent.delivered_at.is_(None))
                )
        except SQLAlchemyError as exc:
            # A scrape while the database is away answers with the counters; the gauges are
            # missing (absent() alerts on them) instead of the whole scrape failing.
            log.warning("metrics: ledger unavailable: %s", type(exc).__name__)
            return
        sums: dict[tuple[str, str], float] = {}
        for currency, seller_id, amount in rows:
            key = (currency, SELLER_LABELS.label(seller_id))
            sums[key] = sums.get(key, 0.0) + float(amount)
        for (currency, seller), total in sums.items():
            claims.add_metric([currency, seller], total)
        pending.add_metric([], float(waiting or 0))
        yield claims
        yield pending


class BaseRateCollector(Collector):
    """`mahnwerk_base_rate_covered` (1 when today's half-year has a § 247 BGB base rate, else
    0: interest after the last known rate is not computed) and
    `mahnwerk_base_rate_missing_half_years` (domain.interest.base_rate_coverage)."""

    def __init__(self, rates: Sequence[BaseRate]) -> None:
        self.rates = tuple(rates)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "mahnwerk_base_rate_covered",
                "1 if the base-rate table covers today's half-year (§ 247 BGB), else 0.",
            ),
            GaugeMetricFamily(
                "mahnwerk_base_rate_missing_half_years",
                "Half-years up to today without a § 247 BGB base rate (MAHNWERK_BASE_RATES).",
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        covered, missing = self._families()
        coverage = base_rate_coverage(self.rates, berlin_date(datetime.now(UTC)))
        covered.add_metric([], 1.0 if coverage.covered else 0.0)
        missing.add_metric([], float(len(coverage.missing)))
        yield covered
        yield missing


class _Forward(Collector):
    """Everything of another registry (the process's business counters)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self.registry.collect()


def exposition(
    sessions: sessionmaker[Session],
    accept: str | None,
    rates: Sequence[BaseRate] = BASE_RATES,
) -> tuple[bytes, str]:
    """The body and content type of `GET /metrics`: the counters plus the ledger and
    base-rate gauges, in the Prometheus text format (or OpenMetrics, if the scraper asks for
    it). `rates`: the base-rate table in force (with MAHNWERK_BASE_RATES)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Forward(REGISTRY))
    registry.register(LedgerCollector(sessions))
    registry.register(BaseRateCollector(rates))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


# -- the worker's Temporal runtime -------------------------------------------------------------

_bound_lock = threading.Lock()
_bound: Runtime | None = None


def bind_runtime(runtime: Runtime) -> None:
    """Mirror the business counters to `runtime`'s meter (one runtime per process)."""
    global _bound
    with _bound_lock:
        if _bound is runtime:
            return
        for counter in COUNTERS:
            counter.bind(runtime.metric_meter)
        _bound = runtime


def worker_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK metrics and our business counters for Prometheus
    on `0.0.0.0:MAHNWERK_WORKER_METRICS_PORT` (the convention of Prometheus exporters: the
    scraper runs elsewhere; nothing personal is in there — ids, codes, stages, counts).

    None when the port is 0 (metrics off) or cannot be bound (another worker on this host
    has it): the worker then runs on the default runtime, without a metrics endpoint, and
    says so in the log rather than refusing to collect money.
    """
    port = settings.worker_metrics_port
    if not port:
        return None
    address = f"0.0.0.0:{port}"
    try:
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    except ValueError as exc:  # "Failed starting Prometheus exporter: Address already in use"
        log.warning(
            "worker metrics disabled: cannot serve Prometheus metrics on %s (%s); set "
            "MAHNWERK_WORKER_METRICS_PORT to a free port, or 0 to switch them off",
            address,
            exc,
        )
        return None
    bind_runtime(runtime)
    log.info("worker metrics (Temporal SDK and mahnwerk_*) on http://%s/metrics", address)
    return runtime
