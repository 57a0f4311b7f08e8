"""Muon for any model (``torch.optim.Muon`` with a Newton–Schulz dtype and conv filters as matrices), and
:class:`MuonAdam`, Muon on the matrices with AdamW on the rest as one ``torch.optim.Optimizer``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from layerwise.optim import NS_COEFFICIENTS, newton_schulz
from layerwise.optim import NS_EPS as EPS

__all__ = ["Muon", "MuonAdam", "muon_adam_split", "resolve_ns_dtype"]

NS_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)


def _lr_ratio(adjust_lr_fn: str | None, rows: int, cols: int) -> float:
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    return 0.2 * math.sqrt(max(rows, cols))  # "match_rms_adamw"


def _name(group: dict[str, Any], i: int, p: torch.Tensor) -> str:
    names = group.get("param_names")
    label = repr(names[i]) if names else f"{i} of its group"
    return f"parameter {label} (shape {tuple(p.shape)})"


def _loss_of(closure: Callable[[], torch.Tensor] | None) -> torch.Tensor | None:
    """What ``step(closure)`` returns: the closure's loss, evaluated with gradients on (None without one)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class Muon(torch.optim.Optimizer):
    """``torch.optim.Muon`` with ``ns_dtype`` (the Newton–Schulz dtype; bfloat16 is torch's, bit for bit) and conv
    filters orthogonalised as ``(out, in·kh·kw)``: ``p ← p·(1 - lr·wd) - lr·ratio·NS(g + μ·(buf - g))``, with
    ``ratio = sqrt(max(1, rows/cols))`` (or ``0.2·sqrt(max(rows, cols))``, ``adjust_lr_fn="match_rms_adamw"``)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = EPS,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        ns_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": tuple(ns_coefficients),
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
            "ns_dtype": ns_dtype,
        }
        self._check(defaults, "")
        super().__init__(params, defaults)
        for gi, group in enumerate(self.param_groups):
            self._check(group, f" (parameter group {gi})")
            for i, p in enumerate(group["params"]):
                if p.ndim < 2:
                    raise ValueError(
                        f"Muon: {_name(group, i, p)} has {p.ndim} dims; Muon orthogonalises matrices and conv "
                        "filters (2 or more dims). Give biases, norms and scalars to AdamW (MuonAdam does)."
                    )
                if torch.is_complex(p):
                    raise ValueError(f"Muon: {_name(group, i, p)} is complex; Muon takes real parameters.")

    @staticmethod
    def _check(g: dict[str, Any], where: str) -> None:
        lr = g["lr"]
        if isinstance(lr, torch.Tensor) and lr.numel() != 1:
            raise ValueError(f"Muon: invalid lr{where}: a tensor lr must have 1 element, found {lr.numel()}.")
        for key in ("lr", "weight_decay", "momentum"):
            if not float(g[key]) >= 0.0:
                raise ValueError(f"Muon: invalid {key}={g[key]}{where}; expected a number >= 0.")
        if not float(g["eps"]) > 0.0:
            raise ValueError(f"Muon: invalid eps={g['eps']}{where}; expected a number > 0.")
        steps = g["ns_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps < 100:
            raise ValueError(f"Muon: invalid ns_steps={steps!r}{where}; expected an integer in [0, 100).")
        if len(g["ns_coefficients"]) != 3:
            raise ValueError(
                f"Muon: invalid ns_coefficients={g['ns_coefficients']!r}{where}; expected three numbers (a, b, c)."
            )
        if g["adjust_lr_fn"] not in (None, "original", "match_rms_adamw"):
            raise ValueError(
                f"Muon: invalid adjust_lr_fn={g['adjust_lr_fn']!r}{where}; expected None, 'original' or "
                "'match_rms_adamw'."
            )
        if g["ns_dtype"] not in NS_DTYPES:
            raise ValueError(
                f"Muon: invalid ns_dtype={g['ns_dtype']!r}{where}; expected one of "
                f"{', '.join(map(str, NS_DTYPES))} (torch.float32 where the CPU has no native bfloat16)."
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # a state_dict of torch.optim.Muon has no ns_dtype: it ran bfloat16
            group.setdefault("ns_dtype", torch.bfloat16)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """One Muon step on every parameter with a gradient; ``closure`` re-evaluates the loss."""
        loss = _loss_of(closure)
        for group in self.param_groups:
            lr = float(group["lr"])
            momentum, wd = group["momentum"], group["weight_decay"]
            for i, p in enumerate(group["params"]):
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise RuntimeError(f"Muon: {_name(group, i, p)} has a sparse gradient; Muon needs dense ones.")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                rows = update.size(0)
                matrix = update if update.ndim == 2 else update.reshape(rows, -1)
                ortho = newton_schulz(
                    matrix, group["ns_coefficients"], group["ns_steps"], group["eps"], group["ns_dtype"]
                )
                ratio = _lr_ratio(group["adjust_lr_fn"], rows, matrix.size(1))
                p.mul_(1 - lr * wd)
                p.add_(ortho if p.ndim == 2 else ortho.reshape(p.shape), alpha=-(lr * ratio))
        return loss


def muon_adam_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The trainable parameters of ``model`` that Muon takes (2 or more dims, outside ``nn.Embedding`` and a module
    named ``head``), and the others, for AdamW, in ``model.parameters()`` order."""
    to_adam: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) or name.rsplit(".", 1)[-1] == "head":
            to_adam.update(id(p) for p in module.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    muon = [p for p in params if p.ndim >= 2 and id(p) not in to_adam]
    muon_ids = {id(p) for p in muon}
    return muon, [p for p in params if id(p) not in muon_ids]


def resolve_ns_dtype(ns_dtype: torch.dtype | str, device: torch.device | str = "cpu") -> torch.dtype:
    """``ns_dtype`` as a ``torch.dtype``: a dtype, ``"bfloat16"``/``"float32"`` (names of torch dtypes), or
    ``"auto"``: bfloat16 where ``device`` multiplies it natively (:func:`native_bf16`), else float32."""
    if isinstance(ns_dtype, torch.dtype):
        return ns_dtype
    if ns_dtype == "auto":
        from ..core._machine import native_bf16

        return torch.bfloat16 if native_bf16(device) else torch.float32
    dtype = getattr(torch, ns_dtype, None) if isinstance(ns_dtype, str) else None
    if not isinstance(dtype, torch.dtype) or dtype not in NS_DTYPES:
        raise ValueError(
            f"Invalid ns_dtype={ns_dtype!r}: expected a torch dtype, 'bfloat16', 'float32' or 'auto' "
            "(bfloat16 where the device multiplies it natively, else float32)."
        )
    return dtype


class MuonAdam(torch.optim.Optimizer):
    """:class:`Muon` at ``lr`` on the parameters :func:`muon_adam_split` gives it, ``torch.optim.AdamW`` at
    ``adam_lr`` on the rest; ``ns_dtype`` may be ``"bfloat16"``, ``"float32"`` or ``"auto"`` (bf16 where native)."""

    def __init__(
        self,
        model: nn.Module,
        lr: float,
        *,
        adam_lr: float = 1e-3,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        adjust_lr_fn: str | None = None,
        ns_dtype: torch.dtype | str = "auto",
    ) -> None:
        matrices, others = muon_adam_split(model)
        if not matrices:
            raise ValueError(
                "MuonAdam: the model has no parameter for Muon (2 or more dims, outside embeddings and the "
                "'head' module); use AdamW instead."
            )
        dtype = resolve_ns_dtype(ns_dtype, matrices[0].device)
        self.muon = Muon(
            matrices,
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            weight_decay=weight_decay,
            adjust_lr_fn=adjust_lr_fn,
            ns_dtype=dtype,
        )
        self.adam = torch.optim.AdamW(others, lr=adam_lr, weight_decay=weight_decay) if others else None
        super().__init__(matrices + others, {"lr": lr})
        # The groups ARE the inner optimizers' group dicts: a scheduler writing group["lr"] drives both.
        self.param_groups = self.muon.param_groups + (self.adam.param_groups if self.adam else [])

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """One step of both; ``closure`` is evaluated once."""
        loss = _loss_of(closure)
        self.muon.step()
        if self.adam is not None:
            self.adam.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adam": self.adam.state_dict() if self.adam else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"muon", "adam"}:
            raise ValueError(
                f"MuonAdam.load_state_dict expects the keys 'muon' and 'adam' of MuonAdam.state_dict(), "
                f"found {sorted(state_dict)}."
            )
        self.muon.load_state_dict(state_dict["muon"])
        if self.adam is not None:
            self.adam.load_state_dict(state_dict["adam"])
        self.param_groups = self.muon.param_groups + (self.adam.param_groups if self.adam else [])
