#!/bin/sh
# The record of benchmarks/depth-mnist-cpu (layerwise 0.4.0), in priority order: depth-20 sigmoid (all methods), then
# depth 50 (backprop baselines, both decoupled variants, deep supervision: the gradient-ratio item), then depth-20
# tanh, then depth 10, then LocoProp at depth 50 (the most expensive method). Every call after the first resumes.
# Decoupled training starts from the critical init (orthogonal / f'(0), centring biases), the best init here for
# every method; each backprop baseline is run with its own init, bp-critical-adam with the same one.
set -e
COMMON="--data-dir ../shared/data --subset 10000 --epochs 8 --decoupled-init critical --threads 1 --no-progress --out benchmarks/depth-mnist-cpu"
layerwise bench depth --depths 20 --activations sigmoid $COMMON --overwrite
layerwise bench depth --depths 50 --activations sigmoid,tanh --methods bp-default-sgd,bp-glorot-adam,bp-orthogonal-adam,bp-critical-adam,decoupled,decoupled-forward,deep-supervision $COMMON --resume
layerwise bench depth --depths 20 --activations tanh $COMMON --resume
layerwise bench depth --depths 10 --activations sigmoid,tanh $COMMON --resume
layerwise bench depth --depths 50 --activations sigmoid,tanh --methods locoprop $COMMON --resume

# Side check, recorded with layerwise 0.3.0 (backprop only, so unaffected by the decoupled changes): the backprop
# Adam baselines with lr 1e-4 instead of 1e-3, same data and budget.
# SIDE="--data-dir ../shared/data --subset 10000 --epochs 8 --adam-lr 1e-4 --threads 1 --no-progress --out benchmarks/depth-mnist-cpu/adam-lr-1e-4"
# layerwise bench depth --depths 50 --activations tanh --methods bp-glorot-adam,bp-orthogonal-adam $SIDE
# layerwise bench depth --depths 20,50 --activations sigmoid --methods bp-glorot-adam,bp-orthogonal-adam $SIDE --resume
