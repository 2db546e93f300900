"""A deployment's settings: the ones every engine shares (config.py) and each engine's own
(engines/<engine>/settings.py), read by the engine that the deployment names, so a setting the
engine does not have is an error at start-up, never silently ignored."""

from __future__ import annotations

import pytest

from moonserve.config import ConfigError, load_config
from moonserve.engines import resolve
from moonserve.engines.embedded.settings import EmbeddedDeployment
from moonserve.engines.upstream.settings import UpstreamDeployment


def configured(tmp_path, monkeypatch, text: str):
    monkeypatch.setenv("MOONSERVE_HOME", str(tmp_path))
    path = tmp_path / "moonserve.toml"
    path.write_text(text)
    return resolve(load_config(path))


def test_the_builtin_deployment_is_the_embedded_engines(tmp_path, monkeypatch):
    cfg = configured(tmp_path, monkeypatch, "")
    d = cfg.deployments["smollm2"]
    assert isinstance(d, EmbeddedDeployment) and d.context_length == 4096 and d.max_output_tokens == 512
    assert d.calls_tools and d.thinks


def test_an_override_by_another_engine_keeps_only_the_shared_settings(tmp_path, monkeypatch):
    cfg = configured(tmp_path, monkeypatch, '[deployments.smollm2]\nengine = "upstream"\n'
                                            'base_url = "http://127.0.0.1:9/v1"\nflavour = "vllm"\n')
    d = cfg.deployments["smollm2"]
    assert isinstance(d, UpstreamDeployment) and d.flavour == "vllm"
    assert d.tool_parser == "hermes" and d.max_output_tokens == 512  # shared: kept from the built-in one


@pytest.mark.parametrize("text, says", [
    ('[deployments.up]\nengine = "upstream"\nbase_url = "http://x/v1"\ncontext_length = 8192\n'
     '[models."kimi/kimi-k2.6"]\ndeployment = "up"\n', "unknown setting(s) ['context_length'] for the upstream"),
    ('[deployments.up]\nengine = "upstream"\n[models."kimi/kimi-k2.6"]\ndeployment = "up"\n', "needs base_url"),
    ('[deployments.up]\nengine = "upstream"\nbase_url = "http://x/v1"\nflavour = "tgi"\n'
     '[models."kimi/kimi-k2.6"]\ndeployment = "up"\n', "flavour must be one of"),
    ('[deployments.smollm2]\nbatch_tokens = "many"\n', "batch_tokens must be int"),
    ('[deployments.smollm2]\nbase_url = "http://x/v1"\n', "unknown setting(s) ['base_url'] for the embedded"),
    ('[deployments.other]\nengine = "tpu"\n[models."kimi/kimi-k2.6"]\ndeployment = "other"\n',
     "unknown engine 'tpu' (known: embedded, upstream)"),
    ('[deployments.det]\nmodel = "x.gguf"\ndeterministic = true\n[models."kimi/kimi-k2.6"]\ndeployment = "det"\n',
     "deterministic: the embedded deployments that are served must all agree"),
    ('[deployments.smollm2]\ntool_parser = "xml"\n', "tool_parser must be one of"),
])
def test_a_setting_the_engine_does_not_take_is_an_error(tmp_path, monkeypatch, text, says):
    with pytest.raises(ConfigError) as e:
        configured(tmp_path, monkeypatch, text)
    assert says in str(e.value)
