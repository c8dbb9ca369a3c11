"""A throwaway PostgreSQL server for tests, started from the ``postgres`` binaries.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is created
and started as the ``postgres`` user (``runuser``). Tests that need it skip, with the
reason, where ``initdb`` is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_unavailable_reason() -> str | None:
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        return "PostgreSQL's initdb/pg_ctl are not on PATH"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser to start PostgreSQL as the postgres user"
    return None


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Yield a ``postgresql://`` URL of a fresh, empty cluster on a free loopback port."""
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="dashtam-pg-"))
    data, log = base / "data", base / "server.log"
    prefix: list[str] = []
    if as_root:
        shutil.chown(base, user="postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    run(
        "pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
    )
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                import psycopg2

                psycopg2.connect(url).close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        subprocess.run([*prefix, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)
