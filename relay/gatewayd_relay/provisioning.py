"""Houses, staff accounts and gateway keys: what a township admin sets up.

A house is created with a one-time enrollment code; `gatewayd register` on the gateway sends
the gateway id and its command key once, with that code, and the key is sealed at rest. A new
code for the same house is how a key is rotated: the next enrollment replaces the key.
"""

from __future__ import annotations

import hmac
import re
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from gatewayd_relay import audit
from gatewayd_relay.grants import HANDLE
from gatewayd_relay.keystore import KeyStore
from gatewayd_relay.models import ROLES, Account, Enrollment, House
from gatewayd_relay.passwords import enrollment_code, hash_password, token_hash
from gatewayd_relay.signing import KEY_BYTES, fingerprint

# The gateway's own rule (gatewayd/config_schema.py ID_PATTERN): the id is its MQTT client id
# and a topic level, so no dots, slashes, wildcards or spaces; a gateway refuses anything else.
GATEWAY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ENROLLMENT_HOURS = 24.0


class ProvisioningError(ValueError):
    pass


def _code_hash(code: str) -> str:
    return token_hash(code.strip().upper().replace("-", "").replace(" ", ""))


def create_account(
    s: Session,
    actor: str,
    username: str,
    password: str,
    role: str,
    name: str = "",
    village: str = "",
    phone: str = "",
    escalation_rank: int | None = None,
) -> Account:
    if not HANDLE.match(username):
        raise ProvisioningError("username: letters, digits and . _ : @ - only")
    if role not in ROLES:
        raise ProvisioningError(f"role: one of {', '.join(ROLES)}")
    if s.scalar(select(Account).where(Account.username == username)) is not None:
        raise ProvisioningError(f"account {username} exists already")
    account = Account(
        username=username,
        name=name or username,
        role=role,
        village=village,
        phone=phone,
        escalation_rank=escalation_rank,
        pw_hash=hash_password(password),
        created=time.time(),
    )
    s.add(account)
    s.flush()
    audit.record(s, actor, "account.create", username=username, role=role, village=village)
    return account


def set_password(s: Session, actor: str, username: str, password: str) -> None:
    account = s.scalar(select(Account).where(Account.username == username))
    if account is None:
        raise ProvisioningError(f"no account {username}")
    account.pw_hash = hash_password(password)
    audit.record(s, actor, "account.password", username=username)


def create_house(
    s: Session, actor: str, gateway_id: str, name: str, village: str, landlord: str | None
) -> tuple[House, str]:
    if not GATEWAY_ID.fullmatch(gateway_id):
        raise ProvisioningError(
            "gateway id: 1-64 letters, digits, _ and -, starting with a letter or digit"
            " (as in gateway.toml)"
        )
    if s.scalar(select(House).where(House.gateway_id == gateway_id)) is not None:
        raise ProvisioningError(f"a house with gateway {gateway_id} exists already")
    landlord_id = None
    if landlord:
        acct = s.scalar(select(Account).where(Account.username == landlord))
        if acct is None or acct.role != "landlord":
            raise ProvisioningError(f"no landlord account {landlord}")
        landlord_id = acct.id
    house = House(
        gateway_id=gateway_id,
        name=name,
        village=village,
        landlord_id=landlord_id,
        created=time.time(),
    )
    s.add(house)
    s.flush()
    audit.record(s, actor, "house.create", house.id, gateway_id=gateway_id, landlord=landlord)
    return house, new_enrollment(s, actor, house)


def new_enrollment(s: Session, actor: str, house: House) -> str:
    """A one-time code for `gatewayd register`; any older unused code of the house stops
    working."""
    now = time.time()
    for old in s.scalars(
        select(Enrollment).where(Enrollment.house_id == house.id, Enrollment.used_at.is_(None))
    ):
        old.used_at = now
    code = enrollment_code()
    s.add(
        Enrollment(
            house_id=house.id,
            code_hash=_code_hash(code),
            expires=now + ENROLLMENT_HOURS * 3600,
            created_by=actor,
            created=now,
        )
    )
    audit.record(s, actor, "enrollment.create", house.id, rotation=house.enrolled_at is not None)
    return code


def enroll(
    s: Session, keys: KeyStore, code: str, gateway_id: str, key_hex: str
) -> tuple[House, bool]:
    """Store a gateway's key under a valid code. Every failure reads the same, so the
    endpoint tells nothing about which codes or gateways exist."""
    now = time.time()
    refused = ProvisioningError(
        "enrollment refused: unknown, used or expired code, or another gateway"
    )
    row = s.scalar(select(Enrollment).where(Enrollment.code_hash == _code_hash(code)))
    if row is None or row.used_at is not None or row.expires < now:
        raise refused
    house = s.get(House, row.house_id)
    if house is None or not hmac.compare_digest(house.gateway_id, gateway_id):
        raise refused
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ProvisioningError("the key must be 32 bytes as 64 hex digits")
    row.used_at = now
    rotated = house.enrolled_at is not None
    house.key_sealed = keys.seal(house.gateway_id, key)
    house.key_fingerprint = fingerprint(key)
    house.enrolled_at = now
    audit.record(
        s,
        f"gateway:{gateway_id}",
        "key.rotate" if rotated else "key.enroll",
        house.id,
        fingerprint=house.key_fingerprint,
    )
    return house, rotated


def house_by_gateway(s: Session, gateway_id: str) -> House:
    house = s.scalar(select(House).where(House.gateway_id == gateway_id))
    if house is None:
        raise ProvisioningError(f"no house with gateway {gateway_id}")
    return house
