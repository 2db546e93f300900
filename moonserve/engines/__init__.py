"""Engines: what generates tokens. `create_engine` builds one from a deployment's config."""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, DeploymentConfig
from .protocol import Engine


def create_engine(deployment: DeploymentConfig, models_dir: Path) -> Engine:
    if deployment.engine == "embedded":
        from .embedded import kernels

        try:
            kernels.choose(deployment.deterministic)
        except kernels.KernelsError as exc:
            raise ConfigError(f"deployment {deployment.name!r}: {exc}") from None
        from .embedded.engine import EmbeddedEngine

        return EmbeddedEngine(deployment, models_dir)
    if deployment.engine == "upstream":
        from .upstream.engine import UpstreamEngine

        return UpstreamEngine(deployment)
    raise ConfigError(f"deployment {deployment.name!r}: unknown engine {deployment.engine!r} (known: embedded, upstream)")


def engines_by_model(routes: dict[str, tuple[str, ...]], engines: dict[str, Engine]) -> dict[str, Engine]:
    """Each public model id's engine: its deployment's, or a failover over its deployments."""
    from .failover import FailoverEngine

    chains: dict[tuple[str, ...], Engine] = {}
    for names in set(routes.values()):
        chains[names] = engines[names[0]] if len(names) == 1 else FailoverEngine([engines[n] for n in names])
    return {model_id: chains[names] for model_id, names in routes.items()}
