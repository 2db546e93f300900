"""The upstream engine's own settings of a deployment (`engine = "upstream"`): an OpenAI-compatible
endpoint instead of weights, one engine or a gateway (smg) in front of replicas. See
docs/upstream-engines.md."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...config import ConfigError, DeploymentConfig


@dataclass
class UpstreamDeployment(DeploymentConfig):
    base_url: str | None = None  # e.g. "http://10.0.0.5:8000/v1"
    api_key_env: str | None = None  # the environment variable that holds its API key (never logged)
    upstream_model: str | None = None  # the model name the upstream serves (default: its only one)
    flavour: str = "openai"  # "vllm", "sglang", "llamacpp", or "openai" (another Moonserve, Model Studio, ...)
    connect_timeout: float = 5.0
    read_timeout: float = 300.0  # the longest silence between two chunks
    max_concurrency: int = 64  # calls in flight to the upstream at once; more wait (max_waiting of them)
    health_interval: float = 5.0  # seconds between health checks
    vision: bool = False  # the upstream takes images: Moonserve fetches and checks them, then sends data: URLs

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        **DeploymentConfig.CHOICES,
        "flavour": ("vllm", "sglang", "llamacpp", "openai"),
    }

    def check(self) -> None:
        if not self.base_url:
            raise ConfigError(f"deployment {self.name!r}: an upstream deployment needs base_url")

    def build(self, models_dir: Path):
        from .engine import UpstreamEngine

        return UpstreamEngine(self)
