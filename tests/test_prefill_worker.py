"""The prefill worker on the real model: a cancelled prompt stops in the middle of a step.

Long prompts go in whole batches (512 tokens, ~2 s a step on 2 cores, more deep in a context), so a
cancellation cannot wait for the step to end: llama.cpp's abort callback stops it (Context.decode).
The engine loop's own prefill steps stop the same way (tests/test_call_endings.py, through HTTP).
"""

from __future__ import annotations

import queue
import time

from moonserve.engines.embedded.llama import Context, Model
from moonserve.engines.embedded.prefill_worker import PrefillJob, PrefillWorker
from moonserve.engines.embedded.sequence import Sequence
from moonserve.testing.server import smollm2_path


def test_a_cancelled_prefill_stops_within_its_step_and_the_worker_goes_on():
    model = Model(str(smollm2_path()))
    ctx = Context(model, n_ctx_seq=4096, n_seq=1, n_batch=512, threads=2)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    worker = PrefillWorker(ctx, answers.put)
    worker.start()
    try:
        long = PrefillJob(Sequence(prompt=[100 + i % 5000 for i in range(3000)], max_new_tokens=1, sampler=None),
                          0, 2999)
        worker.submit(long)
        time.sleep(0.5)  # inside its first 512-token step
        worker.cancel(long)
        cancelled = time.monotonic()
        done = answers.get(timeout=30)
        stopped = time.monotonic() - cancelled
        assert done.job is long and done.state is None and done.error is None
        assert stopped < 0.4, f"the prefill went on {stopped:.2f}s after its cancellation"
        short = PrefillJob(Sequence(prompt=[200 + i for i in range(600)], max_new_tokens=1, sampler=None), 0, 599)
        worker.submit(short)
        done = answers.get(timeout=60)
        assert done.job is short and done.error is None and done.state is not None and done.size > 0
    finally:
        worker.stop()
        ctx.close()
        model.close()
