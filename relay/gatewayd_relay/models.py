"""The relay's tables: the one place each stored concept is defined. Times are Unix seconds
(floats), as on the wire. Everything a process must share with the others lives here:
processes keep no state of their own beyond caches they can drop."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


ROLES = ("admin", "landlord", "grid")
PERSON_KINDS = ("tenant", "visitor")


class Account(Base):
    """A person who logs in with a password: a township admin, a landlord, a grid worker
    (网格员), or anyone in a village's escalation chain."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    village: Mapped[str] = mapped_column(String(128), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    #: 1, 2, …: who hears of an alarm nobody acknowledged, in order, after the landlord and
    #: the village's grid workers (who hear at once). None: not in the chain.
    escalation_rank: Mapped[int | None] = mapped_column(Integer, default=None)
    pw_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[float] = mapped_column(Float)


class House(Base):
    """A rental house: one gateway, its doors, its landlord."""

    __tablename__ = "houses"
    id: Mapped[int] = mapped_column(primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    village: Mapped[str] = mapped_column(String(128), default="")
    landlord_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), default=None)
    #: The gateway's command key, sealed by keystore.KeyStore; None until enrolled.
    key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    key_fingerprint: Mapped[str] = mapped_column(String(40), default="")
    enrolled_at: Mapped[float | None] = mapped_column(Float, default=None)
    online: Mapped[bool | None] = mapped_column(Boolean, default=None)
    fire_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    status_at: Mapped[float | None] = mapped_column(Float, default=None)
    created: Mapped[float] = mapped_column(Float)


class Enrollment(Base):
    """A one-time code an installer types into `gatewayd register`."""

    __tablename__ = "enrollments"
    id: Mapped[int] = mapped_column(primary_key=True)
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    created: Mapped[float] = mapped_column(Float)


class Door(Base):
    __tablename__ = "doors"
    __table_args__ = (UniqueConstraint("house_id", "device"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id"))
    device: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated: Mapped[float | None] = mapped_column(Float, default=None)


class Person(Base):
    """A tenant or a visitor: someone who opens doors from a bound phone, never logs in."""

    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("house_id", "handle"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id"))
    name: Mapped[str] = mapped_column(String(128))
    #: What the gateway sees as the command's `user` (and puts in `door.unlocked`): the
    #: contract's alphabet only, unique within the house.
    handle: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    created: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)


class Grant(Base):
    """Person may open door between valid_from and valid_until (move-in to move-out),
    optionally only within daily hours, optionally at most max_opens times."""

    __tablename__ = "grants"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    door_id: Mapped[int] = mapped_column(ForeignKey("doors.id"))
    valid_from: Mapped[float] = mapped_column(Float)
    valid_until: Mapped[float | None] = mapped_column(Float, default=None)
    #: "HH:MM-HH:MM" in the relay's time zone ("22:00-06:00" wraps midnight); "" = any time.
    hours: Mapped[str] = mapped_column(String(16), default="")
    max_opens: Mapped[int | None] = mapped_column(Integer, default=None)
    opens: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)
    created: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64))


class Invite(Base):
    """A link (and its QR code) that binds one phone to a person, once."""

    __tablename__ = "invites"
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, default=None)


class WebSession(Base):
    """A staff login or a bound phone; the cookie holds a token whose hash is the key."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), default=None)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[float] = mapped_column(Float)
    expires: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, default=None)


class LoginFailure(Base):
    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(160), index=True)
    ts: Mapped[float] = mapped_column(Float)


class AuditEntry(Base):
    """Every change to who may do what: grants, people, invites, keys, accounts."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    ts: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    house_id: Mapped[int | None] = mapped_column(ForeignKey("houses.id"), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Command(Base):
    """A signed command the relay sent, and the gateway's answer once it came."""

    __tablename__ = "commands"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id"))
    device: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    user: Mapped[str] = mapped_column(String(128))
    created: Mapped[float] = mapped_column(Float)
    code: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[float | None] = mapped_column(Float, default=None)


class AccessEvent(Base):
    """The unlock log: the gateway's `door.*` events, and taps the relay refused."""

    __tablename__ = "access_log"
    __table_args__ = (UniqueConstraint("house_id", "event_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(160))
    ts: Mapped[float] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32), default="")
    user: Mapped[str] = mapped_column(String(128), default="")
    #: The person's name when the user is one of the house's people (resolved on arrival).
    name: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Incident(Base):
    """One alarm as people handle it: raised by the gateway, pushed, acknowledged,
    escalated while nobody does, closed with a note (隐患排查 → 整改 → 复查 → 销号).
    At most one open (unclosed) incident per gateway alarm id."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index(
            "one_open_incident",
            "house_id",
            "alarm_id",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id"), index=True)
    alarm_id: Mapped[str] = mapped_column(String(256))
    device: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    since: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="active")
    raised_count: Mapped[int] = mapped_column(Integer, default=1)
    cleared_at: Mapped[float | None] = mapped_column(Float, default=None)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    level: Mapped[int] = mapped_column(Integer, default=0)
    next_escalation: Mapped[float | None] = mapped_column(Float, default=None, index=True)
    acked_at: Mapped[float | None] = mapped_column(Float, default=None)
    acked_by: Mapped[str] = mapped_column(String(128), default="")
    closed_at: Mapped[float | None] = mapped_column(Float, default=None)
    closed_by: Mapped[str] = mapped_column(String(128), default="")
    close_note: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[float] = mapped_column(Float)


class IncidentEntry(Base):
    """What happened to an incident, in order: pushes, acks, escalations, commands, closing."""

    __tablename__ = "incident_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    ts: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    who: Mapped[str] = mapped_column(String(128), default="")
    level: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(Text, default="")
