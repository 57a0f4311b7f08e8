"""Decoupled training (MAC): eq. (3) by hand, one-block gradient locality, the z store, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from layerwise.decoupled import (
    DecoupledTrainer,
    ForwardDeltaZ,
    ForwardZ,
    IndexedDataset,
    StoredZ,
    ZStore,
    geometric,
)
from layerwise.decoupled._curvature import LipschitzEstimate


def tiny(seed: int = 0, n: int = 24, width: int = 5, depth: int = 4):
    torch.manual_seed(seed)
    x = torch.randn(n, 3, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    blocks = [nn.Sequential(nn.Linear(3 if t == 0 else width, width), nn.Tanh()).double() for t in range(depth - 1)]
    blocks.append(nn.Linear(width, 2).double())
    return x, y, blocks, ZStore(n, [(width,)] * (depth - 1))


def test_eq3_loss_equals_a_hand_computation() -> None:
    x, y, blocks, store = tiny()
    trainer = DecoupledTrainer(blocks, store, mu=0.7)
    zs = [torch.randn(24, 5, dtype=torch.float64) for _ in range(3)]
    terms = trainer.losses(x, y, zs)
    inputs = [x, *zs]
    for t in range(3):
        by_hand = 0.7 * sum(0.5 * ((blocks[t](inputs[t][i]) - zs[t][i]) ** 2).sum() for i in range(24)) / 24
        torch.testing.assert_close(terms[f"hidden{t + 1}"], by_hand)
    torch.testing.assert_close(terms["output"], F.cross_entropy(blocks[3](zs[2]), y))


def test_each_blocks_gradient_depends_only_on_its_own_z() -> None:
    x, y, blocks, store = tiny()
    trainer = DecoupledTrainer(blocks, store)
    zs = [torch.randn(24, 5, dtype=torch.float64) for _ in range(3)]

    def grads(zs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        total = sum(trainer.losses(x, y, zs).values())
        return [list(torch.autograd.grad(total, list(b.parameters()), retain_graph=True)) for b in blocks]

    base = grads(zs)
    for t in range(4):  # block t uses z_{t-1} (x for t = 0) and z_t (y for the last block)
        own = {t - 1, t}
        for other in set(range(3)) - own:
            moved = [z + (torch.randn_like(z) if k == other else 0) for k, z in enumerate(zs)]
            for g, e in zip(grads(moved)[t], base[t], strict=True):
                torch.testing.assert_close(g, e, rtol=0, atol=0)
        for mine in own & set(range(3)):
            moved = [z + (torch.randn_like(z) if k == mine else 0) for k, z in enumerate(zs)]
            assert any(not torch.equal(g, e) for g, e in zip(grads(moved)[t], base[t], strict=True))


def test_z_from_a_forward_pass_makes_the_hidden_loss_zero() -> None:
    x, y, blocks, store = tiny()
    trainer = DecoupledTrainer(blocks, store)
    trainer.initialize(DataLoader(IndexedDataset(x, y), batch_size=7))
    gap = trainer.feasibility_gap(DataLoader(IndexedDataset(x, y), batch_size=10))
    assert list(gap.values()) == pytest.approx([0, 0, 0], abs=1e-6)
    idx = torch.arange(24)
    terms = trainer.losses(x, y, [store.rows(t, idx).double() for t in range(3)])
    assert all(terms[f"hidden{t}"] < 1e-12 for t in (1, 2, 3))


@pytest.mark.parametrize("mu", [1e2, 1e4])
def test_at_the_z_optimum_block_gradients_are_backprop_gradients(mu: float) -> None:
    """Stationarity in z gives μ r_t = J_{t+1}ᵀ μ r_{t+1} and μ r_{T−2} = −∇ℓ_y, r_t = z_t − f_t(z_{t−1}): the
    residuals carry the backprop chain. So each block's gradient of eq. (3) at the z-optimum is the backprop
    gradient of ℓ_y along the z path, and tends to the plain net's backprop gradient as 1/μ (MAC cannot
    escape vanishing gradients once z has converged; it changes where the chain is evaluated)."""
    x, y, blocks, store = tiny()
    trainer = DecoupledTrainer(blocks, store, mu=mu)
    with torch.no_grad():  # the feasible start: a forward pass
        h, start = x, []
        for b in blocks[:-1]:
            h = b(h)
            start.append(h.clone())
    zs = [z.requires_grad_(True) for z in start]
    solver = torch.optim.LBFGS(
        zs, lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=0, history_size=50, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        solver.zero_grad()
        total = sum(trainer.losses(x, y, zs).values())
        total.backward()
        return total

    for _ in range(5):
        solver.step(objective)
    assert max(float(z.grad.abs().max()) for z in zs) < 1e-6  # z is stationary (the scale is ~1e-2 at μ=1e2)
    params = [p for b in blocks for p in b.parameters()]
    decoupled = torch.autograd.grad(sum(trainer.losses(x, y, [z.detach() for z in zs]).values()), params)
    backprop = torch.autograd.grad(F.cross_entropy(trainer(x), y), params)
    err = max(float((d - e).norm() / e.norm()) for d, e in zip(decoupled, backprop, strict=True))
    assert 1 / mu < err < 10 / mu  # equal up to O(1/μ) (measured 3.9/μ at both μ), not exactly: z path ≠ forward path


@pytest.mark.parametrize("mode", ["joint", "alternating", "z-first", "forward"])
def test_a_tiny_problem_converges_and_the_plain_net_fits_it(mode: str) -> None:
    x, y, blocks, store = tiny(n=64)
    ds = IndexedDataset(x, y)
    forward = mode == "forward"
    trainer = DecoupledTrainer(
        blocks,
        ForwardZ() if forward else StoredZ(store),
        mu=geometric(1.0, 1.5, 40, cap=50),
        mode="z-first" if forward else mode,
        z_steps=2,
        optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2),
    )
    if not forward:
        trainer.initialize(DataLoader(ds, batch_size=16))
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        for batch in DataLoader(ds, batch_size=16, shuffle=True, generator=gen):
            trainer.step(batch)
    trainer.consistency_step(DataLoader(ds, batch_size=16), epochs=5)
    with torch.no_grad():
        acc = (trainer(x).argmax(1) == y).double().mean()
    assert acc >= 0.95
    if not forward:
        assert max(trainer.feasibility_gap(DataLoader(ds, batch_size=64)).values()) < 0.5


def test_lipschitz_estimate_is_the_spectral_norm_squared() -> None:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3))
    est = LipschitzEstimate()
    exact = [float(torch.linalg.matrix_norm(m.weight.detach(), ord=2)) ** 2 for m in (block[0], block[2])]
    assert est(block) == pytest.approx(exact[0] * exact[1], rel=1e-4)
    with torch.no_grad():
        block[0].weight.mul_(3)
    for _ in range(10):  # one power-iteration step per call, from the previous vector
        got = est(block)
    assert got == pytest.approx(9 * exact[0] * exact[1], rel=1e-4)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    op = torch.func.jacrev(lambda v: conv(v.reshape(1, 2, 6, 6)).flatten())(torch.zeros(72)).detach()
    assert est(conv) >= float(torch.linalg.matrix_norm(op, ord=2)) ** 2  # an upper bound for the conv map
    assert est(nn.Tanh()) == 1.0


def test_activation_slopes_give_the_tight_bound_of_a_sigmoid_block() -> None:
    """With ``activations=True`` a Linear+Sigmoid block's c is ‖W‖²/16: the squared norm of its Jacobian where
    the pre-activation is 0 (the sigmoid's steepest point), and never below it anywhere else."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(6, 6), nn.Sigmoid()).double()
    with torch.no_grad():
        block[0].bias.zero_()
    tight, loose = LipschitzEstimate(activations=True)(block), LipschitzEstimate()(block)
    assert tight == pytest.approx(loose / 16, rel=1e-9)

    def jac_sq(v: torch.Tensor) -> float:
        return float(torch.linalg.matrix_norm(torch.func.jacrev(block)(v).detach(), ord=2)) ** 2

    assert tight == pytest.approx(jac_sq(torch.zeros(6, dtype=torch.float64)), rel=1e-6)
    assert all(jac_sq(torch.randn(6, dtype=torch.float64)) <= tight * (1 + 1e-9) for _ in range(20))
    tanh = nn.Sequential(nn.Linear(6, 6), nn.Tanh()).double()  # tanh's slope is 1: no change
    assert LipschitzEstimate(activations=True)(tanh) == pytest.approx(LipschitzEstimate()(tanh), rel=1e-9)


def test_z_steps_with_activation_slopes_still_descend_on_a_sigmoid_net() -> None:
    """The 16× larger z step of a sigmoid block is still a descent step (z_lr = 1, θ frozen)."""
    x, y, blocks, store = tiny()
    for b in blocks[:-1]:
        b[1] = nn.Sigmoid()
    with torch.no_grad():
        for b in blocks:
            for p in b.parameters():
                p.mul_(4.0)
    trainer = DecoupledTrainer(
        blocks,
        store,
        mu=3.0,
        mode="alternating",
        activation_slopes=True,
        optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0),
    )
    assert trainer.objective.lipschitz.activations
    trainer.initialize(DataLoader(IndexedDataset(x, y), batch_size=24))
    idx = torch.arange(24)
    values = [sum(trainer.step((x, y, idx)).values()) for _ in range(30)]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < values[0]
    with pytest.raises(ValueError, match="activation_slopes='yes'"):
        DecoupledTrainer(blocks, store, activation_slopes="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_z_steps_never_increase_the_objective_whatever_the_weight_scale(scale: float) -> None:
    """The step z_lr/L_j with L_j from the blocks' Lipschitz bounds is a descent step (z_lr = 1); a step
    fixed in advance diverges once the weights grow (scale 10)."""
    x, y, blocks, store = tiny()
    with torch.no_grad():
        for b in blocks:
            for p in b.parameters():
                p.mul_(scale)
    trainer = DecoupledTrainer(
        blocks, store, mu=3.0, z_steps=1, mode="alternating", optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0)
    )
    trainer.initialize(DataLoader(IndexedDataset(x, y), batch_size=24))
    idx = torch.arange(24)
    values = []
    for _ in range(30):
        values.append(sum(trainer.step((x, y, idx)).values()))
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < values[0]


def test_forward_z_needs_z_first_and_keeps_no_store() -> None:
    x, y, blocks, store = tiny()
    with pytest.raises(ValueError, match=r"Invalid mode='joint' with ForwardZ\(\).*Pass mode='z-first'"):
        DecoupledTrainer(blocks, ForwardZ(), mode="joint")
    with pytest.raises(ValueError, match=r"Invalid z=None: pass where each step's z come from: z=StoredZ"):
        DecoupledTrainer(blocks)
    with pytest.raises(TypeError, match=r"Invalid z: expected StoredZ\(store\), ForwardZ\(\).*found str"):
        DecoupledTrainer(blocks, "forward")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"StoredZ keeps every example's z in a ZStore, found NoneType"):
        StoredZ(None)  # type: ignore[arg-type]
    trainer = DecoupledTrainer(blocks, ForwardZ())
    assert trainer.mode == "z-first" and trainer.z_order == "jacobi"  # the source's defaults
    with pytest.raises(ValueError, match=r"initialize: this trainer's z come from ForwardZ\(\), which keeps no z"):
        trainer.initialize(DataLoader(IndexedDataset(x, y), batch_size=8))
    augmented = x[:4] + 0.1  # inputs may change between visits: z is recomputed
    terms = trainer.step((augmented, y[:4], torch.arange(4)))
    assert terms["hidden3"] > 0 and terms["hidden1"] == terms["hidden2"] == 0  # Jacobi: one layer per z step
    sweeping = DecoupledTrainer(blocks, ForwardZ(), z_order="sweep")
    terms = sweeping.step((augmented, y[:4], torch.arange(4)))
    assert all(v > 0 for v in terms.values())  # one sweep carries the output's signal to every layer


def test_a_sweep_is_gauss_seidel_on_eq3() -> None:
    """z_j's sweep step equals a gradient step on eq. (3) in z_j alone, with z_{j+1} already stepped."""
    x, y, blocks, store = tiny()
    trainer = DecoupledTrainer(blocks, store, mu=2.0, z_order="sweep")
    torch.manual_seed(1)
    z = {j: torch.randn(24, 5, dtype=torch.float64) for j in range(3)}
    curv = {j: 0.7 for j in range(3)}
    from layerwise.decoupled._zstep import sweep

    got = sweep(trainer._run(), x, y, z, torch.arange(24), curv)
    expect = dict(z)
    for j in (2, 1, 0):
        zj = expect[j].clone().requires_grad_(True)
        g = torch.autograd.grad(sum(trainer.losses(x, y, {**expect, j: zj}).values()), zj)[0]
        bound = 2.0 + 0.7 if j == 2 else 2.0 * 1.7
        expect[j] = zj.detach() - (24 / bound) * g
        torch.testing.assert_close(got[j], expect[j])


def test_store_rows_bf16_and_memory_mapped(tmp_path: Path) -> None:
    values = torch.randn(10, 4)
    for kwargs in (
        {},
        {"dtype": torch.bfloat16},
        {"path": tmp_path / "z", "dtype": torch.bfloat16},
        {"path": tmp_path / "z32"},
    ):
        store = ZStore(10, [(4,), (2, 3)], **kwargs)
        store.write(0, torch.tensor([7, 2]), values[:2])
        got = store.rows(0, torch.tensor([2, 7, 0]))
        tol = 1e-2 if kwargs.get("dtype") == torch.bfloat16 else 0
        torch.testing.assert_close(got[0], values[1], rtol=tol, atol=tol)
        torch.testing.assert_close(got[1], values[0], rtol=tol, atol=tol)
        assert torch.equal(got[2], torch.zeros(4))  # rows not written stay untouched
        assert store.nbytes() == 10 * (4 + 6) * (2 if kwargs.get("dtype") == torch.bfloat16 else 4)
        assert got.dtype == torch.float32
    store.flush()
    assert (tmp_path / "z" / "z0.bin").stat().st_size == 10 * 4 * 2


def test_bad_input_gives_clear_errors() -> None:
    x, y, blocks, store = tiny()
    trainer = DecoupledTrainer(blocks, store)
    with pytest.raises(TypeError, match=r"needs \(x, y, idx\).*IndexedDataset"):
        trainer.initialize(DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8))
    with pytest.raises(ValueError, match="has 10 examples but the store was built for 24"):
        trainer.initialize(DataLoader(IndexedDataset(x[:10], y[:10]), batch_size=8))
    with pytest.raises(RuntimeError, match="initialize"):
        trainer.step((x[:4], y[:4], torch.arange(4)))
    trainer.initialize(DataLoader(IndexedDataset(x, y), batch_size=8))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 24\)"):
        store.rows(0, torch.tensor([3, 30]))
    with pytest.raises(ValueError, match="example 1 differs.*augmentation"):
        trainer.step((x[:4] + torch.tensor([[0.0], [0.5], [0.0], [0.0]], dtype=torch.float64), y[:4], torch.arange(4)))
    before = [store.rows(t, torch.arange(24)).clone() for t in range(3)]
    params = [p.clone() for p in trainer.blocks.parameters()]
    with pytest.raises(ValueError, match="NaN or inf"):
        store.write(0, torch.tensor([0]), torch.full((1, 5), float("nan")))
    trainer.loss_y = lambda out, y: out.sum() * float("nan")
    with pytest.raises(ValueError, match="output term is nan: nothing was updated"):
        trainer.step((x[:4], y[:4], torch.arange(4)))
    for t in range(3):
        assert torch.equal(store.rows(t, torch.arange(24)), before[t])
    for p, q in zip(trainer.blocks.parameters(), params, strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="store holds 2"):
        DecoupledTrainer(blocks, ZStore(24, [(5,), (5,)]))


def test_targets_are_what_the_theta_step_fits_and_change_nothing() -> None:
    x, y, blocks, store = tiny()
    trainer = DecoupledTrainer(
        blocks,
        store,
        mu=2.0,
        mode="z-first",
        z_order="sweep",
        z_steps=2,
        optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0),
    )
    trainer.initialize(DataLoader(IndexedDataset(x, y), batch_size=24))
    idx = torch.arange(6)
    before = [store.rows(j, idx).clone() for j in range(3)]
    params = [p.clone() for p in trainer.blocks.parameters()]
    z = trainer.targets((x[:6], y[:6], idx))
    for j in range(3):
        assert torch.equal(store.rows(j, idx), before[j])  # nothing written
        assert not torch.equal(z[j].float(), before[j])  # the z steps moved them
    assert all(torch.equal(p, q) for p, q in zip(trainer.blocks.parameters(), params, strict=True))
    trainer.step((x[:6], y[:6], idx))  # θ cannot move (lr 0): the stored z are exactly the targets
    for j in range(3):
        torch.testing.assert_close(store.rows(j, idx), z[j].float())


def _sigmoid_stack(depth: int, width: int, dtype: torch.dtype, gain: float = 4.0, seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    blocks: list[nn.Module] = []
    for t in range(depth):
        lin = nn.Linear(3 if t == 0 else width, width)
        nn.init.orthogonal_(lin.weight, gain=gain)
        with torch.no_grad():
            lin.bias.copy_(-0.5 * lin.weight.sum(1) if t > 0 else torch.zeros(width))  # centre σ's input
        blocks.append(nn.Sequential(lin, nn.Sigmoid()).to(dtype))
    blocks.append(nn.Linear(width, 2).to(dtype))
    return blocks


def test_delta_form_agrees_with_the_plain_forward_z_step_to_first_order() -> None:
    """float64: one delta-form step moves every parameter as the forward-z step does, up to O(‖δ‖²). The
    target changes δ scale as 1/μ, so the relative difference of the moves must fall about 10× per 10× μ
    (and is not 0: it is a different computation)."""
    torch.manual_seed(0)
    x = torch.randn(16, 3, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    rel = []
    for mu in (500.0, 5000.0):
        moves = []
        for delta in (False, True):
            blocks = _sigmoid_stack(4, 6, torch.float64)
            before = [p.detach().clone() for b in blocks for p in b.parameters()]
            tr = DecoupledTrainer(
                blocks,
                ForwardDeltaZ() if delta else ForwardZ(),
                mu=mu,
                z_order="sweep",
                z_steps=2,
                activation_slopes=True,
                optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
            )
            terms = tr.step((x, y, torch.arange(16)))
            assert set(terms) == {"hidden1", "hidden2", "hidden3", "hidden4", "output"}
            moves.append(
                torch.cat([(p.detach() - q).flatten() for p, q in zip(tr.blocks.parameters(), before, strict=True)])
            )
        assert moves[0].abs().max() > 1e-3
        rel.append(float((moves[1] - moves[0]).abs().max() / moves[0].abs().max()))
    assert 0 < rel[1] < rel[0] / 5 and rel[0] < 1e-4, rel


def test_delta_form_keeps_every_block_learning_in_float32() -> None:
    """A deep float32 sigmoid stack: forward-z targets round back to the forward activations in the low
    blocks (their gradient is exactly 0); in delta form every block gets a gradient."""
    x = torch.randn(32, 3)
    y = (x[:, 0] > 0).long()
    zero_blocks = {}
    for delta in (False, True):
        blocks = _sigmoid_stack(14, 16, torch.float32)
        tr = DecoupledTrainer(
            blocks, ForwardDeltaZ() if delta else ForwardZ(), mu=1e4, z_order="sweep", activation_slopes=True
        )
        objective = tr.theta_objective((x, y, torch.arange(32)))
        grads = torch.autograd.grad(objective, [b[0].weight for b in tr.blocks[:-1]])
        zero_blocks[delta] = sum(int(g.abs().max() == 0) for g in grads)
    assert zero_blocks[False] >= 3 and zero_blocks[True] == 0, zero_blocks


def test_delta_form_needs_forward_z_sweep_mse_and_one_process() -> None:
    x, y, blocks, store = tiny()
    assert DecoupledTrainer(blocks, ForwardDeltaZ()).z_order == "sweep"  # the source's default
    with pytest.raises(ValueError, match=r"Invalid z_order='jacobi' with ForwardDeltaZ\(\).*top-down sweeps"):
        DecoupledTrainer(blocks, ForwardDeltaZ(), z_order="jacobi")
    with pytest.raises(ValueError, match=r"the delta form needs loss_h='mse' and one process"):
        DecoupledTrainer(blocks, ForwardDeltaZ(), loss_h=lambda a, b: (a - b).abs().mean())


def test_the_deprecated_flags_still_work_and_say_what_replaces_them() -> None:
    """store=, z_init= and delta= (one choice over three flags) map to the z source, with a DeprecationWarning
    naming it; their old errors stay; mixing them with z= is an error."""
    x, y, blocks, store = tiny()
    for kwargs, source in [
        ({"store": store}, StoredZ),
        ({"z_init": "forward", "mode": "z-first"}, ForwardZ),
        ({"z_init": "forward", "mode": "z-first", "z_order": "sweep", "delta": True}, ForwardDeltaZ),
    ]:
        with pytest.warns(DeprecationWarning, match=rf"is deprecated and goes in 0.8: .* here z={source.__name__}\("):
            trainer = DecoupledTrainer(blocks, **kwargs)  # type: ignore[arg-type]
        assert type(trainer.source) is source
    with pytest.warns(DeprecationWarning):
        forward = DecoupledTrainer(blocks, None, z_init="forward", mode="z-first")
    assert isinstance(forward.source, ForwardZ)
    with pytest.raises(ValueError, match="keeps no store. Pass store=None"):
        DecoupledTrainer(blocks, store, z_init="forward", mode="z-first")
    with pytest.raises(ValueError, match="delta form needs z_init='forward'"):
        DecoupledTrainer(blocks, store, delta=True)
    with pytest.raises(ValueError, match="Invalid delta=1"):
        DecoupledTrainer(blocks, None, z_init="forward", mode="z-first", delta=1)
    with pytest.raises(ValueError, match=r"Invalid z_init= with z=ForwardZ\(\).*Pass z= alone"):
        DecoupledTrainer(blocks, ForwardZ(), z_init="forward")
