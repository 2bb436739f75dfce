"""Chaos tests (issue 6): a wave of contracts — debits that succeed, soft declines a retry
recovers, soft and hard declines that walk the whole dunning ladder, small claims written
off, SEPA debits settled by webhook — all due at one instant, while one kind of fault hits
the real processes. Afterwards the invariants of `ChaosStack.check_wave` must hold: every
installment debited exactly once in the stand-in's ledger and recorded by Mahnwerk, every
due notice in the SMTP mailbox exactly once, every contract in the state its scenario
implies.

`make test` runs the short version; `make chaos` (MAHNWERK_CHAOS_LONG=1) a long one with
more contracts and faults. Each test prints its seed; MAHNWERK_CHAOS_SEED=<seed> replays
the same choices (the processes' timing, of course, differs from run to run).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tests.chaos.harness import (
    LONG,
    SEPA,
    SEPA_NOTICES,
    ChaosStack,
    Expect,
    chaos_loop,
    chaos_seed,
    scaled,
    wave_mix,
)


async def sleep_until(when: datetime) -> None:
    delay = (when - datetime.now(UTC)).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)


def since(due: datetime) -> str:
    return f"T{(datetime.now(UTC) - due).total_seconds():+.1f}s"


async def test_worker_killed_at_random_moments(chaos: ChaosStack) -> None:
    """`kill -9` the worker again and again while the wave is debited and dunned."""
    rng = random.Random(chaos_seed("kill -9 the worker"))
    # MAHNWERK_CHAOS_KILLS overrides the count (e.g. 100 for a long soak with `make chaos`)
    kills = int(os.environ.get("MAHNWERK_CHAOS_KILLS") or scaled(5, 24))
    # Every Stripe call takes 0.2 s more: debits are in flight long enough for kills to
    # land in the middle of them, not only between them.
    chaos.standin.set_config(latency=0.2)
    wave = await chaos.create_wave(
        "kill",
        wave_mix(scaled(3, 6)),
        paid_count=scaled(3, 10),
        paid_interval=scaled(3, 8),
    )
    await sleep_until(wave.due)

    async def kill(n: int) -> str:
        at = since(wave.due)
        name = await chaos.kill_worker()  # returns once it polls again
        return f"{name} at {at}"

    t0 = time.monotonic()
    moments = await chaos_loop(rng, kills, (0.3, 2.0), kill)
    print(f"[chaos] {kills} kills at {', '.join(moments)} (due = T)")
    await chaos.settled(wave)
    print(f"[chaos] kill test: wave settled {time.monotonic() - t0:.0f}s after the first kill")
    await chaos.audit(wave)
    await chaos.check_wave(wave)
    assert chaos.worker_kills == kills
    # both replicas were killed (alternately) and each came back every time
    assert [w.starts for w in chaos.workers] == [1 + (kills + 1) // 2, 1 + kills // 2]


async def test_temporal_dev_server_restarted_mid_wave(chaos: ChaosStack) -> None:
    """Stop the dev server (alternately shut down and crashed) while the wave runs, start it
    again on the same database file: every contract completes, nothing twice."""
    rng = random.Random(chaos_seed("restart the Temporal dev server"))
    restarts = scaled(2, 6)
    wave = await chaos.create_wave("restart", wave_mix(scaled(2, 5)))
    await sleep_until(wave.due)

    async def restart(n: int) -> str:
        sig = signal.SIGTERM if n % 2 == 0 else signal.SIGKILL
        at = since(wave.due)
        away = await chaos.restart_temporal(sig)
        return f"{sig.name} at {at} (back after {away:.1f}s)"

    done = await chaos_loop(rng, restarts, (0.5, 5.0), restart)
    print(f"[chaos] dev server restarts: {'; '.join(done)}")
    assert chaos.temporal.starts == restarts + 1
    await chaos.settled(wave)
    await chaos.audit(wave)
    await chaos.check_wave(wave)
    assert [w.starts for w in chaos.workers] == [1, 1], "workers survive it without help"


async def test_stripe_faults_and_dropped_webhooks(chaos: ChaosStack) -> None:
    """20 % of Stripe requests fail (5xx, 429, held past the activity's timeout) and 10 %
    of webhooks are lost: debits are retried with their idempotency keys, nothing doubles."""
    seed = chaos_seed("Stripe stand-in faults")
    wave = await chaos.create_wave(
        "faults",
        wave_mix(scaled(2, 8)),
        paid_count=scaled(3, 10),
        paid_interval=scaled(3, 8),
    )
    # 20 % of requests in all. A timeout costs a minute (the activity's start-to-close
    # timeout) and they chain, so they are the smallest share in the short version.
    chaos.standin.set_config(
        fault_5xx=0.10 if not LONG else 0.08,
        fault_429=0.08 if not LONG else 0.07,
        fault_timeout=0.02 if not LONG else 0.05,
        # held longer than a debit's start-to-close timeout (60 s): the activity times out
        # and is retried while the first request is still in flight at "Stripe"
        fault_timeout_seconds=70.0,
        webhook_drop=0.10,
        fault_seed=seed,
    )
    try:
        await sleep_until(wave.due)
        # A SEPA debit whose payment_intent.succeeded webhook was lost stays `processing`
        # until Mahnwerk's next status poll (every 6 h): the debit is not lost, it is on
        # record and will be picked up. Wait for the stand-in to settle them first.
        sepa = [c for c in wave.contracts if c.scenario == SEPA]
        await chaos.until(
            "the SEPA debits to settle at the stand-in",
            lambda: len(chaos.succeeded_events(c.cid for c in sepa)) == len(sepa),
            timeout=300,
        )
        dropped = chaos.dropped_webhooks()
        for c in sepa:
            pi_events = chaos.succeeded_events([c.cid])
            if any(e in dropped for e in pi_events):
                c.override = Expect(
                    "active", (), SEPA_NOTICES, "granted", debited=(1,), processing=(1,)
                )
                print(f"[chaos] {c.cid}: its payment_intent.succeeded webhook was dropped")
        await chaos.settled(wave)
    finally:
        injected = dict(chaos.standin_faults())
        chaos.standin.set_config(fault_5xx=0.0, fault_429=0.0, fault_timeout=0.0, webhook_drop=0.0)
    print(f"[chaos] faults injected: {injected}")
    await chaos.audit(wave)
    await chaos.check_wave(wave)
    assert injected["5xx"] + injected["429"] + injected["timeout"] > 0, "no fault was injected"


def _admin_url(db_url: str) -> str:
    base = db_url.split("?", 1)[0]
    return base.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="needs PostgreSQL (DATABASE_URL)",
)
async def test_postgres_connections_dropped_mid_wave(chaos: ChaosStack) -> None:
    """pg_terminate_backend on every connection of this test's worker and API, again and
    again during the wave: activities retry, nothing is lost or doubled."""
    rng = random.Random(chaos_seed("terminate PostgreSQL backends"))
    rounds = scaled(8, 40)
    wave = await chaos.create_wave(
        "pgkill",
        wave_mix(scaled(3, 8)),
        paid_count=scaled(3, 10),
        paid_interval=scaled(3, 8),
    )
    admin = await psycopg.AsyncConnection.connect(_admin_url(chaos.db_url), autocommit=True)
    terminated: list[int] = []
    try:
        await sleep_until(wave.due)

        async def terminate(n: int) -> str:
            cur = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (chaos.app_name,),
            )
            row: Any = await cur.fetchone()
            terminated.append(int(row[0]))
            return f"{row[0]} at {since(wave.due)}"

        done = await chaos_loop(rng, rounds, (0.5, 2.5), terminate)
        print(f"[chaos] backends terminated: {', '.join(done)}")
    finally:
        await admin.close()
    assert sum(terminated) > 0, "no connection of the stack was ever terminated"
    await chaos.settled(wave)
    await chaos.audit(wave)
    await chaos.check_wave(wave)
