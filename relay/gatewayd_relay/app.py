"""The ASGI application: routes, security headers, error shapes, and the process's Relay
started and stopped with the server (lifespan)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatewayd_relay import __version__, i18n, pages
from gatewayd_relay.api import admin, alarms, houses, phone, session, stream
from gatewayd_relay.auth import AuthError, RateLimited
from gatewayd_relay.core import Relay
from gatewayd_relay.deps import lang_of_request

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Invite links carry their token in the path: never send it on as a referrer.
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """The same headers on every answer; a plain ASGI middleware (no extra task per request:
    a tap is on the path of a person at the door)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *HEADERS]
                if api and not any(k == b"cache-control" for k, _v in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(relay: Relay) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ready = asyncio.Event()
        task = asyncio.create_task(relay.run(ready), name="relay")
        await ready.wait()
        try:
            yield
        finally:
            relay.stop()
            await task

    app = FastAPI(
        title="gatewayd relay",
        version=__version__,
        description="Phone unlock with access grants, alarm push and escalation for gatewayd "
        "houses. Every page action is an endpoint here; cookie sessions need the `X-CSRF-Token` "
        "header, `Authorization: Bearer` sessions (login with `bearer: true`) do not.",
        lifespan=lifespan,
    )
    app.state.relay = relay
    for r in (
        session.router,
        phone.router,
        houses.router,
        alarms.router,
        admin.router,
        stream.router,
        pages.router,
    ):
        app.include_router(r)
    app.mount(
        "/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"
    )

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> Response:
        if exc.status == 401 and not request.url.path.startswith("/api/"):
            return RedirectResponse("/login", 303)
        t = i18n.translator(lang_of_request(request))
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return JSONResponse({"error": exc.key, "message": t(exc.key)}, exc.status, headers=headers)

    app.add_middleware(SecurityHeaders)
    return app
