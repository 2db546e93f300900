"""Fixtures: real `moonserve serve` processes on loopback, each with its own MOONSERVE_HOME."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from moonserve.testing.server import Server, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    s = start_server(tmp_path_factory.mktemp("home"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(server) -> openai.OpenAI:
    return server.client()


def wait_idle(server: Server, timeout: float = 10, deployment: str = "smollm2") -> dict:
    """Poll /health until no sequence runs or waits; returns the deployment's stats."""
    deadline = time.monotonic() + timeout
    while True:
        stats = httpx.get(f"{server.url}/health").json()["deployments"][deployment]
        if stats["running"] == 0 and stats["waiting"] == 0:
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"engine still busy: {stats}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def scripted_kimi(tmp_path_factory) -> Server:
    """kimi/kimi-k2.6 served by the scripted model (scripted_model.py) in the Kimi K2 formats, with
    thinking: a deterministic partner for protocol and framework tests of reasoning and tool use."""
    from scripted_model import write_scripted_model

    d = tmp_path_factory.mktemp("scripted_kimi")
    gguf = write_scripted_model(d / "scripted.gguf")
    s = start_server(d / "home", config=(
        f'[deployments.scripted]\nmodel = "{gguf}"\ncontext_length = 2048\nmax_sequences = 2\n'
        'reasoning_parser = "think"\ntool_parser = "kimi_k2"\n'
        '[models."kimi/kimi-k2.6"]\ndeployment = "scripted"\n'))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL cluster, started by the tests themselves."""
    from moonserve.testing import postgres as testing_pg

    if not testing_pg.available():
        pytest.fail("PostgreSQL binaries (initdb, pg_ctl, postgres) are needed: apt-get install postgresql")
    cluster = testing_pg.start_cluster()
    yield cluster
    cluster.stop()
