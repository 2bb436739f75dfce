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
