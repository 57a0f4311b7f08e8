"""Muon (torch.optim.Muon's update with a choice of Newton–Schulz dtype, conv filters flattened) and MuonAdam:
Muon on the hidden weights and AdamW on the rest behind one optimizer object."""

import copy as copy_module

import pytest
import torch
from torch import nn

import layerwise_bench as bench
from layerwise.models import deep_autoencoder, sigmoid_cross_entropy
from layerwise_bench import MuonAdam
from layerwise_bench.core._tuned import prepare_methods
from layerwise_bench.methods._muon import Muon, muon_adam_split, newton_schulz, resolve_ns_dtype


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _loss(model):
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    return model(x).pow(2).mean()


def test_one_step_equals_muon_on_matrices_and_adam_on_the_rest():
    a, b = _model(), _model()
    opt = MuonAdam(a, 0.05, adam_lr=0.01, ns_dtype=torch.bfloat16)
    matrices = [p for p in b.parameters() if p.ndim == 2]
    others = [p for p in b.parameters() if p.ndim != 2]
    muon = torch.optim.Muon(matrices, lr=0.05, weight_decay=0.0)
    adam = torch.optim.AdamW(others, lr=0.01, weight_decay=0.0)
    for _ in range(3):
        opt.step(lambda: (opt.zero_grad(), _loss(a).backward()))  # type: ignore[func-returns-value]
        muon.zero_grad()
        adam.zero_grad()
        _loss(b).backward()
        muon.step()
        adam.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_a_scheduler_scales_both_groups_and_state_dict_round_trips():
    model = _model()
    opt = MuonAdam(model, 0.05, adam_lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5**e)
    for _ in range(2):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
        sched.step()
    assert opt.muon.param_groups[0]["lr"] == pytest.approx(0.05 / 4)
    assert opt.adam is not None and opt.adam.param_groups[0]["lr"] == pytest.approx(0.01 / 4)
    copy = _model()
    copy.load_state_dict(model.state_dict())
    other = MuonAdam(copy, 0.05, adam_lr=0.01)
    other.load_state_dict(copy_module.deepcopy(opt.state_dict()))  # as through torch.save
    for o in (opt, other):
        o.zero_grad()
    _loss(model).backward()
    _loss(copy).backward()
    opt.step()
    other.step()
    assert other.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for p, q in zip(model.parameters(), copy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_wrong_state_dict_and_no_matrix_are_clear_errors():
    opt = MuonAdam(_model(), 0.05)
    with pytest.raises(ValueError, match="expects the keys 'muon' and 'adam'"):
        opt.load_state_dict(torch.optim.Adam(_model().parameters()).state_dict())
    with pytest.raises(ValueError, match="no parameter for Muon"):
        MuonAdam(nn.Sequential(nn.LayerNorm(4)), 0.05)


# --- Muon ---------------------------------------------------------------------------------------------------


def _params(shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=gen).requires_grad_() for s in shapes]


def _set_grads(params, step):
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


SHAPES = [(7, 5), (5, 9), (6, 6)]  # tall (transposed inside the iteration), wide, square


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"nesterov": False, "weight_decay": 0.01},
        {"adjust_lr_fn": "match_rms_adamw", "momentum": 0.9, "ns_steps": 3},
        {"adjust_lr_fn": "original", "eps": 1e-5, "ns_coefficients": (3.0, -3.2, 1.2)},
    ],
)
def test_muon_in_bfloat16_is_torch_muon_bit_for_bit_across_a_state_dict_round_trip(options):
    mine, ref = _params(SHAPES), _params(SHAPES)
    opt = Muon(mine, lr=0.02, ns_dtype=torch.bfloat16, **options)
    torch_opt = torch.optim.Muon(ref, lr=0.02, **options)
    for step in range(5):
        if step == 2:  # as through a checkpoint: a new optimizer loads the state
            saved = copy_module.deepcopy(opt.state_dict())
            opt = Muon(mine, lr=0.5, ns_dtype=torch.bfloat16)
            opt.load_state_dict(saved)
        _set_grads(mine, step)
        _set_grads(ref, step)
        opt.step()
        torch_opt.step()
        for p, q in zip(mine, ref, strict=True):
            assert torch.equal(p, q)
        for p, q in zip(mine, ref, strict=True):
            assert torch.equal(opt.state[p]["momentum_buffer"], torch_opt.state[q]["momentum_buffer"])


def test_a_torch_muon_state_dict_loads_and_runs_bfloat16():
    mine, ref = _params(SHAPES), _params(SHAPES)
    torch_opt = torch.optim.Muon(ref, lr=0.02)
    _set_grads(ref, 0)
    torch_opt.step()
    for p, q in zip(mine, ref, strict=True):
        p.data.copy_(q.data)
    opt = Muon(mine, lr=0.02, ns_dtype=torch.float32)
    opt.load_state_dict(copy_module.deepcopy(torch_opt.state_dict()))
    assert opt.param_groups[0]["ns_dtype"] == torch.bfloat16  # torch's state ran bfloat16
    _set_grads(mine, 1)
    _set_grads(ref, 1)
    opt.step()
    torch_opt.step()
    for p, q in zip(mine, ref, strict=True):
        assert torch.equal(p, q)


def _ns_float64(g, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    """The same quintic iteration, written out in float64."""
    a, b, c = coefficients
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / max(float(x.norm()), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


@pytest.mark.parametrize("shape", [(40, 30), (30, 50), (64, 64)])
def test_float32_newton_schulz_matches_a_float64_reference(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    out = newton_schulz(g, dtype=torch.float32)
    assert out.dtype == torch.float32 and out.shape == g.shape
    ref = _ns_float64(g)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-5)
    # bfloat16 is ~1e-2 off the same reference: float32 is the faithful form, not a cheaper approximation
    assert (newton_schulz(g, dtype=torch.bfloat16).double() - ref).abs().max() > 1e-3
    # and the singular values are pushed towards 1 (the point of the iteration; the smallest of a random
    # square matrix need more than 5 steps)
    s = torch.linalg.svdvals(out.double())
    assert s.median() > 0.6 and s.max() < 1.5


def test_a_float32_muon_step_is_the_float64_update():
    (p,) = _params([(20, 12)])
    start = p.detach().clone()
    opt = Muon([p], lr=0.1, weight_decay=0.0, ns_dtype=torch.float32)
    _set_grads([p], 0)
    g = p.grad.clone()
    opt.step()
    update = g.lerp(0.05 * g, 0.95)  # Nesterov on a fresh buffer: g + 0.95 * (0.05 g - g)
    expected = start.double() - 0.1 * (20 / 12) ** 0.5 * _ns_float64(update)
    torch.testing.assert_close(p.detach().double(), expected, rtol=0, atol=1e-6)


def test_newton_schulz_leaves_its_input_alone_in_its_own_dtype():
    g = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    before = g.clone()
    newton_schulz(g, dtype=torch.float32)
    assert torch.equal(g, before)
    (p,) = _params([(6, 4)])  # nesterov=False hands the momentum buffer itself to the iteration
    opt = Muon([p], lr=0.1, nesterov=False, momentum=0.5, ns_dtype=torch.float32)
    _set_grads([p], 0)
    opt.step()
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], 0.5 * p.grad, rtol=0, atol=0)


@pytest.mark.parametrize("ns_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
def test_a_conv_filter_steps_as_its_out_by_in_kh_kw_flattening(ns_dtype, adjust_lr_fn):
    conv, flat = _params([(8, 3, 3, 3)])[0], _params([(8, 3, 3, 3)])[0].detach().reshape(8, 27).requires_grad_()
    opts = [Muon([x], lr=0.05, weight_decay=0.01, ns_dtype=ns_dtype, adjust_lr_fn=adjust_lr_fn) for x in (conv, flat)]
    for step in range(3):
        _set_grads([conv], step)
        flat.grad = conv.grad.reshape(8, 27).clone()
        for o in opts:
            o.step()
        assert torch.equal(conv.detach().reshape(8, 27), flat.detach())
        assert conv.shape == (8, 3, 3, 3)


def test_muon_errors_name_the_argument_and_the_parameter():
    w = torch.zeros(3, 4, requires_grad=True)
    for kwargs, match in [
        ({"lr": -1.0}, "invalid lr=-1.0"),
        ({"momentum": -0.1}, "invalid momentum=-0.1"),
        ({"weight_decay": -1}, "invalid weight_decay=-1"),
        ({"eps": 0.0}, "invalid eps=0.0"),
        ({"ns_steps": 100}, "invalid ns_steps=100"),
        ({"ns_steps": 2.5}, "invalid ns_steps=2.5"),
        ({"ns_coefficients": (1.0, 2.0)}, "invalid ns_coefficients"),
        ({"adjust_lr_fn": "rms"}, "invalid adjust_lr_fn='rms'"),
        ({"ns_dtype": torch.int8}, "invalid ns_dtype=torch.int8"),
    ]:
        with pytest.raises(ValueError, match=match):
            Muon([w], **kwargs)
    with pytest.raises(ValueError, match=r"invalid lr=-2.0 \(parameter group 1\)"):
        Muon([{"params": [w]}, {"params": [torch.zeros(2, 2, requires_grad=True)], "lr": -2.0}])
    model = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"parameter 'bias' \(shape \(3,\)\) has 1 dims.*AdamW"):
        Muon(list(model.named_parameters()))
    with pytest.raises(ValueError, match=r"parameter 1 of its group \(shape \(3,\)\)"):
        Muon(model.parameters())


# --- MuonAdam -----------------------------------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.conv = nn.Conv2d(1, 4, 3)
        self.body = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.head = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(()))


def test_muon_takes_hidden_weights_and_conv_filters_not_embeddings_heads_or_vectors():
    net = _Net()
    muon, adam = muon_adam_split(net)
    names = {id(p): n for n, p in net.named_parameters()}
    assert [names[id(p)] for p in muon] == ["conv.weight", "body.0.weight"]
    vectors = ["conv.bias", "body.0.bias", "body.1.weight", "body.1.bias", "head.bias", "scale"]
    assert sorted(names[id(p)] for p in adam) == sorted(["embed.weight", "head.weight", *vectors])
    opt = MuonAdam(net, 0.02, adam_lr=1e-3, ns_dtype="float32")
    assert opt.muon.param_groups[0]["ns_dtype"] == torch.float32
    assert opt.adam is not None and len(opt.adam.param_groups[0]["params"]) == 8


def test_muon_adam_in_bfloat16_on_the_autoencoder_is_torch_muon_and_adamw_bit_for_bit():
    """Records of the ``muon`` method made with torch.optim.Muon reproduce. A narrow autoencoder (its tall and
    wide matrices as in the benchmark's): bfloat16 matmuls are ~60x slower where the CPU emulates them."""
    a, b = (deep_autoencoder(64, (96, 48, 24, 8), generator=torch.Generator().manual_seed(0)) for _ in range(2))
    x = torch.rand(32, 64, generator=torch.Generator().manual_seed(1))
    opt = MuonAdam(a, 0.05, adam_lr=1e-3, momentum=0.95, ns_dtype=torch.bfloat16)
    matrices = [p for p in b.parameters() if p.ndim == 2]
    muon = torch.optim.Muon(matrices, lr=0.05, momentum=0.95, weight_decay=0.0)
    adam = torch.optim.AdamW([p for p in b.parameters() if p.ndim != 2], lr=1e-3, weight_decay=0.0)
    for _ in range(3):
        opt.zero_grad()
        sigmoid_cross_entropy(a(x), x).backward()
        opt.step()
        muon.zero_grad()
        adam.zero_grad()
        sigmoid_cross_entropy(b(x), x).backward()
        muon.step()
        adam.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_ns_dtype_names_and_auto(monkeypatch):
    assert resolve_ns_dtype("bfloat16") == torch.bfloat16
    assert resolve_ns_dtype("float32") == torch.float32
    assert resolve_ns_dtype(torch.float64) == torch.float64
    monkeypatch.setattr("layerwise_bench.core._machine.native_bf16", lambda device="cpu": False)
    assert resolve_ns_dtype("auto") == torch.float32
    assert MuonAdam(_model(), 0.05).muon.param_groups[0]["ns_dtype"] == torch.float32
    monkeypatch.setattr("layerwise_bench.core._machine.native_bf16", lambda device="cpu": True)
    assert resolve_ns_dtype("auto") == torch.bfloat16
    for bad in ("bf16", "int8", "Tensor", 3):
        with pytest.raises(ValueError, match="Invalid ns_dtype"):
            resolve_ns_dtype(bad)  # type: ignore[arg-type]


# --- the registry runs the float32 form where bfloat16 is emulated, and says so -----------------------------


def test_for_machine_is_the_registry_entry_where_bfloat16_is_native(monkeypatch):
    monkeypatch.setattr("layerwise_bench.core._machine.native_bf16", lambda device="cpu": True)
    muon = bench.get_method("muon")
    assert muon.hparams["ns_dtype"] == "bfloat16" and muon.for_machine("cpu") is muon
    adam = bench.get_method("adam")
    monkeypatch.setattr("layerwise_bench.core._machine.native_bf16", lambda device="cpu": False)
    assert adam.for_machine("cpu") is adam  # no fallback: nothing to change


def test_without_native_bfloat16_muon_runs_a_float32_newton_schulz_and_says_so(monkeypatch):
    monkeypatch.setattr("layerwise_bench.core._machine.native_bf16", lambda device="cpu": False)
    registry = bench.get_method("muon")
    m = registry.for_machine("cpu")
    assert m.hparams["ns_dtype"] == "float32" and registry.hparams["ns_dtype"] == "bfloat16"
    assert m.path == "ns_dtype=float32 (not bfloat16): this CPU has no native bfloat16"
    assert m.summary.endswith(m.path) and m.for_machine("cpu") is m
    opt = m.build(_model(), 0.05, **m.hparams)
    assert opt.muon.param_groups[0]["ns_dtype"] == torch.float32
    methods, *_ = prepare_methods(["muon", "adam", "locoprop-m-bf16"], "digits")
    assert [x.hparams.get("ns_dtype", x.hparams.get("inner_dtype")) for x in methods] == ["float32", None, "float32"]
    assert [bool(x.path) for x in methods] == [True, False, True]
    # a --set back to bfloat16 runs bfloat16, and the record does not claim the fallback
    (forced,), *_ = prepare_methods(["muon"], "digits", hparam_overrides={"muon": {"ns_dtype": "bfloat16"}})
    assert forced.hparams["ns_dtype"] == "bfloat16" and forced.path == "" and forced.summary == registry.summary


@pytest.mark.parametrize("name", ["locoprop-m-bf16", "locoprop-m-bf16-t5", "locoprop-m-bf16-t5-c2"])
def test_without_native_bfloat16_the_bf16_locoprop_entries_run_float32(monkeypatch, name):
    monkeypatch.setattr("layerwise_bench.core._machine.native_bf16", lambda device="cpu": False)
    m = bench.get_method(name).for_machine("cpu")
    assert m.hparams["inner_dtype"] == "float32" and "this CPU has no native bfloat16" in m.path
    model = deep_autoencoder(generator=torch.Generator().manual_seed(0))
    assert m.build(model, 1e-5, **m.hparams).inner_dtype == torch.float32
