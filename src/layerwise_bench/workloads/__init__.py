"""The benchmark workloads, by name: the deep autoencoder, a small ResNet on MNIST, a byte-level transformer LM, and
four architecture families on sklearn's digits."""

from __future__ import annotations

from dataclasses import replace

from ._autoencoder import AUTOENCODER, AUTOENCODER_DATASETS, AutoencoderData, evaluate, load_autoencoder_data
from ._base import Data, LabelledData, Workload
from ._digits import DIGITS_FAMILIES, DigitsTransformer, Mixer
from ._lm import LM_BYTES, ByteLM, byte_cross_entropy, corpus_windows, stdlib_corpus
from ._resnet import RESNET_MNIST, BasicBlock, SmallResNet

__all__ = [
    "AUTOENCODER",
    "AUTOENCODER_DATASETS",
    "AutoencoderData",
    "BasicBlock",
    "ByteLM",
    "DIGITS_FAMILIES",
    "Data",
    "DigitsTransformer",
    "LM_BYTES",
    "LabelledData",
    "Mixer",
    "RESNET_MNIST",
    "SmallResNet",
    "WORKLOADS",
    "Workload",
    "byte_cross_entropy",
    "corpus_windows",
    "evaluate",
    "get_workload",
    "load_autoencoder_data",
    "stdlib_corpus",
]

#: Methods built for the autoencoder alone, with the reason the other workloads refuse them.
_AUTOENCODER_ONLY = {
    "kfac": "layerwise's KFAC covers models whose every trainable parameter is in an nn.Linear (no convolution, "
    "normalisation or embedding), with the autoencoder's Bernoulli Fisher",
    **{
        name: "this entry declares the autoencoder's layers and its sigmoid output matching loss; use the "
        "workload's LocoProp recipe (locoprop-cnn, locoprop-transformer) instead"
        for name in (
            "locoprop-m",
            "locoprop-m-bf16",
            "locoprop-m-bf16-t5",
            "locoprop-m-bf16-t5-c2",
            "locoprop-m-bf16-t5-c4",
            "locoprop-m-bf16-t5-c4-backward",
            "locoprop-s",
            "locoprop-s-exact",
            "locoprop-m-precond",
        )
    },
}

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        AUTOENCODER,
        replace(RESNET_MNIST, refused=_AUTOENCODER_ONLY),
        replace(LM_BYTES, refused=_AUTOENCODER_ONLY),
        *(replace(w, refused=_AUTOENCODER_ONLY) for w in DIGITS_FAMILIES.values()),
    )
}


def get_workload(name: str) -> Workload:
    """Look a workload up by name, with the valid names in the error."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"Unknown workload {name!r}. Expected one of: {', '.join(WORKLOADS)}.") from None
