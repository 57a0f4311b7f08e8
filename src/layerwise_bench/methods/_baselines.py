"""The baselines of the LocoProp deep-autoencoder benchmark: five first-order, two second-order (Shampoo from
``pytorch-optimizer``'s ``ScalableShampoo``; K-FAC is layerwise's own with the Bernoulli Fisher)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerwise.optim import KFAC

from ..core._method import LossFn, Method
from ..core._registry import register_method

__all__: list[str] = []


def _torch(cls: Callable[..., torch.optim.Optimizer]) -> Callable[..., torch.optim.Optimizer]:
    """The build of a ``torch.optim`` optimizer over every parameter of the model."""
    return lambda model, lr, **kw: cls(model.parameters(), lr=lr, **kw)


_sgd, _adagrad, _rmsprop, _adam, _adamw = map(
    _torch, (torch.optim.SGD, torch.optim.Adagrad, torch.optim.RMSprop, torch.optim.Adam, torch.optim.AdamW)
)


def pytorch_optimizer(name: str, method: str) -> Any:
    """``pytorch_optimizer.<name>``; ImportError naming ``method`` and the extra to install where it is missing."""
    try:
        import pytorch_optimizer
    except ImportError as exc:
        raise ImportError(f"method {method!r} needs pytorch-optimizer: pip install 'layerwise[second-order]'") from exc
    return getattr(pytorch_optimizer, name)


def _shampoo(model: nn.Module, lr: float, **kw: Any) -> torch.optim.Optimizer:
    shampoo = pytorch_optimizer("ScalableShampoo", "shampoo")  # first: its ImportError names the extra
    from pytorch_optimizer.optimizer.utils.graft import LayerWiseGrafting

    return shampoo(model.parameters(), lr=lr, graft_type=LayerWiseGrafting.RMSPROP, **kw)


def _kfac(model: nn.Module, lr: float, **kw: Any) -> torch.optim.Optimizer:
    return KFAC(model, lr=lr, **kw)


def _kfac_closure(opt: torch.optim.Optimizer, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, target: torch.Tensor):
    if not isinstance(opt, KFAC):
        raise TypeError(f"the K-FAC closure needs a KFAC optimizer, found {type(opt).__name__}.")

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, target)
        opt.backward(loss, out)
        return loss

    return closure


for _m in [
    Method("sgd", "SGD", _sgd, 1e-3),
    Method("momentum", "SGD with heavy-ball momentum 0.9", _sgd, 1e-4, {"momentum": 0.9}),
    Method("adagrad", "AdaGrad", _adagrad, 1e-2),
    Method("rmsprop", "RMSProp (decay 0.9, eps 1e-8)", _rmsprop, 1e-4, {"alpha": 0.9, "eps": 1e-8}),
    Method("adam", "Adam (0.9, 0.999, eps 1e-8)", _adam, 1e-3),
    Method("adamw", "AdamW (0.9, 0.999), decoupled weight decay 0.01 (torch's default)", _adamw, 1e-3),
    Method("nesterov", "SGD with Nesterov momentum 0.9", _sgd, 1e-2, {"momentum": 0.9, "nesterov": True}),
    Method(
        "shampoo",
        "Scalable Shampoo (pytorch-optimizer), RMSProp grafting, roots every 20 steps",
        _shampoo,
        1e-3,
        {"preconditioning_compute_steps": 20, "start_preconditioning_step": 20, "block_size": 1024},
        extra="second-order",
        requires=("pytorch_optimizer",),
    ),
    Method(
        "kfac",
        "K-FAC, Bernoulli (sigmoid cross-entropy) MC Fisher, damping 10, inverses every 20 steps",
        _kfac,
        0.1,
        {"damping": 10.0, "inv_every": 20, "likelihood": "bernoulli"},
        closure=_kfac_closure,
    ),
]:
    register_method(_m)
