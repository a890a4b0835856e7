"""Tenants, their API keys, and who is calling.

A tenant is a backend service: its keys see and act on its own jobs only, its
idempotency keys are its own, and it may have a send rate and a daily quota. A key reads
``fdk_<id>_<secret>``; it is shown once, and only the SHA-256 of its secret is kept (the
secret is 32 random bytes, so a fast hash loses nothing to guessing). The operators'
tokens (``FAX_API_TOKENS``) and ``faxctl`` on a host with database access act as
``OPERATOR``: every job, no limits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import redis
from sqlalchemy import func, select

from config.settings import get_settings
from dispatcher.broker import redis_client
from dispatcher.clock import utcnow
from dispatcher.errors import NotFound, TooManyRequests, ValidationError
from dispatcher.resilience.ratelimit import TokenBucket
from dispatcher.store.db import session_scope
from dispatcher.store.models import ApiKey, Job, Tenant

__all__ = [
    "OPERATOR",
    "Caller",
    "IssuedKey",
    "admit",
    "authenticate",
    "callback_secret",
    "create_key",
    "list_keys",
    "new_webhook_secret",
    "revoke_key",
    "set_limits",
]

_PREFIX = "fdk"
#: A minute of sending at the tenant's rate may come in one request.
BURST_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a tenant's key (``tenant_id``), or an operator (None). ``actor``
    is what the job's events record for an operator action."""

    tenant_id: str | None
    actor: str

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


#: ``faxctl`` on a host with database access, and the operators' API tokens.
OPERATOR = Caller(None, "operator")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``key`` is shown this once. ``callback_secret`` is the tenant's, when
    the tenant was created with the key."""

    key: str
    key_id: str
    tenant: str
    tenant_id: str
    callback_secret: str | None


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(tenant: str, name: str = "default") -> IssuedKey:
    """A new key for ``tenant``, created with the tenant if there is none by that name."""
    tenant = tenant.strip()
    if not tenant or len(tenant) > 64:
        raise ValidationError("tenant", "a tenant name of 1 to 64 characters")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with session_scope() as session:
        row = session.scalars(select(Tenant).where(Tenant.name == tenant)).first()
        new_secret = None
        if row is None:
            new_secret = new_webhook_secret()
            row = Tenant(id=uuid.uuid4().hex, name=tenant, callback_secret=new_secret)
            session.add(row)
            session.flush()
        session.add(ApiKey(id=key_id, tenant_id=row.id, name=name[:64], secret_hash=_hash(secret)))
        tenant_id = row.id
    return IssuedKey(f"{_PREFIX}_{key_id}_{secret}", key_id, tenant, tenant_id, new_secret)


def list_keys(tenant: str | None = None) -> list[dict[str, Any]]:
    """Every key (of one tenant), newest first; never a secret."""
    query = (
        select(ApiKey, Tenant.name)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .order_by(ApiKey.created_at.desc())
    )
    if tenant:
        query = query.where(Tenant.name == tenant)
    with session_scope() as session:
        return [
            {
                "id": key.id,
                "tenant": name,
                "name": key.name,
                "created_at": key.created_at.isoformat(),
                "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
                "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
            }
            for key, name in session.execute(query)
        ]


def revoke_key(key_id: str) -> None:
    """The key stops working at once."""
    with session_scope() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise NotFound("key", key_id)
        key.revoked_at = key.revoked_at or utcnow()


def set_limits(tenant: str, send_rate: float | None, daily_quota: int | None) -> None:
    """Set (or with None, lift) a tenant's send rate (faxes a second) and daily quota."""
    if send_rate is not None and send_rate <= 0:
        raise ValidationError("send_rate", "must be > 0")
    if daily_quota is not None and daily_quota < 0:
        raise ValidationError("daily_quota", "must be >= 0")
    with session_scope() as session:
        row = session.scalars(select(Tenant).where(Tenant.name == tenant)).first()
        if row is None:
            raise NotFound("tenant", tenant)
        row.send_rate, row.daily_quota = send_rate, daily_quota


def authenticate(token: str) -> Caller | None:
    """The tenant a key belongs to, or None for anything that is not a live key."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX:
        return None
    _, key_id, secret = parts
    with session_scope() as session:
        key = session.get(ApiKey, key_id)
        if key is None or key.revoked_at is not None:
            return None
        if not hmac.compare_digest(key.secret_hash, _hash(secret)):
            return None
        now = utcnow()
        if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
            key.last_used_at = now  # at most once a minute: a read path stays a read
        return Caller(key.tenant_id, f"key:{key.id}")


def callback_secret(tenant_id: str) -> str:
    with session_scope() as session:
        return session.get_one(Tenant, tenant_id).callback_secret


@cache
def _bucket(client: redis.Redis, tenant_id: str, rate: float, scale: float) -> TokenBucket:
    """Refilled at ``rate`` faxes a second (after FAX_TIME_SCALE, like every other time),
    holding at most a minute's worth."""
    burst = max(1.0, rate * BURST_SECONDS)
    return TokenBucket(client, f"fax:tenant-rate:{tenant_id}", rate=rate / scale, burst=burst)


def admit(caller: Caller, count: int) -> None:
    """Let ``count`` new faxes in for ``caller``, or raise ``TooManyRequests``: over its
    daily quota (until the next UTC midnight), or its send rate (until enough tokens)."""
    if caller.tenant_id is None or count <= 0:
        return
    now = utcnow()
    with session_scope() as session:
        tenant = session.get_one(Tenant, caller.tenant_id)
        rate, quota = tenant.send_rate, tenant.daily_quota
        if quota is not None:
            midnight = datetime(now.year, now.month, now.day, tzinfo=UTC)
            today = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.tenant_id == caller.tenant_id, Job.created_at >= midnight)
            )
            if (today or 0) + count > quota:
                wait = (midnight + timedelta(days=1) - now).total_seconds()
                raise TooManyRequests(f"the daily quota of {quota} faxes is reached", wait)
    if rate is not None:
        bucket = _bucket(redis_client(), caller.tenant_id, rate, get_settings().time_scale)
        if count > bucket.burst:
            raise ValidationError(
                "documents", f"at most {int(bucket.burst)} faxes per request at this rate"
            )
        wait = bucket.acquire(count)
        if wait > 0:
            raise TooManyRequests(f"the send rate of {rate:g} faxes a second is reached", wait)
