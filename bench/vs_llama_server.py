"""Moonserve's embedded engine against llama.cpp's own server: the baseline a user would pick.

llama-server is built from the llama.cpp source that the pinned llama-cpp-python vendors
(scripts/build_llama_server.sh, cached) and run with its defaults (`-np 8`, 4,096 tokens a slot) on
the same GGUF; Moonserve serves its default deployment, and a second Moonserve the same with
`deterministic = true`. Same prompts, same max_tokens, same sampling (temperature 0.6, top-p 0.95,
seeded), all streamed through HTTP, alternating, RUNS runs each. Ratios are Moonserve ÷
llama-server, higher is better (issue #13's targets in brackets):

  a. one stream, decode tokens/s (each run: the median of 3 calls)     [>= 1.00]
  b. 8 concurrent streams, aggregate tokens/s; their TTFT p50            [>= 1.00; TTFT no worse]
  c. a cold 2,400-token prompt, TTFT (as a speed: llama-server's / ours) [>= 1.00]
  d. then 8 concurrent requests sharing that prompt, wall                [>= 10x], cached_tokens reported
  e. a running stream's p99 inter-token gap while a 2,000-token prompt is admitted, over its median
     gap alone                                                           [<= 3x], both servers
  f. resident memory after the runs, both servers
  g. 8 requests arriving together with one never-seen 2,400-token shared prefix, wall  [>= 5x]
  h. a cold 12,000-token prompt at a 32k context, TTFT (as a speed), one sequence each [>= 1.00]
  i. a copy-heavy edit (~150 lines of code asked back with one change, greedy): output tokens/s of
     Moonserve with drafts from the prompt (draft_tokens = 8) against llama-server without
     speculation [>= 2x] and with its own n-gram speculation (--spec-type ngram-simple) [> 1x]; the
     drafts' acceptance rate; and the cost of drafts where nothing is copied (figure a with them on)
  and the cost of deterministic mode (deterministic ÷ default on a, b, c), and Moonserve's Python
  time around a decode step against llama_decode's (from /health) at 1 and 8 streams.

    cd bench && ../.venv/bin/python vs_llama_server.py      # BENCH_RUNS=3 by default
"""

from __future__ import annotations

import os
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import threading
import time

import httpx

from common import MODEL, long_prompt, serve, stream_url
from moonserve.testing.server import smollm2_path, start_server
from moonserve.testing.upstream import llama_server_binary, start_llama_server

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
H_RUNS = int(os.environ.get("BENCH_H_RUNS", "1"))  # h: each run prefills 12,000 tokens twice (minutes here)
DRAFT_TOKENS = int(os.environ.get("BENCH_DRAFT_TOKENS", "8"))  # i: the drafting deployment's draft_tokens
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Target:
    def __init__(self, name: str, url: str, model: str, headers: dict, extra: dict, health: str | None = None):
        self.name, self.url, self.model, self.headers, self.extra = name, url, model, headers, extra
        self.health = health  # Moonserve's /health, for its step timings

    def step_timings(self) -> tuple[float, float] | None:
        """(llama_decode ms, Python around it µs) of the last decode steps, Moonserve only."""
        if not self.health:
            return None
        h = httpx.get(self.health).json()["deployments"]["smollm2"]
        return h["decode_step_ms"], h["step_overhead_us"]

    def call(self, messages: list[dict], max_tokens: int, seed: int):
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "seed": seed, "stream": True,
                "stream_options": {"include_usage": True}, "temperature": 0.6, "top_p": 0.95, **self.extra}
        return stream_url(self.url, body, self.headers)


def moonserve(name: str, server) -> Target:
    return Target(name, f"{server.base_url}/chat/completions", MODEL, {"Authorization": f"Bearer {server.key}"},
                  {"enable_thinking": False}, health=f"{server.url}/health")


def baseline(engine) -> Target:
    return Target("llama-server", f"{engine.url}/v1/chat/completions", "smollm2", {}, {})


def single(t: Target, seed: int) -> float:
    return t.call(STORY, 256, seed).decode_rate


def concurrent(t: Target, seed: int) -> tuple[float, float]:

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

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda k: t.call([{"role": "system", "content": system},
                                                  {"role": "user", "content": f"Question {k}: summarize."}],
                                                 16, k), range(8)))
    return time.perf_counter() - start, [r.usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
                                         for r in results]


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def admission(t: Target, seed: int) -> float | None:
    """e: stream A generates; 1.5 s in, B sends a 2,000-token prompt. A's p99 gap among the gaps
    that overlap B's admission (from B's arrival to its first token; a stall counts as one long gap),
    over A's median gap before B came. None if A ended before B's first token."""
    result: dict = {}
    story = [{"role": "user", "content": "Write a very long story about the sea, in many chapters."}]
    a = threading.Thread(target=lambda: result.setdefault("a", t.call(story, 2000, seed)))
    a.start()
    time.sleep(1.5)
    b_sent = time.perf_counter()
    b = t.call([{"role": "user", "content": long_prompt(510, f"{t.name}-adm{seed}")}], 2, seed)
    a.join()
    times = result["a"].token_times
    b_first = b.token_times[0]
    gaps = [(times[i] - times[i - 1], times[i]) for i in range(1, len(times))]
    alone = [g for g, at in gaps if at < b_sent]
    during = [g for g, at in gaps if at > b_sent and at - g < b_first]
    if times[-1] <= b_first or not alone or not during:
        return None
    return p99(during) / statistics.median(alone)


def main() -> None:
    d = Path(tempfile.mkdtemp(prefix="moonserve-vs-llama-server-"))
    engine = start_llama_server(llama_server_binary(), smollm2_path(), d, slots=8, context=4096)
    moon = serve()
    exact = serve("[deployments.smollm2]\ndeterministic = true\n")
    drafting = serve("[deployments.smollm2]\ndraft_tokens = 8\n")

    targets = [moonserve("moonserve", moon), baseline(engine), moonserve("deterministic", exact)]
    ours, base, det = targets
    spec = moonserve("drafts", drafting)
    try:
        for t in targets:
            t.call(STORY, 16, 0)  # warm up
        r = {k: {t.name: [] for t in [*targets, spec]} for k in "a b ttft c d e g".split()}
        steps = {"1 stream": [], "8 streams": []}
        cached, together = [], []
        for run in range(RUNS):
            # each figure for every target back to back, so that a ratio compares the same minute of
            # this host (its speed drifts); a single stream, the noisiest, as the median of 3 calls,
            # the targets' calls interleaved (the order turned around each time)
            rates: dict[str, list[float]] = {t.name: [] for t in targets}
            rates[spec.name] = []
            for k in range(3):
                for t in ([*targets, spec] if k % 2 == 0 else [spec, *targets[::-1]]):
                    rates[t.name].append(single(t, 10 * run + k))
            for t in [*targets, spec]:
                r["a"][t.name].append(statistics.median(rates[t.name]))
            steps["1 stream"].append(ours.step_timings())
            for t in targets:
                rate, ttft = concurrent(t, run + 1)
                r["b"][t.name].append(rate)
                r["ttft"][t.name].append(ttft)
                if t is ours:
                    steps["8 streams"].append(t.step_timings())
            for t in targets:
                system = long_prompt(610, f"{t.name}-{run}")  # ~2,400 tokens, new for each run
                r["c"][t.name].append(cold(t, system))
                if t is not det:
                    wall, c = shared(t, system)
                    r["d"][t.name].append(wall)
                    if t is ours:
                        cached.append(c)
                    gap = admission(t, run + 1)
                    if gap is not None:
                        r["e"][t.name].append(gap)
            for t in (ours, base):
                wall, c = shared(t, long_prompt(610, f"{t.name}-together-{run}"))  # never seen: all arrive at once
                r["g"][t.name].append(wall)
                if t is ours:
                    together.append(c)

        def line(label: str, key: str, unit: str, higher_is_better: bool, target: str, o=ours, b=base) -> None:
            xs, ys = r[key][o.name], r[key][b.name]
            ratios = [x / y if higher_is_better else y / x for x, y in zip(xs, ys)]
            print(f"{label}: {o.name} {statistics.median(xs):.2f} {unit}, {b.name} {statistics.median(ys):.2f} "
                  f"{unit}; ratio {statistics.median(ratios):.3f} {['%.3f' % x for x in ratios]} (target {target})")

        print(f"Moonserve vs llama-server (same llama.cpp, SmolLM2-135M Q4_1, -np 8), {RUNS} runs")
        line("a. 1 stream decode", "a", "tok/s", True, ">= 1.00")
        line("b. 8 streams aggregate", "b", "tok/s", True, ">= 1.00")
        line("b. 8 streams TTFT p50", "ttft", "s", False, ">= 1.00, i.e. no worse")
        line("c. cold 2,400-token prompt TTFT", "c", "s", False, ">= 1.00")
        line("d. 8 requests sharing a 2,400-token prompt, wall", "d", "s", False, ">= 10")
        print(f"   Moonserve's cached_tokens per request, last run: {cached[-1]}")
        for t in (ours, base):
            e = r["e"][t.name]
            print(f"e. {t.name}: p99 gap during a 2,000-token admission / median gap alone: "
                  + (f"{statistics.median(e):.2f}x {['%.0f' % x if x >= 10 else '%.2f' % x for x in e]}" if e
                     else "no run had A still going after B's first token")
                  + (" (target <= 3)" if t is ours else ""))
        print(f"f. resident memory: moonserve {rss_mib(moon.proc.pid):.0f} MiB, "
              f"llama-server {rss_mib(engine.proc.pid):.0f} MiB")
        line("g. 8 requests at once sharing a new 2,400-token prefix, wall", "g", "s", False, ">= 5")
        print(f"   Moonserve's cached_tokens per request, last run: {together[-1]}")
        print("deterministic mode's cost (deterministic / default, higher is better):")
        line("   a. 1 stream decode", "a", "tok/s", True, "-", o=det, b=ours)
        line("   b. 8 streams aggregate", "b", "tok/s", True, "-", o=det, b=ours)
        line("   c. cold 2,400-token prompt TTFT", "c", "s", False, "-", o=det, b=ours)
        print("drafts from the prompt where nothing is copied (draft_tokens = 8 / off, higher is better):")
        line("   a. 1 stream decode", "a", "tok/s", True, "-", o=spec, b=ours)
        for label, xs in steps.items():
            decode = statistics.median(x[0] for x in xs)
            python = statistics.median(x[1] for x in xs)
            print(f"Moonserve per decode step, {label}: llama_decode {decode:.2f} ms, Python around it "
                  f"{python:.0f} us ({python / 10 / decode:.1f}%; sampling included)")
    finally:
        moon.stop()
        exact.stop()
        drafting.stop()
        engine.stop()
    long_context(d)
    copy_heavy(d)


def code_file(n_lines: int = 150) -> str:
    """A Python file of `n_lines` lines, the same each time."""
    lines = []
    for i in range(n_lines // 5):
        lines += [f"def count_words_{i}(text, limit={i + 2}):",
                  f"    words = [w for w in text.split() if len(w) > {i % 7}]",
                  f"    total = sum(1 for w in words if w.isalpha()) + {i}",
                  "    return min(total, limit)",
                  ""]
    return "\n".join(lines)


# A coding agent's edit: its system prompt, the file, the change. (Without the system prompt,
# SmolLM2's greedy answer hangs on a near tie at its third token between a copy of the file and a
# ten-token "Here's how you can modify the file.", which the last bits of an attention kernel
# decide; with it, every kernel measured writes the file.)
EDIT = [{"role": "system", "content": "You are a code editor. You reply with the complete edited file in one code "
         "block, nothing else."},
        {"role": "user", "content": "Here is a file:\n```python\n" + code_file() + "\n```\nWrite the whole file "
         "again, unchanged except that `limit` is renamed to `cap`. Only the file."}]


def copy_heavy(d: Path) -> None:
    """i: the edit, greedy, 400 output tokens; each server alone (one sequence busy). Run on its own:
    `python -c "import vs_llama_server as v, pathlib, tempfile; v.copy_heavy(pathlib.Path(tempfile.mkdtemp()))"`."""
    greedy = "[deployments.smollm2]\ntemperature = 0.0\ntop_p = 1.0\n"
    drafted = start_server(Path(tempfile.mkdtemp(prefix="moonserve-bench-")),
                           config=greedy + f"draft_tokens = {DRAFT_TOKENS}\nprefix_cache_mb = 0\n")
    plain = start_llama_server(llama_server_binary(), smollm2_path(), d / "i", slots=1, context=4096)
    spec = start_llama_server(llama_server_binary(), smollm2_path(), d / "i-spec", name="llama-server-spec",
                              slots=1, context=4096, extra=["--spec-type", "ngram-simple"])
    ours = Target("moonserve", f"{drafted.base_url}/chat/completions", MODEL,
                  {"Authorization": f"Bearer {drafted.key}"}, {"enable_thinking": False, "temperature": 0.0},
                  health=f"{drafted.url}/health")
    # every run computes the prompt (no prompt cache either side): a restored prefix's last-bits
    # difference can tip SmolLM2's greedy answer into one that does not copy
    bases = [Target("llama-server", f"{plain.url}/v1/chat/completions", "smollm2", {},
                    {"temperature": 0.0, "cache_prompt": False}),
             Target("llama-server --spec-type ngram-simple", f"{spec.url}/v1/chat/completions", "smollm2", {},
                    {"temperature": 0.0, "cache_prompt": False})]
    try:
        rates: dict[str, list[float]] = {t.name: [] for t in [ours, *bases]}
        lengths: dict[str, list[int]] = {t.name: [] for t in [ours, *bases]}  # a short answer copies nothing
        before = httpx.get(ours.health).json()["deployments"]["smollm2"]
        for run in range(RUNS):
            for t in ([ours, *bases] if run % 2 == 0 else [*bases, ours]):
                r = t.call(EDIT, 400, 0)
                rates[t.name].append(r.decode_rate)
                lengths[t.name].append(r.usage["completion_tokens"])
        after = httpx.get(ours.health).json()["deployments"]["smollm2"]
        drafted_n = after["draft_tokens"] - before["draft_tokens"]
        accepted = after["draft_tokens_accepted"] - before["draft_tokens_accepted"]
        for b in bases:
            ratios = [x / y for x, y in zip(rates[ours.name], rates[b.name])]
            print(f"i. copy-heavy edit, greedy: moonserve (drafts) {statistics.median(rates[ours.name]):.1f} tok/s, "
                  f"{b.name} {statistics.median(rates[b.name]):.1f} tok/s; ratio {statistics.median(ratios):.3f} "
                  f"{['%.3f' % x for x in ratios]}")
        print("   answers' lengths (tokens): " + ", ".join(f"{k} {v}" for k, v in lengths.items()))
        print(f"   drafts: {accepted} of {drafted_n} drafted tokens accepted "
              f"({accepted / max(1, drafted_n):.0%}), {accepted / max(1, RUNS * 400):.0%} of the output")
    finally:
        drafted.stop()
        plain.stop()
        spec.stop()


def long_context(d: Path) -> None:
    """h: one sequence of a 32,768-token context on each server, a cold 12,000-token prompt: the
    time to its first token, as a request for one token (the first token's text may be held back
    by a parser, or be empty, either side)."""
    # (SmolLM2 was trained on 8,192 tokens; llama-server caps a slot there unless the model's
    # metadata says more, Moonserve takes the context it is given)
    engine = start_llama_server(llama_server_binary(), smollm2_path(), d / "h", slots=1, context=32768,
                                extra=["--override-kv", "llama.context_length=int:32768"])
    moon = serve("[deployments.smollm2]\ncontext_length = 32768\nmax_sequences = 1\n")
    targets = [moonserve("moonserve", moon), baseline(engine)]
    try:
        ttft: dict[str, list[float]] = {t.name: [] for t in targets}
        tokens = 0
        for run in range(H_RUNS):
            for t in (targets if run % 2 == 0 else targets[::-1]):
                body = {"model": t.model, "max_tokens": 1, "messages": [
                    {"role": "system", "content": long_prompt(2590, f"{t.name}-long-{run}")},  # ~12,000 tokens
                    {"role": "user", "content": "Question: summarize."}], **t.extra}
                start = time.perf_counter()
                r = httpx.post(t.url, json=body, headers=t.headers, timeout=1200)
                r.raise_for_status()
                ttft[t.name].append(time.perf_counter() - start)
                tokens = r.json()["usage"]["prompt_tokens"]
        ours, base = ttft["moonserve"], ttft["llama-server"]
        ratios = [y / x for x, y in zip(ours, base)]
        print(f"h. cold {tokens:,}-token prompt TTFT at a 32k context: moonserve {statistics.median(ours):.2f} s, "
              f"llama-server {statistics.median(base):.2f} s; ratio {statistics.median(ratios):.3f} "
              f"{['%.3f' % x for x in ratios]} (target >= 1.00)")
    finally:
        moon.stop()
        engine.stop()


if __name__ == "__main__":
    main()
