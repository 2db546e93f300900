"""The store (workspaces, keys, activation, ledger, rate limits) on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect

from moonserve.accounts.ledger import Ledger, parse_since
from moonserve.accounts.limits import Limits, LimitsConfig, RateLimiter
from moonserve.accounts.store import Store
from moonserve.errors import RateQuota
from moonserve.testing.server import early_in_a_minute


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, pg_cluster) -> Store:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = pg_cluster.url
        _reset_postgres(url)
    s = Store(url)
    s.migrate()
    return s


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def test_schema_is_created_by_alembic_and_migrating_twice_is_harmless(store):
    store.migrate()
    tables = set(inspect(store.engine).get_table_names())
    assert {"workspaces", "api_keys", "activations", "usage_records", "rate_windows", "alembic_version"} <= tables


def test_keys_hashed_revocable_last_used(store):
    key, secret = store.create_key("team", "cn-beijing")
    found = store.authenticate(secret)
    assert found.id == key.id and found.workspace_id == "team" and found.region == "cn-beijing"
    assert found.last_used_at is not None
    assert store.list_keys("team")[0].last_used_at is not None  # recorded in the store
    assert store.authenticate(secret + "x") is None
    with store.engine.connect() as conn:
        from sqlalchemy import text

        stored = " ".join(str(v) for row in conn.execute(text("SELECT * FROM api_keys")) for v in row)
    assert secret not in stored
    store.revoke_key(key.id)
    assert store.authenticate(secret) is None


def test_activation_is_per_workspace(store):
    assert store.activate("a", "kimi/kimi-k2.6") is True
    assert store.activate("a", "kimi/kimi-k2.6") is False
    assert store.is_activated("a", "kimi/kimi-k2.6") and not store.is_activated("b", "kimi/kimi-k2.6")
    assert store.deactivate("a", "kimi/kimi-k2.6") and not store.is_activated("a", "kimi/kimi-k2.6")


def _row(rid, ws, key, model, cost, created, prompt=10, completion=5):
    return dict(request_id=rid, workspace_id=ws, key_id=key, model=model, status=200, error_code=None,
                stream=False, prompt_tokens=prompt, cached_tokens=2, text_tokens=prompt, image_tokens=0,
                video_tokens=0, completion_tokens=completion, reasoning_tokens=1, cost_input=cost, cost_cached=0,
                cost_output=0, cost_total=cost, currency="CNY", latency_ms=5, created_at=created)


def test_ledger_reports_by_model_key_and_day(store):
    ledger = Ledger(store.engine)
    now = datetime.now(timezone.utc)
    ledger.record(_row("r1", "a", "k1", "kimi/kimi-k2.6", 1_500_000_000, now))
    ledger.record(_row("r2", "a", "k2", "kimi/kimi-k2.6", 1, now))
    ledger.record(_row("r3", "a", "k1", "kimi/kimi-k2.5", 7, now - timedelta(days=3)))
    ledger.record(_row("r4", "b", "k9", "kimi/kimi-k2.6", 100, now))
    with pytest.raises(Exception):  # the request id is the primary key: never counted twice
        ledger.record(_row("r1", "a", "k1", "kimi/kimi-k2.6", 1, now))
    by_model = {r["group"]: r for r in ledger.report("a", by="model")}
    assert by_model["kimi/kimi-k2.6"]["requests"] == 2
    assert by_model["kimi/kimi-k2.6"]["cost_total"] == "1.500000001"  # exact, also on SQLite
    assert by_model["kimi/kimi-k2.6"]["prompt_tokens"] == 20 and by_model["kimi/kimi-k2.6"]["cached_tokens"] == 4
    assert {r["group"] for r in ledger.report("a", by="key")} == {"k1", "k2"}
    assert len(ledger.report("a", by="day")) == 2
    recent = ledger.report("a", since=parse_since("1d"), by="model")
    assert [r["group"] for r in recent] == ["kimi/kimi-k2.6"]
    assert sum(r["requests"] for r in ledger.report(None, by="model")) == 4


def test_rate_limits_per_key_and_workspace(store):
    limiter = RateLimiter(store.engine, LimitsConfig(key=Limits(rpm=3), workspace=Limits(tpm=100)))
    early_in_a_minute(5)
    for _ in range(3):
        limiter.admit("k1", "w")
    with pytest.raises(RateQuota) as exc:
        limiter.admit("k1", "w")
    assert exc.value.status == 429 and 1 <= int(exc.value.headers["Retry-After"]) <= 60
    limiter.admit("k2", "w")  # another key of the same workspace still has its own requests
    limiter.add_tokens("k2", "w", 100)
    with pytest.raises(RateQuota, match="Tokens"):
        limiter.admit("k3", "w")  # the workspace has used its tokens for this minute


def test_rate_windows_are_shared_by_separate_engines(store):
    """Two limiters on two connections pools (as two processes would have) count together."""
    other = Store(store.url)
    config = LimitsConfig(key=Limits(rpm=4))
    a, b = RateLimiter(store.engine, config), RateLimiter(other.engine, config)
    early_in_a_minute(5)
    for limiter in (a, b, a, b):
        limiter.admit("shared", "w")
    with pytest.raises(RateQuota):
        (a if time.time() % 2 else b).admit("shared", "w")


def test_stored_responses_are_per_workspace_deletable_and_expire(store):
    from moonserve.accounts.stored_responses import StoredResponses

    kept = StoredResponses(store.engine, timedelta(days=30))
    conversation = [{"role": "user", "content": "Hi ✓"}, {"role": "assistant", "content": "Hello", "reasoning_content": ""}]
    items = [{"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi ✓"}]}]
    kept.save("ws-a", {"id": "resp_1", "output": []}, conversation, items)
    found = kept.get("ws-a", "resp_1")
    assert found.response == {"id": "resp_1", "output": []} and found.conversation == conversation
    assert found.input_items == items
    assert kept.get("ws-b", "resp_1") is None
    assert not kept.delete("ws-b", "resp_1") and kept.delete("ws-a", "resp_1") and kept.get("ws-a", "resp_1") is None
    expired = StoredResponses(store.engine, timedelta(seconds=-1))
    expired._swept_at = time.monotonic()  # this save does not sweep
    expired.save("ws-a", {"id": "resp_2"}, [], [])
    assert expired.get("ws-a", "resp_2") is None and kept.purge() == 1 and kept.purge() == 0
