"""Continuous batching and the implicit context cache, through a real server and the real engine.

The tests that compare answers token for token run with `deterministic = true` (llama.cpp's kernels
without llamafile, flash attention off): only there is a seeded answer bit-identical whether it runs
alone, in a batch, after a cache hit or beside the prefill worker. The default (fast) kernels are
checked for what they promise: the same answers when the conditions repeat, and the cache's counts."""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from llama_cpp import Llama

from conftest import wait_idle
from moonserve.testing.server import smollm2_path, start_server

MODEL = "kimi/kimi-k2.6"
DETERMINISTIC = "[deployments.smollm2]\ndeterministic = true\n"
# ~700 tokens: well over the 256-token minimum of a cache hit
LONG_SYSTEM = "You are a careful assistant. " + " ".join(
    f"Rule {i}: answer questions about topic {i} precisely and kindly." for i in range(60))


@pytest.fixture(scope="module")
def vocab():
    return Llama(model_path=str(smollm2_path()), vocab_only=True, verbose=False)


def chatml_tokens(vocab, messages) -> list[int]:
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return vocab.tokenize((text + "<|im_start|>assistant\n").encode(), add_bos=False, special=True)


def common_prefix(a, b) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def ask(server, messages, *, max_tokens=24, seed=9, stream=False):
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "seed": seed,
            "enable_thinking": False}
    if not stream:
        r = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=300,
                       headers={"Authorization": f"Bearer {server.key}"})
        assert r.status_code == 200, r.text
        j = r.json()
        return j["choices"][0]["message"]["content"], j["usage"], j["choices"][0]["finish_reason"]
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    text, usage, finish = "", None, None
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=300,
                      headers={"Authorization": f"Bearer {server.key}"}) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                c = json.loads(line[6:])
                if c["usage"]:
                    usage = c["usage"]
                elif c["choices"]:
                    text += c["choices"][0]["delta"].get("content") or ""
                    finish = c["choices"][0]["finish_reason"] or finish
    return text, usage, finish


def health(server, deployment="smollm2") -> dict:
    return httpx.get(f"{server.url}/health").json()["deployments"][deployment]


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("batch"), config=DETERMINISTIC + "max_sequences = 8\n")
    yield s
    s.stop()


def loaded_cpu_kernels(server) -> str:
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text().splitlines()
    return next(line.split()[-1] for line in maps if "libggml-cpu" in line)


def test_deterministic_mode_runs_kernels_without_llamafile_and_the_default_the_fast_ones(batch_server, tmp_path):
    assert "/share/moonserve/deterministic/" in loaded_cpu_kernels(batch_server)
    assert health(batch_server)["deterministic"] is True and health(batch_server)["kernels"] == "deterministic"
    fast = start_server(tmp_path)
    try:
        # Moonserve's build of llama.cpp's kernels (scripts/build_kernels.sh fast), not the wheel's own
        assert "/share/moonserve/fast/" in loaded_cpu_kernels(fast)
        assert health(fast)["deterministic"] is False and health(fast)["kernels"] == "moonserve"
        # fast kernels still repeat a seeded answer when the conditions repeat (alone, no cache)
        question = [{"role": "user", "content": "Tell me about foxes."}]
        assert ask(fast, question, max_tokens=40, seed=42) == ask(fast, question, max_tokens=40, seed=42)
    finally:
        fast.stop()


def test_16_simultaneous_streams_all_finish_with_correct_usage(batch_server, vocab):
    prompts = [[{"role": "user", "content": f"Write a long story about traveller number {i}."}] for i in range(16)]
    peak_waiting = 0
    with cf.ThreadPoolExecutor(16) as ex:
        futures = [ex.submit(ask, batch_server, p, max_tokens=40, seed=i, stream=True) for i, p in enumerate(prompts)]
        while not all(f.done() for f in futures):
            peak_waiting = max(peak_waiting, health(batch_server)["waiting"])
            time.sleep(0.05)
        results = [f.result() for f in futures]
    assert peak_waiting > 0, "16 streams on 8 slots: some must have waited"
    system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    for prompt, (text, usage, finish) in zip(prompts, results):
        expected = len(chatml_tokens(vocab, [{"role": "system", "content": system}, *prompt]))
        assert usage["prompt_tokens"] == expected
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert finish in ("stop", "length") and text.strip()
        if finish == "length":
            assert usage["completion_tokens"] == 40
    assert wait_idle(batch_server)["running"] == 0


def test_requests_arriving_together_with_a_new_shared_prefix_compute_it_once(batch_server, vocab):
    """Sub-agents, parallel tool turns, retries: the same long new prompt, several times at once. It is
    computed once; the others wait for it and restore it from the cache (their cached_tokens), and
    answer exactly what each answers alone."""
    system = "Shared prefix in flight. " + LONG_SYSTEM
    asks = [[{"role": "system", "content": system}, {"role": "user", "content": f"What is rule {i}?"}]
            for i in range(4)]
    n_shared = common_prefix(chatml_tokens(vocab, asks[0]), chatml_tokens(vocab, asks[1]))
    assert n_shared > 600
    before = wait_idle(batch_server)
    with cf.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda m: ask(batch_server, m, max_tokens=12, seed=5), asks))
    after = wait_idle(batch_server)
    assert after["shared_prefills"] == before["shared_prefills"] + 1
    computed = after["prompt_tokens_computed"] - before["prompt_tokens_computed"]
    prompt_tokens = sum(usage["prompt_tokens"] for _, usage, _ in results)
    assert computed <= prompt_tokens - 3 * n_shared + 3 * 4  # the shared part once (and a token or so each)
    cached = sorted(usage["prompt_tokens_details"]["cached_tokens"] for _, usage, _ in results)
    assert cached[0] == 0 and all(c >= n_shared - 1 for c in cached[1:])
    for messages, (text, usage, finish) in zip(asks, results):
        assert ask(batch_server, messages, max_tokens=12, seed=5)[::2] == (text, finish)


def test_seeded_request_is_identical_alone_in_a_batch_of_8_and_after_a_cache_hit(batch_server):
    def in_batch_of_8(messages):
        with cf.ThreadPoolExecutor(8) as ex:
            others = [ex.submit(ask, batch_server, [{"role": "user", "content": f"Describe animal {i}."}],
                                max_tokens=60, seed=i) for i in range(7)]
            mine = ex.submit(ask, batch_server, messages, max_tokens=40, seed=42)
            [f.result() for f in others]
            return mine.result()

    # short: computed alone, then restored (below the 256-token minimum: reused, no hit) and decoded
    # in a batch of 8; and the other way round: prompts computed cold in that batch, then one of
    # them restored and decoded alone
    short = [{"role": "user", "content": "Tell me about foxes."}]
    wait_idle(batch_server)
    alone = ask(batch_server, short, max_tokens=40, seed=42)[0]
    batched, u_batched, _ = in_batch_of_8(short)
    assert batched == alone and u_batched["prompt_tokens_details"]["cached_tokens"] == 0
    plant = [{"role": "user", "content": "Describe plant 3."}]
    with cf.ThreadPoolExecutor(8) as ex:
        in_batch = [ex.submit(ask, batch_server, [{"role": "user", "content": f"Describe plant {i}."}],
                              max_tokens=30, seed=77) for i in range(8)]
        in_batch = [f.result()[0] for f in in_batch]
    assert ask(batch_server, plant, max_tokens=30, seed=77)[0] == in_batch[3]

    # long: the repeat restores the cached prefix instead of computing it
    long = [{"role": "system", "content": "Batch test. " + LONG_SYSTEM}, {"role": "user", "content": "Foxes?"}]
    cold, u_cold, _ = ask(batch_server, long, max_tokens=40, seed=42)
    hit, u_hit, _ = ask(batch_server, long, max_tokens=40, seed=42)
    assert u_cold["prompt_tokens_details"]["cached_tokens"] == 0
    assert u_hit["prompt_tokens_details"]["cached_tokens"] > 256
    assert hit == cold
    batched_hit, u_batched, _ = in_batch_of_8(long)
    assert u_batched["prompt_tokens_details"]["cached_tokens"] > 256 and batched_hit == cold


def test_cache_hits_are_reported_and_exact(batch_server, vocab):
    first = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "What is rule 7?"}]
    second = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "What is rule 12?"}]
    wait_idle(batch_server)
    _, u1, _ = ask(batch_server, first, max_tokens=8)
    before = wait_idle(batch_server)
    _, u2, _ = ask(batch_server, second, max_tokens=8)
    after = wait_idle(batch_server)
    t1, t2 = chatml_tokens(vocab, first), chatml_tokens(vocab, second)
    assert u1["prompt_tokens"] == len(t1) and u2["prompt_tokens"] == len(t2)
    cached = u2["prompt_tokens_details"]["cached_tokens"]
    assert cached == common_prefix(t1, t2) and cached > 256
    # exactly the uncached prompt tokens were run through the model
    assert after["prompt_tokens_computed"] - before["prompt_tokens_computed"] == len(t2) - cached
    assert after["cache_hit_tokens"] - before["cache_hit_tokens"] == cached


def test_short_shared_prefixes_are_reused_but_not_billed_as_hits(batch_server, vocab):
    a = [{"role": "system", "content": "Be brief and kind, and answer in one short sentence."},
         {"role": "user", "content": "Hi"}]
    b = [a[0], {"role": "user", "content": "Hello"}]
    ask(batch_server, a, max_tokens=4)
    before = wait_idle(batch_server)
    _, u, _ = ask(batch_server, b, max_tokens=4)
    after = wait_idle(batch_server)
    shared = common_prefix(chatml_tokens(vocab, a), chatml_tokens(vocab, b))
    assert 16 <= shared < 256
    # computed only past the shared prefix ...
    assert after["cache_hit_tokens"] - before["cache_hit_tokens"] == shared
    assert after["prompt_tokens_computed"] - before["prompt_tokens_computed"] == u["prompt_tokens"] - shared
    # ... but below Model Studio's 256-token minimum it is no cache hit: billed as input
    assert u["prompt_tokens_details"]["cached_tokens"] == 0


def test_metrics_show_batching_and_cache(batch_server):
    text = httpx.get(f"{batch_server.url}/metrics").text
    for name in ("moonserve_sequences_running", "moonserve_sequences_waiting",
                 "moonserve_generation_tokens_per_second", "moonserve_kv_cells_used",
                 "moonserve_prefix_cache_hit_tokens_total", "moonserve_prefix_cache_bytes",
                 "moonserve_generated_tokens_total"):
        assert f'{name}{{deployment="smollm2"}}' in text, name
    hit_line = next(line for line in text.splitlines()
                    if line.startswith('moonserve_prefix_cache_hit_tokens_total{deployment="smollm2"}'))
    assert float(hit_line.split()[-1]) > 0


def test_eviction_under_memory_pressure_keeps_answers_identical(tmp_path, vocab):
    # one ~700-token entry of SmolLM2 is ~16 MB: a 40 MB budget holds two
    s = start_server(tmp_path, config=DETERMINISTIC + "prefix_cache_mb = 40\n")
    try:
        def msgs(i):
            return [{"role": "system", "content": f"Variant {i}. " + LONG_SYSTEM},
                    {"role": "user", "content": "Tell me about otters."}]

        first, u, _ = ask(s, msgs(0), max_tokens=30, seed=5)
        assert u["prompt_tokens_details"]["cached_tokens"] == 0
        for i in range(1, 5):
            ask(s, msgs(i), max_tokens=4)
        stats = wait_idle(s)
        assert stats["cache_evictions"] >= 2 and stats["cache_bytes"] <= 40 * 1024 * 1024
        again, u, _ = ask(s, msgs(0), max_tokens=30, seed=5)
        assert u["prompt_tokens_details"]["cached_tokens"] == 0, "variant 0 was evicted"
        assert again == first
        hit, u, _ = ask(s, msgs(0), max_tokens=30, seed=5)
        assert u["prompt_tokens_details"]["cached_tokens"] > 256 and hit == first
    finally:
        s.stop()


def test_disconnects_free_capacity(tmp_path):
    s = start_server(tmp_path, config="[deployments.smollm2]\nmax_sequences = 2\n")
    try:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
                "max_tokens": 3000, "stream": True, "seed": 5}
        streams = []
        for _ in range(2):
            cm = httpx.stream("POST", f"{s.base_url}/chat/completions", json=body, timeout=60,
                              headers={"Authorization": f"Bearer {s.key}"})
            lines = cm.__enter__().iter_lines()  # kept: dropping the iterator closes the response
            data = 0
            while data < 2:  # the role chunk, sent at admission, then the first token's
                data += next(lines).startswith("data: ")
            streams.append((cm, lines))
        assert health(s)["running"] == 2
        for cm, _ in streams:
            cm.__exit__(None, None, None)
        wait_idle(s, timeout=5)
        t0 = time.perf_counter()
        ask(s, [{"role": "user", "content": "Hi"}], max_tokens=4)
        assert time.perf_counter() - t0 < 5
    finally:
        s.stop()


def test_a_full_queue_answers_503(tmp_path):
    s = start_server(tmp_path, config="[deployments.smollm2]\nmax_sequences = 1\nmax_waiting = 1\n")
    try:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
                "max_tokens": 300, "seed": 5}
        results = []

        def call():
            results.append(httpx.post(f"{s.base_url}/chat/completions", json=body, timeout=120,
                                      headers={"Authorization": f"Bearer {s.key}"}))

        threads = [threading.Thread(target=call) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.3)
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200, 503], codes
        refused = next(r for r in results if r.status_code == 503)
        assert refused.json()["error"]["code"] == "ModelUnavailable"
        assert refused.headers["retry-after"] == "1"
    finally:
        s.stop()


def ask_beside_a_running_stream(server, messages, **kw):
    """Ask while another request is generating (a long story, streamed in a thread)."""
    before = health(server)["tokens_generated"]
    story = threading.Thread(target=ask, args=(server, [{"role": "user", "content": "Write a very long story."}]),
                             kwargs={"max_tokens": 400, "seed": 8, "stream": True})
    story.start()
    deadline = time.time() + 30
    while health(server)["tokens_generated"] == before and time.time() < deadline:
        time.sleep(0.01)
    try:
        return ask(server, messages, **kw)
    finally:
        story.join()


def test_long_prompts_beside_running_streams_are_prefilled_aside_with_identical_answers(tmp_path):
    """While others generate, a long prompt is computed by the prefill worker (its own context and
    threads) and handed back; the answer must not depend on it, also when it starts from a cached
    prefix."""
    question = [{"role": "user", "content": "List every rule again in your own words: " + "and then? " * 40}]
    plain = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "What is rule 3?"}]
    cached_then_more = [{"role": "system", "content": LONG_SYSTEM}, *question]
    no_cache = start_server(tmp_path / "a", config=DETERMINISTIC + "prefix_cache_mb = 0\n")
    try:
        alone = ask(no_cache, plain, max_tokens=24, seed=3)
        reference = ask(no_cache, cached_then_more, max_tokens=24, seed=3)
        assert health(no_cache)["prefills_offloaded"] == 0
        assert ask_beside_a_running_stream(no_cache, plain, max_tokens=24, seed=3) == alone
        assert health(no_cache)["prefills_offloaded"] == 1
    finally:
        no_cache.stop()
    with_cache = start_server(tmp_path / "b", config=DETERMINISTIC)
    try:
        ask(with_cache, plain, max_tokens=24, seed=3)  # leaves the long system prompt in the cache
        text, usage, finish = ask_beside_a_running_stream(with_cache, cached_then_more, max_tokens=24, seed=3)
        assert health(with_cache)["prefills_offloaded"] == 1
        assert usage["prompt_tokens_details"]["cached_tokens"] > 256
        assert (text, finish) == reference[::2] and usage["completion_tokens"] == reference[1]["completion_tokens"]
    finally:
        with_cache.stop()
