"""The relay's settings: one frozen dataclass, defaults in one place, validated at the edge
(the CLI builds it; nothing else reads options or the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_DATABASE = "sqlite:///relay.db"
DEFAULT_PREFIX = "pingan/v1"


@dataclass(frozen=True)
class BrokerSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    @classmethod
    def from_url(
        cls, url: str, *, password: str | None = None, ca_file: str | None = None
    ) -> BrokerSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"--broker {url!r}: expected mqtt://host:port or mqtts://host:port")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=parts.username,
            password=password if password is not None else parts.password,
            ca_file=ca_file,
        )


@dataclass(frozen=True)
class Settings:
    database: str = DEFAULT_DATABASE
    broker: BrokerSettings = BrokerSettings()
    topic_prefix: str = DEFAULT_PREFIX
    #: Where processes tell each other that something they cannot see on the gateways'
    #: topics changed (an acknowledgement, a revoked grant): the broker is the one bus.
    relay_topic: str = "pingan-relay/v1"
    master_key_file: str = "relay-master.key"
    #: How long a phone waits for the gateway's answer before "door offline".
    action_timeout: float = 8.0
    #: Lifetime of a signed command (the gateway refuses more than 300 s).
    command_lifetime: float = 20.0
    #: An unacknowledged critical alarm goes to the next person after this long.
    escalate_after: float = 120.0
    escalation_poll: float = 1.0
    cookie_secure: bool = True
    #: Origins allowed to send state-changing requests besides the request's own host
    #: (e.g. "https://relay.example.cn" behind a load balancer that rewrites Host).
    trusted_origins: tuple[str, ...] = ()
    session_days: float = 180.0
    staff_session_hours: float = 12.0
    login_failures: int = 5
    login_window: float = 900.0
    timezone: str = "Asia/Shanghai"
    default_lang: str = "zh"
    #: "file:/path/notify.jsonl", "webhook:https://…", or "log".
    notifiers: tuple[str, ...] = ("log",)
    #: Send the gateway `ack_alarm` signed as the person who acknowledged on a page.
    ack_to_gateway: bool = True
    public_url: str = ""

    def __post_init__(self) -> None:
        if not 0.5 <= self.action_timeout <= 60:
            raise ValueError("action timeout must be 0.5..60 s")
        if not self.action_timeout < self.command_lifetime <= 300:
            raise ValueError("command lifetime must exceed the action timeout and be ≤ 300 s")
        if self.default_lang not in ("zh", "en"):
            raise ValueError("language must be zh or en")
