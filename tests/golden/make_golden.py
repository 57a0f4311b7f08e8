"""Write the golden numbers ``test_golden.py`` compares against: tiny epoch-based runs of each benchmark family
that trains through the harness, made with the code BEFORE the benchmark moved onto one protocol (commit
00bb9ac), so the move is checked to change no number.

    git worktree add /tmp/base 00bb9ac
    PYTHONPATH=/tmp/base/src python tests/golden/make_golden.py tests/golden/harness.json
"""

from __future__ import annotations

import json
import sys

import torch

import layerwise_bench as bench

torch.set_num_threads(1)
CFG = bench.AutoencoderConfig(dataset="digits", epochs=2, subset=300, batch_size=100)
METHODS = ["adam", "rmsprop", "kfac", "muon", "soap", "locoprop-m", "locoprop-m-bf16-t5-c4", "locoprop-s-exact"]


def main(out: str) -> None:
    data = bench.load_autoencoder_data(CFG)
    golden = {}
    for name in METHODS:
        method = bench.get_method(name)
        recs = bench.train_method(method, method.default_lr, data, CFG, progress=False)
        golden[name] = [[r["epoch"], r["lr"], r["train_loss"], r["test_loss"], r["steps"]] for r in recs]
    with open(out, "w") as f:
        json.dump(
            {"config": {"dataset": "digits", "epochs": 2, "subset": 300, "batch_size": 100}, "runs": golden},
            f,
            indent=1,
        )


if __name__ == "__main__":
    main(sys.argv[1])
