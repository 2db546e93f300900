#!/usr/bin/env bash
# Builds llama.cpp's CPU kernels (libggml-cpu) without llamafile's matmul kernels, from the llama.cpp
# source that the pinned llama-cpp-python sdist vendors, for deployments with `deterministic = true`.
#
# Why: llamafile's kernels (tinyBLAS) take over a matrix product once it has two rows or more and
# round differently from ggml's one-row path, so with them a token's logits depend on what shared its
# batch. Built without them, ggml computes every row alike and batching and the context cache are
# bit-exact. Moonserve loads this library in place of the wheel's own (same soname, same ABI) when a
# deployment asks for it; see moonserve/engines/embedded/kernels.py.
#
# Installs it as $VENV/share/moonserve/deterministic/libggml-cpu.so.0 (cached in
# ~/.cache/moonserve/llama-kernels/KEY/). About 1.5 minutes on 2 cores, once.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
LLAMA_VERSION=0.3.36
ARGS="${DETERMINISTIC_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_LLAMAFILE=OFF}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moonserve"
key=$(printf '%s' "$LLAMA_VERSION $ARGS" | sha1sum | cut -c1-12)
out="$cache/llama-kernels/$key"
if [ ! -f "$out/libggml-cpu.so.0" ]; then
  src="$cache/src/llama_cpp_python-$LLAMA_VERSION"
  if [ ! -d "$src/vendor/llama.cpp" ]; then
    mkdir -p "$cache/src"
    tmp=$(mktemp -d)
    "$VENV"/bin/python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$tmp" >&2
    tar -xzf "$tmp"/llama_cpp_python-"$LLAMA_VERSION".tar.gz -C "$cache/src"
    rm -rf "$tmp"
  fi
  build="$out.build"
  echo "Building llama.cpp's CPU kernels for deterministic mode ($ARGS); a minute or two..." >&2
  # shellcheck disable=SC2086
  cmake -S "$src/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TOOLS=OFF $ARGS >&2
  cmake --build "$build" --target ggml-cpu -j "$(nproc)" >&2
  mkdir -p "$out"
  cp -L "$build/bin/libggml-cpu.so.0" "$out/libggml-cpu.so.0" 2>/dev/null || cp -L "$(find "$build" -name 'libggml-cpu.so.0' | head -1)" "$out/libggml-cpu.so.0"
  rm -rf "$build"
fi
dest="$VENV/share/moonserve/deterministic"
mkdir -p "$dest"
cp "$out/libggml-cpu.so.0" "$dest/libggml-cpu.so.0"
echo "$dest/libggml-cpu.so.0"
