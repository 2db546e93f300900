#!/usr/bin/env bash
# Kimi K2.6 on one node of 8 GPUs with SGLang, as Moonserve's upstream. NOT run here (no GPU).
# SGLang's radix cache is the implicit context cache; it reports cached_tokens by itself.
set -euo pipefail
MODEL=${MODEL:-moonshotai/Kimi-K2.6}
exec python -m sglang.launch_server \
  --model-path "$MODEL" --served-model-name kimi-k2.6 \
  --tp 8 --trust-remote-code \
  --tool-call-parser kimi_k2 --reasoning-parser kimi_k2 \
  --host 0.0.0.0 --port "${PORT:-8001}"
