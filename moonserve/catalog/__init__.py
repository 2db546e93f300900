"""The public model ids and their cards (rules), read from `models.toml`."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class ModelCard:
    id: str
    input: tuple[str, ...]
    thinking: str  # "always" | "hybrid"
    preserve_thinking: str  # "on" | "off" | "unsupported"
    temperature_thinking: float
    top_p: float
    input_price: Decimal  # per million tokens, default prices (the operator's config may override)
    output_price: Decimal
    cached_ratio: Decimal  # a cache hit costs this share of the input price
    thinking_default: bool = True
    temperature_non_thinking: float | None = None
    owned_by: str = "kimi"
    # The shortest reused prefix that counts as a cache hit (Model Studio: 256 tokens); a shorter one is
    # billed as input, whichever engine reused it.
    cache_min_tokens: int = 256

    @property
    def thinking_only(self) -> bool:
        return self.thinking == "always"

    def temperature(self, thinking: bool) -> float:
        if thinking or self.temperature_non_thinking is None:
            return self.temperature_thinking
        return self.temperature_non_thinking


@cache
def cards() -> dict[str, ModelCard]:
    with open(Path(__file__).with_name("models.toml"), "rb") as f:
        data = tomllib.load(f)
    return {
        model_id: ModelCard(id=model_id, **{
            **raw,
            "input": tuple(raw["input"]),
            **{k: Decimal(raw[k]) for k in ("input_price", "output_price", "cached_ratio")},
        })
        for model_id, raw in data["models"].items()
    }


def card(model_id: str) -> ModelCard | None:
    return cards().get(model_id)
