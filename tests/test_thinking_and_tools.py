"""Thinking mode and tool calling through a real server, the real engine, and the openai client.

The model is the scripted GGUF of `scripted_model.py`: the last character of the conversation picks
what it writes (reasoning, Kimi K2 or Hermes tool calls). Routes: k2.6 and k2.7-code -> Kimi K2
format; k2.5 -> Hermes format; k2.7-code-highspeed -> a template that pre-fills `<think>`.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from moonserve.testing.server import start_server
from scripted_model import TEMPLATE_PREFILL, write_scripted_model

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    d = tmp_path_factory.mktemp("scripted")
    gguf = write_scripted_model(d / "scripted.gguf")
    (d / "prefill.jinja").write_text(TEMPLATE_PREFILL)
    common = f'model = "{gguf}"\ncontext_length = 1024\nmax_sequences = 2\nreasoning_parser = "think"\n'
    config = (
        f'[deployments.scripted]\n{common}tool_parser = "kimi_k2"\n'
        f'[deployments.scripted_hermes]\n{common}tool_parser = "hermes"\n'
        f'[deployments.scripted_prefill]\n{common}tool_parser = "kimi_k2"\nchat_template = "{d / "prefill.jinja"}"\n'
        '[models."kimi/kimi-k2.6"]\ndeployment = "scripted"\n'
        '[models."kimi/kimi-k2.7-code"]\ndeployment = "scripted"\n'
        '[models."kimi/kimi-k2.5"]\ndeployment = "scripted_hermes"\n'
        '[models."kimi/kimi-k2.7-code-highspeed"]\ndeployment = "scripted_prefill"\n'
    )
    s = start_server(d / "home", config=config)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(scripted) -> openai.OpenAI:
    return scripted.client()


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def stream_parts(client, **kw):
    """Collect a streamed reply the way clients do; also return the raw chunks."""
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    reasoning, content, calls, finish, order = "", "", {}, None, []
    for c in chunks[:-1]:
        delta = c.choices[0].delta
        r = getattr(delta, "reasoning_content", None)
        if r:
            assert delta.content is None, "a reasoning chunk has content: null"
            reasoning += r
            order.append("reasoning")
        if delta.content:
            content += delta.content
            order.append("content")
        for tc in delta.tool_calls or ():
            call = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                call["id"], call["name"] = tc.id, tc.function.name
                assert tc.type == "function"
            call["arguments"] += tc.function.arguments or ""
            order.append("tool")
        finish = c.choices[0].finish_reason or finish
    return reasoning, content, [calls[i] for i in sorted(calls)], finish, chunks[-1].usage, order


# -- thinking -------------------------------------------------------------------------------------

def test_reasoning_content_and_reasoning_tokens(client):
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("What is 1+1? 1"),
                                       extra_body={"enable_thinking": True})
    msg = r.choices[0].message
    assert msg.reasoning_content == "The user asks a question."
    assert msg.content == "The answer is 2."
    assert r.choices[0].finish_reason == "stop"
    # <think> + 3 pieces + </think> are reasoning; 2 answer pieces and the end token are text
    assert r.usage.completion_tokens_details.reasoning_tokens == 5
    assert r.usage.completion_tokens == 8
    assert r.usage.completion_tokens_details.text_tokens == 3


def test_stream_sends_reasoning_first_then_content(client):
    reasoning, content, calls, finish, usage, order = stream_parts(
        client, model="kimi/kimi-k2.6", messages=user("What is 1+1? 1"), extra_body={"enable_thinking": True})
    assert reasoning == "The user asks a question." and content == "The answer is 2." and calls == []
    assert order == sorted(order, key=lambda k: k != "reasoning"), "all reasoning before any content"
    assert finish == "stop" and usage.completion_tokens_details.reasoning_tokens == 5


def test_moonshot_thinking_switch_is_accepted(client):
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("hi 1"),
                                       extra_body={"thinking": {"type": "enabled"}})
    assert r.choices[0].message.reasoning_content == "The user asks a question."
    bad = httpx.post(f"{client.base_url}chat/completions", headers={"Authorization": f"Bearer {client.api_key}"},
                     json={"model": "kimi/kimi-k2.6", "messages": user("hi 1"), "enable_thinking": True,
                           "thinking": {"type": "disabled"}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "enable_thinking"


def test_generation_that_starts_inside_a_prefilled_think_block(client):
    r = client.chat.completions.create(model="kimi/kimi-k2.7-code-highspeed", messages=user("Go."))
    assert r.choices[0].message.reasoning_content == "The user asks a question."
    assert r.choices[0].message.content == "The answer is 2."


def test_max_tokens_bounds_the_answer_and_max_completion_tokens_both(client):
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("long 5"), max_tokens=3)
    msg = r.choices[0].message
    assert msg.reasoning_content.split() == [f"step{i}" for i in range(20)]
    assert msg.content.split() == ["word0", "word1", "word2"]
    assert r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("long 5"), max_completion_tokens=10)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 10
    assert r.choices[0].message.reasoning_content.split() == [f"step{i}" for i in range(8)]
    assert r.choices[0].message.content == ""


# -- tool calls -----------------------------------------------------------------------------------

def test_kimi_tool_call(client):
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("Weather in Beijing? 2"),
                                       tools=[WEATHER_TOOL])
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.reasoning_content == "I should call get_weather."
    assert choice.message.content == "Let me check."
    (call,) = choice.message.tool_calls
    assert call.id == "functions.get_weather:0" and call.type == "function"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Beijing"}


def test_streamed_tool_call_first_chunk_carries_id_type_and_name(scripted):
    body = {"model": "kimi/kimi-k2.6", "messages": user("Weather? 2"), "tools": [WEATHER_TOOL], "stream": True}
    with httpx.stream("POST", f"{scripted.base_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {scripted.key}"}) as r:
        pieces = [json.loads(line[6:])["choices"][0]["delta"]["tool_calls"][0]
                  for line in r.iter_lines()
                  if line.startswith("data: {") and '"tool_calls":[' in line]
    first, rest = pieces[0], pieces[1:]
    assert first["index"] == 0 and first["id"] == "functions.get_weather:0" and first["type"] == "function"
    assert first["function"]["name"] == "get_weather"
    assert len(rest) >= 2, "arguments come in pieces"
    assert all(set(p) == {"index", "function"} and set(p["function"]) == {"arguments"} for p in rest)
    assert json.loads(first["function"]["arguments"] + "".join(p["function"]["arguments"] for p in rest)) == \
        {"city": "Beijing"}


@pytest.mark.parametrize("stream", [False, True])
def test_multi_turn_thinking_and_tool_loop(client, stream):
    """The loop agent frameworks run: call, run the tool, send its result with the assistant turn
    replayed (reasoning_content included), get the answer."""
    messages = [{"role": "user", "content": "What's the weather in Beijing? 2"}]
    if stream:
        reasoning, content, calls, finish, _, _ = stream_parts(client, model="kimi/kimi-k2.6", messages=messages,
                                                               tools=[WEATHER_TOOL])
        tool_calls = [{"id": c["id"], "type": "function",
                       "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
    else:
        r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=messages, tools=[WEATHER_TOOL])
        reasoning, content, finish = r.choices[0].message.reasoning_content, r.choices[0].message.content, \
            r.choices[0].finish_reason
        tool_calls = [tc.model_dump() for tc in r.choices[0].message.tool_calls]
    assert finish == "tool_calls" and len(tool_calls) == 1
    messages.append({"role": "assistant", "content": content, "reasoning_content": reasoning,
                     "tool_calls": tool_calls})
    messages.append({"role": "tool", "tool_call_id": tool_calls[0]["id"], "content": "sunny, 25 C ~"})
    if stream:
        reasoning, content, calls, finish, usage, _ = stream_parts(client, model="kimi/kimi-k2.6",
                                                                   messages=messages, tools=[WEATHER_TOOL])
    else:
        r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=messages, tools=[WEATHER_TOOL])
        reasoning, content, finish = r.choices[0].message.reasoning_content, r.choices[0].message.content, \
            r.choices[0].finish_reason
    assert (reasoning, content, finish) == ("The tool says sunny.", "It is sunny in Beijing.", "stop")


def test_tool_call_without_reasoning_content_is_refused_in_thinking_mode(scripted):
    messages = [
        {"role": "user", "content": "Weather? 2"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "functions.get_weather:0", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Beijing\"}"}}]},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sunny ~"},
    ]
    r = httpx.post(f"{scripted.base_url}/chat/completions", headers={"Authorization": f"Bearer {scripted.key}"},
                   json={"model": "kimi/kimi-k2.6", "messages": messages, "tools": [WEATHER_TOOL]})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == \
        "thinking is enabled but reasoning_content is missing in assistant tool call message at index 1"
    # the same history is fine in non-thinking mode
    ok = httpx.post(f"{scripted.base_url}/chat/completions", headers={"Authorization": f"Bearer {scripted.key}"},
                    json={"model": "kimi/kimi-k2.6", "messages": messages, "tools": [WEATHER_TOOL],
                          "enable_thinking": False})
    assert ok.status_code == 200


def test_parallel_tool_calls_default_to_one(client):
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("Two cities 4"), tools=[WEATHER_TOOL])
    assert [tc.id for tc in r.choices[0].message.tool_calls] == ["functions.get_weather:1"]
    assert r.choices[0].finish_reason == "tool_calls"
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("Two cities 4"), tools=[WEATHER_TOOL],
                                       parallel_tool_calls=True)
    calls = r.choices[0].message.tool_calls
    assert [tc.id for tc in calls] == ["functions.get_weather:1", "functions.get_weather:2"]
    assert [json.loads(tc.function.arguments)["city"] for tc in calls] == ["Oslo", "Rome"]


def test_hermes_tool_call(client):
    r = client.chat.completions.create(model="kimi/kimi-k2.5", messages=user("Weather in Paris? 3"),
                                       tools=[WEATHER_TOOL])
    (call,) = r.choices[0].message.tool_calls
    assert call.id == "functions.get_weather:0" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls" and not r.choices[0].message.content


def test_tool_choice_in_thinking_mode_is_auto_or_none(scripted, client):
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = httpx.post(f"{scripted.base_url}/chat/completions", headers={"Authorization": f"Bearer {scripted.key}"},
                       json={"model": "kimi/kimi-k2.6", "messages": user("x 2"), "tools": [WEATHER_TOOL],
                             "tool_choice": choice})
        assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"
    # "none": tools are not offered, no call is parsed
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("What is 1+1? 1"),
                                       tools=[WEATHER_TOOL], tool_choice="none")
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content == "The answer is 2."


@pytest.mark.parametrize("model, expected_city", [("kimi/kimi-k2.6", "Beijing"), ("kimi/kimi-k2.5", "Rome")])
def test_named_tool_choice_forces_the_call_in_non_thinking_mode(client, model, expected_city):
    r = client.chat.completions.create(
        model=model, messages=user("Tell me something."), tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, extra_body={"enable_thinking": False})
    (call,) = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": expected_city}
    assert r.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("tools, param", [
    ([{"type": "function", "function": {"name": "bad name!"}}], "tools[0].function.name"),
    ([{"type": "retrieval", "function": {"name": "x"}}], "tools[0].type"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}], "tools[0].function.parameters"),
    ([WEATHER_TOOL, WEATHER_TOOL], "tools[1].function.name"),
    ([{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)], "tools"),
])
def test_invalid_tools_are_refused_naming_the_field(scripted, tools, param):
    r = httpx.post(f"{scripted.base_url}/chat/completions", headers={"Authorization": f"Bearer {scripted.key}"},
                   json={"model": "kimi/kimi-k2.6", "messages": user("x"), "tools": tools})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


# -- preserve_thinking ----------------------------------------------------------------------------

HISTORY = [
    {"role": "user", "content": "First question"},
    {"role": "assistant", "content": "First answer", "reasoning_content": "Some careful earlier reasoning here."},
    {"role": "user", "content": "What is 1+1? 1"},
]


def prompt_tokens(client, model, **extra) -> int:
    return client.chat.completions.create(model=model, messages=HISTORY, extra_body=extra).usage.prompt_tokens


def test_preserve_thinking_puts_earlier_reasoning_back_as_input(client):
    off = prompt_tokens(client, "kimi/kimi-k2.6")  # k2.6: off by default
    on = prompt_tokens(client, "kimi/kimi-k2.6", preserve_thinking=True)
    assert on > off + 5, "kept reasoning counts as input tokens"
    assert prompt_tokens(client, "kimi/kimi-k2.6", thinking={"type": "enabled", "keep": "all"}) == on
    assert prompt_tokens(client, "kimi/kimi-k2.7-code") == on  # k2.7-code: on by default
    assert prompt_tokens(client, "kimi/kimi-k2.7-code", preserve_thinking=False) == off


def test_preserve_thinking_is_ignored_by_k2_5_and_says_so(scripted):
    r = httpx.post(f"{scripted.base_url}/chat/completions", headers={"Authorization": f"Bearer {scripted.key}"},
                   json={"model": "kimi/kimi-k2.5", "messages": HISTORY, "preserve_thinking": True})
    assert r.status_code == 200 and "preserve_thinking" in r.headers["x-moonserve-ignored-params"]


def test_reasoning_in_the_current_tool_loop_is_always_kept(client):
    loop = [
        {"role": "user", "content": "Weather? 2"},
        {"role": "assistant", "content": "", "reasoning_content": "I need the weather tool for this question.",
         "tool_calls": [{"id": "functions.get_weather:0", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "sunny ~"},
    ]
    without = [dict(m) for m in loop]
    without[1] = {k: v for k, v in loop[1].items() if k != "reasoning_content"}
    kept = client.chat.completions.create(model="kimi/kimi-k2.6", messages=loop, tools=[WEATHER_TOOL],
                                          extra_body={"enable_thinking": False}).usage.prompt_tokens
    bare = client.chat.completions.create(model="kimi/kimi-k2.6", messages=without, tools=[WEATHER_TOOL],
                                          extra_body={"enable_thinking": False}).usage.prompt_tokens
    assert kept > bare + 5  # preserve_thinking is off for k2.6, yet the loop's reasoning stays


# -- response_format ------------------------------------------------------------------------------

def test_json_after_reasoning_in_thinking_mode(client):
    r = client.chat.completions.create(model="kimi/kimi-k2.6", messages=user("JSON please 6"),
                                       response_format={"type": "json_object"})
    assert r.choices[0].message.reasoning_content == "JSON it is."
    assert json.loads(r.choices[0].message.content) == {"answer": 42}


@pytest.mark.parametrize("thinking", [False, True])
def test_json_object_and_json_schema_are_enforced_on_a_real_model(server, thinking):
    """SmolLM2 (the default deployment): without thinking the grammar constrains the whole reply;
    with (guided) thinking, the answer after the reasoning."""
    c = server.client()
    if not thinking:  # (a free-form object after reasoning may run past max_tokens: a truncated reply)
        # A free-form object may also run past max_tokens (which seed closes it depends on the kernels'
        # last bits): every reply is an object, cut or whole, and the first few seeds close one.
        closed = []
        for seed in range(1, 7):
            r = c.chat.completions.create(model="kimi/kimi-k2.6", max_tokens=200, seed=seed,
                                          extra_body={"enable_thinking": False}, messages=user("Describe a cat as JSON."),
                                          response_format={"type": "json_object"})
            content = r.choices[0].message.content
            assert content.lstrip().startswith("{"), content
            if r.choices[0].finish_reason == "stop":
                closed.append(json.loads(content))
                break
        assert closed and isinstance(closed[0], dict)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = c.chat.completions.create(model="kimi/kimi-k2.6", max_tokens=200, seed=4, extra_body={"enable_thinking": thinking},
                                  messages=user("Invent a person."),
                                  response_format={"type": "json_schema",
                                                   "json_schema": {"name": "person", "schema": schema}})
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    assert bool(getattr(r.choices[0].message, "reasoning_content", None)) == thinking


@pytest.mark.parametrize("schema", [
    {"type": 12},  # not a JSON schema
    {"$ref": "https://example.invalid/schema.json"},  # valid, but never fetched by the server
    {"type": "string", "pattern": "(?<=a)b"},  # valid, but no grammar can enforce it
])
def test_invalid_or_unenforceable_response_format_schema_is_a_400(server, schema):
    r = httpx.post(f"{server.base_url}/chat/completions", headers={"Authorization": f"Bearer {server.key}"},
                   json={"model": "kimi/kimi-k2.6", "messages": user("x"),
                         "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "response_format.json_schema.schema"


def test_a_tool_call_without_reasoning_in_thinking_mode_can_be_sent_back_unchanged(client):
    """The model calls a tool without reasoning (scenario 3) in thinking mode (k2.5's default): the
    reply carries reasoning_content "" so that the SDK's own message, sent back as it came, passes
    the thinking-mode rule for tool-call messages."""
    messages = user("Weather in Paris? 3")
    r = client.chat.completions.create(model="kimi/kimi-k2.5", messages=messages, tools=[WEATHER_TOOL])
    m = r.choices[0].message
    assert m.tool_calls and m.reasoning_content == ""
    messages += [m.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "Sunny~"}]
    r = client.chat.completions.create(model="kimi/kimi-k2.5", messages=messages, tools=[WEATHER_TOOL])
    assert r.choices[0].message.content == "It is sunny in Beijing."
    # the same through a stream, accumulated as the SDK's helper does
    with client.chat.completions.stream(model="kimi/kimi-k2.5", messages=user("Weather in Paris? 3"),
                                             tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion().choices[0].message
    assert final.tool_calls and getattr(final, "reasoning_content", None) == ""
