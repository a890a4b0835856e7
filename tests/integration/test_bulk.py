"""``faxctl bulk`` on a real database and a real broker: what it accepts, what a re-run
does, and that a run stopped halfway finishes on the next run with nothing twice."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select
from typer.testing import CliRunner

from config.settings import get_settings
from dispatcher.bulk import check_csv, submit_plan
from dispatcher.cli import app
from dispatcher.clock import utcnow
from dispatcher.scheduler import tick
from dispatcher.store.db import get_engine
from dispatcher.store.models import Document, DocumentContent, Job, JobDocument
from tests.fixtures.documents import make_pdf

BAD_ROWS = {7: "12345", 50: "+1202", 120: "+19005550123", 299: ""}


def numbers(rows: int) -> dict[int, str]:
    """A distinct number for each of ``rows`` data rows (spreadsheet rows 2..rows+1)."""
    rng = random.Random(rows)
    return {row: f"+1202{rng.randint(2_000_000, 9_999_999)}" for row in range(2, rows + 2)}


def write_csv(
    folder: Path, rows: int, bad: dict[int, str] | None = None, keys: bool = False
) -> Path:
    """``rows`` data rows (spreadsheet rows 2..rows+1); ``bad`` replaces some numbers;
    ``keys`` adds a key column."""
    (folder / "letter.pdf").write_bytes(make_pdf(2))
    lines = ["to,provider,meta_account,comment" + (",key" if keys else "")]
    for row, number in numbers(rows).items():
        key = f",statement-{row}" if keys else ""
        lines.append(f"{(bad or {}).get(row, number)},interfax,acct-{row % 7},hello{key}")
    path = folder / "recipients.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_bulk(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["bulk", *args, "--no-follow", "--json"])
    return result.exit_code, json.loads(result.stdout)


def count(model: type) -> int:
    with get_engine().connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_bulk_accepts_the_good_rows_reports_the_bad_and_a_rerun_adds_nothing(
    broker_queue: redis.Redis, tmp_path: Path
) -> None:
    # Given 300 rows, four of them bad
    path = write_csv(tmp_path, 300, BAD_ROWS)

    code, summary = run_bulk(str(path), "--document", str(tmp_path / "letter.pdf"))

    # Then the 296 good rows are jobs, each bad row is named, and the exit code says so
    assert code == 2
    assert (summary["rows"], summary["accepted"], summary["duplicates"]) == (300, 296, 0)
    assert [r["row"] for r in summary["rejected"]] == sorted(BAD_ROWS)
    assert summary["rejected"][-1]["error"] == "to: a destination number is required"
    assert summary["ignored_columns"] == ["comment"]
    assert summary["rows_per_second"] > 0
    assert count(Job) == count(JobDocument) == 296
    assert count(Document) == 1
    # and nothing was published one by one: the jobs are due now, for the tick
    assert sum(broker_queue.llen(q) for q in ("dispatch", "dispatch-bulk")) == 0
    with get_engine().connect() as conn:
        latest = conn.execute(select(func.max(Job.next_attempt_at))).scalar_one()
        meta = conn.execute(select(Job.meta).where(Job.to_number == numbers(300)[2])).scalar()
        batch = conn.execute(select(Job.batch_id).distinct()).scalars().all()
    assert latest is not None, "the accepted jobs have a next attempt time"
    assert latest.replace(tzinfo=None) <= utcnow().replace(tzinfo=None)
    assert meta == {"account": "acct-2"}
    assert batch == [summary["batch"]]

    # When the same file runs again
    code, again = run_bulk(str(path), "--document", str(tmp_path / "letter.pdf"))

    # Then every good row is a duplicate and no job is added
    assert code == 2
    assert (again["accepted"], again["duplicates"]) == (0, 296)
    assert again["rejected"] == summary["rejected"]
    assert count(Job) == 296

    # And once its bad rows are fixed, a run adds exactly those rows
    write_csv(tmp_path, 300, {row: f"+1202555{1000 + row:04d}" for row in BAD_ROWS})
    code, fixed = run_bulk(str(path), "--document", str(tmp_path / "letter.pdf"))
    assert code == 0
    assert (fixed["accepted"], fixed["duplicates"], fixed["rejected"]) == (4, 296, [])
    assert count(Job) == 300


def test_a_run_stopped_halfway_is_finished_by_the_next_run_with_nothing_twice(
    broker_queue: redis.Redis, tmp_path: Path
) -> None:
    # Given a run that commits its first chunk of 1000 rows and then dies
    path = write_csv(tmp_path, 2500)
    with check_csv(path, document=tmp_path / "letter.pdf") as plan:
        first = next(submit_plan(plan))
    assert (first.accepted, count(Job)) == (1000, 1000)

    # When the same file runs again
    code, summary = run_bulk(str(path), "--document", str(tmp_path / "letter.pdf"))

    # Then exactly the other 1500 rows are added, once each
    assert code == 0
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (1500, 1000, [])
    with get_engine().connect() as conn:
        keys = conn.execute(select(Job.idempotency_key)).scalars().all()
    assert len(keys) == len(set(keys)) == 2500


def test_strict_submits_nothing_when_a_row_is_bad(
    broker_queue: redis.Redis, tmp_path: Path
) -> None:
    path = write_csv(tmp_path, 20, {5: "12345"})

    code, summary = run_bulk(str(path), "--document", str(tmp_path / "letter.pdf"), "--strict")

    assert code == 2
    assert (summary["submitted"], summary["accepted"], count(Job)) == (False, 0, 0)


def test_a_file_that_is_not_utf8_changes_nothing(broker_queue: redis.Redis, tmp_path: Path) -> None:
    path = write_csv(tmp_path, 20)
    path.write_bytes(path.read_bytes() + "+12025550123,interfax,Jos\xe9,x\n".encode("latin-1"))

    result = CliRunner().invoke(
        app, ["bulk", str(path), "--document", str(tmp_path / "letter.pdf"), "--no-follow"]
    )

    assert result.exit_code == 2
    assert "line 22 is not UTF-8" in result.stderr
    assert (count(Job), count(Document), count(DocumentContent)) == (0, 0, 0)


def test_a_rerun_with_a_changed_document_rejects_each_keyed_row_as_a_conflict(
    broker_queue: redis.Redis, tmp_path: Path
) -> None:
    # Given a file with a key column submitted once, whose document is then edited
    path = write_csv(tmp_path, 5, keys=True)
    document = tmp_path / "letter.pdf"
    run_bulk(str(path), "--document", str(document))
    document.write_bytes(make_pdf(3))

    code, summary = run_bulk(str(path), "--document", str(document))

    # Then the same keys now ask for other faxes: each row is refused, nothing is added
    assert code == 2
    assert (summary["accepted"], summary["duplicates"]) == (0, 0)
    assert [r["row"] for r in summary["rejected"]] == [2, 3, 4, 5, 6]
    assert "did a document change since?" in summary["rejected"][0]["error"]
    assert count(Job) == 5


def test_the_tick_dispatches_bulk_jobs_in_batches(
    broker_queue: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_TICK_BATCH_SIZE", "40")
    get_settings.cache_clear()
    path = write_csv(tmp_path, 100)
    run_bulk(str(path), "--document", str(tmp_path / "letter.pdf"))

    reports = [tick().dispatched for _ in range(4)]

    assert reports == [40, 40, 20, 0]
    # Each tick's batch goes out, in the bulk lane, as batch messages of at most 50 jobs.
    bodies = [json.loads(raw)["body"] for raw in broker_queue.lrange("dispatch-bulk", 0, -1)]
    pairs = [p for body in bodies for p in json.loads(base64.b64decode(body))[0][0]]
    assert len(bodies) == 3 and len({job_id for job_id, _ in pairs}) == 100
