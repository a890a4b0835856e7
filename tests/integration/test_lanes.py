"""Priority lanes on the real stack: an urgent fax submitted behind a bulk run goes out
ahead of it, counted in the provider's own log of accepted sends."""

from __future__ import annotations

import pytest

from dispatcher import queries
from dispatcher.submission import FaxRequest, submit, submit_many
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack

pytestmark = pytest.mark.e2e

BULK = 1500


def test_an_urgent_fax_overtakes_a_bulk_run(stack: Stack) -> None:
    # Given a bulk run on its way, each send taking 200 ms at the provider
    stack.set_faults(latency_ms=200)
    pdf = make_pdf()
    bulk = [
        FaxRequest(f"+1312555{i:04d}", [("a.pdf", pdf)], provider="interfax", priority="bulk")
        for i in range(BULK)
    ]
    submit_many(bulk, publish=False)
    stack.wait_for(lambda: len(stack.sends()) >= 20)

    # When an urgent fax is submitted
    urgent = submit(
        FaxRequest("+12025550100", [("a.pdf", pdf)], provider="interfax", priority="urgent")
    ).job_id

    # Then it is sent before most of the bulk run
    stack.wait_for(lambda: queries.get_job(urgent)["state"] != "pending", timeout=60)
    stack.wait_for(lambda: stack.sends(urgent))
    log = [send.get("reference") or "" for send in stack.sends()]
    position = next(i for i, ref in enumerate(log) if ref.startswith(f"fd-{urgent}-"))
    assert position < BULK / 3, f"sent after {position} of {BULK} bulk faxes"
