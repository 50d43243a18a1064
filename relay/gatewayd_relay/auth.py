"""Who is asking: staff logins (password, rate-limited), bound phones, their sessions, and the
checks that keep another site from acting with someone's cookie.

Sessions live in the database (any process can serve any request); the cookie holds a random
token, the database its SHA-256. A state-changing request authenticated by cookie must carry
the session's CSRF token in ``X-CSRF-Token`` and must not come from another origin
(``Origin``/``Sec-Fetch-Site``). A request with ``Authorization: Bearer`` (a township's own app)
carries no ambient credential and needs neither.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from gatewayd_relay.models import Account, House, LoginFailure, Person, WebSession
from gatewayd_relay.passwords import new_token, token_hash, verify_password
from gatewayd_relay.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthError(Exception):
    """401 (not logged in) or 403 (not allowed), with a message key for people."""

    def __init__(self, status: int, key: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key


class RateLimited(AuthError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(429, "login_limited")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Principal:
    session_id: int
    csrf: str
    account: Account | None = None
    person: Person | None = None
    #: Revoked sessions are still identified (so a refused tap is attributed and logged),
    #: but grant nothing.
    revoked: bool = False

    @property
    def label(self) -> str:
        if self.account is not None:
            return self.account.username
        assert self.person is not None
        return self.person.handle


def cookie_name(settings: Settings) -> str:
    # __Host-: the browser only accepts it Secure, host-only, Path=/ (no subdomain can plant it).
    return "__Host-relay" if settings.cookie_secure else "relay"


def create_session(
    s: Session, lifetime: float, account_id: int | None = None, person_id: int | None = None
) -> tuple[str, str]:
    token, csrf = new_token(), new_token(18)
    now = time.time()
    s.add(
        WebSession(
            token_hash=token_hash(token),
            account_id=account_id,
            person_id=person_id,
            csrf=csrf,
            created=now,
            expires=now + lifetime,
        )
    )
    return token, csrf


#: The session and whoever it belongs to, in one query built once: it runs on every request.
_PRINCIPAL = (
    select(WebSession, Account, Person)
    .outerjoin(Account, Account.id == WebSession.account_id)
    .outerjoin(Person, Person.id == WebSession.person_id)
    .where(WebSession.token_hash == bindparam("token"))
)


def principal(s: Session, token: str | None) -> Principal | None:
    if not token:
        return None
    found = s.execute(_PRINCIPAL, {"token": token_hash(token)}).first()
    if found is None:
        return None
    ws, account, person = found
    if ws.expires < time.time():
        return None
    if ws.account_id is not None:
        if account is None or account.disabled or ws.revoked_at is not None:
            return None
        return Principal(ws.id, ws.csrf, account=account)
    if person is None:
        return None
    return Principal(
        ws.id,
        ws.csrf,
        person=person,
        revoked=ws.revoked_at is not None or person.revoked_at is not None,
    )


def check_csrf(
    method: str,
    header_token: str | None,
    p: Principal,
    origin: str | None,
    fetch_site: str | None,
    own_origin: str,
    settings: Settings,
) -> None:
    if method in SAFE_METHODS:
        return
    check_origin(origin, fetch_site, own_origin, settings)
    if not header_token or not hmac.compare_digest(header_token, p.csrf):
        raise AuthError(403, "forbidden_page")


def check_origin(
    origin: str | None, fetch_site: str | None, own_origin: str, settings: Settings
) -> None:
    """Refuse what a browser says came from another origin. ``same-site`` is refused too:
    another port or subdomain of this host is another application."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise AuthError(403, "forbidden_page")
    if origin is not None and origin != "null":
        allowed = {own_origin, *settings.trusted_origins}
        if origin.rstrip("/") not in allowed:
            raise AuthError(403, "forbidden_page")
    elif origin == "null":
        raise AuthError(403, "forbidden_page")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def login(
    s: Session, username: str, password: str, client: str, settings: Settings
) -> tuple[Account, str, str] | None:
    """(account, token, csrf); None for a wrong username or password (the failure is recorded
    in ``s``: the caller commits it, then refuses); RateLimited when either the username or the
    client address failed too often. Failures count in the database, so every process sees
    the same count."""
    now = time.time()
    since = now - settings.login_window
    keys = [f"user:{username.lower()[:64]}", f"addr:{client}"]
    s.execute(delete(LoginFailure).where(LoginFailure.ts < since))
    for key in keys:
        n, oldest = s.execute(
            select(func.count(), func.min(LoginFailure.ts)).where(
                LoginFailure.key == key, LoginFailure.ts >= since
            )
        ).one()
        if n >= settings.login_failures:
            raise RateLimited(max(1, int(oldest + settings.login_window - now)))
    account = s.scalar(select(Account).where(Account.username == username))
    if account is None or account.disabled or not verify_password(account.pw_hash, password):
        for key in keys:
            s.add(LoginFailure(key=key, ts=now))
        return None
    s.execute(delete(LoginFailure).where(LoginFailure.key == keys[0]))
    hours = settings.staff_session_hours
    token, csrf = create_session(s, hours * 3600, account_id=account.id)
    return account, token, csrf


def revoke_session(s: Session, session_id: int) -> None:
    ws = s.get(WebSession, session_id)
    if ws is not None and ws.revoked_at is None:
        ws.revoked_at = time.time()


def houses_of(s: Session, account: Account) -> list[House]:
    """The houses this account may see: all for a township admin, their own for a landlord,
    the village's for a grid worker."""
    q = select(House).order_by(House.name)
    if account.role == "landlord":
        q = q.where(House.landlord_id == account.id)
    elif account.role != "admin":
        q = q.where(House.village == account.village)
    return list(s.scalars(q))


def may_manage(account: Account, house: House) -> bool:
    """Grants and people: the landlord of the house, or a township admin."""
    return account.role == "admin" or house.landlord_id == account.id


def may_see(account: Account, house: House) -> bool:
    if account.role == "admin" or house.landlord_id == account.id:
        return True
    return account.role == "grid" and bool(account.village) and house.village == account.village
