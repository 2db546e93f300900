"""What every recipe shares: where Moonserve is, which model, and the weather tool.

MOONSERVE_BASE_URL  the server's OpenAI-compatible base URL (default http://127.0.0.1:8000/compatible-mode/v1)
DASHSCOPE_API_KEY   a Moonserve API key (the first run prints one)
MOONSERVE_MODEL     default kimi/kimi-k2.6
MOONSERVE_THINKING  "1" (default) or "0": enable_thinking for the hybrid models
"""

import json
import os
import sys

from pydantic import BaseModel, Field

BASE_URL = os.environ.get("MOONSERVE_BASE_URL", "http://127.0.0.1:8000/compatible-mode/v1")
API_KEY = os.environ.get("DASHSCOPE_API_KEY", "")
MODEL = os.environ.get("MOONSERVE_MODEL", "kimi/kimi-k2.6")
THINKING = os.environ.get("MOONSERVE_THINKING", "1") == "1"
QUESTION = os.environ.get("RECIPE_QUESTION", "What is the weather in Beijing?")
WEATHER_REPORT = os.environ.get("RECIPE_WEATHER", "Sunny, 21 degrees")


class City(BaseModel):
    """The structured-output example's answer. max_length is part of the JSON schema, and the server's
    grammar enforces it, so a small model cannot run a string on to max_tokens."""
    city: str = Field(max_length=60)
    country: str = Field(max_length=60)


def get_weather(city: str) -> str:
    """Current weather of a city."""
    return f"{city}: {WEATHER_REPORT}"


def report(kind: str, **fields) -> None:
    """One line of JSON per call, read by tests/test_agent_frameworks.py."""
    print(json.dumps({"kind": kind, **fields}), flush=True)


def run(calls: dict) -> None:
    for name in sys.argv[1:] or list(calls):
        calls[name]()
