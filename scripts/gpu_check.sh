#!/usr/bin/env bash
# GPU checks in one command (a CUDA machine with torch installed; no install needed: runs from src/).
#   1. the model zoo (tests/test_zoo.py) built on the GPU: every capability against its slow reference, float64;
#   2. CPU-vs-CUDA parity of LocoProp's solvers on every zoo model (the same test file, run where CUDA exists);
#   3. LocoProp's reference tests on real-model patterns (tests/test_locoprop_models.py, CPU-built) as a smoke run.
# Writes the log to ${OUT:-.}/gpu-check.log and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 - <<'PY' 2>&1 | tee "$out/gpu-check.log"
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device: "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
PY
# cuDNN warns that a deep-copied RNN's weights are not one contiguous chunk (a speed note, not an error).
LAYERWISE_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider \
  -W "ignore:RNN module weights are not part of single contiguous chunk:UserWarning" tests/test_zoo.py 2>&1 | tee -a "$out/gpu-check.log"
python3 -m pytest -q -p no:cacheprovider tests/test_locoprop_models.py 2>&1 | tee -a "$out/gpu-check.log"
