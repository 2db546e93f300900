"""First run, restarts, and where a deployment's weights come from."""

from __future__ import annotations

import os
import subprocess
import sys

from moonserve.testing import smollm2_path, start_server


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
