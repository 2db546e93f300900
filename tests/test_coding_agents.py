"""The coding agents that Kimi's code models are made for, installed from npm at pinned versions
(tests/agents/package.json, by scripts/test.sh) and run against a real server with the recipes of
examples/coding_agents/, exactly as the README gives them:

- Claude Code through the Anthropic Messages endpoint,
- Codex CLI through the Responses endpoint,
- Qwen Code and opencode through the Chat Completions endpoint.

Each runs one full turn in which the model thinks and calls the agent's own file-reading tool on a
proof file, then answers from the tool's result; then a second turn that continues the session
(`--continue`, `resume --last`), whose history (reasoning included, as each agent sends it back)
must be accepted and reused by the context cache. The model is scripted (scripted_agents.py), on
SmolLM2's vocabulary, so an agent's real 10-15k-token prompt is cheap.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from moonserve.accounts.ledger import Ledger
from moonserve.accounts.store import Store
from moonserve.testing.server import ROOT, smollm2_path, start_server

sys.path.insert(0, str(Path(__file__).parent))
from scripted_agents import AGAIN, ANSWER, CONTEXT, READERS, write_agents_model  # noqa: E402

BIN = ROOT / "tests" / "agents" / "node_modules" / ".bin"
RECIPES = ROOT / "examples" / "coding_agents"
DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = 180


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The server, a work folder per agent with its proof file, and the key."""
    if not (BIN / "claude").exists():
        pytest.fail("the coding agents are not installed: scripts/test.sh installs them (npm install --prefix tests/agents)")
    root = tmp_path_factory.mktemp("coding_agents")
    proofs = {}
    for agent in READERS:
        (root / agent / "work").mkdir(parents=True)
        proofs[agent] = root / agent / "work" / "proof.txt"
        proofs[agent].write_text(f"moonserve-proof-{agent}-{secrets.token_hex(4)}\n")
    gguf = write_agents_model(root / "agents.gguf", smollm2_path(), proofs)
    server = start_server(root / "home", config=(
        f'[deployments.agents]\nmodel = "{gguf}"\ncontext_length = {CONTEXT}\nmax_sequences = 2\n'
        'reasoning_parser = "think"\ntool_parser = "kimi_k2"\n'
        '[models."kimi/kimi-k2.7-code"]\ndeployment = "agents"\n'
        '[models."kimi/kimi-k2.7-code-highspeed"]\ndeployment = "agents"\n'))
    yield server, root, proofs
    server.stop()


def recipe_env(name: str, key: str, url: str) -> dict:
    """The environment a user gets from `source examples/coding_agents/NAME` (run by bash)."""
    out = subprocess.run(["bash", "-c", f'source "{RECIPES / name}" && env -0'], capture_output=True, check=True,
                         env={"PATH": os.environ["PATH"], "MOONSERVE_API_KEY": key})
    env = dict(line.split("=", 1) for line in out.stdout.decode().split("\0") if "=" in line)
    return {k: v.replace(DEFAULT_URL, url) for k, v in env.items()}


def install_recipe(name: str, dest: Path, url: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text((RECIPES / name).read_text().replace(DEFAULT_URL, url))


def run(agent_dir: Path, argv: list[str], env: dict) -> list[dict]:
    """Run an agent in its work folder with its own HOME; its JSON lines."""
    home = agent_dir / "home"
    home.mkdir(exist_ok=True)
    p = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=agent_dir / "work", stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=TIMEOUT,
                       env={"PATH": os.environ["PATH"], "HOME": str(home), "TERM": "dumb", **env})
    events = []
    for line in p.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    assert p.returncode == 0, f"{argv[0]} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return events


def texts(events) -> str:
    """Every string in the agent's JSON output, one per line (where its answer and the tool's
    result appear, whatever the agent's event format)."""
    out: list[str] = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(events)
    return "\n".join(out)


def ledger_rows(server, protocol: str) -> list[dict]:
    rows = Ledger(Store(f"sqlite:///{server.home / 'moonserve.db'}").engine).records()
    return [r for r in rows if r["protocol"] == protocol]


def two_turns(server, protocol: str, proof: Path, turn, again) -> None:
    """Run the first turn, then the second, and check what a user relies on."""
    before = len(ledger_rows(server, protocol))
    first = turn()
    middle = len(ledger_rows(server, protocol))
    second = again()
    one, two = texts(first), texts(second)
    assert proof.read_text().strip() in one, "the tool's result is missing from the agent's output"
    assert ANSWER in one and AGAIN in two
    rows = ledger_rows(server, protocol)
    assert len(rows) >= middle + 1 > before + 2  # a tool call and the answer from its result, then a turn
    assert all(r["status"] == 200 for r in rows[before:]), [(r["status"], r["error_code"]) for r in rows[before:]]
    # the second turn sent the session back (its reasoning too): most of its prompt is the cache's
    assert any(r["prompt_tokens"] > 5000 and r["cached_tokens"] > r["prompt_tokens"] // 2 for r in rows[middle:]), \
        [(r["prompt_tokens"], r["cached_tokens"]) for r in rows[middle:]]


def test_claude_code(lab):
    server, root, proofs = lab
    env = recipe_env("claude-code.env", server.key, server.url)
    argv = ["claude", "--output-format", "stream-json", "--verbose", "--allowedTools", "Read", "-p"]
    two_turns(server, "anthropic", proofs["claude"],
              lambda: run(root / "claude", [*argv, "Read the proof file. [claude]"], env),
              lambda: run(root / "claude", ["claude", "--continue", *argv[1:], "Once more. [again]"], env))


def test_codex_cli(lab):
    server, root, proofs = lab
    install_recipe("codex/config.toml", root / "codex" / "home" / ".codex" / "config.toml", server.url)
    env = {"MOONSERVE_API_KEY": server.key}
    argv = ["codex", "exec", "--skip-git-repo-check", "--json"]
    events: list[dict] = []

    def turn(*args: str) -> list[dict]:
        events.extend(run(root / "codex", [*argv, *args], env))
        return events[:]

    two_turns(server, "responses", proofs["codex"], lambda: turn("Read the proof file. [codex]"),
              lambda: turn("resume", "--last", "Once more. [again]"))
    assert not [e for e in events if e.get("type") in ("turn.failed", "error")]


def test_qwen_code(lab):
    server, root, proofs = lab
    env = recipe_env("qwen-code.env", server.key, server.url)
    argv = ["qwen", "--output-format", "stream-json", "-p"]
    two_turns(server, "chat", proofs["qwen"], lambda: run(root / "qwen", [*argv, "Read the proof file. [qwen]"], env),
              lambda: run(root / "qwen", ["qwen", "--continue", *argv[1:], "Once more. [again]"], env))


def test_opencode(lab):
    server, root, proofs = lab
    install_recipe("opencode/opencode.json", root / "opencode" / "home" / ".config" / "opencode" / "opencode.json",
                   server.url)
    env = {"MOONSERVE_API_KEY": server.key, "OPENCODE_DISABLE_AUTOUPDATE": "1"}
    argv = ["opencode", "run", "--format", "json"]
    two_turns(server, "chat", proofs["opencode"],
              lambda: run(root / "opencode", [*argv, "Read the proof file. [opencode]"], env),
              lambda: run(root / "opencode", [*argv, "--continue", "Once more. [again]"], env))


def test_no_agent_request_was_refused(lab):
    """Whatever the agents sent on the side (titles, summaries), nothing was refused."""
    server, _, _ = lab
    assert "refused" not in server.output(), [line for line in server.output().splitlines() if "refused" in line]


def test_the_agents_server_config_gives_the_code_ids_an_agents_context():
    from moonserve.config import load_config
    from moonserve.engines import resolve

    cfg = resolve(load_config(RECIPES / "moonserve.toml"))
    for model in ("kimi/kimi-k2.7-code", "kimi/kimi-k2.7-code-highspeed"):
        (name,) = cfg.routes[model]
        d = cfg.deployments[name]
        assert d.context_length >= CONTEXT and d.max_output_tokens == 512 and d.calls_tools and d.thinks
