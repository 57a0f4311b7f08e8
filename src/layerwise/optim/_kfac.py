"""K-FAC: Kronecker-factored approximate curvature (Martens & Grosse, ICML 2015).

For a linear layer ``s = W a`` (bias folded into ``W`` with a constant 1 appended to ``a``), the
Fisher block is approximated by ``A ⊗ G`` with ``A = E[a aᵀ]`` and ``G = E[g gᵀ]``, where ``g`` is
the gradient of the per-example negative log-likelihood w.r.t. ``s`` at a target SAMPLED from the
model's own predictive distribution (the true Fisher, MC estimate), not the data target (the
empirical Fisher). With factored Tikhonov damping (π-rule) the update is

    ΔW = -lr · (G + (√λ/π) I)⁻¹ ∇W L (A + π√λ I)⁻¹,   π = sqrt((tr A / dim A) / (tr G / dim G)),

followed by heavy-ball momentum. Factors are exponential moving averages, inverses are refreshed
every ``inv_every`` steps.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.autograd.graph import GradientEdge, get_gradient_edge
from torch.nn import functional as F

from .._amp import grad_scaler_factor
from .._measuring import is_measuring, watch
from .._owners import parameter_owners

__all__ = ["KFAC", "Likelihood"]

Likelihood = Literal["bernoulli", "categorical", "gaussian", "empirical"]
_LIKELIHOODS: tuple[str, ...] = ("bernoulli", "categorical", "gaussian", "empirical")


@dataclass
class _Call:
    """One layer call on a statistics step: input a (and its version counter then), output's gradient edge."""

    inputs: torch.Tensor
    version: int
    output: GradientEdge


@dataclass
class _Kept:
    """One layer call of the standard contract: input a, and g from the user's backward pass (autograd itself
    refuses a backward after a Linear's input was changed in place)."""

    inputs: torch.Tensor
    grad: torch.Tensor


def _reject_shared(model: nn.Module, layers: list[nn.Linear]) -> None:
    """A Linear weight also held by another module (tied weights) has no Kronecker block of its own."""
    owners = parameter_owners(model)
    for layer in (m for m in layers if m.weight.requires_grad):
        held = owners.get(id(layer.weight), [])
        mine = [n for n in held if model.get_submodule(n) is layer]
        names = [n for n in held if model.get_submodule(n) is not layer]
        if names:
            raise ValueError(
                f"KFAC: the weight of nn.Linear {mine[0]!r} is shared with {names[0]!r} (tied "
                "weights); K-FAC's Kronecker factors describe one use. Untie them, or freeze the shared "
                "weight and train it with another optimizer."
            )


#: autograd node of a standard loss -> the likelihood whose Fisher matches it
_LOSS_LIKELIHOOD = {
    "NllLossBackward0": "categorical",  # F.cross_entropy, nn.CrossEntropyLoss, F.nll_loss
    "MseLossBackward0": "gaussian",  # F.mse_loss
    "BinaryCrossEntropyWithLogitsBackward0": "bernoulli",
}


def _warn_if_likelihood_mismatch(likelihood: str, loss: torch.Tensor) -> None:
    """Warn when ``loss`` is a standard loss whose Fisher is not ``likelihood`` (looked for within a few
    autograd nodes of the loss, e.g. under a ``.mean()`` or a sum of terms)."""
    if likelihood == "empirical":
        return
    frontier, seen = [loss.grad_fn], 0
    for _ in range(4):
        found = {
            _LOSS_LIKELIHOOD[type(n).__name__]
            for n in frontier
            if n is not None and type(n).__name__ in _LOSS_LIKELIHOOD
        }
        if found:
            if likelihood not in found:
                want = " or ".join(repr(f) for f in sorted(found))
                warnings.warn(
                    f"KFAC(likelihood={likelihood!r}) samples the Fisher of a {likelihood} output, but the loss "
                    f"is the negative log-likelihood of a {want} one (cross-entropy: 'categorical', mse_loss: "
                    "'gaussian', BCE with logits: 'bernoulli'), so the curvature does not match the loss. Pass "
                    f"likelihood={sorted(found)[0]!r} (or 'empirical').",
                    UserWarning,
                    stacklevel=3,
                )
            return
        frontier = [m for n in frontier if n is not None for m, _ in n.next_functions]
        seen += len(frontier)
        if not frontier or seen > 64:
            return


def _sampled_nll(likelihood: str, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Batch-mean NLL (summed over outputs) at a target drawn from the model's distribution."""
    with torch.no_grad():
        if likelihood == "bernoulli":
            probs = torch.sigmoid(logits)
            target = (torch.rand(probs.shape, generator=generator, device=generator.device) < probs).to(logits.dtype)
        elif likelihood == "categorical":  # classes on the last dimension; any leading (batch, position) dims
            probs = torch.softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
            target = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            noise = torch.randn(logits.shape, generator=generator, device=generator.device)
            target = logits + noise.to(logits.dtype)
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / logits.shape[0]
    if likelihood == "categorical":
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target, reduction="sum") / logits.shape[0]
    return 0.5 * (logits - target).pow(2).sum() / logits.shape[0]


class KFAC(torch.optim.Optimizer):
    """K-FAC for the ``nn.Linear`` layers of ``model``, a ``torch.optim.Optimizer``.

    Args:
        model: the network; every trainable parameter must belong to an ``nn.Linear``.
        lr: learning rate (default 1e-3).
        damping: Tikhonov damping λ (default 1e-3).
        momentum: heavy-ball momentum on the preconditioned gradient (default 0.9).
        ema_decay: decay of the moving averages of A and G (default 0.95).
        cov_every: refresh the factors every this many steps (default 1).
        inv_every: recompute the damped inverses every this many steps (default 20).
        likelihood: output distribution whose Fisher is used: ``"bernoulli"`` (sigmoid
            cross-entropy), ``"categorical"`` (softmax cross-entropy), ``"gaussian"`` (squared
            error), or ``"empirical"`` (gradients at the data targets: the empirical Fisher).
        seed: seed of the generator that samples Fisher targets (saved in ``state_dict``).

    Use: the closure must call :meth:`backward` with the loss AND the model's output::

        def closure():
            opt.zero_grad()
            logits = model(x)
            loss = loss_fn(logits, target)
            opt.backward(loss, logits)
            return loss
        opt.step(closure)

    With ``likelihood="empirical"`` it also steps as any optimizer, ``loss.backward(); opt.step()``: hooks keep
    each layer's input and output gradient from the backward passes since the last step (several: gradient
    accumulation, concatenated as one batch).
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        *,
        damping: float = 1e-3,
        momentum: float = 0.9,
        ema_decay: float = 0.95,
        cov_every: int = 1,
        inv_every: int = 20,
        weight_decay: float = 0.0,
        likelihood: Likelihood = "bernoulli",
        seed: int = 0,
    ) -> None:
        for name, value, ok in [
            ("lr", lr, lr >= 0),
            ("damping", damping, damping > 0),
            ("momentum", momentum, 0 <= momentum < 1),
            ("ema_decay", ema_decay, 0 <= ema_decay < 1),
            ("weight_decay", weight_decay, weight_decay >= 0),
        ]:
            if not ok:
                raise ValueError(f"Invalid {name}={value!r} for KFAC: see the docstring for the valid range.")
        for name, value in [("cov_every", cov_every), ("inv_every", inv_every)]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {name}={value!r} for KFAC. Must be an integer >= 1.")
        if likelihood not in _LIKELIHOODS:
            raise ValueError(f"Invalid likelihood={likelihood!r}. Expected one of {list(_LIKELIHOODS)}.")
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        _reject_shared(model, self.layers)
        covered = {id(p) for m in self.layers for p in m.parameters()}
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in covered:
                raise ValueError(
                    f"KFAC handles nn.Linear layers only; parameter {name!r} belongs to "
                    "another kind of module and would be left untrained. Give it to a "
                    "separate optimizer or freeze it (requires_grad_(False))."
                )
        if not self.layers:
            raise ValueError("KFAC found no nn.Linear layer in the model.")
        params = [p for m in self.layers for p in m.parameters()]
        defaults = dict(lr=lr, damping=damping, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.ema_decay, self.cov_every, self.inv_every = ema_decay, cov_every, inv_every
        self.likelihood = likelihood
        self._likelihood_checked = False
        self.seed = seed
        self._step = 0
        self._generator: torch.Generator | None = None
        self._capture = False
        self._records: dict[nn.Module, _Call] = {}
        self._pending: dict[nn.Module, list[_Kept]] = {}  # (a, g) of the user's backward passes (standard contract)
        self._measured: set[nn.Module] = set()
        self._names = {m: n for n, m in model.named_modules()}
        self._handles = [m.register_forward_hook(self._hook) for m in self.layers]
        if likelihood == "empirical":
            watch([p for m in self.layers for p in m.parameters()], self)

    def __repr__(self) -> str:
        g = self.param_groups[0]
        return (
            f"KFAC(lr={g['lr']}, damping={g['damping']}, momentum={g['momentum']}, "
            f"ema_decay={self.ema_decay}, cov_every={self.cov_every}, inv_every={self.inv_every}, "
            f"weight_decay={g['weight_decay']}, likelihood={self.likelihood!r}, seed={self.seed})"
        )

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor | None:
        if (
            not self._capture
            and self.likelihood == "empirical"
            and self._step % self.cov_every == 0
            and torch.is_grad_enabled()
            and output.requires_grad
        ):
            # the standard contract: the user's own backward files (a, g) for the next step(); the model
            # continues with a copy, so an in-place op after the layer leaves g that of the layer's output
            a, pending = inputs[0].detach(), self._pending.setdefault(module, [])
            output.register_hook(lambda g: None if is_measuring() else pending.append(_Kept(a, g)))
            return output.clone()
        if self._capture and torch.is_grad_enabled():
            if module in self._records:
                raise RuntimeError(
                    f"KFAC: layer {self._name(module)!r} ran twice in one forward pass; its Kronecker "
                    "factors need one call per step. Train a shared layer with another optimizer."
                )
            # The gradient edge is taken now: an in-place op after the layer (nn.ReLU(inplace=True)) must not
            # turn G into the statistics of the activation's output.
            self._records[module] = _Call(inputs[0].detach(), inputs[0]._version, get_gradient_edge(output))
        return None

    def _name(self, module: nn.Module) -> str:
        return self._names.get(module, type(module).__name__)

    def _gen(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def backward(self, loss: torch.Tensor, output: torch.Tensor) -> None:
        """Gather the curvature factors (when due) from ``output``, then ``loss.backward()``."""
        if not self._likelihood_checked:
            self._likelihood_checked = True
            _warn_if_likelihood_mismatch(self.likelihood, loss)
        if self._records:
            layers = list(self._records)
            for m in layers:
                call = self._records[m]
                if call.inputs._version != call.version:
                    raise RuntimeError(
                        f"KFAC: the input of layer {self._name(m)!r} was modified in place after the "
                        "layer read it (x.add_(...), x += ..., an inplace=True module), so its factor A "
                        "would be wrong. Make that operation out-of-place."
                    )
            outs = [self._records[m].output for m in layers]
            if self.likelihood == "empirical":
                fisher_loss = loss
            else:
                fisher_loss = _sampled_nll(self.likelihood, output, self._gen(output.device))
            grads = torch.autograd.grad(fisher_loss, outs, retain_graph=True, allow_unused=True)
            for m, g in zip(layers, grads, strict=True):
                if g is not None:
                    self._update_factors(m, self._records[m].inputs, g)
            self._measured.update(layers)
            self._records.clear()
        loss.backward()

    @torch.no_grad()
    def _update_factors(self, module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> None:
        layer = cast(nn.Linear, module)  # hooks are registered on nn.Linear layers only
        dtype = layer.weight.dtype  # under autocast a and g arrive in bf16/fp16: the factors are the weight's
        a = a.reshape(-1, a.shape[-1]).to(dtype)
        g = g.reshape(-1, g.shape[-1]).to(dtype)
        n = a.shape[0]
        if layer.bias is not None:
            a = torch.cat([a, a.new_ones(n, 1)], dim=1)
        a_new = a.T @ a / n
        g_new = (g.T @ g) * n  # g is the gradient of a batch MEAN: each row carries 1/n
        st = self.state[layer.weight]
        if "A" not in st:
            st["A"], st["G"] = a_new, g_new
        else:
            st["A"].mul_(self.ema_decay).add_(a_new, alpha=1 - self.ema_decay)
            st["G"].mul_(self.ema_decay).add_(g_new, alpha=1 - self.ema_decay)

    @torch.no_grad()
    def _update_inverses(self, damping: float) -> None:
        for layer in self.layers:
            st = self.state[layer.weight]
            if "A" not in st:
                continue
            a, g = st["A"], st["G"]
            if not (torch.isfinite(a).all() and torch.isfinite(g).all()):
                raise FloatingPointError(
                    "KFAC: the curvature factors are not finite (the run diverged); lower lr or raise damping."
                )
            pi = math.sqrt(
                max(float(torch.trace(a)) / a.shape[0], 1e-30) / max(float(torch.trace(g)) / g.shape[0], 1e-30)
            )
            root = math.sqrt(damping)
            eye_a = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
            eye_g = torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
            st["A_inv"] = torch.cholesky_inverse(torch.linalg.cholesky(a + pi * root * eye_a))
            st["G_inv"] = torch.cholesky_inverse(torch.linalg.cholesky(g + root / pi * eye_g))

    # torch.amp.GradScaler.step sets grad_scale and found_inf instead of unscaling: K-FAC unscales .grad and
    # the layer-output gradients its factors are built from, and skips the step on inf.
    _step_supports_amp_scaling = True

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """One K-FAC step: ``opt.step(closure)`` with a closure that calls :meth:`backward`, or, with
        ``likelihood="empirical"``, ``loss.backward(); opt.step()`` (the factors from the backward passes since
        the last step, several concatenated as one batch)."""
        unscale = self._grad_scaler_factor()
        if unscale is not None:
            if bool(self.found_inf):  # type: ignore[attr-defined]
                self._clear_pending()  # the GradScaler skips this step: nothing changes, as for torch's optimizers
                return None
            with torch.no_grad():
                for p in (p for group in self.param_groups for p in group["params"] if p.grad is not None):
                    p.grad.mul_(unscale)  # what scaler.unscale_ would have done
                for calls in self._pending.values():
                    for call in calls:
                        call.grad = call.grad * unscale
        if closure is None or self.likelihood == "empirical":
            # the empirical Fisher needs no output: a closure that calls loss.backward() (PyTorch's convention,
            # Lightning's) or opt.backward() files (a, g) through the hooks, as a backward before step() does
            with torch.enable_grad():
                loss = None if closure is None else closure()
            self._factors_from_pending()
        else:
            self._capture = self._step % self.cov_every == 0
            self._measured.clear()
            self._clear_pending()
            try:
                with torch.enable_grad():
                    loss = closure()
                self._check_measured()
            finally:
                self._capture = False
                self._records.clear()
        group = self.param_groups[0]
        if self._step % self.inv_every == 0:
            self._update_inverses(group["damping"])
        with torch.no_grad():
            for layer in self.layers:
                w, b = layer.weight, layer.bias
                if w.grad is None:
                    continue
                st = self.state[w]
                grad = w.grad
                if b is not None:
                    bias_grad = b.grad if b.grad is not None else torch.zeros_like(b)
                    grad = torch.cat([grad, bias_grad.unsqueeze(1)], dim=1)
                if group["weight_decay"]:
                    p = w if b is None else torch.cat([w, b.unsqueeze(1)], dim=1)
                    grad = grad + group["weight_decay"] * p
                if "A_inv" in st:
                    grad = st["G_inv"] @ grad @ st["A_inv"]
                buf = st.get("momentum")
                if buf is None:
                    buf = st["momentum"] = grad.clone()
                else:
                    buf.mul_(group["momentum"]).add_(grad)
                w.add_(buf[:, : w.shape[1]], alpha=-group["lr"])
                if b is not None:
                    b.add_(buf[:, -1], alpha=-group["lr"])
        self._step += 1
        return loss

    def _grad_scaler_factor(self) -> torch.Tensor | None:
        try:
            return grad_scaler_factor(
                self,
                "KFAC",
                "Drop scaler.unscale_(opt): K-FAC unscales the gradients itself (to clip, clip after its step "
                "or raise damping).",
            )
        except RuntimeError:
            self._clear_pending()
            raise

    def _factors_from_pending(self) -> None:
        """The standard contract's statistics step: the factors from the kept ``(a, g)``, every layer checked."""
        if self.likelihood != "empirical":
            raise ValueError(
                f"KFAC.step() without a closure: likelihood={self.likelihood!r} samples Fisher targets from the "
                "model's output, which a plain loss.backward() does not hand to the optimizer. Use a closure that "
                "calls opt.backward(loss, output), or likelihood='empirical' (the Fisher at the data targets)."
            )
        if self._step % self.cov_every:
            return
        self._measured = set()
        for m, calls in self._pending.items():
            if not calls:
                continue
            a = torch.cat([c.inputs.reshape(-1, c.inputs.shape[-1]) for c in calls])
            g = torch.cat([c.grad.reshape(-1, c.grad.shape[-1]) for c in calls])
            self._update_factors(m, a, g)
            self._measured.add(m)
        self._clear_pending()
        self._capture = True  # so that _check_measured checks this statistics step
        try:
            self._check_measured()
        finally:
            self._capture = False

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients and the statistics kept from backward passes since the last step."""
        super().zero_grad(set_to_none)
        self._clear_pending()

    def _clear_pending(self) -> None:
        for calls in self._pending.values():  # emptied in place: a forward pass already run files into them
            calls.clear()

    def _check_measured(self) -> None:
        """On a statistics step, every layer with a gradient must have had its factors gathered."""
        if not self._capture:
            return
        if self._records:
            raise RuntimeError(
                "KFAC: the closure ran the model but did not call opt.backward(loss, output) (a plain "
                "loss.backward() skips the curvature factors and K-FAC would be momentum SGD). Call "
                "opt.backward(loss, output) in the closure, or use likelihood='empirical' (then any backward "
                "works, a framework's too); no parameter was changed."
            )
        for layer in self.layers:
            if layer.weight.grad is not None and layer not in self._measured and "A" not in self.state[layer.weight]:
                raise RuntimeError(
                    f"KFAC: layer {self._name(layer)!r} has a gradient but its forward was never called "
                    "as a module (nn.MultiheadAttention reads out_proj.weight directly), so it has no "
                    "Kronecker factors. Freeze it or train it with another optimizer; no parameter was "
                    "changed."
                )

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["kfac"] = {"step": self._step, "rng": None if self._generator is None else self._generator.get_state()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("kfac", {"step": 0, "rng": None})
        super().load_state_dict(state_dict)
        self._step = int(extra["step"])
        if extra["rng"] is not None:
            device = next(iter(self.layers[0].parameters())).device
            self._gen(device).set_state(extra["rng"].cpu())  # generator states are CPU byte tensors
        else:
            self._generator = None
