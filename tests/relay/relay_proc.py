"""The relay as deployed: `python -m gatewayd_relay serve` in a subprocess (one or several
against one database and one broker), and its data set up through the relay's own code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from gatewayd_relay.db import Database
from gatewayd_relay.keystore import KeyStore, create_master, load_master
from gatewayd_relay.provisioning import create_account, create_house

from tests.harness import REPO, free_port, wait_until

PASSWORD = "correct-horse-9"
VILLAGE = "柳墅村"


class RelayProcess:
    def __init__(
        self,
        workdir: Path,
        database: str,
        broker_port: int,
        *,
        name: str = "relay",
        escalate_after: float = 3.0,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.database = database
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.notify_file = workdir / "notify.jsonl"
        self.args = [
            sys.executable,
            "-m",
            "gatewayd_relay",
            "serve",
            "--database",
            database,
            "--master-key",
            str(workdir / "master.key"),
            "--port",
            str(self.port),
            "--broker",
            f"mqtt://127.0.0.1:{broker_port}",
            "--notifier",
            f"file:{self.notify_file}",
            "--escalate-after",
            str(escalate_after),
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if "--tls-cert" in self.args else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> RelayProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=log, cwd=REPO, env=dict(os.environ)
            )
        wait_until(
            lambda: self.proc is None or self.proc.poll() is not None or self.ready(),
            20,
            "the relay to start",
        )
        assert self.proc.poll() is None, self.output()[-3000:]
        return self

    def ready(self) -> bool:
        """Serving (the port accepts connections) and following the broker."""
        if "connected to the broker" not in self.output():
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class RelayData:
    """Accounts and houses written with the relay's own provisioning code (what the
    `gatewayd-relay` admin commands do)."""

    def __init__(self, workdir: Path, database: str) -> None:
        key = workdir / "master.key"
        if not key.exists():
            create_master(str(key))
        self.keys = KeyStore(load_master(str(key)))
        self.db = Database(database)
        self.db.migrate()

    def village(self) -> None:
        with self.db.session() as s:
            create_account(s, "test", "admin", PASSWORD, "admin", "Township admin")
            create_account(s, "test", "wang", PASSWORD, "landlord", "王房东", phone="13800000001")
            create_account(s, "test", "li", PASSWORD, "grid", "李网格员", VILLAGE, "13800000002")
            create_account(
                s,
                "test",
                "zhang",
                PASSWORD,
                "grid",
                "张村长",
                VILLAGE,
                "13800000003",
                escalation_rank=1,
            )

    def house(self, gateway_id: str, landlord: str = "wang") -> tuple[int, str]:
        with self.db.session() as s:
            house, code = create_house(s, "test", gateway_id, "柳墅村 17号", VILLAGE, landlord)
            return house.id, code

    def close(self) -> None:
        self.db.close()


class Api:
    """A township app's view: the JSON API with a bearer session (no cookie, no CSRF)."""

    def __init__(self, base: str, username: str, password: str = PASSWORD, **client: Any) -> None:
        self.client = httpx.Client(base_url=base, timeout=15, **client)
        r = self.client.post(
            "/api/login", json={"username": username, "password": password, "bearer": True}
        )
        assert r.status_code == 200, r.text
        self.client.headers["Authorization"] = f"Bearer {r.json()['token']}"

    def get(self, path: str) -> Any:
        r = self.client.get(path)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: Any = None, expect: int = 200) -> Any:
        r = self.client.post(path, json=body if body is not None else {})
        assert r.status_code == expect, r.text
        return r.json()

    def close(self) -> None:
        self.client.close()
