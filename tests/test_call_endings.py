"""However a call ends, it ends as Model Studio says and leaves exactly one ledger record: a
graceful shutdown (SIGTERM) and an engine error after the first delta, through real servers."""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

from conftest import wait_idle
from moonserve.accounts.ledger import Ledger
from moonserve.accounts.store import Store
from moonserve.testing.server import start_server

MODEL = "kimi/kimi-k2.6"
LONG = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
        "max_tokens": 3000, "enable_thinking": False, "seed": 1}


def records(server) -> list[dict]:
    return Ledger(Store(f"sqlite:///{server.home / 'moonserve.db'}").engine).records()


def auth(server) -> dict:
    return {"Authorization": f"Bearer {server.key}"}


class Stream(threading.Thread):
    """A streamed call read line by line in the background."""

    def __init__(self, server, body):
        super().__init__(daemon=True)
        self.server, self.body = server, {**body, "stream": True}
        self.events: list = []
        self.first = threading.Event()
        self.leave = threading.Event()

    def run(self):
        with httpx.stream("POST", f"{self.server.base_url}/chat/completions", json=self.body,
                          headers=auth(self.server), timeout=120) as r:
            for line in r.iter_lines():
                if self.leave.is_set():
                    return  # the client goes away
                if line.startswith("data: "):
                    self.events.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
                    self.first.set()


def wait_exit(server, timeout=30) -> None:
    server.proc.wait(timeout=timeout)


def test_sigterm_refuses_new_calls_then_ends_running_and_queued_ones_with_503(tmp_path):
    s = start_server(tmp_path / "home", config=(
        "[server]\nshutdown_grace_seconds = 3\n[deployments.smollm2]\nmax_sequences = 1\n"))
    try:
        running = Stream(s, LONG)
        running.start()
        assert running.first.wait(60)
        queued: dict = {}
        waiter = threading.Thread(target=lambda: queued.setdefault("r", httpx.post(
            f"{s.base_url}/chat/completions", json=LONG, headers=auth(s), timeout=120)))
        waiter.start()
        deadline = time.monotonic() + 10
        while httpx.get(f"{s.url}/health").json()["deployments"]["smollm2"]["waiting"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(f"{s.base_url}/chat/completions", json=LONG, headers=auth(s), timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "ModelUnavailable"
        assert "shutting down" in refused.json()["error"]["message"]

        running.join(30)
        waiter.join(30)
        ended_after = time.monotonic() - t0
        assert 2.5 < ended_after < 15, ended_after  # the grace period, then the end
        last = running.events[-1]
        assert isinstance(last, dict) and last["error"]["code"] == "ModelUnavailable", running.events[-3:]
        assert any(isinstance(e, dict) and e.get("choices") for e in running.events[:-1])
        assert queued["r"].status_code == 503 and queued["r"].json()["error"]["code"] == "ModelUnavailable"
        wait_exit(s)
    finally:
        s.stop()

    rows = records(s)
    assert sorted(r["status"] for r in rows) == [503, 503, 503], rows
    streamed = [r for r in rows if r["stream"]]
    assert len(streamed) == 1 and streamed[0]["completion_tokens"] > 0 and streamed[0]["prompt_tokens"] > 0
    assert all(r["error_code"] == "ModelUnavailable" for r in rows)


def test_sigterm_lets_a_stream_that_finishes_within_the_grace_period_finish(tmp_path):
    s = start_server(tmp_path / "home", config="[server]\nshutdown_grace_seconds = 30\n")
    try:
        short = Stream(s, {**LONG, "max_tokens": 60, "stream_options": {"include_usage": True}})
        short.start()
        assert short.first.wait(60)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        short.join(30)
        assert short.events[-1] == "[DONE]"
        usage = short.events[-2]["usage"]
        wait_exit(s)
        assert time.monotonic() - t0 < 15  # no need to wait out the grace period
    finally:
        s.stop()
    (row,) = records(s)
    assert row["status"] == 200 and row["completion_tokens"] == usage["completion_tokens"]


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory):
    """One sequence and a queue of one: with both taken, the engine refuses a third call as
    overloaded before anything of it is sent (a stream too)."""
    s = start_server(tmp_path_factory.mktemp("one_slot"), config=(
        '[deployments.smollm2]\nmax_sequences = 1\nmax_waiting = 1\n'))
    yield s
    s.stop()


@contextmanager
def one_slot_taken_and_one_queued(s):
    """The one slot busy with a stream, and one call queued: a third call is overloaded. Yields a
    list that holds, after the block, the ledger record of that third call."""
    before = {r["request_id"] for r in records(s)}
    busy = Stream(s, LONG)
    busy.start()
    assert busy.first.wait(60)
    queued = threading.Thread(target=lambda: httpx.post(f"{s.base_url}/chat/completions", headers=auth(s),
                                                        json={**LONG, "max_tokens": 5}, timeout=120))
    queued.start()
    deadline = time.monotonic() + 10
    while httpx.get(f"{s.url}/health").json()["deployments"]["smollm2"]["waiting"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    refused: list[dict] = []
    try:
        yield refused
    finally:
        busy.leave.set()
        busy.join(30)
        queued.join(60)
    wait_idle(s, timeout=60)
    time.sleep(0.3)
    new = [r for r in records(s) if r["request_id"] not in before]
    # the queued call ran once the busy stream's client left; the overloaded call was refused
    assert sorted(r["status"] for r in new) == [200, 499, 503]
    refused.extend(r for r in new if r["status"] == 503)
    assert refused[0]["error_code"] == "ModelUnavailable"


@pytest.mark.parametrize("path, stream", [("/compatible-mode/v1/chat/completions", False),
                                          ("/compatible-mode/v1/chat/completions", True),
                                          ("/v1/responses", True)])
def test_an_overloaded_deployment_is_a_503_before_anything_is_sent(one_slot, path, stream):
    s = one_slot
    body = ({"model": MODEL, "input": "Hi", "enable_thinking": False, "max_output_tokens": 5} if "responses" in path
            else {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "enable_thinking": False,
                  "max_tokens": 5})
    with one_slot_taken_and_one_queued(s) as refused:
        r = httpx.post(f"{s.url}{path}", json={**body, "stream": stream}, headers=auth(s), timeout=60)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "ModelUnavailable" and r.headers["retry-after"] == "1"
    assert bool(refused[0]["stream"]) == stream
    assert refused[0]["protocol"] == ("responses" if "responses" in path else "chat")


def test_an_error_in_a_responses_stream_is_an_error_event_then_response_failed(tmp_path):
    """A stream ended by the server (a shutdown past its grace period) ends in an `error` event
    and response.failed."""
    s = start_server(tmp_path / "home", config="[server]\nshutdown_grace_seconds = 1\n")
    body = {"model": MODEL, "input": "Write a very long story.", "enable_thinking": False, "max_output_tokens": 3000,
            "stream": True}
    try:
        with httpx.stream("POST", f"{s.url}/v1/responses", json=body, headers=auth(s), timeout=60) as r:
            assert r.status_code == 200
            events = []
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    events.append(json.loads(line[6:]))
                    if events[-1]["type"] == "response.output_text.delta" and len(events) == 6:
                        s.proc.send_signal(signal.SIGTERM)
        wait_exit(s)
    finally:
        s.stop()
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-2:] == ["error", "response.failed"] and events[-2]["code"] == "ModelUnavailable"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["code"] == "ModelUnavailable"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    (row,) = records(s)
    assert row["protocol"] == "responses" and row["stream"] and row["status"] == 503


def test_a_non_stream_call_whose_client_leaves_is_recorded_as_499_with_its_tokens(one_slot):
    s = one_slot
    wait_idle(s, timeout=60)
    before = {r["request_id"] for r in records(s)}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{s.base_url}/chat/completions", json=LONG, headers=auth(s), timeout=1.5)
    wait_idle(s, timeout=10)
    time.sleep(0.3)
    (row,) = [r for r in records(s) if r["request_id"] not in before]
    assert row["status"] == 499 and row["error_code"] == "ClientClosedRequest" and not row["stream"]
    assert 0 < row["completion_tokens"] < 3000 and row["prompt_tokens"] > 0


LONG_PROMPT = " ".join(f"item{i} is a {('red', 'green', 'blue')[i % 3]} box;" for i in range(300))  # ~2,600 tokens
STREAMS = {  # protocol -> (path, body of a streamed call with LONG_PROMPT)
    "chat": ("/compatible-mode/v1/chat/completions",
             {"model": MODEL, "messages": [{"role": "user", "content": LONG_PROMPT}], "enable_thinking": False,
              "max_tokens": 5, "stream": True}),
    "anthropic": ("/apps/anthropic/v1/messages",
                  {"model": MODEL, "messages": [{"role": "user", "content": LONG_PROMPT}], "max_tokens": 5,
                   "thinking": {"type": "disabled"}, "stream": True}),
    "responses": ("/v1/responses", {"model": MODEL, "input": LONG_PROMPT, "enable_thinking": False,
                                    "max_output_tokens": 5, "stream": True}),
}


def idle_after(server, t0: float, timeout: float = 10) -> float:
    """Seconds from t0 until the engine holds no sequence."""
    wait_idle(server, timeout=timeout)
    return time.monotonic() - t0


@pytest.mark.parametrize("protocol", list(STREAMS))
def test_a_long_prompts_stream_opens_at_once_and_its_prefill_stops_when_the_client_leaves(server, protocol):
    path, body = STREAMS[protocol]
    body = json.loads(json.dumps(body).replace("item0 ", f"item0 {protocol}-{time.time()} "))  # never cached
    before = {r["request_id"] for r in records(server)}
    t0 = time.monotonic()
    with httpx.stream("POST", f"{server.url}{path}", json=body, headers=auth(server), timeout=60) as r:
        lines = r.iter_lines()
        first = next(lines)
        opened = time.monotonic() - t0
        assert r.status_code == 200
        assert opened < 1.0, f"the stream opened after {opened:.2f}s"  # the prefill takes ~10 s here
        assert first.startswith(("data: {", "event: "))
        busy = httpx.get(f"{server.url}/health").json()["deployments"]["smollm2"]
        assert busy["running"] == 1
        time.sleep(1.0)
        left = time.monotonic()
    stopped = idle_after(server, left)
    # (a prefill step here takes ~2 s: it stops in the middle of one)
    assert stopped < 0.8, f"the prefill went on {stopped:.2f}s after the client left"
    time.sleep(0.3)
    (row,) = [r for r in records(server) if r["request_id"] not in before]
    assert row["status"] == 499 and row["protocol"] == protocol and row["prompt_tokens"] > 2500
    assert row["completion_tokens"] == 0


def test_a_silent_stream_is_kept_alive_while_its_prompt_is_prefilled(server):
    path, body = STREAMS["chat"]
    body = {**body, "messages": [{"role": "user", "content": f"{time.time()} {LONG_PROMPT}"}]}
    with httpx.stream("POST", f"{server.url}{path}", json=body, headers=auth(server), timeout=60) as r:
        seen = []
        for line in r.iter_lines():
            seen.append(line)
            if line.startswith(":") or len(seen) > 3:
                break
    assert seen[0].startswith("data: {") and seen[-1] == ": keep-alive", seen
    wait_idle(server, timeout=10)


def test_a_non_stream_call_whose_client_leaves_during_its_prefill_stops_at_once(server):
    _, body = STREAMS["chat"]
    body = {**body, "stream": False, "messages": [{"role": "user", "content": f"{time.time()} {LONG_PROMPT}"}]}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/chat/completions", json=body, headers=auth(server), timeout=1.5)
    stopped = idle_after(server, time.monotonic())
    # (a prefill step here takes ~2 s: it stops in the middle of one)
    assert stopped < 0.8, f"the prefill went on {stopped:.2f}s after the client left"
