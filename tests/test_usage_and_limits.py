"""The ledger, billing, reports and rate limits through real servers (SQLite and PostgreSQL)."""

from __future__ import annotations

import concurrent.futures as cf
import json
import signal
import threading
import time
from decimal import Decimal

import httpx
import pytest

from conftest import wait_idle
from moonserve.accounts.ledger import Ledger
from moonserve.accounts.store import Store
from moonserve.testing.server import early_in_a_minute, start_server

MODEL = "kimi/kimi-k2.6"
LONG = "You are a careful assistant. " + " ".join(f"Rule {i}: be precise about topic {i}." for i in range(60))


def records(server) -> list[dict]:
    url = server.env.get("MOONSERVE_DATABASE_URL") or f"sqlite:///{server.home / 'moonserve.db'}"
    return Ledger(Store(url).engine).records()


def call(server, body, key=None, timeout=120) -> httpx.Response:
    if body.get("model") in ("kimi/kimi-k2.6", "kimi/kimi-k2.5"):
        body = {"enable_thinking": False, **body}  # these tests count tokens, not thoughts
    return httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=timeout,
                      headers={"Authorization": f"Bearer {key or server.key}"})


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("billed"), config=(
        '[billing]\ncurrency = "USD"\n'
        '[prices."kimi/kimi-k2.6"]\ninput = "2.50"\noutput = "10"\n'
        '[deployments.smollm2]\nmax_sequences = 8\n'))
    yield s
    s.stop()


def concurrent_calls_add_up(server, n=200):
    before = len(records(server))

    def one(i):
        r = call(server, {"model": MODEL, "messages": [{"role": "user", "content": f"Say a word about {i}."}],
                          "max_tokens": 3, "seed": i})
        assert r.status_code == 200, r.text
        return r.json()

    with cf.ThreadPoolExecutor(32) as ex:
        replies = list(ex.map(one, range(n)))
    rows = {r["request_id"]: r for r in records(server)[before:]}
    assert len(rows) == n
    for reply in replies:
        row = rows[reply["id"].removeprefix("chatcmpl-")]
        u = reply["usage"]
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == \
            (u["prompt_tokens"], u["completion_tokens"], u["prompt_tokens_details"]["cached_tokens"])
        assert row["status"] == 200 and row["model"] == MODEL
    assert sum(r["prompt_tokens"] for r in rows.values()) == sum(x["usage"]["prompt_tokens"] for x in replies)
    assert sum(r["completion_tokens"] for r in rows.values()) == \
        sum(x["usage"]["completion_tokens"] for x in replies)


def test_200_concurrent_calls_leave_200_records_that_add_up(billed):
    concurrent_calls_add_up(billed)


def test_200_concurrent_calls_on_postgresql(tmp_path, pg_cluster):
    from test_store import _reset_postgres

    _reset_postgres(pg_cluster.url)
    s = start_server(tmp_path, extra_env={"MOONSERVE_DATABASE_URL": pg_cluster.url},
                     config="[deployments.smollm2]\nmax_sequences = 8\n")
    try:
        concurrent_calls_add_up(s)
    finally:
        s.stop()


def test_cost_uses_operator_prices_and_the_cached_ratio(billed):
    messages = [{"role": "system", "content": LONG}, {"role": "user", "content": "Rule 3?"}]
    call(billed, {"model": MODEL, "messages": messages, "max_tokens": 4, "seed": 1})
    reply = call(billed, {"model": MODEL, "messages": messages[:1] + [{"role": "user", "content": "Rule 9?"}],
                          "max_tokens": 4, "seed": 1}).json()
    row = next(r for r in records(billed) if r["request_id"] == reply["id"].removeprefix("chatcmpl-"))
    u = reply["usage"]
    cached = u["prompt_tokens_details"]["cached_tokens"]
    assert cached > 256
    million = Decimal(1_000_000)
    expected_input = (u["prompt_tokens"] - cached) * Decimal("2.50") / million
    expected_cached = cached * Decimal("2.50") * Decimal("0.169") / million  # the guide's ratio for k2.6
    expected_output = u["completion_tokens"] * Decimal("10") / million
    nano = Decimal("0.000000001")
    assert Decimal(row["cost_input"]) * nano == expected_input.quantize(nano)
    assert Decimal(row["cost_cached"]) * nano == expected_cached.quantize(nano)
    assert Decimal(row["cost_output"]) * nano == expected_output.quantize(nano)
    assert row["cost_total"] == row["cost_input"] + row["cost_cached"] + row["cost_output"]
    assert row["currency"] == "USD"


def test_every_authenticated_call_leaves_one_record_refusals_included(billed):
    before = {r["request_id"] for r in records(billed)}
    outcomes = {
        400: call(billed, {"model": MODEL, "messages": [], "max_tokens": 2}),
        404: call(billed, {"model": "kimi/nope", "messages": [{"role": "user", "content": "x"}]}),
        401: call(billed, {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}, key="sk-wrong"),
    }
    new = [r for r in records(billed) if r["request_id"] not in before]
    assert sorted(r["status"] for r in new) == [400, 404]  # an unauthenticated call has no workspace to bill
    by_status = {r["status"]: r for r in new}
    assert by_status[404]["model"] == "kimi/nope" and by_status[404]["error_code"] == "model_not_found"
    assert by_status[400]["error_code"] == "invalid_parameter_error" and by_status[400]["cost_total"] == 0
    assert outcomes[400].headers["x-request-id"] == by_status[400]["request_id"]


def test_a_client_that_disconnects_mid_stream_leaves_a_499_record_with_what_it_used(billed):
    before = {r["request_id"] for r in records(billed)}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 2000, "seed": 5, "stream": True}
    with httpx.stream("POST", f"{billed.base_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {billed.key}"}) as r:
        lines = r.iter_lines()
        for _ in range(12):
            next(lines)
    wait_idle(billed)
    time.sleep(0.3)
    (row,) = [r for r in records(billed) if r["request_id"] not in before]
    assert row["status"] == 499 and bool(row["stream"])
    assert 0 < row["completion_tokens"] < 2000 and row["prompt_tokens"] > 0
    assert row["cost_output"] > 0


def test_usage_reports_are_per_workspace(billed):
    other = json.loads(billed.cli("keys", "create", "--workspace", "team-x", "--json").stdout)
    billed.cli("models", "activate", MODEL, "--workspace", "team-x", "--yes")
    assert call(billed, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
                key=other["key"]).status_code == 200

    def report(key, **params):
        r = httpx.get(f"{billed.base_url}/usage", params=params, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        return r.json()

    mine = report(other["key"], by="key")
    assert mine["workspace"] == "team-x" and [row["group"] for row in mine["data"]] == [other["id"]]
    assert mine["data"][0]["requests"] == 1
    default = report(billed.key, by="model")
    assert default["workspace"] == "default" and all(r["group"] != other["id"] for r in default["data"])
    assert sum(r["requests"] for r in default["data"]) >= 200
    assert report(billed.key, since="2999-01-01")["data"] == []
    bad = httpx.get(f"{billed.base_url}/usage", params={"by": "month"},
                    headers={"Authorization": f"Bearer {billed.key}"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "by"
    cli = json.loads(billed.cli("usage", "--workspace", "team-x", "--by", "model", "--json").stdout)
    assert cli["data"][0]["group"] == MODEL and cli["data"][0]["currency"] == "USD"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_9_during_load_loses_no_finished_reply_and_duplicates_none(tmp_path, database, request):
    env = {}
    if database == "postgresql":
        from test_store import _reset_postgres

        cluster = request.getfixturevalue("pg_cluster")
        _reset_postgres(cluster.url)
        env = {"MOONSERVE_DATABASE_URL": cluster.url}
    s = start_server(tmp_path, extra_env=env)
    done: list[str] = []
    failed = 0

    def one(i):
        nonlocal failed
        try:
            r = call(s, {"model": MODEL, "messages": [{"role": "user", "content": f"Tell a story {i}."}],
                         "max_tokens": 40, "seed": i}, timeout=60)
            if r.status_code == 200:
                done.append(r.json()["id"].removeprefix("chatcmpl-"))
        except httpx.HTTPError:
            failed += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(done) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    s.proc.send_signal(signal.SIGKILL)
    for t in threads:
        t.join()
    s.proc.wait()
    assert done and failed, "the kill must land mid-load"
    rows = records(s)
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert set(done) <= set(ids), "every reply the client received fully is in the ledger"
    for r in rows:
        assert r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["cost_total"] > 0


def test_limits_hold_across_two_processes_on_postgresql(tmp_path, pg_cluster):
    from test_store import _reset_postgres

    _reset_postgres(pg_cluster.url)
    env = {"MOONSERVE_DATABASE_URL": pg_cluster.url}
    config = "[limits.key]\nrpm = 4\n"
    a = start_server(tmp_path / "a", config=config, extra_env=env)
    b = start_server(tmp_path / "b", config=config, extra_env=env)
    try:
        assert a.key and b.key is None, "the second process found the first one's workspace in PostgreSQL"
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        early_in_a_minute()
        codes = [call(server, body, key=a.key).status_code for server in (a, b, a, b)]
        assert codes == [200] * 4
        refused = call(b, body, key=a.key)
        assert refused.status_code == 429
        err = refused.json()["error"]
        assert err["code"] == "Throttling.RateQuota" and 1 <= int(refused.headers["retry-after"]) <= 60
        assert call(a, body, key=a.key).status_code == 429
        rows = records(a)
        assert sorted(r["status"] for r in rows) == [200] * 4 + [429] * 2
        # a key revoked through one process is refused at once by the other
        key_id = json.loads(a.cli("keys", "list", "--json").stdout)[0]["id"]
        a.cli("keys", "revoke", key_id)
        assert call(b, body, key=a.key).status_code == 401
    finally:
        a.stop()
        b.stop()


def test_tokens_per_minute_per_workspace(tmp_path):
    s = start_server(tmp_path, config="[limits.workspace]\ntpm = 50\n")
    try:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 40,
                "seed": 1}
        early_in_a_minute()
        assert call(s, body).status_code == 200  # ~70 tokens: the workspace's minute is spent
        r = call(s, body)
        assert r.status_code == 429 and "Tokens" in r.json()["error"]["message"]
    finally:
        s.stop()
