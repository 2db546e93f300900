"""The `moonserve` command against a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run(home, *args, check=True):
    env = {**os.environ, "MOONSERVE_HOME": str(home)}
    env.pop("MOONSERVE_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "moonserve", *args], env=env, capture_output=True, text=True,
                          check=check, timeout=60)


def test_keys_are_shown_once_and_stored_hashed(tmp_path):
    created = json.loads(run(tmp_path, "keys", "create", "--workspace", "ops", "--json").stdout)
    assert created["key"].startswith("sk-") and created["workspace"] == "ops"
    listed = json.loads(run(tmp_path, "keys", "list", "--json").stdout)
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and listed[0]["hint"].endswith(created["key"][-4:])
    db = (tmp_path / "moonserve.db").read_bytes()
    assert created["key"].encode() not in db
    revoked = json.loads(run(tmp_path, "keys", "revoke", created["id"], "--json").stdout)
    assert revoked["revoked_at"]
    assert run(tmp_path, "keys", "revoke", "key_nope", check=False).returncode == 1


def test_models_activation_per_workspace(tmp_path):
    rows = json.loads(run(tmp_path, "models", "list", "--workspace", "w1", "--json").stdout)
    assert {r["id"] for r in rows} == {"kimi/kimi-k2.7-code-highspeed", "kimi/kimi-k2.7-code", "kimi/kimi-k2.6",
                                       "kimi/kimi-k2.5"}
    assert not any(r["activated"] for r in rows)
    out = json.loads(run(tmp_path, "models", "activate", "kimi/kimi-k2.5", "-w", "w1", "--yes", "--json").stdout)
    assert out["changed"] is True
    rows = {r["id"]: r for r in json.loads(run(tmp_path, "models", "list", "-w", "w1", "--json").stdout)}
    assert rows["kimi/kimi-k2.5"]["activated"] and not rows["kimi/kimi-k2.6"]["activated"]
    assert rows["kimi/kimi-k2.5"]["deployment"] == "smollm2"
    run(tmp_path, "models", "deactivate", "kimi/kimi-k2.5", "-w", "w1")
    rows = {r["id"]: r for r in json.loads(run(tmp_path, "models", "list", "-w", "w1", "--json").stdout)}
    assert not rows["kimi/kimi-k2.5"]["activated"]
    bad = run(tmp_path, "models", "activate", "kimi/nope", "--yes", check=False)
    assert bad.returncode == 1 and "unknown model" in bad.stderr


def test_config_errors_are_reported_not_raised(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[models."kimi/kimi-k2.6"]\ntemperature_thinking = 0.2\n')
    r = run(tmp_path, "models", "list", "--config", str(cfg), check=False)
    assert r.returncode == 2 and "rules and prices are fixed" in r.stderr
    assert "Traceback" not in r.stderr
    # llama.cpp's kernels are chosen per process: served embedded deployments must agree
    cfg.write_text('[deployments.smollm2]\ndeterministic = true\n[deployments.other]\nmodel = "x.gguf"\n'
                   '[models."kimi/kimi-k2.5"]\ndeployment = "other"\n')
    r = run(tmp_path, "models", "list", "--config", str(cfg), check=False)
    assert r.returncode == 2 and "deterministic" in r.stderr and "Traceback" not in r.stderr
    # a setting of the wrong type is named, never read as something else ("no" is not false)
    cfg.write_text('[deployments.smollm2]\ndeterministic = "no"\n')
    r = run(tmp_path, "models", "list", "--config", str(cfg), check=False)
    assert r.returncode == 2 and "deterministic must be bool, not 'no'" in r.stderr


def test_models_list_shows_the_sampling_and_output_bound_each_call_gets(tmp_path):
    rows = {r["id"]: r for r in json.loads(run(tmp_path, "models", "list", "--json").stdout)}
    default = rows["kimi/kimi-k2.6"]
    assert default["deployment"] == "smollm2" and default["max_output_tokens"] == 512
    assert default["sampling"] == {"from": "deployment", "temperature_thinking": 0.2,
                                   "temperature_non_thinking": 0.2, "top_p": 0.9}
    # a deployment of Kimi weights declares nothing: the card's fixed sampling applies
    config = tmp_path / "kimi.toml"
    config.write_text('[deployments.kimi]\nmodel = "/models/kimi.gguf"\n[models."kimi/kimi-k2.6"]\ndeployment = "kimi"\n')
    rows = {r["id"]: r for r in json.loads(run(tmp_path, "models", "list", "--json", "--config", str(config)).stdout)}
    assert rows["kimi/kimi-k2.6"]["sampling"] == {"from": "model card", "temperature_thinking": 1.0,
                                                  "temperature_non_thinking": 0.6, "top_p": 0.95}
    assert rows["kimi/kimi-k2.6"]["max_output_tokens"] is None


def test_every_table_fits_an_80_column_terminal_with_whole_ids(tmp_path):
    created = json.loads(run(tmp_path, "keys", "create", "--json").stdout)
    ids = ["kimi/kimi-k2.7-code-highspeed", "kimi/kimi-k2.7-code", "kimi/kimi-k2.6", "kimi/kimi-k2.5"]
    for columns, args in ((80, ("models", "list")), (80, ("keys", "list")), (80, ("usage",)),
                          (60, ("models", "list")), (200, ("models", "list"))):
        env = {**os.environ, "MOONSERVE_HOME": str(tmp_path), "COLUMNS": str(columns)}
        env.pop("MOONSERVE_DATABASE_URL", None)
        text = subprocess.run([sys.executable, "-m", "moonserve", *args], env=env, capture_output=True, text=True,
                              check=True, timeout=60).stdout
        assert "…" not in text.replace("sk-…", ""), text  # nothing cut (a key's hint is "sk-…" and its end)
        assert max(len(line.rstrip()) for line in text.splitlines() or [""]) <= columns, text
        if args[0] == "models":
            assert all(i in text.split() for i in ids), text
            assert ("512" in text) and ("T 0.2, top_p 0.9" in text)
        elif args[0] == "keys":
            assert created["id"] in text
