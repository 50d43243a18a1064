"""A whole house and its relay, for the relay's end-to-end tests: mosquitto, the real
gatewayd daemon with an emulated DL-B2 entrance lock (bleak's BlueZ backend on the fake BlueZ)
and an emulated SRB-433 smoke receiver, and one or two relay processes against SQLite or
PostgreSQL. Browsers are Debian's chromium, headless, driven by Selenium."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from firmware_stubs.harness import BleWorld, world
from tests.ble_fixtures import ADDRESS, KEY, key_file
from tests.harness import (
    Broker,
    Daemon,
    Probe,
    ReceiverThread,
    Site,
    make_site,
    smoke_config,
    wait_until,
)
from tests.relay.relay_proc import PASSWORD, Api, RelayData, RelayProcess

DOOR = "door-main"
DETECTORS = {"smoke-301": "1A2B3C4D"}
GATEWAY = "xz-liushu-017"
UNLOCK = 1  # the DL-B2's UNLOCK op code (firmware_stubs/dl_b2.py)
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@dataclass
class World:
    tmp: Path
    broker: Broker
    probe: Probe
    ble: BleWorld
    lock: Any
    receiver: ReceiverThread
    site: Site
    daemon: Daemon
    data: RelayData
    relays: list[RelayProcess]
    house_id: int
    door_id: int
    code: str = ""
    apis: dict[str, Api] = field(default_factory=dict)
    verify: ssl.SSLContext | bool = True
    ca: str = ""

    def api(self, username: str, relay: int = 0) -> Api:
        key = f"{username}@{relay}"
        if key not in self.apis:
            self.apis[key] = Api(self.relays[relay].url, username, verify=self.verify)
        return self.apis[key]

    def close_apis(self) -> None:
        for a in self.apis.values():
            a.close()

    def unlocks(self) -> list[Any]:
        """Unlock commands the lock accepted (it checked the MAC itself)."""
        return [c for c in self.ble.emu.call(self.lock.accepted) if c.op == UNLOCK]

    def commands_from(self, user: str) -> list[dict[str, Any]]:
        """Commands published on the gateway's cmd topic as ``user``."""
        out = []
        for m in self.probe.on(f"{self.site.root}/cmd"):
            body = m.json()
            if body.get("user") == user:
                out.append(body)
        return out

    def notifications(self) -> list[dict[str, Any]]:
        path = self.relays[0].notify_file
        lines = path.read_text().splitlines() if path.exists() else []
        for r in self.relays[1:]:
            if r.notify_file.exists() and r.notify_file != path:
                lines += r.notify_file.read_text().splitlines()
        return [json.loads(line) for line in lines]

    def tenant(self, name: str, handle: str, **grant: Any) -> tuple[int, str]:
        """A tenant of the front door, added through the landlord's API: (person id, invite URL)."""
        out = self.api("wang").post(
            f"/api/houses/{self.house_id}/tenants",
            {"name": name, "handle": handle, "grants": [{"door": self.door_id, **grant}]},
        )
        return out["person"]["id"], out["invite_url"]


def gateway_body(tmp: Path, receiver: ReceiverThread) -> str:
    door = (
        '[[buses]]\nname = "ble"\ndriver = "ble"\nkeepalive_seconds = 30\n\n'
        f'[[devices]]\nid = "{DOOR}"\nkind = "door_lock"\nbus = "ble"\naddress = "{ADDRESS}"\n'
        f'key_file = "{key_file(tmp, KEY)}"\nescape_route = false\n\n'
    )
    return door + smoke_config(receiver.rx.path, DETECTORS)


@contextlib.contextmanager
def house_world(
    database: str,
    processes: int = 1,
    escalate_after: float = 3.0,
    *,
    tls: tuple[Path, Path, Path] | None = None,
    enroll: bool = True,
) -> Iterator[World]:
    """``tls``: (CA, certificate, key) to serve HTTPS; ``enroll``: hand the relay the
    gateway's key through its API (else the test runs `gatewayd register` itself)."""
    tmp = Path(tempfile.mkdtemp(prefix="relay-world-"))
    stack = contextlib.ExitStack()
    try:
        ble = stack.enter_context(world())
        lock = ble.emu.add_lock(ADDRESS, KEY)
        receiver = ReceiverThread(tmp / "srb433", spacing=0.05)
        stack.callback(receiver.close)
        broker = Broker(tmp)
        broker.start()
        stack.callback(broker.stop)
        probe = Probe(broker.port)
        stack.callback(probe.close)
        site = make_site(tmp, broker.url, gateway_body(tmp, receiver), gateway_id=GATEWAY)
        data = RelayData(tmp, database)
        stack.callback(data.close)
        data.village()
        house_id, code = data.house(GATEWAY)
        relays = []
        for i in range(processes):
            extra = ("--tls-cert", str(tls[1]), "--tls-key", str(tls[2])) if tls else ()
            r = RelayProcess(
                tmp,
                database,
                broker.port,
                name=f"relay{i}",
                escalate_after=escalate_after,
                extra=extra,
            )
            stack.callback(r.stop)
            relays.append(r.start())
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(tls[0])) if tls else True
        )
        if enroll:
            enrolled = httpx.post(
                f"{relays[0].url}/api/enroll",
                json={"code": code, "gateway_id": GATEWAY, "key": site.key.hex()},
                verify=verify,
            )
            assert enrolled.status_code == 200, enrolled.text
        daemon = Daemon(site)
        w = World(
            tmp, broker, probe, ble, lock, receiver, site, daemon, data, relays, house_id, 0, code
        )
        w.verify = verify
        w.ca = str(tls[0]) if tls else ""
        stack.callback(w.close_apis)
        w.door_id = w.api("wang").post(
            f"/api/houses/{house_id}/doors", {"device": DOOR, "name": "正门"}
        )["id"]
        daemon.start()
        stack.callback(lambda: daemon.stop() if daemon.alive else None)
        probe.wait(f"{site.root}/state/{DOOR}", lambda s: s.get("connected") is True, timeout=20)
        yield w
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)


# -- browsers ------------------------------------------------------------------------------


def chromium(profile: Path) -> WebDriver:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=412,915",  # a phone's viewport
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.add_argument("--lang=zh-CN")
    opts.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    # Not on the fake BlueZ's private bus: it goes away with its house, the browser must not.
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER, env=env))
    driver.set_page_load_timeout(20)
    return driver


class Browsers:
    """One chromium per person (each its own cookie jar), started on first use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.drivers: dict[str, WebDriver] = {}

    def __call__(self, who: str) -> WebDriver:
        if who not in self.drivers:
            self.drivers[who] = chromium(self.tmp / f"profile-{who}")
        return self.drivers[who]

    def close(self) -> None:
        for d in self.drivers.values():
            with contextlib.suppress(Exception):
                d.quit()


def wait_for(
    driver: WebDriver, css: str, timeout: float = 10.0, text: str | None = None
) -> WebElement:
    """The first element matching ``css`` (containing ``text``, if given)."""

    def find(_d: WebDriver) -> WebElement | bool:
        for e in driver.find_elements(By.CSS_SELECTOR, css):
            try:
                if text is None or text in e.text:
                    return e
            except Exception:  # replaced by a live update while we looked
                continue
        return False

    return cast(WebElement, WebDriverWait(driver, timeout, poll_frequency=0.05).until(find))


def click(driver: WebDriver, css: str, timeout: float = 10.0) -> None:
    """Click the element matching ``css``, again if a live update replaced it meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            wait_for(driver, css, max(0.1, deadline - time.monotonic())).click()
            return
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise


def login(driver: WebDriver, base: str, username: str, password: str = PASSWORD) -> None:
    driver.get(f"{base}/login")
    wait_for(driver, "#login input[name=username]").send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "#login input[name=password]").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def open_staff_page(driver: WebDriver, base: str, username: str) -> None:
    login(driver, base, username)
    wait_for(driver, "section.house")
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "yes"
    )


def bind_phone(driver: WebDriver, invite_url: str, base: str | None = None) -> None:
    """Open an invite link on a phone and bind it (on relay ``base`` if given)."""
    if base is not None:
        invite_url = base + invite_url[invite_url.index("/i/") :]
    driver.get(invite_url)
    wait_for(driver, "#bind").click()
    wait_for(driver, "button.open")


def tap(driver: WebDriver, door_id: int, timeout: float = 15.0) -> tuple[str, str]:
    """Tap "open" on the phone page; (result code, the words shown)."""
    driver.execute_script("document.getElementById('result').dataset.code = ''")
    wait_for(driver, f"button.open[data-door='{door_id}']").click()
    WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: d.find_element(By.ID, "result").get_attribute("data-code")
    )
    result = driver.find_element(By.ID, "result")
    return str(result.get_attribute("data-code")), result.text


until = wait_until


@contextlib.contextmanager
def attacker_site(host: str, html: str) -> Iterator[str]:
    """Another origin serving one page (e.g. a form that posts to the relay)."""
    import http.server
    import threading

    from tests.harness import free_port

    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
