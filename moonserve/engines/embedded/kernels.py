"""Which of llama.cpp's CPU kernels this process runs: the fast ones (the default) or the
deterministic ones (`deterministic = true`).

Fast: the wheel's own libggml-cpu, built with llamafile's matrix kernels, and flash attention on.
Both compute a matrix product of several rows differently from one row (tinyBLAS tiles; flash
attention's tiled path), so a token's logits can differ in the last bits with what shares its batch,
and a cache hit can differ from a cold prefill: a seeded request repeats exactly only under the
same load.

Deterministic: a libggml-cpu built without llamafile (scripts/build_deterministic_kernels.sh) and
flash attention off, so every row is computed alike: results are bit-identical however requests are
batched, chunked, prefilled aside or restored from the context cache, at a cost measured in
bench/README.md. The library is chosen once per process, before llama-cpp-python loads its own: it
has the same soname, so the dynamic linker binds llama.cpp to the one already loaded.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

SONAME = "libggml-cpu.so.0"
_chosen: bool | None = None


class KernelsError(RuntimeError):
    pass


def deterministic_library() -> Path:
    """Where scripts/install.sh puts the deterministic kernels (MOONSERVE_DETERMINISTIC_KERNELS overrides)."""
    override = os.environ.get("MOONSERVE_DETERMINISTIC_KERNELS")
    return Path(override) if override else Path(sys.prefix) / "share" / "moonserve" / "deterministic" / SONAME


def choose(deterministic: bool) -> None:
    """Bind this process to the fast or the deterministic kernels. Call before llama_cpp is imported;
    calling again with the same choice is a no-op, with the other one an error."""
    global _chosen
    if _chosen is not None:
        if _chosen != deterministic:
            raise KernelsError("llama.cpp's kernels are chosen once per process: every embedded deployment "
                               "of one server must have the same `deterministic` setting")
        return
    if deterministic:
        if "llama_cpp" in sys.modules:
            raise KernelsError("deterministic kernels must be loaded before llama_cpp is imported")
        path = deterministic_library()
        if not path.is_file():
            raise KernelsError(f"deterministic = true needs llama.cpp's kernels built without llamafile at {path}: "
                               "run scripts/build_deterministic_kernels.sh (scripts/install.sh does)")
        # its dependency first, the wheel's own copy (found without importing llama_cpp)
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            raise KernelsError("llama-cpp-python is not installed")
        base = Path(spec.submodule_search_locations[0]) / "lib" / "libggml-base.so.0"
        ctypes.CDLL(str(base), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    _chosen = deterministic

