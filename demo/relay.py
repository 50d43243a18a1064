"""The relay in the demo: started beside the gateway (SQLite, in the demo's directory), with a
landlord, a grid worker, a tenant and a visitor pass; the gateway enrolled with its key; and a
tenant's tap made exactly as the phone page makes it (the JSON API with the phone's cookie).

`demo/__main__.py` calls ``start_relay`` once the gateway is online, ``relay_step`` after its
scenario, and ``RelayDemo.stop`` at the end. Without the relay installed (``pip install -e
./relay``) the demo simply runs without it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_stubs.lifetime import tied_to_parent

PASSWORD = "demo-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _post(
    url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    data = json.dumps(body if body is not None else {}).encode()
    req = urllib.request.Request(
        url, data, {"Content-Type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read()), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


@dataclass
class RelayDemo:
    proc: subprocess.Popen[bytes]
    url: str
    tenant_invite: str
    visitor_invite: str
    door_id: int

    def tap(self) -> dict[str, Any]:
        """Bind a phone with the tenant's invite (once) and tap "open", as the page does."""
        token = self.tenant_invite.rsplit("/", 1)[1]
        if not hasattr(self, "_cookie"):
            status, body, headers = _post(f"{self.url}/api/invites/{token}/accept")
            assert status == 200, body
            self._cookie = headers["Set-Cookie"].split(";")[0]
            self._csrf = body["csrf"]
        status, body, _h = _post(
            f"{self.url}/api/phone/doors/{self.door_id}/open",
            headers={"Cookie": self._cookie, "X-CSRF-Token": self._csrf},
        )
        return dict(body)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_relay(work: Path, broker_port: int, gateway_id: str, key: bytes) -> RelayDemo | None:
    if importlib.util.find_spec("gatewayd_relay") is None:
        print("(the relay is not installed: `pip install -e ./relay` to add the phone page)")
        return None
    from gatewayd_relay.db import Database
    from gatewayd_relay.keystore import create_master
    from gatewayd_relay.provisioning import create_account, create_house

    where = work / "relay"
    where.mkdir(exist_ok=True)
    database, master = f"sqlite:///{where}/relay.db", where / "master.key"
    create_master(str(master))
    db = Database(database)
    db.migrate()
    with db.session() as s:
        create_account(s, "demo", "wang", PASSWORD, "landlord", "王房东")
        create_account(s, "demo", "li", PASSWORD, "grid", "李网格员", "柳墅村")
        _house, code = create_house(s, "demo", gateway_id, "柳墅村 17号", "柳墅村", "wang")
    db.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "relay.log", "wb")  # noqa: SIM115 - the process keeps it
    print(f"relay log: {work / 'relay.log'}")
    proc = subprocess.Popen(
        tied_to_parent([sys.executable, "-m", "gatewayd_relay", "serve", "--database", database, "--master-key", str(master),
         "--port", str(port), "--broker", f"mqtt://127.0.0.1:{broker_port}", "--public-url", url,
         "--notifier", f"file:{where / 'notifications.jsonl'}"]),
        stdout=log, stderr=log, env=dict(os.environ),
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not _listening(port):
        if time.monotonic() > deadline or proc.poll() is not None:
            print("the relay did not start; see", work / "relay.log")
            proc.kill()
            return None
        time.sleep(0.05)
    try:
        return _populate(proc, url, code, gateway_id, key)
    except BaseException:
        proc.kill()  # never leave it behind the demo
        raise


def _populate(
    proc: subprocess.Popen[bytes], url: str, code: str, gateway_id: str, key: bytes
) -> RelayDemo:
    # The installer's step (`gatewayd register` does this over HTTPS on a real site).
    status, body, _h = _post(
        f"{url}/api/enroll", {"code": code, "gateway_id": gateway_id, "key": key.hex()}
    )
    assert status == 200, body
    status, body, _h = _post(
        f"{url}/api/login", {"username": "wang", "password": PASSWORD, "bearer": True}
    )
    auth = {"Authorization": f"Bearer {body['token']}"}
    house = 1
    _s, door, _h = _post(
        f"{url}/api/houses/{house}/doors", {"device": "door-main", "name": "正门"}, auth
    )
    _s, tenant, _h = _post(
        f"{url}/api/houses/{house}/tenants",
        {"name": "李伟", "handle": "li.wei", "grants": [{"door": door["id"]}]},
        auth,
    )
    _s, visitor, _h = _post(
        f"{url}/api/houses/{house}/passes",
        {"name": "快递员", "door": door["id"], "hours_valid": 4, "max_opens": 3},
        auth,
    )
    demo = RelayDemo(proc, url, tenant["invite_url"], visitor["invite_url"], door["id"])
    print(
        f"relay (phone page, landlord's page) on {url}\n"
        f"  landlord:  {url}/login  (wang / {PASSWORD}); grid worker: li / {PASSWORD}\n"
        f"  tenant's phone page (open on a phone or a browser): {demo.tenant_invite}\n"
        f"  visitor pass (4 h, 3 opens): {demo.visitor_invite}"
    )
    return demo


async def relay_step(view: Any, relay: RelayDemo | None, pace: float) -> None:
    """The scenario's tap on the relay's phone page."""
    if relay is None:
        return
    await asyncio.sleep(pace)
    view.say(
        "The tenant 李伟 taps 'open' on the relay's phone page: the relay checks his grant and signs as li.wei"
    )
    result = await asyncio.to_thread(relay.tap)
    view.say(f"phone page shows: {result.get('message')} ({result.get('code')})")
    await asyncio.to_thread(
        view.wait_for,
        "events/door-main",
        lambda e: e.get("type") == "door.unlocked" and e.get("data", {}).get("user") == "li.wei",
        15,
    )
