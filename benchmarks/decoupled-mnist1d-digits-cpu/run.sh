#!/bin/sh
# Decoupled training beyond MNIST (issue 30, item 3): MNIST-1D (1-D signals) and sklearn's digits (8x8 images),
# plain MLPs of depth 5, 10 and 20, tanh and sigmoid; the documented decoupled recipe (z from a forward pass, delta
# form, 3 top-down z sweeps, the sigmoid's slope in the curvature bound) from the critical init, against backprop
# from the same init (bp-critical-adam) and from PyTorch's default init (bp-default-sgd). From the checkout root.
set -e
COMMON="--depths 5,10,20 --activations tanh,sigmoid --methods bp-default-sgd,bp-critical-adam,decoupled-forward --epochs 30 --decoupled-init critical --delta --activation-slopes --forward-z-steps 3 --threads 1 --no-progress"
layerwise bench depth --dataset mnist1d $COMMON --out benchmarks/decoupled-mnist1d-digits-cpu/mnist1d
layerwise bench depth --dataset digits $COMMON --out benchmarks/decoupled-mnist1d-digits-cpu/digits
