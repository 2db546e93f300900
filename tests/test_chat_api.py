"""The chat call through a real server, the real engine and model, and the openai client."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from llama_cpp import Llama

from conftest import wait_idle
from moonserve.testing.server import smollm2_path

MODEL = "kimi/kimi-k2.6"
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def vocab():
    return Llama(model_path=str(smollm2_path()), vocab_only=True, verbose=False)


def chatml(messages: list[tuple[str, str]]) -> str:
    """SmolLM2's chat format, written out independently of our template renderer."""
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
    return text + "<|im_start|>assistant\n"


def post(server, body: dict, key: str | None = "default", timeout: float = 60) -> httpx.Response:
    headers = {}
    if key is not None:
        headers["Authorization"] = f"Bearer {server.key if key == 'default' else key}"
    return httpx.post(f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=timeout)


def sse_events(resp: httpx.Response) -> list:
    events = []
    for line in resp.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


# -- replies ---------------------------------------------------------------------------------------

def test_non_stream_reply_has_model_studio_shape(server):
    r = post(server, {"model": MODEL, "messages": [{"role": "user", "content": "What is 1+1?"}], "max_tokens": 20,
                      "enable_thinking": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert body["model"] == MODEL and body["system_fingerprint"] is None
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["finish_reason"] in ("stop", "length")
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    u = body["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_tokens_details"] == {"cached_tokens": 0, "text_tokens": u["prompt_tokens"],
                                          "image_tokens": 0, "video_tokens": 0}
    assert u["completion_tokens_details"] == {"reasoning_tokens": 0, "text_tokens": u["completion_tokens"]}
    assert r.headers["x-request-id"] in body["id"]


def test_usage_matches_the_tokenizer(client, vocab):
    messages = [("system", "You are a helpful assistant."), ("user", "Name three colours.")]
    expected_prompt = len(vocab.tokenize(chatml(messages).encode(), add_bos=False, special=True))
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": r, "content": c} for r, c in messages], max_tokens=7, seed=3,
        extra_body={"enable_thinking": False},
    )
    assert completion.usage.prompt_tokens == expected_prompt
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 7
    # the answer's text re-tokenizes to about as many tokens as were generated
    n_text = len(vocab.tokenize(completion.choices[0].message.content.encode(), add_bos=False))
    assert abs(n_text - completion.usage.completion_tokens) <= 2


def test_default_system_prompt_of_the_template_is_counted(client, vocab):
    expected = len(vocab.tokenize(chatml([("system", SMOLLM_SYSTEM), ("user", "Hi")]).encode(),
                                  add_bos=False, special=True))
    completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=3, extra_body={"enable_thinking": False})
    assert completion.usage.prompt_tokens == expected


def test_stream_chunks_and_usage(server, vocab):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
            "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 12, "seed": 11,
            "enable_thinking": False}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {server.key}"}, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["usage"] is None for c in chunks[:-1])
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 12
    finish = chunks[-2]["choices"][0]
    assert finish["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text.strip()
    expected_prompt = len(vocab.tokenize(chatml([("system", SMOLLM_SYSTEM), ("user", "Write a long story about a dragon.")])
                                         .encode(), add_bos=False, special=True))
    assert last["usage"]["prompt_tokens"] == expected_prompt


def test_stream_with_the_openai_client(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], stream=True, max_tokens=10,
    )
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)  # no include_usage: no usage chunk
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()


def test_seed_makes_replies_reproducible(client):
    def ask():
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell me a story about a fox."}], max_tokens=30,
            seed=1234,
        ).choices[0].message.content

    assert ask() == ask()


def test_stop_sequence_ends_the_answer(client):
    messages = [{"role": "user", "content": "Write a sentence about the sea."}]
    no_thinking = {"enable_thinking": False}
    full = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, seed=7, extra_body=no_thinking)
    text = full.choices[0].message.content
    words = text.split()
    assert len(words) > 4, text
    stop = " " + words[3]
    cut = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, seed=7, stop=[stop],
                                         extra_body=no_thinking)
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.usage.completion_tokens < full.usage.completion_tokens


def test_max_tokens_bounds_the_answer(client):
    c = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Describe Paris."}],
                                       max_tokens=5, seed=2, extra_body={"enable_thinking": False})
    assert c.choices[0].finish_reason == "length" and c.usage.completion_tokens == 5
    # in thinking mode it bounds the answer only: the reasoning comes on top
    c = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Describe Paris."}],
                                       max_tokens=5, seed=2, extra_body={"enable_thinking": True})
    u = c.usage
    assert c.choices[0].finish_reason == "length" and u.completion_tokens - u.completion_tokens_details.reasoning_tokens == 5


def test_unknown_fields_are_accepted(server):
    r = post(server, {"model": MODEL, "messages": [{"role": "user", "content": "Hi", "x_note": 1}],
                      "max_tokens": 2, "some_future_field": {"a": [1, 2]}, "thinking": {"type": "enabled"},
                      "reasoning_effort": "high"})
    assert r.status_code == 200, r.text


def test_models_endpoint_lists_activated_models(server):
    for path in ("/compatible-mode/v1/models", "/v1/models"):
        r = httpx.get(server.url + path, headers={"Authorization": f"Bearer {server.key}"})
        assert r.status_code == 200
        ids = [m["id"] for m in r.json()["data"]]
        assert set(ids) == {"kimi/kimi-k2.7-code-highspeed", "kimi/kimi-k2.7-code", "kimi/kimi-k2.6", "kimi/kimi-k2.5"}


def test_v1_alias_serves_chat(server):
    r = httpx.post(f"{server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {server.key}"},
                   json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert r.status_code == 200


# -- the engine stays responsive and frees what a client abandons -----------------------------------

def test_health_answers_during_a_long_generation(server, client):
    done = threading.Event()

    def long_call():
        try:
            client.chat.completions.create(model=MODEL, max_tokens=300, seed=3,
                                           messages=[{"role": "user", "content": "Write a long essay on rivers."}])
        finally:
            done.set()

    t = threading.Thread(target=long_call)
    t.start()
    time.sleep(0.5)
    worst = 0.0
    saw_running = False
    while not done.is_set():
        t0 = time.perf_counter()
        stats = httpx.get(f"{server.url}/health", timeout=5).json()["deployments"]["smollm2"]
        worst = max(worst, time.perf_counter() - t0)
        saw_running |= stats["running"] == 1
        time.sleep(0.1)
    t.join()
    assert saw_running
    assert worst < 0.5, f"/health took {worst:.3f}s during generation"


def test_stream_disconnect_frees_the_sequence(server):
    before = wait_idle(server)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
            "stream": True, "max_tokens": 2000, "seed": 5}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {server.key}"}, timeout=60) as r:
        n = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                n += 1
            if n >= 5:
                break
    # connection closed here, mid-stream
    after = wait_idle(server, timeout=5)
    generated = after["tokens_generated"] - before["tokens_generated"]
    assert generated < 400, f"the engine kept generating for a gone client ({generated} tokens)"


def test_non_stream_disconnect_frees_the_sequence(server):
    before = wait_idle(server)
    with pytest.raises(httpx.ReadTimeout):
        post(server, {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
                      "max_tokens": 2000, "seed": 5}, timeout=1.0)
    after = wait_idle(server, timeout=5)
    assert after["tokens_generated"] - before["tokens_generated"] < 600


# -- errors ------------------------------------------------------------------------------------------

def error_of(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"} and body["request_id"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert "Traceback" not in r.text
    return body["error"]


HELLO = [{"role": "user", "content": "Hi"}]


def test_401_without_a_key(server):
    error_of(post(server, {"model": MODEL, "messages": HELLO}, key=None), 401, "invalid_api_key")


def test_401_for_an_unknown_key(server):
    error_of(post(server, {"model": MODEL, "messages": HELLO}, key="sk-not-a-key"), 401, "invalid_api_key")
    with pytest.raises(openai.AuthenticationError):
        server.client(key="sk-not-a-key").chat.completions.create(model=MODEL, messages=HELLO)


def test_401_for_a_revoked_key_at_once(server):
    created = json.loads(server.cli("keys", "create", "--json").stdout)
    assert post(server, {"model": MODEL, "messages": HELLO, "max_tokens": 1}, key=created["key"]).status_code == 200
    server.cli("keys", "revoke", created["id"])
    error_of(post(server, {"model": MODEL, "messages": HELLO}, key=created["key"]), 401, "invalid_api_key")


def test_401_for_a_key_of_another_region(server):
    created = json.loads(server.cli("keys", "create", "--region", "ap-southeast-1", "--json").stdout)
    error_of(post(server, {"model": MODEL, "messages": HELLO}, key=created["key"]), 401, "invalid_api_key")


def test_404_for_an_unknown_model(server):
    err = error_of(post(server, {"model": "kimi/kimi-k9", "messages": HELLO}), 404, "model_not_found")
    assert err["message"] == "The model `kimi/kimi-k9` does not exist or you do not have access to it."
    with pytest.raises(openai.NotFoundError):
        server.client().chat.completions.create(model="kimi/kimi-k9", messages=HELLO)


def test_403_until_the_workspace_activates_the_model(server):
    created = json.loads(server.cli("keys", "create", "--workspace", "team-b", "--json").stdout)
    key = created["key"]
    err = error_of(post(server, {"model": MODEL, "messages": HELLO, "max_tokens": 1}, key=key), 403,
                   "Model.AccessDenied")
    assert "team-b" in err["message"] and MODEL in err["message"]
    r = httpx.get(f"{server.base_url}/models", headers={"Authorization": f"Bearer {key}"})
    assert r.json()["data"] == []
    server.cli("models", "activate", MODEL, "--workspace", "team-b", "--yes")
    assert post(server, {"model": MODEL, "messages": HELLO, "max_tokens": 1}, key=key).status_code == 200
    server.cli("models", "deactivate", MODEL, "--workspace", "team-b")
    error_of(post(server, {"model": MODEL, "messages": HELLO, "max_tokens": 1}, key=key), 403, "Model.AccessDenied")


@pytest.mark.parametrize("body, param", [
    ({"model": MODEL, "messages": [{"role": "usr", "content": "Hi"}]}, "messages[0].role"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL}, "messages"),
    ({"messages": HELLO}, "model"),
    ({"model": MODEL, "messages": HELLO, "n": 2}, "n"),
    ({"model": MODEL, "messages": HELLO, "temperature": 3}, "temperature"),
    ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ({"model": MODEL, "messages": HELLO, "top_k": 20}, "top_k"),
    ({"model": MODEL, "messages": HELLO, "thinking_budget": 100}, "thinking_budget"),
    ({"model": MODEL, "messages": HELLO, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": MODEL, "messages": HELLO, "stream": True, "stream_options": {"include_usage": False}},
     "stream_options"),
    ({"model": MODEL, "messages": HELLO, "stop": ["a"] * 17}, "stop"),
    ({"model": MODEL, "messages": HELLO, "response_format": {"type": "yaml"}}, "response_format.type"),
    ({"model": MODEL, "messages": HELLO, "logprobs": True}, "logprobs"),
    ({"model": "kimi/kimi-k2.7-code", "messages": HELLO, "enable_thinking": False}, "enable_thinking"),
    ({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
     "messages[0].content[0]"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hello " * 5000}]}, "messages"),
])
def test_400_names_the_field(server, body, param):
    err = error_of(post(server, body), 400, "invalid_parameter_error")
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"


def test_400_for_thinking_only_model_uses_model_studios_message(server):
    err = error_of(post(server, {"model": "kimi/kimi-k2.7-code-highspeed", "messages": HELLO,
                                 "enable_thinking": False}), 400, "invalid_parameter_error")
    assert err["message"] == "The value of the enable_thinking parameter is restricted to True."


def test_400_for_a_body_that_is_not_json(server):
    r = httpx.post(f"{server.base_url}/chat/completions", content=b"{not json",
                   headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"})
    err = error_of(r, 400, "invalid_parameter_error")
    assert "JSON" in err["message"]


def test_fixed_sampling_parameters_are_ignored_and_reported(server):
    r = post(server, {"model": MODEL, "messages": HELLO, "max_tokens": 2, "temperature": 0.1, "top_p": 0.5})
    assert r.status_code == 200
    assert r.headers["x-moonserve-ignored-params"] == "temperature,top_p"
    r = post(server, {"model": MODEL, "messages": HELLO, "max_tokens": 2, "reasoning_effort": "high"})
    assert r.status_code == 200 and r.headers["x-moonserve-ignored-params"] == "reasoning_effort"
