"""Issue 10 item 7: one Stripe rate limit for the whole deployment. Two `mahnwerk worker`
processes share the Stripe task queue; Temporal's task-queue-wide activity rate limit
(`max_task_queue_activities_per_second`, set by every worker from
MAHNWERK_STRIPE_CREATE_RATE_LIMIT) keeps their debits together within the configured rate,
where each process's own token bucket alone would allow twice as much.

Real processes on a Temporal dev server (the time-skipping test server does not enforce
task-queue rate limits), the stand-in's ledger as the measurement: when each debit landed.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.seller import DEMO_SELLER_ENV
from domain.schedule import BERLIN
from tests.chaos.harness import API_KEYS, DevServer, free_port, mahnwerk, own_standin_and_smtp
from tests.conftest import PLATFORM, contract_body

RATE = 4.0  # debits per second for the deployment
CONTRACTS = 48  # a wave of 12 s at that rate
WINDOW = 4.0  # seconds


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.skipif(os.name != "posix", reason="process groups")
async def test_two_workers_together_stay_within_the_stripe_rate(
    db_url: str, tmp_path: Path
) -> None:
    with own_standin_and_smtp() as (standin, smtp):
        temporal = DevServer(tmp_path / "temporal.db", tmp_path / "temporal.log")
        port = free_port()
        env = {
            **os.environ,
            **DEMO_SELLER_ENV,  # `mahnwerk api`/`worker` refuse to start without them
            "DATABASE_URL": db_url,
            "TEMPORAL_ADDRESS": temporal.address,
            "STRIPE_API_BASE": standin.url,
            "STRIPE_API_KEY": "sk_test_mahnwerk",
            "STRIPE_WEBHOOK_SECRET": "whsec_test_mahnwerk",
            "MAHNWERK_SMTP_URL": f"smtp://{smtp.host}:{smtp.port}",
            "MAHNWERK_API_KEYS": API_KEYS,
            "MAHNWERK_TASK_QUEUE": f"mahnwerk-rate-{uuid.uuid4().hex[:6]}",
            "MAHNWERK_WORKER_METRICS_PORT": "0",
            # each process's own bucket allows the whole rate: only the task-queue limit
            # can keep two of them together within it
            "MAHNWERK_STRIPE_RATE_LIMIT": str(RATE),
            "MAHNWERK_STRIPE_CREATE_RATE_LIMIT": str(RATE),
            # test secrets and the demo seller: what only dev mode accepts (core.settings)
            "MAHNWERK_ENV": "dev",
        }
        env.pop("MAHNWERK_EVENTS_URL", None)
        api = mahnwerk("api", ["api", "--port", str(port)], env, tmp_path / "api.log")
        workers = [
            mahnwerk(f"worker{n}", ["worker"], env, tmp_path / f"worker{n}.log") for n in (1, 2)
        ]
        procs = [temporal, api, *workers]
        try:
            temporal.start()
            await temporal.ready()
            api.start()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                for _ in range(300):
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2)
                ids = []
                # The whole wave is waiting before any worker polls: both take from it.
                # due yesterday (Berlin): debited as soon as a worker polls, on any date
                yesterday = (datetime.now(BERLIN) - timedelta(days=1)).date().isoformat()
                for _ in range(CONTRACTS):
                    body = contract_body(count=1, first_due=yesterday)
                    resp = await http.post("/v1/contracts", json=body, headers=PLATFORM)
                    assert resp.status_code == 201, resp.text
                    ids.append(body["contract_id"])
                for w in workers:
                    w.start()
                # When each debit landed, seen from outside: the stand-in's ledger polled
                # every 50 ms (its own timestamps are whole seconds).
                seen: dict[str, float] = {}
                debits: list[dict] = []
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 90
                while len(seen) < CONTRACTS and loop.time() < deadline:
                    debits = [
                        d for d in standin.ledger() if d["metadata"].get("contract_id") in ids
                    ]
                    now = loop.time()
                    for d in debits:
                        seen.setdefault(d["payment_intent"], now)
                    await asyncio.sleep(0.05)
            assert len(debits) == CONTRACTS, f"{len(debits)} of {CONTRACTS} debited"
            assert len({d["metadata"]["contract_id"] for d in debits}) == CONTRACTS  # once each
            for w in workers:  # both took debits from the one queue
                log = w.log.read_text()
                assert "charge installment=" in log, log[-3000:]
            times = list(seen.values())
            span = max(times) - min(times)
            peak = most_in_window(times, WINDOW)
            # The creates take their slots 1/RATE apart from one row of the ledger database
            # (activities/ratelimit.py; Temporal's task-queue limit alone let a second's
            # worth through at once): at most RATE × WINDOW + 1 instants fit a window, and
            # the 50 ms poll may blur one more in.
            allowed = RATE * WINDOW + 2
            print(f"\n{CONTRACTS} debits in {span:.1f} s; most in {WINDOW:.0f} s: {peak}")
            assert peak <= allowed, f"{peak} debits within {WINDOW} s, limit {allowed}"
            assert span >= (CONTRACTS - 1) / RATE - 1, f"{span:.1f} s is faster than the rate"
        finally:
            for p in reversed(procs):
                p.stop()
