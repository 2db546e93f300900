"""Engines: what generates tokens. Each engine is a folder with its own settings (settings.py) and
is registered here, in `ENGINES`, the one place that knows them all."""

from __future__ import annotations

from pathlib import Path

from ..config import Config, ConfigError, DeploymentConfig
from .embedded.settings import EmbeddedDeployment, check_together
from .protocol import Engine
from .upstream.settings import UpstreamDeployment

# engine name -> its deployment settings (which check themselves and build the engine)
ENGINES: dict[str, type[EmbeddedDeployment] | type[UpstreamDeployment]] = {
    "embedded": EmbeddedDeployment,
    "upstream": UpstreamDeployment,
}


def resolve(config: Config) -> Config:
    """Each deployment's settings read by its engine's own class: an unknown engine, an unknown
    setting or a value of the wrong kind is a ConfigError, before anything starts."""
    for name, d in config.deployments.items():
        kind = ENGINES.get(d.engine)
        if kind is None:
            raise ConfigError(f"deployment {name!r}: unknown engine {d.engine!r} (known: {', '.join(ENGINES)})")
        if type(d) is not kind:
            d = config.deployments[name] = kind.from_dict(name, d.settings)
        d.check()
    check_together([config.deployments[n] for n in config.served if config.deployments[n].engine == "embedded"])
    return config


def create_engine(deployment: DeploymentConfig, models_dir: Path) -> Engine:
    """The deployment's engine (its settings resolved first: see `resolve`)."""
    return deployment.build(models_dir)


def engines_by_model(routes: dict[str, tuple[str, ...]], engines: dict[str, Engine]) -> dict[str, Engine]:
    """Each public model id's engine: its deployment's, or a failover over its deployments."""
    from .failover import FailoverEngine

    chains: dict[tuple[str, ...], Engine] = {}
    for names in set(routes.values()):
        chains[names] = engines[names[0]] if len(names) == 1 else FailoverEngine([engines[n] for n in names])
    return {model_id: chains[names] for model_id, names in routes.items()}
