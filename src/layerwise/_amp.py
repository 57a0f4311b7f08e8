"""What a ``torch.amp.GradScaler`` hands an optimizer that reads gradients the scaler cannot unscale.

LocoProp and K-FAC read the gradients of layer outputs they kept from the backward pass, which
``scaler.unscale_(opt)`` never sees. Such an optimizer sets ``_step_supports_amp_scaling = True``; then
``scaler.step(opt)`` does not unscale but sets ``opt.grad_scale`` (the scale, or ``None`` after an earlier
``unscale_``) and ``opt.found_inf`` for the duration of ``opt.step()``.
"""

from __future__ import annotations

import torch

__all__ = ["grad_scaler_factor"]


def grad_scaler_factor(opt: torch.optim.Optimizer, name: str, advice: str) -> torch.Tensor | None:
    """``1 / scale`` when a GradScaler drives this step, else ``None``; an error naming ``name`` when
    ``scaler.unscale_(opt)`` ran first (the kept gradients' scale is then unknown). ``advice``: the fix."""
    if not hasattr(opt, "found_inf"):
        return None
    grad_scale = getattr(opt, "grad_scale", None)
    if grad_scale is None:
        raise RuntimeError(
            f"{name} under a GradScaler: scaler.unscale_(opt) was called before scaler.step(opt). It unscales the "
            f"weights' .grad, not the layer-output gradients {name} keeps, so {name} cannot tell their scale. "
            f"{advice} No parameter was changed."
        )
    return 1.0 / grad_scale
