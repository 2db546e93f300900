"""a. One stream through HTTP vs a raw llama-cpp-python decode loop (target: ratio >= 0.90).

Both decode the same prompt with the same sampling; we measure tokens/s from the first token to the
last (the client sees each token as an SSE chunk); the raw loop generates the same number of tokens."""

from common import RawLlama, report, serve, stream

N_TOKENS = 200
RUNS = 5
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]


def main() -> float:
    server = serve()
    raw = RawLlama(n_seq=1)
    try:
        prompt = raw.tokenize(f"<|im_start|>user\n{PROMPT[0]['content']}<|im_end|>\n<|im_start|>assistant\n")
        ours, base = [], []
        stream(server, PROMPT, 20)  # warm-up
        for run in range(RUNS):
            t = stream(server, PROMPT, N_TOKENS, seed=100 + run)
            n = t.usage["completion_tokens"]
            ours.append(t.decode_rate)
            base.append(raw.generate([prompt], n, seed=100 + run))
        return report("a. single stream tokens/s (HTTP / raw)", ours, base, "tok/s", ">= 0.90")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
