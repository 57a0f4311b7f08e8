"""``lm-bytes``: a byte-level GPT-2-style (pre-norm) transformer language model on the Python standard library's
sources (offline, about 31 MB; files split by a hash of their path, 1 in 20 to validation). Metric: nats per byte."""

from __future__ import annotations

import functools
import hashlib
import sysconfig
import zlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._base import BASELINES, MODERN_LRS, LabelledData, Workload, labelled_batch, seeded

__all__ = ["LM_BYTES", "ByteLM", "byte_windows", "corpus_windows", "stdlib_corpus"]

_VAL_EVERY = 20  # about one file in 20 goes to validation
_EVAL_WINDOWS = 1024  # windows evaluated for train_loss and test_loss


@functools.lru_cache(maxsize=2)
def stdlib_corpus(root: str | None = None) -> tuple[bytes, bytes]:
    """(training, validation) bytes: the standard library's ``.py`` files in sorted order, split by file."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    files = sorted(f for f in base.rglob("*.py") if "site-packages" not in f.relative_to(base).parts)
    if not files:
        raise FileNotFoundError(
            f"lm-bytes: no .py files under {str(base)!r} (the Python standard library's sources). This interpreter "
            "ships without them; install a Python with its standard library sources."
        )
    train, val = bytearray(), bytearray()
    for f in files:
        rel = f.relative_to(base).as_posix()
        (val if zlib.crc32(rel.encode()) % _VAL_EVERY == 0 else train).extend(f.read_bytes())
    return bytes(train), bytes(val)


def byte_windows(text: bytes, length: int) -> torch.Tensor:
    """Non-overlapping windows of ``length`` bytes, as uint8 ``(n, length)``."""
    a = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    n = len(a) // length
    return a[: n * length].reshape(n, length)


def corpus_windows(length: int, subset: int | None, val_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation windows of ``length`` bytes (int64), each set in a fixed random order that mixes the
    files: the first ``subset`` (None: all) and the first ``val_windows``. ValueError for a subset the corpus lacks."""
    train_text, val_text = stdlib_corpus()
    train = byte_windows(train_text, length)
    train = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))]
    if subset is not None:
        if subset > len(train):
            raise ValueError(f"Invalid subset={subset}: the corpus has {len(train)} windows. Use a smaller --subset.")
        train = train[:subset]
    val = byte_windows(val_text, length)
    val = val[torch.randperm(len(val), generator=torch.Generator().manual_seed(1))][:val_windows]
    return train.long(), val.long()


class Attention(nn.Module):
    """Multi-head self-attention (causal unless ``causal=False``) with q, k, v and out as ``nn.Linear`` (LocoProp
    trains them)."""

    def __init__(self, dim: int, heads: int, causal: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"Invalid width={dim} for heads={heads}: the width must divide into the heads.")
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), is_causal=self.causal)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))`` with a 4x GELU MLP."""

    def __init__(self, dim: int, heads: int, causal: bool = True) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, causal)
        self.norm2, self.fc1, self.act, self.fc2 = (
            nn.LayerNorm(dim),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ByteLM(nn.Module):
    """Decoder-only byte-level transformer: ``(batch, context)`` int64 bytes -> ``(batch, context, 256)`` logits."""

    def __init__(self, width: int = 64, depth: int = 2, heads: int = 4, context: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, width)
        self.pos = nn.Parameter(torch.randn(1, context, width) * 0.02)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 256)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        return self.head(self.norm(self.blocks(x)))


def byte_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean next-byte cross-entropy in nats over every position of ``(batch, context, 256)`` logits."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def _load(cfg: Any, data_dir: str | Path | None, download: bool, device: torch.device | str) -> LabelledData:
    size = LM_BYTES.size_options(cfg.size)
    train_text, val_text = stdlib_corpus()
    length = size["context"] + 1
    subset = cfg.subset if cfg.subset is not None else LM_BYTES.subset.get(cfg.size)
    train, val = corpus_windows(length, subset, _EVAL_WINDOWS)
    info = {
        "source": f"Python {sysconfig.get_python_version()} standard library .py files",
        "train_bytes": len(train_text),
        "validation_bytes": len(val_text),
        "train_sha256": hashlib.sha256(train_text).hexdigest()[:16],
        "validation_sha256": hashlib.sha256(val_text).hexdigest()[:16],
        "train_examples": len(train),
        "test_examples": len(val),
        "window": length,
    }
    return LabelledData(
        train[:, :-1].to(device), train[:, 1:].to(device), val[:, :-1].to(device), val[:, 1:].to(device), info
    )


def _build(data: LabelledData, cfg: Any, generator: torch.Generator) -> nn.Module:
    return seeded(lambda: ByteLM(**LM_BYTES.size_options(cfg.size)), generator).to(data.train.device)


@torch.inference_mode()
def _evaluate(model: nn.Module, data: LabelledData, cfg: Any) -> dict[str, float]:
    def over(x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = x[:_EVAL_WINDOWS], y[:_EVAL_WINDOWS]
        return sum(
            float(byte_cross_entropy(model(x[i : i + 256]), y[i : i + 256])) * len(x[i : i + 256])
            for i in range(0, len(x), 256)
        ) / len(x)

    return {
        "train_loss": over(data.train, data.train_y),
        "test_loss": over(data.test, data.test_y) if cfg.evaluate_test else float("nan"),
    }


LM_BYTES = Workload(
    name="lm-bytes",
    summary="a byte-level decoder-only transformer (pre-norm, GELU MLP) on the Python standard library's sources",
    dataset="stdlib",
    load=_load,
    build_model=_build,
    loss_fn=byte_cross_entropy,
    batch=labelled_batch,
    evaluate=_evaluate,
    metrics={
        "train_loss": f"next-byte cross-entropy on the first {_EVAL_WINDOWS} training windows, nats per byte",
        "test_loss": f"validation loss: next-byte cross-entropy on {_EVAL_WINDOWS} held-out windows, nats per byte",
    },
    score="test_loss",
    batch_size=32,
    sizes={
        "cpu": {"width": 64, "depth": 2, "heads": 4, "context": 64},
        "gpu": {"width": 384, "depth": 6, "heads": 6, "context": 256},
        "tiny": {"width": 16, "depth": 1, "heads": 2, "context": 16},  # the tests'
    },
    subset={"cpu": 16384, "gpu": None, "tiny": 128},
    default_lrs={**MODERN_LRS, "nesterov": 0.3, "locoprop-transformer": 3e-3, "locoprop-eigen": 3e-3},
    methods=(
        *BASELINES,
        "locoprop-transformer",
        "locoprop-eigen",
    ),
    reference="adamw",
    reference_epochs=4,
)
