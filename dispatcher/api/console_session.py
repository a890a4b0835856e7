"""The console's login session and CSRF tokens: signed cookies, nothing stored anywhere.

A session is a cookie signed (itsdangerous, HMAC-SHA256, timestamped) with a key derived
from the operators' admin tokens (``FAX_API_TOKENS``): every API host derives the same key
from its configuration, so a session opened on one host is good on all of them with no
shared disk or store, and rotating the tokens ends every session. It names the operator
(``admin:<n>``, as the API records an admin token's actions) and carries the session's
CSRF token, which every form of the console repeats and every POST must match. The login
form has its own short-lived CSRF cookie (double submit), since no session exists yet.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from dataclasses import dataclass
from hashlib import sha256

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from config.settings import get_settings
from dispatcher.tenants import Caller

__all__ = [
    "LOGIN_COOKIE",
    "LOGIN_SECONDS",
    "PATH",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "ConsoleSession",
    "LoginRequired",
    "Refused",
    "check_form",
    "end_session",
    "login_csrf",
    "login_csrf_matches",
    "read_session",
    "safe_next",
    "set_login_cookie",
    "start_session",
]

PATH = "/console"
SESSION_COOKIE = "fax_console"
LOGIN_COOKIE = "fax_console_login"
#: A session lasts a working day; then the operator logs in again.
SESSION_SECONDS = 8 * 3600
LOGIN_SECONDS = 3600
_NEXT = re.compile(r"/console(?:[/?][^\\\s]*)?")


class LoginRequired(Exception):
    """No valid session: a page asks the browser to log in first."""


class Refused(Exception):
    """A request the console refuses with ``status`` and a message for the operator."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A logged-in operator: who acts (``admin:<n>``) and the session's CSRF token."""

    actor: str
    csrf: str

    @property
    def caller(self) -> Caller:
        return Caller(None, self.actor)


def _signer(purpose: str) -> URLSafeTimedSerializer | None:
    """The serializer for ``purpose``, keyed by an HMAC over every configured admin token
    (None while there is none: the console is closed, as the API is)."""
    tokens = [t.get_secret_value() for t in get_settings().api_tokens]
    if not tokens:
        return None
    key = hmac.new(json.dumps(tokens).encode(), b"fax-dispatcher console v1", sha256).hexdigest()
    return URLSafeTimedSerializer(key, salt=f"fax-console-{purpose}")


def _load(purpose: str, value: str | None, max_age: int) -> object | None:
    signer = _signer(purpose)
    if signer is None or not value:
        return None
    try:
        data: object = signer.loads(value, max_age=max_age)
        return data
    except BadSignature:  # forged, expired, or signed with tokens since rotated
        return None


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def read_session(request: Request) -> ConsoleSession | None:
    """The request's session, if its cookie is valid, unexpired and signed with today's
    tokens."""
    data = _load("session", request.cookies.get(SESSION_COOKIE), SESSION_SECONDS)
    if not isinstance(data, dict):
        return None
    actor, csrf = data.get("actor"), data.get("csrf")
    if not isinstance(actor, str) or not isinstance(csrf, str):
        return None
    return ConsoleSession(actor, csrf)


def start_session(response: Response, request: Request, actor: str) -> ConsoleSession:
    """Open a session for ``actor`` (a fresh CSRF token) in a cookie on ``response``."""
    signer = _signer("session")
    if signer is None:
        raise Refused(403, "the console is closed: FAX_API_TOKENS is not set")
    session = ConsoleSession(actor, secrets.token_urlsafe(32))
    value = signer.dumps({"actor": session.actor, "csrf": session.csrf})
    _set(response, request, SESSION_COOKIE, str(value), SESSION_SECONDS)
    response.delete_cookie(LOGIN_COOKIE, path=PATH, httponly=True, samesite="strict")
    return session


def end_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def login_csrf(request: Request) -> tuple[str, str | None]:
    """The login form's CSRF token, and the signed value of a new login cookie to set
    (``set_login_cookie``) when the browser has no valid one yet. Empty while the
    console is closed."""
    known = _load("login", request.cookies.get(LOGIN_COOKIE), LOGIN_SECONDS)
    if isinstance(known, str):
        return known, None
    signer = _signer("login")
    if signer is None:
        return "", None
    token = secrets.token_urlsafe(32)
    return token, str(signer.dumps(token))


def set_login_cookie(response: Response, request: Request, value: str) -> None:
    _set(response, request, LOGIN_COOKIE, value, LOGIN_SECONDS)


def login_csrf_matches(request: Request, given: str) -> bool:
    """True when the login form's token is the one its browser's login cookie holds."""
    known = _load("login", request.cookies.get(LOGIN_COOKIE), LOGIN_SECONDS)
    return isinstance(known, str) and hmac.compare_digest(known.encode(), given.encode())


def check_form(request: Request, given: str) -> ConsoleSession:
    """The session of a POST whose form carries the session's CSRF token; else 403."""
    session = read_session(request)
    if session is None:
        raise Refused(403, "your session has ended: log in again")
    if not hmac.compare_digest(session.csrf.encode(), given.encode()):
        raise Refused(403, "this form's CSRF token is missing or wrong: reload the page")
    return session


def safe_next(raw: str | None) -> str:
    """Where to go after logging in: a console path only (never another site)."""
    if raw and _NEXT.fullmatch(raw) and "//" not in raw and not raw.startswith("/console/login"):
        return raw
    return PATH
