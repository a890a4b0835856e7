"""Bearer-token auth for every route but ``/healthz`` and the provider webhooks.

Two kinds of token: a tenant's API key (``faxctl keys create``; its routes see only the
tenant's jobs), and the operators' admin tokens from ``FAX_API_TOKENS`` (a JSON list, so
they can be rotated: add the new one, move callers, drop the old), which see everything.
Admin tokens are compared in constant time with every configured one. With neither an
admin token configured nor a valid key presented, the API refuses the caller: an
unconfigured deployment is closed, never open.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from config.settings import get_settings
from dispatcher.tenants import Caller, authenticate

__all__ = ["CallerDep", "operator_for", "require_caller", "require_operator"]

_bearer = HTTPBearer(
    auto_error=False, description="A tenant's API key, or an admin token from FAX_API_TOKENS."
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_caller(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Who is calling; 401 for a missing or unknown token, 403 when the API has no
    admin token and the caller brings no key."""
    if credentials is None:
        raise HTTPException(401, "send 'Authorization: Bearer <token>'", _CHALLENGE)
    tenant = authenticate(credentials.credentials)
    if tenant is not None:
        return tenant
    if not get_settings().api_tokens:
        raise HTTPException(403, "the API is closed: FAX_API_TOKENS is not set")
    operator = operator_for(credentials.credentials)
    if operator is None:
        raise HTTPException(401, "the bearer token is not valid", _CHALLENGE)
    return operator


def operator_for(token: str) -> Caller | None:
    """The operator whose admin token (``FAX_API_TOKENS``) this is, acting as ``admin:<n>``
    for the n-th token; None for any other token, and for every token while none is
    configured. Compared with every token in constant time (no early exit), so timing
    says nothing about which one matched, nor how much of one."""
    given = token.encode()
    tokens = get_settings().api_tokens
    matches = [hmac.compare_digest(given, t.get_secret_value().encode()) for t in tokens]
    if not any(matches):
        return None
    return Caller(None, f"admin:{matches.index(True) + 1}")


CallerDep = Annotated[Caller, Depends(require_caller)]


def require_operator(caller: CallerDep) -> Caller:
    """Routes for operators only (metrics): a tenant's key gets 403."""
    if not caller.is_operator:
        raise HTTPException(403, "this route is for the operators' tokens")
    return caller
