"""The store's tables (SQLAlchemy Core). Changes to them go through an Alembic migration."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, MetaData, String, Table

metadata = MetaData()

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("workspace_id", String(64), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("region", String(32), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),  # sha256 hex of the key
    Column("hint", String(16), nullable=False),  # "sk-…abcd": enough to tell keys apart in a list
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

activations = Table(
    "activations",
    metadata,
    Column("workspace_id", String(64), ForeignKey("workspaces.id"), primary_key=True),
    Column("model_id", String(128), primary_key=True),
    Column("activated_at", DateTime(timezone=True), nullable=False),
)
