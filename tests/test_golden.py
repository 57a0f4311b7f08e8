"""The benchmark's move onto one protocol (workloads, one registry, one harness) changes no number: tiny
epoch-based autoencoder runs give exactly what the code before the move gave (``tests/golden/make_golden.py``
wrote ``harness.json`` with commit 00bb9ac). The closed-form LocoProp solvers since form ``Σ ŷŷᵀ`` and
``Σ δŷᵀ`` by other kernels (same math, float32 summed in another order), so their losses are held to a
relative 1e-5 (a changed seed, batch order or rate moves them by far more); every other run is exact on the CPU
that wrote them (an AMD EPYC). Another CPU's kernels round differently (on an Intel Xeon with AMX, Muon's and
SOAP's first-epoch losses moved by up to 6e-4 relative, SOAP's second by 5e-3 through its eigendecompositions):
there every loss is held to a relative 1e-2 (a rate 1.25× its own moves SOAP's and LocoProp-M's by 1-6%), epochs,
rates and step counts still exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import layerwise_bench as bench
from layerwise_bench.core._machine import cpu_model

pytestmark = pytest.mark.bench

REORDERED = {"locoprop-s-exact"}
GOLDEN_CPU = "AMD EPYC"  # the CPU model whose kernels wrote harness.json
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
    same_cpu = cpu_model() == GOLDEN_CPU
    if name in REORDERED or not same_cpu:
        rel = 1e-5 if same_cpu else 1e-2
        assert [r[:2] + r[4:] for r in got] == [r[:2] + r[4:] for r in GOLDEN["runs"][name]]
        assert [r[2:4] for r in got] == [pytest.approx(r[2:4], rel=rel) for r in GOLDEN["runs"][name]]
    else:
        assert got == GOLDEN["runs"][name]
