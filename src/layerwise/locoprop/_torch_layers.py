"""The LocoProp layers inside ``torch.nn``'s own transformer modules, which ``torch.fx`` cannot see.

``torch.fx`` keeps every ``torch.nn`` module as a leaf, and torch's transformer layers cannot be traced
anyway (their ``forward`` branches on the input's properties to choose a fused fast path). Their
structure is fixed, so it is read here: ``nn.TransformerEncoderLayer`` and ``nn.TransformerDecoderLayer``
run ``linear2(dropout(activation(linear1(x))))`` once per call on the training path (gradients enabled;
the fused inference path runs no hook and is caught at the step); their attention
(``nn.MultiheadAttention``) reads its projection weights directly, so those go to ``other_optimizer``.
"""

from __future__ import annotations

from torch import nn

from ._activations import Activation, get_activation
from ._recognise import activation_for_call, activation_for_module

__all__ = ["composite_layers", "opaque_reason"]


def _feedforward(
    layer: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer, name: str
) -> list[tuple[nn.Module, Activation]]:
    act = layer.activation
    where = f"{name}.linear1"
    found = activation_for_module(act, where) if isinstance(act, nn.Module) else activation_for_call(act, (), {}, where)
    return [(layer.linear1, found or get_activation("identity")), (layer.linear2, get_activation("identity"))]


def composite_layers(module: nn.Module, name: str) -> list[tuple[nn.Module, Activation]] | None:
    """The ``(layer, activation)`` pairs one call of ``module`` runs, each once, in order; ``None`` when
    ``module`` is not one of torch's transformer modules (exact types: a subclass may override ``forward``)."""
    kind = type(module)
    if kind in (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer):
        return _feedforward(module, name)  # type: ignore[arg-type]
    if kind in (nn.TransformerEncoder, nn.TransformerDecoder):
        pairs: list[tuple[nn.Module, Activation]] = []
        for i, layer in enumerate(module.layers):  # type: ignore[arg-type]
            inner = composite_layers(layer, f"{name}.layers.{i}")
            if inner is None:
                return None
            pairs.extend(inner)
        return pairs
    if kind is nn.Transformer:
        enc = composite_layers(module.encoder, f"{name}.encoder")  # type: ignore[arg-type]
        dec = composite_layers(module.decoder, f"{name}.decoder")  # type: ignore[arg-type]
        return None if enc is None or dec is None else enc + dec
    return None


def opaque_reason(module: nn.Module) -> str:
    """Why LocoProp cannot train the layers inside ``module`` (a ``torch.nn`` module fx keeps whole)."""
    if isinstance(module, nn.MultiheadAttention):
        return "nn.MultiheadAttention reads its projection weights directly, never calling them as modules"
    return (
        f"{type(module).__module__}.{type(module).__name__} is a torch.nn module whose forward torch.fx does "
        "not trace, so the calls of its inner layers are not seen"
    )
