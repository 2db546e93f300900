"""Fuzzing the served API: schemathesis against the OpenAPI document the server publishes (the chat
call's body included), and a loop of generated bodies built by breaking a valid request in every
place. Bounded in count and time; no answer may be a 5xx, and the server is alive after."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from moonserve.accounts.ledger import Ledger
from moonserve.accounts.store import Store
from moonserve.testing.server import start_server

MODEL = "kimi/kimi-k2.6"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A short context keeps generated calls that pass every check short too.
    s = start_server(tmp_path_factory.mktemp("fuzz"), config=(
        # (every accepted call generates: the fuzzing is about the server's answers, not their length)
        "[deployments.smollm2]\ncontext_length = 512\nmax_output_tokens = 8\n"))
    yield s
    s.stop()


def schemathesis_command() -> list[str]:
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is a test dependency (pyproject.toml [test])"
    return [exe]


def test_schemathesis_finds_no_server_error(server, tmp_path):
    env = {**server.env, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": "fuzz_hooks",
           "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.run(
        [*schemathesis_command(), "run", f"{server.url}/openapi.json", "--url", server.url,
         "--checks", "not_a_server_error", "-H", f"Authorization: Bearer {server.key}",
         "--max-examples", "150", "--seed", "12", "--request-timeout", "120", "--generation-database", ":memory:",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    generated, passed = map(int, re.search(r"(\d+) generated, (\d+) passed", proc.stdout).groups())
    assert generated == passed and generated > 1000, proc.stdout[-3000:]
    # the ledger shows how far the generated calls got: some answered, none failed on our side
    statuses = {r["status"] for r in Ledger(Store(f"sqlite:///{server.home / 'moonserve.db'}").engine).records()}
    assert 200 in statuses and 400 in statuses and not any(s >= 500 for s in statuses), statuses
    assert server.proc.poll() is None


# per protocol: its path, a valid body, the places to break it, and the keys of its error body
PROTOCOLS = {
    "chat": ("/compatible-mode/v1/chat/completions",
             {"model": MODEL, "max_tokens": 8, "messages": [{"role": "system", "content": "Be brief."},
                                                             {"role": "user", "content": "Hi"}]},
             ["model", "messages", "messages.0", "messages.1", "messages.1.content", "messages.1.role",
              "messages.1.content.0", "stream", "stream_options", "max_tokens", "max_completion_tokens", "stop",
              "seed", "n", "tools", "tool_choice", "response_format", "enable_thinking", "preserve_thinking",
              "thinking", "temperature", "top_p", "logprobs", "parallel_tool_calls", "extra_body", "user"]),
    "responses": ("/api/v2/apps/protocols/compatible-mode/v1/responses",
                  {"model": MODEL, "max_output_tokens": 8, "instructions": "Be brief.", "enable_thinking": False,
                   "input": [
                      {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                      {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "ok"}],
                   "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]},
                  ["model", "input", "input.0", "input.0.content", "input.0.content.0", "input.0.role", "input.1",
                   "input.1.arguments", "input.1.call_id", "input.2.output", "instructions", "tools", "tools.0",
                   "tools.0.parameters", "tool_choice", "text", "reasoning", "max_output_tokens", "stream",
                   "previous_response_id", "store", "metadata", "include", "enable_thinking", "truncation"]),
    "anthropic": ("/apps/anthropic/v1/messages",
                  {"model": MODEL, "max_tokens": 8, "system": "Be brief.",
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
                  ["model", "max_tokens", "system", "messages", "messages.0", "messages.0.content",
                   "messages.0.content.0", "messages.0.role", "tools", "tool_choice", "thinking", "stop_sequences",
                   "stream", "temperature", "metadata"]),
}
ODD_VALUES = [
    None, True, -1, 0, 2**31, 2**64, -2**63, 1e308, -0.0, 3.5, "", "x" * 10000, "\u0000", "\ud83d\ude00", "ab\u202e",
    "\ud800", "a\udfffb",
    [], [None], [[[[[]]]]], {}, {"type": None}, {"url": "http://169.254.169.254/"}, {"$ref": "#"},
    {"type": "function", "function": {"name": "f" * 65}}, "auto", "required", "none",
    {"type": "json_schema", "json_schema": {"schema": {"$ref": "#"}}},
    {"type": "json_schema", "json_schema": {"schema": {"type": "string", "pattern": "((((a*)*)*)*)*b"}}},
]



def mutate(rng: random.Random, valid: dict, places: list[str]) -> dict:
    body = json.loads(json.dumps(valid))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(places).split(".")
        target = body
        for key in path[:-1]:
            key = int(key) if key.isdigit() else key
            try:
                target = target[key]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = path[-1]
            value = rng.choice(ODD_VALUES)
            if isinstance(target, list) and last.isdigit():
                if int(last) < len(target):
                    target[int(last)] = value
            elif isinstance(target, dict):
                if rng.random() < 0.15:
                    target.pop(last, None)
                else:
                    target[last] = value
            elif isinstance(target, str) and last.isdigit():
                pass
    return body


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_generated_bodies_never_get_a_5xx(server, protocol):
    path, valid, places = PROTOCOLS[protocol]
    url = server.url + path
    rng = random.Random(int(os.environ.get("MOONSERVE_FUZZ_SEED", "20261126")))
    headers = {"Authorization": f"Bearer {server.key}"}
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=120) as client:
        for i in range(250 if protocol == "chat" else 150):
            body = mutate(rng, valid, places)
            # ASCII escapes: lone surrogates ("\ud800") travel as JSON allows them
            r = client.post(url, content=json.dumps(body),
                            headers={**headers, "Content-Type": "application/json"})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (i, body, r.text)
            if r.status_code != 200:  # every refusal is the protocol's error body
                error = r.json()["error"]
                assert error["message"] and (error["type"] if protocol == "anthropic" else error["code"]), r.text
                assert r.json()["request_id"], r.text
        # raw bytes that are not a request body
        for raw in [b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"model": 1e999999}', b"{" * 100000,
                    b'{"model": "' + b"\\ud800" * 1000 + b'"}', b'{"messages": [' + b"[" * 5000 + b"]}"]:
            r = client.post(url, content=raw,
                            headers={**headers, "Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (raw[:40], r.text)
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0, statuses
    assert server.proc.poll() is None
