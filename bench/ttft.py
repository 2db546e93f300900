"""Time to first token of a short chat request through HTTP vs the raw llama-cpp-python time to
prefill the same prompt and sample its first token (no target: the closing figure of the
foundation issue; the difference is what serving costs before the first token)."""

import time

import llama_cpp as C

from common import RawLlama, report, serve, stream

RUNS = 7
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def raw_ttft(raw: RawLlama, question: str) -> float:
    prompt = raw.tokenize(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
                          "<|im_start|>assistant\n")
    C.llama_memory_clear(raw.mem, True)
    sampler = raw.sampler(1)
    t0 = time.perf_counter()
    raw._decode([(t, i, 0, i == len(prompt) - 1) for i, t in enumerate(prompt)])
    C.llama_sampler_sample(sampler, raw.ctx, -1)
    dt = time.perf_counter() - t0
    C.llama_sampler_free(sampler)
    return dt


def main():
    server = serve()
    raw = RawLlama(n_seq=1)
    try:
        stream(server, [{"role": "user", "content": "Hi"}], 4)  # warm-up
        ours, base = [], []
        for i in range(RUNS):
            question = f"What is {i}+1?"
            ours.append(stream(server, [{"role": "user", "content": question}], 4, seed=i).ttft * 1000)
            base.append(raw_ttft(raw, question) * 1000)
        return report("ttft: short prompt, raw prefill + first token / HTTP first token", ours, base, "ms",
                      "none (closer to 1 is better)", higher_is_better=False)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
