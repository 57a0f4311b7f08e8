#!/usr/bin/env bash
# The README's main job (`layerwise bench autoencoder --out runs/quickstart`: digits, 10 epochs, the
# default 11 methods) timed on an otherwise idle machine, then beside a concurrent CPU load (two
# busy-looping processes, one per core of this 2-core machine). Run from a checkout whose .venv has
# the README's install; writes timing.json here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
layerwise="${LAYERWISE:-.venv/bin/layerwise}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"; kill ${load_pids:-} 2>/dev/null || true' EXIT

run() {  # seconds of one quickstart run
    local start end
    start=$(date +%s.%N)
    "$layerwise" bench autoencoder --no-progress --out "$scratch/$1" > "$scratch/$1.log"
    end=$(date +%s.%N)
    python3 -c "print(round($end - $start, 1))"
}

idle=$(run idle)
load_pids=""
for _ in 1 2; do python3 -c "while True: pass" & load_pids="$load_pids $!"; done
loaded=$(run loaded)
kill $load_pids
printf '{"idle_s": %s, "under_two_busy_processes_s": %s, "cores": %s, "torch": "%s"}\n' \
    "$idle" "$loaded" "$(nproc)" "$(.venv/bin/python -c 'import torch; print(torch.__version__)')" > "$here/timing.json"
cat "$here/timing.json"
