"""Moonserve's build of llama.cpp's CPU kernels (scripts/build_kernels.sh, scripts/kernels/*.patch):
its flash attention for short batches computes what attention without it computes, and a decode
step's rows come out the same to the bit whether a token is decoded alone or with others."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def result() -> dict:
    script = Path(__file__).parent / "kernels" / "attention_check.py"
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_a_token_decoded_alone_or_beside_others_gets_the_same_logits(result):
    assert result["kernels"] == "moonserve"
    assert result["rows_alike"] == [True] * 9  # the wheel's own kernels: none alike


def test_flash_attention_for_short_batches_agrees_with_attention_without_it(result):
    assert result["kernels"] == "moonserve"  # the patched build is the one loaded
    flash, plain = np.array(result["flash"]), np.array(result["plain"])
    assert flash.shape == plain.shape == (6, flash.shape[1])
    # the same next token on every row, the same distribution up to the last-bits noise of two F16
    # attention kernels (llama.cpp's own flash attention differs from its plain attention by as much)
    assert (flash.argmax(1) == plain.argmax(1)).all()
    assert np.abs(flash - plain).max() < 2.0  # logits of ~35
    probabilities = lambda x: np.exp(x - x.max(1, keepdims=True)) / np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)
    assert np.abs(probabilities(flash) - probabilities(plain)).max() < 0.05
