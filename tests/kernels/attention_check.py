"""Run by tests/test_kernels.py in a process of its own (kernels are chosen once per process):
one decode step computed with flash attention (Moonserve's kernel for short batches) and without
(llama.cpp's matrix products and softmax), on the same build; prints both steps' logits as JSON."""

import json
import sys

import numpy as np

from moonserve.engines.embedded import kernels

kernels.choose(False)

from moonserve.engines.embedded.llama import Context, Model  # noqa: E402
from moonserve.testing.server import smollm2_path  # noqa: E402


def step(model: Model, flash_attn: bool) -> np.ndarray:
    ctx = Context(model, n_ctx_seq=2048, n_seq=2, n_batch=512, threads=2, flash_attn=flash_attn)
    tokens = model.tokenize("def f(x):\n    return x * 2 + 1  # a comment\n" * 120, add_special=True)[:1400]
    for seq, depth in ((0, 1300), (1, 700)):  # two sequences, two depths: each row sees only its own
        for start in range(0, depth, 512):
            ctx.clear_batch()
            for i in range(start, min(depth, start + 512)):
                ctx.add(tokens[i], i, seq, False)
            assert ctx.decode()
    ctx.clear_batch()
    ctx.add(tokens[1300], 1300, 0, True)  # one row (decoding)
    for i in range(5):  # five rows (a draft)
        ctx.add(tokens[700 + i], 700 + i, 1, True)
    assert ctx.decode()
    out = np.array(ctx.outputs(6), dtype=np.float32)
    ctx.close()
    return out


model = Model(str(smollm2_path()))
json.dump({"kernels": kernels.loaded(), "flash": step(model, True).tolist(), "plain": step(model, False).tolist()},
          sys.stdout)
