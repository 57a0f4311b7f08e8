import json

import pytest
import torch

import layerwise_bench as bench
from layerwise_bench import AutoencoderConfig, Method, TrainingDiverged, load_autoencoder_data, train_method

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data

CFG = AutoencoderConfig(dataset="digits", epochs=3, subset=400, batch_size=100)


@pytest.fixture(scope="module")
def data():
    return load_autoencoder_data(CFG)


def _lr(name):
    return bench.resolve_lrs([bench.get_method(name)], {}, bench.load_tuned(bench.tuned_path("digits")))[name][0]


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam", "shampoo", "kfac"])
def test_every_baseline_decreases_the_loss(name, data):
    method = bench.get_method(name)
    cfg = AutoencoderConfig(dataset="digits", epochs=2, subset=400, batch_size=100)
    from layerwise.models import deep_autoencoder

    init = deep_autoencoder(64, generator=torch.Generator().manual_seed(cfg.seed))
    before = bench.evaluate(init, data.train)
    records = train_method(method, _lr(name), data, cfg, progress=False)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["train_loss"] < before - 1.0  # nats per example
    assert records[-1]["train_time"] > 0 and records[-1]["step_time_median"] > 0 and records[-1]["steps"] == 4


@pytest.mark.parametrize("name", ["adam", "kfac", "shampoo"])
def test_resume_equals_uninterrupted(name, data, tmp_path):
    method = bench.get_method(name)
    full = train_method(method, _lr(name), data, CFG, progress=False)
    ckpt = tmp_path / "c.pt"

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_method(method, _lr(name), data, CFG, checkpoint=ckpt, progress=False, on_epoch=interrupt)
    resumed = train_method(method, _lr(name), data, CFG, checkpoint=ckpt, resume=True, progress=False)
    keys = ("epoch", "lr", "train_loss", "test_loss", "steps")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in full]


def test_resume_refuses_other_configuration(data, tmp_path):
    ckpt = tmp_path / "c.pt"
    train_method(bench.get_method("sgd"), 1e-3, data, CFG, checkpoint=ckpt, progress=False)
    before = ckpt.read_bytes()
    with pytest.raises(bench.CheckpointMismatch, match="written by another configuration"):
        train_method(bench.get_method("sgd"), 2e-3, data, CFG, checkpoint=ckpt, resume=True, progress=False)
    assert ckpt.read_bytes() == before


def test_seeded_runs_are_deterministic(data):
    a = train_method(bench.get_method("kfac"), _lr("kfac"), data, CFG, progress=False)
    b = train_method(bench.get_method("kfac"), _lr("kfac"), data, CFG, progress=False)
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


class _NaNAfter(torch.optim.SGD):
    """SGD that poisons the weights once ``steps`` steps have run (a stand-in for a blow-up)."""

    def __init__(self, params, lr, steps):
        super().__init__(params, lr=lr)
        self.left = steps

    def step(self, closure=None):
        loss = super().step(closure)
        self.left -= 1
        if self.left < 0:
            with torch.no_grad():
                for g in self.param_groups:
                    for p in g["params"]:
                        p.fill_(float("nan"))
        return loss


def test_nan_stops_with_method_and_epoch_and_keeps_last_good_checkpoint(data, tmp_path):
    method = bench.register_method(
        Method("nanny", "test only", lambda m, lr, **kw: _NaNAfter(m.parameters(), lr, 5), 1e-3)
    )
    try:
        with pytest.raises(TrainingDiverged, match=r"method 'nanny' diverged at epoch 2, step \d.*kept at"):
            bench.run_autoencoder_benchmark(["nanny"], CFG, data, tmp_path / "run", progress=False)
    finally:
        bench.METHODS.pop("nanny")
    state = torch.load(tmp_path / "run" / "checkpoints" / "nanny.pt", weights_only=False)
    assert [r["epoch"] for r in state["records"]] == [1]
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["methods"]["nanny"]["status"] == "diverged"
    assert "epoch 2" in results["methods"]["nanny"]["error"]
    assert method.name == "nanny"


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="'adam' is already registered"):
        bench.register_method(bench.get_method("adam"))
    with pytest.raises(ValueError, match="Unknown method 'adamw'. Expected one of: sgd, momentum"):
        bench.get_method("adamw")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": 0}, "Invalid epochs=0"),
        ({"subset": 0}, "Invalid subset=0"),
        ({"batch_size": -5}, "Invalid batch_size=-5"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoencoderConfig(**kwargs)


def test_subset_larger_than_data():
    with pytest.raises(ValueError, match="Invalid subset=5000: the digits training set has only 1438"):
        load_autoencoder_data(AutoencoderConfig(subset=5000))
