"""A throwaway PostgreSQL cluster from Debian's packages: initdb in a temporary directory,
owned by the `postgres` user when run as root (as CI does), on a free loopback port; stopped
and removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from firmware_stubs.broker import free_port


def pg_bin(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return candidates[-1] if candidates else None


def available() -> bool:
    return pg_bin("initdb") is not None and pg_bin("pg_ctl") is not None


class Cluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="relay-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: hand the directory to its own user.
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._n = 0

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> Cluster:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        assert initdb and pg_ctl, "PostgreSQL is not installed (scripts/debian-deps.sh)"
        self._run(
            initdb, "-D", str(self.data), "-U", "relay", "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(
            pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "start"
        )
        return self

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        self._n += 1
        name = f"relay_{self._n}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with psycopg.connect(
                    f"postgresql://relay@127.0.0.1:{self.port}/postgres", autocommit=True
                ) as c:
                    c.execute(f"CREATE DATABASE {name}")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        return f"postgresql://relay@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        pg_ctl = pg_bin("pg_ctl")
        if pg_ctl and self.data.exists():
            subprocess.run(
                [*self._as, pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.dir, ignore_errors=True)
