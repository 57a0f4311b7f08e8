#!/bin/sh
# The record of benchmarks/depth50-gradients-cpu (layerwise 0.5.0): issue 5 item (a), the per-layer gradient-norm
# ratio at depth 50, probed at every epoch end, with the penalty weight mu held at 10. Then two more seeds of the
# decoupled runs, and mu growing 1.1x per epoch for comparison. Run from the repository root.
set -e
COMMON="--depths 50 --activations tanh,sigmoid --data-dir ../shared/data --subset 10000 --epochs 8 --decoupled-init critical --threads 1 --no-progress"
OUT=benchmarks/depth50-gradients-cpu
layerwise bench depth $COMMON --methods bp-default-sgd,bp-glorot-adam,bp-orthogonal-adam,bp-critical-adam,decoupled,decoupled-forward --mu-start 10 --mu-factor 1 --out $OUT
layerwise bench depth $COMMON --methods decoupled --mu-start 10 --mu-factor 1 --seed 1 --out $OUT/seed1
layerwise bench depth $COMMON --methods decoupled --mu-start 10 --mu-factor 1 --seed 2 --out $OUT/seed2
layerwise bench depth $COMMON --methods decoupled --mu-start 10 --mu-factor 1.1 --out $OUT/mu-growth-1.1
# A longer budget, one activation per process: does the ratio stay within 100x past 8 epochs?
for ACT in tanh sigmoid; do
  layerwise bench depth --depths 50 --activations $ACT --methods decoupled --data-dir ../shared/data --subset 10000 --epochs 16 --decoupled-init critical --mu-start 10 --mu-factor 1 --threads 1 --no-progress --out $OUT/epochs16-$ACT
done
