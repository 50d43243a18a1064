"""Logging in and out, binding a phone from an invite link, who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from gatewayd_relay import access, auth
from gatewayd_relay.deps import OptionalDep, RelayDep, required, same_origin
from gatewayd_relay.settings import Settings

router = APIRouter(prefix="/api", tags=["session"])


class LoginIn(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)
    #: A township's own app asks for the token instead of a cookie.
    bearer: bool = False


class SessionOut(BaseModel):
    kind: str
    name: str
    role: str | None = None
    csrf: str
    token: str | None = None


def set_cookie(response: Response, settings: Settings, token: str, max_age: float) -> None:
    response.set_cookie(
        auth.cookie_name(settings),
        token,
        max_age=int(max_age),
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/login", response_model=SessionOut, response_model_exclude_none=True)
def login(body: LoginIn, request: Request, response: Response, relay: RelayDep) -> SessionOut:
    """Staff login. Five failures within 15 minutes, per username and per address, lock
    that username or address out for the rest of the window (429, Retry-After)."""
    st = relay.settings
    same_origin(request)
    with relay.db.session() as s:
        done = auth.login(s, body.username, body.password, client_address(request), st)
    if done is None:  # after the failure was committed
        raise auth.AuthError(401, "login_failed")
    account, token, csrf = done
    if body.bearer:
        return SessionOut(
            kind="staff", name=account.name, role=account.role, csrf=csrf, token=token
        )
    set_cookie(response, st, token, st.staff_session_hours * 3600)
    return SessionOut(kind="staff", name=account.name, role=account.role, csrf=csrf)


@router.post("/logout", status_code=204)
def logout(p: OptionalDep, response: Response, relay: RelayDep) -> None:
    if p is not None:
        with relay.db.session() as s:
            auth.revoke_session(s, p.session_id)
    # With the same attributes as when set: a browser ignores a __Host- cookie without Secure.
    st = relay.settings
    response.delete_cookie(
        auth.cookie_name(st), path="/", secure=st.cookie_secure, httponly=True, samesite="strict"
    )


@router.get("/me", response_model=SessionOut)
def me(p: OptionalDep) -> SessionOut:
    who = required(p)
    if who.account is not None:
        return SessionOut(kind="staff", name=who.account.name, role=who.account.role, csrf=who.csrf)
    assert who.person is not None
    return SessionOut(kind=who.person.kind, name=who.person.name, csrf=who.csrf)


@router.post("/invites/{token}/accept", response_model=SessionOut)
def accept_invite(token: str, request: Request, response: Response, relay: RelayDep) -> Any:
    """Bind this phone to the person the invite is for (once). The phone then holds an
    HttpOnly session cookie; the landlord can revoke it."""
    st = relay.settings
    same_origin(request)
    with relay.db.session() as s:
        bound = access.accept_invite(s, token, st.session_days)
    if bound is None:
        raise auth.AuthError(404, "invite_invalid")
    person, session_token, csrf = bound
    set_cookie(response, st, session_token, st.session_days * 86400)
    return SessionOut(kind=person.kind, name=person.name, csrf=csrf)
