"""The cost of the gateway: the same llama-server, the same load, direct vs through Moonserve (an
upstream deployment), and through LiteLLM's proxy beside it.

- added time to first token, p50 and p99, one request at a time (target: Moonserve adds <= 5 ms p50)
- throughput (generated tokens per second, all streams together) at 8 and 64 concurrent streams,
  as a ratio to direct (target: >= 0.95)

Every request is the same body (seeded sampling, so the same tokens come back every way); each
figure is the median of RUNS runs. All three share the machine's 2 cores with llama-server: what a
gateway spends in CPU is taken from the engine, which is the real cost on a small machine.

    .venv/bin/python bench/gateway.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from moonserve.testing.server import ROOT, free_port, smollm2_path, start_server  # noqa: E402
from moonserve.testing.upstream import llama_server_binary, start_llama_server, start_process  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
TOKENS = 128
TTFT_REQUESTS = 30


def body(model: str, k: int, extra: dict) -> dict:
    return {"model": model, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": TOKENS,
            "temperature": 0.6, "top_p": 0.95, "seed": k,
            "messages": [{"role": "user", "content": f"Write a short poem about the number {k}."}], **extra}


async def one(client: httpx.AsyncClient, url: str, payload: dict, headers: dict) -> tuple[float, int]:
    """Time to the first content byte, and the completion tokens of the call."""
    start = time.perf_counter()
    first, tokens = None, 0
    async with client.stream("POST", url, json=payload, headers=headers) as r:
        assert r.status_code == 200, (await r.aread())[:300]
        async for line in r.aiter_lines():
            if first is None and line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - start
            if '"usage":{' in line and '"completion_tokens"' in line:
                tokens = int(line.split('"completion_tokens":', 1)[1].split(",", 1)[0].split("}", 1)[0])
    return (first if first is not None else time.perf_counter() - start), tokens


async def ttfts(target: dict) -> list[float]:
    # a new connection each time: llama-server closes a stream's connection at its end
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        out = []
        for k in range(TTFT_REQUESTS):
            t, _ = await one(client, target["url"], body(target["model"], k, target["extra"]), target["headers"])
            out.append(t)
        return out


async def throughput(target: dict, streams: int) -> float:
    limits = httpx.Limits(max_connections=streams + 4, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one(client, target["url"], body(target["model"], k, target["extra"]),
                                             target["headers"]) for k in range(streams)))
        return sum(t for _, t in results) / (time.perf_counter() - start)


def p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def start_litellm(upstream: str, log_dir: Path):
    exe = ROOT / ".venv-agents" / "bin" / "litellm"
    if not exe.exists():
        return None
    port = free_port()
    env = {**os.environ, "OPENAI_API_KEY": "none", "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    try:
        return start_process("litellm", [str(exe), "--model", "openai/smollm2", "--api_base", upstream,
                                         "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
                             port, log_dir, "/health/liveliness", timeout=120, env=env)
    except RuntimeError as exc:
        print(f"LiteLLM's proxy did not start (pip install 'litellm[proxy]' in .venv-agents): {str(exc)[:300]}")
        return None


def main() -> None:
    d = Path(tempfile.mkdtemp(prefix="moonserve-gateway-bench-"))
    engine = start_llama_server(llama_server_binary(), smollm2_path(), d, slots=64, context=512)
    moon = start_server(d / "home", config=(
        f'[deployments.remote]\nengine = "upstream"\nbase_url = "{engine.url}/v1"\nflavour = "llamacpp"\n'
        'temperature = 0.6\ntop_p = 0.95\nmax_concurrency = 128\n'
        '[models."kimi/kimi-k2.6"]\ndeployment = "remote"\n'))
    litellm = start_litellm(f"{engine.url}/v1", d)
    targets = {
        "direct": {"url": f"{engine.url}/v1/chat/completions", "model": "smollm2", "extra": {}, "headers": {}},
        "moonserve": {"url": f"{moon.base_url}/chat/completions", "model": "kimi/kimi-k2.6",
                      "extra": {"enable_thinking": False}, "headers": {"Authorization": f"Bearer {moon.key}"}},
    }
    if litellm is not None:
        targets["litellm"] = {"url": f"{litellm.url}/v1/chat/completions", "model": "openai/smollm2", "extra": {},
                              "headers": {"Authorization": "Bearer none"}}
    try:
        for name, t in targets.items():  # warm up every path
            try:
                asyncio.run(throughput(t, 2))
            except Exception as exc:
                raise SystemExit(f"{name} failed: {exc!r}; logs in {d}") from None
        first = {name: [] for name in targets}
        rates = {(name, n): [] for name in targets for n in (8, 64)}
        for run in range(RUNS):
            for name, t in targets.items():
                print(f"run {run + 1}: {name}", file=sys.stderr)
                first[name].extend(asyncio.run(ttfts(t)))
                for n in (8, 64):
                    rates[(name, n)].append(asyncio.run(throughput(t, n)))
        print(f"gateway cost: llama-server (SmolLM2-135M Q4_1, -np 64) on this machine, {RUNS} runs, "
              f"{TOKENS} tokens per call")
        base50, base99 = statistics.median(first["direct"]), p99(first["direct"])
        for name in targets:
            p50, q99 = statistics.median(first[name]), p99(first[name])
            line = f"  {name:9s} TTFT p50 {p50 * 1000:6.1f} ms  p99 {q99 * 1000:6.1f} ms"
            if name != "direct":
                line += f"  (added: p50 {(p50 - base50) * 1000:+.1f} ms, p99 {(q99 - base99) * 1000:+.1f} ms)"
            print(line)
        for n in (8, 64):
            for name in targets:
                r = statistics.median(rates[(name, n)])
                ratios = [x / y for x, y in zip(rates[(name, n)], rates[("direct", n)])]
                print(f"  {n:2d} streams {name:9s} {r:6.1f} tok/s  ratio {statistics.median(ratios):.2f} "
                      f"{['%.2f' % x for x in ratios]}" + ("  (target >= 0.95 for moonserve)" if name == "moonserve"
                                                          else ""))
    finally:
        moon.stop()
        if litellm is not None:
            litellm.stop()
        engine.stop()
        if sys.exc_info()[0] is None:
            subprocess.run(["rm", "-rf", str(d)])


if __name__ == "__main__":
    main()
