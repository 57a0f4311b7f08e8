"""A process killed in each data-parallel mode: its peer stops with a CollectiveFailure that says what happened
and what to do, its parameters and optimizer state as they were before the failed step."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

WORKER = textwrap.dedent("""
    import os, signal, sys, torch, torch.distributed as dist
    from torch import nn
    import torch.nn.functional as F
    import layerwise
    from layerwise import LocoProp, CollectiveFailure, Uncertainty

    mode, rank, init, die_at = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    calls = [0]
    real = dist.all_reduce

    def all_reduce(*a, **k):  # rank 1 dies at its die_at-th all-reduce: inside a step, between inner steps
        calls[0] += 1
        if rank == 1 and calls[0] == die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)

    dist.all_reduce = all_reduce
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 5))
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(rank))
    if mode == "weighting":
        w = Uncertainty(["a", "b"])
        opt = torch.optim.Adam([*model.parameters(), *w.parameters()], lr=1e-2)

        def step():
            opt.zero_grad()
            out = model(x)
            layerwise.backward({"a": F.mse_loss(out, x), "b": out.abs().mean()}, w, params=list(model.parameters()))
            opt.step()
    else:
        kwargs = {"solver": "precond", "damping": 0.5, "steps": 3, "lr": 1.0} if mode == "precond" else {"lr": 1e-3}
        opt = LocoProp(model, other_optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2), **kwargs)

        def step():
            opt.step(lambda: F.mse_loss(model(x), x))

    # LocoProp restores BatchNorm's statistics too; in the user's own loop (weighting) the forward updates them
    watched = lambda: [*model.parameters(), *(model.buffers() if mode != "weighting" else w.parameters())]
    def slots(opt):  # every tensor of the optimizer's state (and the other optimizer's), keyed by (param, slot)
        opts = [opt, getattr(opt, "other_optimizer", None)]
        return {(j, id(p), k): v.clone() for j, o in enumerate(opts) if o is not None
                for p, s in o.state.items() for k, v in s.items() if torch.is_tensor(v)}

    for i in range(1000):
        before = [t.detach().clone() for t in watched()]
        state = slots(opt)
        try:
            step()
        except CollectiveFailure as exc:
            after = watched()
            same = all(torch.equal(a, b) for a, b in zip(before, after))
            now = slots(opt)
            same_state = state.keys() == now.keys() and all(torch.equal(state[k], now[k]) for k in state)
            print("FAILURE", i, "params unchanged:", same, "state unchanged:", same_state, "state slots:", len(state),
                  "|", exc, flush=True)
            os._exit(4)
    os._exit(0)
""")


def run_pair(workdir: Path, mode: str, die_at: int) -> tuple[list[int], list[str]]:
    """Run the worker on two gloo processes in ``workdir``, rank 1 dying at its ``die_at``-th all-reduce; the
    exit codes and outputs (also used by benchmarks/fault-injection-cpu/run.py)."""
    script = workdir / "worker.py"
    script.write_text(WORKER)
    init = f"file://{workdir / 'rendezvous'}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), mode, str(r), init, str(die_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    try:
        logs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [p.returncode for p in procs], logs


# die_at: in the second step (the optimizer state is not empty), between inner steps for LocoProp
@pytest.mark.parametrize(("mode", "die_at"), [("iterative", 19), ("precond", 10), ("weighting", 7)])
def test_a_killed_peer_is_a_collective_failure_and_this_process_is_unchanged(
    tmp_path: Path, mode: str, die_at: int
) -> None:
    codes, logs = run_pair(tmp_path, mode, die_at)
    assert codes[1] == -9, logs[1]
    assert codes[0] == 4, logs[0]
    line = next(x for x in logs[0].splitlines() if x.startswith("FAILURE"))
    assert "params unchanged: True state unchanged: True" in line, line
    assert not line.startswith("FAILURE 0 ") and "state slots: 0 " not in line, line  # the state was not empty
    assert "Another process most likely died" in line and "--max-restarts" in line
    if mode != "weighting":  # LocoProp's inner loop all-reduces: a half-done step was rolled back
        assert "as they were before this step" in line
