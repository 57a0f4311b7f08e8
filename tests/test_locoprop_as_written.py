"""LocoProp on models as people write them: torch's own transformer layers, a nanoGPT-style model, a
compiled model, an optimizer instance given as ``other_optimizer``. Each either gives the exact update
(one inner SGD step of size η equals a backprop SGD step of size ηγ, float64) or is refused at
construction with the fix, leaving the parameters unchanged; the share LocoProp trains is stated."""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from layerwise import LocoProp
from models_as_written import NanoGPT, TorchLM

ETA, GAMMA = 0.05, 3.0


def _sgd(ps: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(ps, lr=ETA * GAMMA)


def _assert_backprop_update(model: nn.Module, x: Tensor, variant: str) -> LocoProp:
    """LocoProp with one inner SGD step moves every parameter exactly as backprop SGD does."""
    ref = copy.deepcopy(model)
    y = torch.randn_like(model(x))
    opt = LocoProp(model, lr=ETA, variant=variant, gamma=GAMMA, steps=1, inner="sgd", other_optimizer=_sgd)
    opt.step(lambda: F.mse_loss(model(x), y))
    F.mse_loss(ref(x), y).backward()
    torch.optim.SGD(ref.parameters(), lr=ETA * GAMMA).step()
    for (n, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")
    return opt


def _tokens(vocab: int = 11) -> Tensor:
    return torch.randint(0, vocab, (3, 5), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("variant", ["s", "m"])
def test_torch_transformer_layers_train_their_linears_with_the_backprop_update(variant: str) -> None:
    """Failed before: fx keeps nn.TransformerEncoder whole, so LocoProp trained only `out` (silently)."""
    torch.manual_seed(0)
    model = TorchLM().double()
    opt = _assert_backprop_update(model, _tokens(), variant)
    assert opt.layers == [
        ("enc.layers.0.linear1", "relu"),
        ("enc.layers.0.linear2", "identity"),
        ("enc.layers.1.linear1", "relu"),
        ("enc.layers.1.linear2", "identity"),
        ("out", "identity"),
    ]
    ffn = sum(p.numel() for n, p in model.named_parameters() if "linear" in n or n.startswith("out."))
    assert opt.coverage.share == pytest.approx(ffn / sum(p.numel() for p in model.parameters()))


def test_a_gelu_transformer_layer_matches_its_first_linear_with_the_identity() -> None:
    opt = LocoProp(TorchLM("gelu"), other_optimizer=_sgd)
    assert ("enc.layers.0.linear1", "identity") in opt.layers


@pytest.mark.parametrize("variant", ["s", "m"])
def test_a_nanogpt_style_model_is_traced_and_gets_the_backprop_update(variant: str) -> None:
    """Failed before: the mask buffer sliced by a traced length and the assert stopped torch.fx."""
    torch.manual_seed(0)
    opt = _assert_backprop_update(NanoGPT().double(), _tokens(), variant)
    assert [n for n, _ in opt.layers] == ["attn.c_attn", "attn.c_proj", "mlp.0", "mlp.2", "lm_head"]


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(3, 3))])
        self.head = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks[0](x)
        return self.head(h if h.sum() > 0 else -h)


def test_an_untraceable_model_is_told_to_declare_its_own_layers() -> None:
    with pytest.raises(ValueError, match=r"could not trace _Branchy.*layers=\[\(model\.blocks\[0\]\[0\], 'identity'\)"):
        LocoProp(_Branchy())


def test_a_declared_linear_inside_a_torch_transformer_layer_is_accepted() -> None:
    """Failed before: refused as 'never called as a module ... as nn.MultiheadAttention does', not the cause."""
    model = TorchLM()
    with pytest.warns(UserWarning, match=r"14\.9% .*nn\.Linear left out \(excluded, or not among the declared"):
        opt = LocoProp(model, layers=[(model.enc.layers[0].linear1, "relu")], other_optimizer=_sgd)
    assert opt.layers == [("enc.layers.0.linear1", "relu")]


def test_a_compiled_model_is_refused_with_the_fix() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.compile's own deprecation notices
        compiled = torch.compile(model)
    with pytest.raises(TypeError, match=r"torch.compile'd module.*model\._orig_mod"):
        LocoProp(compiled)


def test_an_optimizer_instance_as_other_optimizer_is_refused_with_the_fix() -> None:
    model = TorchLM()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(TypeError, match=r"found AdamW \(an instance.*lambda ps: torch.optim.AdamW"):
        LocoProp(model, other_optimizer=torch.optim.AdamW(model.parameters()))  # type: ignore[arg-type]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class _SmallShare(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.mha = nn.Embedding(50, 8), nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.emb(x)
        return self.head(self.mha(h, h, h, need_weights=False)[0])


def test_a_small_trained_share_is_warned_and_every_share_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(UserWarning, match=r"LocoProp trains 3\.8% .*nn.MultiheadAttention \(reads its projection"):
        opt = LocoProp(_SmallShare(), other_optimizer=_sgd)
    assert opt.coverage.share == pytest.approx(27 / (27 + 400 + 288))  # head / (head + embedding + attention)
    assert opt.coverage.others == {
        "nn.Embedding": 400,
        "nn.MultiheadAttention (reads its projection weights directly)": 288,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.INFO, logger="layerwise.locoprop"):
            LocoProp(nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)))
    assert "LocoProp trains 100.0% of Sequential's 30 trainable parameters" in caplog.text


def test_a_closure_that_runs_another_model_is_told_so_and_changes_nothing() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    copy_of = copy.deepcopy(model)
    before = copy.deepcopy(model.state_dict())
    opt = LocoProp(model)
    x = torch.randn(5, 4)
    with pytest.raises(RuntimeError, match=r"None of LocoProp's layers ran.*uncompiled"):
        opt.step(lambda: copy_of(x).square().mean())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
