#!/usr/bin/env bash
# Builds llama.cpp's CPU kernels (libggml-cpu) for Moonserve, from the llama.cpp source that the
# pinned llama-cpp-python sdist vendors, in one of two variants:
#
#   fast           llama.cpp's own build (llamafile's matrix kernels included) with Moonserve's
#                  patches (scripts/kernels/*.patch: flash attention for short batches, measured
#                  there). Every deployment that is not deterministic loads it.
#   deterministic  without llamafile's matmul kernels and unpatched, for `deterministic = true`:
#                  llamafile's kernels (tinyBLAS) take over a matrix product once it has two rows or
#                  more and round differently from ggml's one-row path, so with them a token's logits
#                  depend on what shared its batch. Built without them, ggml computes every row alike
#                  and batching and the context cache are bit-exact.
#
# Moonserve loads the library in place of the wheel's own (same soname, same ABI); see
# moonserve/engines/embedded/kernels.py. Installs it as $VENV/share/moonserve/VARIANT/libggml-cpu.so.0
# (cached in ~/.cache/moonserve/llama-kernels/KEY/, KEY from the version, the flags and the patches).
# About a minute on 2 cores, once per variant.
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:?usage: scripts/build_kernels.sh fast|deterministic}
VENV=${VENV:-.venv}
LLAMA_VERSION=0.3.36
case "$variant" in
  fast) ARGS="${FAST_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON}"; patches=(scripts/kernels/*.patch) ;;
  deterministic) ARGS="${DETERMINISTIC_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_LLAMAFILE=OFF}"; patches=() ;;
  *) echo "unknown variant $variant (fast or deterministic)" >&2; exit 2 ;;
esac
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moonserve"
key=$( { printf '%s' "$LLAMA_VERSION $ARGS"; for p in "${patches[@]}"; do cat "$p"; done; } | sha1sum | cut -c1-12)
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
  work="$out.build"
  rm -rf "$work"
  mkdir -p "$work"
  tree="$src/vendor/llama.cpp"
  if [ ${#patches[@]} -gt 0 ]; then  # patch a copy; the cached source stays as the sdist has it
    cp -r "$tree" "$work/llama.cpp"
    tree="$work/llama.cpp"
    for p in "${patches[@]}"; do patch -s -p1 -d "$tree" < "$p" >&2; done
  fi
  echo "Building llama.cpp's CPU kernels, $variant ($ARGS); a minute or two..." >&2
  # shellcheck disable=SC2086
  cmake -S "$tree" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TOOLS=OFF $ARGS >&2
  cmake --build "$work/build" --target ggml-cpu -j "$(nproc)" >&2
  mkdir -p "$out"
  cp -L "$(find "$work/build" -name 'libggml-cpu.so.0' | head -1)" "$out/libggml-cpu.so.0"
  rm -rf "$work"
fi
dest="$VENV/share/moonserve/$variant"
mkdir -p "$dest"
cp "$out/libggml-cpu.so.0" "$dest/libggml-cpu.so.0"
echo "$dest/libggml-cpu.so.0"
