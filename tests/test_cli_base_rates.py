"""`mahnwerk base-rates`: the table, when it was checked, what is missing (issue 11)."""

import json

import pytest

from core.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["base-rates", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_today_not_covered_says_what_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAHNWERK_BASE_RATES", raising=False)
    code, out, _ = run(capsys, "--today", "2026-12-05")
    assert code == 1  # a cron job or deployment check can alert on it
    assert "last checked 2026-12-05" in out
    assert "2026-01-01     1.27%         6.27%        10.27%" in out
    assert "today 2026-12-05: NOT covered; interest is computed up to 2026-06-30" in out
    assert "missing: 2026-07-01" in out
    assert "next change 2027-01-01: not in the table yet" in out


def test_a_supplied_row_covers_today(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHNWERK_BASE_RATES", "2026-07-01:127")
    code, out, _ = run(capsys, "--today", "2026-08-01", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["rates"][-1] == {
        "effective": "2026-07-01",
        "rate_bp": 127,
        "source": "MAHNWERK_BASE_RATES (Bundesbank)",
    }
    assert data["coverage"]["covered"] is True and data["coverage"]["missing"] == []
    assert data["coverage"]["next_change"] == "2027-01-01"


def test_a_bad_row_is_one_line_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHNWERK_BASE_RATES", "2026-07-02:127")
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    assert err.startswith("configuration error: MAHNWERK_BASE_RATES: base rate effective")
