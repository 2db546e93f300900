"""What a call costs: input and output tokens at the model's prices, cache hits at its cached
ratio, reasoning as output. Decimal arithmetic throughout."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from ..catalog import ModelCard
from ..engines.protocol import Usage

PER = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    input: Decimal  # per million tokens
    output: Decimal
    cached_ratio: Decimal
    currency: str


@dataclass(frozen=True)
class Cost:
    input: Decimal  # uncached prompt tokens (text, image, video and preserved reasoning alike)
    cached: Decimal  # prompt tokens served from the context cache
    output: Decimal  # completion tokens, reasoning included
    currency: str

    @property
    def total(self) -> Decimal:
        return self.input + self.cached + self.output


def price_of(card: ModelCard, overrides: dict, currency: str) -> Price:
    """The card's prices, or the operator's `[prices."ID"]`; the cached ratio is the guide's."""
    o = overrides.get(card.id, {})
    return Price(
        input=Decimal(str(o.get("input", card.input_price))),
        output=Decimal(str(o.get("output", card.output_price))),
        cached_ratio=card.cached_ratio,
        currency=currency,
    )


def cost_of(usage: Usage, price: Price) -> Cost:
    uncached = usage.prompt_tokens - usage.cached_tokens
    return Cost(
        input=uncached * price.input / PER,
        cached=usage.cached_tokens * price.input * price.cached_ratio / PER,
        output=usage.completion_tokens * price.output / PER,
        currency=price.currency,
    )


NANO = Decimal("0.000000001")


def to_nanos(amount: Decimal) -> int:
    """Money as an integer count of billionths of the currency unit: exact on every database."""
    return int((amount / NANO).quantize(Decimal(1), rounding=ROUND_HALF_UP))

