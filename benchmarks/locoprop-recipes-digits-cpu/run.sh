#!/usr/bin/env bash
# Reproduces this record (from the repository root, with the project's venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
python benchmarks/locoprop-recipes-digits-cpu/run.py --out benchmarks/locoprop-recipes-digits-cpu --steps 300 --seeds 0 1 2 --threads 1 --families resnet vgg mixer transformer
