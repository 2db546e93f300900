#!/usr/bin/env bash
# The test suite: real servers on loopback, the real engine and model, the openai client (Python and
# Node), SQLite and a throwaway PostgreSQL cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d tests/node/node_modules/openai ]; then
  npm install --prefix tests/node --no-audit --no-fund --silent
fi
exec .venv/bin/python -m pytest "$@"
