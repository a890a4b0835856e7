"""``/console``: the operators' web page. Server-rendered (``console_views``, Jinja2),
with a few lines of inline JavaScript that refresh its live panels from ``/console/
fragments/...``; no build step.

Only an operator's admin token (``FAX_API_TOKENS``) logs in; the session is a signed
cookie (``console_session``), every form carries the session's CSRF token and every POST
is checked for it (403 otherwise), and every answer is ``Cache-Control: no-store``, may
not be framed, and runs no script but its own. Actions are recorded as the operator who
logged in (``admin:<n>``). Routes are plain ``def``: the database and broker calls run in
FastAPI's threadpool.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from dispatcher import operations, pauses, selection
from dispatcher.api.auth import operator_for
from dispatcher.api.console_session import (
    PATH,
    ConsoleSession,
    LoginRequired,
    Refused,
    check_form,
    end_session,
    login_csrf,
    login_csrf_matches,
    read_session,
    safe_next,
    set_login_cookie,
    start_session,
)
from dispatcher.api.console_views import (
    ACTIONS,
    JOB_ID,
    PROVIDER_ACTIONS,
    Action,
    JobFilters,
    allowed,
    fax_context,
    jobs_context,
    provider_context,
    providers_context,
    render,
    state_counts,
)
from dispatcher.errors import IllegalTransition, NotFound, ProviderError, ValidationError
from dispatcher.providers.registry import PROVIDERS
from dispatcher.queries import Search

__all__ = [
    "ConsoleRoute",
    "act",
    "act_on_matching",
    "act_on_provider",
    "confirm_action",
    "confirm_matching",
    "confirm_provider_action",
    "counts_fragment",
    "fax",
    "fax_fragment",
    "jobs",
    "login",
    "login_page",
    "logout",
    "not_found",
    "providers",
    "providers_fragment",
    "router",
]

log = logging.getLogger(__name__)

_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("session", read_session(request))
    html = render(template, nonce=request.state.nonce, base=PATH, **context)
    return HTMLResponse(html, status)


class ConsoleRoute(APIRoute):
    """A console route: a page (not JSON) for a refusal, a redirect to the login page
    for a GET without a session, and the same protective headers on every answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def console_route(request: Request) -> Response:
            request.state.nonce = secrets.token_urlsafe(16)
            response: Response
            try:
                response = await handle(request)
            except LoginRequired:
                here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse(f"{PATH}/login?next={quote(here)}", 303)
            except Refused as exc:
                response = _page(request, "error.html", exc.status, message=exc.message)
            except NotFound as exc:
                response = _page(request, "error.html", 404, message=str(exc))
            except (ValidationError, RequestValidationError) as exc:
                response = _page(request, "error.html", 400, message=f"not a valid request: {exc}")
            except HTTPException as exc:  # a body over the limit, ...
                response = _page(request, "error.html", exc.status_code, message=str(exc.detail))
            except Exception:
                log.exception("console: unhandled error on %s", request.url.path)
                response = _page(request, "error.html", 500, message="internal error; see the log")
            response.headers["Cache-Control"] = "no-store"
            response.headers["Content-Security-Policy"] = _CSP.format(nonce=request.state.nonce)
            response.headers["X-Frame-Options"] = "DENY"
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            return response

        return console_route


router = APIRouter(prefix=PATH, route_class=ConsoleRoute, include_in_schema=False, tags=["console"])


def _session(request: Request) -> ConsoleSession:
    session = read_session(request)
    if session is None:
        raise LoginRequired
    return session


SessionDep = Annotated[ConsoleSession, Depends(_session)]
CsrfField = Annotated[str, Form()]


def _job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise NotFound("fax", job_id[:64])
    return job_id


# -- logging in and out -----------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = PATH) -> Response:
    if read_session(request) is not None:
        return RedirectResponse(safe_next(next), 303)
    token, cookie = login_csrf(request)
    page = _page(request, "login.html", csrf=token, next=safe_next(next), error=None)
    if cookie is not None:
        set_login_cookie(page, request, cookie)
    return page


@router.post("/login")
def login(
    request: Request, token: CsrfField = "", csrf: CsrfField = "", next: CsrfField = PATH
) -> Response:
    if not login_csrf_matches(request, csrf):
        raise Refused(403, "the login form's CSRF token is missing or wrong: reload the page")
    operator = operator_for(token.strip()) if token.strip() else None
    if operator is None:
        log.warning("console: a login was refused (not an operator's admin token)")
        return _page(
            request,
            "login.html",
            401,
            csrf=csrf,
            next=safe_next(next),
            error="That is not an operator's admin token (FAX_API_TOKENS). Tenant keys "
            "cannot open the console.",
        )
    response = RedirectResponse(safe_next(next), 303)
    start_session(response, request, operator.actor)
    log.info("console: %s logged in", operator.actor)
    return response


@router.post("/logout")
def logout(request: Request, csrf: CsrfField = "") -> Response:
    check_form(request, csrf)
    response = RedirectResponse(f"{PATH}/login", 303)
    end_session(response, request)
    return response


# -- jobs -------------------------------------------------------------------------------


@router.get("")
def jobs(request: Request, session: SessionDep, before: str = "", done: str = "") -> Response:
    filters = JobFilters.from_query(request.query_params)
    job_id = filters.job_id()
    if job_id is not None:
        return RedirectResponse(f"{PATH}/faxes/{job_id}", 303)
    if before and not JOB_ID.fullmatch(before):
        raise Refused(400, "not a page of this list: start again from the first page")
    try:
        context = jobs_context(filters, before or None)
    except NotFound:
        raise Refused(400, "not a page of this list: start again from the first page") from None
    return _page(request, "jobs.html", session=session, done=done[:200], **context)


@router.get("/fragments/counts")
def counts_fragment(request: Request, session: SessionDep) -> Response:
    return _page(request, "_counts.html", session=session, counts=state_counts())


# -- one fax ----------------------------------------------------------------------------


@router.get("/faxes/{job_id}")
def fax(request: Request, session: SessionDep, job_id: str, done: str = "") -> Response:
    context = fax_context(_job_id(job_id))
    done_action = ACTIONS.get(done)
    return _page(request, "fax.html", session=session, done=done_action, error=None, **context)


@router.get("/fragments/faxes/{job_id}")
def fax_fragment(request: Request, session: SessionDep, job_id: str) -> Response:
    return _page(request, "_fax_state.html", session=session, **fax_context(_job_id(job_id)))


def _action(name: str) -> str:
    if name not in ACTIONS:
        raise NotFound("action", name[:32])
    return name


@router.get("/faxes/{job_id}/{action}")
def confirm_action(request: Request, session: SessionDep, job_id: str, action: str) -> Response:
    context = fax_context(_job_id(job_id))
    act = ACTIONS[_action(action)]
    return _page(
        request,
        "confirm.html",
        session=session,
        action=act,
        possible=allowed(act.name, context["job"]["state"]),
        **context,
    )


@router.post("/faxes/{job_id}/{action}")
def act(
    request: Request, job_id: str, action: str, csrf: CsrfField = "", note: CsrfField = ""
) -> Response:
    session = check_form(request, csrf)
    job_id, action = _job_id(job_id), _action(action)
    why = " ".join(note.split())[:200]
    run = getattr(operations, action)
    try:
        run(job_id, caller=session.caller, **({"why": why} if why else {}))
    except IllegalTransition as exc:
        error = f"Cannot {action} this fax: it is {exc.current}."
        return _fail(request, session, job_id, error, 409)
    except ProviderError as exc:
        error = f"Cannot {action} this fax now: {exc.provider} did not answer ({exc})."
        return _fail(request, session, job_id, error, 502)
    log.info("console: %s did %s on job %s", session.actor, action, job_id)
    return RedirectResponse(f"{PATH}/faxes/{job_id}?done={action}", 303)


def _fail(
    request: Request, session: ConsoleSession, job_id: str, error: str, status: int
) -> Response:
    context = fax_context(job_id)
    return _page(request, "fax.html", status, session=session, done=None, error=error, **context)


# -- every fax that matches ---------------------------------------------------------


def _matching(request: Request, action: str, params: Mapping[str, str]) -> tuple[Action, Search]:
    act = ACTIONS[_action(action)]
    filters = JobFilters.from_query(params)
    if not filters.items():
        raise Refused(400, "choose at least one filter: every fax is too many to act on at once")
    return act, filters.search()


@router.get("/matching/{action}")
def confirm_matching(request: Request, session: SessionDep, action: str) -> Response:
    """How many faxes the action would move, to confirm before it runs."""
    act, search = _matching(request, action, request.query_params)
    filters = JobFilters.from_query(request.query_params)
    count = selection.count_matching(act.name, search)
    return _page(
        request, "confirm_matching.html", session=session, action=act, filters=filters, count=count
    )


@router.post("/matching/{action}")
async def act_on_matching(request: Request, action: str) -> Response:
    """Act on every fax that matches, in chunks (``dispatcher.selection``)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    session = check_form(request, form.get("csrf", ""))
    act, search = _matching(request, action, form)
    result = await run_in_threadpool(selection.act_on_matching, act.name, search, session.caller)
    log.info("console: %s did %s on %d matching jobs", session.actor, act.name, result.acted)
    filters = JobFilters.from_query(form)
    left = sum(result.refused.values())
    done = urlencode({"done": f"{act.name}: {result.acted} faxes, {left} left as they were"})
    return RedirectResponse(f"{PATH}?{filters.query()}&{done}", 303)


# -- providers and queues ---------------------------------------------------------------


@router.get("/providers")
def providers(
    request: Request, session: SessionDep, done: str = "", provider: str = ""
) -> Response:
    action = PROVIDER_ACTIONS.get(done)
    known = action is not None and provider in PROVIDERS
    done_text = f"{action.label}: {provider}, by {session.actor}." if action and known else None
    return _page(request, "providers.html", session=session, done=done_text, **providers_context())


@router.get("/fragments/providers")
def providers_fragment(request: Request, session: SessionDep) -> Response:
    return _page(request, "_providers_panel.html", session=session, **providers_context())


def _provider_action(name: str) -> str:
    if name not in PROVIDER_ACTIONS:
        raise NotFound("action", name[:32])
    return name


@router.get("/providers/{provider}/{action}")
def confirm_provider_action(
    request: Request, session: SessionDep, provider: str, action: str
) -> Response:
    context = provider_context(provider)
    act = PROVIDER_ACTIONS[_provider_action(action)]
    possible = (context["pause"] is None) == (act.name == "pause")
    return _page(
        request, "confirm_provider.html", session=session, action=act, possible=possible, **context
    )


@router.post("/providers/{provider}/{action}")
def act_on_provider(
    request: Request, provider: str, action: str, csrf: CsrfField = "", note: CsrfField = ""
) -> Response:
    session = check_form(request, csrf)
    provider_context(provider)  # 404 for an unknown provider
    action = _provider_action(action)
    if action == "pause":
        why = " ".join(note.split())[:500] or "paused by an operator"
        pauses.pause(provider, why, session.actor)
    else:
        pauses.resume(provider)
    log.info("console: %s did %s on provider %s", session.actor, action, provider)
    return RedirectResponse(f"{PATH}/providers?done={action}&provider={provider}", 303)


@router.api_route("/{rest:path}", methods=["GET", "POST"])
def not_found(rest: str) -> Response:
    if not rest:
        return RedirectResponse(PATH, 303)
    raise NotFound("console page", f"/console/{rest}"[:80])
