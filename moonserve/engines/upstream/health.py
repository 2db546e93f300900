"""Whether an upstream can serve, from what each kind exposes about its workers.

- A gateway in front of replicas (smg) lists them at `/workers`: the deployment is up while one of
  them is, by the gateway's word (`is_healthy`) and by its own `/health`, which Moonserve asks itself
  (a gateway notices a dead replica only after its own checks, tens of seconds later, and answers
  `/models` and `/readiness` meanwhile as if nothing had happened).
- An engine (vLLM, SGLang, llama-server) answers `/health` with 200 when it can serve.
- Another OpenAI-compatible endpoint (another Moonserve, Model Studio): its `/models`.
"""

from __future__ import annotations

import asyncio

import httpx

ENGINE_FLAVOURS = ("vllm", "sglang", "llamacpp")


async def probe(http: httpx.AsyncClient, base_url: str, flavour: str, timeout: float) -> str | None:
    """None when the upstream can serve, else why not."""
    root = base_url[:-3] if base_url.endswith("/v1") else base_url
    try:
        workers = await _workers(http, root, timeout)
        if workers is not None:
            return await _gateway(http, workers, timeout)
        if flavour in ENGINE_FLAVOURS:
            r = await http.get(f"{root}/health", timeout=timeout)
        else:
            r = await http.get(f"{base_url}/models", timeout=timeout)
    except httpx.HTTPError as exc:
        return f"unreachable: {type(exc).__name__}"
    return None if r.status_code == 200 else f"health check answered {r.status_code}"


async def _workers(http: httpx.AsyncClient, root: str, timeout: float) -> list[dict] | None:
    """A gateway's workers, or None if this is no gateway."""
    r = await http.get(f"{root}/workers", timeout=timeout)
    if r.status_code != 200:
        return None
    try:
        data = r.json()
    except ValueError:
        return None
    workers = data.get("workers") if isinstance(data, dict) else None
    return [w for w in workers if isinstance(w, dict)] if isinstance(workers, list) else None


async def _gateway(http: httpx.AsyncClient, workers: list[dict], timeout: float) -> str | None:
    if not workers:
        return "the gateway has no workers"

    async def up(worker: dict) -> bool:
        if worker.get("is_healthy") is False or not isinstance(worker.get("url"), str):
            return False
        try:
            return (await http.get(f"{worker['url'].rstrip('/')}/health", timeout=timeout)).status_code == 200
        except httpx.HTTPError:
            return False

    alive = sum(await asyncio.gather(*(up(w) for w in workers)))
    return None if alive else f"none of the gateway's {len(workers)} worker(s) answers its /health"
