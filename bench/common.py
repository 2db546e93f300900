"""Shared pieces of the benchmarks: the raw llama-cpp-python baselines, a server, stream timing.

The baselines call llama-cpp-python's C API directly (no Moonserve code), with the same build, the
same model, the same sampling (temperature 0.6, top-p 0.95, seeded) and the same number of tokens.
"""

from __future__ import annotations

import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import llama_cpp as C

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from moonserve.testing.server import Server, smollm2_path, start_server  # noqa: E402

MODEL = "kimi/kimi-k2.6"
THREADS = os.cpu_count() or 1


def median(xs):
    return statistics.median(xs)


def report(name: str, ours: list[float], base: list[float], unit: str, target: str, higher_is_better=True) -> float:
    ratios = [o / b if higher_is_better else b / o for o, b in zip(ours, base)]
    r = median(ratios)
    print(f"{name}: ours {median(ours):.2f} {unit}, baseline {median(base):.2f} {unit}; "
          f"ratio median {r:.2f} over {len(ratios)} runs {['%.2f' % x for x in ratios]} (target {target})")
    return r


# -- the raw baseline ------------------------------------------------------------------------------

_QUIET = C.llama_log_callback(lambda level, text, user_data: None)  # kept alive: llama.cpp calls it later


class RawLlama:
    def __init__(self, n_seq: int, n_ctx_seq: int = 4096, n_batch: int = 512):
        C.llama_log_set(_QUIET, ctypes.c_void_p(0))
        C.llama_backend_init()
        self.model = C.llama_model_load_from_file(str(smollm2_path()).encode(), C.llama_model_default_params())
        self.vocab = C.llama_model_get_vocab(self.model)
        p = C.llama_context_default_params()
        p.n_ctx, p.n_seq_max, p.n_batch, p.n_ubatch = n_ctx_seq * n_seq, n_seq, n_batch, n_batch
        p.n_threads = p.n_threads_batch = THREADS
        p.kv_unified = False
        p.flash_attn_type = 1  # as Moonserve runs it by default, so the comparison is of serving, not kernels
        self.ctx = C.llama_init_from_model(self.model, p)
        self.mem = C.llama_get_memory(self.ctx)
        self.batch = C.llama_batch_init(n_batch, 0, 1)
        self.n_batch = n_batch

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = (C.llama_token * (len(data) + 16))()
        n = C.llama_tokenize(self.vocab, data, len(data), buf, len(buf), True, True)
        return list(buf[:n])

    def _decode(self, items):  # items: (token, pos, seq, logits)
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
            b.seq_id[i][0] = seq
        b.n_tokens = len(items)
        assert C.llama_decode(self.ctx, b) == 0

    def sampler(self, seed: int):
        s = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
        C.llama_sampler_chain_add(s, C.llama_sampler_init_temp(0.6))
        C.llama_sampler_chain_add(s, C.llama_sampler_init_top_p(0.95, 1))
        C.llama_sampler_chain_add(s, C.llama_sampler_init_dist(seed))
        return s

    def generate(self, prompts: list[list[int]], n_tokens: int, seed: int = 1) -> float:
        """Prefill each prompt into its own sequence, then decode all of them together for
        n_tokens steps (ignoring end-of-generation). Returns decode tokens/s over all sequences."""
        C.llama_memory_clear(self.mem, True)
        samplers = [self.sampler(seed + k) for k in range(len(prompts))]
        tokens = []
        for seq, prompt in enumerate(prompts):
            for s in range(0, len(prompt), self.n_batch):
                chunk = prompt[s:s + self.n_batch]
                self._decode([(t, s + i, seq, s + i == len(prompt) - 1) for i, t in enumerate(chunk)])
            tokens.append(C.llama_sampler_sample(samplers[seq], self.ctx, -1))
        pos = [len(p) for p in prompts]
        t0 = time.perf_counter()
        for _ in range(n_tokens - 1):
            self._decode([(tokens[k], pos[k], k, True) for k in range(len(prompts))])
            for k in range(len(prompts)):
                tokens[k] = C.llama_sampler_sample(samplers[k], self.ctx, k)
                pos[k] += 1
        dt = time.perf_counter() - t0
        for s in samplers:
            C.llama_sampler_free(s)
        return len(prompts) * (n_tokens - 1) / dt


# -- our side ----------------------------------------------------------------------------------------

@dataclass
class StreamTiming:
    sent: float
    token_times: list[float]  # arrival time of each content chunk
    usage: dict

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.sent

    @property
    def decode_rate(self) -> float:
        """Tokens/s from the first to the last token (what the raw loop measures)."""
        n = self.usage["completion_tokens"]
        return (n - 1) / (self.token_times[-1] - self.token_times[0])


def stream(server: Server, messages: list[dict], max_tokens: int, seed: int = 1, **extra) -> StreamTiming:
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}, "enable_thinking": False, **extra}
    return stream_url(f"{server.base_url}/chat/completions", body, {"Authorization": f"Bearer {server.key}"})


def stream_url(url: str, body: dict, headers: dict) -> StreamTiming:
    """One streamed chat call to any OpenAI-compatible server, timed."""
    times: list[float] = []
    usage = None
    sent = time.perf_counter()
    with httpx.stream("POST", url, json=body, timeout=600, headers=headers) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            elif chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
    return StreamTiming(sent, times, usage)


# The raw baselines sample like the Kimi cards in non-thinking mode; the default deployment declares
# SmolLM2's own sampling (0.2 / 0.9), so the benchmarks' server is told to sample like the baselines.
# They also generate as many tokens as a request asks for, where the default deployment stops every
# call at 512 (max_output_tokens: an agent's turn in seconds on a CPU).
LIKE_THE_BASELINES = "[deployments.smollm2]\ntemperature = 0.6\ntop_p = 0.95\nmax_output_tokens = 32768\n"


def serve(config: str = "") -> Server:
    if "[deployments.smollm2]" in config:
        config = config.replace("[deployments.smollm2]\n", LIKE_THE_BASELINES, 1)
    else:
        config = LIKE_THE_BASELINES + config
    return start_server(Path(tempfile.mkdtemp(prefix="moonserve-bench-")), config=config)


def long_prompt(n_words: int, tag: str) -> str:
    words = ["river", "mountain", "forest", "harbor", "desert", "glacier", "meadow", "canyon"]
    return f"[{tag}] " + " ".join(f"{words[i % 8]}{i}" for i in range(n_words))
