#!/usr/bin/env bash
# Installs what the tests need beside the server (scripts/install.sh comes first): the test
# dependencies, llama.cpp's own server (a real upstream and the benchmarks' baseline), vLLM's CPU build
# where this image has the CPU torch wheel, the agent frameworks of examples/agents/ in .venv-agents,
# the Node clients, the coding agents at the tests' versions, and Debian's Chromium for the console's
# browser tests. Each is cached (~/.cache/moonserve, npm's cache) and skipped when already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
started=$(date +%s)
.venv/bin/python -m pip install -q -e ".[test]"

# llama.cpp's own server, from the same llama.cpp source (cached like the wheel).
scripts/build_llama_server.sh >/dev/null
# Real vLLM (CPU build) and SmolLM2 as safetensors for it, where this image has the CPU torch wheel.
scripts/install_vllm.sh >/dev/null

# The agent frameworks of the README's recipes (examples/agents/), in an environment of their own as
# in a user's project; the tests run every recipe. The versions are the ones the tests passed with.
# kosong needs Python 3.12+: from PATH or pyenv, else the recipes run without it (its tests then fail
# saying so).
AGENTS_PY=""
for candidate in python3.12 python3.13 "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python; do
  # run it: a pyenv shim is on PATH even where that version is not selected, and then fails
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
    AGENTS_PY=$candidate
    break
  fi
done
AGENTS="openai-agents==0.8.3 pydantic-ai-slim[openai]==1.66.0 langchain-openai==1.1.9 langchain-qwq==0.3.4 instructor==1.17.0 litellm==1.83.0"
if [ -n "$AGENTS_PY" ]; then
  AGENTS="$AGENTS kosong==0.56.0"
else
  AGENTS_PY=$PY
  echo "No Python 3.12+ found: the kosong recipe cannot be installed (it needs 3.12)."
fi
if [ ! -x .venv-agents/bin/python ]; then
  "$AGENTS_PY" -m venv .venv-agents
fi
.venv-agents/bin/python -m pip install -q --upgrade pip
# shellcheck disable=SC2086
.venv-agents/bin/python -m pip install -q $AGENTS

# The Node clients (openai, the Vercel AI SDK) of tests/node.
if [ ! -d tests/node/node_modules/openai ]; then
  npm install --prefix tests/node --no-audit --no-fund --silent
fi
# The coding agents (Claude Code, Codex CLI, Qwen Code, opencode) at the versions the tests passed
# with (tests/agents/package.json); npm keeps their packages in its cache for the next install.
if ! cmp -s tests/agents/package.json tests/agents/node_modules/.moonserve-installed 2>/dev/null; then
  echo "Installing the coding agents for tests/test_coding_agents.py (about a minute, once)..."
  npm install --prefix tests/agents --no-audit --no-fund --silent
  cp tests/agents/package.json tests/agents/node_modules/.moonserve-installed
fi
# The console's browser tests drive Debian's Chromium (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "The console tests need Debian's chromium: sudo apt-get install chromium" >&2
  fi
fi
echo "Test tools installed in $(( $(date +%s) - started )) s."
