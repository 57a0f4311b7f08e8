"""The per-term gradient engine that ``layerwise.backward``, the weightings and the telemetry share.

For K loss terms L_1..L_K and a parameter list θ:

- :func:`check_losses` validates a step's terms once (one host synchronisation; validated terms pass
  again for free) and :func:`check_params` a parameter set;
- :class:`TermGradients` computes ∂L_k/∂θ once, one partial backward per term, and serves the three
  uses: the rows a weighting learns from (:meth:`~TermGradients.rows`), the K × K Gramians of
  parameter sets the telemetry reports (:meth:`~TermGradients.gramians`), and the update
  Σ_k w_k ∇L_k (:meth:`~TermGradients.weighted_sum`);
- with a :class:`LinearCapture` on the model, an ``nn.Linear`` weight can stay factored as (A, Δ_k),
  ∇_W L_k = Δ_kᵀA, where that costs fewer flops (:func:`plan_factors`).

:func:`term_gradients` and :func:`set_gramians` are the same computations on plain dicts and lists.
"""

from ._check import CheckedLosses, NonFiniteLoss, check_losses, check_params
from ._gradients import TermGradients, set_gramians, term_gradients
from ._linear import LinearCapture, LinearFactor, factored_is_cheaper, plan_factors

__all__ = [
    "CheckedLosses",
    "LinearCapture",
    "LinearFactor",
    "NonFiniteLoss",
    "TermGradients",
    "check_losses",
    "check_params",
    "factored_is_cheaper",
    "plan_factors",
    "set_gramians",
    "term_gradients",
]
