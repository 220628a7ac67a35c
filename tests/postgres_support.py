"""A real, throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries in a temp dir.

One server per test process, started on first use on a free loopback port with trust
authentication, and stopped when the process exits; every caller gets a database of its own
(`fresh_database_url`), so tests never see each other's rows. PostgreSQL refuses to run as root,
so under root the cluster belongs to the unprivileged `postgres` user (created by the Debian
package) or `nobody`. Without the binaries a test skips with a message naming the package,
unless `REQUIRE_POSTGRES=1` (set by `.ci/run`), where it fails instead.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest

__all__ = ("REQUIRE_POSTGRES_ENV", "PostgresServer", "fresh_database_url", "postgres_server")

REQUIRE_POSTGRES_ENV = "REQUIRE_POSTGRES"
_INSTALL_HINT = "install Debian's `postgresql` package (apt-get install postgresql) to run the PostgreSQL tests"


def _bin_dir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account the cluster runs as when the tests run as root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` user exists")


class PostgresServer:
    """One running cluster; `admin_url` reaches its `postgres` database as the superuser `agent`."""

    def __init__(self, bin_dir: Path) -> None:
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="perf-agent-pg-"))
        self._user = _unprivileged_user()
        data = self.workdir / "data"
        if self._user is not None:
            os.chown(self.workdir, self._user.pw_uid, self._user.pw_gid)
        self._run([str(bin_dir / "initdb"), "-D", str(data), "-U", "agent", "--auth=trust", "-E", "UTF8", "--no-sync"])
        self.log = self.workdir / "postgres.log"
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.workdir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._demote,
                start_new_session=True,
            )
        self.admin_url = f"postgresql://agent@127.0.0.1:{self.port}/postgres"
        self._wait_ready()

    def _demote(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, preexec_fn=self._demote, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr.decode(errors='replace')[-2000:]}")

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited early: {self.log.read_text(errors='replace')[-2000:]}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections within {timeout_s:g} s")

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://agent@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


_server: PostgresServer | None = None


def postgres_server() -> PostgresServer:
    """The process's server, started on first use; skips (or fails under REQUIRE_POSTGRES=1) without binaries."""
    global _server
    if _server is None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
                pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but PostgreSQL is not installed: {_INSTALL_HINT}")
            pytest.skip(f"PostgreSQL is not installed: {_INSTALL_HINT}")
        _server = PostgresServer(bin_dir)
        atexit.register(_server.stop)
    return _server


def fresh_database_url() -> str:
    """A new, empty database on the shared server (one per caller)."""
    return postgres_server().create_database()
