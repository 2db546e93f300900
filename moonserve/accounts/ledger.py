"""The usage ledger: one row per authenticated call, and the reports read from it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from .schema import usage_records

GROUPS = ("model", "key", "day", "protocol")  # protocol: chat, anthropic, responses


class Ledger:
    def __init__(self, engine: Engine):
        self.engine = engine

    def record(self, row: dict) -> None:
        """Insert one call's record. The request id is the primary key: a call is counted once."""
        with self.engine.begin() as conn:
            conn.execute(insert(usage_records).values(**row))

    def insert_missing(self, rows: list[dict]) -> None:
        """Insert the records whose request id the ledger does not hold yet, in order, in one
        transaction (a journal's delivery: each record once, however often it is tried)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        with self.engine.begin() as conn:
            for row in rows:
                conn.execute(dialect.insert(usage_records).values(**row).on_conflict_do_nothing(
                    index_elements=["request_id"]))

    def report(self, workspace: str | None = None, since: datetime | None = None, by: str = "model") -> list[dict]:
        if by not in GROUPS:
            raise ValueError(f"by must be one of {GROUPS}")
        t = usage_records.c
        group = {"model": t.model, "key": t.key_id, "day": func.date(t.created_at), "protocol": t.protocol}[by]
        q = select(
            group.label("group"),
            t.currency,
            func.count().label("requests"),
            func.sum(t.prompt_tokens).label("prompt_tokens"),
            func.sum(t.cached_tokens).label("cached_tokens"),
            func.sum(t.completion_tokens).label("completion_tokens"),
            func.sum(t.reasoning_tokens).label("reasoning_tokens"),
            func.sum(t.cost_input).label("cost_input"),
            func.sum(t.cost_cached).label("cost_cached"),
            func.sum(t.cost_output).label("cost_output"),
            func.sum(t.cost_total).label("cost_total"),
        ).group_by(group, t.currency).order_by(group)
        if workspace:
            q = q.where(t.workspace_id == workspace)
        if since:
            q = q.where(t.created_at >= since)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            {**{k: (str(v) if k == "group" else v) for k, v in r.items() if not k.startswith("cost")},
             **{k: _money(r[k]) for k in ("cost_input", "cost_cached", "cost_output", "cost_total")}}
            for r in rows
        ]

    def records(self, workspace: str | None = None) -> list[dict]:
        q = select(usage_records).order_by(usage_records.c.created_at)
        if workspace:
            q = q.where(usage_records.c.workspace_id == workspace)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]


def _money(nanos) -> str:
    """Sums of billionths as decimal strings (JSON has no decimal type)."""
    return format((Decimal(int(nanos or 0)) / Decimal(1_000_000_000)).quantize(Decimal("0.000000001")), "f")


def parse_since(text: str | None) -> datetime | None:
    """ISO-8601 date or time (UTC if no zone), or a relative span: `30m`, `24h`, `7d`."""
    if not text:
        return None
    text = text.strip()
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1] in units:
        try:
            return datetime.now(timezone.utc) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
        except (OverflowError, ValueError):  # before year 1, or too many digits to be a number
            raise ValueError(f"{text!r} reaches back further than dates go") from None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO-8601 nor a span like 24h or 7d") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
