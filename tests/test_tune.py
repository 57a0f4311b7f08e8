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
