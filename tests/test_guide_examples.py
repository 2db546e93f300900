"""The guide's own examples (Python SDK, Node SDK, curl), pointed at Moonserve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def guide_env(server) -> dict:
    return {**os.environ, "DASHSCOPE_API_KEY": server.key, "MOONSERVE_BASE_URL": server.base_url}


def test_python_text_example(server):
    r = subprocess.run([sys.executable, str(HERE / "guide" / "text_thinking.py")], env=guide_env(server),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    head, _, answer = r.stdout.partition("=" * 20 + "Full Response" + "=" * 20)
    assert answer.strip(), r.stdout


def test_node_text_example(server):
    node = shutil.which("node")
    assert node, "node is needed for the Node SDK example"
    r = subprocess.run([node, str(HERE / "node" / "text_thinking.mjs")], env=guide_env(server),
                       capture_output=True, text=True, timeout=120, cwd=HERE / "node")
    assert r.returncode == 0, r.stderr
    assert "=" * 20 + "Full Response" + "=" * 20 in r.stdout
    assert r.stdout.split("Full Response")[1].strip("= \n")


def test_node_streaming_with_usage(server):
    r = subprocess.run(["node", str(HERE / "node" / "stream_usage.mjs")], env=guide_env(server),
                       capture_output=True, text=True, timeout=120, cwd=HERE / "node")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["text"].strip()
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]


def test_curl_example(server):
    r = subprocess.run(["bash", str(HERE / "guide" / "text_thinking.sh")], env=guide_env(server),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["model"] == "kimi/kimi-k2.6"
    assert body["choices"][0]["message"]["content"].strip()
