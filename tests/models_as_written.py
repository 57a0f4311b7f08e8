"""Models written as people write them, kept out of test modules: pytest rewrites a test module's
``assert`` statements, and nanoGPT's ``assert t <= block_size`` must reach torch.fx as written."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NanoGPT", "TorchLM"]


class TorchLM(nn.Module):
    """A tiny causal LM from torch's own nn.TransformerEncoder(Layer)."""

    def __init__(self, activation: str = "relu", vocab: int = 11, width: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(
            width, 2, 4 * width, dropout=0.0, activation=activation, batch_first=True, norm_first=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # enable_nested_tensor is off with norm_first
            self.enc = nn.TransformerEncoder(layer, 2)
        self.out = nn.Linear(width, vocab)

    def forward(self, x: Tensor) -> Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=self.out.weight.dtype)
        return self.out(self.enc(self.emb(x), mask=mask, is_causal=True))


class NanoAttention(nn.Module):
    """nanoGPT's attention: fused qkv, a causal-mask buffer sliced by the sequence length."""

    def __init__(self, width: int, heads: int, ctx: int) -> None:
        super().__init__()
        self.c_attn, self.c_proj, self.heads = nn.Linear(width, 3 * width), nn.Linear(width, width), heads
        self.register_buffer("bias", torch.tril(torch.ones(ctx, ctx)).view(1, 1, ctx, ctx))

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / k.size(-1) ** 0.5)
        att = F.softmax(att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf")), dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).contiguous().view(b, t, c))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int = 11, width: int = 8, ctx: int = 6) -> None:
        super().__init__()
        self.ctx = ctx
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(ctx, width)
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(width), NanoAttention(width, 2, ctx), nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.lm_head = nn.Linear(width, vocab, bias=False)

    def forward(self, idx: Tensor) -> Tensor:
        _, t = idx.size()
        assert t <= self.ctx, f"sequence of {t} longer than the context {self.ctx}"
        x = self.wte(idx) + self.wpe(torch.arange(0, t, dtype=torch.long, device=idx.device))
        x = x + self.attn(self.ln_1(x))
        return self.lm_head(x + self.mlp(self.ln_2(x)))
