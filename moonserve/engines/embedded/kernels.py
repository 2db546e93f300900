"""Which of llama.cpp's CPU kernels this process runs: the fast ones (the default) or the
deterministic ones (`deterministic = true`). Both are builds of llama.cpp's libggml-cpu from the
source the pinned wheel vendors (scripts/build_kernels.sh), loaded in place of the wheel's own: they
have the same soname, so the dynamic linker binds llama.cpp to the one already loaded. The library
is chosen once per process, before llama-cpp-python loads its own.

Fast: llama.cpp's build with llamafile's matrix kernels, flash attention on, and Moonserve's patches
(scripts/kernels/: flash attention for short query batches, i.e. decoding and verifying drafts, about
1.5x faster deep in a context). Without that build (a bare `pip install`), the wheel's own kernels
serve, slower (`loaded()` says which; /health shows it as `kernels`). Matrix
products of several rows are computed differently from one row (tinyBLAS tiles, the tiled flash
attention), so a token's logits can differ in the last bits with what shares its batch, and a cache
hit can differ from a cold prefill: a seeded request repeats exactly only under the same load.

Deterministic: a build without llamafile, unpatched, and flash attention off, so every row is
computed alike: results are bit-identical however requests are batched, chunked, prefilled aside or
restored from the context cache, at a cost measured in bench/README.md.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from pathlib import Path

SONAME = "libggml-cpu.so.0"
_chosen: bool | None = None
_loaded: str | None = None  # the build loaded in place of the wheel's own, if any
log = logging.getLogger("moonserve.kernels")


class KernelsError(RuntimeError):
    pass


def library(variant: str) -> Path:
    """Where scripts/install.sh puts a variant's kernels ("fast" or "deterministic");
    MOONSERVE_FAST_KERNELS / MOONSERVE_DETERMINISTIC_KERNELS override."""
    override = os.environ.get(f"MOONSERVE_{variant.upper()}_KERNELS")
    return Path(override) if override else Path(sys.prefix) / "share" / "moonserve" / variant / SONAME


def loaded() -> str:
    """Which kernels this process runs: "moonserve" (the fast build), "deterministic", or
    "llama.cpp" (the wheel's own)."""
    return {"fast": "moonserve", "deterministic": "deterministic"}.get(_loaded or "", "llama.cpp")


def _load(path: Path) -> None:
    # its dependency first, the wheel's own copy (found without importing llama_cpp)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise KernelsError("llama-cpp-python is not installed")
    base = Path(spec.submodule_search_locations[0]) / "lib" / "libggml-base.so.0"
    ctypes.CDLL(str(base), mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)


def choose(deterministic: bool) -> None:
    """Bind this process to the fast or the deterministic kernels. Call before llama_cpp is imported;
    calling again with the same choice is a no-op, with the other one an error. The fast build is an
    optimisation: if it is missing, or llama_cpp was imported first, the wheel's own kernels serve."""
    global _chosen, _loaded
    if _chosen is not None:
        if _chosen != deterministic:
            raise KernelsError("llama.cpp's kernels are chosen once per process: every embedded deployment "
                               "of one server must have the same `deterministic` setting")
        return
    if deterministic:
        if "llama_cpp" in sys.modules:
            raise KernelsError("deterministic kernels must be loaded before llama_cpp is imported")
        path = library("deterministic")
        if not path.is_file():
            raise KernelsError(f"deterministic = true needs llama.cpp's kernels built without llamafile at {path}: "
                               "run scripts/build_kernels.sh deterministic (scripts/install.sh does)")
        _load(path)
        _loaded = "deterministic"
    else:
        path = library("fast")
        if "llama_cpp" in sys.modules:
            log.warning("llama.cpp was loaded before Moonserve chose its kernels: the wheel's own serve")
        elif not path.is_file():
            log.warning("Moonserve's fast kernels are not at %s (scripts/build_kernels.sh fast; "
                        "scripts/install.sh builds them): llama.cpp's own serve, slower", path)
        else:
            _load(path)
            _loaded = "fast"
    _chosen = deterministic
