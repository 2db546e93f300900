"""DashScope's native API through real servers with the real `dashscope` SDK (`Generation.call`):
plain and streamed calls, `incremental_output` both ways, `result_format` message and text, usage,
the ledger, refusals in DashScope's shape; thinking and a tool loop on the scripted model (a
question ending in "1" gets reasoning and an answer, "2" reasoning and a get_weather call, a tool
result ending in "~" the answer from it). The image by URL is in test_vision.py."""

from __future__ import annotations

import json

import httpx
import pytest
from dashscope import Generation

from moonserve.accounts.ledger import Ledger
from moonserve.accounts.store import Store

MODEL = "kimi/kimi-k2.6"
PATH = "/api/v1/services/aigc/text-generation/generation"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def scripted(scripted_kimi):
    return scripted_kimi


def call(server, **kw):
    """`Generation.call` against `server`, as a user points the SDK at it (`base_http_api_url`)."""
    kw.setdefault("api_key", server.key)
    return Generation.call(model=kw.pop("model", MODEL), base_address=f"{server.url}/api/v1", **kw)


def ledger_row(server, request_id: str) -> dict:
    rows = Ledger(Store(f"sqlite:///{server.home / 'moonserve.db'}").engine).records()
    return next(r for r in rows if r["request_id"] == request_id)


def test_a_plain_call_in_the_message_format(server):
    r = call(server, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1+1?"}],
             result_format="message", enable_thinking=False, max_tokens=30)
    assert r.status_code == 200, r.message
    choice = r.output.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length") and "reasoning_content" not in choice.message
    u = r.usage
    assert u.input_tokens > 0 and 0 < u.output_tokens <= 30 and u.total_tokens == u.input_tokens + u.output_tokens
    assert u.output_tokens_details["reasoning_tokens"] == 0 and u.prompt_tokens_details["cached_tokens"] >= 0
    row = ledger_row(server, r.request_id)
    assert row["protocol"] == "dashscope" and row["status"] == 200
    assert (row["prompt_tokens"], row["completion_tokens"]) == (u.input_tokens, u.output_tokens)


def test_the_text_format_and_a_prompt(server):
    r = call(server, prompt="Name a colour.", result_format="text", enable_thinking=False, max_tokens=10)
    assert r.status_code == 200, r.message
    assert r.output.text.strip() and r.output.finish_reason in ("stop", "length") and r.output.choices is None
    # text has no room for reasoning: a thinking call is refused, naming the field
    refused = call(server, prompt="Name a colour.", result_format="text", enable_thinking=True)
    assert refused.status_code == 400 and refused.code == "InvalidParameter"
    assert "parameters.result_format" in refused.message


def test_thinking_streamed_incrementally(scripted):
    events = list(call(scripted, messages=[{"role": "user", "content": "What is 1+1? 1"}], result_format="message",
                       stream=True, incremental_output=True))
    assert all(e.status_code == 200 for e in events), events[-1]
    messages = [e.output.choices[0].message for e in events]
    assert "".join(m.get("reasoning_content", "") for m in messages) == "The user asks a question."
    assert "".join(m.content for m in messages) == "The answer is 2."
    assert [e.output.choices[0].finish_reason for e in events[:-1]] == ["null"] * (len(events) - 1)
    assert events[-1].output.choices[0].finish_reason == "stop"
    assert events[-1].usage.output_tokens_details["reasoning_tokens"] > 0
    assert events[0].usage.input_tokens == events[-1].usage.input_tokens  # the usage so far, in every event


def test_a_stream_without_incremental_output_carries_the_output_so_far(scripted):
    # the SDK asks for the increments and merges them itself; a client without it gets the output so far
    body = {"model": MODEL, "input": {"messages": [{"role": "user", "content": "What is 1+1? 1"}]},
            "parameters": {"result_format": "message"}}
    with httpx.stream("POST", f"{scripted.url}{PATH}", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {scripted.key}", "X-DashScope-SSE": "enable"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[:3] == ["id:1", "event:result", ":HTTP_STATUS/200"]
    data = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    contents = [d["output"]["choices"][0]["message"]["content"] for d in data]
    assert all(b.startswith(a) for a, b in zip(contents, contents[1:])) and contents[-1] == "The answer is 2."
    assert data[-1]["output"]["choices"][0]["message"]["reasoning_content"] == "The user asks a question."
    # and through the SDK, which merges
    events = list(call(scripted, messages=[{"role": "user", "content": "What is 1+1? 1"}], result_format="message",
                       stream=True, incremental_output=False))
    assert events[-1].output.choices[0].message.content == "The answer is 2."


@pytest.mark.parametrize("streamed", [False, True])
def test_a_tool_loop(scripted, streamed):
    messages = [{"role": "user", "content": "What is the weather in Beijing? 2"}]
    kw = dict(tools=[WEATHER], result_format="message")
    if streamed:
        events = list(call(scripted, messages=messages, stream=True, incremental_output=True, **kw))
        pieces = [p for e in events for p in e.output.choices[0].message.get("tool_calls") or []]
        assert pieces[0]["id"] == "functions.get_weather:0" and pieces[0]["function"]["name"] == "get_weather"
        arguments = "".join(p["function"]["arguments"] for p in pieces)
        assert json.loads(arguments) == {"city": "Beijing"}
        assert events[-1].output.choices[0].finish_reason == "tool_calls"
        reasoning = "".join(e.output.choices[0].message.get("reasoning_content", "") for e in events)
        tool_calls = [{"id": pieces[0]["id"], "type": "function",
                       "function": {"name": "get_weather", "arguments": arguments}}]
        content = "".join(e.output.choices[0].message.content for e in events)
    else:
        r = call(scripted, messages=messages, **kw)
        assert r.status_code == 200, r.message
        choice = r.output.choices[0]
        assert choice.finish_reason == "tool_calls"
        tool_calls, reasoning, content = choice.message.tool_calls, choice.message.reasoning_content, choice.message.content
        assert json.loads(tool_calls[0]["function"]["arguments"]) == {"city": "Beijing"}
    messages += [{"role": "assistant", "content": content, "reasoning_content": reasoning, "tool_calls": tool_calls},
                 {"role": "tool", "tool_call_id": tool_calls[0]["id"], "name": "get_weather", "content": "Sunny~"}]
    final = call(scripted, messages=messages, **kw)
    assert final.status_code == 200, final.message
    assert final.output.choices[0].message.content == "It is sunny in Beijing."


def test_refusals_in_dashscope_shape(server):
    hi = [{"role": "user", "content": "Hi"}]
    bad_key = call(server, api_key="sk-not-a-key", messages=hi)
    assert (bad_key.status_code, bad_key.code) == (401, "InvalidApiKey") and bad_key.request_id
    unknown = call(server, model="kimi/no-such-model", messages=hi)
    assert (unknown.status_code, unknown.code) == (404, "ModelNotFound")
    bad_value = call(server, messages=hi, max_tokens=0)
    assert (bad_value.status_code, bad_value.code) == (400, "InvalidParameter")
    assert "parameters.max_tokens" in bad_value.message
    bad_part = call(server, messages=[{"role": "user", "content": [{"audio": "https://x/a.wav"}]}])
    assert bad_part.status_code == 400 and "input.messages[0].content[0]" in bad_part.message
    headers = {"Authorization": f"Bearer {server.key}"}
    for body, where in (({"model": MODEL}, "input"), ({"model": MODEL, "input": {"messages": []}}, "input.messages"),
                        ({"model": MODEL, "input": {"prompt": "Hi"}, "parameters": {"result_format": "xml"}},
                         "parameters.result_format")):
        r = httpx.post(f"{server.url}{PATH}", json=body, headers=headers, timeout=30)
        assert r.status_code == 400 and set(r.json()) == {"code", "message", "request_id"}, r.text
        assert r.json()["code"] == "InvalidParameter" and where in r.json()["message"]
    r = httpx.post(f"{server.url}{PATH}", content=b"{not json", headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"


def test_parameters_without_effect_are_named(server):
    body = {"model": MODEL, "input": {"prompt": "Hi"},
            "parameters": {"enable_search": True, "max_tokens": 3, "enable_thinking": False, "temperature": 0.3}}
    r = httpx.post(f"{server.url}{PATH}", json=body, headers={"Authorization": f"Bearer {server.key}"}, timeout=60)
    assert r.status_code == 200, r.text
    ignored = r.headers["X-Moonserve-Ignored-Params"].split(",")
    assert "parameters.enable_search" in ignored and "temperature" in ignored


def test_the_context_cache_discount_is_reported(server):
    system = "You answer questions about the solar system. " * 40  # past the card's 256-token minimum
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Name a planet."}]
    call(server, messages=messages, enable_thinking=False, max_tokens=3, result_format="message")
    again = call(server, messages=messages, enable_thinking=False, max_tokens=3, result_format="message")
    assert again.usage.prompt_tokens_details["cached_tokens"] >= 256
