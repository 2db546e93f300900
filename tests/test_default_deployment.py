"""The default deployment (SmolLM2-135M behind the Kimi ids) as a new user meets it (issue 11):
the guide's first call answers in seconds with reasoning and an answer, nothing runs on for
minutes unasked, forced tool calls are valid against their schema, and every reply can be sent
back as it came."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest

MODEL = "kimi/kimi-k2.6"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
BOOKING = {"type": "function", "function": {
    "name": "book_table", "description": "Book a table at a restaurant",
    "parameters": {"type": "object", "properties": {
        "restaurant": {"type": "string", "maxLength": 40},
        "people": {"type": "integer", "minimum": 1, "maximum": 12},
        "time": {"type": "string", "enum": ["18:00", "19:00", "20:00"]},
        "notes": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["restaurant", "people", "time"], "additionalProperties": False}}}


def ask(client, text, **kw):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], **kw)


def test_the_guides_first_call_answers_in_seconds_with_reasoning_then_an_answer(client):
    for _ in range(3):
        t0 = time.monotonic()
        r = ask(client, "What is 1+1?", extra_body={"enable_thinking": True})
        elapsed = time.monotonic() - t0
        m = r.choices[0].message
        assert elapsed < 10, elapsed
        assert m.reasoning_content.strip() and m.content.strip(), m
        assert r.choices[0].finish_reason == "stop"
        assert 0 < r.usage.completion_tokens_details.reasoning_tokens < r.usage.completion_tokens


def test_streamed_thinking_sends_reasoning_first_then_the_answer(client):
    kinds = []
    for chunk in ask(client, "What is 1+1?", stream=True, extra_body={"enable_thinking": True}):
        d = chunk.choices[0].delta if chunk.choices else None
        if d is not None and getattr(d, "reasoning_content", None):
            kinds.append("r")
        elif d is not None and d.content:
            kinds.append("c")
    assert kinds and kinds[0] == "r" and "c" in kinds
    assert kinds == sorted(kinds, reverse=True)  # all reasoning before any answer


def test_nothing_runs_on_for_minutes_unasked(client):
    t0 = time.monotonic()
    r = ask(client, "Write a very long story about the sea.", extra_body={"enable_thinking": False})
    assert r.usage.completion_tokens <= 512 and time.monotonic() - t0 < 30
    # the deployment's cap holds whatever a call asks for (coding agents ask for 32,000)
    r = ask(client, "Write a very long story about the sea.", max_tokens=32000, extra_body={"enable_thinking": False})
    assert r.usage.completion_tokens <= 512 and time.monotonic() - t0 < 60
    assert r.choices[0].finish_reason in ("stop", "length")


def test_non_thinking_replies_carry_no_reasoning(client):
    r = ask(client, "What is 1+1?", extra_body={"enable_thinking": False})
    assert r.choices[0].message.content.strip()
    assert getattr(r.choices[0].message, "reasoning_content", None) is None
    for chunk in ask(client, "What is 1+1?", stream=True, extra_body={"enable_thinking": False}):
        if chunk.choices:
            assert getattr(chunk.choices[0].delta, "reasoning_content", None) is None


@pytest.mark.parametrize("tool, choice", [
    (WEATHER, "required"),
    (BOOKING, "required"),
    (BOOKING, {"type": "function", "function": {"name": "book_table"}}),
])
def test_a_forced_tool_call_is_always_a_valid_call(client, tool, choice):
    question = ("Book a table for four at Luigi's at seven." if tool is BOOKING else "Weather in Paris?")
    for seed in range(3):
        r = ask(client, question, tools=[WEATHER, BOOKING], tool_choice=choice, seed=seed,
                extra_body={"enable_thinking": False})
        assert r.choices[0].finish_reason == "tool_calls"
        (call,) = r.choices[0].message.tool_calls
        assert call.id == f"functions.{call.function.name}:0"
        schema = {WEATHER["function"]["name"]: WEATHER, BOOKING["function"]["name"]: BOOKING}[call.function.name]
        jsonschema.validate(json.loads(call.function.arguments), schema["function"]["parameters"])
        if isinstance(choice, dict):
            assert call.function.name == "book_table"


def test_a_streamed_forced_call_and_its_result_rendered_back(client):
    chunks = list(ask(client, "Weather in Paris?", tools=[WEATHER], tool_choice="required", stream=True,
                      extra_body={"enable_thinking": False}))
    pieces = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert pieces[0].id == "functions.get_weather:0" and pieces[0].function.name == "get_weather"
    args = json.loads("".join(p.function.arguments or "" for p in pieces))
    assert isinstance(args["city"], str)
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": pieces[0].id, "type": "function",
                     "function": {"name": "get_weather", "arguments": json.dumps(args)}}]},
                {"role": "tool", "tool_call_id": pieces[0].id, "content": "Sunny, 21 degrees"}]
    # an answer from the result (SmolLM2 at its temperature can also ramble on to the deployment's
    # max_output_tokens: a few seeds, one of which ends its answer)
    endings = []
    for seed in range(4):
        r = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], seed=seed,
                                           extra_body={"enable_thinking": False})
        assert r.choices[0].message.content.strip()
        endings.append(r.choices[0].finish_reason)
        if endings[-1] == "stop":
            break
    assert endings[-1] == "stop", endings


def test_a_thinking_reply_always_carries_reasoning_content(client):
    m = ask(client, "What is 1+1?", extra_body={"enable_thinking": True}).choices[0].message
    assert isinstance(m.reasoning_content, str)
    # streamed: the reasoning_content field comes first even when there is no reasoning to send
    chunks = list(ask(client, "Hi", stream=True, max_tokens=5, extra_body={"enable_thinking": True}))
    assert any(c.choices and getattr(c.choices[0].delta, "reasoning_content", None) is not None for c in chunks)
