"""`gatewayd`: the entry point. Messages are for a person on a ladder: one clear line, no
traceback unless --debug. Exit codes (gatewayd.cli.common): 0 fine, 1 a check, test or the
daemon failed, 2 bad usage or bad config (or a daemon runs on that data already), 3 nothing
found, 4 daemon not reachable, 130 Ctrl-C.

Every command group lives in its own module and is imported only when it runs (or when
``--help`` lists it), so ``gatewayd --help`` stays fast and never imports a driver.
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import sys
from typing import Any

import click

from gatewayd import __version__
from gatewayd.cli.common import DEFAULT_CONFIG, FAILED, INTERRUPTED, USAGE, config_option, fail
from gatewayd.cli.i18n import install_click, set_lang, t

install_click()  # click's own messages in the person's language too

EXIT_FAILED = FAILED
EXIT_CONFIG = USAGE
__all__ = ["DEFAULT_CONFIG", "EXIT_CONFIG", "EXIT_FAILED", "cli", "main", "setup_logging"]

# name -> "module:attribute", in the order an installer meets them.
LAZY = {
    "init": "gatewayd.cli.init:init",
    "bus": "gatewayd.cli.bus:bus",
    "device": "gatewayd.cli.device:device",
    "scan": "gatewayd.cli.scan:scan",
    "pair": "gatewayd.cli.pair:pair",
    "test": "gatewayd.cli.devtest:test",
    "check": "gatewayd.cli.check:check",
    "status": "gatewayd.cli.daemon:status",
    "events": "gatewayd.cli.events:events",
    "alarm": "gatewayd.cli.daemon:alarm",
    "drill": "gatewayd.cli.drill:drill",
    "install-service": "gatewayd.cli.install:install_service",
    "register": "gatewayd.cli.register:register",
}


#: Options of the whole program, taken wherever they stand: `gatewayd status --debug` is what
#: a person types after reading "run again with --debug".
GLOBAL_FLAGS = ("--debug",)
GLOBAL_VALUED = ("--lang",)


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with --debug and --lang moved in front of the command (not after ``--``)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in GLOBAL_FLAGS or (arg.split("=", 1)[0] in GLOBAL_VALUED and "=" in arg):
            front.append(arg)
        elif arg in GLOBAL_VALUED and i + 1 < len(args):
            front += args[i : i + 2]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


class LazyGroup(click.Group):
    """Commands imported on first use; every failure turned into one line (or a traceback
    with --debug)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *LAZY]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            ctx.meta["gatewayd.argv"] = list(args)
            args = hoist_global_options(list(args))
        rest = super().parse_args(ctx, args)
        if ctx.parent is None:  # before the command is looked up: its errors are translated too
            set_lang(ctx.params.get("lang"))
        return rest

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if (
            not name.startswith("-")
            and not ctx.resilient_parsing
            and self.get_command(ctx, name) is None
        ):
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.6)
            hint = t("did_you_mean", names=", ".join(close)) if close else t("see_help")
            raise click.UsageError(f"{t('no_such_command', name=name)} {hint}", ctx)
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = LAZY.get(cmd_name)
        if spec is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = spec.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo(f"✗ {t('interrupted')}", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        except BrokenPipeError:
            # The reader stopped reading (`gatewayd status | head -1`): nothing failed here.
            # Whatever is still buffered goes nowhere, so the exit flush cannot complain.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            raise click.exceptions.Exit(0) from None
        except Exception as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            from gatewayd.errors import GatewayError

            if isinstance(exc, GatewayError):
                from gatewayd.cli.i18n import say

                fail(say(exc))
            if isinstance(exc, OSError):
                where = f"{exc.filename}: " if exc.filename else ""
                fail(f"{where}{exc.strerror or exc}")
            argv = ctx.meta.get("gatewayd.argv") or []
            again = shlex.join(["gatewayd", "--debug", *argv])
            fail(f"{type(exc).__name__}: {exc} ({t('run_debug', command=again)})")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gatewayd")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option(
    "--lang",
    type=click.Choice(["en", "zh"]),
    default=None,
    help="Language of messages (default: from $LANG).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, lang: str | None) -> None:
    """gatewayd: smoke alarms, charging piles and door locks of one rental house,
    watched at the edge and reported to the platform.

    \b
    An installer's visit (docs/installer.md):
      gatewayd init                          write gateway.toml and the command key
      gatewayd scan modbus --port /dev/ttyUSB0 --ids 1-32 --add
      gatewayd scan serial --add             find the smoke receiver
      gatewayd pair smoke --seconds 60       pair detectors, give each its room
      gatewayd scan ble --add --key-file FILE  find the entrance lock and add it
      gatewayd bus list                      the wires configured (bus add/remove)
      gatewayd test pile-1                   a safe, visible check of one device
      gatewayd check --all                   config, permissions, broker, devices
      gatewayd install-service               systemd unit, user, directories
      gatewayd status                        what the running daemon sees
    """
    ctx.obj = {"debug": debug}
    set_lang(lang)
    if debug:
        setup_logging(True)


def setup_logging(debug: bool) -> None:
    # Under systemd the journal adds the time; elsewhere we do.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO, format=fmt, stream=sys.stderr
    )
    logging.getLogger("gatewayd.paho").setLevel(logging.WARNING)


@cli.command()
@config_option
@click.option("--tick", default=1.0, show_default=True, help="Seconds between rule timer ticks.")
@click.pass_context
def run(ctx: click.Context, config_path: str, tick: float) -> None:
    """Run the gateway daemon (what systemd starts). One per data directory: a second one
    on the same data exits with status 2 and names the running one's pid."""
    import asyncio

    from gatewayd import instance
    from gatewayd.cli.common import load_config
    from gatewayd.runtime import Gateway

    setup_logging(ctx.obj["debug"])
    cfg = load_config(config_path)
    try:  # before anything is built or written
        lock = instance.acquire(cfg.data_dir, cfg.path)
    except instance.AlreadyRunning as exc:
        fail(str(exc), USAGE)

    async def main() -> None:
        await Gateway(cfg, tick_seconds=tick).run()

    denied = _unwritable(cfg.data_dir)
    if denied is not None:  # the daemon still starts: its rules run from memory (issue 13)
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
        logging.getLogger("gatewayd").error(
            t("run_data_denied", path=denied, user=user, data_dir=cfg.data_dir)
        )
    with lock:
        try:
            asyncio.run(main())
        except PermissionError as exc:
            _data_denied(exc, cfg.data_dir)
            raise


def _unwritable(data_dir: str) -> str | None:
    """The first file or folder under ``data_dir`` this process may not write (one an earlier
    `sudo gatewayd run` left), or None."""
    if os.geteuid() == 0 or not os.path.isdir(data_dir):
        return None
    for folder, dirs, files in os.walk(data_dir):
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and not os.access(path, os.W_OK):
                return path
        if not os.access(folder, os.W_OK):
            return folder
    return None


def _data_denied(exc: PermissionError, data_dir: str) -> None:
    """A file in the data directory this user may not write: typically left there by an
    earlier `sudo gatewayd run`. Say the one command that fixes it, and exit 2, which the
    unit does not restart (RestartPreventExitStatus=2): a restart would meet the same file."""
    where = os.path.abspath(str(exc.filename or ""))
    if not where.startswith(os.path.join(os.path.abspath(data_dir), "")):
        return
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    fail(t("run_data_denied", path=where, user=user, data_dir=data_dir), USAGE)


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing key (the platform must be told).")
def keygen(path: str, force: bool) -> None:
    """Write a new random command key (32 bytes, hex) to PATH with mode 0600 and print its
    fingerprint for the platform. The key itself is never printed."""
    import secrets as pysecrets

    from gatewayd.commands.signing import fingerprint
    from gatewayd.secrets import write_secret

    if os.path.exists(path) and not force:
        fail(t("init_exists", path=path), USAGE)
    key = pysecrets.token_bytes(32)
    write_secret(path, key.hex())
    click.echo(f"✓ {t('keygen_wrote', path=path, fingerprint=fingerprint(key))}")


def main() -> None:
    cli()
