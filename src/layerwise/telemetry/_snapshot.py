"""One telemetry measurement: per-term gradient norms, weighted shares, cosines and the Gramian, per parameter set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Snapshot"]

Matrix = list[list[float]]


@dataclass(frozen=True)
class Snapshot:
    """Gradient statistics of K loss terms L_1..L_K at one step, for each parameter set S.

    With g_k = ∇_S L_k (the gradient of term k restricted to the coordinates of S) and J the K × |S|
    matrix of rows g_k:

    - ``gramian[S]`` = G = J Jᵀ, G_ij = ⟨g_i, g_j⟩ (K × K, term order of :attr:`terms`);
    - ``norms[S][k]`` = ‖g_k‖ = √G_kk;
    - ``cosines[S]`` = G_ij / (‖g_i‖ ‖g_j‖), and 0 where either gradient is zero (a term that does not
      reach S), like ``torch.nn.functional.cosine_similarity``;
    - ``contributions[S][k]`` = ‖w_k g_k‖ / Σ_j ‖w_j g_j‖ = |w_k| ‖g_k‖ / Σ_j |w_j| ‖g_j‖, the share of term
      k in the weighted update (w = 1 when ``weights`` is None); they sum to 1, or are all 0 when no
      term reaches S.

    ``step`` counts from 0; ``losses`` are the term values; ``weights`` the weights the update used, if any.
    """

    step: int
    losses: dict[str, float]
    weights: dict[str, float] | None
    norms: dict[str, dict[str, float]]
    contributions: dict[str, dict[str, float]]
    cosines: dict[str, Matrix]
    gramian: dict[str, Matrix]

    @property
    def terms(self) -> list[str]:
        """Term names, in the order of the rows and columns of ``cosines`` and ``gramian``."""
        return list(self.losses)

    @property
    def sets(self) -> list[str]:
        """Parameter-set names."""
        return list(self.gramian)

    @classmethod
    def from_gramians(
        cls, step: int, losses: Mapping[str, float], weights: Mapping[str, float] | None, gramians: Mapping[str, Tensor]
    ) -> Snapshot:
        """Derive norms, cosines and contributions from ``{set: G}`` (K × K, term order of ``losses``)."""
        terms = list(losses)
        w = torch.tensor([1.0 if weights is None else abs(weights[t]) for t in terms], dtype=torch.float64)
        norms, contributions, cosines, gramian = {}, {}, {}, {}
        for name, g in gramians.items():
            g = g.detach().to("cpu", torch.float64)
            n = g.diagonal().clamp_min(0).sqrt()
            outer = torch.outer(n, n)
            cos = torch.where(outer == 0, 0.0, g / outer).clamp(-1.0, 1.0)  # NaN gradients stay NaN
            share = w * n
            total = share.sum()
            share = share / total if total != 0 else torch.zeros_like(share)
            norms[name] = dict(zip(terms, n.tolist(), strict=True))
            contributions[name] = dict(zip(terms, share.tolist(), strict=True))
            cosines[name] = cos.tolist()
            gramian[name] = g.tolist()
        return cls(
            step,
            dict(losses),
            None if weights is None else {t: float(weights[t]) for t in terms},
            norms,
            contributions,
            cosines,
            gramian,
        )

    def scalars(self) -> dict[str, float]:
        """Flat tags for a scalar logger: ``loss/<term>``, ``weight/<term>`` (when weights were given),
        ``norm/<set>/<term>``, ``contribution/<set>/<term>`` and ``cosine/<set>/<term>~<other>`` (each pair once)."""
        terms = self.terms
        out = {f"loss/{t}": self.losses[t] for t in terms}
        if self.weights is not None:
            out.update({f"weight/{t}": self.weights[t] for t in terms})
        for s in self.sets:
            for i, t in enumerate(terms):
                out[f"norm/{s}/{t}"] = self.norms[s][t]
                out[f"contribution/{s}/{t}"] = self.contributions[s][t]
                out.update({f"cosine/{s}/{t}~{u}": self.cosines[s][i][j] for j, u in enumerate(terms) if j > i})
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps`` writes non-finite values as ``NaN``/``Infinity``)."""
        return {
            "step": self.step,
            "terms": self.terms,
            "losses": dict(self.losses),
            "weights": None if self.weights is None else dict(self.weights),
            "norms": {s: dict(v) for s, v in self.norms.items()},
            "contributions": {s: dict(v) for s, v in self.contributions.items()},
            "cosines": {s: [list(r) for r in m] for s, m in self.cosines.items()},
            "gramian": {s: [list(r) for r in m] for s, m in self.gramian.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """Inverse of :meth:`to_dict` (e.g. for a line of a :class:`JSONLSink` file)."""
        return cls(
            int(data["step"]),
            dict(data["losses"]),
            None if data["weights"] is None else dict(data["weights"]),
            {s: dict(v) for s, v in data["norms"].items()},
            {s: dict(v) for s, v in data["contributions"].items()},
            {s: [list(r) for r in m] for s, m in data["cosines"].items()},
            {s: [list(r) for r in m] for s, m in data["gramian"].items()},
        )
