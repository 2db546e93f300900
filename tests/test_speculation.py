"""Drafts from the request's own context (speculative decoding, engines/embedded/drafts.py) on the
real engine and model: a deployment with `draft_tokens` answers bit for bit what the same weights
answer without them, in deterministic mode and with Moonserve's fast kernels (which compute a row of
a decode step alike however many share the step), in far fewer steps when the answer copies its
prompt, within every bound."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import wait_idle
from moonserve.testing.server import smollm2_path, start_server

CODE = "\n".join(f"def area_{i}(width, height):\n    return width * height + {i}\n" for i in range(12))
EDIT = [{"role": "user", "content": f"Here is a file:\n```python\n{CODE}\n```\nWrite the whole file again, "
                                    "unchanged. Only the file."}]


def drafting_config(deterministic: bool) -> str:
    flag = f"deterministic = {'true' if deterministic else 'false'}\n"
    return ("[deployments.smollm2]\ntemperature = 0.0\ntop_p = 1.0\n" + flag +
            f'[deployments.drafts]\nmodel = "{smollm2_path()}"\nchat_template = '
            '"package:moonserve/catalog/templates/smollm2.jinja"\ntool_parser = "hermes"\n'
            'reasoning_parser = "think"\nguided_thinking_lines = 2\ntemperature = 0.0\ntop_p = 1.0\n'
            'max_sequences = 2\ndraft_tokens = 8\n' + flag +
            '[models."kimi/kimi-k2.7-code-highspeed"]\ndeployment = "drafts"\n')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """kimi/kimi-k2.7-code-highspeed on a deployment with drafts, kimi/kimi-k2.6 on the same weights
    without; both greedy, both deterministic (the fast kernels: the last test)."""
    config = drafting_config(deterministic=True)
    s = start_server(tmp_path_factory.mktemp("drafts"), config=config)
    yield s
    s.stop()


def ask(server, model, messages, **kw) -> dict:
    body = {"model": model, "messages": messages, "max_tokens": 160, **kw}
    r = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=300,
                   headers={"Authorization": f"Bearer {server.key}"})
    assert r.status_code == 200, r.text
    return r.json()


def stats(server, deployment="drafts") -> dict:
    return wait_idle(server, deployment=deployment)


def test_greedy_answers_are_the_same_with_drafts_and_mostly_drafted_when_copying(server):
    before = stats(server)
    drafted = ask(server, "kimi/kimi-k2.7-code-highspeed", EDIT)  # (the code models always think: guided here)
    after = stats(server)
    plain = ask(server, "kimi/kimi-k2.6", EDIT, enable_thinking=True)
    d, p = drafted["choices"][0], plain["choices"][0]
    assert d["message"]["content"] == p["message"]["content"] and d["finish_reason"] == p["finish_reason"]
    assert drafted["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
    accepted = after["draft_tokens_accepted"] - before["draft_tokens_accepted"]
    proposed = after["draft_tokens"] - before["draft_tokens"]
    assert accepted >= drafted["usage"]["completion_tokens"] // 3, (accepted, proposed, drafted["usage"])
    assert stats(server, "smollm2")["draft_tokens"] == 0


@pytest.mark.parametrize("max_tokens", [7, 33])
def test_drafts_keep_max_tokens_and_stop_sequences_exact(server, max_tokens):
    drafted = ask(server, "kimi/kimi-k2.7-code-highspeed", EDIT, max_completion_tokens=max_tokens)
    plain = ask(server, "kimi/kimi-k2.6", EDIT, max_completion_tokens=max_tokens, enable_thinking=True)
    assert drafted["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"] <= max_tokens
    assert drafted["choices"][0]["message"] == plain["choices"][0]["message"]
    stop = ["    return width * height + 3"]
    drafted = ask(server, "kimi/kimi-k2.7-code-highspeed", EDIT, stop=stop)
    plain = ask(server, "kimi/kimi-k2.6", EDIT, stop=stop, enable_thinking=True)
    assert drafted["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert drafted["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]


def test_a_json_answer_under_its_grammar_with_drafts(server):
    messages = [{"role": "user", "content": 'Repeat this JSON exactly: {"name": "Ada", "tags": ["a", "b", "a", "b"]}'}]
    fmt = {"type": "json_object"}
    drafted = ask(server, "kimi/kimi-k2.7-code-highspeed", messages, response_format=fmt)
    plain = ask(server, "kimi/kimi-k2.6", messages, response_format=fmt, enable_thinking=True)
    assert drafted["choices"][0]["message"] == plain["choices"][0]["message"]
    assert isinstance(json.loads(drafted["choices"][0]["message"]["content"]), dict)


def test_with_the_fast_kernels_too_drafts_leave_a_greedy_answer_as_it_is(tmp_path):
    """Moonserve's build of llama.cpp's kernels computes a decode step's rows alike, one or nine
    (flash attention row by row, matrix products of fewer than 32 rows by ggml's one-row kernels),
    so a draft checked in one step gives the tokens the model gives one step at a time."""
    s = start_server(tmp_path, config=drafting_config(deterministic=False))
    try:
        health = httpx.get(f"{s.url}/health").json()["deployments"]
        assert health["drafts"]["kernels"] == "moonserve" and health["drafts"]["deterministic"] is False
        before = stats(s)
        drafted = ask(s, "kimi/kimi-k2.7-code-highspeed", EDIT)
        after = stats(s)
        plain = ask(s, "kimi/kimi-k2.6", EDIT, enable_thinking=True)
        assert drafted["choices"][0]["message"] == plain["choices"][0]["message"]
        assert drafted["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
        assert after["draft_tokens_accepted"] - before["draft_tokens_accepted"] >= drafted["usage"]["completion_tokens"] // 3
    finally:
        s.stop()
