#!/usr/bin/env bash
# The test suite: real servers on loopback, the real engine and model, the openai client (Python and
# Node), SQLite and a throwaway PostgreSQL cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
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
exec .venv/bin/python -m pytest "$@"
