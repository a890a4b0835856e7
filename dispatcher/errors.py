"""Every error the dispatcher raises, in one tree.

    FaxError
    ├── ValidationError          bad input; nothing was written (field, reason)
    ├── IdempotencyConflict      same idempotency key, different content
    ├── NotFound                 no such id, or not the caller's (what, id)
    │   ├── JobNotFound
    │   └── BatchNotFound
    ├── TooManyRequests          a tenant's rate or daily quota; ``retry_after`` seconds
    ├── IllegalTransition        a state change the lifecycle does not allow
    ├── ConfigurationError       settings or policy file that cannot be used
    ├── DocumentUnavailable      a document's bytes cannot be read (``permanent``: gone)
    └── ProviderError            a provider call failed (provider, kind, job_id)
        ├── ProviderTransientError   connect error, 5xx: retry; the send may have landed
        │   └── ProviderTimeout      read timeout: the send may have landed
        ├── ProviderRateLimited      429, with ``retry_after`` seconds
        ├── ProviderAuthError        401/403: an operator must fix credentials
        └── ProviderRejected         400/404/409/413/415/422: the provider refused this request

``ProviderError.kind`` is the transport code the catalogue classifies
(``dispatcher.catalogue.classify_transport``); messages never contain credentials.
"""

from __future__ import annotations

__all__ = [
    "BatchNotFound",
    "ConfigurationError",
    "DocumentUnavailable",
    "FaxError",
    "IdempotencyConflict",
    "IllegalTransition",
    "JobNotFound",
    "NotFound",
    "ProviderAuthError",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderTransientError",
    "TooManyRequests",
    "ValidationError",
]


class FaxError(Exception):
    """Base of every dispatcher error."""


class ValidationError(FaxError):
    """A request field is invalid; the message names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class IdempotencyConflict(FaxError):
    """An idempotency key was reused for a different request."""

    def __init__(self, key: str, job_id: str) -> None:
        self.key = key
        self.job_id = job_id
        super().__init__(f"idempotency key {key!r} already used by job {job_id} with other content")


class NotFound(FaxError):
    """No ``what`` has this id, or none the caller may see: a tenant is never told that
    another tenant's id exists."""

    def __init__(self, what: str, id: str) -> None:
        self.what = what
        self.id = id
        super().__init__(f"no {what} {id}")


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__("job", job_id)


class BatchNotFound(NotFound):
    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__("batch", batch_id)


class TooManyRequests(FaxError):
    """A tenant is over its send rate or daily quota: nothing was accepted; try again in
    ``retry_after`` seconds."""

    def __init__(self, reason: str, retry_after: float) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


class IllegalTransition(FaxError):
    """The lifecycle table has no edge from the job's state to the requested one."""

    def __init__(self, job_id: str, current: str, target: str) -> None:
        self.job_id = job_id
        self.current = current
        self.target = target
        super().__init__(f"job {job_id}: cannot go from {current} to {target}")


class ConfigurationError(FaxError):
    """Settings or configuration data that cannot be used."""


class DocumentUnavailable(FaxError):
    """A document's bytes cannot be read. ``permanent``: they are gone (the job cannot be
    sent as it is); otherwise the store cannot answer now (the job waits)."""

    def __init__(self, sha256: str, reason: str, *, permanent: bool = False) -> None:
        self.sha256 = sha256
        self.reason = reason
        self.permanent = permanent
        super().__init__(f"document {sha256[:12]}: {reason}")


class ProviderError(FaxError):
    """A provider call failed. ``kind`` is a transport code such as ``http_503`` or ``timeout``."""

    #: True when the request may have reached the provider, so a resend must reconcile first.
    maybe_sent: bool = False

    def __init__(
        self,
        provider: str,
        kind: str,
        message: str,
        *,
        job_id: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.message = message
        self.job_id = job_id
        self.status_code = status_code
        super().__init__(f"{provider}: {kind}: {message}")


class ProviderTransientError(ProviderError):
    """Connection refused or reset, or a 5xx: worth retrying."""

    maybe_sent = True


class ProviderTimeout(ProviderTransientError):
    """No answer in time; the provider may still have accepted the request."""


class ProviderRateLimited(ProviderError):
    """HTTP 429: wait ``retry_after`` seconds before calling again."""

    def __init__(self, provider: str, retry_after: float | None, message: str = "rate limited"):
        self.retry_after = retry_after
        super().__init__(provider, "http_429", message, status_code=429)


class ProviderAuthError(ProviderError):
    """Credentials were refused (401/403); no retry until an operator fixes them."""


class ProviderRejected(ProviderError):
    """The provider refused the request as invalid; the message is the provider's own."""
