"""The parked bench's lateness figures when a wake is cut off before every contract woke."""

from __future__ import annotations

from bench.parked import Park, censored_percentile, lateness_ratio


def test_all_measured_is_the_plain_percentile() -> None:
    values = [float(i) for i in range(1, 101)]
    assert censored_percentile(values, 100, 50) == 50.0
    assert censored_percentile(values, 100, 99) == 99.0


def test_a_rank_among_the_unwoken_is_unknown() -> None:
    values = [float(i) for i in range(1, 51)]  # 50 of 100 woke
    assert censored_percentile(values, 100, 40) == 40.0
    assert censored_percentile(values, 100, 50) == 50.0
    assert censored_percentile(values, 100, 51) is None
    assert censored_percentile([], 10, 50) is None


def park(name: str, woke: list[float], n: int, watched: float) -> Park:
    return Park(name, n, [], woke=woke, watched=watched)


def test_ratio_is_a_bound_when_mahnwerk_did_not_wake_in_full() -> None:
    bare = park("bare", [1.0] * 98 + [10.0] * 2, 100, 20.0)
    mw = park("Mahnwerk", [5.0] * 90, 100, 600.0)
    text, verdict = lateness_ratio(mw, bare, 99, 1.5)
    assert text == "> 60.00"
    assert verdict == "≤ 1.5 MISSED"
    assert "p99 > 600 s" in mw.woke_text()
    assert "10 not woken" in mw.woke_text()
    mw.done = [6.0] * 60
    assert mw.done_text().startswith("60/100; p50 6.0 s, p99 > 600 s")


def test_ratio_when_both_woke_in_full() -> None:
    bare = park("bare", [2.0] * 100, 100, 30.0)
    mw = park("Mahnwerk", [3.0] * 100, 100, 30.0)
    assert lateness_ratio(mw, bare, 99, 1.5) == ("1.50", "≤ 1.5 met")
    mw = park("Mahnwerk", [4.0] * 100, 100, 30.0)
    assert lateness_ratio(mw, bare, 99, 1.5) == ("2.00", "≤ 1.5 MISSED")


def test_bare_cut_off_bounds_the_ratio_from_above() -> None:
    bare = park("bare", [2.0] * 50, 100, 100.0)
    mw = park("Mahnwerk", [30.0] * 100, 100, 100.0)
    assert lateness_ratio(mw, bare, 99, 1.5) == ("< 0.30", "≤ 1.5 met")


def test_no_rate_when_nothing_was_done_after_t() -> None:
    # A debit before T (a run's attempts read from a ledger another run filled) gave
    # "506000000000.0/s": a rate needs something done after T.
    mw = park("Mahnwerk", [-600.0] * 3, 3, 60.0)
    mw.done = [-599.0, -600.0, -601.0]
    assert mw.done_text().endswith("; no rate (none done after T)")
    mw.done = [1.0, 2.0, 4.0]
    assert mw.done_text().endswith("; 0.8/s")


def test_a_second_run_cannot_take_the_bench_database() -> None:
    """Two bench runs on one database: the second stops before it empties the first's ledger."""
    import os

    import pytest

    from bench import common

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.skip("the bench database is PostgreSQL (DATABASE_URL)")
    common.hold_database(url)
    first = common._held.pop(url)  # as if another process held it
    try:
        with pytest.raises(common.DatabaseInUse) as err:
            common.hold_database(url)
        assert "is in use by another bench run" in str(err.value)
        assert "--database-url" in str(err.value)
        assert url not in common._held
    finally:
        engine, conn = first
        conn.close()
        engine.dispose()
    common.hold_database(url)  # free again: taken
    engine, conn = common._held.pop(url)
    conn.close()
    engine.dispose()
