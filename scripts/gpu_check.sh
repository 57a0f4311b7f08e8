#!/usr/bin/env bash
# GPU checks and benchmarks in one command (a CUDA machine with torch installed; no install needed: runs from src/).
#   checks: 1. the model zoo (tests/test_zoo.py) built on the GPU: every capability against its slow reference,
#              float64, and CPU-vs-CUDA parity of LocoProp's solvers on every zoo model;
#           2. LocoProp's reference tests on real-model patterns (tests/test_locoprop_models.py, CPU-built) as a
#              smoke run, and tests/test_cuda_syncs.py: LocoProp's inner loop makes no host synchronisation;
#   bench (needs DATA_DIR, the folder holding mnist/): records under $OUT/ —
#           3. LocoProp's step time against Adam's at T = 5, 10, bf16 on the whole batch and on slices of it
#              (layerwise bench steptime --chunks 2,4);
#           4. the deep autoencoder for EPOCHS (100, the official schedule) epochs with the leading methods at
#              their 10-epoch tuned rates: step time against Adam, time to every method's final loss. Kron and
#              SOAP join when pytorch_optimizer and opt_einsum import;
#           5. the step time of the workloads' methods on resnet-mnist and lm-bytes at their gpu size
#              (layerwise bench steptime --workload; SIZE=cpu or tiny for a smaller model), and LocoProp's
#              per-layer, per-phase diagnosis beside AdamW there (layerwise bench diagnose, DIAG_STEPS steps).
# Usage: [DATA_DIR=...] [OUT=...] bash scripts/gpu_check.sh [all|checks|bench]   (default all). A rerun resumes
# the autoencoder record. DEVICE=cpu EPOCHS=1 SUBSET=2000 REPEATS=3 BATCH=100 tries the bench stage on a CPU.
# Writes the log to $OUT/gpu-check.log (OUT defaults to .); exits non-zero if any step failed.
set -uo pipefail
stage="${1:-all}"
case "$stage" in all|checks|bench) ;; *) echo "gpu_check.sh: unknown stage '$stage'; expected all, checks or bench" >&2; exit 2;; esac
out="$(mkdir -p "${OUT:-.}" && cd "${OUT:-.}" && pwd)" || { echo "gpu_check.sh: cannot create OUT=${OUT:-.}" >&2; exit 2; }
data="${DATA_DIR:+$(cd "$DATA_DIR" 2>/dev/null && pwd)}"
if [ -n "${DATA_DIR:-}" ] && [ ! -d "$data/mnist" ]; then
  echo "gpu_check.sh: DATA_DIR=$DATA_DIR holds no mnist/ folder; point it at the folder that holds mnist/" >&2; exit 2
fi
if [ "$stage" = bench ] && [ -z "$data" ]; then
  echo "gpu_check.sh bench: set DATA_DIR to the folder that holds mnist/ (the MNIST files)" >&2; exit 2
fi
cd "$(dirname "$0")/.."
device="${DEVICE:-cuda}"
log="$out/gpu-check.log"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
step() { echo "== $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log" || status=1; }
echo "== gpu_check.sh $stage, $(date -u +%FT%TZ)" | tee -a "$log"
step python3 -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, device: ' + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'))"
if [ "$stage" != bench ]; then
  # cuDNN warns that a deep-copied RNN's weights are not one contiguous chunk (a speed note, not an error).
  LAYERWISE_TEST_DEVICE=cuda step python3 -m pytest -q -p no:cacheprovider \
    -W "ignore:RNN module weights are not part of single contiguous chunk:UserWarning" tests/test_zoo.py
  step python3 -m pytest -q -p no:cacheprovider tests/test_locoprop_models.py tests/test_cuda_syncs.py
fi
if [ "$stage" != checks ] && [ -z "$data" ]; then
  echo "== bench stage skipped: DATA_DIR is not set" | tee -a "$log"
elif [ "$stage" != checks ]; then
  methods="adam,rmsprop,muon,shampoo,kfac,locoprop-m,locoprop-m-bf16,locoprop-m-bf16-t5,locoprop-m-bf16-t5-c2,locoprop-m-bf16-t5-c4"
  if python3 -c "import pytorch_optimizer, opt_einsum" 2>/dev/null; then methods="$methods,kron,soap"; fi
  extra=()
  if [ -n "${SUBSET:-}" ]; then extra+=(--subset "$SUBSET"); fi
  batch=()
  if [ -n "${BATCH:-}" ]; then batch+=(--batch-size "$BATCH"); fi
  step python3 -m layerwise_bench bench steptime --device "$device" --steps 5,10 --chunks 2,4 --repeats "${REPEATS:-50}" \
    --no-pypi --overwrite ${batch[@]+"${batch[@]}"} --out "$out/locoprop-steptime-gpu"
  step python3 -m layerwise_bench bench autoencoder --device "$device" --dataset mnist --data-dir "$data" \
    --epochs "${EPOCHS:-100}" ${extra[@]+"${extra[@]}"} --methods "$methods" --keep-going --no-progress --resume \
    --tuned benchmarks/tune-10ep-mnist-cpu/tuned-10ep.json --out "$out/autoencoder-gpu"
  wmethods="adamw,nesterov,muon"
  if python3 -c "import pytorch_optimizer, opt_einsum" 2>/dev/null; then wmethods="$wmethods,soap,kron,schedule-free-adamw"; fi
  # workload : its recommended recipe at the rate the CPU protocol chose : the other recipes timed beside it
  for w in resnet-mnist:locoprop-cnn-momentum=10:locoprop-cnn-sampled,locoprop-cnn \
           lm-bytes:locoprop-eigen=3e-3:locoprop-transformer; do
    IFS=: read -r workload recipe others <<< "$w"
    step python3 -m layerwise_bench bench steptime --device "$device" --workload "$workload" --size "${SIZE:-gpu}" \
      --methods "$wmethods,${recipe%%=*},$others" --data-dir "$data" --repeats "${REPEATS:-50}" --overwrite \
      --out "$out/steptime-$workload-gpu"
    step python3 -m layerwise_bench bench diagnose --device "$device" --workload "$workload" --size "${SIZE:-gpu}" \
      --method "${recipe%%=*}" --lr "$recipe" --data-dir "$data" --steps "${DIAG_STEPS:-200}" \
      --window "${REPEATS:-50}" --overwrite --out "$out/diagnose-$workload-gpu"
  done
fi
echo "== gpu_check.sh $stage: $([ $status = 0 ] && echo passed || echo FAILED)" | tee -a "$log"
exit $status
