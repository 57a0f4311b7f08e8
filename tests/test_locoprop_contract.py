"""LocoProp under the standard optimizer contract (``loss.backward(); opt.step()``) and with a closure that calls
``backward()`` (PyTorch's convention, Lightning's automatic optimization), against the no-backward closure, on
every zoo model in float64; gradient accumulation against the concatenated batch; misuse."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import layerwise
from layerwise import LocoProp
from zoo import CASES, Case

EXCLUDE = {"transformer_tied": ["head"]}
SETTINGS = {"lr": 1e-2, "gamma": 3.0, "steps": 2, "inner": "adam"}


def _opt(case: Case, model: nn.Module, **kw: object) -> LocoProp:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the recurrent and MultiheadAttention cases warn of a small share
        return LocoProp(
            model,
            exclude=EXCLUDE.get(case.name, []),
            other_optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2),
            **{**SETTINGS, **kw},  # type: ignore[arg-type]
        )


def _assert_same(a: nn.Module, b: nn.Module, what: str, rtol: float = 1e-11) -> None:
    for (n, p), q in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(p, q[1], rtol=rtol, atol=rtol / 100, msg=lambda m, n=n: f"{what}.{n}: {m}")
    for x, y in zip(a.buffers(), b.buffers(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", ["s", "m"])
@pytest.mark.parametrize("name", list(CASES))
def test_backward_then_step_and_a_backward_closure_equal_the_no_backward_closure(name: str, variant: str) -> None:
    case = CASES[name]
    fast, standard, closure = case.build(), case.build(), case.build()
    x, y = case.batch()
    opts = [_opt(case, m, variant=variant) for m in (fast, standard, closure)]
    for _ in range(2):  # the second step also checks that the first left nothing behind
        loss = opts[0].step(lambda: case.loss(fast(x), y))

        opts[1].zero_grad()
        case.loss(standard(x), y).backward()
        assert opts[1].step() is None

        def lightning_style() -> Tensor:  # what Lightning's automatic optimization passes
            opts[2].zero_grad()
            out = case.loss(closure(x), y)
            out.backward()
            return out.detach()

        torch.testing.assert_close(opts[2].step(lightning_style), loss, rtol=0, atol=0)
    _assert_same(standard, fast, f"{name} backward+step")
    _assert_same(closure, fast, f"{name} backward closure")
    assert not any(torch.equal(p, q) for p, q in zip(fast.parameters(), case.build().parameters(), strict=True))


@pytest.mark.parametrize("solver", ["iterative", "precond"])
@pytest.mark.parametrize("name", ["transformer", "vgg", "mixer"])
def test_accumulated_micro_batches_give_the_step_of_the_concatenated_batch(name: str, solver: str) -> None:
    case = CASES[name]
    whole, parts = case.build(), case.build()
    kw = {"solver": solver, "damping": 1.0, "steps": 1, "lr": 0.5} if solver == "precond" else {}
    ref, opt = _opt(case, whole, **kw), _opt(case, parts, **kw)
    x, y = case.batch()
    ref.step(lambda: case.loss(whole(x), y))
    opt.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):
        (case.loss(parts(x[half]), y[half]) / 2).backward()
    opt.step()
    # the halves' sums round differently from the whole's; inner Adam divides by √v and magnifies it to ~1e-9
    _assert_same(parts, whole, f"{name} accumulated", rtol=1e-8)


def test_a_forward_without_backward_and_a_zero_grad_leave_nothing_behind() -> None:
    case = CASES["resnet"]
    a, b = case.build(), case.build()
    opt_a, opt_b = _opt(case, a), _opt(case, b)
    x, y = case.batch()
    other = torch.randn_like(x)
    opt_a.step(lambda: case.loss(a(x), y))
    b(other).sum()  # an evaluation with gradients on: never backpropagated
    case.loss(b(other), y).backward()
    opt_b.zero_grad()  # drops that backward pass too
    case.loss(b(x), y).backward()
    opt_b.step()
    with torch.no_grad():  # BatchNorm's statistics saw the extra forwards: compare the parameters only
        for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
            if "bn" not in n and "norm" not in n:
                torch.testing.assert_close(p, q, rtol=1e-11, atol=1e-13, msg=lambda m, n=n: f"{n}: {m}")


def test_misuse_of_the_standard_contract_is_named_and_changes_nothing() -> None:
    case = CASES["vgg"]
    model = case.build()
    before = copy.deepcopy(model.state_dict())
    opt = _opt(case, model)
    x, y = case.batch()
    with pytest.raises(RuntimeError, match=r"found no backward pass .* call loss.backward\(\) first"):
        opt.step()
    with torch.no_grad():
        model(x)
    with pytest.raises(RuntimeError, match="found no backward pass"):
        opt.step()
    with pytest.raises(ValueError, match="no autograd graph and ran no backward pass"):
        opt.step(lambda: case.loss(model(x), y).detach())
    conv = CASES["resnet"]
    rmodel = conv.build()
    rbefore = copy.deepcopy(rmodel.state_dict())
    ropt = _opt(conv, rmodel)
    rx, ry = conv.batch()
    conv.loss(rmodel(rx), ry).backward()
    conv.loss(rmodel(F.interpolate(rx, scale_factor=2.0)), ry).backward()  # another spatial size
    with pytest.raises(ValueError, match="do not concatenate into one batch"):
        ropt.step()
    nan = case.loss(model(x), y) * float("nan")
    nan.backward()
    with pytest.raises(FloatingPointError, match="holds NaN/inf; no parameter was changed"):
        opt.step()
    for m, b in ((model, before), (rmodel, rbefore)):
        for n, p in m.named_parameters():
            assert torch.equal(p, b[n]), n


def test_copies_and_pickles_of_the_model_carry_no_live_hook() -> None:
    case = CASES["vgg"]
    model = case.build()
    opt = _opt(case, model)
    x, y = case.batch()
    twin = copy.deepcopy(model)
    case.loss(twin(x), y).backward()  # the copy's backward is not this optimizer's batch
    with pytest.raises(RuntimeError, match="found no backward pass"):
        opt.step()
    restored = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(restored(x), model(x))


def test_a_newer_optimizer_on_the_same_model_takes_the_capture_over() -> None:
    case = CASES["vgg"]
    model = case.build()
    old, new = _opt(case, model), _opt(case, model)
    x, y = case.batch()
    case.loss(model(x), y).backward()
    with pytest.raises(RuntimeError, match="found no backward pass"):
        old.step()
    new.step()
    assert all(not got for got in old._capture.pending)


def test_a_grad_scaler_step_is_the_unscaled_step_skips_on_inf_and_refuses_an_earlier_unscale() -> None:
    case = CASES["vgg_bn"]
    a, b = case.build(), case.build()
    plain, scaled = _opt(case, a), _opt(case, b)
    x, y = case.batch()
    case.loss(a(x), y).backward()
    plain.step()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaled.zero_grad()
    scaler.scale(case.loss(b(x), y)).backward()
    scaler.step(scaled)
    scaler.update()
    _assert_same(b, a, "GradScaler")

    params = {n: p.detach().clone() for n, p in b.named_parameters()}
    state = copy.deepcopy(scaled.state_dict())
    scaled.zero_grad()
    scaler.scale(case.loss(b(x), y) * float("inf")).backward()
    scaler.step(scaled)  # skipped
    scaler.update()
    assert scaler.get_scale() == 512.0
    scaled.zero_grad()
    scaler.scale(case.loss(b(x), y)).backward()
    scaler.unscale_(scaled)
    with pytest.raises(RuntimeError, match=r"scaler.unscale_\(opt\) was called before scaler.step\(opt\)"):
        scaler.step(scaled)
    for n, p in b.named_parameters():
        assert torch.equal(p, params[n]), n
    torch.testing.assert_close(scaled.state_dict()["other_optimizer"], state["other_optimizer"], rtol=0, atol=0)


def _train_two_steps(path: str) -> list[object]:
    """Two steps on ``path``; weak references to the parameters of a model and optimizer then dropped."""
    import weakref

    case = CASES["resnet"]
    model = case.build()
    opt = _opt(case, model, solver="precond", steps=1, damping=1.0, lr=1.0)
    x, y = case.batch()

    def closure() -> Tensor:
        opt.zero_grad()
        loss = case.loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(2):
        if path == "fast":
            opt.step(lambda: case.loss(model(x), y))
        elif path == "standard":
            closure()
            opt.step()
        else:
            opt.step(closure)
    return [weakref.ref(p) for p in model.parameters()]


@pytest.mark.parametrize("path", ["fast", "backward closure", "standard"])
def test_a_step_keeps_no_graph_alive(path: str) -> None:
    """Once the model and the optimizer are dropped, their parameters are freed: no hook holds a graph (a tensor
    hook that references its own tensor is a cycle Python's collector cannot see, and leaked a batch per step)."""
    import gc

    alive = _train_two_steps(path)
    gc.collect()
    assert all(r() is None for r in alive)  # type: ignore[operator]


@pytest.mark.parametrize("how", ["backward", "weighted_loss", "closure", "measure"])
def test_telemetry_and_a_gradient_weighting_leave_the_step_unchanged(how: str) -> None:
    """The per-term backward passes of telemetry and GradNorm are measurements: LocoProp's hooks skip them, and
    ``layerwise.backward`` makes the update one backward pass that LocoProp reads. Each way of stepping with
    two loss terms (a residual CNN with BatchNorm and in-place ReLUs) equals the plain total's backward."""
    case = CASES["resnet"]
    plain, measured = case.build(), case.build()
    x, y = case.batch()
    opts = [_opt(case, m) for m in (plain, measured)]
    last = list(measured.parameters())[-2:]  # the head: both terms reach it
    tel = layerwise.GradientTelemetry({"all": measured, "head": last}, every=1)

    def terms(model: nn.Module) -> dict[str, Tensor]:
        out = model(x)
        return {"fit": case.loss(out, y), "small": 1e-2 * out.pow(2).mean()}

    for _ in range(2):
        opts[0].zero_grad()
        sum(terms(plain).values()).backward()  # type: ignore[union-attr]
        opts[0].step()
        opts[1].zero_grad()
        if how == "backward":
            layerwise.backward(terms(measured), params=list(measured.parameters()), telemetry=tel)
        elif how == "weighted_loss":
            layerwise.weighted_loss(terms(measured), params=list(measured.parameters()), telemetry=tel).backward()
        elif how == "measure":
            losses = terms(measured)
            tel.measure(losses)
            sum(losses.values()).backward()  # type: ignore[union-attr]
        if how == "closure":

            def closure() -> Tensor:
                opts[1].zero_grad()
                return layerwise.backward(terms(measured), params=list(measured.parameters()), telemetry=tel)

            opts[1].step(closure)
        else:
            opts[1].step()
    _assert_same(plain, measured, how)
    assert len(tel.history) == 2


def test_a_closure_that_runs_no_layer_steps_on_the_backward_passes_before_it() -> None:
    """Lightning's manual optimization hands step() a closure that does nothing: the batch is then the backward
    passes since the last step, as for step() without a closure; with none, the error names the fix."""
    case = CASES["resnet"]
    a, b = case.build(), case.build()
    oa, ob = _opt(case, a), _opt(case, b)
    x, y = case.batch()
    for model, opt in ((a, oa), (b, ob)):
        opt.zero_grad()
        case.loss(model(x), y).backward()
    oa.step()
    assert ob.step(lambda: None) is None
    _assert_same(a, b, "do-nothing closure")
    with pytest.raises(RuntimeError, match=r"None of LocoProp's layers ran"):
        ob.step(lambda: None)
