"""Workspaces, API keys and model activation, on SQLite (default) or PostgreSQL.

Keys are shown once and stored as a SHA-256 hash. Every lookup reads the database, so a revocation
takes effect at once in every process that shares it (while it answers; see remembered.py).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, delete, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from .schema import activations, api_keys, workspaces

DEFAULT_WORKSPACE = "default"
KEY_PREFIX = "sk-"
# last_used_at is written at most this often per key, so a busy key does not write on every call.
LAST_USED_RESOLUTION = timedelta(seconds=30)


class NotFound(Exception):
    pass


@dataclass(frozen=True)
class ApiKey:
    id: str
    workspace_id: str
    region: str
    hint: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "workspace": self.workspace_id,
            "region": self.region,
            "hint": self.hint,
            "created_at": _iso(self.created_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
        }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def private_file(path: Path) -> None:
    """The database holds key hashes and every call's usage: readable by its owner only (SQLite
    gives its -wal and -shm files the same mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            private_file(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL: readers never wait on the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    # -- workspaces ---------------------------------------------------------------------------

    def ensure_workspace(self, workspace_id: str) -> bool:
        """Create the workspace if missing; True when it was created now."""
        with self.engine.begin() as conn:
            if conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).first():
                return False
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(workspaces).values(id=workspace_id, created_at=_now()))
            return True
        except IntegrityError:  # another process created it first
            return False

    def list_workspaces(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(workspaces.c.id).order_by(workspaces.c.id))]

    def workspace_exists(self, workspace_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(workspaces.c.id).where(workspaces.c.id == workspace_id)).first() is not None

    # -- keys ---------------------------------------------------------------------------------

    def create_key(self, workspace_id: str, region: str) -> tuple[ApiKey, str]:
        """A new key for the workspace (created if missing). Returns the record and the secret,
        which is never stored and cannot be shown again."""
        self.ensure_workspace(workspace_id)
        secret = KEY_PREFIX + secrets.token_urlsafe(36)
        key_id = "key_" + secrets.token_hex(6)
        now = _now()
        row = dict(
            id=key_id,
            workspace_id=workspace_id,
            region=region,
            secret_hash=hash_secret(secret),
            hint=f"{KEY_PREFIX}…{secret[-4:]}",
            created_at=now,
        )
        with self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(**row))
        return ApiKey(key_id, workspace_id, region, row["hint"], now, None, None), secret

    def list_keys(self, workspace_id: str | None = None) -> list[ApiKey]:
        q = select(api_keys).order_by(api_keys.c.created_at)
        if workspace_id:
            q = q.where(api_keys.c.workspace_id == workspace_id)
        with self.engine.connect() as conn:
            return [self._key(r) for r in conn.execute(q)]

    def revoke_key(self, key_id: str) -> ApiKey:
        with self.engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise NotFound(f"no key {key_id!r}")
        return self._key(row)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The live (not revoked) key with this secret, or None. Region is the caller's check."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_keys).where(api_keys.c.secret_hash == hash_secret(secret))
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        key = self._key(row)
        now = _now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            try:
                with self.engine.begin() as conn:
                    conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(last_used_at=now))
                key = replace(key, last_used_at=now)
            except OperationalError:  # bookkeeping (a full disk, a database gone read-only): never a refusal
                pass
        return key

    @staticmethod
    def _key(row) -> ApiKey:
        return ApiKey(
            id=row.id,
            workspace_id=row.workspace_id,
            region=row.region,
            hint=row.hint,
            created_at=_utc(row.created_at),
            last_used_at=_utc(row.last_used_at),
            revoked_at=_utc(row.revoked_at),
        )

    # -- activation ---------------------------------------------------------------------------

    def activate(self, workspace_id: str, model_id: str) -> bool:
        """Activate a model for a workspace; False when it already was."""
        self.ensure_workspace(workspace_id)
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(activations.c.model_id).where(
                    activations.c.workspace_id == workspace_id, activations.c.model_id == model_id
                )
            ).first()
            if exists:
                return False
            conn.execute(
                insert(activations).values(workspace_id=workspace_id, model_id=model_id, activated_at=_now())
            )
            return True

    def deactivate(self, workspace_id: str, model_id: str) -> bool:
        with self.engine.begin() as conn:
            res = conn.execute(
                delete(activations).where(
                    activations.c.workspace_id == workspace_id, activations.c.model_id == model_id
                )
            )
            return res.rowcount > 0

    def activated_models(self, workspace_id: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(activations.c.model_id).where(activations.c.workspace_id == workspace_id)
            )
            return {r.model_id for r in rows}

    def is_activated(self, workspace_id: str, model_id: str) -> bool:
        return model_id in self.activated_models(workspace_id)
