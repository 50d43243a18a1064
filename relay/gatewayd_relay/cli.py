"""`gatewayd-relay`: serve, the township admin's commands (init, accounts, houses and their
enrollment codes), and exporter (the gateways' pushed metrics for Prometheus). Options may
also come from the environment (RELAY_DATABASE, RELAY_MASTER_KEY, RELAY_BROKER,
RELAY_PASSWORD), so secrets stay off command lines."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from gatewayd_relay.settings import DEFAULT_DATABASE, DEFAULT_PREFIX, BrokerSettings, Settings

F = TypeVar("F", bound=Callable[..., Any])


def store_options(f: F) -> F:
    f = click.option(
        "--database",
        envvar="RELAY_DATABASE",
        default=DEFAULT_DATABASE,
        show_default=True,
        help="sqlite:///path or postgresql://user@host/db",
    )(f)
    return click.option(
        "--master-key",
        envvar="RELAY_MASTER_KEY",
        default="relay-master.key",
        show_default=True,
        help="File (mode 0600) with the key that seals gateway keys at rest.",
    )(f)


def _open(database: str, master_key: str) -> tuple[Any, Any]:
    from gatewayd_relay.db import Database
    from gatewayd_relay.keystore import KeyStore, KeyStoreError, load_master

    try:
        keys = KeyStore(load_master(master_key))
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    db = Database(database)
    db.migrate()
    return db, keys


def _password(given: str | None) -> str:
    if given:
        return given
    env = os.environ.get("RELAY_PASSWORD")
    if env:
        return env
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True)
def main(debug: bool) -> None:
    """The relay between phones and gatewayd gateways (docs/relay.md)."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


@main.command()
@store_options
@click.option("--admin", "admin_user", default="admin", show_default=True)
@click.option("--password", default=None, help="Default: $RELAY_PASSWORD or a prompt.")
def init(database: str, master_key: str, admin_user: str, password: str | None) -> None:
    """Create the master key (if missing), the schema, and the first township admin."""
    from gatewayd_relay.keystore import create_master
    from gatewayd_relay.provisioning import ProvisioningError, create_account

    if not os.path.exists(master_key):
        create_master(master_key)
        click.echo(f"✓ wrote {master_key} (mode 0600): back it up; without it no stored key opens")
    db, _keys = _open(database, master_key)
    try:
        with db.session() as s:
            create_account(s, "cli", admin_user, _password(password), "admin", "Township admin")
        click.echo(f"✓ admin account {admin_user}")
    except ProvisioningError as exc:
        click.echo(f"• {exc}")


@main.command("account")
@store_options
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "landlord", "grid"]), required=True)
@click.option("--name", default="")
@click.option("--village", default="")
@click.option("--phone", default="")
@click.option(
    "--rank", type=int, default=None, help="Place in the village's escalation chain (1, 2, …)."
)
@click.option("--password", default=None, help="Default: $RELAY_PASSWORD or a prompt.")
def account(
    database: str,
    master_key: str,
    username: str,
    role: str,
    name: str,
    village: str,
    phone: str,
    rank: int | None,
    password: str | None,
) -> None:
    """Add a staff account (landlord, grid worker, admin)."""
    from gatewayd_relay.provisioning import ProvisioningError, create_account

    db, _ = _open(database, master_key)
    try:
        with db.session() as s:
            create_account(
                s, "cli", username, _password(password), role, name, village, phone, rank
            )
    except (ProvisioningError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"✓ {role} {username}")


@main.command("house")
@store_options
@click.argument("gateway_id")
@click.option("--name", required=True)
@click.option("--village", default="")
@click.option("--landlord", default=None, help="The landlord account's username.")
def house(
    database: str, master_key: str, gateway_id: str, name: str, village: str, landlord: str | None
) -> None:
    """Create a house for a gateway and print its one-time enrollment code."""
    from gatewayd_relay.provisioning import ProvisioningError, create_house

    db, _ = _open(database, master_key)
    try:
        with db.session() as s:
            _h, code = create_house(s, "cli", gateway_id, name, village, landlord)
    except ProvisioningError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"✓ house {name} ({gateway_id}); on the gateway run:\n  gatewayd register --relay URL --code {code}"
    )


@main.command("enroll-code")
@store_options
@click.argument("gateway_id")
def enroll_code(database: str, master_key: str, gateway_id: str) -> None:
    """A new one-time code for an existing house: rotates the gateway's key when the gateway
    registers again (after `gatewayd keygen --force`)."""
    from gatewayd_relay.provisioning import ProvisioningError, house_by_gateway, new_enrollment

    db, _ = _open(database, master_key)
    try:
        with db.session() as s:
            code = new_enrollment(s, "cli", house_by_gateway(s, gateway_id))
    except ProvisioningError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"✓ code for {gateway_id} (24 h, once): {code}")


@main.command()
@store_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True)
@click.option("--broker", envvar="RELAY_BROKER", default="mqtt://127.0.0.1:1883", show_default=True)
@click.option("--broker-ca-file", default=None)
@click.option("--topic-prefix", default=DEFAULT_PREFIX, show_default=True)
@click.option("--public-url", default="", help="The address phones use (invite links, pushes).")
@click.option(
    "--notifier",
    "notifiers",
    multiple=True,
    help="log | file:/path | webhook:https://… (repeatable)",
)
@click.option(
    "--escalate-after",
    default=120.0,
    show_default=True,
    help="Seconds before an unacknowledged critical alarm goes to the next person.",
)
@click.option("--action-timeout", default=8.0, show_default=True)
@click.option(
    "--tls-cert", default=None, help="Serve HTTPS with this certificate (else put TLS in front)."
)
@click.option("--tls-key", default=None)
@click.option(
    "--trusted-proxy",
    "proxies",
    multiple=True,
    help="Load balancer address whose X-Forwarded-* to believe.",
)
@click.option(
    "--trusted-origin", "origins", multiple=True, help="Another origin the pages are served from."
)
@click.option(
    "--insecure-cookies",
    is_flag=True,
    help="Cookies without Secure (plain-http demo on a LAN only).",
)
@click.option(
    "--no-gateway-ack",
    is_flag=True,
    help="Do not send the gateway ack_alarm on a page acknowledgement.",
)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
def serve(
    database: str,
    master_key: str,
    host: str,
    port: int,
    broker: str,
    broker_ca_file: str | None,
    topic_prefix: str,
    public_url: str,
    notifiers: tuple[str, ...],
    escalate_after: float,
    action_timeout: float,
    tls_cert: str | None,
    tls_key: str | None,
    proxies: tuple[str, ...],
    origins: tuple[str, ...],
    insecure_cookies: bool,
    no_gateway_ack: bool,
    lang: str,
) -> None:
    """Serve the pages and the API (one process; run more behind a load balancer)."""
    import uvicorn

    from gatewayd_relay.app import create_app
    from gatewayd_relay.core import Relay
    from gatewayd_relay.notify import Fanout, from_spec

    try:
        settings = Settings(
            database=database,
            broker=BrokerSettings.from_url(broker, ca_file=broker_ca_file),
            topic_prefix=topic_prefix,
            master_key_file=master_key,
            action_timeout=action_timeout,
            escalate_after=escalate_after,
            cookie_secure=not insecure_cookies,
            trusted_origins=tuple(o.rstrip("/") for o in origins),
            notifiers=notifiers or ("log",),
            ack_to_gateway=not no_gateway_ack,
            public_url=public_url,
            default_lang=lang,
        )
        fanout = Fanout([from_spec(n) for n in settings.notifiers])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    db, keys = _open(database, master_key)
    # paho's network thread, the database workers and the event loop share the GIL: hand it
    # over within 1 ms rather than CPython's 5, so a tap's publish is not kept waiting.
    sys.setswitchinterval(0.001)
    relay = Relay(settings, db, keys, fanout)
    config = uvicorn.Config(
        create_app(relay),
        host=host,
        port=port,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=list(proxies) or None,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=3,
    )
    click.echo(
        f"relay serving on {'https' if tls_cert else 'http'}://{host}:{port} ({db.engine.dialect.name})",
        err=True,
    )
    uvicorn.Server(config).run()
    db.close()


@main.command()
@click.option("--broker", envvar="RELAY_BROKER", default="mqtt://127.0.0.1:1883", show_default=True,
              help="mqtt[s]://[user:password@]host:port (or $RELAY_BROKER, to keep the password "
              "off the command line).")  # fmt: skip
@click.option("--broker-ca-file", default=None)
@click.option("--topic-prefix", default=DEFAULT_PREFIX, show_default=True)
@click.option("--listen", default="127.0.0.1:9109", show_default=True, help="host:port to serve")
@click.option("--inventory", default=None,
              help="The installers' inventory CSV (gateway_id,village,township...): labels, and "
              "the gateways that must be pushing (stale until they do).")  # fmt: skip
@click.option("--stale-after", type=float, default=None,
              help="Seconds without a frame before a gateway is stale [3 of its push periods].")  # fmt: skip
@click.option("--job", default="gatewayd", show_default=True, help="The job label of the series.")
def exporter(
    broker: str,
    broker_ca_file: str | None,
    topic_prefix: str,
    listen: str,
    inventory: str | None,
    stale_after: float | None,
    job: str,
) -> None:
    """Serve the gateways' pushed metrics ([metrics] push_seconds) to Prometheus."""
    import asyncio

    from gatewayd_relay.exporter import Exporter
    from gatewayd_relay.exporter_serve import parse_listen, serve

    try:
        settings = Settings(
            broker=BrokerSettings.from_url(broker, ca_file=broker_ca_file),
            topic_prefix=topic_prefix,
        )
        parse_listen(listen)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        asyncio.run(serve(settings, Exporter(topic_prefix, job, inventory, stale_after), listen))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc}") from None
