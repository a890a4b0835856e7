"""The retry policy: a classified status plus the job's history -> the next step.

Pure: no database, no clock, no global state. ``decide`` is the only place that turns a
remediation into a wait, a new attempt, a hold or a final answer; backoff numbers come
from ``config/retry_policy.toml`` and are multiplied by FAX_TIME_SCALE once, at load.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from dispatcher.catalogue import Outcome, Remediation, StatusEntry
from dispatcher.errors import ConfigurationError

__all__ = [
    "Decision",
    "History",
    "JobOverrides",
    "PartialSend",
    "Policy",
    "PollTiming",
    "RetryPolicy",
    "Step",
    "decide",
    "load_policy",
]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, validated on construction."""

    base_delay: float = 120.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.1
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.base_delay < 0:
            raise ConfigurationError(f"base_delay must be >= 0, got {self.base_delay}")
        if self.factor < 1:
            raise ConfigurationError(f"factor must be >= 1, got {self.factor}")
        if self.cap < self.base_delay:
            raise ConfigurationError(f"cap {self.cap} is below base_delay {self.base_delay}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be within 0..1, got {self.jitter}")
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def compute_delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        exponent = max(failures - 1, 0)
        raw = min(self.cap, self.base_delay * self.factor ** min(exponent, 64))
        return raw * rng.uniform(1 - self.jitter, 1 + self.jitter)

    def scaled(self, scale: float) -> RetryPolicy:
        return replace(self, base_delay=self.base_delay * scale, cap=self.cap * scale)


@dataclass(frozen=True, slots=True)
class PollTiming:
    first: float = 30.0
    interval: float = 30.0
    credit_recheck: float = 900.0

    def scaled(self, scale: float) -> PollTiming:
        return PollTiming(self.first * scale, self.interval * scale, self.credit_recheck * scale)


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything ``decide`` needs, already scaled to real seconds."""

    default: RetryPolicy = RetryPolicy()
    families: Mapping[str, RetryPolicy] = field(default_factory=dict)
    #: (provider, family or "default") -> policy
    providers: Mapping[tuple[str, str], RetryPolicy] = field(default_factory=dict)
    immediate_delay: float = 5.0
    immediate_max_retries: int = 2
    poll: PollTiming = PollTiming()
    provider_poll: Mapping[str, PollTiming] = field(default_factory=dict)

    def backoff(self, provider: str, family: str) -> RetryPolicy:
        """The policy for one provider and code family, most specific first."""
        for candidate in (
            self.providers.get((provider, family)),
            self.families.get(family),
            self.providers.get((provider, "default")),
        ):
            if candidate is not None:
                return candidate
        return self.default

    def poll_timing(self, provider: str) -> PollTiming:
        return self.provider_poll.get(provider, self.poll)


class PartialSend(StrEnum):
    """What to do when only some pages went through."""

    RESEND_ALL = "resend_all"
    RESEND_REMAINING = "resend_remaining"
    ACCEPT = "accept"


@dataclass(frozen=True, slots=True)
class JobOverrides:
    """A job's own retry settings; they win over every configured level."""

    max_attempts: int | None = None
    retry_delay: float | None = None
    partial: PartialSend = PartialSend.RESEND_ALL

    @classmethod
    def from_options(cls, options: Mapping[str, Any], scale: float = 1.0) -> JobOverrides:
        delay = options.get("retry_delay")
        return cls(
            max_attempts=options.get("max_attempts"),
            retry_delay=None if delay is None else float(delay) * scale,
            partial=PartialSend(options.get("partial", PartialSend.RESEND_ALL)),
        )

    def apply(self, policy: RetryPolicy) -> RetryPolicy:
        if self.max_attempts is not None:
            policy = replace(policy, max_attempts=self.max_attempts)
        if self.retry_delay is not None:
            policy = replace(
                policy,
                base_delay=self.retry_delay,
                factor=1.0,
                cap=max(policy.cap, self.retry_delay),
            )
        return policy


@dataclass(frozen=True, slots=True)
class History:
    """What the policy needs to know of the job's past.

    ``attempts`` counts attempts made so far (the one just classified included);
    ``immediate_retries`` counts retry_immediately steps taken in a row; ``unsent`` counts
    the earlier attempts whose call failed before the provider took the fax.
    """

    attempts: int
    immediate_retries: int = 0
    unsent: int = 0

    def spent(self, entry: StatusEntry) -> int:
        """The attempts ``entry``'s limit counts: a failed call counts every attempt (so an
        unreachable provider is not called forever); a fax's status counts only the
        attempts that transmitted, so faults of the network never use up a busy line's or
        a partial send's retries."""
        return self.attempts if entry.is_call_failure else self.attempts - self.unsent


class Step(StrEnum):
    POLL = "poll"
    RETRY = "retry"
    REROUTE = "reroute"
    SUCCEED = "succeed"
    FAIL = "fail"

    @property
    def is_final(self) -> bool:
        return self in (Step.SUCCEED, Step.FAIL)


@dataclass(frozen=True, slots=True)
class Decision:
    """The next step, when (seconds from now), and why in words an operator can read."""

    step: Step
    reason: str
    delay: float | None = None
    immediate: bool = False


def decide(
    entry: StatusEntry,
    history: History,
    policy: Policy,
    overrides: JobOverrides = JobOverrides(),
    rng: random.Random | None = None,
    retry_after: float | None = None,
    next_provider: str | None = None,
    time_left: float | None = None,
) -> Decision:
    """Turn one classified status into the next step for the job.

    ``next_provider`` is the next provider on the job's route, if it has one: a
    reroutable failure moves there at once instead of waiting on the same provider.
    ``time_left`` is the seconds until the job's deadline: no new attempt starts after it.
    """
    decision = _decide(entry, history, policy, overrides, rng, retry_after, next_provider)
    late = time_left is not None and (decision.delay or 0.0) > time_left
    if decision.step in (Step.RETRY, Step.REROUTE) and late:
        return Decision(
            Step.FAIL, f"the deadline passes before the next attempt: {decision.reason}"
        )
    return decision


def _decide(
    entry: StatusEntry,
    history: History,
    policy: Policy,
    overrides: JobOverrides,
    rng: random.Random | None,
    retry_after: float | None,
    next_provider: str | None,
) -> Decision:
    rng = rng or random.Random()
    what = f"{entry.provider} {entry.code} ({entry.label})"
    timing = policy.poll_timing(entry.provider)
    if entry.outcome is Outcome.PARTIAL and overrides.partial is PartialSend.ACCEPT:
        return Decision(Step.SUCCEED, f"partial result accepted: {what}")
    if entry.reroutable and entry.outcome is Outcome.FAILURE and next_provider is not None:
        backoff = overrides.apply(policy.backoff(entry.provider, entry.family))
        if history.spent(entry) < backoff.max_attempts:
            return Decision(
                Step.REROUTE, f"rerouted to {next_provider}: {what}", policy.immediate_delay
            )
    match entry.remediation:
        case Remediation.SUCCESS:
            return Decision(Step.SUCCEED, f"delivered: {what}")
        case Remediation.POLL:
            return Decision(Step.POLL, f"in progress: {what}", timing.interval)
        case Remediation.NO_RETRY:
            return Decision(Step.FAIL, f"not retried: {what}: {entry.description}")
        case Remediation.WAIT_FOR_CREDIT if entry.outcome is Outcome.IN_PROGRESS:
            # The provider holds the fax and sends it once credit is back: resending
            # would send it twice, so keep watching it, slowly.
            return Decision(
                Step.POLL, f"provider holds the fax for credit: {what}", timing.credit_recheck
            )
        case Remediation.WAIT_FOR_CREDIT:
            # The provider is paused for credit (``dispatcher.pauses``): the job waits
            # pending with the others, and goes again when a probe finds credit back.
            return Decision(Step.RETRY, f"waiting for credit: {what}", 0.0)
        case Remediation.RETRY_IMMEDIATELY if (
            history.immediate_retries < policy.immediate_max_retries
        ):
            backoff = overrides.apply(policy.backoff(entry.provider, entry.family))
            if history.spent(entry) < backoff.max_attempts:
                return Decision(
                    Step.RETRY,
                    f"retrying at once ({history.immediate_retries + 1} of "
                    f"{policy.immediate_max_retries}): {what}",
                    policy.immediate_delay,
                    immediate=True,
                )
    return _wait_and_retry(entry, history, policy, overrides, rng, retry_after, what)


def _wait_and_retry(
    entry: StatusEntry,
    history: History,
    policy: Policy,
    overrides: JobOverrides,
    rng: random.Random,
    retry_after: float | None,
    what: str,
) -> Decision:
    backoff = overrides.apply(policy.backoff(entry.provider, entry.family))
    spent = history.spent(entry)
    if spent >= backoff.max_attempts:
        return Decision(Step.FAIL, f"gave up after {spent} attempts: {what}")
    delay = backoff.compute_delay(spent, rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return Decision(
        Step.RETRY,
        f"attempt {spent + 1} of {backoff.max_attempts} after a wait: {what}",
        delay,
    )


def _retry_policy(data: Mapping[str, Any], base: RetryPolicy, where: str) -> RetryPolicy:
    known = set(RetryPolicy.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        return replace(base, **data)
    except TypeError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


def _poll(data: Mapping[str, Any], base: PollTiming, where: str) -> PollTiming:
    try:
        return replace(base, **{name: float(value) for name, value in data.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc


def load_policy(path: Path, time_scale: float = 1.0) -> Policy:
    """Read the policy file and scale every delay by ``time_scale``."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read retry policy {path}: {exc}") from exc
    default = _retry_policy(data.get("default", {}), RetryPolicy(), "[default]")
    families = {
        name: _retry_policy(values, default, f"[family.{name}]")
        for name, values in data.get("family", {}).items()
    }
    providers: dict[tuple[str, str], RetryPolicy] = {}
    provider_poll: dict[str, PollTiming] = {}
    base_poll = _poll(data.get("poll", {}), PollTiming(), "[poll]")
    for provider, section in data.get("provider", {}).items():
        provider_default = _retry_policy(
            section.get("default", {}), default, f"[provider.{provider}.default]"
        )
        providers[(provider, "default")] = provider_default
        for name, values in section.get("family", {}).items():
            parent = families.get(name, provider_default)
            providers[(provider, name)] = _retry_policy(
                values, parent, f"[provider.{provider}.family.{name}]"
            )
        if "poll" in section:
            provider_poll[provider] = _poll(
                section["poll"], base_poll, f"[provider.{provider}.poll]"
            )
    immediate = data.get("immediate", {})
    return Policy(
        default=default.scaled(time_scale),
        families={k: v.scaled(time_scale) for k, v in families.items()},
        providers={k: v.scaled(time_scale) for k, v in providers.items()},
        immediate_delay=float(immediate.get("delay", 5.0)) * time_scale,
        immediate_max_retries=int(immediate.get("max_retries", 2)),
        poll=base_poll.scaled(time_scale),
        provider_poll={k: v.scaled(time_scale) for k, v in provider_poll.items()},
    )
