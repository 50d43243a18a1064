"""`gatewayd`: the entry point. Messages are for a person on a ladder: one clear line, no
traceback unless --debug. Exit codes: 0 fine, 1 the daemon or a check failed, 2 bad usage or
bad config."""

from __future__ import annotations

import logging
import os
import sys

import click

from gatewayd import __version__

DEFAULT_CONFIG = os.environ.get("GATEWAYD_CONFIG", "/etc/gatewayd/gateway.toml")
EXIT_FAILED = 1
EXIT_CONFIG = 2

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The gateway's configuration file (or $GATEWAYD_CONFIG).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gatewayd")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """gatewayd: smoke alarms, charging piles and door locks of one rental house,
    watched at the edge and reported to the platform.

    \b
    Examples:
      gatewayd check -c /etc/gatewayd/gateway.toml
      gatewayd keygen /etc/gatewayd/command.key
      gatewayd run -c /etc/gatewayd/gateway.toml
    """
    ctx.obj = {"debug": debug}


def setup_logging(debug: bool) -> None:
    # Under systemd the journal adds the time; elsewhere we do.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format=fmt, stream=sys.stderr
    )
    logging.getLogger("gatewayd.paho").setLevel(logging.WARNING)


def load_config_or_exit(path: str) -> object:
    from gatewayd import config
    from gatewayd.errors import GatewayError

    try:
        return config.load(path)
    except GatewayError as exc:
        click.echo(f"✗ {exc}", err=True)
        sys.exit(EXIT_CONFIG)


@cli.command()
@config_option
@click.option("--tick", default=1.0, show_default=True, help="Seconds between rule timer ticks.")
@click.pass_context
def run(ctx: click.Context, config_path: str, tick: float) -> None:
    """Run the gateway daemon (what systemd starts)."""
    import asyncio

    from gatewayd.config import Config
    from gatewayd.runtime import Gateway

    setup_logging(ctx.obj["debug"])
    cfg = load_config_or_exit(config_path)
    assert isinstance(cfg, Config)

    async def main() -> None:
        await Gateway(cfg, tick_seconds=tick).run()

    asyncio.run(main())


@cli.command()
@config_option
def check(config_path: str) -> None:
    """Validate the configuration (and the secret files it names) without starting anything."""
    from gatewayd.config import Config

    cfg = load_config_or_exit(config_path)
    assert isinstance(cfg, Config)
    click.echo(
        f"✓ {config_path}: gateway {cfg.gateway_id}, "
        f"{len(cfg.buses)} buses, {len(cfg.devices)} devices"
    )


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key (the platform must be told).")
def keygen(path: str, force: bool) -> None:
    """Write a new random command key (32 bytes, hex) to PATH with mode 0600 and print its
    fingerprint for the platform. The key itself is never printed."""
    import secrets as pysecrets

    from gatewayd.secrets import write_secret
    from gatewayd.signing import fingerprint

    if os.path.exists(path) and not force:
        click.echo(f"✗ {path} exists already; use --force to replace it", err=True)
        sys.exit(EXIT_CONFIG)
    key = pysecrets.token_bytes(32)
    write_secret(path, key.hex())
    click.echo(f"✓ wrote {path} (mode 0600); fingerprint {fingerprint(key)}")


def main() -> None:
    cli()
