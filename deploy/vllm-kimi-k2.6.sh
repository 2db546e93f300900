#!/usr/bin/env bash
# Kimi K2.6 on one node of 8 GPUs with vLLM, as Moonserve's upstream. NOT run here (this project's
# machines have no GPU); the flags are the ones vLLM documents for the Kimi K2 family. Use the weights'
# repository name as Moonshot publishes it.
#   --tool-call-parser/--reasoning-parser kimi_k2   tool calls and reasoning as structured fields
#   --enable-prompt-tokens-details                  cached_tokens in usage (the context-cache discount)
#   --enable-prefix-caching                         the implicit context cache itself
set -euo pipefail
MODEL=${MODEL:-moonshotai/Kimi-K2.6}
exec vllm serve "$MODEL" \
  --served-model-name kimi-k2.6 \
  --tensor-parallel-size 8 \
  --trust-remote-code \
  --enable-auto-tool-choice --tool-call-parser kimi_k2 \
  --reasoning-parser kimi_k2 \
  --enable-prefix-caching --enable-prompt-tokens-details \
  --max-model-len 262144 \
  --host 0.0.0.0 --port "${PORT:-8001}"
