"""Run by tests/test_kernels.py in a process of its own (kernels are chosen once per process):
one decode step computed with flash attention (Moonserve's kernel for short batches) and without
(llama.cpp's matrix products and softmax), on the same build; and nine tokens decoded one a step
and then in one step beside another sequence's token. Prints the logits and the comparison as JSON."""

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


def rows_alike(model: Model) -> list[bool]:
    """Whether each of nine tokens gets the same logits, to the bit, decoded alone (one a step) and
    in one step of ten rows (a draft's check, beside another sequence's token)."""
    ctx = Context(model, n_ctx_seq=2048, n_seq=2, n_batch=512, threads=2, flash_attn=True)
    tokens = model.tokenize("def f(x):\n    return x * 2 + 1  # a comment\n" * 120, add_special=True)[:1400]
    for seq, depth in ((0, 1300), (1, 333)):
        for start in range(0, depth, 512):
            ctx.clear_batch()
            for i in range(start, min(depth, start + 512)):
                ctx.add(tokens[i], i, seq, False)
            assert ctx.decode()
    alone = []
    for i in range(9):
        ctx.clear_batch()
        ctx.add(tokens[1300 + i], 1300 + i, 0, True)
        assert ctx.decode()
        alone.append(np.array(ctx.outputs(1)[0]))
    ctx.forget(0, 1300)
    ctx.clear_batch()
    ctx.add(tokens[333], 333, 1, True)
    for i in range(9):
        ctx.add(tokens[1300 + i], 1300 + i, 0, True)
    assert ctx.decode()
    together = np.array(ctx.outputs(10))[1:]
    ctx.close()
    return [bool((a == b).all()) for a, b in zip(alone, together)]


model = Model(str(smollm2_path()))
json.dump({"kernels": kernels.loaded(), "flash": step(model, True).tolist(), "plain": step(model, False).tolist(),
           "rows_alike": rows_alike(model)}, sys.stdout)
