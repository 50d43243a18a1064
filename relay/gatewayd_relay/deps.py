"""FastAPI dependencies: the relay of this process, who is asking (and whether a cookie
request passed the CSRF checks), the reader's language."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from gatewayd_relay import auth, i18n
from gatewayd_relay.auth import AuthError, Principal
from gatewayd_relay.core import Relay


def relay_of(request: Request) -> Relay:
    relay = request.app.state.relay
    assert isinstance(relay, Relay)
    return relay


# Dependencies that do no I/O are `async def`: FastAPI would run a plain `def` on its thread
# pool, a hop per request for nothing.
async def get_relay(request: Request) -> Relay:
    return relay_of(request)


RelayDep = Annotated[Relay, Depends(get_relay)]


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _token(request: Request, relay: Relay) -> tuple[str | None, bool]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(auth.cookie_name(relay.settings)), True


def resolve(request: Request, relay: Relay, s: Session) -> Principal | None:
    """Who is asking, in the caller's transaction; AuthError when a cookie request fails the
    CSRF checks."""
    token, via_cookie = _token(request, relay)
    p = auth.principal(s, token)
    if p is not None and via_cookie:
        auth.check_csrf(
            request.method,
            request.headers.get("x-csrf-token"),
            p,
            request.headers.get("origin"),
            request.headers.get("sec-fetch-site"),
            own_origin(request),
            relay.settings,
        )
    return p


def same_origin(request: Request) -> None:
    """For requests made before there is a session (login, binding a phone): refuse what
    the browser says came from another origin."""
    auth.check_origin(
        request.headers.get("origin"),
        request.headers.get("sec-fetch-site"),
        own_origin(request),
        relay_of(request).settings,
    )


def optional_principal(request: Request) -> Principal | None:
    """Runs in FastAPI's thread pool (a plain def): one small read of the sessions table."""
    relay = relay_of(request)
    with relay.db.session() as s:
        return resolve(request, relay, s)


def required(p: Principal | None) -> Principal:
    if p is None:
        raise AuthError(401, "login")
    return p


async def any_principal(p: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    return required(p)


async def staff(p: Annotated[Principal, Depends(any_principal)]) -> Principal:
    if p.account is None:
        raise AuthError(403, "forbidden_page")
    return p


async def phone(p: Annotated[Principal, Depends(any_principal)]) -> Principal:
    if p.person is None:
        raise AuthError(403, "forbidden_page")
    return p


async def admin(p: Annotated[Principal, Depends(staff)]) -> Principal:
    if p.account is None or p.account.role != "admin":
        raise AuthError(403, "forbidden_page")
    return p


async def lang(request: Request) -> str:
    return lang_of_request(request)


def lang_of_request(request: Request) -> str:
    relay = relay_of(request)
    chosen = request.query_params.get("lang") or request.cookies.get("lang")
    if chosen:
        return i18n.lang_of(chosen, relay.settings.default_lang)
    # zh-CN is the default for the villages; an English browser gets English.
    accept = request.headers.get("accept-language", "")
    return "en" if accept.lower().startswith("en") else relay.settings.default_lang


StaffDep = Annotated[Principal, Depends(staff)]
PhoneDep = Annotated[Principal, Depends(phone)]
AdminDep = Annotated[Principal, Depends(admin)]
LangDep = Annotated[str, Depends(lang)]
OptionalDep = Annotated[Principal | None, Depends(optional_principal)]


def words(lang_code: str) -> Callable[[str], str]:
    return i18n.translator(lang_code)
