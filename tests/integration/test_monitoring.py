"""The monitoring shipped in config/monitoring/, against a real ``GET /metrics``.

Every metric the dashboard and the alerts query is one the API exports (a typo or a
renamed metric fails here), the rules are complete, the new metrics count what the
database and Redis hold, and a real send through the adapters shows in the send latency
and the pages sent.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from config.settings import get_settings
from dispatcher import latency, pauses, queries
from dispatcher.api import create_app
from dispatcher.broker import redis_client
from dispatcher.clock import utcnow
from dispatcher.errors import ProviderRejected, ProviderTimeout
from dispatcher.processes import wait_for
from dispatcher.providers.base import SendRequest
from dispatcher.providers.observed import ObservedAdapter
from dispatcher.providers.registry import PROVIDERS
from dispatcher.providers.twin import TwinAdapter
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, CallbackDelivery, Job
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.api import ADMIN, bearer
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack

MONITORING = Path(__file__).resolve().parents[2] / "config" / "monitoring"
#: Series Prometheus makes itself, not /metrics.
PROMETHEUS_OWN = {"up"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_MATCHERS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:$])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: not its functions, label matchers,
    ranges, grouping labels, keywords nor Grafana variables."""
    for pattern in (_STRINGS, _VARIABLES, _MATCHERS, _GROUPING):
        expr = pattern.sub(" ", expr)
    return {name for name in _NAME.findall(expr) if name.lower() not in _KEYWORDS}


def dashboard() -> dict[str, Any]:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def queried() -> dict[str, set[str]]:
    """Each metric name the dashboard or the alerts query, and where."""
    found: dict[str, set[str]] = {}
    board = dashboard()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                found.setdefault(name, set()).add(f"panel {panel['title']!r}")
    for variable in board["templating"]["list"]:
        for name in _LABEL_VALUES.findall(str(variable.get("query", ""))):
            found.setdefault(name, set()).add(f"variable {variable['name']!r}")
    for rule in rules():
        for name in metric_names(rule["expr"]):
            found.setdefault(name, set()).add(f"alert {rule['alert']}")
    return found


def scrape(client: TestClient) -> str:
    response = client.get("/metrics", headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    return response.text


def exported(text: str) -> set[str]:
    """Every series name a query may use: a counter's ``_total``, a histogram's
    ``_bucket``, ``_sum`` and ``_count`` (listed even while they have no sample)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of series ``name``, by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text, name)[tuple(sorted(labels.items()))]


# --- the shipped files --------------------------------------------------------------------


def test_the_name_extraction_ignores_functions_labels_and_variables() -> None:
    expr = (
        "histogram_quantile(0.95, max by (provider, le) (rate(fax_send_latency_seconds_bucket"
        '{provider=~"$provider"}[$__rate_interval]))) / on (provider) group_left '
        'sum without (instance) (fax_jobs{state="x y"}) and absent(up)'
    )
    assert metric_names(expr) == {"fax_send_latency_seconds_bucket", "fax_jobs", "up"}


def test_every_metric_the_dashboard_and_alerts_query_is_exported(api: TestClient) -> None:
    names = queried()
    assert len(names) >= 10
    missing = {
        name: sorted(where)
        for name, where in names.items()
        if name not in exported(scrape(api)) | PROMETHEUS_OWN
    }
    assert missing == {}


def test_every_alert_says_how_long_how_bad_and_what_to_run() -> None:
    found = rules()
    assert len({rule["alert"] for rule in found}) == len(found)
    for rule in found:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert re.search(r"`[^`]+`", rule["annotations"]["description"]), rule["alert"]
    alerted = set().union(*(metric_names(rule["expr"]) for rule in found))
    assert {
        "fax_oldest_due_job_age_seconds",
        "fax_queue_depth",
        "fax_provider_circuit_open",
        "fax_provider_paused",
        "fax_attempts_finished_total",
        "fax_callback_deliveries_retrying",
        "fax_stalled_jobs",
    } <= alerted


def test_the_dashboard_asks_for_its_prometheus() -> None:
    board = dashboard()
    [source] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert (source["name"], source["query"]) == ("DS_PROMETHEUS", "prometheus")
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in panel["targets"])


def test_the_scrape_example_sends_the_bearer_token() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "fax-dispatcher"  # the alerts' up{job="fax-dispatcher"}
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert config["rule_files"] == ["alerts.yml"]


# --- what the new metrics count -----------------------------------------------------------


def add_job(provider: str = "interfax", **values: Any) -> str:
    job_id = uuid.uuid4().hex
    with session_scope() as session:
        session.add(
            Job(
                id=job_id,
                to_number="+12025550100",
                provider=provider,
                state="pending",
                request_hash="0" * 64,
                **values,
            )
        )
    return job_id


def add_attempts(job_id: str, provider: str, *finished: tuple[str, str | None, int | None]) -> None:
    """One attempt per (code, outcome, pages sent); an outcome of None is unanswered."""
    with session_scope() as session:
        for number, (code, outcome, pages) in enumerate(finished, 1):
            session.add(
                Attempt(
                    job_id=job_id,
                    number=number,
                    provider=provider,
                    reference=f"fd-{job_id}-{number}",
                    status_code=code,
                    outcome=outcome,
                    pages_sent=pages,
                )
            )


def test_finished_attempts_count_by_code_family_and_pages_by_provider(api: TestClient) -> None:
    add_attempts(
        add_job("interfax"),
        "interfax",
        ("3931", "failure", None),  # busy
        ("http_503", "failure", None),  # a transport failure, classified as one
        ("3268", "partial", 2),
        ("0", "success", 3),
        ("timeout", None, None),  # its answer was lost: not finished
    )
    add_attempts(add_job("faxplus"), "faxplus", ("failed_no_answer", "failure", 1))
    text = scrape(api)
    assert samples(text, "fax_attempts_finished_total") == {
        (("family", "busy"), ("outcome", "failure"), ("provider", "interfax")): 1.0,
        (("family", "transport"), ("outcome", "failure"), ("provider", "interfax")): 1.0,
        (("family", "partial"), ("outcome", "partial"), ("provider", "interfax")): 1.0,
        (("family", "success"), ("outcome", "success"), ("provider", "interfax")): 1.0,
        (("family", "no_answer"), ("outcome", "failure"), ("provider", "faxplus")): 1.0,
    }
    pages = {
        dict(labels)["provider"]: v for labels, v in samples(text, "fax_pages_sent_total").items()
    }
    assert pages == {**dict.fromkeys(PROVIDERS, 0.0), "interfax": 5.0, "faxplus": 1.0}
    assert value(text, "fax_attempts", provider="interfax", remediation="none") == 5.0


def test_callback_deliveries_by_state_and_those_being_retried(api: TestClient) -> None:
    job_id = add_job()
    with session_scope() as session:
        for state, tries in [("pending", 0), ("pending", 2), ("delivered", 1), ("failed", 7)]:
            session.add(
                CallbackDelivery(
                    id=f"msg_{uuid.uuid4().hex}",
                    job_id=job_id,
                    url="https://example.test/hook",
                    event_type="fax.failed",
                    payload={},
                    state=state,
                    attempts=tries,
                )
            )
    text = scrape(api)
    states = {dict(k)["state"]: v for k, v in samples(text, "fax_callback_deliveries").items()}
    assert states == {"pending": 2.0, "delivered": 1.0, "failed": 1.0}
    assert value(text, "fax_callback_deliveries_retrying") == 1.0


def test_a_paused_provider_is_flagged_and_its_waiting_jobs_are_not_overdue_work(
    api: TestClient,
) -> None:
    add_job("interfax", next_attempt_at=utcnow() - timedelta(minutes=10))
    assert value(scrape(api), "fax_oldest_due_job_age_seconds") >= 600
    pauses.pause("interfax", "maintenance", "test")
    text = scrape(api)
    paused = {dict(k)["provider"]: v for k, v in samples(text, "fax_provider_paused").items()}
    assert paused == {**dict.fromkeys(PROVIDERS, 0.0), "interfax": 1.0}
    assert value(text, "fax_oldest_due_job_age_seconds") == 0.0


# --- send latency -------------------------------------------------------------------------


def test_the_adapter_times_answered_calls_and_a_failing_timer_never_fails_a_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timed: list[tuple[str, str, float]] = []

    def broken(provider: str, call: str, seconds: float) -> None:
        raise RuntimeError("metrics are down")

    twin = TwinAdapter()
    adapter = ObservedAdapter(twin, [], [broken, lambda *timing: timed.append(timing)])
    request = SendRequest("j1", "ref-1", "+12025550100", [])
    with caplog.at_level(logging.ERROR):
        assert adapter.send(request)
    assert "timer" in caplog.text
    twin.refuse_next(ProviderRejected("interfax", "http_400", "bad number", status_code=400))
    with pytest.raises(ProviderRejected):
        adapter.send(request)
    twin.refuse_next(ProviderTimeout("interfax", "timeout", "no answer"))
    with pytest.raises(ProviderTimeout):
        adapter.send(request)
    assert [(provider, call) for provider, call, _ in timed] == [("interfax", "send")] * 2
    assert all(seconds >= 0 for *_, seconds in timed)


def test_latency_waits_while_redis_is_down_and_is_written_once_it_is_back(
    broker_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAX_BROKER_URL", broker_url)
    get_settings.cache_clear()
    redis_client().delete("fax:metrics:send_latency:optum")
    monkeypatch.setenv("FAX_BROKER_URL", "redis://127.0.0.1:1/0")
    get_settings.cache_clear()
    latency.record_call("optum", "send", 0.3)  # never raises: the send goes on
    with caplog.at_level(logging.WARNING):
        latency.flush()
    assert "send latencies not recorded yet" in caplog.text

    monkeypatch.setenv("FAX_BROKER_URL", broker_url)
    get_settings.cache_clear()
    latency.flush()  # (or the process's flusher thread, whichever comes first)
    wait_for(lambda: dict(latency.read(["optum"])["optum"].buckets)["+Inf"] == 1, 5)


def test_latency_buckets_are_cumulative(broker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAX_BROKER_URL", broker_url)
    get_settings.cache_clear()
    redis_client().delete("fax:metrics:send_latency:faxplus")
    for seconds in (0.05, 0.3, 0.3, 45.0, 120.0):
        latency.record_call("faxplus", "send", seconds)
    latency.record_call("faxplus", "status", 9.0)  # only sends are timed
    latency.flush()
    histogram = latency.read(["faxplus"])["faxplus"]
    buckets = dict(histogram.buckets)
    assert (buckets["0.1"], buckets["0.5"], buckets["30.0"], buckets["60.0"]) == (1, 3, 3, 4)
    assert buckets["+Inf"] == 5
    assert histogram.sum == pytest.approx(165.65)


@pytest.mark.e2e
def test_a_real_send_shows_in_the_send_latency_and_the_pages_sent(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = FaxRequest(
        to="+12025550100", documents=[("letter.pdf", make_pdf(3))], provider="interfax"
    )
    job_id = submit(request).job_id
    job = stack.wait_for(lambda: (j := queries.get_job(job_id))["state"] == "succeeded" and j)
    pages = sum(attempt["pages_sent"] or 0 for attempt in queries.attempts(job_id))
    assert pages == job["pages"] == 3
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([ADMIN]))
    get_settings.cache_clear()
    with TestClient(create_app()) as api:
        # the worker writes its observations once a second
        text = stack.wait_for(
            lambda: (
                (t := scrape(api))
                and value(t, "fax_send_latency_seconds_count", provider="interfax") >= 1
                and t
            ),
            timeout=10,
        )
    count = value(text, "fax_send_latency_seconds_count", provider="interfax")
    assert value(text, "fax_send_latency_seconds_bucket", provider="interfax", le="+Inf") == count
    assert value(text, "fax_send_latency_seconds_sum", provider="interfax") > 0
    assert value(text, "fax_pages_sent_total", provider="interfax") >= pages
