"""Serving throughput with the usage ledger on vs off, same run (target: ratio >= 0.95).

Two servers, identical but for [billing] ledger; each round sends the same burst of short calls to
one then the other (order alternating), 32 at a time; throughput = calls / wall time."""

import concurrent.futures as cf
import time

import httpx

from common import MODEL, report, serve

CALLS = 120
RUNS = 5


def burst(server, run):
    def one(i):
        r = httpx.post(f"{server.base_url}/chat/completions", timeout=120,
                       headers={"Authorization": f"Bearer {server.key}"},
                       json={"model": MODEL, "messages": [{"role": "user", "content": f"Say hi to {run}-{i}."}],
                             "max_tokens": 4, "seed": i, "enable_thinking": False})
        r.raise_for_status()

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(32) as ex:
        list(ex.map(one, range(CALLS)))
    return CALLS / (time.perf_counter() - t0)


def main():
    on = serve()
    off = serve("[billing]\nledger = false\n")
    try:
        burst(on, -1), burst(off, -1)  # warm-up
        ours, base = [], []
        for run in range(RUNS):
            pair = [(on, ours), (off, base)]
            for server, out in (pair if run % 2 == 0 else pair[::-1]):
                out.append(burst(server, run))
        return report("ledger: calls/s with the ledger on / off", ours, base, "calls/s", ">= 0.95")
    finally:
        on.stop()
        off.stop()


if __name__ == "__main__":
    main()
