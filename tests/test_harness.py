import json

import pytest
import torch

import layerwise_bench as bench
from layerwise_bench import AutoencoderConfig, Method, TrainingDiverged, load_autoencoder_data, train_method
from layerwise_bench.core._io import load_checkpoint

pytestmark = pytest.mark.bench  # end-to-end: a benchmark or the CLI on tiny data

CFG = AutoencoderConfig(dataset="digits", epochs=3, subset=400, batch_size=100)


@pytest.fixture(scope="module")
def data():
    return load_autoencoder_data(CFG)


def _lr(name):
    return bench.resolve_lrs([bench.get_method(name)], {}, bench.load_tuned(bench.tuned_path("digits")))[name][0]


TODAY = [
    "muon",
    "kron",
    "soap",
    "schedule-free-adamw",
    "locoprop-m-bf16",
    "locoprop-m-bf16-t5",
    "locoprop-m-bf16-t5-c2",
]


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adam", "shampoo", "kfac", *TODAY])
def test_every_baseline_decreases_the_loss(name, data):
    method = bench.get_method(name).for_machine()  # what the registry runs here (float32 where bf16 is emulated)
    cfg = AutoencoderConfig(dataset="digits", epochs=2, subset=400, batch_size=100)
    from layerwise.models import deep_autoencoder

    init = deep_autoencoder(64, generator=torch.Generator().manual_seed(cfg.seed))
    before = bench.evaluate(init, data.train)
    records = train_method(method, _lr(name), data, cfg, progress=False)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["train_loss"] < before - 1.0  # nats per example
    assert records[-1]["train_time"] > 0 and records[-1]["step_time_median"] > 0 and records[-1]["steps"] == 4


@pytest.mark.parametrize("name", ["adam", "kfac", "shampoo", *TODAY])
def test_resume_equals_uninterrupted(name, data, tmp_path):
    method = bench.get_method(name).for_machine()  # what the registry runs here (float32 where bf16 is emulated)
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


def test_kron_resumes_bit_identically_although_it_draws_from_the_global_rngs(data, tmp_path):
    # An update probability of 0.5 makes Kron toss its coin (and draw its probe vectors) from the
    # global RNGs at every step: the resumed run equals the uninterrupted one only if the harness
    # seeds them and restores them from the checkpoint.
    from dataclasses import replace

    kron = bench.get_method("kron")
    method = replace(kron, hparams={**kron.hparams, "pre_conditioner_update_probability": 0.5})
    full = train_method(method, 1e-3, data, CFG, progress=False)
    torch.manual_seed(12345)  # whatever the global state is before a run, the run does not depend on it
    again = train_method(method, 1e-3, data, CFG, progress=False)
    assert [r["train_loss"] for r in again] == [r["train_loss"] for r in full]
    ckpt = tmp_path / "c.pt"

    def interrupt(record):
        if record["epoch"] == 1:
            torch.rand(1000)  # the process goes on drawing after the checkpoint was written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_method(method, 1e-3, data, CFG, checkpoint=ckpt, progress=False, on_epoch=interrupt)
    resumed = train_method(method, 1e-3, data, CFG, checkpoint=ckpt, resume=True, progress=False)
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in full]


def test_schedule_free_is_evaluated_at_its_average_and_unscheduled(data):
    method = bench.get_method("schedule-free-adamw")
    records = train_method(method, 2e-3, data, CFG, progress=False)
    assert [r["lr"] for r in records] == [2e-3] * 3  # no warm-up/decay: its averaging replaces the schedule
    # The reported loss is that of the averaged point x (eval mode), not of the gradient point y.
    from layerwise.models import deep_autoencoder, sigmoid_cross_entropy

    model = deep_autoencoder(64, generator=torch.Generator().manual_seed(CFG.seed))
    opt = method.build(model, 2e-3, **method.hparams)
    opt.train()
    x = data.train[:100]
    for _ in range(5):
        opt.zero_grad()
        sigmoid_cross_entropy(model(x), x).backward()
        opt.step()
    at_y = bench.evaluate(model, data.train)
    opt.eval()
    at_x = bench.evaluate(model, data.train)
    assert at_x != at_y


def test_a_method_whose_package_is_missing_fails_before_any_work(data, tmp_path):
    from dataclasses import replace

    missing = replace(bench.get_method("kron"), name="kron-missing", requires=("no_such_module_xyz",))
    bench.register_method(missing)
    try:
        match = r"'kron-missing' needs the package 'no_such_module_xyz'.*layerwise\[second-order\]"
        with pytest.raises(ImportError, match=match):
            bench.run_autoencoder_benchmark(["adam", "kron-missing"], CFG, data, tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()  # adam did not run first
    finally:
        del bench.METHODS["kron-missing"]


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
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "nanny.pt")
    assert [r["epoch"] for r in state["records"]] == [1]
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["methods"]["nanny"]["status"] == "diverged"
    assert "epoch 2" in results["methods"]["nanny"]["error"]
    assert method.name == "nanny"


def test_registry_rejects_duplicates_and_unknown_names():
    with pytest.raises(ValueError, match="'adam' is already registered"):
        bench.register_method(bench.get_method("adam"))
    with pytest.raises(ValueError, match="Unknown method 'adamx'. Expected one of: sgd, momentum"):
        bench.get_method("adamx")


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
