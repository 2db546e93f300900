"""The draw of a token from logits (engines/embedded/sampling.py): what temperature, top-p and the
seed promise, on logits whose answer is known."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from moonserve.engines.embedded.sampling import Draw

VOCAB = 49152


def logits_with(probabilities: dict[int, float], temperature: float) -> np.ndarray:
    """A float32 row whose distribution at `temperature` is `probabilities` (the rest ~0)."""
    row = np.full(VOCAB, -1e4, dtype=np.float32)
    for token, p in probabilities.items():
        row[token] = temperature * math.log(p)
    return row


def draws(row: np.ndarray, n: int, **settings) -> Counter:
    d = Draw(seed=settings.pop("seed", 7), **settings)
    return Counter(d.sample(row) for _ in range(n))


def test_temperature_zero_is_the_likeliest_token_first_on_a_tie():
    row = np.zeros(VOCAB, dtype=np.float32)
    row[[10, 20]] = 5.0
    assert draws(row, 50, temperature=0.0, top_p=0.9) == Counter({10: 50})


def test_the_nucleus_is_the_fewest_tokens_reaching_top_p_and_the_draw_follows_their_odds():
    probs = {3: 0.5, 9: 0.3, 4000: 0.15, 77: 0.05}
    row = logits_with(probs, temperature=0.7)
    # top_p 0.79: 0.5 + 0.3 reaches it, so only tokens 3 and 9, in the ratio 5:3
    seen = draws(row, 8000, temperature=0.7, top_p=0.79)
    assert set(seen) == {3, 9}
    assert seen[3] / 8000 == pytest.approx(0.5 / 0.8, abs=0.03)
    # top_p 0.81 needs the third token too; 1.0 keeps all four at their odds
    assert set(draws(row, 4000, temperature=0.7, top_p=0.81)) == {3, 9, 4000}
    seen = draws(row, 20000, temperature=0.7, top_p=1.0)
    for token, p in probs.items():
        assert seen[token] / 20000 == pytest.approx(p, abs=0.015), token


def test_a_nucleus_wider_than_the_sorted_head_is_still_exact():
    # 1,000 equally likely tokens and a long tail: top_p 0.5 keeps exactly 500 of them
    row = np.full(VOCAB, -50.0, dtype=np.float32)
    row[:1000] = 0.0
    seen = draws(row, 20000, temperature=1.0, top_p=0.5)
    assert len(seen) > 450 and max(seen) < 1000
    assert len(set(seen) - set(range(1000))) == 0


def test_a_nucleus_reaching_into_the_unlikely_tail_is_still_exact():
    # one token holds half the mass, 2,000 tokens share the other half, each 1/2000 as likely as
    # the first: top_p 0.8999 keeps it and the first 1,600 of them (equal odds: the lower ids first)
    row = np.full(VOCAB, -1e4, dtype=np.float32)
    row[100] = math.log(0.5)
    row[1000:3000] = math.log(0.5 / 2000)
    seen = draws(row, 20000, temperature=1.0, top_p=0.8999)
    assert seen[100] / 20000 == pytest.approx(0.5 / 0.9, abs=0.02)
    tail = set(seen) - {100}
    assert min(tail) >= 1000 and max(tail) < 2600 and len(tail) > 1400


def test_temperature_sharpens_and_flattens():
    row = logits_with({1: 0.6, 2: 0.4}, temperature=1.0)
    cold = draws(row, 6000, temperature=0.25, top_p=1.0)  # 0.6^4 : 0.4^4 = 0.835 : 0.165
    hot = draws(row, 6000, temperature=4.0, top_p=1.0)  # 0.6^0.25 : 0.4^0.25 = 0.525 : 0.475
    assert cold[1] / 6000 == pytest.approx(0.835, abs=0.03)
    assert hot[1] / 6000 == pytest.approx(0.525, abs=0.03)


def test_the_same_seed_draws_the_same_tokens_and_another_seed_others():
    row = logits_with({t: 1 / 50 for t in range(50)}, temperature=1.0)
    d1, d2, d3 = (Draw(temperature=1.0, top_p=0.95, seed=s) for s in (42, 42, 43))
    first = [d1.sample(row) for _ in range(40)]
    assert first == [d2.sample(row) for _ in range(40)]
    assert first != [d3.sample(row) for _ in range(40)]


def test_broken_logits_never_crash_the_draw():
    row = np.zeros(VOCAB, dtype=np.float32)
    row[5] = np.nan
    row[8] = 3.0
    assert draws(row, 5, temperature=0.8, top_p=0.9) == Counter({8: 5})
    row = np.full(VOCAB, -np.inf, dtype=np.float32)
    assert 0 <= Draw(temperature=0.8, top_p=0.9, seed=1).sample(row) < VOCAB
