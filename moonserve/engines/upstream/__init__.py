"""The upstream engine: an OpenAI-compatible endpoint (vLLM, SGLang, llama-server, a gateway such as
smg in front of replicas, or another Model Studio-compatible service) behind Moonserve's API.

`payload.py` builds the request the upstream gets (the thinking switch in its flavour, media as
checked `data:` URLs, usage always asked for); `client.py` speaks HTTP and SSE and maps the
upstream's failures onto the engine errors; `engine.py` turns its chunks back into Moonserve's
deltas, exactly as the embedded engine would yield them, and keeps the upstream's health.
"""
