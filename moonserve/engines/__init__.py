"""Engines: what generates tokens. `create_engine` builds one from a deployment's config."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, DeploymentConfig
from .protocol import Engine


def create_engine(deployment: DeploymentConfig, models_dir: Path) -> Engine:
    if deployment.engine == "embedded":
        from .embedded.engine import EmbeddedEngine

        return EmbeddedEngine(deployment, models_dir)
    raise ConfigError(f"deployment {deployment.name!r}: unknown engine {deployment.engine!r} (known: embedded)")
