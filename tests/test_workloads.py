"""The workloads (resnet-mnist, lm-bytes, the autoencoder) in the one harness: every registered method runs on every
workload or is refused with the reason, a resumed run equals an uninterrupted one, and the models are what their
names say (BatchNorm, in-place ReLU, residual adds, a strided stage; causal attention with q/k/v/out Linears)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import layerwise_bench as bench
from layerwise_bench import RunConfig, train_method
from layerwise_bench.core._io import read_json
from layerwise_bench.core._tuned import prepare_methods
from layerwise_bench.workloads import (
    WORKLOADS,
    ByteLM,
    DigitsTransformer,
    Mixer,
    SmallResNet,
    get_workload,
    stdlib_corpus,
)

pytestmark = pytest.mark.bench


def _cfg(workload: str, **kw) -> RunConfig:
    w = get_workload(workload)
    dataset = "digits" if workload == "autoencoder" else w.dataset
    base = {"epochs": 2, "size": "tiny" if w.sizes else "cpu", "batch_size": 64}
    if workload == "autoencoder":
        base.update(subset=128, batch_size=64)
    return RunConfig(dataset=dataset, workload=workload, **{**base, **kw})


_DATA: dict[str, object] = {}


def _data(workload: str, data_dir) -> object:
    if workload not in _DATA:
        cfg = _cfg(workload)
        _DATA[workload] = cfg.task.load(cfg, data_dir, False, "cpu")
    return _DATA[workload]


def _method(workload: str, name: str):
    methods, lrs, *_ = prepare_methods([name], _cfg(workload).dataset, workload=workload)
    return methods[0], lrs[name][0]


CASES = [(w, m) for w in WORKLOADS for m in bench.METHODS]


@pytest.mark.parametrize(("workload", "name"), CASES, ids=[f"{w}:{m}" for w, m in CASES])
def test_every_method_runs_on_every_workload_or_is_refused_with_the_reason(workload, name, shared_data_dir):
    task = get_workload(workload)
    if name in task.refused:
        with pytest.raises(ValueError, match=name) as err:
            prepare_methods([name], _cfg(workload).dataset, workload=workload)
        assert task.refused[name] in str(err.value) and len(task.refused[name]) > 30
        return
    if workload == "autoencoder" and name not in ("adamw", "nesterov", "locoprop-cnn", "locoprop-transformer"):
        pytest.skip("the autoencoder's own methods are covered by test_harness.py")
    method, lr = _method(workload, name)
    cfg = _cfg(workload, epochs=1)
    data = _data(workload, shared_data_dir)
    init = cfg.task.evaluate(cfg.task.build_model(data, cfg, torch.Generator().manual_seed(cfg.seed)), data, cfg)
    records = train_method(method, lr, data, cfg, progress=False)
    last = records[-1]
    assert set(task.metrics) <= set(last)
    assert all(math.isfinite(last[k]) for k in task.metrics)
    assert last["steps"] == math.ceil(len(data.train) / cfg.effective_batch_size)
    assert last["train_loss"] != init["train_loss"]  # the step moved the model


RESUMED = ["adamw", "muon", "schedule-free-adamw", "kron"]


@pytest.mark.parametrize("workload", ["resnet-mnist", "lm-bytes"])
@pytest.mark.parametrize("name", [*RESUMED, "recipe", "locoprop-eigen"])
def test_resume_equals_uninterrupted(workload, name, shared_data_dir, tmp_path):
    if name == "recipe":
        name = "locoprop-cnn" if workload == "resnet-mnist" else "locoprop-transformer"
    method, lr = _method(workload, name)
    cfg, data = _cfg(workload, epochs=3), _data(workload, shared_data_dir)
    full = train_method(method, lr, data, cfg, progress=False)
    ckpt = tmp_path / "c.pt"

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_method(method, lr, data, cfg, checkpoint=ckpt, progress=False, on_epoch=interrupt)
    resumed = train_method(method, lr, data, cfg, checkpoint=ckpt, resume=True, progress=False)
    keys = ("epoch", "lr", *cfg.task.metrics, "steps")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in full]


def test_locoprop_recipe_schedules_its_other_optimizer_too(shared_data_dir):
    """The time decay drives LocoProp's layers and its other_optimizer (BatchNorm here) alike."""
    method, lr = _method("resnet-mnist", "locoprop-cnn")
    cfg, data = _cfg("resnet-mnist"), _data("resnet-mnist", shared_data_dir)
    model = cfg.task.build_model(data, cfg, torch.Generator().manual_seed(0))
    opt = method.build(model, lr, **method.hparams)
    from layerwise_bench.core._harness import _Schedules, _set_time_decay

    schedules = _Schedules(opt, lambda epoch: 1.0)
    _set_time_decay(schedules.groups, 0.75)
    assert opt.other_optimizer is not None
    assert [g["lr"] for g in opt.other_optimizer.param_groups] == [pytest.approx(method.hparams["other_lr"] * 0.25)]
    assert all(g["lr"] == pytest.approx(lr * 0.25) for g in opt.param_groups)


def test_refused_method_names_the_reason_and_the_fix():
    with pytest.raises(ValueError, match=r"cannot run 'kfac': .*nn.Linear.* Drop them from --methods"):
        get_workload("resnet-mnist").check_methods(["adamw", "kfac"])


def test_unknown_workload_and_size_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown workload 'resnet'. Expected one of: autoencoder, resnet-mnist"):
        RunConfig(workload="resnet")
    with pytest.raises(ValueError, match="Invalid size='huge' for workload 'lm-bytes'"):
        RunConfig(workload="lm-bytes", dataset="stdlib", size="huge")


def test_the_autoencoder_refuses_a_data_set_that_is_not_images_in_0_1():
    cfg = RunConfig(dataset="mnist1d", workload="autoencoder")
    with pytest.raises(ValueError, match=r"dataset='mnist1d' for the autoencoder.*pixels in \[0, 1\]"):
        cfg.task.load(cfg, None, False, "cpu")


def test_autoencoder_config_dict_is_what_old_records_hold():
    """Records and checkpoints made before workloads must still match on --resume: the autoencoder's omit them."""
    assert "workload" not in RunConfig().as_dict() and "size" not in RunConfig().as_dict()
    assert RunConfig(workload="lm-bytes", dataset="stdlib").as_dict()["workload"] == "lm-bytes"


def test_resnet_is_a_real_resnet():
    model = SmallResNet(**get_workload("resnet-mnist").sizes["cpu"])
    mods = list(model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in mods)
    assert any(isinstance(m, nn.ReLU) and m.inplace for m in mods)
    assert any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) and m.kernel_size == (1, 1) for m in mods)  # projection
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_byte_lm_is_causal_and_uses_linear_projections():
    torch.manual_seed(0)
    model = ByteLM(width=16, depth=2, heads=2, context=12).eval()
    x = torch.randint(0, 256, (2, 12))
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % 256  # change the future only
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :7], b[:, :7]) and not torch.allclose(a[:, 7:], b[:, 7:])
    attn = model.blocks[0].attn
    assert all(isinstance(getattr(attn, n), nn.Linear) for n in ("q", "k", "v", "out"))


def test_digits_families_are_what_their_names_say():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8)
    kinds = {"resnet": nn.BatchNorm2d, "vgg": nn.MaxPool2d, "mixer": nn.LayerNorm, "transformer": nn.LayerNorm}
    for family, kind in kinds.items():
        w = get_workload(f"digits-{family}")
        cfg = _cfg(w.name)
        model = w.build_model(w.load(cfg, None, False, "cpu"), cfg, torch.Generator().manual_seed(0)).eval()
        assert any(isinstance(m, kind) for m in model.modules()) and model(x).shape == (3, 10)
    model = DigitsTransformer(dim=8, depth=1, heads=2).eval()
    y = x.clone()
    y[..., 7, :] += 1  # change the last row only: bidirectional attention carries it to every token
    with torch.no_grad():
        a, b = model.blocks(model.embed(x.reshape(3, 8, 8))), model.blocks(model.embed(y.reshape(3, 8, 8)))
    assert not torch.allclose(a[:, 0], b[:, 0])
    mixer = Mixer(dim=8, depth=1)
    assert mixer.blocks[0].token_fc1.in_features == 16  # 2x2 patches of 8x8: 16 tokens mixed


def test_corpus_splits_by_file_and_is_described():
    train, val = stdlib_corpus()
    assert len(val) > 100_000 and len(train) > 10 * len(val)
    cfg = _cfg("lm-bytes")
    data = cfg.task.load(cfg, None, False, "cpu")
    assert data.info["validation_sha256"] and data.info["window"] == 17
    assert torch.equal(data.train[:, 1:], data.train_y[:, :-1])  # the targets are the next bytes


def test_equal_time_on_a_workload_end_to_end(shared_data_dir, tmp_path):
    """The CLI: --workload picks the data, the methods' rates, the score (lm-bytes: validation loss); resume
    keeps every finished run."""
    from layerwise_bench.cli import main

    out = tmp_path / "et"
    argv = [
        "bench",
        "equal-time",
        "--workload",
        "lm-bytes",
        "--size",
        "tiny",
        "--epochs",
        "1",
        "--multiples",
        "1",
        "--methods",
        "adamw,muon",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    results = read_json(out / "results.json")
    assert results["score"] == "test_loss" and results["config"]["workload"] == "lm-bytes"
    assert all(math.isfinite(e["within"]["test_loss"]) for k, e in results["runs"].items() if k.startswith("1B/"))
    report = (out / "report.md").read_text()
    assert "Equal wall-clock: lm-bytes" in report and "test_loss within budget" in report
    assert main([*argv, "--resume"]) == 0
    assert read_json(out / "results.json")["runs"] == results["runs"]


def test_steptime_times_registry_methods_on_a_workload_and_the_report_rebuilds(tmp_path, capsys):
    """`bench steptime --workload`: every method built by the registry, one batch, medians against the first."""
    from layerwise_bench.cli import main

    out = tmp_path / "st"
    argv = [
        "bench",
        "steptime",
        "--workload",
        "lm-bytes",
        "--size",
        "tiny",
        "--methods",
        "adamw,locoprop-transformer",
        "--repeats",
        "3",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    res = read_json(out / "results.json")
    assert res["benchmark"] == "method-steptime" and res["batch_size"] == 32
    assert set(res["median_step_s"]) == {"adamw", "locoprop-transformer"} and res["vs_first"]["adamw"] == 1.0
    assert all(len(v) == 3 and min(v) > 0 for v in res["times"].values())
    for name, times in res["times"].items():  # the mean is what a run pays (periodic expensive steps included)
        assert res["mean_step_s"][name] == pytest.approx(sum(times) / 3)
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert "| locoprop-transformer |" in (out / "report.md").read_text()
    # a refused method fails before any work (no data read, no record), naming the reason
    assert (
        main(["bench", "steptime", "--workload", "resnet-mnist", "--methods", "kfac", "--out", str(tmp_path / "x")])
        == 1
    )
    assert "cannot run 'kfac'" in capsys.readouterr().err and not (tmp_path / "x" / "results.json").exists()


def test_run_on_a_workload_reports_that_workload_not_the_autoencoder(tmp_path):
    from layerwise_bench.cli import main

    out = tmp_path / "run"
    argv = ["bench", "autoencoder", "--workload", "lm-bytes", "--size", "tiny", "--epochs", "1", "--methods", "adamw"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    report = (out / "report.md").read_text()
    assert report.startswith("# Benchmark on lm-bytes (stdlib)") and "sigmoid cross-entropy" not in report
    assert read_json(out / "results.json")["config"]["workload"] == "lm-bytes"


def test_diagnose_writes_per_layer_update_stats_and_phase_times_beside_adamw(tmp_path, shared_data_dir):
    from layerwise_bench import run_locoprop_diagnosis
    from layerwise_bench.cli import main

    out = tmp_path / "diag"
    argv = ["bench", "diagnose", "--workload", "resnet-mnist", "--size", "tiny", "--steps", "4", "--window", "2"]
    argv += ["--data-dir", str(shared_data_dir)]
    assert main([*argv, "--set", "locoprop-cnn.refresh_every=2", "--out", str(out)]) == 0
    res = read_json(out / "results.json")
    assert res["benchmark"] == "locoprop-diagnosis" and res["runs"]["locoprop-cnn"]["hparams"]["refresh_every"] == 2
    layers = res["layers"]
    assert list(layers)[0] == "conv1" and list(layers)[-1] == "head"  # every LocoProp layer, in forward order
    assert all(len(v) == 4 for stat in res["stats"].values() for v in stat.values())
    assert all(-1 <= v["cosine"] <= 1 and v["norm_ratio"] > 0 and v["solve_ms"] > 0 for v in layers.values())
    assert sum(v["decrease_share"] for v in layers.values()) == pytest.approx(1.0)
    phases = res["phases_ms"]
    assert min(phases["forward"], phases["backward"], phases["solve"], phases["covariance"]) > 0
    assert sum(phases.values()) <= res["profiled_step_ms"]
    assert set(res["mean_step_ms"]) == {"locoprop-cnn", "adamw"} and len(res["losses"]["adamw"]) == 4
    assert (out / "phases.png").stat().st_size > 0 and (out / "layers.png").stat().st_size > 0
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert "| layers.0.conv1 |" in (out / "report.md").read_text()
    # a first-order method is not diagnosed: the error names it and the fix, before any record is written
    with pytest.raises(ValueError, match="takes a LocoProp method; 'muon' builds"):
        run_locoprop_diagnosis("muon", _cfg("resnet-mnist"), _data("resnet-mnist", shared_data_dir), tmp_path / "no")
    assert not (tmp_path / "no" / "results.json").exists()
