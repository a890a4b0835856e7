"""The operators' console (``/console``) in process, on SQLite and PostgreSQL: login only
with an admin token, the session cookie's flags, CSRF on every POST, nothing cached, a
fax's code explained in the catalogue's words, and actions recorded as who acted."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from config.settings import get_settings
from dispatcher import pauses, queries
from dispatcher.catalogue import classify
from dispatcher.clock import utcnow
from dispatcher.privacy import mask_number
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, Job, StatusEvent
from dispatcher.submission import FaxRequest, submit_many
from dispatcher.tenants import create_key
from tests.fixtures.api import ADMIN
from tests.fixtures.documents import make_pdf

OTHER_ADMIN = "admin-" + "d" * 40
NUMBER = "+12025550142"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def log_in(client: TestClient, token: str = ADMIN) -> httpx.Response:
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"token": token, "csrf": csrf_of(page)},
        follow_redirects=False,
    )


def logged_in(client: TestClient, token: str = ADMIN) -> str:
    """Log in; the session's CSRF token (every page's forms carry it)."""
    assert log_in(client, token).status_code == 303
    return csrf_of(client.get("/console"))


def new_fax(
    to: str = NUMBER, tenant_id: str | None = None, metadata: dict[str, str] | None = None
) -> str:
    request = FaxRequest(
        to=to, documents=[("a.pdf", make_pdf())], provider="faxplus", metadata=metadata or {}
    )
    return submit_many([request], publish=False, tenant_id=tenant_id)[0].job_id


def fail_busy(job_id: str) -> None:
    """What a worker leaves after a busy line on the last allowed attempt."""
    now = utcnow()
    with session_scope() as session:
        session.add(
            Attempt(
                job_id=job_id,
                number=1,
                provider="faxplus",
                reference=f"fd-{job_id}-1",
                provider_fax_id="fx-1",
                started_at=now - timedelta(seconds=30),
                submitted_at=now - timedelta(seconds=29),
                finished_at=now - timedelta(seconds=5),
                status_code="failed_user_busy",
                outcome="failure",
                remediation="wait_and_retry",
            )
        )
        session.add(
            StatusEvent(
                job_id=job_id,
                attempt_number=1,
                source="poll",
                code="failed_user_busy",
                outcome="failure",
                remediation="wait_and_retry",
                state_from="in_progress",
                state_to="failed",
                detail="gave up after 1 attempts: faxplus failed_user_busy (Busy)",
                observed_at=now - timedelta(seconds=5),
            )
        )
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state="failed",
                attempt_count=1,
                last_code="failed_user_busy",
                last_outcome="failure",
                last_remediation="wait_and_retry",
                reason="gave up after 1 attempts: faxplus failed_user_busy (Busy)",
                finished_at=now,
            )
        )


def test_logged_out_a_page_redirects_to_the_login_and_a_post_is_refused(api: TestClient) -> None:
    page = api.get("/console/providers?x=1", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login?next=/console/providers%3Fx%3D1"
    fragment = api.get(f"/console/fragments/faxes/{'0' * 32}", follow_redirects=False)
    assert fragment.status_code == 303
    job_id = new_fax()
    refused = api.post(f"/console/faxes/{job_id}/hold", data={"csrf": "x"})
    assert refused.status_code == 403
    assert queries.get_job(job_id)["state"] == "pending"
    # Logging in takes the operator back where they were going.
    page = api.get("/console/login?next=/console/providers")
    back = api.post(
        "/console/login",
        data={"token": ADMIN, "csrf": csrf_of(page), "next": "/console/providers"},
        follow_redirects=False,
    )
    assert back.headers["location"] == "/console/providers"


@pytest.mark.parametrize("kind", ["wrong", "tenant"])
def test_login_is_refused_for_anything_but_an_admin_token(api: TestClient, kind: str) -> None:
    token = "wrong-" + "e" * 40 if kind == "wrong" else create_key("billing").key
    refused = log_in(api, token)
    assert refused.status_code == 401
    assert "Tenant keys cannot open the console" in refused.text
    assert "fax_console=" not in refused.headers.get("set-cookie", "")
    assert api.get("/console", follow_redirects=False).status_code == 303


def test_login_without_the_forms_csrf_token_is_refused(api: TestClient) -> None:
    api.get("/console/login")
    refused = api.post("/console/login", data={"token": ADMIN}, follow_redirects=False)
    assert refused.status_code == 403
    assert "fax_console=" not in refused.headers.get("set-cookie", "")


def test_after_login_is_never_another_site(api: TestClient) -> None:
    page = api.get("/console/login")
    back = api.post(
        "/console/login",
        data={"token": ADMIN, "csrf": csrf_of(page), "next": "//evil.example/console"},
        follow_redirects=False,
    )
    assert back.headers["location"] == "/console"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_session_cookie_is_httponly_strict_scoped_expiring_and_secure_on_https(
    api: TestClient, scheme: str
) -> None:
    client = TestClient(api.app, base_url=f"{scheme}://testserver")
    [session] = [
        c for c in log_in(client).headers.get_list("set-cookie") if c.startswith("fax_console=")
    ]
    flags = {part.strip().lower() for part in session.split(";")}
    assert {"httponly", "samesite=strict", "path=/console", "max-age=28800"} <= flags
    assert ("secure" in flags) is (scheme == "https")


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(api: TestClient) -> None:
    csrf = logged_in(api)
    job_id = new_fax()
    assert api.post(f"/console/faxes/{job_id}/hold").status_code == 403
    wrong = api.post(f"/console/faxes/{job_id}/hold", data={"csrf": csrf[:-2] + "xx"})
    assert wrong.status_code == 403
    assert "CSRF" in wrong.text
    assert queries.get_job(job_id)["state"] == "pending"
    done = api.post(f"/console/faxes/{job_id}/hold", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert queries.get_job(job_id)["state"] == "held"
    # Another session's token is no good either.
    other = TestClient(api.app)
    logged_in(other)
    assert other.post(f"/console/faxes/{job_id}/resume", data={"csrf": csrf}).status_code == 403
    assert api.post("/console/logout", data={"csrf": "nope"}).status_code == 403


def test_nothing_the_console_answers_is_cached(api: TestClient) -> None:
    job_id = new_fax()
    answers = [
        api.get("/console", follow_redirects=False),
        api.get("/console/login"),
        api.post("/console/logout", data={"csrf": "x"}),
    ]
    csrf = logged_in(api)
    answers += [
        api.get("/console"),
        api.get("/console/fragments/counts"),
        api.get(f"/console/faxes/{job_id}"),
        api.get(f"/console/fragments/faxes/{job_id}"),
        api.get(f"/console/faxes/{job_id}/cancel"),
        api.get("/console/providers"),
        api.get("/console/fragments/providers"),
        api.get(f"/console/faxes/{'0' * 32}"),
        api.get("/console/nowhere"),
        api.post(f"/console/faxes/{job_id}/retry", data={"csrf": csrf}),
        api.post(f"/console/faxes/{job_id}/hold", data={"csrf": csrf}, follow_redirects=False),
    ]
    assert [a.status_code for a in answers] == [
        *(303, 200, 403),
        *(200, 200, 200, 200, 200, 200, 200, 404, 404, 409, 303),
    ]
    for answer in answers:
        assert answer.headers["cache-control"] == "no-store", answer.request.url
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert (
        api.get("/openapi.json").json()["paths"].keys().isdisjoint({"/console", "/console/login"})
    )


def test_a_fax_page_explains_its_code_in_the_catalogues_words(api: TestClient) -> None:
    logged_in(api)
    job_id = new_fax(metadata={"note": "<script>alert(1)</script>"})
    fail_busy(job_id)
    entry = classify("faxplus", "failed_user_busy")

    page = api.get(f"/console/faxes/{job_id}")
    assert page.status_code == 200
    text = page.text
    for words in (entry.label, entry.description, "wait_and_retry", "Retry gives it a fresh"):
        assert words in text
    assert NUMBER in text  # whole on the fax's own page
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert f'href="/console/faxes/{job_id}/retry"' in text
    assert f'href="/console/faxes/{job_id}/hold"' not in text  # not for a failed fax
    timeline = text[text.index('id="timeline"') :]
    assert timeline.index("Attempt 1 sent to faxplus") < timeline.index("in_progress → failed")
    assert api.get(f"/console/fragments/faxes/{job_id}").text.count(entry.description) == 3

    listed = api.get("/console", params={"state": "failed"}).text
    assert job_id in listed and mask_number(NUMBER) in listed and NUMBER not in listed
    confirm = api.get(f"/console/faxes/{job_id}/retry").text
    assert 'id="confirm-retry"' in confirm and csrf_of(api.get("/console")) in confirm


def test_an_action_is_recorded_as_the_operator_who_logged_in(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([OTHER_ADMIN, ADMIN]))
    get_settings.cache_clear()
    csrf = logged_in(api)
    assert 'id="actor">admin:2<' in api.get("/console").text
    job_id = new_fax()
    held = api.post(
        f"/console/faxes/{job_id}/hold", data={"csrf": csrf, "note": "clinic asked to wait"}
    )
    assert held.status_code == 200 and "Hold: recorded as admin:2" in held.text
    last = queries.events(job_id)[-1]
    assert (last["source"], last["to"], last["actor"]) == ("operator", "held", "admin:2")
    assert last["detail"] == "clinic asked to wait"
    assert 'by <span class="mono">admin:2</span>' in held.text

    refused = api.post(f"/console/faxes/{job_id}/retry", data={"csrf": csrf})
    assert refused.status_code == 409
    assert "Cannot retry this fax: it is held." in refused.text


def test_rotating_the_tokens_or_logging_out_ends_the_session(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    csrf = logged_in(api)
    out = api.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303 and 'fax_console=""' in out.headers["set-cookie"]
    assert api.get("/console", follow_redirects=False).status_code == 303

    logged_in(api)
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([OTHER_ADMIN]))
    get_settings.cache_clear()
    assert api.get("/console", follow_redirects=False).status_code == 303


def test_the_jobs_page_filters_and_searches(api: TestClient) -> None:
    logged_in(api)
    billing = create_key("billing")
    mine = new_fax(to="+12025550150", metadata={"invoice": "inv-7"})
    theirs = new_fax(to="+12025550151", tenant_id=billing.tenant_id)
    failed = new_fax(to="+12025550152")
    fail_busy(failed)

    def found(**params: str) -> set[str]:
        page = api.get("/console", params=params)
        assert page.status_code == 200
        return set(re.findall(r'data-job="([0-9a-f]{32})"', page.text))

    assert found() == {mine, theirs, failed}
    assert found(q="+12025550150") == {mine}
    assert found(q="invoice=inv-7") == {mine}
    assert found(tenant=billing.tenant_id) == {theirs}
    assert found(state="failed", remediation="wait_and_retry") == {failed}
    assert found(family="busy") == {failed}
    assert found(state="pending", provider="faxplus") == {mine, theirs}
    assert found(until=(utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")) == set()
    by_id = api.get("/console", params={"q": failed}, follow_redirects=False)
    assert by_id.headers["location"] == f"/console/faxes/{failed}"
    bad = api.get("/console", params={"since": "yesterday"})
    assert bad.status_code == 200 and "since: must be a time" in bad.text
    counts = api.get("/console/fragments/counts").text
    assert re.search(r'id="count-failed">failed<b>1</b>', counts)


def test_the_providers_page_shows_breakers_limits_queues_and_the_oldest_due_job(
    api: TestClient,
) -> None:
    logged_in(api)
    job_id = new_fax()
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(next_attempt_at=utcnow() - timedelta(minutes=3))
        )
    page = api.get("/console/providers").text
    for provider in ("faxplus", "interfax", "optum"):
        assert f'data-provider="{provider}"' in page
    assert "closed" in page and "dispatch-urgent" in page
    assert re.search(r"due for <strong>3 min \d+ s</strong>", page)


def test_a_provider_is_paused_and_resumed_after_a_confirmation(api: TestClient) -> None:
    csrf = logged_in(api)
    confirm = api.get("/console/providers/faxplus/pause")
    assert 'id="confirm-pause"' in confirm.text
    assert api.post("/console/providers/faxplus/pause", data={"note": "x"}).status_code == 403
    assert pauses.current() == {}

    paused = api.post(
        "/console/providers/faxplus/pause", data={"csrf": csrf, "note": "carrier outage"}
    )
    assert paused.status_code == 200 and "Pause: faxplus, by admin:1." in paused.text
    found = pauses.current()["faxplus"]
    assert (found.reason, found.by, found.automatic) == ("carrier outage", "admin:1", False)
    panel = api.get("/console/fragments/providers").text
    row = panel[panel.index('data-provider="faxplus"') : panel.index('data-provider="interfax"')]
    assert "carrier outage" in row and "/console/providers/faxplus/resume" in row
    job_id = new_fax()
    assert "faxplus is paused (carrier outage)" in api.get(f"/console/faxes/{job_id}").text

    assert 'id="confirm-resume"' in api.get("/console/providers/faxplus/resume").text
    api.post("/console/providers/faxplus/resume", data={"csrf": csrf})
    assert pauses.current() == {}
    assert api.get("/console/providers/nowhere/pause").status_code == 404


def test_every_fax_a_filter_matches_is_counted_confirmed_then_acted_on(api: TestClient) -> None:
    csrf = logged_in(api)
    batch = [new_fax(to=f"+1202555016{i}") for i in range(3)]
    query = "state=pending&provider=faxplus"
    assert 'id="matching-hold"' in api.get(f"/console?{query}").text

    confirm = api.get(f"/console/matching/hold?{query}")
    assert confirm.status_code == 200
    assert f'id="matching-count">{len(batch)}<' in confirm.text
    assert {queries.get_job(j)["state"] for j in batch} == {"pending"}  # nothing done yet
    assert api.post("/console/matching/hold", data={"state": "pending"}).status_code == 403

    done = api.post(
        "/console/matching/hold",
        data={"csrf": csrf, "state": "pending", "provider": "faxplus"},
    )

    assert done.status_code == 200
    assert "hold: 3 faxes, 0 left as they were" in done.text
    assert {queries.get_job(j)["state"] for j in batch} == {"held"}
    actors = {queries.events(j)[-1]["actor"] for j in batch}
    assert actors == {"admin:1"}
    assert api.get("/console/matching/hold").status_code == 400  # no filter: refused
