"""The retry policy: pure decisions, checked by example and by property."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import CONFIG_DIR
from dispatcher.catalogue import Remediation, classify, classify_transport, entries
from dispatcher.errors import ConfigurationError
from dispatcher.policy import (
    Decision,
    History,
    JobOverrides,
    Policy,
    RetryPolicy,
    Step,
    decide,
    load_policy,
)
from dispatcher.providers.registry import PROVIDERS

POLICY = load_policy(CONFIG_DIR / "retry_policy.toml")
ALL_ENTRIES = [e for p in PROVIDERS for e in entries(p)]


def delay_of(decision: Decision) -> float:
    """The decision's delay: every decision these tests measure waits before its step."""
    assert decision.delay is not None, f"{decision.step} without a delay: {decision.reason}"
    return decision.delay


def test_a_busy_line_is_retried_after_about_three_minutes() -> None:
    decision = decide(classify("interfax", 3931), History(attempts=1), POLICY, rng=random.Random(1))
    assert decision.step is Step.RETRY
    assert 180 * 0.9 <= delay_of(decision) <= 180 * 1.1
    assert "interfax 3931" in decision.reason


def test_no_answer_waits_about_five_minutes() -> None:
    entry = classify("faxplus", "failed_no_answer")
    decision = decide(entry, History(attempts=1), POLICY, rng=random.Random(1))
    assert 300 * 0.9 <= delay_of(decision) <= 300 * 1.1


def test_backoff_grows_then_gives_up_at_the_limit() -> None:
    entry = classify("interfax", 3931)
    delays = [
        delay_of(decide(entry, History(attempts=n), POLICY, rng=random.Random(0)))
        for n in (1, 2, 3)
    ]
    assert delays[0] < delays[1] < delays[2]
    final = decide(entry, History(attempts=6), POLICY)
    assert final.step is Step.FAIL and "gave up after 6 attempts" in final.reason


def test_failed_calls_count_only_against_the_transport_limit() -> None:
    # Three calls that never reached InterFAX, then a transmission that ended partial
    history = History(attempts=4, unsent=3)
    partial = decide(classify("interfax", 3268), history, POLICY, rng=random.Random(0))
    assert partial.step is Step.RETRY and "attempt 2 of 4" in partial.reason
    # But a provider that cannot be reached is not called forever: every attempt counts
    timeout = classify_transport("interfax", "timeout")
    assert decide(timeout, History(attempts=8, unsent=7), POLICY).step is Step.FAIL


def test_time_scale_multiplies_every_delay() -> None:
    fast = load_policy(CONFIG_DIR / "retry_policy.toml", time_scale=0.01)
    entry = classify("interfax", 3931)
    slow_delay = delay_of(decide(entry, History(1), POLICY, rng=random.Random(3)))
    fast_delay = decide(entry, History(1), fast, rng=random.Random(3)).delay
    assert fast_delay == pytest.approx(slow_delay * 0.01)
    assert fast.poll_timing("interfax").interval == pytest.approx(0.15)


def test_job_overrides_win() -> None:
    entry = classify("interfax", 3931)
    overrides = JobOverrides(max_attempts=2, retry_delay=10.0)
    first = decide(entry, History(1), POLICY, overrides, rng=random.Random(0))
    assert first.step is Step.RETRY and 9 <= delay_of(first) <= 11
    assert decide(entry, History(2), POLICY, overrides).step is Step.FAIL


def test_a_provider_holding_the_fax_for_credit_is_polled_not_resent() -> None:
    decision = decide(classify("interfax", -22), History(1), POLICY)
    assert decision.step is Step.POLL
    assert decision.delay == POLICY.poll.credit_recheck


def test_out_of_credit_after_the_fact_waits_with_the_others_whatever_its_attempts() -> None:
    # The provider is paused for credit meanwhile: no attempt limit ends the job
    decision = decide(classify("faxplus", "insufficient_credit"), History(50), POLICY)
    assert (decision.step, decision.delay) == (Step.RETRY, 0.0)
    assert decision.reason.startswith("waiting for credit")


def test_rate_limit_waits_at_least_retry_after() -> None:
    from dispatcher.catalogue import classify_transport

    entry = classify_transport("interfax", "http_429")
    decision = decide(entry, History(1), POLICY, rng=random.Random(0), retry_after=500.0)
    assert delay_of(decision) >= 500.0


def test_no_new_attempt_starts_after_the_deadline() -> None:
    entry = classify("interfax", 3931)
    in_time = decide(entry, History(1), POLICY, rng=random.Random(0), time_left=3600.0)
    assert in_time.step is Step.RETRY
    too_late = decide(entry, History(1), POLICY, rng=random.Random(0), time_left=60.0)
    assert too_late.step is Step.FAIL and "deadline" in too_late.reason
    # A final answer is final whatever the deadline.
    assert decide(classify("interfax", 0), History(1), POLICY, time_left=0.0).step is Step.SUCCEED


def test_policy_values_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="factor"):
        RetryPolicy(factor=0.5)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError, match="cap"):
        RetryPolicy(base_delay=10, cap=5)


def test_a_bad_policy_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[family.busy]\nbase_dely = 3\n")
    with pytest.raises(ConfigurationError, match="unknown keys"):
        load_policy(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")


def test_provider_family_sections_override_the_family(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[family.busy]\nbase_delay = 100.0\n[provider.optum.family.busy]\nbase_delay = 7.0\n"
    )
    policy = load_policy(path)
    assert policy.backoff("optum", "busy").base_delay == 7.0
    assert policy.backoff("interfax", "busy").base_delay == 100.0
    assert policy.backoff("interfax", "telephony") == policy.default


# --- properties ------------------------------------------------------------------------

entries_st = st.sampled_from(ALL_ENTRIES)
#: Out of credit pauses the provider: the job waits for a probe, not for a backoff.
backoff_entries_st = st.sampled_from(
    [e for e in ALL_ENTRIES if e.remediation is not Remediation.WAIT_FOR_CREDIT]
)
history_st = st.integers(1, 20).flatmap(
    lambda attempts: st.builds(
        History,
        attempts=st.just(attempts),
        immediate_retries=st.integers(0, 5),
        unsent=st.integers(0, attempts - 1),
    )
)


@given(backoff_entries_st, history_st, st.integers(0, 2**32))
def test_delays_stay_within_bounds(entry, history, seed) -> None:
    decision = decide(entry, history, POLICY, rng=random.Random(seed))
    if decision.step is Step.RETRY and not decision.immediate:
        backoff = POLICY.backoff(entry.provider, entry.family)
        low = min(backoff.base_delay, backoff.cap) * (1 - backoff.jitter)
        assert low <= delay_of(decision) <= backoff.cap * (1 + backoff.jitter)


@given(backoff_entries_st, history_st)
def test_attempts_never_exceed_the_limit(entry, history) -> None:
    decision = decide(entry, history, POLICY)
    if decision.step is Step.RETRY:
        assert history.spent(entry) < POLICY.backoff(entry.provider, entry.family).max_attempts


@given(entries_st, history_st)
def test_no_retry_is_always_final(entry, history) -> None:
    decision = decide(entry, history, POLICY)
    if entry.remediation is Remediation.NO_RETRY:
        assert decision.step is Step.FAIL
    if entry.remediation is Remediation.SUCCESS:
        assert decision.step is Step.SUCCEED


@given(history_st)
def test_retry_immediately_escalates_after_its_small_limit(history) -> None:
    entry = classify("faxplus", "failed_normal_temporary_failure")
    assert entry.remediation is Remediation.RETRY_IMMEDIATELY
    decision = decide(entry, history, POLICY)
    if history.immediate_retries >= POLICY.immediate_max_retries:
        assert not decision.immediate
    elif decision.step is Step.RETRY:
        assert decision.immediate and decision.delay == POLICY.immediate_delay


@given(st.integers(1, 50), st.integers(0, 2**32))
def test_compute_delay_is_monotonic_without_jitter(failures, seed) -> None:
    policy = RetryPolicy(base_delay=10, factor=2, cap=1000, jitter=0)
    rng = random.Random(seed)
    assert policy.compute_delay(failures, rng) <= policy.compute_delay(failures + 1, rng)
    assert policy.compute_delay(failures, rng) <= 1000


def test_default_policy_is_policy() -> None:
    assert isinstance(POLICY, Policy)
