#!/bin/sh
# The sweep of benchmarks/decoupled-mnist1d-digits-cpu (one change to the decoupled recipe each, MNIST-1D, depth 10,
# tanh), from the checkout root.
set -e
OUT=benchmarks/decoupled-mnist1d-digits-cpu/sweep-mnist1d-d10-tanh
BASE="--dataset mnist1d --depths 10 --activations tanh --methods decoupled-forward --epochs 30 --decoupled-init critical --delta --activation-slopes --threads 1 --no-progress --overwrite"
run() { name=$1; shift; layerwise bench depth $BASE --forward-z-steps 3 "$@" --out $OUT/$name; }
run mu1x1 --mu-start 1 --mu-factor 1
run mu10x1 --mu-factor 1
run mu100x1 --mu-start 100 --mu-factor 1
run lr3e-3 --decoupled-lr 3e-3
run lr3e-4 --decoupled-lr 3e-4
run zlr03 --z-lr 0.3
run nocons --consistency-epochs 0
layerwise bench depth $BASE --forward-z-steps 1 --out $OUT/z1
layerwise bench depth $BASE --mu-factor 1 --forward-z-steps 6 --out $OUT/mu10x1-z6
layerwise bench depth $BASE --mu-factor 1 --forward-z-steps 3 --epochs 90 --methods decoupled-forward,bp-critical-adam --out $OUT/mu10x1-90ep
