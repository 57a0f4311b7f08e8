"""The benchmark's move onto one protocol (workloads, one registry, one harness) changes no number: tiny
epoch-based autoencoder runs give exactly what the code before the move gave (``tests/golden/make_golden.py``
wrote ``harness.json`` with commit 00bb9ac)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import layerwise_bench as bench

pytestmark = pytest.mark.bench

GOLDEN = json.loads((Path(__file__).parent / "golden" / "harness.json").read_text())


@pytest.fixture(scope="module")
def data():
    return bench.load_autoencoder_data(bench.AutoencoderConfig(**GOLDEN["config"]))


@pytest.mark.parametrize("name", list(GOLDEN["runs"]))
def test_autoencoder_runs_reproduce_the_numbers_from_before_the_move(name, data):
    if name == "muon" and not __import__("layerwise_bench.core._machine", fromlist=["x"]).native_bf16():
        pytest.skip("the golden Muon ran its Newton-Schulz in bfloat16; this CPU runs the float32 form")
    torch.set_num_threads(1)
    method = bench.get_method(name).for_machine()
    if method.path:
        pytest.skip(f"golden numbers are of the bfloat16 form; here: {method.path}")
    cfg = bench.AutoencoderConfig(**GOLDEN["config"])
    recs = bench.train_method(method, method.default_lr, data, cfg, progress=False)
    got = [[r["epoch"], r["lr"], r["train_loss"], r["test_loss"], r["steps"]] for r in recs]
    assert got == GOLDEN["runs"][name]
