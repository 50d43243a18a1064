"""`gatewayd register` enrolls a gateway with the relay end to end, over TLS with a private
CA, and key rotation is one command on each side: the relay's taps reach the lock with the
enrolled key, fail with the old one after `gatewayd keygen --force`, and work again after a
fresh code and `gatewayd register`."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hardening_support import Pki
from tests.harness import REPO
from tests.relay.world import GATEWAY, World, house_world, until


@pytest.fixture(scope="module")
def tls_house() -> Iterator[World]:
    tmp = Path(tempfile.mkdtemp(prefix="relay-tls-"))
    pki = Pki(tmp / "pki")
    cert, key = pki.issue("127.0.0.1")
    with house_world(f"sqlite:///{tmp}/relay.db", tls=(pki.ca, cert, key), enroll=False) as w:
        yield w


def gatewayd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatewayd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def register(
    w: World, code: str, *extra: str, relay: str | None = None
) -> subprocess.CompletedProcess[str]:
    return gatewayd(
        "register",
        "-c",
        str(w.site.config),
        "--relay",
        relay or w.relays[0].url,
        "--code",
        code,
        *extra,
    )


def relay_sees_online(w: World) -> bool | None:
    online = w.api("admin").get(f"/api/houses/{w.house_id}")["online"]
    assert online is None or isinstance(online, bool)
    return online


def restart_gateway(w: World) -> None:
    """Stop and start the daemon; return once the relay saw it go and come back, and the lock
    is connected again. (The probe's earlier `connected` state does not count: it is the
    retained one from before the restart, and a tap sent then is answered `offline`.)"""
    w.daemon.stop()
    until(lambda: relay_sees_online(w) is False, 10, "the relay to see the gateway go")
    started = time.monotonic()
    w.daemon.start()
    until(lambda: relay_sees_online(w) is True, 20, "the relay to see the gateway back")
    until(
        lambda: any(
            m.at > started and m.json().get("connected") is True
            for m in w.probe.on(f"{w.site.root}/state/door-main")
        ),
        20,
        "the lock connected again",
    )


def fingerprint(w: World) -> str:
    return str(w.api("admin").get("/api/houses")[0]["key_fingerprint"])


class Phone:
    """A tenant's phone speaking the JSON API with its HttpOnly cookie, as the page does."""

    def __init__(self, w: World, invite_url: str) -> None:
        self.client = httpx.Client(base_url=w.relays[0].url, verify=w.verify, timeout=20)
        token = invite_url.rsplit("/", 1)[1]
        r = self.client.post(f"/api/invites/{token}/accept")
        assert r.status_code == 200, r.text
        self.csrf = r.json()["csrf"]

    def open(self, door: int) -> dict[str, str]:
        r = self.client.post(f"/api/phone/doors/{door}/open", headers={"X-CSRF-Token": self.csrf})
        assert r.status_code == 200, r.text
        return dict(r.json())


def test_register_refuses_plain_http_to_another_host_and_untrusted_certificates(
    tls_house: World,
) -> None:
    w = tls_house
    plain = register(w, w.code, relay="http://relay.example.cn")
    assert plain.returncode == 2
    assert "https" in plain.stderr
    untrusted = register(w, w.code)  # the private CA is not the system's
    assert untrusted.returncode == 1
    assert "certificate not trusted" in untrusted.stderr
    wrong = register(w, "AAAAA-BBBBB", "--ca-file", w.ca)
    assert wrong.returncode == 1
    assert "refused" in wrong.stderr
    assert fingerprint(w) == ""  # the relay holds no key yet


def test_register_enrolls_then_taps_open_and_rotation_is_one_command_each_side(
    tls_house: World,
) -> None:
    w = tls_house
    ca = w.ca
    done = register(w, w.code, "--ca-file", ca)
    assert done.returncode == 0, done.stderr
    assert f"enrolled {GATEWAY}" in done.stdout
    first = fingerprint(w)
    assert first.startswith("sha256:") and first in done.stdout
    again = register(w, w.code, "--ca-file", ca)  # the code worked once
    assert again.returncode == 1

    _, invite = w.tenant("孙丽", "sun.li")
    phone = Phone(w, invite)
    try:
        rotate_and_check(w, phone, first)
    finally:
        phone.client.close()


def rotate_and_check(w: World, phone: Phone, first: str) -> None:
    ca = w.ca
    before = len(w.unlocks())
    assert phone.open(w.door_id)["code"] == "ok"
    assert len(w.unlocks()) == before + 1

    # Gateway side: a new key, and the daemon restarted with it.
    keygen = gatewayd("keygen", "--force", str(w.site.dir / "command.key"))
    assert keygen.returncode == 0, keygen.stderr
    restart_gateway(w)
    stale = phone.open(w.door_id)
    assert (stale["code"], stale["message"]) == ("bad_signature", "系统设置有误，请联系房东")
    # Relay side: a fresh code for the house, and the gateway registers again.
    code = w.api("admin").post(f"/api/houses/{w.house_id}/enrollment")["code"]
    rotated = register(w, code, "--ca-file", ca)
    assert rotated.returncode == 0, rotated.stderr
    assert "rotated the key" in rotated.stdout
    assert fingerprint(w) != first
    before = len(w.unlocks())
    assert phone.open(w.door_id)["code"] == "ok"
    until(lambda: len(w.unlocks()) == before + 1, 5, "the lock to accept")
    trail = w.api("admin").get(f"/api/houses/{w.house_id}/audit")
    assert [e["action"] for e in trail if e["action"].startswith("key.")] == [
        "key.rotate",
        "key.enroll",
    ]
