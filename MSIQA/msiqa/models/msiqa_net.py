"""MSIQANet: a ResNet and a Swin Transformer, fused stage by stage, scored per grid cell.

    image -> ResNet stages 1-4 ─┐
                                ├─ per stage: concat, 1x1 conv, pool to the stride-32 grid
    image -> Swin stages 1-4 ───┘
    -> concat of the 4 stages -> AGCA channel attention
    -> per cell: score s (any real) and weight w in (0, 1)
    -> image score = sum(s * w) / sum(w); w is the attention map (the heatmap)

The authors' released head pools the fused features to one vector before the score and
weight layers, so w cancels out of sum(s*w)/sum(w) and only the branch that dominates the
pooled vector matters. Keeping the grid makes w a real spatial attention map and lets both
branches shape the score. ``head="pooled"`` rebuilds the released head for the ablation.

The network is fully convolutional with one output cell per 32x32 input pixels: it trains
on native-resolution crops and scores a whole 512x512 slice (a 16x16 grid) in one pass, so
8x8 compression blocks and single impulse pixels are never resized away.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, NamedTuple

import timm
import torch
import torch.nn.functional as F
from torch import nn

from ..causes import CAUSES
from .agca import AGCA

GRID_STRIDE = 32


def _grid(x: torch.Tensor) -> tuple[int, int]:
    """The stride-32 grid of an input (at least one cell each way)."""
    return max(1, x.shape[-2] // GRID_STRIDE), max(1, x.shape[-1] // GRID_STRIDE)


Branches = Literal["both", "cnn", "swin"]
Head = Literal["grid", "pooled"]


@dataclass(frozen=True)
class NetConfig:
    """Everything needed to rebuild the network; stored in every model card."""

    cnn: str = "resnet10t"
    cnn_kwargs: dict[str, Any] = field(default_factory=dict)
    swin: str = "swin_tiny_patch4_window7_224"
    swin_kwargs: dict[str, Any] = field(default_factory=dict)
    fusion_dim: int = 64
    head_dim: int = 64
    dropout: float = 0.1
    branches: Branches = "both"
    agca: bool = True
    head: Head = "grid"
    # Feed a Laplacian high-pass of the grey level beside RGB: single impulse pixels, noise and
    # 8x8 block edges stand out in it, which a network trained from scratch finds much faster.
    highpass: bool = True
    # Names of the faults the cause head tells apart (empty: no cause head).
    causes: tuple[str, ...] = ()
    # 0: the weight head reads each grid cell alone. k (odd): also the cell's difference from the
    # mean of its k x k neighbourhood, so that a cell can stand out against the cells around it.
    weight_context: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetConfig":
        d = dict(d)
        d["causes"] = tuple(d.get("causes", ()))
        for key in ("cnn_kwargs", "swin_kwargs"):
            d[key] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.get(key, {}).items()}
        return cls(**d)


PRESETS: dict[str, NetConfig] = {
    # The published configuration (Li et al., MICCAI 2025).
    "paper": NetConfig(
        cnn="resnet50",
        swin="swin_tiny_patch4_window7_224",
        fusion_dim=256,
        head_dim=128,
        causes=CAUSES,
    ),
    # Small enough to train from scratch on a CPU and to score >= 10 slices/s on 2 cores.
    "compact": NetConfig(
        cnn="resnet10t",
        cnn_kwargs={"channels": (16, 32, 64, 128), "stem_width": 16},
        swin="swin_tiny_patch4_window7_224",
        swin_kwargs={"embed_dim": 24, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8), "window_size": 8},
        fusion_dim=48,
        head_dim=64,
        causes=CAUSES,
    ),
}


def preset(name: str, **overrides: Any) -> NetConfig:
    """A named configuration, optionally with fields replaced (for ablations)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def onto_scale(s: torch.Tensor, knee: float = 0.5) -> torch.Tensor:
    """Maps any real score onto the open 0-4 scale, keeping order.

    The identity on [knee, 4 - knee]; beyond, exponential tails that meet it with the same value
    and slope, so ranks and gradients survive while no score can leave the documented scale.
    """
    low = knee * torch.exp((s - knee).clamp(max=0) / knee)
    high = 4.0 - knee * torch.exp((4.0 - knee - s).clamp(max=0) / knee)
    return torch.where(s < knee, low, torch.where(s > 4.0 - knee, high, s))


class Output(NamedTuple):
    score: torch.Tensor  # [B], the image score sum(s*w)/sum(w)
    weight: torch.Tensor  # [B, 1, h, w], the attention map (the heatmap)
    cell_score: torch.Tensor  # [B, 1, h, w], the score of each grid cell
    cause: torch.Tensor | None  # [B, len(causes)] logits, None without a cause head


class NeighbourContrast(nn.Module):
    """[B, C, h, w] -> [B, 2C, h, w]: each cell's features, then their difference from the mean of
    its k x k neighbourhood (cells beyond the grid's edge not counted)."""

    def __init__(self, k: int):
        super().__init__()
        if k < 3 or k % 2 == 0:
            raise ValueError(f"weight_context must be 0 or an odd neighbourhood of at least 3 cells, not {k}")
        self.k = k

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        around = F.avg_pool2d(f, self.k, stride=1, padding=self.k // 2, count_include_pad=False)
        return torch.cat([f, f - around], 1)


class MSIQANet(nn.Module):
    """Returns an :class:`Output` for RGB input in [0, 1]; the grid has one cell per 32x32 pixels."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)
        self.cnn = self.swin = None
        in_chans = 4 if c.highpass else 3
        self.register_buffer(
            "laplacian",
            torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3) / 3.0,
            persistent=False,
        )
        cnn_ch: list[int] = [0] * 4
        swin_ch: list[int] = [0] * 4
        if c.branches in ("both", "cnn"):
            self.cnn = timm.create_model(
                c.cnn, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4), in_chans=in_chans, **c.cnn_kwargs
            )
            cnn_ch = self.cnn.feature_info.channels()
        if c.branches in ("both", "swin"):
            # dynamic_img_size: the attention masks follow the input, so crops and whole slices both work.
            self.swin = timm.create_model(
                c.swin, pretrained=False, features_only=True, dynamic_img_size=True, in_chans=in_chans, **c.swin_kwargs
            )
            swin_ch = self.swin.feature_info.channels()
        self.fuse = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a + b, c.fusion_dim, 1), nn.BatchNorm2d(c.fusion_dim), nn.GELU())
            for a, b in zip(cnn_ch, swin_ch)
        )
        fused = 4 * c.fusion_dim
        self.attention = AGCA(fused) if c.agca else nn.Identity()
        self.drop = nn.Dropout(c.dropout)
        self.score = nn.Sequential(nn.Conv2d(fused, c.head_dim, 1), nn.GELU(), nn.Conv2d(c.head_dim, 1, 1))
        self.weight_input = NeighbourContrast(c.weight_context) if c.weight_context else nn.Identity()
        self.weight = nn.Sequential(
            nn.Conv2d(fused * (2 if c.weight_context else 1), c.head_dim, 1), nn.GELU(), nn.Conv2d(c.head_dim, 1, 1),
            nn.Sigmoid(),
        )
        # Start the score near the middle of the 0-4 scale.
        nn.init.constant_(self.score[-1].bias, 2.0)
        # Reads the features pooled with the attention weights (_weighted_mean).
        self.cause = nn.Linear(fused, len(c.causes)) if c.causes else None

    def input_planes(self, x: torch.Tensor) -> torch.Tensor:
        """The picture normalised, and its high-pass plane where the config has one: what both branches
        read. It depends on the picture alone (fixed buffers), so an ensemble computes it once."""
        if not self.config.highpass:
            return (x - self.mean) / self.std
        hp = F.conv2d(x.mean(dim=1, keepdim=True), self.laplacian, padding=1) / self.std[:, :1]
        return torch.cat([(x - self.mean) / self.std, hp], dim=1)

    def stage_features(self, planes: torch.Tensor) -> list[torch.Tensor]:
        """The 4 fused stages, each pooled to the stride-32 grid."""
        grid = _grid(planes)
        cnn = self.cnn(planes) if self.cnn is not None else [None] * 4
        swin = [f.permute(0, 3, 1, 2) for f in self.swin(planes)] if self.swin is not None else [None] * 4
        out = []
        for fuse, a, b in zip(self.fuse, cnn, swin):
            parts = [t for t in (a, b) if t is not None]
            if len(parts) == 2 and parts[0].shape[-2:] != parts[1].shape[-2:]:
                parts[1] = F.interpolate(parts[1], size=parts[0].shape[-2:], mode="bilinear", align_corners=False)
            out.append(F.adaptive_avg_pool2d(fuse(parts[0] if len(parts) == 1 else torch.cat(parts, 1)), grid))
        return out

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        """The fused feature grid [B, C, h, w] that all three heads read (``training.refit`` computes it
        once per slice and fits the heads on it)."""
        return self._fused_planes(self.input_planes(x))

    def _fused_planes(self, planes: torch.Tensor) -> torch.Tensor:
        f = self.drop(self.attention(torch.cat(self.stage_features(planes), 1)))
        return f.mean(dim=(2, 3), keepdim=True) if self.config.head == "pooled" else f

    @staticmethod
    def _weighted_mean(f: torch.Tensor, w: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor:
        """The features pooled with the attention weights: what the cause head reads, so that the
        fault the network names is the one where it looked. ``forward`` passes the weights' sum it
        already divides the score by: one sum node, not two, keeps the backward pass's gradient
        sums in the order model 8's network was trained with (two nodes give the same values but
        another rounding, and from there another network)."""
        if total is None:
            total = w.sum(dim=(1, 2, 3)).clamp_min(1e-6)
        return (f * w).sum(dim=(2, 3)) / total[:, None]

    def pooled_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the two last layers read, pooled with the attention weights: the fused features
        ([B, 4 * fusion_dim], the cause head's input) and the score head's hidden cells ([B, head_dim]).
        The score head ends in a 1x1 convolution, so a slice's score, sum(s * w) / sum(w), is that
        layer applied to the pooled hidden cells: both layers are linear in what this returns, and
        ``training.refit`` fits them again on it."""
        return self.pool(self.fused(x))

    def attention_map(self, f: torch.Tensor) -> torch.Tensor:
        """The weight map [B, 1, h, w] in (0, 1) of a fused grid: the heatmap."""
        return self.weight(self.weight_input(f))

    def pool(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``pooled_features`` of a fused grid already computed (the refit computes it once per slice)."""
        w = self.attention_map(f)
        return self._weighted_mean(f, w), self._weighted_mean(self.score[:-1](f), w)

    def forward(self, x: torch.Tensor, *, detach_weight: bool = False) -> Output:
        """``detach_weight`` (training): the loss trains the scores and features but not the weight
        map, for batches that carry no sign of where a fault is."""
        return self.read(self.input_planes(x), detach_weight=detach_weight)

    def read(self, planes: torch.Tensor, *, detach_weight: bool = False) -> Output:
        """``forward`` from the picture's ``input_planes``."""
        grid = _grid(planes)
        f = self._fused_planes(planes)
        s = self.score(f)
        w = self.attention_map(f)
        if detach_weight:
            w = w.detach()
        total = w.sum(dim=(1, 2, 3)).clamp_min(1e-6)
        score = onto_scale((s * w).sum(dim=(1, 2, 3)) / total)
        cause = None if self.cause is None else self.cause(self._weighted_mean(f, w, total))
        if self.config.head == "pooled":
            w, s = w.expand(-1, -1, *grid), s.expand(-1, -1, *grid)
        return Output(score, w, s, cause)


def create_model(name_or_config: str | NetConfig = "compact", **overrides: Any) -> MSIQANet:
    config = preset(name_or_config, **overrides) if isinstance(name_or_config, str) else replace(name_or_config, **overrides)
    return MSIQANet(config)
