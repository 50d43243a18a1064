"""The offline half of `gatewayd check`: the files the daemon reads and the directory it
writes, as the service user will meet them, and what the drivers in use need of the host.

Nothing here changes anything: a directory's creatability is tried with a temporary directory
removed at once. The service user (``--user``, "gatewayd") is who must own the secrets and the
data; before install-service made it, whoever runs the check stands in for it.
"""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gatewayd.cli.i18n import t

if TYPE_CHECKING:
    from gatewayd.cli.check import Checklist
    from gatewayd.config import Config

#: Files under the data directory looked at for a foreign owner (a card holds a few hundred).
OWNER_SCAN_LIMIT = 5000


def secrets_of(cfg: Config) -> list[str]:
    """Every secret file the config names (mode 0600 was enforced when it was loaded)."""
    from gatewayd.secrets import Secret

    found = [cfg.mqtt.password, cfg.command_key, cfg.metrics_password]
    for table in [b.settings for b in cfg.buses] + [d.settings for d in cfg.devices]:
        found += [v for v in table.values() if isinstance(v, Secret)]
    return sorted({s.path for s in found if isinstance(s, Secret)})


def private_keys_of(cfg: Config) -> list[str]:
    """TLS private keys: read by the TLS library, not as secrets, so their mode is checked here."""
    return sorted({p for p in (cfg.mqtt.key_file, cfg.metrics_key_file) if p})


def certificates_of(cfg: Config) -> list[str]:
    return sorted({p for p in (cfg.mqtt.ca_file, cfg.mqtt.cert_file, cfg.metrics_cert_file) if p})


def check_files(out: Checklist, cfg: Config, service: pwd.struct_passwd | None) -> None:
    bad = 0
    for path in private_keys_of(cfg):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError as exc:
            bad += 1
            out.add("secrets", False, t("file_unreadable", path=path, reason=exc.strerror))
            continue
        if mode & 0o077:
            bad += 1
            out.add("secrets", False, t("key_loose", path=path, mode=f"{mode:04o}"))
    daemon = service if service is not None and service.pw_uid != 0 else None
    owned = secrets_of(cfg) + private_keys_of(cfg)
    for path in owned if daemon is not None else []:
        owner = _owner(path)
        if daemon is not None and owner is not None and owner != daemon.pw_uid:
            bad += 1
            out.add(
                "secrets",
                False,
                t("secret_owner", path=path, owner=_name(owner), user=daemon.pw_name),
            )
    for path in certificates_of(cfg):
        if not os.path.isfile(path):
            bad += 1
            out.add("secrets", False, t("file_unreadable", path=path, reason="no such file"))
        elif daemon is not None and not _readable_by(path, daemon):
            bad += 1
            out.add("secrets", False, t("cert_unreadable", path=path, user=daemon.pw_name))
    if not bad:
        count = len(secrets_of(cfg)) + len(private_keys_of(cfg))
        out.add("secrets", True, t("secrets_ok", count=count))


def check_data_dir(out: Checklist, path: str, service: pwd.struct_passwd | None, user: str) -> None:
    daemon = service if service is not None and service.pw_uid != 0 else None
    if not os.path.isdir(path):
        problem = _cannot_create(path)
        if problem is not None:
            out.add("data_dir", False, t("data_dir_cannot", path=path, reason=problem))
        elif daemon is not None:  # the unit cannot start without it (ReadWritePaths=)
            out.add("data_dir", False, t("data_dir_missing", path=path, user=daemon.pw_name))
        else:
            out.add("data_dir", True, t("data_dir_later", path=path))
        return
    st = os.stat(path)
    if daemon is not None:
        writable = st.st_uid == daemon.pw_uid and bool(st.st_mode & 0o200)
    else:
        writable = os.access(path, os.W_OK | os.X_OK)
    if not writable:
        out.add(
            "data_dir", False, t("data_dir_ro", path=path, user=daemon.pw_name if daemon else user)
        )
        return
    foreign = _foreign(Path(path), daemon.pw_uid) if daemon is not None else []
    if daemon is not None and foreign:
        out.add(
            "data_dir",
            False,
            t(
                "data_dir_foreign",
                path=path,
                user=daemon.pw_name,
                count=len(foreign),
                example=foreign[0],
            ),
        )
        return
    out.add("data_dir", True, t("data_dir_ok", path=path))


def check_drivers(out: Checklist, cfg: Config) -> None:
    """What each driver in use needs of the host (``Driver.check_host``: Bluetooth's D-Bus
    library running compiled), once per driver."""
    from gatewayd import plugins

    for driver in dict.fromkeys(b.driver for b in cfg.buses):
        for name, passed, text in plugins.load_driver(driver).check_host():
            out.add(name, passed, text)


def check_fire(out: Checklist, cfg: Config) -> None:
    """A warning (not a failure): escape doors released at the first alarm while a device the
    gateway cannot supervise is configured (a legacy detector, whose fixed radio code anyone
    nearby can record and replay to open the doors)."""
    from gatewayd import plugins

    if cfg.rules.get("fire", {}).get("door_release") != "any_alarm":
        return
    families = plugins.families()
    legacy = [
        d.id for d in cfg.devices if d.kind in families and not families[d.kind].supervised(d)
    ]
    if legacy:
        out.add("fire_door_release", None, t("fire_any_alarm_legacy", devices=", ".join(legacy)))


def check_uplink(out: Checklist, cfg: Config) -> None:
    """A note: what the site will send the platform a month, estimated from its devices and
    settings (``gatewayd.uplink.volume``): what an installer on a paid 4G card wants to know."""
    from gatewayd import plugins
    from gatewayd.uplink.volume import estimate

    est = estimate(cfg, plugins.families())
    counted = sum(est.counted.values())
    out.add("uplink_volume", None, t("uplink_estimate", mb=f"{est.mb_month:.1f}",
            messages=f"{est.messages_day:.0f}", devices=counted, report=cfg.uplink.report))  # fmt: skip
    if est.unknown:
        out.add("uplink_volume", None, t("uplink_unknown", devices=", ".join(est.unknown)))


def _cannot_create(path: str) -> str | None:
    """Why ``path`` could not be made (by whoever runs this), or None when it could."""
    probe = os.path.abspath(path)
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return t("not_a_directory", path=probe)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gatewayd-check-", dir=probe))
    except OSError as exc:
        return f"{probe}: {exc.strerror}"
    return None


def _foreign(root: Path, uid: int) -> list[str]:
    """Paths under ``root`` the service user does not own (left by `sudo gatewayd run`)."""
    found: list[str] = []
    for n, item in enumerate(root.rglob("*")):
        if n >= OWNER_SCAN_LIMIT:
            break
        try:
            if item.lstat().st_uid != uid:
                found.append(str(item))
        except OSError:
            continue
    return found


def _readable_by(path: str, user: pwd.struct_passwd) -> bool:
    st = os.stat(path)
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & 0o400)
    groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    if st.st_gid in groups:
        return bool(st.st_mode & 0o040)
    return bool(st.st_mode & 0o004)


def _owner(path: str) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
