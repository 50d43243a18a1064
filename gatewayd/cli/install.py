"""`gatewayd install-service`: put the systemd unit in place with its user, groups and
directories, or print exactly those commands (``--dry-run``) for a person or a provisioning
script to run.

The steps are a plain list of argument vectors, so what ``--dry-run`` prints is what a real
run executes. The unit's ExecStart is pointed at this installation's `gatewayd` and the
config given; its ReadWritePaths at the config's data directory.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click

from gatewayd.cli.common import FAILED, USAGE, config_option, data_dir_of, fail, raw_config
from gatewayd.cli.i18n import t

UNIT_NAME = "gatewayd.service"
GROUPS = ("dialout", "bluetooth")


def unit_candidates() -> list[Path]:
    """Where the unit file may be: a source checkout, a wheel's data (pip puts it under the
    venv's prefix), a distribution package."""
    here = Path(__file__).resolve().parents[2]
    return [
        here / "systemd" / UNIT_NAME,
        Path(sys.prefix) / "share" / "gatewayd" / UNIT_NAME,
        Path("/usr/share/gatewayd") / UNIT_NAME,
    ]


def find_unit() -> Path | None:
    return next((c for c in unit_candidates() if c.is_file()), None)


def doc_candidates() -> list[Path]:
    """Where the installer's guide is, in the same places as the unit."""
    here = Path(__file__).resolve().parents[2]
    return [
        here / "docs" / "installer.md",
        Path(sys.prefix) / "share" / "doc" / "gatewayd" / "installer.md",
        Path("/usr/share/doc/gatewayd/installer.md"),
    ]


def find_doc() -> Path | None:
    return next((c for c in doc_candidates() if c.is_file()), None)


def render_unit(
    text: str,
    gatewayd_bin: str,
    config_path: str,
    data_dir: str,
    user: str,
    groups: list[str],
) -> str:
    """The shipped unit with this installation's paths, user and the supplementary groups
    that exist here (systemd refuses to start a unit naming a group that does not)."""
    exec_start = f"ExecStart={gatewayd_bin} run -c {config_path}"
    text = re.sub(r"^ExecStart=.*$", exec_start, text, flags=re.M)
    text = re.sub(r"^ReadWritePaths=.*$", f"ReadWritePaths={data_dir}", text, flags=re.M)
    text = re.sub(r"^User=.*$", f"User={user}", text, flags=re.M)
    doc = find_doc()
    if doc is not None:
        text = re.sub(r"^Documentation=.*$", f"Documentation={doc.as_uri()}", text, flags=re.M)
    supplementary = f"SupplementaryGroups={' '.join(groups)}\n" if groups else ""
    text = re.sub(r"^SupplementaryGroups=.*\n", supplementary, text, flags=re.M)
    return re.sub(r"^Group=.*$", f"Group={user}", text, flags=re.M)


def _exists(what: str, name: str) -> bool:
    try:
        (pwd.getpwnam if what == "user" else grp.getgrnam)(name)
    except KeyError:
        return False
    return True


def plan(
    config_path: str, unit_dir: str, user: str, start: bool
) -> tuple[list[list[str]], dict[str, str]]:
    """The commands, and the files to write (path -> content) before they run."""
    config_path = os.path.abspath(config_path)
    raw = raw_config(config_path)
    if not raw:
        fail(t("install_no_config", path=config_path), USAGE)
    data_dir = data_dir_of(config_path)
    source = find_unit()
    if source is None:
        fail(t("install_no_unit"), FAILED)
    binary = shutil.which("gatewayd") or str(Path(sys.executable).with_name("gatewayd"))
    unit_path = os.path.join(unit_dir, UNIT_NAME)
    groups = [g for g in GROUPS if _exists("group", g)]
    unit = render_unit(source.read_text(), binary, config_path, data_dir, user, groups)
    cmds: list[list[str]] = []
    if not _exists("user", user):
        cmds.append(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                data_dir,
                "--shell",
                "/usr/sbin/nologin",
            ]
            + (["--groups", ",".join(groups)] if groups else [])
            + [user]
        )
    elif groups:
        cmds.append(["usermod", "--append", "--groups", ",".join(groups), user])
    conf_dir = os.path.dirname(config_path)
    cmds += [
        ["install", "-d", "-m", "0750", "-o", user, "-g", user, data_dir],
        # The whole tree: files an earlier `sudo gatewayd run` left there belong to root, and
        # the service could not open them (the outbox: "Permission denied", restarted forever).
        ["chown", "-R", f"{user}:{user}", data_dir],
        ["chown", f"root:{user}", conf_dir, config_path],
        ["chmod", "0750", conf_dir],
        ["chmod", "0640", config_path],
    ]
    from gatewayd.config import resolve_path

    secrets = [resolve_path(p, config_path) for p in _secret_paths(raw)]
    if secrets:
        cmds.append(["chown", f"{user}:{user}", *secrets])
    cmds.append(["systemctl", "daemon-reload"])
    if start:
        cmds.append(["systemctl", "enable", "--now", UNIT_NAME])
    return cmds, {unit_path: unit}


def _secret_paths(raw: dict[str, object]) -> list[str]:
    """Every secret and private key the daemon reads (mode 0600): it must own them."""
    found: list[str] = []
    mqtt = raw.get("mqtt", {})
    security = raw.get("security", {})
    metrics = raw.get("metrics", {})
    for table, key in (
        (mqtt, "password_file"),
        (mqtt, "key_file"),
        (security, "command_key_file"),
        (metrics, "password_file"),
        (metrics, "key_file"),
    ):
        if isinstance(table, dict) and isinstance(table.get(key), str):
            found.append(table[key])
    devices = raw.get("devices", [])
    for dev in devices if isinstance(devices, list) else []:
        if isinstance(dev, dict) and isinstance(dev.get("key_file"), str):
            found.append(dev["key_file"])
    return sorted(set(found))


@click.command("install-service")
@config_option
@click.option("--unit-dir", default="/etc/systemd/system", show_default=True)
@click.option(
    "--user", default="gatewayd", show_default=True, help="The service user (created if missing)."
)
@click.option("--no-start", is_flag=True, help="Install only; do not enable and start it.")
@click.option(
    "--dry-run", is_flag=True, help="Print the commands and the unit instead of running them."
)
def install_service(
    config_path: str, unit_dir: str, user: str, no_start: bool, dry_run: bool
) -> None:
    """Install the systemd unit, the gatewayd user (groups dialout, bluetooth), the data
    directory and the ownership of config and secrets; then enable and start it.

    \b
    Examples:
      sudo gatewayd install-service
      gatewayd install-service --dry-run      # just print what it would do
    """
    cmds, files = plan(config_path, unit_dir, user, not no_start)
    if dry_run:
        for path, content in files.items():
            click.echo(f"# write {path}:")
            click.echo("cat > " + shlex.quote(path) + " <<'EOF'\n" + content.rstrip("\n") + "\nEOF")
        for cmd in cmds:
            click.echo(shlex.join(cmd))
        return
    if os.geteuid() != 0:
        fail(t("install_sudo"), USAGE)
    for path, content in files.items():
        Path(path).write_text(content)
        click.echo(f"✓ {t('init_wrote', path=path)}")
    for cmd in cmds:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip().splitlines()
            fail(f"{shlex.join(cmd)}: {why[-1] if why else f'exit {result.returncode}'}")
        click.echo(f"✓ {shlex.join(cmd)}")
    click.echo(f"✓ {t('install_done')}")
