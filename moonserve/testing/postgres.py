"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb into a temporary folder, a
server on a free loopback port, one database. PostgreSQL refuses to run as root, so as root the
cluster runs as the `postgres` system user."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .server import free_port


def _as_cluster_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@dataclass
class PostgresCluster:
    base: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/moonserve"

    @property
    def options(self) -> str:
        return f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"

    def halt(self) -> None:
        """Stop the server at once, as a crash would (`pg_ctl -m immediate`); `resume` starts it again."""
        subprocess.run(_as_cluster_user(["pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "stop"]),
                       check=True, capture_output=True, timeout=60)

    def resume(self) -> None:
        subprocess.run(_as_cluster_user(["pg_ctl", "-D", str(self.base / "data"), "-o", self.options, "-l",
                                         str(self.base / "server.log"), "-w", "start"]),
                       check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        subprocess.run(_as_cluster_user(["pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


def available() -> bool:
    return all(shutil.which(b) for b in ("initdb", "pg_ctl", "postgres"))


def start_cluster() -> PostgresCluster:
    # its own folder directly under the temp dir: the cluster user must be able to reach it
    base = Path(tempfile.mkdtemp(prefix="moonserve-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    run = lambda cmd: subprocess.run(_as_cluster_user(cmd), check=True, capture_output=True, timeout=120)  # noqa: E731
    run(["initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"])
    cluster = PostgresCluster(base, free_port())
    run(["pg_ctl", "-D", str(data), "-o", cluster.options, "-l", str(base / "server.log"), "-w", "start"])
    port = cluster.port
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE moonserve")
    return cluster
