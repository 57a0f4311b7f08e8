#!/usr/bin/env bash
# Reproduces this record from the repository root (with the project's environment active): the four digits
# families at equal wall-clock, every workload method's rate tuned on seed 0's budget, seeds 1 and 2 at those rates.
set -euo pipefail
out=benchmarks/equal-time-digits-cpu
for family in resnet vgg mixer transformer; do
  w=digits-$family
  layerwise bench equal-time --workload $w --multiples 1 --lr-factors 1,3.16,10 --threads 1 --no-progress --out $out/$family-s0
  for seed in 1 2; do
    layerwise bench equal-time --workload $w --multiples 1 --lrs-from $out/$family-s0 --seed $seed --threads 1 --no-progress --out $out/$family-s$seed
  done
  layerwise report $out/$family-s0 $out/$family-s1 $out/$family-s2 --out $out/$family
done
