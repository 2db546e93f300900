"""When the accounts database fails: no 500s, no unbilled work, a /health that tells the truth.

- Two nodes on one PostgreSQL under steady load (the openai SDK, short calls, some streamed), the
  database stopped at once (`pg_ctl -m immediate`) for 20 seconds and started again: known keys keep
  working, records wait in each node's journal and reach the ledger once it is back, exactly once;
  a node restarted with records in its journal delivers them.
- A full disk, for SQLite and for the journal: calls are refused with a 503 before anything is
  computed, and served again once there is room.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import create_engine, select

from moonserve.testing import postgres as testing_pg
from moonserve.accounts.schema import usage_records
from moonserve.testing.server import start_server

MODEL = "kimi/kimi-k2.6"
OUTAGE_SECONDS = 20


@pytest.fixture(scope="module")
def cluster():
    if not testing_pg.available():
        pytest.fail("PostgreSQL binaries (initdb, pg_ctl, postgres) are needed: apt-get install postgresql")
    c = testing_pg.start_cluster()
    yield c
    c.stop()


def ledger_ids(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(select(usage_records.c.request_id))]
    finally:
        engine.dispose()


def health(node) -> dict:
    r = httpx.get(f"{node.url}/health", timeout=5)
    return {**r.json(), "http": r.status_code}


class Load(threading.Thread):
    """Short calls against the nodes in turn until stopped; every outcome kept."""

    def __init__(self, nodes, key: str, k: int):
        super().__init__(daemon=True)
        self.nodes, self.key, self.k = nodes, key, k
        self.done = threading.Event()
        self.outcomes: list[tuple[int, str | None, str | None]] = []  # (status, request id, Retry-After)

    def run(self):
        n = 0
        while not self.done.is_set():
            node = self.nodes[n % len(self.nodes)]
            client = openai.OpenAI(base_url=node.base_url, api_key=self.key, max_retries=0, timeout=60)
            kw = dict(model=MODEL, messages=[{"role": "user", "content": f"Say a word. {self.k}-{n}"}], max_tokens=4,
                      extra_body={"enable_thinking": False})
            try:
                if n % 3 == 0:  # some streamed
                    rid = None
                    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                                **kw):
                        rid = chunk.id.removeprefix("chatcmpl-")
                    self.outcomes.append((200, rid, None))
                else:
                    r = client.chat.completions.with_raw_response.create(**kw)
                    self.outcomes.append((200, r.parse().id.removeprefix("chatcmpl-"), None))
            except openai.APIStatusError as exc:
                self.outcomes.append((exc.status_code, None, exc.response.headers.get("retry-after")))
            except openai.APIError as exc:  # an error event in a stream
                self.outcomes.append((-1, None, str(exc)))
            n += 1
            time.sleep(0.05)


def test_a_postgres_outage_under_load_on_two_nodes(cluster, tmp_path):
    env = {"MOONSERVE_DATABASE_URL": cluster.url}
    a = start_server(tmp_path / "a", extra_env=env)
    b = start_server(tmp_path / "b", extra_env=env)
    nodes = [a, b]
    try:
        key = a.key
        loads = [Load(nodes, key, k) for k in range(3)]
        for load in loads:
            load.start()
        time.sleep(5)  # each node learns the key and the activation
        cluster.halt()
        halted = time.monotonic()
        seen_degraded = set()
        while time.monotonic() - halted < OUTAGE_SECONDS:
            for i, node in enumerate(nodes):
                h = health(node)
                if h["status"] == "degraded" and not h["database"]["up"]:
                    seen_degraded.add(i)
            time.sleep(1)
        pending = sum(health(n)["ledger"]["journal_pending"] for n in nodes)
        cluster.resume()
        time.sleep(5)
        for load in loads:
            load.done.set()
            load.join(60)
        deadline = time.monotonic() + 30
        while any(health(n)["ledger"]["journal_pending"] for n in nodes):
            assert time.monotonic() < deadline, [health(n) for n in nodes]
            time.sleep(0.5)
        assert all(health(n)["status"] == "ok" for n in nodes)

        outcomes = [o for load in loads for o in load.outcomes]
        statuses = [s for s, _, _ in outcomes]
        print(f"\n{len(outcomes)} calls: {statuses.count(200)} ok, {statuses.count(503)} 503, "
              f"{len(outcomes) - statuses.count(200) - statuses.count(503)} other; {pending} records journaled "
              "during the outage")
        assert seen_degraded == {0, 1}, "/health did not report the outage on every node"
        assert 500 not in statuses and -1 not in statuses, [o for o in outcomes if o[0] not in (200, 503)]
        assert set(statuses) <= {200, 503}
        assert all(ra for s, _, ra in outcomes if s == 503)  # a 503 says when to come back
        assert pending > 0, "no call was served during the outage"
        ids = ledger_ids(cluster.url)
        assert len(ids) == len(set(ids))
        served = [rid for s, rid, _ in outcomes if s == 200]
        assert served and set(served) <= set(ids), "a call that computed a reply has no ledger row"

        # records journaled by a node that is restarted before the database returns
        cluster.halt()
        client = openai.OpenAI(base_url=b.base_url, api_key=key, max_retries=0)
        rids = [client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Hi {i}"}],
                                               max_tokens=3, extra_body={"enable_thinking": False}).id
                for i in range(3)]
        assert health(b)["ledger"]["journal_pending"] == 3
        b.stop()
        cluster.resume()
        b = nodes[1] = start_server(tmp_path / "b", extra_env=env)
        deadline = time.monotonic() + 30
        while health(b)["ledger"]["journal_pending"]:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        ids = ledger_ids(cluster.url)
        assert {r.removeprefix("chatcmpl-") for r in rids} <= set(ids) and len(ids) == len(set(ids))
    finally:
        for node in nodes:
            node.stop()


class TinyDisk:
    """A small tmpfs (the tests run as root, as CI does), which `fill` fills."""

    def __init__(self, path: Path, size_mb: int = 24):
        self.path = path
        path.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True)

    def fill(self) -> None:
        with open(self.path / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError:
                pass

    def empty(self) -> None:
        (self.path / "filler").unlink()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("the full-disk tests mount a tmpfs: run them as root (CI does)")
    disk = TinyDisk(tmp_path / "disk")
    yield disk
    disk.close()


def refused_then_served(node, disk, key: str | None = None) -> None:
    client = node.client(key)
    ask = dict(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
               extra_body={"enable_thinking": False})
    assert client.chat.completions.create(**ask).choices
    disk.fill()
    time.sleep(0.6)
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as e:
            r = client.chat.completions.create(stream=stream, **ask)
            if stream:
                list(r)
        assert e.value.status_code == 503 and e.value.response.headers["retry-after"]
        assert e.value.body["code"] == "ModelUnavailable" and "disk" in e.value.body["message"]
    h = health(node)
    assert h["http"] == 503 and h["status"] == "unavailable"
    disk.empty()
    time.sleep(2.5)
    assert client.chat.completions.create(**ask).choices
    assert health(node)["http"] == 200


def test_sqlite_on_a_full_disk_refuses_calls_before_computing_them(tiny_disk):
    node = start_server(tiny_disk.path / "home")
    try:
        refused_then_served(node, tiny_disk)
        rows = ledger_ids(f"sqlite:///{tiny_disk.path / 'home' / 'moonserve.db'}")
        assert len(rows) == 2  # the two calls served; the refused ones computed nothing
    finally:
        node.stop()


def test_a_journal_on_a_full_disk_while_postgres_is_away_refuses_calls(cluster, tiny_disk):
    node = start_server(tiny_disk.path / "home", extra_env={"MOONSERVE_DATABASE_URL": cluster.url})
    try:
        key = json.loads(node.cli("keys", "create", "--json").stdout)["key"]  # (the first run was another node's)
        node.client(key).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=3, extra_body={"enable_thinking": False})  # now known
        cluster.halt()
        try:
            refused_then_served(node, tiny_disk, key)
        finally:
            cluster.resume()
    finally:
        node.stop()
