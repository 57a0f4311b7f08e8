"""Decoupled training (MAC): eq. (3) by hand, one-block gradient locality, the z store, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from layerwise.decoupled import DecoupledTrainer, IndexedDataset, ZStore, geometric


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


@pytest.mark.parametrize("mode", ["joint", "alternating"])
def test_a_tiny_problem_converges_and_the_plain_net_fits_it(mode: str) -> None:
    x, y, blocks, store = tiny(n=64)
    ds = IndexedDataset(x, y)
    trainer = DecoupledTrainer(blocks, store, mu=geometric(1.0, 1.5, 40, cap=50), mode=mode, z_steps=2,
                               optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2))
    trainer.initialize(DataLoader(ds, batch_size=16))
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        for batch in DataLoader(ds, batch_size=16, shuffle=True, generator=gen):
            trainer.step(batch)
    trainer.consistency_step(DataLoader(ds, batch_size=16), epochs=5)
    with torch.no_grad():
        acc = (trainer(x).argmax(1) == y).double().mean()
    assert acc >= 0.95
    assert max(trainer.feasibility_gap(DataLoader(ds, batch_size=64)).values()) < 0.5


def test_store_rows_bf16_and_memory_mapped(tmp_path: Path) -> None:
    values = torch.randn(10, 4)
    for kwargs in ({}, {"dtype": torch.bfloat16}, {"path": tmp_path / "z", "dtype": torch.bfloat16},
                   {"path": tmp_path / "z32"}):
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
