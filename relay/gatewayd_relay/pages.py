"""The HTML pages: small shells, mobile first, that the relay's own script (static/app.js)
fills from the same JSON API a township's app would use. No external resource: everything is
served by the relay (the villages' phones may have no route to a CDN, and none is needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from gatewayd_relay import access, i18n
from gatewayd_relay.deps import LangDep, OptionalDep, RelayDep, StaffDep

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def render(request: Request, template: str, lang: str, csrf: str = "", **ctx: Any) -> HTMLResponse:
    t = i18n.translator(lang)
    strings = {k: t(k) for k in i18n.TEXT}
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": t,
            "lang": lang,
            "csrf": csrf,
            "strings": json.dumps(strings, ensure_ascii=False),
            **ctx,
        },
    )
    if request.query_params.get("lang"):
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax", path="/")
    return response


@router.get("/")
def home(p: OptionalDep) -> Response:
    if p is None:
        return RedirectResponse("/login", 303)
    if p.person is not None:
        return RedirectResponse("/phone", 303)
    assert p.account is not None
    return RedirectResponse("/grid" if p.account.role == "grid" else "/landlord", 303)


@router.get("/login")
def login_page(request: Request, lang: LangDep) -> HTMLResponse:
    return render(request, "login.html", lang)


@router.get("/phone")
def phone_page(request: Request, p: OptionalDep, lang: LangDep) -> Response:
    if p is None or p.person is None:
        return RedirectResponse("/login", 303)
    return render(request, "phone.html", lang, p.csrf, person=p.person.name)


@router.get("/i/{token}")
def invite_page(token: str, request: Request, relay: RelayDep, lang: LangDep) -> HTMLResponse:
    """Shows whom the invite is for; binding is a deliberate tap (a POST), so a link preview
    or a scanner cannot use the invite up."""
    with relay.db.session() as s:
        person = access.invite_person(s, token)
    return render(request, "invite.html", lang, name=person.name if person else None, token=token)


def _staff_page(request: Request, p: OptionalDep, lang: str, view: str) -> Response:
    if p is None or p.account is None:
        return RedirectResponse("/login", 303)
    return render(
        request,
        "staff.html",
        lang,
        p.csrf,
        view=view,
        role=p.account.role,
        name=p.account.name,
        village=p.account.village,
    )


@router.get("/landlord")
def landlord_page(request: Request, p: OptionalDep, lang: LangDep) -> Response:
    return _staff_page(request, p, lang, "landlord")


@router.get("/grid")
def grid_page(request: Request, p: OptionalDep, lang: LangDep) -> Response:
    return _staff_page(request, p, lang, "grid")


@router.get("/alarms/{inc_id}")
def alarm_link(inc_id: int, p: OptionalDep) -> Response:
    """Where a pushed notification's link lands."""
    if p is None or p.account is None:
        return RedirectResponse("/login", 303)
    page = "/grid" if p.account.role == "grid" else "/landlord"
    return RedirectResponse(f"{page}#incident-{inc_id}", 303)


@router.get("/qr.svg")
def qr(data: str, _who: StaffDep) -> Response:
    """A QR code of an invite link, drawn here (no external service sees the link)."""
    import io

    import segno

    buf = io.BytesIO()
    segno.make(data[:500], error="m").save(buf, kind="svg", scale=6, border=2)
    return Response(
        buf.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
    )
