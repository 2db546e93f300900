#!/usr/bin/env bash
# Builds llama.cpp's own server (`llama-server`) from the llama.cpp source that the pinned
# llama-cpp-python sdist vendors, with llama.cpp's default kernels (portable AVX2, as the wheel), and
# caches it in ~/.cache/moonserve/llama-server/KEY/. Prints the binary's path. About 6.5 minutes on
# 2 cores, once. Used by the upstream-engine tests (a real upstream) and bench/ (the baseline a user
# would pick).
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_VERSION=0.3.36
ARGS="${LLAMA_SERVER_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moonserve"
key=$(printf '%s' "$LLAMA_VERSION $ARGS" | sha1sum | cut -c1-12)
out="$cache/llama-server/$key"
if [ -x "$out/bin/llama-server" ]; then
  echo "$out/bin/llama-server"
  exit 0
fi
src="$cache/src/llama_cpp_python-$LLAMA_VERSION"
if [ ! -d "$src/vendor/llama.cpp" ]; then
  mkdir -p "$cache/src"
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$tmp" >&2
  tar -xzf "$tmp"/llama_cpp_python-"$LLAMA_VERSION".tar.gz -C "$cache/src"
  rm -rf "$tmp"
fi
build="$cache/llama-server/$key.build"
echo "Building llama-server from llama-cpp-python $LLAMA_VERSION's llama.cpp ($ARGS); several minutes..." >&2
# shellcheck disable=SC2086
cmake -S "$src/vendor/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF $ARGS >&2
cmake --build "$build" --target llama-server llama-batched-bench -j "$(nproc)" >&2
mkdir -p "$out/bin"
cp "$build/bin/llama-server" "$build/bin/llama-batched-bench" "$out/bin/"
rm -rf "$build"
echo "$out/bin/llama-server"
