"""Hostile and careless clients (issue 12): each input that once crashed, stalled or confused the
server, sent as it was, against a real server on loopback; the answer is Model Studio's error body
naming the field, and the server is alive after."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import httpx
import jsonschema
import pytest

from moonserve.testing.server import start_server

MODEL = "kimi/kimi-k2.6"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("hardening"))
    yield s
    s.stop()


def post(server, body, *, path="/chat/completions", headers=None, content=None, timeout=60) -> httpx.Response:
    h = {"Authorization": f"Bearer {server.key}", **(headers or {})}
    if content is None:
        return httpx.post(f"{server.base_url}{path}", json=body, headers=h, timeout=timeout)
    return httpx.post(f"{server.base_url}{path}", content=content, headers=h, timeout=timeout)


def assert_error(r: httpx.Response, status: int, code: str, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"}, body
    assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]


def alive(server) -> None:
    r = post(server, {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
                      "enable_thinking": False})
    assert r.status_code == 200, r.text
    assert server.proc.poll() is None


def ask(schema=None, **extra) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Answer in JSON."}], "max_tokens": 20,
            "enable_thinking": False, **extra}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    return body


# -- 1. schemas that would become grammars too large to parse ----------------------------------

@pytest.mark.parametrize("schema, param", [
    ({"type": "string", "maxLength": 100000}, "response_format.json_schema.schema.maxLength"),
    ({"type": "string", "maxLength": 1000000000}, "response_format.json_schema.schema.maxLength"),
    ({"type": "array", "items": {"type": "integer"}, "maxItems": 100000}, "response_format.json_schema.schema.maxItems"),
    ({"type": "string", "pattern": "^a{0,100000}$"}, "response_format.json_schema.schema.pattern"),
    # repetitions inside repetitions multiply
    ({"type": "string", "pattern": "^(a{0,500}){0,500}$"}, "response_format.json_schema.schema.pattern"),
    ({"type": "object", "properties": {"name": {"type": "string", "minLength": 5000}}},
     "response_format.json_schema.schema.properties.name.minLength"),
])
def test_a_schema_asking_for_a_huge_grammar_is_a_400_naming_the_keyword(server, schema, param):
    err = assert_error(post(server, ask(schema)), 400, "invalid_parameter_error", param)
    assert "at most" in err["message"] or "over" in err["message"] or "expand" in err["message"]
    alive(server)


def test_tools_parameters_are_bounded_the_same_way(server):
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "maxLength": 100000}}}}}
    r = post(server, ask(tools=[tool], tool_choice="required"))
    assert_error(r, 400, "invalid_parameter_error", "tools[0].function.parameters.properties.s.maxLength")
    alive(server)


def test_a_schema_within_the_bounds_is_enforced(server):
    schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 1000}},
              "required": ["capital"], "additionalProperties": False}
    body = ask(schema, max_tokens=300, seed=1)  # repeatable per seed when it runs alone
    body["messages"] = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]
    r = post(server, body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    jsonschema.validate(json.loads(choice["message"]["content"]), schema)


# -- 2. what once became a 500 ---------------------------------------------------------------------

def test_json_nested_990_levels_deep_is_a_400(server):
    deep = "[" * 990 + "]" * 990
    raw = '{"model": "%s", "messages": [{"role": "user", "content": "x"}], "x": %s}' % (MODEL, deep)
    err = assert_error(post(server, None, content=raw, headers={"Content-Type": "application/json"}),
                       400, "invalid_parameter_error")
    assert "nested too deeply" in err["message"]
    alive(server)


@pytest.mark.parametrize("where", ["tools", "response_format"])
def test_a_schema_100_levels_deep_is_a_400(server, where):
    schema: dict = {"type": "string"}
    for _ in range(100):
        schema = {"type": "object", "properties": {"a": schema}}
    if where == "tools":
        body = ask(tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}])
    else:
        body = ask(schema)
    err = assert_error(post(server, body), 400, "invalid_parameter_error")
    assert "nested too deeply" in err["message"]
    assert err["param"].startswith("tools[0].function.parameters" if where == "tools" else "response_format")


def test_usage_since_far_beyond_the_calendar_is_a_400(server):
    r = httpx.get(f"{server.base_url}/usage", params={"since": "99999999999d"},
                  headers={"Authorization": f"Bearer {server.key}"})
    assert_error(r, 400, "invalid_parameter_error", "since")


@pytest.mark.parametrize("raw, param", [
    ('{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}', "model"),
    ('{"model": "%s", "messages": [{"role": "user", "content": "a\\udc00b"}]}' % MODEL, "messages[0].content"),
    # a correctly paired surrogate is an ordinary character
])
def test_lone_surrogates_are_a_400_naming_the_field(server, raw, param):
    r = post(server, None, content=raw.encode(), headers={"Content-Type": "application/json"})
    err = assert_error(r, 400, "invalid_parameter_error", param)
    assert "surrogate" in err["message"]


def test_a_paired_surrogate_escape_is_text(server):
    raw = '{"model": "%s", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}], "max_tokens": 2}' % MODEL
    r = post(server, None, content=raw.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_a_seed_of_5000_digits_is_a_400(server):
    raw = '{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "seed": %s}' % (MODEL, "9" * 5000)
    err = assert_error(post(server, None, content=raw, headers={"Content-Type": "application/json"}),
                       400, "invalid_parameter_error", "body")
    assert "not valid JSON" in err["message"]


# -- 3 and 4. the event loop stays free; the body is refused at the cap -----------------------------

def test_a_20mb_prompt_holds_no_other_client(server):
    """While a 20 MB prompt is read, parsed and refused, /health answers and a running stream's
    tokens keep coming."""
    gaps: list[float] = []
    started = threading.Event()

    def stream():
        with httpx.stream("POST", f"{server.base_url}/chat/completions", timeout=120,
                          headers={"Authorization": f"Bearer {server.key}"},
                          json={"model": MODEL, "messages": [{"role": "user", "content": "Tell a long story."}],
                                "max_tokens": 300, "enable_thinking": False, "stream": True}) as r:
            last = None
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    now = time.monotonic()
                    if last is not None:
                        gaps.append(now - last)
                    last = now
                    started.set()

    t = threading.Thread(target=stream)
    t.start()
    assert started.wait(60)
    big = {"model": MODEL, "messages": [{"role": "user", "content": "word " * 4_000_000}]}
    result: dict = {}
    sender = threading.Thread(target=lambda: result.setdefault("r", post(server, big, timeout=120)))
    sender.start()
    health = []
    while sender.is_alive():
        t0 = time.monotonic()
        httpx.get(f"{server.url}/health", timeout=30)
        health.append(time.monotonic() - t0)
        time.sleep(0.02)
    sender.join()
    t.join()
    err = assert_error(result["r"], 400, "invalid_parameter_error", "messages")
    assert "Range of input length" in err["message"]
    assert max(health) < 0.5, health
    assert gaps and max(gaps) < 0.75, sorted(gaps)[-5:]


def _rss_peak_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_chunked_200mib_body_is_refused_at_the_cap(server):
    """No Content-Length: the server reads chunks, stops past 100 MB and answers 413, without
    holding the whole body (the client cannot even send it all)."""
    before = _rss_peak_kb(server.proc.pid)
    chunk = b"x" * (1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /compatible-mode/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + server.key.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(200):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:
            pass  # the server stopped reading and closed
        s.settimeout(30)
        reply = b""
        try:
            while data := s.recv(65536):
                reply += data
        except OSError:
            pass
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:300]
    assert json.loads(body)["error"]["code"] == "BadRequest.TooLarge"
    assert sent < 160 << 20, sent
    grew_mb = (_rss_peak_kb(server.proc.pid) - before) / 1024
    assert grew_mb < 300, grew_mb
    alive(server)


def test_a_declared_content_length_over_the_cap_is_refused_before_reading(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server.key.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{")
        s.settimeout(10)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


# -- 6. the smaller ones ------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_a_400(server, content_type):
    raw = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    err = assert_error(post(server, None, content=raw, headers={"Content-Type": content_type}),
                       400, "invalid_parameter_error", "Content-Type")
    assert content_type in err["message"]


def test_malformed_http_gets_a_model_studio_body(server):
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        s.settimeout(10)
        reply = b""
        while data := s.recv(65536):
            reply += data
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply
    assert b"application/json" in head
    err = json.loads(body)
    assert err["error"]["code"] == "BadRequest.MalformedHttp" and err["request_id"]


def test_the_sqlite_file_is_readable_by_its_owner_only(server):
    db = server.home / "moonserve.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


def test_the_openapi_document_describes_the_chat_body(server):
    doc = httpx.get(f"{server.url}/openapi.json").json()
    op = doc["paths"]["/compatible-mode/v1/chat/completions"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"model", "messages"} <= set(schema["required"])
    assert "enable_thinking" in schema["properties"] and "response_format" in schema["properties"]
