#!/usr/bin/env bash
# The SGLang model gateway (`pip install smg`) in front of several engine nodes, keeping each shared
# prefix on the replica that already holds it (cache_aware). Run here in front of two llama-server
# replicas (tests/test_upstream.py); in front of GPU nodes it is the same command.
#   WORKERS="http://gpu-1:8001 http://gpu-2:8001" ./smg.sh
set -euo pipefail
# shellcheck disable=SC2086
exec smg launch --host 0.0.0.0 --port "${PORT:-8100}" --policy cache_aware \
  --prometheus-host 127.0.0.1 --prometheus-port "${METRICS_PORT:-29000}" \
  --worker-urls ${WORKERS:?set WORKERS to the engine nodes\' URLs}
