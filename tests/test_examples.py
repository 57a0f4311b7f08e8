"""The seeds' three cases (examples/) run small: each trains, learns its weights and records telemetry."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mlp_with_mse_targets_at_layers_1_and_2() -> None:
    r = load("mlp_mse_targets").main(steps=60, teacher_steps=60)
    assert r["last_main"] < 0.5 * r["first_main"]
    assert r["test_acc"] > 0.8
    assert set(r["weights"]) == {"main", "layer1", "layer2"} and min(r["weights"].values()) >= 0
    assert [s.step for s in r["telemetry"]] == list(range(0, 60, 10))
    assert all(s.norms["layer1"]["layer1"] > 0 and s.norms["layer2"]["layer1"] == 0 for s in r["telemetry"])


def test_rnn_with_consistency_between_consecutive_states() -> None:
    r = load("rnn_consistency").main(steps=40)
    assert r["last_main"] < 0.5 * r["first_main"]
    assert math.isclose(sum(r["weights"].values()), 2.0, rel_tol=1e-5)  # GradNorm: weights sum to K
    assert len(r["telemetry"]) == 8 and r["telemetry"][0].norms["head"]["consistency"] == 0


def test_cnn_with_sparsity_per_block(tmp_path: Path) -> None:
    r = load("cnn_sparsity").main(steps=40, out_dir=str(tmp_path))
    assert r["test_acc"] > 0.7
    assert r["last_main"] < 0.5 * r["first_main"]
    assert all(0 <= w <= 1 for w in r["weights"].values())
    assert len(r["telemetry"]) == 4 and set(r["telemetry"][0].sets) == {"0.0", "1.0", "2.0"}
    assert r["plots"] and all(Path(p).is_file() for p in r["plots"])
