"""The one settings object: every knob is a ``FAX_*`` environment variable (or a ``.env`` line).

Nested settings use a double underscore, e.g. ``FAX_S3__BUCKET``. Each provider's own
settings (``FAX_INTERFAX__USERNAME``, ...) belong to the provider, in its package
(``dispatcher.providers.<name>.settings``).
Secrets are ``SecretStr`` so they print as ``**********`` in reprs, logs and tracebacks.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CallbackSettings",
    "MaxAgeSettings",
    "RetentionSettings",
    "S3Settings",
    "Settings",
    "get_settings",
]

CONFIG_DIR = Path(__file__).resolve().parent


class S3Settings(BaseModel):
    """An S3-compatible object store for the documents (FAX_DOCUMENT_STORE=s3)."""

    bucket: str | None = None
    prefix: str = "documents/"
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None


class MaxAgeSettings(BaseModel):
    """How long a job may stay in a state that waits on something else (real seconds),
    before it is moved where an operator sees it: no job waits forever."""

    dispatching: float = Field(default=3600.0, gt=0)
    in_progress: float = Field(default=2 * 86400.0, gt=0)
    held: float = Field(default=7 * 86400.0, gt=0)


class RetentionSettings(BaseModel):
    """How long a job's protected data is kept after the job ends (real seconds); then
    beat purges it (``dispatcher.retention``). The job's record stays: state, attempts,
    codes and times, so its history and the metrics remain."""

    documents: float = Field(
        default=7 * 86400.0, ge=0, description="The documents' bytes and names (7 days)."
    )
    recipient: float = Field(
        default=30 * 86400.0,
        ge=0,
        description="The destination number (masked to +1202555****) and metadata (30 days).",
    )
    payloads: float = Field(
        default=30 * 86400.0, ge=0, description="The providers' raw status payloads (30 days)."
    )
    interval: float = Field(default=300.0, gt=0, description="Seconds between purge runs.")
    batch_size: int = Field(default=500, gt=0, description="Jobs purged per transaction.")
    run_seconds: float = Field(
        default=30.0, gt=0, description="Seconds one purge run works before leaving the rest."
    )


class CallbackSettings(BaseModel):
    """Events posted to backend services when their faxes end (``dispatcher.callbacks``)."""

    allow_http: bool = Field(
        default=False, description="Accept http:// targets (development only); else https."
    )
    allow_private: bool = Field(
        default=False,
        description="Accept targets on loopback, private or link-local addresses (tests).",
    )
    timeout: float = Field(default=10.0, gt=0, description="Seconds a receiver has to answer.")
    concurrency: int = Field(default=8, gt=0, description="Deliveries one worker makes at once.")
    retry_schedule: list[float] = Field(
        default=[5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        min_length=1,
        description="Seconds before each retry of a failed delivery (27 h in all); then failed.",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="whsec_... signing the callback_url events of operator-submitted jobs.",
    )


class Settings(BaseSettings):
    """Everything the dispatcher reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="FAX_",
        env_file=".env",
        env_nested_delimiter="__",
        env_ignore_empty=True,  # a blank line of .env.example means "not set"
        extra="ignore",
    )

    home: Path = Field(default=Path("var"), description="Directory for all local state.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is a SQLite file under FAX_HOME."
    )
    database_pool_size: int = Field(
        default=20,
        gt=0,
        description="Database connections each process keeps open (PostgreSQL): at least "
        "the requests or task threads that use one at once, or each one over it opens and "
        "closes a connection.",
    )
    broker_url: str | None = Field(
        default=None, description="Redis URL; default is the embedded valkey under FAX_HOME."
    )
    document_store: Literal["database", "s3"] = Field(
        default="database",
        description="Where documents' bytes live: the database, or the S3 store FAX_S3__*.",
    )
    s3: S3Settings = S3Settings()
    document_keys: list[SecretStr] = Field(
        default_factory=list,
        description="Fernet keys encrypting documents at rest (JSON list): the first "
        "encrypts, all decrypt. Required unless the database is a SQLite file, beside "
        "which a key is generated.",
    )
    retention: RetentionSettings = RetentionSettings()
    retry_policy_file: Path = Field(
        default=CONFIG_DIR / "retry_policy.toml",
        description="Backoff per provider and code family (TOML).",
    )
    routing_file: Path = Field(
        default=CONFIG_DIR / "routing.toml",
        description="Routes, never-dialled numbers, sending windows, breaker, limits (TOML).",
    )
    time_scale: float = Field(
        default=1.0,
        gt=0,
        description="Multiplies every delay (backoff, polls, sandbox hold); 0.01 is 100x faster.",
    )
    tick_interval: float = Field(default=5.0, gt=0, description="Seconds between beat ticks.")
    dispatch_lease: float = Field(
        default=300.0,
        gt=0,
        description="Seconds a job may sit in dispatching, with no sign of life from the "
        "worker sending it, before it is reconciled.",
    )
    settle_delay: float = Field(
        default=120.0,
        ge=0,
        description="Real seconds after a send's answer was lost during which the provider may "
        "still be accepting it: nothing is sent again before a lookup after this delay.",
    )
    provider_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a provider call may take to write or answer."
    )
    webhook_max_age: float = Field(
        default=600.0,
        gt=0,
        description="Seconds after which a signed provider event is refused as a replay.",
    )
    max_age: MaxAgeSettings = MaxAgeSettings()
    watchdog_interval: float = Field(
        default=60.0, gt=0, description="Seconds between the watchdog's looks for stalled jobs."
    )
    send_concurrency: int = Field(
        default=50,
        gt=0,
        description="Provider sends one worker process makes at once (its send pool).",
    )
    tick_batch_size: int = Field(
        default=500, gt=0, description="Jobs one tick publishes at most, per kind of work."
    )
    poll_batch_size: int = Field(
        default=50, gt=0, description="Faxes per batched status read (one poll message)."
    )
    lane_share: float = Field(
        default=0.1,
        ge=0,
        lt=0.5,
        description="Share of each tick kept for each lower priority lane that has work.",
    )
    pause_probe_interval: float = Field(
        default=300.0,
        gt=0,
        description="Seconds between probes of a provider paused for credit: one job is "
        "sent to find out whether credit is back (scaled by FAX_TIME_SCALE).",
    )
    callbacks: CallbackSettings = CallbackSettings()
    sandbox_url: str | None = Field(
        default=None,
        description="When set, every provider without credentials talks to this sandbox.",
    )
    api_tokens: list[SecretStr] = Field(
        default_factory=list, description="Bearer tokens the HTTP API accepts (JSON list)."
    )
    flower_basic_auth: SecretStr | None = Field(
        default=None, description="user:password for Flower."
    )

    @cached_property
    def home_dir(self) -> Path:
        """FAX_HOME as an absolute path, created on first use (once: every database
        session and document read asks for it)."""
        path = self.home.resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def legacy_documents_dir(self) -> Path:
        """Where versions before 0.2 kept documents on this host's disk (imported by
        ``faxctl db upgrade``)."""
        return self.home_dir / "documents"

    @property
    def broker_dir(self) -> Path:
        return self.home_dir / "broker"

    @property
    def resolved_database_url(self) -> str:
        """The configured database URL, or a SQLite file under FAX_HOME."""
        return self.database_url or f"sqlite:///{self.home_dir / 'fax.db'}"

    def scaled(self, seconds: float) -> float:
        """A delay in real seconds after applying FAX_TIME_SCALE."""
        return seconds * self.time_scale


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return Settings()
