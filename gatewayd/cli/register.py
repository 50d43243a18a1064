"""`gatewayd register`: hand this gateway's command key to the landlord's relay, once.

The relay signs phone unlocks with this key, so it must have it; this is the one time the key
leaves the gateway. It goes over HTTPS only (the relay's certificate verified against the
system's CAs or ``--ca-file``), authorised by a one-time enrollment code the township admin
got when creating the house; plain http is refused except to this machine (tests, demo).
Rotating the key: ``gatewayd keygen --force`` on the gateway, restart it, a new code from
the relay, and this command again.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import click

from gatewayd.cli.common import FAILED, USAGE, config_option, fail, load_config, ok


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def enroll_url(relay: str) -> str:
    parts = urlsplit(relay)
    host = parts.hostname or ""
    if parts.scheme == "http" and not _loopback(host):
        fail(
            f"--relay {relay}: the key only travels over https:// (http is for this machine only)",
            USAGE,
        )
    if parts.scheme not in ("https", "http") or not host:
        fail(f"--relay {relay}: expected https://host[:port]", USAGE)
    return relay.rstrip("/") + "/api/enroll"


@click.command()
@config_option
@click.option("--relay", "relay_url", required=True, help="The relay's address, https://…")
@click.option("--code", required=True, help="The one-time enrollment code for this house.")
@click.option(
    "--ca-file",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="CA certificate(s) for a relay with a private CA.",
)
@click.option("--timeout", default=15.0, show_default=True)
def register(
    config_path: str, relay_url: str, code: str, ca_file: str | None, timeout: float
) -> None:
    """Enroll this gateway with the relay: send its id and command key once, over TLS."""
    from gatewayd.commands.signing import fingerprint

    url = enroll_url(relay_url)
    cfg = load_config(config_path)
    if cfg.command_key is None:
        fail(
            f"{config_path}: [security] command_key_file is not set (gatewayd keygen writes one)",
            USAGE,
        )
    key = cfg.command_key.value
    body = json.dumps({"code": code, "gateway_id": cfg.gateway_id, "key": key.hex()}).encode()
    req = urllib.request.Request(  # noqa: S310 - enroll_url allows https, or http to loopback
        url, body, {"Content-Type": "application/json"}, method="POST"
    )
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310 - scheme checked
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", "")
        except ValueError:
            detail = ""
        fail(f"the relay refused the enrollment ({exc.code}): {detail or exc.reason}", FAILED)
    except ssl.SSLError as exc:
        fail(
            f"{relay_url}: certificate not trusted ({exc.reason}); use --ca-file for a private CA",
            FAILED,
        )
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLError):
            fail(
                f"{relay_url}: certificate not trusted ({reason.reason}); use --ca-file for a private CA",
                FAILED,
            )
        fail(f"{relay_url}: cannot reach the relay ({reason})", FAILED)
    mine = fingerprint(key)
    if answer.get("fingerprint") != mine:
        fail(
            f"the relay stored a key with fingerprint {answer.get('fingerprint')}, not {mine}",
            FAILED,
        )
    what = "rotated the key of" if answer.get("rotated") else "enrolled"
    ok(
        f"{what} {cfg.gateway_id} as {answer.get('house', '?')} at {relay_url}; key fingerprint {mine}"
    )
