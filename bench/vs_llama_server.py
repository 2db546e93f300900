"""Moonserve's embedded engine against llama.cpp's own server: the baseline a user would pick.

llama-server is built from the llama.cpp source that the pinned llama-cpp-python vendors
(scripts/build_llama_server.sh, cached) and run with its defaults (`-np 8`, 4,096 tokens a slot) on
the same GGUF; Moonserve serves its default deployment. Same prompts, same max_tokens, same sampling
(temperature 0.6, top-p 0.95, seeded), both streamed through HTTP, alternating, RUNS runs each.
Ratios are Moonserve ÷ llama-server, higher is better (issue #13's targets in brackets):

  a. one stream, decode tokens/s                                        [>= 1.00]
  b. 8 concurrent streams, aggregate tokens/s; their TTFT p50            [>= 1.00; TTFT no worse]
  c. a cold 2,400-token prompt, TTFT (as a speed: llama-server's / ours) [>= 1.00]
  d. then 8 concurrent requests sharing that prompt, wall                [>= 10x], cached_tokens reported
  f. resident memory after the runs, both servers

    .venv/bin/python bench/vs_llama_server.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import MODEL, long_prompt, serve, stream_url
from moonserve.testing import smollm2_path
from moonserve.testing_upstream import llama_server_binary, start_llama_server

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Target:
    def __init__(self, name: str, url: str, model: str, headers: dict, extra: dict):
        self.name, self.url, self.model, self.headers, self.extra = name, url, model, headers, extra

    def call(self, messages: list[dict], max_tokens: int, seed: int):
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "seed": seed, "stream": True,
                "stream_options": {"include_usage": True}, "temperature": 0.6, "top_p": 0.95, **self.extra}
        return stream_url(self.url, body, self.headers)


def single(t: Target, seed: int) -> float:
    return t.call(STORY, 256, seed).decode_rate


def concurrent(t: Target, seed: int) -> tuple[float, float]:
    import time

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda k: t.call(STORY, 128, seed * 100 + k), range(8)))
    wall = time.perf_counter() - start
    tokens = sum(r.usage["completion_tokens"] for r in results)
    return tokens / wall, statistics.median(r.ttft for r in results)


def cold(t: Target, system: str) -> float:
    """The prompt never seen before: its first request, alone."""
    return t.call([{"role": "system", "content": system}, {"role": "user", "content": "Question: summarize."}],
                  8, 0).ttft


def shared(t: Target, system: str) -> tuple[float, list[int]]:
    """Then 8 requests at once that share it (each with its own question)."""
    import time

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda k: t.call([{"role": "system", "content": system},
                                                  {"role": "user", "content": f"Question {k}: summarize."}],
                                                 16, k), range(8)))
    return time.perf_counter() - start, [r.usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
                                         for r in results]


def main() -> None:
    d = Path(tempfile.mkdtemp(prefix="moonserve-vs-llama-server-"))
    engine = start_llama_server(llama_server_binary(), smollm2_path(), d, slots=8, context=4096)
    moon = serve()
    targets = [Target("moonserve", f"{moon.base_url}/chat/completions", MODEL,
                      {"Authorization": f"Bearer {moon.key}"}, {"enable_thinking": False}),
               Target("llama-server", f"{engine.url}/v1/chat/completions", "smollm2", {}, {})]
    ours, base = targets
    try:
        for t in targets:
            t.call(STORY, 16, 0)  # warm up
        r = {k: {t.name: [] for t in targets} for k in "a b ttft c d".split()}
        cached = []
        for run in range(RUNS):
            for t in targets:
                r["a"][t.name].append(single(t, run + 1))
                rate, ttft = concurrent(t, run + 1)
                r["b"][t.name].append(rate)
                r["ttft"][t.name].append(ttft)
                system = long_prompt(610, f"{t.name}-{run}")  # ~2,400 tokens, new for each run
                r["c"][t.name].append(cold(t, system))
                wall, c = shared(t, system)
                r["d"][t.name].append(wall)
                if t is ours:
                    cached.append(c)

        def line(label: str, key: str, unit: str, higher_is_better: bool, target: str) -> None:
            o, b = r[key][ours.name], r[key][base.name]
            ratios = [x / y if higher_is_better else y / x for x, y in zip(o, b)]
            print(f"{label}: moonserve {statistics.median(o):.2f} {unit}, llama-server {statistics.median(b):.2f} "
                  f"{unit}; ratio {statistics.median(ratios):.2f} {['%.2f' % x for x in ratios]} (target {target})")

        print(f"Moonserve vs llama-server (same llama.cpp, SmolLM2-135M Q4_1, -np 8), {RUNS} runs")
        line("a. 1 stream decode", "a", "tok/s", True, ">= 1.00")
        line("b. 8 streams aggregate", "b", "tok/s", True, ">= 1.00")
        line("b. 8 streams TTFT p50", "ttft", "s", False, ">= 1.00, i.e. no worse")
        line("c. cold 2,400-token prompt TTFT", "c", "s", False, ">= 1.00")
        line("d. 8 requests sharing a 2,400-token prompt, wall", "d", "s", False, ">= 10")
        print(f"   Moonserve's cached_tokens per request, last run: {cached[-1]}")
        print(f"f. resident memory: moonserve {rss_mib(moon.proc.pid):.0f} MiB, "
              f"llama-server {rss_mib(engine.proc.pid):.0f} MiB")
    finally:
        moon.stop()
        engine.stop()


if __name__ == "__main__":
    main()
