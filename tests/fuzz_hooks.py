"""Schemathesis hooks for tests/test_fuzz.py: most generated chat bodies name a served model, so
they get past the 404 into the rules, the engine and the reply (the rest keep what was generated)."""

import random

import schemathesis

MODELS = ["kimi/kimi-k2.6", "kimi/kimi-k2.5", "kimi/kimi-k2.7-code", "kimi/kimi-k2.7-code-highspeed"]
_rng = random.Random(7)


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict) and isinstance(body.get("model"), str) and _rng.random() < 0.8:
        body["model"] = _rng.choice(MODELS)
    return body
