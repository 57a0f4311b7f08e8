import json

import pytest

import layerwise_bench as bench
from layerwise_bench import AutoencoderConfig, load_autoencoder_data, tune_learning_rates

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data


def test_tune_picks_the_best_swept_lr_and_merges(tmp_path):
    out = tmp_path / "tuned.json"
    out.write_text(json.dumps({"methods": {"other": {"lr": 1.0}}}))
    cfg = AutoencoderConfig(dataset="digits", epochs=1, subset=200, batch_size=50, evaluate_test=False)
    result = tune_learning_rates(["sgd"], cfg, load_autoencoder_data(cfg), out, progress=False)
    sweep = {float(k): v for k, v in result["methods"]["sgd"]["sweep"].items()}
    assert len(sweep) >= 5
    assert result["methods"]["sgd"]["lr"] == min(sweep, key=sweep.get)
    saved = json.loads(out.read_text())
    assert set(saved["methods"]) == {"other", "sgd"}
    # the benchmark then uses it by default
    lrs = bench.resolve_lrs([bench.get_method("sgd")], {}, bench.load_tuned(out))
    assert lrs["sgd"] == (result["methods"]["sgd"]["lr"], "tuned")


def test_close_calls_are_decided_by_the_mean_over_seeds(tmp_path):
    cfg = AutoencoderConfig(dataset="digits", epochs=1, subset=200, batch_size=50, evaluate_test=False)
    data = load_autoencoder_data(cfg)
    result = tune_learning_rates(
        ["adam"], cfg, data, tmp_path / "t.json", points=3, max_extensions=0, close=0.99, seeds=2, progress=False
    )
    entry = result["methods"]["adam"]
    assert entry["seeds"], "with close=0.99 every finite point is a close call"
    for key, losses in entry["seeds"].items():
        assert len(losses) == 2 and losses[0] != losses[1]  # seed 0 and seed 1 differ
        assert entry["sweep"][key] == pytest.approx(sum(losses) / 2)
        seed1 = bench.train_method(
            bench.get_method("adam"), float(key), data, AutoencoderConfig(**{**cfg.__dict__, "seed": 1}), progress=False
        )
        assert losses[1] == seed1[-1]["train_loss"]
    assert entry["lr"] == float(min(entry["sweep"], key=entry["sweep"].get))
    assert "seeds in all" in json.loads((tmp_path / "t.json").read_text())["protocol"]


def test_shipped_tuned_files_cover_every_method():
    for dataset in ("digits", "mnist"):
        tuned = bench.load_tuned(bench.tuned_path(dataset))
        assert set(tuned["methods"]) >= {
            "sgd",
            "momentum",
            "adagrad",
            "rmsprop",
            "adam",
            "shampoo",
            "kfac",
            "locoprop-m",
            "locoprop-s",
            "locoprop-s-exact",
            "locoprop-m-precond",
        }
        for entry in tuned["methods"].values():
            best = min(entry["sweep"], key=entry["sweep"].get)  # "0.001" or "damping=100 lr=0.001"
            assert entry["lr"] == float(best.rsplit("lr=", 1)[-1])
            grid = dict(kv.split("=") for kv in best.split()[:-1])
            assert {k: float(v) for k, v in grid.items()} == entry.get("tuned_hparams", {})


def test_tuned_files_ship_in_the_wheel():
    """A non-editable install must carry the tuned values (package data), not fall back silently."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "layerwise_bench"
    ]
    package = root / "src" / "layerwise_bench"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert bench.tuned_path("mnist") in shipped and bench.tuned_path("digits") in shipped


def test_an_interrupted_sweep_resumes_without_repeating_finished_runs(tmp_path, monkeypatch):
    import layerwise_bench.autoencoder._tune as tune_module

    cfg = AutoencoderConfig(dataset="digits", epochs=1, subset=200, batch_size=50, evaluate_test=False)
    data = load_autoencoder_data(cfg)
    out = tmp_path / "t.json"
    calls = []
    real = tune_module.train_method

    def interrupted(m, lr, *args, **kwargs):
        calls.append(lr)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(m, lr, *args, **kwargs)

    monkeypatch.setattr(tune_module, "train_method", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune_learning_rates(["sgd"], cfg, data, out, points=3, max_extensions=0, seeds=1, progress=False)
    assert len(json.loads(out.read_text())["points"]) == 2  # the two finished runs were saved
    calls.clear()
    monkeypatch.setattr(tune_module, "train_method", real)
    counted = []
    monkeypatch.setattr(tune_module, "train_method", lambda *a, **k: counted.append(a[1]) or real(*a, **k))
    small = {"points": 3, "max_extensions": 0, "seeds": 1, "progress": False}
    resumed = tune_learning_rates(["sgd"], cfg, data, out, **small, resume=True)
    assert len(counted) == 1  # only the third lr ran
    fresh = tune_learning_rates(["sgd"], cfg, data, tmp_path / "f.json", **small)
    assert resumed["methods"]["sgd"]["sweep"] == fresh["methods"]["sgd"]["sweep"]


def test_centre_lr_places_a_method_s_grid(tmp_path):
    from layerwise_bench.cli import main

    out = tmp_path / "t.json"
    args = ["bench", "tune", "--methods", "adam", "--subset", "100", "--epochs", "1", "--points", "3"]
    assert main([*args, "--no-progress", "--centre-lr", "adam=0.02", "--out-file", str(out)]) == 0
    sweep = json.loads(out.read_text())["methods"]["adam"]["sweep"]
    assert {"0.00632", "0.02", "0.0632"} <= set(sweep)
    with pytest.raises(SystemExit):
        main([*args, "--centre-lr", "nosuch=1e-3", "--out-file", str(out)])
