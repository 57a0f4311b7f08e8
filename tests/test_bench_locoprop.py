"""LocoProp's benchmark entries run through the same harness, tuning and resume as the baselines."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import layerwise_bench as bench
from layerwise.models import deep_autoencoder
from layerwise_bench.methods._locoprop import _autoencoder_layers

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data

LOCOPROP = ["locoprop-m", "locoprop-s", "locoprop-s-exact", "locoprop-m-precond"]


@pytest.fixture(scope="module")
def data() -> bench.AutoencoderData:
    return bench.load_autoencoder_data(bench.AutoencoderConfig(dataset="digits", subset=400))


def test_autoencoder_layers_end_with_the_sigmoid_matching_loss() -> None:
    acts = [a for _, a in _autoencoder_layers(deep_autoencoder(64, widths=(32, 16, 8)))]
    assert acts == ["tanh", "tanh", "identity", "tanh", "tanh", "sigmoid"]


@pytest.mark.parametrize("name", LOCOPROP)
def test_every_locoprop_method_decreases_the_loss(name: str, data: bench.AutoencoderData) -> None:
    cfg = bench.AutoencoderConfig(dataset="digits", subset=400, epochs=3, warmup_epochs=0, evaluate_test=False)
    m = bench.get_method(name)
    lr = m.default_lr if "precond" not in name else 0.1
    recs = bench.train_method(m, lr, data, cfg, progress=False)
    start = bench.evaluate(deep_autoencoder(64, generator=torch.Generator().manual_seed(0)), data.train)
    assert recs[-1]["train_loss"] < 0.9 * start


def test_locoprop_resume_equals_uninterrupted(data: bench.AutoencoderData, tmp_path: Path) -> None:
    m = bench.get_method("locoprop-m")
    part = bench.AutoencoderConfig(dataset="digits", subset=400, epochs=3)
    full = bench.train_method(m, 1e-5, data, part, progress=False)
    ckpt = tmp_path / "c.pt"
    try:
        bench.train_method(m, 1e-5, data, part, checkpoint=ckpt, progress=False, on_epoch=_interrupt_at_2)
    except _Interrupt:
        pass
    resumed = bench.train_method(m, 1e-5, data, part, checkpoint=ckpt, resume=True, progress=False)
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in full]


class _Interrupt(Exception):
    pass


def _interrupt_at_2(record: dict) -> None:  # type: ignore[type-arg]
    if record["epoch"] == 2:
        raise _Interrupt


def test_schedule_epochs_stops_a_longer_schedule_early(data: bench.AutoencoderData) -> None:
    cfg = bench.AutoencoderConfig(dataset="digits", subset=400, epochs=3, schedule_epochs=100, evaluate_test=False)
    recs = bench.train_method(bench.get_method("adam"), 1e-3, data, cfg, progress=False)
    assert [r["lr"] for r in recs] == pytest.approx([0.0, 2e-4, 4e-4])  # warm-up of 5 epochs out of 100
    with pytest.raises(ValueError, match="schedule_epochs"):
        bench.AutoencoderConfig(epochs=10, schedule_epochs=5)


def test_tune_grid_picks_the_best_pair_and_the_run_uses_it(data: bench.AutoencoderData, tmp_path: Path) -> None:
    cfg = bench.AutoencoderConfig(dataset="digits", subset=400, epochs=2, warmup_epochs=0, evaluate_test=False)
    out = tmp_path / "tuned.json"
    res = bench.tune_learning_rates(
        ["locoprop-s-exact"],
        cfg,
        data,
        out,
        points=3,
        max_extensions=0,
        progress=False,
        grid={"damping": [10.0, 1000.0]},
    )
    entry = res["methods"]["locoprop-s-exact"]
    best_key = min(entry["sweep"], key=entry["sweep"].get)
    assert best_key.startswith(f"damping={entry['tuned_hparams']['damping']:g} ")
    assert len(entry["sweep"]) == 6
    method = bench.get_method("locoprop-s-exact")
    applied = bench.apply_tuned_hparams(method, bench.load_tuned(out))
    assert applied.hparams["damping"] == entry["tuned_hparams"]["damping"]
    assert copy.deepcopy(method.hparams)["damping"] == 1000.0  # the registry entry itself is untouched
    with pytest.raises(ValueError, match="does not take"):
        bench.tune_learning_rates(["adam"], cfg, data, out, grid={"damping": [1.0]})


def test_steptime_benchmark_writes_records_and_compares_with_the_pypi_port(tmp_path: Path) -> None:
    res = bench.run_steptime_benchmark(tmp_path, batch_size=8, steps=(1,), repeats=1)
    assert set(res["median_step_s"]) >= {"adam", "layerwise locoprop-m T=1", "pypi locoprop T=1"}
    assert all(v > 0 for v in res["median_step_s"].values())
    assert (tmp_path / "report.md").read_text().count("| layerwise locoprop-m T=1 |") == 1
    assert (tmp_path / "step_time.png").stat().st_size > 1000


def test_steptime_times_the_chunked_entries_it_is_asked_for(tmp_path: Path) -> None:
    res = bench.run_steptime_benchmark(tmp_path, batch_size=8, steps=(4,), repeats=1, pypi=False, chunks=(2, 4))
    chunked = sorted(n for n in res["median_step_s"] if "chunks" in n)
    assert chunked == ["layerwise locoprop-m T=4 bf16 chunks=2", "layerwise locoprop-m T=4 bf16 chunks=4"]
    assert res["config"]["chunks"] == [2, 4]
    with pytest.raises(ValueError, match="Invalid chunks=\\[4\\].*<= every T in steps=\\[2\\]"):
        bench.run_steptime_benchmark(tmp_path / "x", batch_size=8, steps=(2,), repeats=1, pypi=False, chunks=(4,))
    assert not (tmp_path / "x").exists()
