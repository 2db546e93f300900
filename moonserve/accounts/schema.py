"""The store's tables (SQLAlchemy Core). Changes to them go through an Alembic migration."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text

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

# One row per authenticated chat call, written before the call's last byte is sent; the request id
# is the primary key, so a call is never counted twice.
usage_records = Table(
    "usage_records",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    Column("status", Integer, nullable=False),  # HTTP status; 499: the client went away mid-reply
    Column("error_code", String(64)),
    Column("stream", Boolean, nullable=False),
    # how the call came: "chat" (Chat Completions), "anthropic" (Messages) or "responses" (OpenAI Responses) or "dashscope" (the native API)
    Column("protocol", String(16), nullable=False, server_default="chat"),
    Column("prompt_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("text_tokens", Integer, nullable=False),
    Column("image_tokens", Integer, nullable=False),
    Column("video_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    # costs in billionths of the currency unit: integers are exact on every database
    Column("cost_input", BigInteger, nullable=False),
    Column("cost_cached", BigInteger, nullable=False),
    Column("cost_output", BigInteger, nullable=False),
    Column("cost_total", BigInteger, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_usage_records_created_at", "created_at"),
    Index("ix_usage_records_workspace_created", "workspace_id", "created_at"),
)

# Fixed one-minute windows of requests and tokens per scope ("key:ID" or "workspace:ID"), shared by
# every process on the same database.
rate_windows = Table(
    "rate_windows",
    metadata,
    Column("scope", String(100), primary_key=True),
    Column("window", BigInteger, primary_key=True),  # minutes since the epoch
    Column("requests", Integer, nullable=False),
    Column("tokens", BigInteger, nullable=False),
)

# Responses of the OpenAI Responses protocol kept for `previous_response_id` and GET /responses/{id}:
# the response as it was sent, the conversation that led to it (chat messages, with the reply) and
# the request's input items, all JSON. Scoped to a workspace; gone after the retention period.
stored_responses = Table(
    "stored_responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("response", Text, nullable=False),
    Column("conversation", Text, nullable=False),
    Column("input_items", Text, nullable=False),  # the request's own input, as items (GET .../input_items)
)

# Console users (the web console at /console): an owner sees every workspace and manages users; a
# member works in its own workspace. Passwords are Argon2id hashes.
console_users = Table(
    "console_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),  # "owner" | "member"
    Column("workspace_id", String(64), nullable=False),  # the member's workspace; the owner's default one
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
)

# Signed-in console sessions: the cookie holds a random token, the table its hash.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(64), ForeignKey("console_users.username", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)
