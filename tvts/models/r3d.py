"""CPD's video encoder: a 3D ResNet shaped like the slow pathway of SlowFast (CPD Section 3.3).

"All filters from conv1 to res3 degenerate temporal convolutions into 2D convolution kernels and it only
reserves 3D convolution kernels in res4 and res5 without temporal downsampling." Built from torchvision's
``VideoResNet`` (module names ``stem``, ``layer1`` ... ``layer4`` = conv1, res2 ... res5):

- conv1: a 1×7×7 convolution, stride 1×2×2, batch norm, ReLU, then a 1×3×3 max pool, stride 1×2×2
  (the SlowFast / ResNet stem; the total spatial stride is 32);
- res2, res3: 3×3 convolutions as 1×3×3 kernels (torchvision's ``Conv3DNoTemporal``);
- res4, res5: 3×3×3 kernels (:class:`SpaceTimeConv`), padded in time, strided in space only;
- depth 18 / 34: ``BasicBlock`` with [2, 2, 2, 2] / [3, 4, 6, 3] blocks (512 channels out); depth 50:
  ``Bottleneck`` with [3, 4, 6, 3] (2048 channels out). In the bottleneck the 3D kernel is its middle
  3×3 convolution (SlowFast's R50 puts the temporal extent into the first 1×1 convolution instead; CPD
  only says "3D kernels in res4 and res5").

No stride in time anywhere, so the res5 map keeps all T input frames: ``[B, C, T, H/32, W/32]``. The
classifier is removed. The output :class:`~tvts.models.vit.VideoTokens` has ``cls`` = the global average
pool of res5 ``[B, C]`` (CPD's video feature, mapped by ``vid_proj`` to the embedding) and one token per
res5 cell, time slot by time slot (``num_slots`` = T, ``tokens_per_slot`` = (H/32)·(W/32)).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.video.resnet import BasicBlock, Bottleneck, Conv3DNoTemporal, VideoResNet

from tvts.config import R3DConfig
from tvts.models.vit import VideoTokens

# depth → (block, blocks per stage res2..res5)
ARCHS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
STAGE_NAMES = ("conv1", "res2", "res3", "res4", "res5")  # the paper's names for STAGES


class SlowStem(nn.Sequential):
    """conv1 of the slow pathway: 1×7×7 convolution (stride 1×2×2), batch norm, ReLU, 1×3×3 max pool
    (stride 1×2×2). ``[B, 3, T, H, W]`` → ``[B, 64, T, H/4, W/4]``."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 64, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )


class SpaceTimeConv(nn.Conv3d):
    """A 3×3×3 convolution that strides in space only (res4, res5): the time size is kept."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__(in_planes, out_planes, kernel_size=(3, 3, 3), stride=(1, stride, stride),
                         padding=(padding, padding, padding), bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        """Stride of the 1×1×1 shortcut projection of a block that downsamples: space only."""
        return 1, stride, stride


class SlowR3D(nn.Module):
    """``video.arch: r3d_slow``: frames ``[B, T, 3, H, W]`` → :class:`VideoTokens` over the res5 map."""

    def __init__(self, cfg: R3DConfig):
        super().__init__()
        if cfg.depth not in ARCHS:
            raise ValueError(f"the 3D ResNet depth must be one of {sorted(ARCHS)}, not {cfg.depth}")
        self.cfg = cfg
        block, layers = ARCHS[cfg.depth]
        net = VideoResNet(block, [Conv3DNoTemporal, Conv3DNoTemporal, SpaceTimeConv, SpaceTimeConv], layers, SlowStem)
        # Keep the stages (initialised by VideoResNet: Kaiming normal convolutions, unit batch norms);
        # the pooling and the classifier are not used.
        for name in STAGES:
            setattr(self, name, getattr(net, name))
        self.width = 512 * block.expansion

    def feature_maps(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """The output of every stage, ``{"conv1", "res2", "res3", "res4", "res5"}``, each ``[B, C, T, h, w]``."""
        x = frames.transpose(1, 2)  # [B, 3, T, H, W], VideoResNet's layout
        maps = {}
        for name, paper_name in zip(STAGES, STAGE_NAMES):
            stage = getattr(self, name)
            x = checkpoint(stage, x, use_reentrant=False) if self.cfg.grad_checkpointing and self.training else stage(x)
            maps[paper_name] = x
        return maps

    def forward(self, frames: torch.Tensor, keep: torch.Tensor | None = None) -> VideoTokens:
        """``frames``: ``[B, T, 3, H, W]``. ``keep`` must be None: a CNN sees every pixel (``mask_ratio`` 0).
        Tokens ``[B, 1 + T·h·w, C]``: the global average pool of res5, then its cells (t, y, x) in that order."""
        if keep is not None:
            raise ValueError("the 3D ResNet cannot drop tokens: keep must be None (model.video.mask_ratio 0)")
        res5 = self.feature_maps(frames)["res5"]  # [B, C, T, h, w]
        b, c, t, h, w = res5.shape
        cells = res5.flatten(2).transpose(1, 2)  # [B, T*h*w, C]
        return VideoTokens(torch.cat([cells.mean(1, keepdim=True), cells], dim=1), num_slots=t, tokens_per_slot=h * w)
