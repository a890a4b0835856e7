"""Schemathesis against the API's own OpenAPI document: no generated request gets a 5xx.

Every operation gets up to ``EXAMPLES`` generated requests (valid and invalid), sent in
process with a valid bearer token to a real database and broker. Routes on one job get
the ids of real jobs (pending, held, failed) half of the time, so the operator actions
run their 200 and 409 paths rather than only 404; half the submissions carry a valid
number and PDF, so the other generated fields reach the submit path.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Ok, Result
from sqlalchemy import update

from config.settings import get_settings
from dispatcher import operations
from dispatcher.api import create_app
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.documents import make_pdf

TOKEN = "fuzz-token-" + "c" * 32
EXAMPLES = 30


@pytest.fixture
def api_env(db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAX_DATABASE_URL", db_url)
    monkeypatch.setenv("FAX_BROKER_URL", broker_url)
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([TOKEN]))
    # Webhook receivers go past their "not configured" answer; no provider is ever called.
    monkeypatch.setenv("FAX_SANDBOX_URL", "http://127.0.0.1:9")
    for provider in ("OPTUM", "FAXPLUS", "INTERFAX"):
        monkeypatch.setenv(f"FAX_{provider}__WEBHOOK_SECRET", f"{provider.lower()}-secret")
    get_settings.cache_clear()


def seeded_jobs() -> list[str]:
    """Jobs in the states operators act on; nothing is sent (no worker runs here)."""

    def new() -> str:
        request = FaxRequest(to="+12025550100", documents=[("a.pdf", make_pdf())])
        return submit(request).job_id

    pending, held, failed = new(), new(), new()
    operations.hold(held)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == failed).values(state="failed"))
    return [pending, held, failed]


def with_job_ids(
    cases: st.SearchStrategy[Case[Any]], ids: list[str]
) -> st.SearchStrategy[Case[Any]]:
    def use(case: Case[Any], job_id: str | None) -> Case[Any]:
        if job_id is not None:
            case.path_parameters = {**(case.path_parameters or {}), "job_id": job_id}
        return case

    return st.builds(use, cases, st.sampled_from([*ids, None, None, None]))


def with_valid_faxes(cases: st.SearchStrategy[Case[Any]]) -> st.SearchStrategy[Case[Any]]:
    """Half the submissions get a real number and PDF, so the generated provider, send_at,
    metadata, options and Idempotency-Key reach the submit path instead of a 422."""
    pdf = make_pdf()

    def use(case: Case[Any], valid: bool) -> Case[Any]:
        if valid and isinstance(case.body, dict):
            case.body = {
                **case.body,
                "to": "+12025550100",
                "documents": [pdf],  # type: ignore[list-item]  # Body omits multipart's bytes parts
            }
        return case

    return st.builds(use, cases, st.booleans())


def fuzz(
    strategy: st.SearchStrategy[Case[Any]], label: str, seen: Counter[tuple[str, int]]
) -> None:
    """Send up to EXAMPLES cases of one operation; fail on the first 5xx."""

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Case[Any]) -> None:
        response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
        case.validate_response(response, checks=[not_a_server_error])
        seen[(label, response.status_code)] += 1

    check()


def operation_of(
    result: Result[APIOperation[Any, Any, Any, Any], InvalidSchema],
) -> APIOperation[Any, Any, Any, Any]:
    """One operation of the API's own OpenAPI document, which holds no invalid one."""
    assert isinstance(result, Ok), f"the API's schema has an invalid operation: {result.err()}"
    return result.ok()


def test_no_generated_request_gets_a_server_error(api_env: None) -> None:
    ids = seeded_jobs()
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    seen: Counter[tuple[str, int]] = Counter()
    api_operations = [operation_of(result) for result in schema.get_all_operations()]
    for operation in api_operations:
        strategy = operation.as_strategy()
        if "{job_id}" in operation.path:
            strategy = with_job_ids(strategy, ids)
        if operation.label == "POST /v1/faxes":
            strategy = with_valid_faxes(strategy)
        fuzz(strategy, operation.label, seen)
    # Shown with -s: how many cases ran, and what each operation answered.
    print(f"schemathesis: {sum(seen.values())} cases over {len(api_operations)} operations")
    for (label, status), count in sorted(seen.items()):
        print(f"  {label} -> {status}: {count}")
    assert {label for label, _ in seen} == {operation.label for operation in api_operations}
