"""A small zoo of realistic architectures for tests: tiny, float64, deterministic.

Each :class:`Case` builds a fresh model (seeded, float64, in train mode), a deterministic batch, a batch-mean
loss, and ``tap``: the qualified name of an intermediate module whose output suits an auxiliary loss. Nothing is
built at import; ``CASES`` holds only the lazy builders. Comments say whether ``torch.fx.symbolic_trace`` traces
each model (all of them do with torch 2.13).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The device the zoo builds on (models and batches): CPU, or e.g. LAYERWISE_TEST_DEVICE=cuda for the GPU check.
DEVICE = torch.device(os.environ.get("LAYERWISE_TEST_DEVICE", "cpu"))
BATCH = 4
IMAGE = 8  # images are (BATCH, 3, IMAGE, IMAGE)
CLASSES = 5
VOCAB = 11
SEQ = 6
WIDTH = 16  # transformer width
HEADS = 2


@dataclass(frozen=True)
class Case:
    """One zoo entry: a model builder, its batch, its loss, and the module to tap for an auxiliary loss."""

    name: str
    build: Callable[[], nn.Module]  # fresh model, float64, seeded, in train() mode
    batch: Callable[[], tuple[Tensor, Tensor]]  # deterministic (inputs, targets)
    loss: Callable[[Tensor, Tensor], Tensor]  # loss(model_output, targets) -> scalar batch mean
    tap: str  # key of model.named_modules() whose output is an intermediate Tensor (or an RNN's tuple)


def _finish(model: nn.Module) -> nn.Module:
    """Cast to float64, move to :data:`DEVICE` and put in train mode."""
    return model.double().to(DEVICE).train()


def _on_device(batch: Callable[[], tuple[Tensor, Tensor]]) -> Callable[[], tuple[Tensor, Tensor]]:
    """The batch, drawn on the CPU (the same numbers everywhere), moved to :data:`DEVICE`."""

    def moved() -> tuple[Tensor, Tensor]:
        x, y = batch()
        return x.to(DEVICE), y.to(DEVICE)

    moved.__doc__ = batch.__doc__
    return moved


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy; sequence logits (B, T, V) against (B, T) targets are flattened."""
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


def _image_batch(seed: int = 0) -> tuple[Tensor, Tensor]:
    """Images (B, 3, 8, 8) float64 and class labels (B,)."""
    g = _generator(seed)
    x = torch.randn(BATCH, 3, IMAGE, IMAGE, generator=g, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    return x, y


# ----------------------------------------------------------------------------------------------------------------
# resnet


class BasicBlock(nn.Module):
    """ResNet basic block: conv-BN-ReLU-conv-BN, in-place residual add, ReLU; 1x1 strided downsample if needed."""

    def __init__(self, cin: int, cout: int, stride: int = 1, same: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        # padding="same" (stride 1 only) gives the same shape as padding=1 for a 3x3 kernel.
        self.conv2 = nn.Conv2d(cout, cout, 3, padding="same" if same else 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision's ResNet does (fx records it as a plain add)
        return self.relu(out)


class ResNet(nn.Module):
    """Stem, two basic blocks (the second strided), global average pool, linear head."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding="same", bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(8, 8, same=True)
        self.layer2 = BasicBlock(8, 8, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_resnet() -> nn.Module:
    """ResNet-style CNN. Traces with torch.fx."""
    torch.manual_seed(0)
    return _finish(ResNet())


# ----------------------------------------------------------------------------------------------------------------
# vgg, vgg_bn


def build_vgg() -> nn.Module:
    """VGG-style Sequential; index 4 is the max-pool. Traces with torch.fx."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0
        nn.ReLU(inplace=True),  # 1
        nn.Conv2d(8, 8, 3, padding=1),  # 2
        nn.ReLU(inplace=True),  # 3
        nn.MaxPool2d(2),  # 4: (B, 8, 4, 4)
        nn.Conv2d(8, 8, 3, padding=1),  # 5
        nn.ReLU(),  # 6
        nn.MaxPool2d(2),  # 7: (B, 8, 2, 2)
        nn.Flatten(),  # 8
        nn.Linear(32, 16),  # 9
        nn.ReLU(inplace=True),  # 10
        nn.Linear(16, CLASSES),  # 11
    )
    return _finish(model)


def build_vgg_bn() -> nn.Module:
    """VGG-style Sequential in which every conv (bias=False) feeds a BatchNorm2d; index 6 is the max-pool.

    Traces with torch.fx.
    """
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),  # 0
        nn.BatchNorm2d(8),  # 1
        nn.ReLU(inplace=True),  # 2
        nn.Conv2d(8, 8, 3, padding=1, bias=False),  # 3
        nn.BatchNorm2d(8),  # 4
        nn.ReLU(inplace=True),  # 5
        nn.MaxPool2d(2),  # 6: (B, 8, 4, 4)
        nn.Conv2d(8, 8, 3, padding=1, bias=False),  # 7
        nn.BatchNorm2d(8),  # 8
        nn.ReLU(inplace=True),  # 9
        nn.MaxPool2d(2),  # 10: (B, 8, 2, 2)
        nn.Flatten(),  # 11
        nn.Linear(32, 16),  # 12
        nn.ReLU(inplace=True),  # 13
        nn.Linear(16, CLASSES),  # 14
    )
    return _finish(model)


# ----------------------------------------------------------------------------------------------------------------
# mobile: depthwise and grouped convs, softmax over the channels of a feature map

SEG_CLASSES = 4


def build_mobile() -> nn.Module:
    """Inverted-residual-like conv stack with a per-pixel softmax head; outputs (B, 4, H, W) probabilities.

    Traces with torch.fx.
    """
    torch.manual_seed(3)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        expand=nn.Conv2d(3, 8, 1, bias=False),
        expand_bn=nn.BatchNorm2d(8),
        expand_act=nn.ReLU6(),
        depthwise=nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        depthwise_bn=nn.BatchNorm2d(8),
        depthwise_act=nn.ReLU(),
        project=nn.Conv2d(8, 6, 1),
        grouped=nn.Conv2d(6, 6, 3, padding=1, groups=2),
        classifier=nn.Conv2d(6, SEG_CLASSES, 1),
        softmax=nn.Softmax(dim=1),
    )
    return _finish(nn.Sequential(layers))


def _mobile_batch() -> tuple[Tensor, Tensor]:
    """Images (B, 3, 8, 8) and one-hot class maps (B, 4, 8, 8), both float64."""
    g = _generator(3)
    x = torch.randn(BATCH, 3, IMAGE, IMAGE, generator=g, dtype=torch.float64)
    classes = torch.randint(0, SEG_CLASSES, (BATCH, IMAGE, IMAGE), generator=g)
    y = F.one_hot(classes, SEG_CLASSES).permute(0, 3, 1, 2).to(torch.float64)
    return x, y


def _pixel_nll(probs: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy of per-pixel probabilities against one-hot maps, mean over batch and pixels."""
    return -(targets * probs.clamp_min(1e-12).log()).sum(1).mean()


# ----------------------------------------------------------------------------------------------------------------
# mixer


class MixerBlock(nn.Module):
    """MLP-Mixer block: token-mixing MLP (over the token dim) and channel MLP, each pre-norm with a residual."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, 2 * tokens), nn.GELU(), nn.Linear(2 * tokens, tokens))
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    """4x4 patches of an 8x8 image (4 tokens of width 8), two mixer blocks, mean over tokens, linear head."""

    def __init__(self, dim: int = 8, classes: int = CLASSES) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        tokens = (IMAGE // 4) ** 2
        self.blocks = nn.Sequential(MixerBlock(tokens, dim), MixerBlock(tokens, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patches(x).flatten(2).transpose(1, 2)  # (B, tokens, dim)
        x = self.norm(self.blocks(x))
        return self.head(x.mean(1))


def build_mixer() -> nn.Module:
    """MLP-Mixer. Traces with torch.fx."""
    torch.manual_seed(4)
    return _finish(Mixer())


# ----------------------------------------------------------------------------------------------------------------
# transformers


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate q, k, v and out projections, via SDPA."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, heads, T, D / heads)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).flatten(2))


class MHACausalAttention(nn.Module):
    """``nn.MultiheadAttention`` self-attention with a boolean causal mask (True = masked)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        # Built from x rather than sliced from a buffer: fx cannot slice a plain tensor attribute by a traced size.
        t = x.size(1)
        mask = x.new_ones((t, t), dtype=torch.bool).triu(1)
        return self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]


class DecoderBlock(nn.Module):
    """Pre-norm decoder block: LN -> attention -> residual; LN -> Linear -> GELU -> Linear -> residual."""

    def __init__(self, dim: int, heads: int, mha: bool = False) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = MHACausalAttention(dim, heads) if mha else CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Decoder(nn.Module):
    """Small causal language model: embedding + learned positions, two blocks, final LN, linear head."""

    def __init__(self, tied: bool = False, mha: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        nn.init.normal_(self.embed.weight, std=0.02)  # GPT-style; N(0, 1) makes the tied head's logits huge
        self.pos = nn.Parameter(0.02 * torch.randn(1, SEQ, WIDTH))
        self.blocks = nn.Sequential(DecoderBlock(WIDTH, HEADS, mha), DecoderBlock(WIDTH, HEADS, mha))
        self.ln_f = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB, bias=not tied)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens) + self.pos[:, : tokens.size(1)]
        return self.head(self.ln_f(self.blocks(x)))


def build_transformer() -> nn.Module:
    """Causal decoder, SDPA attention, untied head. Traces with torch.fx."""
    torch.manual_seed(5)
    return _finish(Decoder())


def build_transformer_tied() -> nn.Module:
    """Causal decoder whose head weight is the embedding weight (one shared Parameter). Traces with torch.fx."""
    torch.manual_seed(5)
    return _finish(Decoder(tied=True))


def build_transformer_mha() -> nn.Module:
    """Causal decoder with ``nn.MultiheadAttention`` (a leaf module for fx). Traces with torch.fx."""
    torch.manual_seed(5)
    return _finish(Decoder(mha=True))


def _token_batch() -> tuple[Tensor, Tensor]:
    """Long tokens (B, 6) and their next tokens (B, 6)."""
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=_generator(5))
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


# ----------------------------------------------------------------------------------------------------------------
# seq_of_blocks


class ConvBlock(nn.Module):
    """Conv (padding 1) followed by tanh."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.act = nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x))


def build_seq_of_blocks() -> nn.Module:
    """Build an nn.Sequential of custom blocks then a small MLP head. Traces with torch.fx."""
    torch.manual_seed(6)
    model = nn.Sequential(
        ConvBlock(3, 6),  # 0: (B, 6, 8, 8)
        ConvBlock(6, 6, stride=2),  # 1: (B, 6, 4, 4)
        nn.Flatten(),
        nn.Linear(96, 16),
        nn.Sigmoid(),
        nn.Linear(16, CLASSES),
    )
    return _finish(model)


# ----------------------------------------------------------------------------------------------------------------
# recurrent

RNN_STEPS = 5
RNN_IN = 4
RNN_HIDDEN = 8
RNN_OUT = 3


class Recurrent(nn.Module):
    """A recurrent layer over (B, T, 4) then a Linear at every time step: returns (B, T, 3).

    The tapped ``rnn`` module returns a tuple; its first element holds every step's hidden state (B, T, 8).
    """

    def __init__(self, kind: type[nn.RNNBase]) -> None:
        super().__init__()
        self.rnn = kind(RNN_IN, RNN_HIDDEN, batch_first=True)
        self.head = nn.Linear(RNN_HIDDEN, RNN_OUT)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[0])


def _recurrent_builder(kind: type[nn.RNNBase], seed: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        """Recurrent model; nn.LSTM / nn.GRU / nn.RNN are fx leaf modules, so it traces with torch.fx."""
        torch.manual_seed(seed)
        return _finish(Recurrent(kind))

    return build


def _sequence_batch() -> tuple[Tensor, Tensor]:
    """Sequences (B, 5, 4) and per-step regression targets (B, 5, 3), float64."""
    g = _generator(7)
    x = torch.randn(BATCH, RNN_STEPS, RNN_IN, generator=g, dtype=torch.float64)
    y = torch.randn(BATCH, RNN_STEPS, RNN_OUT, generator=g, dtype=torch.float64)
    return x, y


# ----------------------------------------------------------------------------------------------------------------
# helpers outside CASES


class _Reused(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.fc(x))


def reused_linear(width: int = 8) -> nn.Module:
    """Return a model whose forward calls the same square nn.Linear twice (``fc(fc(x))``); float64, seeded."""
    torch.manual_seed(8)
    return _finish(_Reused(width))


# ----------------------------------------------------------------------------------------------------------------

CASES: dict[str, Case] = {
    case.name: Case(case.name, case.build, _on_device(case.batch), case.loss, case.tap)
    for case in (
        # fx: torch.fx.symbolic_trace result, checked with torch 2.13 (traced output matches eager).
        # Taps are chosen so no later in-place op mutates the tapped output: a tap on e.g. vgg "0" or resnet "bn1"
        # (each followed by ReLU(inplace=True)) breaks an auxiliary loss computed inside a forward hook.
        Case("resnet", build_resnet, _image_batch, _cross_entropy, tap="layer1"),  # fx: traces (+= becomes add)
        Case("vgg", build_vgg, _image_batch, _cross_entropy, tap="4"),  # fx: traces
        Case("vgg_bn", build_vgg_bn, _image_batch, _cross_entropy, tap="6"),  # fx: traces
        Case("mobile", build_mobile, _mobile_batch, _pixel_nll, tap="depthwise_act"),  # fx: traces
        Case("mixer", build_mixer, _image_batch, _cross_entropy, tap="blocks.0"),  # fx: traces
        Case("transformer", build_transformer, _token_batch, _cross_entropy, tap="blocks.0"),  # fx: traces
        Case("transformer_tied", build_transformer_tied, _token_batch, _cross_entropy, tap="blocks.0"),  # fx: traces
        Case("transformer_mha", build_transformer_mha, _token_batch, _cross_entropy, tap="blocks.0"),  # fx: traces
        Case("seq_of_blocks", build_seq_of_blocks, _image_batch, _cross_entropy, tap="0"),  # fx: traces
        Case("lstm", _recurrent_builder(nn.LSTM, 9), _sequence_batch, F.mse_loss, tap="rnn"),  # fx: traces (leaf)
        Case("gru", _recurrent_builder(nn.GRU, 10), _sequence_batch, F.mse_loss, tap="rnn"),  # fx: traces (leaf)
        Case("rnn", _recurrent_builder(nn.RNN, 11), _sequence_batch, F.mse_loss, tap="rnn"),  # fx: traces (leaf)
    )
}
