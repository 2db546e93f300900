#!/usr/bin/env bash
# The test suite: real servers on loopback, the real engine and model, the openai client (Python and
# Node), the coding agents, SQLite and a throwaway PostgreSQL cluster. `make test` installs first
# (scripts/install.sh, then scripts/install_test_tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
