"""c. Time to first token of a request sharing a 2,000-token prefix with an earlier one, vs the same
request cold (target: >= 20x faster, cached_tokens >= 95% of the shared prefix)."""

from common import long_prompt, report, serve, stream

RUNS = 3


def main():
    server = serve()
    try:
        cold, warm, fractions = [], [], []
        for run in range(RUNS):
            prefix = long_prompt(510, f"doc{run}")  # ~2,000 tokens, new for each run
            first = [{"role": "system", "content": prefix}, {"role": "user", "content": "Summarise it."}]
            second = [{"role": "system", "content": prefix}, {"role": "user", "content": "List three words."}]
            c = stream(server, first, 4)  # cold: nothing cached starts like this
            w = stream(server, second, 4)  # shares the whole system prompt
            shared = c.usage["prompt_tokens"] - 12  # all but the differing user turn (a few tokens)
            cold.append(c.ttft)
            warm.append(w.ttft)
            fractions.append(w.usage["prompt_tokens_details"]["cached_tokens"] / shared)
            print(f"   run {run}: prompt {c.usage['prompt_tokens']} tokens, cold TTFT {c.ttft:.3f}s, "
                  f"warm TTFT {w.ttft:.3f}s, cached_tokens {w.usage['prompt_tokens_details']['cached_tokens']}")
        r = report("c. TTFT with a cached 2,000-token prefix (cold / warm)", warm, cold, "s", ">= 20",
                   higher_is_better=False)
        print(f"   cached_tokens / shared prefix: min {min(fractions):.3f} (target >= 0.95)")
        return r, min(fractions)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
