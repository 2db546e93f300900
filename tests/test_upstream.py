"""Moonserve in front of real engines on loopback: Moonserve → smg (cache_aware) → 2 × llama-server.

The replicas serve the scripted model (scripted_model.py) with a Hermes-style template
(templates/scripted_hermes.jinja), so llama-server's own parsers split the reasoning
(`--reasoning-format deepseek`) and the tool calls into its structured fields, deterministically: a
question ending in "1" gets reasoning and an answer, "3" a get_weather(Paris) call (with
llama-server's random call id), a tool result ending in "~" reasoning and the answer from it. What the
client sees must be exactly Model Studio's, as from the embedded engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from moonserve.accounts.ledger import Ledger
from moonserve.accounts.store import Store
from moonserve.testing.server import start_server
from moonserve.testing.upstream import llama_server_binary, start_llama_server, start_smg

MODEL = "kimi/kimi-k2.6"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from scripted_model import write_scripted_model

    d = tmp_path_factory.mktemp("upstream")
    gguf = write_scripted_model(d / "scripted.gguf")
    binary = llama_server_binary()
    template = Path(__file__).parent / "templates" / "scripted_hermes.jinja"
    replicas = [start_llama_server(binary, gguf, d, name=f"replica{k}", slots=2, context=2048, threads=1,
                                   extra=["--chat-template-file", str(template)]) for k in range(2)]
    gateway = start_smg([r.url for r in replicas], d)
    config = (f'[deployments.cluster]\nengine = "upstream"\nbase_url = "{gateway.url}/v1"\nflavour = "llamacpp"\n'
              f'health_interval = 0.5\n[models."{MODEL}"]\ndeployment = "cluster"\n')
    server = start_server(d / "home", config=config)
    yield {"server": server, "replicas": replicas, "gateway": gateway, "dir": d}
    server.stop()
    gateway.stop()
    for r in replicas:
        r.stop()


def records(server) -> list[dict]:
    return Ledger(Store(f"sqlite:///{server.home / 'moonserve.db'}").engine).records()


def test_thinking_comes_back_as_reasoning_content(cluster):
    client = cluster["server"].client()
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 1+1? 1"}],
                                       extra_body={"enable_thinking": True})
    m = r.choices[0].message
    assert m.reasoning_content == "The user asks a question." and m.content == "The answer is 2."
    assert r.choices[0].finish_reason == "stop"
    u = r.usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0 and u.prompt_tokens_details.cached_tokens >= 0
    row = next(x for x in records(cluster["server"]) if r.id == f"chatcmpl-{x['request_id']}")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (u.prompt_tokens, u.completion_tokens)


def test_a_streamed_tool_loop_with_usage(cluster):
    client = cluster["server"].client()
    messages = [{"role": "user", "content": "What is the weather in Paris? 3"}]
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], stream=True,
                                                 stream_options={"include_usage": True}))
    reasoning = "".join(c.choices[0].delta.reasoning_content or "" for c in chunks
                        if c.choices and getattr(c.choices[0].delta, "reasoning_content", None))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert reasoning == ""  # thinking mode: reasoning_content comes, empty here
    # llama-server's random call id, as Kimi's functions.NAME:IDX
    assert calls[0].id == "functions.get_weather:0" and calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "<|tool" not in text and "<think>" not in text  # no marker leaks
    messages += [{"role": "assistant", "content": text, "reasoning_content": reasoning,
                  "tool_calls": [{"id": calls[0].id, "type": "function",
                                  "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                 {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny~"}]
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert final.choices[0].message.reasoning_content == "The tool says sunny."
    assert final.choices[0].message.content.strip() == "It is sunny in Beijing."


def test_the_card_rules_apply_before_anything_is_sent(cluster):
    client = cluster["server"].client()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi 1"}],
                                       extra_body={"thinking_budget": 100})
    assert e.value.body["code"] == "invalid_parameter_error" and "thinking_budget" in e.value.body["message"]


def test_the_upstreams_refusal_is_a_400_with_its_message(cluster):
    with pytest.raises(openai.BadRequestError) as e:
        cluster["server"].client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 3000 + "1"}])
    assert e.value.body["code"] == "invalid_parameter_error" and "context" in e.value.body["message"]


def test_reasoning_tokens_are_counted_from_the_reasoning(cluster):
    """llama-server's usage does not count reasoning: Moonserve counts it from the reasoning itself."""
    server = cluster["server"]
    r = server.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count. 5"}],
                                                extra_body={"enable_thinking": True})
    u = r.usage
    assert "step19" in r.choices[0].message.reasoning_content and "word19" in r.choices[0].message.content
    assert 20 <= u.completion_tokens_details.reasoning_tokens < u.completion_tokens - 19
    row = next(x for x in records(server) if r.id == f"chatcmpl-{x['request_id']}")
    assert row["reasoning_tokens"] == u.completion_tokens_details.reasoning_tokens


@pytest.mark.parametrize("engine", ["upstream", "embedded"])
def test_max_tokens_bounds_the_answer_alone_on_every_engine(cluster, scripted_kimi, engine):
    """max_tokens bounds the answer, max_completion_tokens reasoning and answer: the same on both
    engines (the upstream is given room, and Moonserve ends the answer itself)."""
    server = cluster["server"] if engine == "upstream" else scripted_kimi
    ask = dict(model=MODEL, messages=[{"role": "user", "content": "Count. 5"}], extra_body={"enable_thinking": True})
    r = server.client().chat.completions.create(max_tokens=5, **ask)
    m = r.choices[0].message
    assert "step19" in m.reasoning_content and r.choices[0].finish_reason == "length"
    assert m.content.split() == ["word0", "word1", "word2", "word3", "word4"][:len(m.content.split())]
    assert 1 <= len(m.content.split()) <= 5
    # billed as computed: an upstream may have written a token or two more before it was stopped
    answer_tokens = r.usage.completion_tokens - r.usage.completion_tokens_details.reasoning_tokens
    assert answer_tokens <= (5 if engine == "embedded" else 8)
    r = server.client().chat.completions.create(max_completion_tokens=8, **ask)
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == ""
    assert r.usage.completion_tokens <= 8


def test_cache_hits_under_the_cards_minimum_are_billed_as_input(cluster):
    """llama-server reuses any prefix; under Model Studio's 256 tokens it is no hit, as on the
    embedded engine."""
    server = cluster["server"]
    ask = dict(model=MODEL, messages=[{"role": "user", "content": "A short question, asked twice. 1"}])
    first = server.client().chat.completions.create(**ask)
    again = server.client().chat.completions.create(**ask)
    assert again.usage.prompt_tokens < 256 and again.usage.prompt_tokens_details.cached_tokens == 0
    row = next(x for x in records(server) if again.id == f"chatcmpl-{x['request_id']}")
    assert row["cached_tokens"] == 0 and row["cost_cached"] == 0
    assert first.usage.prompt_tokens == again.usage.prompt_tokens


def test_a_shared_prefix_stays_on_one_replica(cluster):
    """smg's cache_aware policy keeps each prefix on the replica that holds it: the repeats find it
    cached, and Moonserve reports it."""
    client = cluster["server"].client()
    prefix = "You answer questions about the weather. " * 20
    cached = []
    for k in range(4):
        r = client.chat.completions.create(model=MODEL, messages=[
            {"role": "system", "content": prefix}, {"role": "user", "content": f"Question {k}? 1"}],
            extra_body={"enable_thinking": False})
        cached.append(r.usage.prompt_tokens_details.cached_tokens)
        assert r.usage.prompt_tokens > 300
    assert cached[0] < 300 and all(c > 300 for c in cached[1:]), cached


def test_a_killed_replica_is_routed_around_then_all_down_is_a_503(cluster):
    server, replicas = cluster["server"], cluster["replicas"]
    client = server.client()
    replicas[0].kill()
    for k in range(4):  # smg retries on the live replica
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Again {k}? 1"}],
                                           extra_body={"enable_thinking": True})
        assert r.choices[0].message.content == "The answer is 2."
    replicas[1].kill()
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Anyone? 1"}])
    assert e.value.status_code == 503 and e.value.body["code"] == "ModelUnavailable"
    assert "Traceback" not in server.output()
    time.sleep(1.2)  # a health check or two
    health = httpx.get(f"{server.url}/health").json()["deployments"]["cluster"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert health["failures"] >= 1 and 'moonserve_upstream_failures_total{deployment="cluster"}' in metrics
    assert records(server)[-1]["status"] == 503
    # smg still answers /models and says its workers are ready (its own checks are slower): the
    # deployment stays down while none of its workers answers, check after check
    time.sleep(3)
    health = httpx.get(f"{server.url}/health").json()["deployments"]["cluster"]
    assert not health["healthy"] and "worker" in health["last_error"], health
    assert 'moonserve_deployment_up{deployment="cluster"} 0.0' in httpx.get(f"{server.url}/metrics").text


@pytest.fixture(scope="module")
def smollm2_upstream(tmp_path_factory):
    """SmolLM2 on one llama-server (its own template) behind smg: the guide's examples, and a replica
    that dies in the middle of a stream."""
    from moonserve.testing.server import smollm2_path

    d = tmp_path_factory.mktemp("upstream_smollm2")
    replica = start_llama_server(llama_server_binary(), smollm2_path(), d, name="smollm2", slots=2, threads=1)
    gateway = start_smg([replica.url], d)
    config = (f'[deployments.remote]\nengine = "upstream"\nbase_url = "{gateway.url}/v1"\nflavour = "llamacpp"\n'
              'temperature = 0.2\ntop_p = 0.9\nmax_output_tokens = 512\n'
              + "".join(f'[models."{m}"]\ndeployment = "remote"\n' for m in (
                  "kimi/kimi-k2.6", "kimi/kimi-k2.5", "kimi/kimi-k2.7-code", "kimi/kimi-k2.7-code-highspeed")))
    server = start_server(d / "home", config=config)
    yield {"server": server, "replica": replica, "gateway": gateway}
    server.stop()
    gateway.stop()
    replica.stop()


def test_the_guides_examples_pass_unchanged_through_an_upstream(smollm2_upstream):
    from test_guide_examples import test_curl_example, test_python_text_example

    server = smollm2_upstream["server"]
    assert "smollm2" not in httpx.get(f"{server.url}/health").json()["deployments"]  # nothing embedded
    test_python_text_example(server)
    test_curl_example(server)


def test_several_deployments_per_model_fail_over_in_order(smollm2_upstream, tmp_path):
    """dead (unreachable) > local (one call at a time, none waiting) > overflow: the first call goes
    to local; a second one at the same time finds it full and moves on to the overflow."""
    from concurrent.futures import ThreadPoolExecutor

    from moonserve.testing.server import free_port

    gateway, replica = smollm2_upstream["gateway"], smollm2_upstream["replica"]
    config = (f'[deployments.dead]\nengine = "upstream"\nbase_url = "http://ops:hunter2@127.0.0.1:{free_port()}/v1"\n'
              f'upstream_model = "smollm2"\nhealth_interval = 0.5\n'
              f'[deployments.local]\nengine = "upstream"\nbase_url = "{gateway.url}/v1"\nflavour = "llamacpp"\n'
              f'max_concurrency = 1\nmax_waiting = 0\n'
              f'[deployments.overflow]\nengine = "upstream"\nbase_url = "{replica.url}/v1"\nflavour = "llamacpp"\n'
              f'[models."{MODEL}"]\ndeployment = ["dead", "local", "overflow"]\n')
    server = start_server(tmp_path / "home", config=config)
    try:
        client = server.client()

        def ask(k: int):
            return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Tell me a story {k}."}],
                                                  max_tokens=60, extra_body={"enable_thinking": False})

        with ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(ask, range(2)))
        assert all(r.choices[0].message.content and r.usage.completion_tokens > 0 for r in replies)
        health = httpx.get(f"{server.url}/health").json()["deployments"]
        assert health["dead"]["healthy"] is False and health["local"]["healthy"] is True
        assert health["local"]["completed"] == 1 and health["overflow"]["completed"] == 1, health
        assert "api_key" not in json.dumps(health) and "hunter2" not in json.dumps(health)
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'moonserve_deployment_up{deployment="dead"} 0.0' in metrics
        assert 'moonserve_deployment_up{deployment="local"} 1.0' in metrics
        models = server.cli("models", "list", "--json", "--config", str(server.home / "moonserve.toml")).stdout
        assert "dead, local, overflow" in models
    finally:
        server.stop()

def test_count_tokens_asks_the_upstreams_tokenizer(smollm2_upstream, tmp_path):
    """Anthropic's count_tokens through an upstream: llama-server's own template and tokenizer
    (/apply-template, /tokenize) count exactly what a call then uses."""
    import anthropic

    replica = smollm2_upstream["replica"]
    server = start_server(tmp_path / "home", config=(
        f'[deployments.remote]\nengine = "upstream"\nbase_url = "{replica.url}/v1"\nflavour = "llamacpp"\n'
        f'[models."{MODEL}"]\ndeployment = "remote"\n'))
    try:
        client = anthropic.Anthropic(base_url=f"{server.url}/apps/anthropic", api_key=server.key, max_retries=0)
        kw = dict(model=MODEL, system="Count me.", messages=[{"role": "user", "content": "A question 8123?"}],
                  thinking={"type": "disabled"})
        counted = client.messages.count_tokens(**kw).input_tokens
        m = client.messages.create(max_tokens=4, **kw)
        assert counted == m.usage.input_tokens + m.usage.cache_read_input_tokens > 0
    finally:
        server.stop()


def test_a_replica_dying_mid_stream_ends_the_stream_with_a_model_studio_error(smollm2_upstream):
    """The last test on this fixture: its replica dies."""
    server, replica = smollm2_upstream["server"], smollm2_upstream["replica"]
    body = {"model": MODEL, "stream": True, "max_tokens": 500, "enable_thinking": False, "seed": 11,
            "messages": [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]}
    events = []
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {server.key}"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
                if len(events) == 6:
                    replica.kill()
    assert len(events) > 6, events[-3:]
    assert events[-1]["error"]["code"] == "ModelUnavailable" and events[-1]["request_id"]
    delivered = sum(1 for e in events if e.get("choices") and e["choices"][0]["delta"].get("content"))
    time.sleep(0.3)
    row = records(server)[-1]
    assert row["status"] == 503 and row["error_code"] == "ModelUnavailable"
    assert row["completion_tokens"] >= delivered - 1 and row["prompt_tokens"] > 0


def test_media_are_fetched_and_checked_by_moonserve_and_sent_as_data(tmp_path):
    """llama-server with a vision projector behind Moonserve. This llama-server is built without
    curl: it cannot fetch a URL, so every image it sees came from Moonserve as a data: URL, after the
    same SSRF guard, caps and format checks as the embedded engine's."""
    from media_server import start_media_server

    from moonserve.testing.server import smollm2_path
    from moonserve.testing.vision import TOKENS_PER_IMAGE, write_tiny_mmproj

    mmproj = write_tiny_mmproj(tmp_path / "mm.gguf")
    replica = start_llama_server(llama_server_binary(), smollm2_path(), tmp_path, name="vision", slots=2, threads=1,
                                 extra=["--mmproj", str(mmproj)])
    media, media_server = start_media_server()
    config = ('[media]\nallow_hosts = ["127.0.0.1"]\n'
              f'[deployments.remote]\nengine = "upstream"\nbase_url = "{replica.url}/v1"\nflavour = "llamacpp"\n'
              f'vision = true\n[models."{MODEL}"]\ndeployment = "remote"\n')
    server = start_server(tmp_path / "home", config=config)
    try:
        client = server.client()

        def prompt_tokens(*parts) -> int:
            r = client.chat.completions.create(model=MODEL, max_tokens=4, extra_body={"enable_thinking": False},
                                               messages=[{"role": "user", "content": [
                                                   {"type": "text", "text": "What is this?"}, *parts]}])
            assert r.choices[0].message.content is not None
            return r.usage.prompt_tokens

        text_only = prompt_tokens()
        one_image = prompt_tokens({"type": "image_url", "image_url": {"url": f"{media}/tiger.png"}})
        assert one_image >= text_only + TOKENS_PER_IMAGE
        video = prompt_tokens({"type": "video_url", "video_url": {"url": f"{media}/clip.webm"}, "fps": 1})
        assert video >= text_only + 4 * TOKENS_PER_IMAGE  # a 4 s clip at 1 fps: 4 frames, each an image
        with pytest.raises(openai.BadRequestError) as e:  # refused by Moonserve; never sent on
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]}])
        assert e.value.body["code"] == "BadRequest.InputDownloadFailed"
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"{media}/notes.png"}}]}])
        assert e.value.status_code == 415
    finally:
        server.stop()
        media_server.shutdown()
        replica.stop()


def test_an_upstreams_sse_lines_are_split_and_bounded():
    """The SSE reader joins lines cut across reads, and refuses a line that never ends."""
    import asyncio

    from moonserve.engines.protocol import EngineUnavailable
    from moonserve.engines.upstream.client import MAX_LINE, UpstreamClient

    class Body:  # what the reader uses of an httpx response: its bytes, in pieces
        def __init__(self, pieces):
            self.pieces = pieces

        async def aiter_bytes(self):
            for p in self.pieces:
                yield p

    async def lines(pieces):
        return [line async for line in UpstreamClient._lines(Body(pieces))]

    assert asyncio.run(lines([b'data: {"a"', b':1}\r\n\ndata: [DO', b"NE]\n"])) == ['data: {"a":1}', "", "data: [DONE]"]
    with pytest.raises(EngineUnavailable):
        asyncio.run(lines([b"x" * (1 << 20)] * (MAX_LINE // (1 << 20) + 1)))
