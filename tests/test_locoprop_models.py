"""LocoProp on the layer options, activations and model structures real models use: each either
gives the exact update (checked against backprop in float64) or is rejected at construction / first
step with the fix, leaving every parameter unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from layerwise import LocoProp
from zoo import reused_linear

ETA, GAMMA = 0.05, 3.0


def _check_invariant(model: nn.Module, x: Tensor, y: Tensor, variant: str, loss=F.mse_loss, **kwargs) -> LocoProp:  # type: ignore[no-untyped-def]
    """One inner SGD step of size η equals one backprop SGD step of size ηγ (other_optimizer: SGD(ηγ))."""
    ref = copy.deepcopy(model)
    opt = LocoProp(
        model,
        lr=ETA,
        variant=variant,
        gamma=GAMMA,
        steps=1,
        inner="sgd",
        other_optimizer=lambda ps: torch.optim.SGD(ps, lr=ETA * GAMMA),
        **kwargs,
    )
    opt.step(lambda: loss(model(x), y))
    loss(ref(x), y).backward()
    torch.optim.SGD(ref.parameters(), lr=ETA * GAMMA).step()
    for (n, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=lambda m, n=n: f"{n}: {m}")
    return opt


def _images(c: int = 2, size: int = 6, batch: int = 3) -> Tensor:
    return torch.randn(batch, c, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("variant", ["s", "m"])
def test_in_place_activation_after_a_layer_gives_the_backprop_update(variant: str) -> None:
    """Failed on 0.5.0: the hook kept the tensor that nn.ReLU(inplace=True) then rewrote (â and g were post-ReLU)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 6), nn.ReLU(inplace=True), nn.Linear(6, 3)
    ).double()
    x, y = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    opt = _check_invariant(model, x, y, variant)
    assert opt.layers == [("0", "relu"), ("2", "relu"), ("4", "identity")]


class _InPlaceResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = self.a(x)
        h += x  # rewrites the layer's output in place
        return self.b(F.relu(h, inplace=True))


@pytest.mark.parametrize("variant", ["s", "m"])
def test_in_place_ops_on_a_layer_output_in_a_traced_model(variant: str) -> None:
    torch.manual_seed(0)
    model = _InPlaceResidual().double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    _check_invariant(model, x, y, variant)


class _InputRewritten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.a(x))
        out = self.b(h)
        h.mul_(2.0)  # rewrites b's input after b read it
        return out + h


def test_input_rewritten_in_place_after_the_layer_read_it_is_an_error_and_changes_nothing() -> None:
    torch.manual_seed(0)
    model = _InputRewritten().double()
    before = copy.deepcopy(model.state_dict())
    opt = LocoProp(model, lr=0.1, inner="sgd", steps=1)
    x = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"layer 'b': its input was modified in place.*no parameter was changed"):
        opt.step(lambda: model(x).square().mean())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize(
    "conv",
    [
        dict(kernel_size=3, padding="same"),  # symmetric: numeric padding 1
        dict(kernel_size=4, padding="same"),  # asymmetric: 1 before, 2 after
        dict(kernel_size=2, padding="same", dilation=3),  # asymmetric, dilated
        dict(kernel_size=3, padding="valid"),
        dict(kernel_size=3, padding=1, padding_mode="reflect"),
        dict(kernel_size=3, padding=(1, 2), padding_mode="circular"),
        dict(kernel_size=3, padding=2, padding_mode="replicate", stride=2),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("variant", ["s", "m"])
def test_every_conv_padding_option_gives_the_backprop_update(conv: dict, variant: str) -> None:  # type: ignore[type-arg]
    """Failed on 0.5.0: padding='same' crashed in conv2d_weight, and padding modes were rejected."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, **conv), nn.Tanh(), nn.Conv2d(3, 2, 3, padding="same"), nn.Flatten()).double()
    x = _images()
    y = torch.randn_like(model(x))
    _check_invariant(model, x, y, variant)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "conv", [dict(kernel_size=4, padding="same"), dict(kernel_size=3, padding=1, padding_mode="reflect")]
)
def test_exact_solver_honours_the_padding(conv: dict) -> None:  # type: ignore[type-arg]
    """exact (S) on an asymmetric-'same' and a reflect-padded conv: the local objective's gradient, through
    the module's own forward, vanishes at the new weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, **conv), nn.Flatten()).double()
    x = _images()
    y = torch.randn_like(model(x))
    old = copy.deepcopy(model)
    out = old(x)
    (g,) = torch.autograd.grad(F.mse_loss(out, y), out)
    lam = 0.5
    LocoProp(model, variant="s", solver="exact", damping=lam, gamma=GAMMA).step(lambda: F.mse_loss(model(x), y))
    z = model(x)
    obj = 0.5 * (z - (out.detach() - GAMMA * g)).square().sum() + 0.5 * lam * sum(
        (p - q.detach()).square().sum() for p, q in zip(model.parameters(), old.parameters(), strict=True)
    )
    for gr in torch.autograd.grad(obj, list(model.parameters())):
        assert gr.abs().max() < 1e-9


class _SoftmaxOverChannels(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.conv, self.head, self.how = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 3, 1), how

    def forward(self, x: Tensor) -> Tensor:
        h = torch.sigmoid(self.conv(x))
        z = self.head(h)
        if self.how == "F":
            return F.softmax(z, dim=1)
        if self.how == "method":
            return z.softmax(1)
        return torch.softmax(z, -3)


@pytest.mark.parametrize("how", ["module", "F", "method", "torch"])
def test_softmax_over_a_non_last_dimension_is_matched_over_that_dimension(how: str) -> None:
    """Failed on 0.5.0: nn.Softmax(dim=1) after a conv was matched over the last (width) dimension."""
    torch.manual_seed(0)
    if how == "module":
        model: nn.Module = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.Sigmoid(), nn.Conv2d(4, 3, 1), nn.Softmax(dim=1)
        ).double()
    else:
        model = _SoftmaxOverChannels(how).double()
    x = _images()
    y = torch.softmax(torch.randn(3, 3, 6, 6, dtype=torch.float64), 1)
    opt = _check_invariant(model, x, y, "m")
    assert opt.layers[-1][1] == ("softmax(dim=-3)" if how == "torch" else "softmax(dim=1)")


def test_precond_m_with_a_channel_softmax_reaches_its_local_minimiser() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Softmax(dim=1)).double()
    x = _images()
    y = torch.softmax(torch.randn(3, 3, 6, 6, dtype=torch.float64), 1)
    old = copy.deepcopy(model)
    z0 = old[0](x)
    (g,) = torch.autograd.grad(F.mse_loss(torch.softmax(z0, 1), y), z0)
    lam = 1.0
    LocoProp(model, solver="precond", steps=300, damping=lam, gamma=GAMMA).step(lambda: F.mse_loss(model(x), y))
    z = model[0](x)
    target = torch.softmax(z0.detach(), 1) - GAMMA * g
    obj = (
        torch.logsumexp(z, 1).sum()
        - (z * target).sum()
        + 0.5
        * lam
        * sum((p - q.detach()).square().sum() for p, q in zip(model[0].parameters(), old[0].parameters(), strict=True))
    )
    for gr in torch.autograd.grad(obj, list(model[0].parameters())):
        assert gr.abs().max() < 1e-9


def test_leaky_relu_slope_is_honoured() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.2), nn.Linear(5, 3)).double()
    x, y = torch.randn(7, 4, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    opt = _check_invariant(model, x, y, "m")
    assert opt.layers[0] == ("0", "leaky_relu(0.2)")


class _DtypeSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(self.fc(x), dim=-1, dtype=torch.float64)


@pytest.mark.parametrize(
    "model,match",
    [
        (
            nn.Sequential(nn.Linear(3, 3), nn.Softmax()),
            r"layer '0' is followed by nn.Softmax\(dim=None\).*explicit dim",
        ),
        (_DtypeSoftmax(), r"layer 'fc' is followed by a softmax computed in dtype=torch.float64.*Drop dtype="),
        (nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(-0.5)), r"negative_slope=-0.5.*slope in \[0, 1\]"),
    ],
)
def test_activation_arguments_the_matching_loss_cannot_honour_are_rejected(model: nn.Module, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LocoProp(model)


def test_a_sequential_of_custom_blocks_is_traced_into() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: Tensor) -> Tensor:
            return torch.tanh(self.fc(x))

    torch.manual_seed(0)
    model = nn.Sequential(Block(), Block(), nn.Linear(4, 2)).double()
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    opt = _check_invariant(model, x, y, "m")
    assert opt.layers == [("0.fc", "tanh"), ("1.fc", "tanh"), ("2", "identity")]
    assert opt.other_optimizer is None


def test_a_layer_called_twice_is_rejected_at_construction_or_excluded() -> None:
    model = reused_linear()
    with pytest.raises(ValueError, match=r"layer 'fc' is called 2 times.*exclude=\['fc'\]"):
        LocoProp(model)
    seq = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    seq.append(seq[0])
    with pytest.raises(ValueError, match=r"layer '0' is called 2 times"):
        LocoProp(seq)


def test_exclude_hands_a_layer_to_other_optimizer_and_names_are_checked() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    opt = LocoProp(model, exclude=["2"], other_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1))
    assert opt.layers == [("0", "tanh")]
    with pytest.raises(ValueError, match=r"Invalid exclude entry 'nope'"):
        LocoProp(model, exclude=["nope"])


def test_mha_out_proj_declared_is_rejected_at_construction() -> None:
    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(4, 2, batch_first=True)

        def forward(self, x: Tensor) -> Tensor:
            return self.mha(x, x, x, need_weights=False)[0]

    model = Attn()
    with pytest.raises(ValueError, match=r"'mha.out_proj' is never called as a module.*MultiheadAttention"):
        LocoProp(model, layers=[(model.mha.out_proj, "identity")], other_optimizer=lambda ps: torch.optim.SGD(ps, 0.1))


def test_a_layer_whose_forward_is_not_its_affine_map_is_rejected_at_the_first_step() -> None:
    class Scaled(nn.Linear):
        def forward(self, x: Tensor) -> Tensor:
            return 2.0 * super().forward(x)

    torch.manual_seed(0)
    model = nn.Sequential(Scaled(3, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    before = copy.deepcopy(model.state_dict())
    opt = LocoProp(model, layers=[(model[0], "tanh"), (model[2], "identity")])
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"layer '0' \(Scaled\) returned something other than its affine map"):
        opt.step(lambda: model(x).square().mean())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_a_parametrized_weight_is_rejected_with_the_fix() -> None:
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(3, 3)), nn.Tanh(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"cannot train these parameters: 0.bias, 0.parametrizations.*other_optimizer"):
        LocoProp(model)  # found: a parametrized Linear is not an nn.Linear; its parameters are left over
    with pytest.raises(ValueError, match=r"layer '0' computes its weight.*exclude=\['0'\]"):
        LocoProp(model, layers=[(model[0], "tanh")])  # declared
