"""What every `gatewayd` command shares: exit codes, one-line failures, JSON output, the
config option and a cheap read of the config for commands that must not need its secrets.

Exit codes scripts can rely on (docs/troubleshooting.md lists them too):

    0  done; every check passed; something was found
    1  a check or device test failed, or the daemon refused the request
    2  bad usage or an invalid configuration; `run` while a daemon runs on that data already
    3  nothing found (a scan), or no such device or alarm
    4  the daemon is not reachable (not running, this user may not use its socket, or busy)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from gatewayd.cli.i18n import t

if TYPE_CHECKING:
    from gatewayd.config import Config

OK = 0
FAILED = 1
USAGE = 2
NOT_FOUND = 3
NO_DAEMON = 4
INTERRUPTED = 130

DEFAULT_CONFIG = os.environ.get("GATEWAYD_CONFIG", "/etc/gatewayd/gateway.toml")
DEFAULT_DATA_DIR = "/var/lib/gatewayd"

F = TypeVar("F", bound=Callable[..., Any])


class Fail(click.ClickException):
    """One line for a person, a ✗ in front, and the exit code scripts rely on."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        # click declares exit_code a ClassVar, but reads it from the instance it catches.
        self.exit_code = code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"✗ {self.message}", err=True)


def fail(message: str, code: int = FAILED) -> NoReturn:
    raise Fail(message, code)


def config_option(f: F) -> F:
    return click.option(
        "-c",
        "--config",
        "config_path",
        default=DEFAULT_CONFIG,
        show_default=True,
        help="The gateway's configuration file (or $GATEWAYD_CONFIG).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def ok(message: str) -> None:
    click.echo(f"✓ {message}")


def bad(message: str) -> None:
    click.echo(f"✗ {message}")


def load_config(path: str) -> Config:
    """The validated config, or exit 2 with its one-line error."""
    from gatewayd import config
    from gatewayd.errors import GatewayError

    try:
        return config.load(path)
    except GatewayError as exc:
        from gatewayd.cli.i18n import say

        fail(say(exc), USAGE)


def raw_config(path: str) -> dict[str, Any]:
    """The TOML as written, without validating it or reading any secret: enough to find the
    data directory (and the control socket) for a user who may not read the secret files."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except PermissionError:
        group = group_of(path)
        raise ConfigDenied(t("config_denied", path=path, group=group), USAGE) from None
    except OSError as exc:
        fail(t("cannot_read", path=path, reason=exc.strerror or str(exc)), USAGE)
    except tomllib.TOMLDecodeError as exc:
        fail(t("edit_not_toml", path=path, reason=exc), USAGE)


class ConfigDenied(Fail):
    """The config exists but this user may not read it (not in the service's group)."""


def group_of(path: str) -> str:
    """The group that may read ``path`` (or its folder): whom to join; "gatewayd" if unknown."""
    import grp

    for where in (path, os.path.dirname(os.path.abspath(path))):
        try:
            gid = os.stat(where).st_gid
            if gid:
                return grp.getgrgid(gid).gr_name
        except (OSError, KeyError):
            continue
    return "gatewayd"


def data_dir_of(path: str) -> str:
    """The data directory a config names (relative to the config's folder), absolute."""
    from gatewayd.config import resolve_path

    gateway = raw_config(path).get("gateway", {})
    value = gateway.get("data_dir") if isinstance(gateway, dict) else None
    return resolve_path(value if isinstance(value, str) and value else DEFAULT_DATA_DIR, path)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def parse_ids(text: str, lo: int = 1, hi: int = 247) -> list[int]:
    """``1-32`` or ``1,3,5-8`` as a sorted list of unit ids; Fail (exit 2) when malformed."""
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            a, b = int(first), int(last or first)
        except ValueError:
            a = b = -1
        if not lo <= a <= b <= hi:
            fail(t("bad_ids", text=text, lo=lo, hi=hi), USAGE)
        out.update(range(a, b + 1))
    return sorted(out)
