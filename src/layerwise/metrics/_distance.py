"""Distance between two networks of the same architecture in parameter space."""

from __future__ import annotations

import math

from torch import nn

__all__ = ["parameter_distance"]


def parameter_distance(a: nn.Module, b: nn.Module) -> dict[str, float]:
    """Normalised distances ``‖θ_a − θ_b‖ / ‖θ_b‖``: per parameter (by name) and ``"total"`` over all.

    ``b`` is the reference (e.g. the backprop-trained network). Hidden units can be permuted
    without changing the function, so a large distance does not by itself mean a different
    network; read it next to the representation similarity (:func:`linear_cka`).
    """
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    if pa.keys() != pb.keys() or any(pa[k].shape != pb[k].shape for k in pa):
        raise ValueError(
            "parameter_distance needs two networks of the same architecture (same parameter names and shapes)."
        )
    out, num, den = {}, 0.0, 0.0
    for k in pa:
        d = float((pa[k].detach().double() - pb[k].detach().double()).pow(2).sum())
        r = float(pb[k].detach().double().pow(2).sum())
        out[k] = math.sqrt(d / r) if r > 0 else math.sqrt(d)
        num, den = num + d, den + r
    out["total"] = math.sqrt(num / den) if den > 0 else math.sqrt(num)
    return out
