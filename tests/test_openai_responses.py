"""The OpenAI Responses protocol through real servers with the real `openai` SDK (`client.responses`):
plain and streamed calls and a json_schema answer on the default model; thinking, a
previous_response_id chain and a function tool loop on the scripted model (a question ending in "1"
gets reasoning and an answer, "2" reasoning and a get_weather call, a tool result ending in "~" the
answer from it)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import openai
import pytest
from sqlalchemy import func, select

from moonserve.accounts.ledger import Ledger
from moonserve.accounts.store import Store
from moonserve.accounts.schema import stored_responses
from moonserve.accounts.stored_responses import StoredResponses

MODEL = "kimi/kimi-k2.6"
BASE = "/api/v2/apps/protocols/compatible-mode/v1"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def sdk(server, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}{BASE}", api_key=kw.pop("api_key", server.key), max_retries=0, **kw)


@pytest.fixture(scope="module")
def scripted(scripted_kimi):
    return scripted_kimi


def store_of(server) -> Store:
    return Store(f"sqlite:///{server.home / 'moonserve.db'}")


def ledger_row(server, response_id: str) -> dict:
    rows = Ledger(store_of(server).engine).records()
    return next(r for r in rows if response_id == "resp_" + r["request_id"].replace("-", ""))


def test_a_plain_response(server):
    r = sdk(server).responses.create(model=MODEL, instructions="Be brief.", input="What is 1+1?",
                                     max_output_tokens=40, extra_body={"enable_thinking": False})
    assert r.object == "response" and r.id.startswith("resp_") and r.model == MODEL
    assert r.status in ("completed", "incomplete") and r.instructions == "Be brief."
    assert [item.type for item in r.output] == ["message"]
    assert r.output_text.strip() and r.output_text == r.output[0].content[0].text
    u = r.usage
    assert u.input_tokens > 0 and 0 < u.output_tokens <= 40 and u.total_tokens == u.input_tokens + u.output_tokens
    assert u.output_tokens_details.reasoning_tokens == 0 and u.input_tokens_details.cached_tokens >= 0
    row = ledger_row(server, r.id)
    assert row["protocol"] == "responses" and row["status"] == 200
    assert (row["prompt_tokens"], row["completion_tokens"]) == (u.input_tokens, u.output_tokens)
    assert sdk(server).responses.retrieve(r.id).output_text == r.output_text  # stored by default
    usage = httpx.get(f"{server.base_url}/usage", params={"by": "protocol"},
                      headers={"Authorization": f"Bearer {server.key}"}).json()["data"]
    assert next(g for g in usage if g["group"] == "responses")["requests"] >= 1


def test_a_streamed_response_sends_the_events_in_order(server):
    events = list(sdk(server).responses.create(model=MODEL, input="Say hello.", max_output_tokens=200, stream=True))
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    # SmolLM2 thinks by default here (guided reasoning): a reasoning item, then the message
    assert [e.item.type for e in events if e.type == "response.output_item.added"] == ["reasoning", "message"]
    for done in ("response.reasoning_summary_text.done", "response.output_text.done", "response.content_part.done"):
        assert done in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text and final.output_text == text
    assert final.output[0].summary[0].text == "".join(
        e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert final.usage.output_tokens_details.reasoning_tokens > 0


def test_the_sdk_stream_helper(scripted):
    # the helper needs `response.completed`, so the answer must end by itself: the scripted model's does
    # (SmolLM2's may run past any bound and end `response.incomplete`, as it should)
    with sdk(scripted).responses.stream(model=MODEL, input="What is 1+1? 1", max_output_tokens=200) as s:
        text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert text == "The answer is 2." and final.output_text == text and final.status == "completed"


def test_a_json_schema_answer(server):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}
    r = sdk(server).responses.create(model=MODEL, input="What is 2+2? Answer in JSON.", max_output_tokens=60,
                                     extra_body={"enable_thinking": False},
                                     text={"format": {"type": "json_schema", "name": "sum", "schema": schema,
                                                      "strict": True}})
    assert isinstance(json.loads(r.output_text)["answer"], int)


def test_reasoning_and_a_previous_response_id_chain(scripted):
    client = sdk(scripted)
    first = client.responses.create(model=MODEL, input="What is 1+1? 1", max_output_tokens=200)
    reasoning, message = first.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "The user asks a question."
    assert message.content[0].text == "The answer is 2." and first.output_text == "The answer is 2."
    assert first.usage.output_tokens_details.reasoning_tokens > 0
    second = client.responses.create(model=MODEL, input="And again? 1", previous_response_id=first.id,
                                      max_output_tokens=200)
    assert second.previous_response_id == first.id and second.output_text == "The answer is 2."
    # the chain sent the first turn: the second prompt holds it, so it is longer by at least that
    assert second.usage.input_tokens > first.usage.input_tokens + 8
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input="More? 1", previous_response_id=first.id)
    assert e.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize("streamed", [False, True])
def test_a_function_tool_loop(scripted, streamed):
    client = sdk(scripted)
    kw = dict(model=MODEL, tools=[WEATHER], max_output_tokens=300)
    if streamed:
        with client.responses.stream(input="What is the weather in Beijing? 2", **kw) as s:
            arguments = "".join(e.delta for e in s if e.type == "response.function_call_arguments.delta")
            first = s.get_final_response()
        assert json.loads(arguments) == {"city": "Beijing"}
    else:
        first = client.responses.create(input="What is the weather in Beijing? 2", **kw)
    assert [item.type for item in first.output] == ["reasoning", "message", "function_call"]
    call = first.output[2]
    assert call.call_id == "functions.get_weather:0" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Beijing"} and call.status == "completed"
    # the client keeps the conversation itself: the items come back as input
    items = [{"role": "user", "content": "What is the weather in Beijing? 2"}, *[i.model_dump() for i in first.output],
             {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny~"}]
    final = client.responses.create(input=items, **kw)
    assert final.output_text == "It is sunny in Beijing."
    listed = client.responses.input_items.list(final.id, order="asc", limit=2)
    assert [i.type for i in listed.data] == ["message", "reasoning"] and listed.has_more
    assert [i.type for i in listed] == ["message", "reasoning", "message", "function_call", "function_call_output"]
    assert listed.data[0].content[0].text == "What is the weather in Beijing? 2"
    # or chains on the stored response
    chained = client.responses.create(previous_response_id=first.id, **kw, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny~"}])
    assert chained.output_text == "It is sunny in Beijing."


def test_stored_responses_are_scoped_to_the_workspace_and_expire(server):
    client = sdk(server)
    r = client.responses.create(model=MODEL, input="Hi", max_output_tokens=5, extra_body={"enable_thinking": False})
    unstored = client.responses.create(model=MODEL, input="Hi", max_output_tokens=5, store=False,
                                       extra_body={"enable_thinking": False})
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    store = store_of(server)
    ws = "responses-other"
    store.ensure_workspace(ws)
    store.activate(ws, MODEL)
    _, other_secret = store.create_key(ws, "cn-beijing")
    with pytest.raises(openai.NotFoundError) as e:
        sdk(server, api_key=other_secret).responses.retrieve(r.id)
    assert e.value.body["code"] == "NotFound"
    with pytest.raises(openai.BadRequestError):
        sdk(server, api_key=other_secret).responses.create(model=MODEL, input="Hi", previous_response_id=r.id)
    # past its retention, a response is gone; a save sweeps the expired rows away
    expired = StoredResponses(store.engine, timedelta(seconds=-1))
    expired._swept_at = time.monotonic()  # no sweep on this save
    expired.save("default", {**r.model_dump(), "id": "resp_expired"}, [], [])
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_expired")
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(stored_responses)).scalar() >= 1
    assert StoredResponses(store.engine, timedelta(days=1)).purge() >= 1
    with store.engine.connect() as conn:
        assert conn.execute(select(stored_responses.c.id).where(stored_responses.c.id == "resp_expired")).first() is None
    assert client.responses.retrieve(r.id).id == r.id


def test_errors_name_the_responses_fields(server):
    client = sdk(server)
    cases = [
        (dict(input="Hi", tools=[{"type": "frobnicator"}]), "tools[0].type"),
        (dict(input="Hi", max_output_tokens=0), "max_output_tokens"),
        (dict(input=[{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]),
         "input[0].content[0].type"),
        (dict(input="Hi", text={"format": {"type": "json_schema", "name": "x",
                                           "schema": {"type": "string", "maxLength": 100000}}}), "text.format"),
        (dict(input="Hi", tools=[{**WEATHER, "name": "bad name!"}]), "tools[0].name"),
        (dict(input="Hi", truncation="auto"), "truncation"),
        (dict(input=[{"role": "user", "content": "Hi"}, {"type": "function_call", "call_id": "c", "name": "f",
                                                         "arguments": "{}"}], extra_body={"enable_thinking": True}),
         "function_call at input[1]"),
    ]
    for kw, field in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.responses.create(model=MODEL, **kw)
        assert field in e.value.body["message"] and e.value.body["param"].startswith(field.split(".")[0].split(" ")[-1]), e.value.body
        assert e.value.body["code"] == "invalid_parameter_error"
    with pytest.raises(openai.AuthenticationError):
        sdk(server, api_key="sk-wrong").responses.create(model=MODEL, input="Hi")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-nope", input="Hi")
    r = httpx.post(f"{server.url}/v1/responses", headers={"Authorization": f"Bearer {server.key}"},
                   json={"model": MODEL, "input": "Hi", "max_output_tokens": 3, "temperature": 0.3,
                         "enable_thinking": False})
    assert r.status_code == 200 and "temperature" in r.headers["X-Moonserve-Ignored-Params"]
    # the Node SDK sends extra_body literally: its fields count as top-level ones, as in chat
    r = httpx.post(f"{server.url}/v1/responses", headers={"Authorization": f"Bearer {server.key}"},
                   json={"model": MODEL, "input": "Hi", "max_output_tokens": 3, "extra_body": {"enable_thinking": False}})
    assert r.status_code == 200 and [i["type"] for i in r.json()["output"]] == ["message"]


def test_what_codex_sends_is_accepted_and_named(scripted):
    """Codex's request shape: client_metadata and other unknown fields, a namespace of functions,
    a hosted web_search tool, store false with encrypted reasoning; the call comes back as name +
    namespace, and the reasoning as a seal that the next turn sends back."""
    # the namespace "get_" and its function "weather": the model sees (and the scripted model calls)
    # the flat name get_weather
    tools = [{"type": "namespace", "name": "get_", "description": "Weather tools",
              "tools": [{**WEATHER, "name": "weather"}]},
             {"type": "web_search", "external_web_access": False}]
    body = {"model": MODEL, "input": [{"type": "message", "role": "developer", "content": [
                {"type": "input_text", "text": "You are a coding agent."}]},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "What is the weather in Beijing? 2"}]}],
            "tools": tools, "tool_choice": "auto", "parallel_tool_calls": True, "reasoning": {"summary": "auto"},
            "store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "thread-1",
            "client_metadata": {"x-codex-window-id": "w:0"}, "stream": False}
    headers = {"Authorization": f"Bearer {scripted.key}"}
    r = httpx.post(f"{scripted.url}{BASE}/responses", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    ignored = r.headers["X-Moonserve-Ignored-Params"].split(",")
    assert {"client_metadata", "tools[1]", "reasoning.summary", "prompt_cache_key"} <= set(ignored)
    reasoning, message, call = r.json()["output"]
    assert reasoning["type"] == "reasoning" and reasoning["encrypted_content"].startswith("ms1.")
    assert (call["name"], call["namespace"], call["call_id"]) == ("weather", "get_", "functions.get_weather:0")
    # the next turn, stateless: the items as they came, the tool's output after them
    body["input"] += [reasoning, message, call,
                      {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny~"}]
    again = httpx.post(f"{scripted.url}{BASE}/responses", json=body, headers=headers, timeout=60)
    assert again.status_code == 200, again.text
    assert again.json()["output"][-1]["content"][0]["text"] == "It is sunny in Beijing."
    # reasoning that this server did not seal is refused, naming the item
    forged = dict(reasoning, encrypted_content=reasoning["encrypted_content"][:-4] + "AAAA")
    body["input"][2] = forged
    refused = httpx.post(f"{scripted.url}{BASE}/responses", json=body, headers=headers, timeout=60)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input[2].encrypted_content"


def test_a_context_overflow_is_context_length_exceeded_on_input(server):
    with pytest.raises(openai.BadRequestError) as e:
        sdk(server).responses.create(model=MODEL, input="word " * 5000, extra_body={"enable_thinking": False})
    assert e.value.body["code"] == "context_length_exceeded" and e.value.body["param"] == "input"
    assert "context window" in e.value.body["message"]
