"""Bearer-token auth for every route but ``/healthz`` and the provider webhooks.

Tokens come from ``FAX_API_TOKENS`` (a JSON list, so tokens can be rotated: add the new
one, move callers, drop the old). Each presented token is compared in constant time with
every configured one. With no token configured the API refuses all callers: an
unconfigured deployment is closed, never open.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from config.settings import get_settings

__all__ = ["require_token"]

_bearer = HTTPBearer(auto_error=False, description="A token from FAX_API_TOKENS.")


def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 for a missing or unknown token, 403 when the API has no tokens at all."""
    tokens = get_settings().api_tokens
    if not tokens:
        raise HTTPException(403, "the API is closed: FAX_API_TOKENS is not set")
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, "send 'Authorization: Bearer <token>'", challenge)
    given = credentials.credentials.encode()
    # Compare with every token (no early exit) so timing says nothing about which matched.
    matches = [hmac.compare_digest(given, t.get_secret_value().encode()) for t in tokens]
    if not any(matches):
        raise HTTPException(401, "the bearer token is not valid", challenge)
